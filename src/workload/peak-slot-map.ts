/**
 * The pool's slot map at the busiest moment of a run, for `bench --html`.
 *
 * Only the main thread maps and unmaps (device threads never do), so the pool's
 * occupancy can only rise during a call into the driver or the back-pressure
 * gate, and the runner looks right after each: `check()` reads `used` (one
 * atomic load) and, only when it is above the highest seen so far, reads the
 * slot map into one buffer kept for the run (src/swiotlb/slot-map.ts: a word per
 * 32 free slots and a word per used slot; no allocation but the small result).
 * What it keeps is therefore the map at the highest occupancy the runner saw,
 * which can be a little below the pool's own high-water counter (that one also
 * sees a peak that rises and falls between two looks).
 */
import type { SwiotlbPool } from '../swiotlb/pool.js';
import {
  type PoolRange,
  type SlotCounts,
  SlotMapReader,
  slotMapBytes,
} from '../swiotlb/slot-map.js';

/** The slot map at the run's peak, as the report carries it. */
export interface SlotMapAtPeak {
  /** Milliseconds since measurement started. */
  t_ms: number;
  /** Slots in use at that moment (virtqueues included). */
  used_slots: number;
  nslabs: number;
  nareas: number;
  area_nslabs: number;
  counts: SlotCounts;
  /** Each area's next-fit cursor (pool-wide slot index). */
  cursors: number[];
  /** 2 bits per slot, base64 (as GET /v1/pools/:name/slots). */
  map: string;
}

export class PeakSlotMap {
  private readonly reader: SlotMapReader;
  private readonly bits: Uint8Array;
  private best = -1;
  private at = 0;
  private counts: SlotCounts | undefined;
  private cursors: number[] = [];
  private origin = performance.now();

  /** `coherent`: the virtqueues' pool memory, drawn apart from bounce buffers. */
  constructor(
    private readonly pool: SwiotlbPool,
    private readonly coherent: readonly PoolRange[],
  ) {
    this.reader = new SlotMapReader(pool.share());
    this.bits = new Uint8Array(slotMapBytes(pool.geometry.nslabs));
  }

  /** Starts over (the start of measurement): only later moments count. */
  restart(): void {
    this.best = -1;
    this.counts = undefined;
    this.origin = performance.now();
  }

  /** Keeps the map now when the pool is fuller than at any moment seen before. */
  check(): void {
    const used = this.pool.used();
    if (used <= this.best) return;
    this.best = used;
    this.at = performance.now();
    const map = this.reader.read(this.coherent, this.bits);
    this.counts = map.counts;
    this.cursors = map.cursors;
  }

  /** The map at the peak, or undefined when nothing was seen. */
  result(): SlotMapAtPeak | undefined {
    if (this.counts === undefined) return undefined;
    const g = this.pool.geometry;
    return {
      t_ms: Math.round(this.at - this.origin),
      used_slots: this.best,
      nslabs: g.nslabs,
      nareas: g.nareas,
      area_nslabs: g.areaNslabs,
      counts: { ...this.counts },
      cursors: [...this.cursors],
      map: Buffer.from(this.bits.buffer, this.bits.byteOffset, this.bits.byteLength).toString(
        'base64',
      ),
    };
  }
}
