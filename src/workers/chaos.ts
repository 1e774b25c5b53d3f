/**
 * The hostile device's choices: what a compromised host-side backend can do to the
 * memory it sees. Seeded and reproducible: the same seed and the same requests give
 * the same sabotage.
 */
export interface ChaosRates {
  /**
   * Probability that a request is never completed.
   * @default 0.02
   */
  drop?: number;
  /**
   * Probability that a request is completed twice.
   * @default 0.03
   */
  double?: number;
  /**
   * Probability that the used id names another (random) chain.
   * @default 0.03
   */
  badId?: number;
  /**
   * Probability that the used length exceeds the chain's writable bytes.
   * @default 0.03
   */
  badLen?: number;
  /**
   * Probability, per request, of writing random bytes at random places anywhere
   * in the device-visible memory (other requests' buffers, rings, doorbells).
   * @default 0.05
   */
  scribble?: number;
  /**
   * Probability that the chain's descriptors are overwritten after reading.
   * @default 0.05
   */
  corruptDesc?: number;
  /**
   * Probability that used->idx jumps by a random amount.
   * @default 0.01
   */
  jumpIdx?: number;
}

export interface ChaosOptions extends ChaosRates {
  /** @default 1 */
  seed?: number;
}

export const DEFAULT_CHAOS: Required<ChaosRates> = {
  drop: 0.02,
  double: 0.03,
  badId: 0.03,
  badLen: 0.03,
  scribble: 0.05,
  corruptDesc: 0.05,
  jumpIdx: 0.01,
};

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Chaos {
  readonly rates: Required<ChaosRates>;
  readonly random: () => number;

  constructor(opts: ChaosOptions = {}) {
    this.rates = { ...DEFAULT_CHAOS, ...opts };
    this.random = mulberry32(opts.seed ?? 1);
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
