import type { DmaDirection } from '../../swiotlb/constants.js';
import type { Placement } from './placement.js';
import type { TraceReport } from './report-types.js';

/**
 * The replay's public types: its options and result, and what an observer
 * (profile.ts, demand.ts) is told of every mapping. The replay itself is
 * replay.ts.
 */

export interface ReplayObserver {
  /**
   * Every map the replay sees (bounced or not, of the devices kept), in replay
   * order, and the kernel's failures of bouncing devices (`failed`).
   */
  onMap?(op: TracedOp): void;
  /** The release of a mapping {@link onMap} saw (its unmap, or its slots reused: a lost unmap). */
  onUnmap?(op: TracedOp): void;
}

/** A normalized DMA operation of the trace, for profiles, sizing and workload extraction. */
export interface TracedOp {
  /** The mapping's id: the same in its onMap and onUnmap; 0 for an unmap of nothing seen. */
  id: number;
  kind: 'map' | 'sg' | 'alloc';
  line: number;
  ts: number;
  cpu: number;
  device: string;
  size: number;
  dir: DmaDirection;
  /** The original buffer's address (0 for a coherent allocation). */
  phys: number;
  /** The kernel bounced it (in the pool, or outside it as `outside` says). */
  bounced: boolean;
  /** Bounced outside the pool replayed (a swiotlb_bounced line announced it): a grown or transient pool, or another pool. */
  outside: boolean;
  /** The kernel failed it: dma_addr=ffffffffffffffff of a device that bounces. No unmap follows. */
  failed: boolean;
  /** Part of a scatter-gather list. */
  sg: boolean;
  /** Slots the kernel's mapping takes (nr_slots(size + bounce offset)); 0 when not bounced. */
  slots: number;
  /** The device's min_align_mask as the replay was told it. */
  minAlignMask: number;
}

export interface TraceReplayOptions {
  placement: Placement;
  /** The kernel's pool (what the trace's addresses are measured against). */
  kernel: { base: number; nslabs: number; nareas: number };
  /** Keep only these devices (dev_name) when given. */
  devices?: ReadonlySet<string>;
  /** min_align_mask for every device, and per device. @default 0 */
  minAlignMask?: { all: number; byDevice: ReadonlyMap<string, number> };
  /** Events held back to replay out of order (see lookahead.ts). @default 4096 */
  window?: number;
  /** Disagreements and failures kept with details. @default 10 */
  keep?: number;
  observer?: ReplayObserver;
}

/** What the replay reports; the input, pool and boot-log parts come from the reader. */
export type ReplayResult = Omit<TraceReport, 'input' | 'pool' | 'boot_log'> & {
  filtered_events: number;
};
