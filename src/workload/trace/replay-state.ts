import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import type { DmaEvent } from './dma-events.js';
import { type LiveRec, LiveTable, type Placed } from './live-table.js';
import { Lookahead } from './lookahead.js';
import type { Placement, PlaceResult } from './placement.js';
import { ReplayCounts } from './replay-counts.js';
import { ReplayOccupancy } from './replay-occupancy.js';
import type { ReplayObserver, TraceReplayOptions } from './replay-types.js';
import { ReplayVerdicts } from './replay-verdicts.js';
import { TracedPool } from './traced-pool.js';

/** How the observer is told of a mapping, beyond what the trace shows of it. */
export interface ObservedAs {
  bounced: boolean;
  sg: boolean;
  slots: number;
  outside?: boolean;
  failed?: boolean;
}

/** Replays an event now, out of its turn (from replay.ts's dispatch). */
export type ReplayNow = (ev: DmaEvent, cpu: number, viaBounced: boolean) => void;

/**
 * What the matching rules (replay-maps.ts, replay-outside.ts,
 * replay-failures.ts, replay-unmaps.ts, replay-bounced.ts, replay-hangs.ts)
 * share: the model, the traced kernel's pool, the events held back, the live
 * mappings, and what is counted. A mapping becomes live and is released only
 * through {@link take} and {@link release}, which keep the table, the
 * occupancy, the model and the observer in step.
 */
export class ReplayState {
  readonly p: Placement;
  readonly pool: TracedPool;
  readonly window = new Lookahead();
  readonly table: LiveTable;
  readonly counts = new ReplayCounts();
  readonly occupancy: ReplayOccupancy;
  readonly verdicts: ReplayVerdicts;
  readonly observer: ReplayObserver | undefined;

  constructor(
    private readonly opts: TraceReplayOptions,
    /** Replays an event held back in the window at once. */
    readonly replayNow: ReplayNow,
  ) {
    this.p = opts.placement;
    this.pool = new TracedPool(opts.kernel);
    this.table = new LiveTable(opts.kernel.nslabs);
    this.occupancy = new ReplayOccupancy(this.pool, this.p.geometry.nareas);
    this.verdicts = new ReplayVerdicts(this.p, this.pool, opts.keep ?? 10);
    this.observer = opts.observer;
  }

  /** The device's min_align_mask, as the replay was told it. */
  maskFor(device: string): number {
    const m = this.opts.minAlignMask;
    return m === undefined ? 0 : (m.byDevice.get(device) ?? m.all);
  }

  /** The model's area where a search on `cpu` starts (swiotlb_find_slots(), 6.1 and 6.12). */
  startArea(cpu: number): number {
    return cpu & (this.p.geometry.nareas - 1);
  }

  /** Records where the model placed a mapping (its area only inside the default pool). */
  modelPlaced(rec: LiveRec, res: Extract<PlaceResult, { addr: number }>): void {
    const g = this.p.geometry;
    rec.mAddr = res.addr;
    rec.mSlots = res.slots;
    rec.mArea =
      res.part === 'default' ? Math.floor((res.addr - g.base) / IO_TLB_SIZE / g.areaNslabs) : -1;
  }

  /** Books a placed mapping on both sides. */
  take(rec: LiveRec, ts: number): void {
    this.table.add(rec);
    this.occupancy.took(rec, ts);
  }

  /** Releases a mapping on both sides (its unmap, or its slots taken again: a lost unmap). */
  release(rec: LiveRec, line: number, ts: number): void {
    this.table.remove(rec);
    if (rec.mAddr >= 0) {
      if (rec.kind === 'alloc') this.p.free(rec.mAddr, rec.size);
      else this.p.unmap(rec.mAddr, rec.size, rec.dir);
    }
    this.occupancy.released(rec, line, ts);
    if (this.observer?.onUnmap) {
      const x: Placed = { ...rec, ts, line };
      this.observe('onUnmap', x, rec.id, {
        bounced: true,
        sg: rec.kind === 'sg',
        slots: rec.kSlots,
        outside: rec.kSlot < 0,
      });
    }
  }

  /** Tells the observer (when it listens) of a mapping under `id`. */
  observe(kind: 'onMap' | 'onUnmap', x: Placed, id: number, o: ObservedAs): void {
    this.observer?.[kind]?.({
      id,
      kind: x.kind,
      line: x.line,
      ts: x.ts,
      cpu: x.cpu,
      device: x.device,
      size: x.size,
      dir: x.dir,
      phys: x.phys,
      bounced: o.bounced,
      outside: o.outside ?? false,
      failed: o.failed ?? false,
      sg: o.sg,
      slots: o.slots,
      minAlignMask: this.maskFor(x.device),
    });
  }
}
