import type { DmaEvent } from './dma-events.js';
import { BouncedLines } from './replay-bounced.js';
import { KernelHangs } from './replay-hangs.js';
import { MapMatcher } from './replay-maps.js';
import { replayResult } from './replay-report.js';
import { ReplayState } from './replay-state.js';
import type { ReplayResult, TraceReplayOptions } from './replay-types.js';
import { replaySync, replaySyncSg, replayUnmap, replayUnmapSg } from './replay-unmaps.js';

export type {
  ReplayObserver,
  ReplayResult,
  TracedOp,
  TraceReplayOptions,
} from './replay-types.js';

/**
 * Replays a kernel DMA trace against a Placement (placement.ts): every mapping the
 * kernel bounced (its dma_addr lies in the pool) is placed by the model, in trace
 * order, starting in area `cpu & (nareas - 1)` of the CPU that searched, as the
 * kernel does (6.1.192 and 6.12.117 swiotlb_find_slots():
 * `raw_smp_processor_id() & (nareas - 1)`; with CONFIG_SWIOTLB_DYNAMIC, 6.12's
 * swiotlb_search_area(): `(start_cpu + cpu_offset) & (pool->nareas - 1)`, offset
 * 0 first; 6.6.y's swiotlb_pool_find_slots()); the model's address is compared
 * with the kernel's.
 *
 * This module holds the events back (lookahead.ts) and hands each to the module
 * of its matching rules (each rule has a hand-worked test in
 * test/trace.replay.test.ts, the kernel profiles' in test/trace.kernels.test.ts):
 *
 *   swiotlb_bounced               replay-bounced.ts   its map replayed at its place
 *   dma_map_*, dma_map_sg, alloc  replay-maps.ts      in the pool: placed and compared
 *     outside the pool, announced replay-outside.ts   another pool (--dynamic: compared by kind)
 *     dma_addr=ffffffffffffffff   replay-failures.ts  replayed when the device bounces
 *   dma_unmap_*, free, syncs      replay-unmaps.ts    and mappings whose slots are reused
 *   a bounce without its map      replay-hangs.ts     6.1's endless search: hung or went on
 *
 * and what they share (replay-state.ts): the live mappings and their indexes
 * (live-table.ts), the kernel's pool as the addresses show it (traced-pool.ts),
 * the counts (replay-counts.ts), the slots held on both sides
 * (replay-occupancy.ts) and the agreements (replay-verdicts.ts); the result is
 * replay-report.ts's.
 */
export class TraceReplay {
  private readonly s: ReplayState;
  private readonly windowSize: number;
  private readonly hangs: KernelHangs;
  private readonly bounced: BouncedLines;
  private readonly maps: MapMatcher;

  constructor(private readonly opts: TraceReplayOptions) {
    this.s = new ReplayState(opts, (ev, cpu, viaBounced) => this.dispatch(ev, cpu, viaBounced));
    this.windowSize = opts.window ?? 4096;
    this.hangs = new KernelHangs(this.s);
    this.bounced = new BouncedLines(this.s, this.hangs);
    this.maps = new MapMatcher(this.s, this.bounced);
  }

  /** Takes the next event of the trace (in trace order). */
  push(ev: DmaEvent): void {
    this.s.window.push(ev);
    while (this.s.window.size > this.windowSize) this.step();
  }

  /**
   * Replays what is held back and returns the results. `lastEventLine(cpu)` is the
   * line of the last event (of any kind) that CPU wrote: a CPU that wrote after a
   * request the 6.1 model says never ends did not hang.
   */
  finish(lastEventLine: (cpu: number) => number = () => 0): ReplayResult {
    while (this.step()) {}
    this.bounced.finish();
    this.hangs.judge(lastEventLine);
    return replayResult(this.s, this.hangs);
  }

  /** Slots the model holds now (equal to the placement's own count: a test invariant). */
  modelUsed(): number {
    return this.s.occupancy.modelUsed;
  }

  private step(): boolean {
    const p = this.s.window.shift();
    if (p === undefined) return false;
    if (!p.done) {
      p.done = true;
      this.dispatch(p.ev, p.ev.cpu, false);
    }
    return true;
  }

  /** Replays one event; `cpu`: whose search it was, `viaBounced`: its swiotlb_bounced announced it. */
  private dispatch(ev: DmaEvent, cpu: number, viaBounced: boolean): void {
    if (this.opts.devices && !this.opts.devices.has(ev.device)) {
      this.s.counts.filtered++;
      return;
    }
    switch (ev.kind) {
      case 'bounced':
        this.bounced.replay(ev);
        break;
      case 'map':
        this.maps.map(ev, cpu, viaBounced);
        break;
      case 'map_sg':
        this.maps.mapSg(ev, cpu, viaBounced);
        break;
      case 'map_sg_err':
        this.s.counts.maps.sg_errors++;
        break;
      case 'unmap':
        replayUnmap(this.s, ev);
        break;
      case 'free':
        if (ev.nothing) this.s.counts.unmaps.null_frees++;
        else replayUnmap(this.s, ev);
        break;
      case 'unmap_sg':
        replayUnmapSg(this.s, ev);
        break;
      case 'sync':
        replaySync(this.s, ev);
        break;
      case 'sync_sg':
        replaySyncSg(this.s, ev);
        break;
      case 'alloc':
        this.maps.alloc(ev, cpu);
        break;
    }
  }
}
