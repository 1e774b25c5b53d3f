import { mulberry32 } from '../util/prng.js';
import {
  type ChaosOptions,
  type ChaosRates,
  DEFAULT_CHAOS,
  DEFAULT_CHAOS_SEED,
} from '../virtio/device-spec.js';

/** The hostile device's sabotage, drawn from a seeded stream (rates in ../virtio/device-spec.ts). */
export class Chaos {
  readonly rates: Required<ChaosRates>;
  readonly random: () => number;

  constructor(opts: ChaosOptions = {}) {
    this.rates = { ...DEFAULT_CHAOS, ...opts };
    this.random = mulberry32(opts.seed ?? DEFAULT_CHAOS_SEED);
  }

  roll(p: number): boolean {
    return this.random() < p;
  }

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  /** Writes 1-64 random bytes at a few random places in `mem`. */
  scribble(mem: Uint8Array): void {
    const places = 1 + this.int(4);
    for (let p = 0; p < places; p++) {
      const at = this.int(mem.length);
      const n = Math.min(1 + this.int(64), mem.length - at);
      for (let i = 0; i < n; i++) mem[at + i] = this.int(256);
    }
  }
}
