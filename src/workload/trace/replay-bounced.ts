import type { BouncedEvent } from './dma-events.js';
import { mapKey, physKey } from './lookahead.js';
import type { KernelHangs } from './replay-hangs.js';
import type { ReplayState } from './replay-state.js';

/** Orphan bounces kept before the oldest are given up as unmatched. */
const ORPHANS_KEPT = 10_000;

/**
 * swiotlb_bounced lines. The event fires before the slots are searched, so the
 * map it announces (same CPU, device, original address, size; the next one ahead
 * in the window, see lookahead.ts) is replayed at its place, with its CPU, and is
 * known to have been bounced: a dma_addr outside the pool then means another pool
 * (replay-outside.ts), dma_addr=ffffffffffffffff a failure of a bouncing device
 * (replay-failures.ts).
 *
 * A bounce whose map is not ahead is an orphan: its map is further ahead than the
 * window, failed without a dma event (dma_map_sg's errors), was lost, or never
 * came because 6.1's search hung (replay-hangs.ts tries it). A later map of the
 * same (device, buffer, size) adopts the orphan and counts as announced.
 *
 *   orphans: (device, buffer, size) -> bounces not yet adopted, oldest key first
 *
 * Rules: at most ORPHANS_KEPT keys are kept; the oldest key beyond that, and
 * every key left at the end, count as bounced_unmatched.
 */
export class BouncedLines {
  private readonly orphans = new Map<string, number>();

  constructor(
    private readonly s: ReplayState,
    private readonly hangs: KernelHangs,
  ) {}

  /** A swiotlb_bounced line's turn: its map is replayed now, or it becomes an orphan. */
  replay(ev: BouncedEvent): void {
    const { device, cpu, devAddr, size, line } = ev;
    const s = this.s;
    const p = s.window.claimMap(mapKey(cpu, device, devAddr, size));
    if (p === undefined) {
      this.hangs.probe(device, cpu, devAddr, size, line);
      const key = `${device}|${physKey(devAddr)}|${size}`;
      this.orphans.set(key, (this.orphans.get(key) ?? 0) + 1);
      if (this.orphans.size > ORPHANS_KEPT) {
        const oldest = this.orphans.keys().next().value!;
        s.counts.maps.bounced_unmatched += this.orphans.get(oldest)!;
        this.orphans.delete(oldest);
      }
      return;
    }
    if (p.done) return; // an sg list replayed at an earlier entry's bounce
    p.done = true;
    s.counts.maps.reordered++;
    s.replayNow(p.ev, cpu, true);
  }

  /** True when some bounce is waiting for its map. */
  get waiting(): boolean {
    return this.orphans.size > 0;
  }

  /**
   * A map whose swiotlb_bounced was not matched ahead: its bounce was counted an
   * orphan too soon. True when there was such a bounce (the map was bounced).
   */
  adopt(device: string, phys: number, size: number): boolean {
    const key = `${device}|${physKey(phys)}|${size}`;
    const n = this.orphans.get(key);
    if (n === undefined) return false;
    if (n > 1) this.orphans.set(key, n - 1);
    else this.orphans.delete(key);
    return true;
  }

  /** The end of the trace: the bounces still waiting never had a map line. */
  finish(): void {
    for (const n of this.orphans.values()) this.s.counts.maps.bounced_unmatched += n;
    this.orphans.clear();
  }
}
