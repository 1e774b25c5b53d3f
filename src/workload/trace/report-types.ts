import type { KernelVersion } from '../../swiotlb/kernel.js';
import type { FullWarning } from './boot-log.js';
import type { SeriesPoint } from './series.js';
import type { TraceLayout } from './trace-line.js';
import type { ArrayStyle } from './trace-values.js';

/**
 * What `replay --trace` reports. "Model" is the project's pool replaying the
 * trace; "observed" is what the kernel's own placements (the traced dma_addr of
 * bounced mappings) show of its pool, so a lower bound: mappings made before the
 * trace started are not in it.
 */
export interface TraceReport {
  input: InputReport;
  pool: PoolReport;
  placements: {
    /** Both placed at the same address, or both failed. */
    agree: number;
    disagree: number;
    first_disagreement_line: number | null;
    /** The first few, with their trace lines. */
    disagreements: Disagreement[];
  };
  maps: MapCounts;
  unmaps: {
    /** Unmaps (and frees, and dma_unmap_sg entries) of replayed mappings. */
    replayed: number;
    /** Of pool addresses the trace never mapped: made before the trace started (not errors). */
    before_trace: number;
    /** dma_unmap_sg entries of buffers the trace never mapped (before the trace, or not bounced then). */
    sg_unknown: number;
    /** Mappings released because the kernel placed a new mapping on their slots and no unmap was found: a lost event. */
    implicit: number;
    /** Unmaps replayed ahead of their trace line, because the kernel reused their slots first. */
    reordered: number;
    /** Unmaps whose size differs from the mapping's (released with the mapping's size). */
    size_mismatch: number;
    /** dma_free of a NULL virt_addr: traced, nothing freed (dma_free_attrs()). */
    null_frees: number;
  };
  syncs: {
    for_device: number;
    for_cpu: number;
    bytes_for_device: number;
    bytes_for_cpu: number;
    /** Syncs of pool addresses the trace never mapped. */
    before_trace: number;
  };
  model: {
    /** Maps the model could not place: no area had room. */
    full: number;
    too_large: number;
    /** Maps the model refused as invalid (a size of 0, direction NONE): not a kernel's trace. */
    invalid: number;
    /** Requests the 6.1 model says the kernel would search for ever (SWIOTLB_KERNEL_WOULD_HANG). */
    kernel_hang: number;
    /** Requests the 6.1 model says the kernel would place past the pool's end (SWIOTLB_KERNEL_OVERRUN). */
    kernel_overrun: number;
    used_hiwater: number;
    used_end: number;
    series: SeriesPoint[];
    areas: AreaReport[];
  };
  observed: {
    used_hiwater: number;
    used_end: number;
  };
  largest: { size: number; device: string; line: number } | null;
  kernel_failures: KernelFailure[];
  /**
   * swiotlb_bounced lines without a map line whose request the 6.1 model says never
   * ends: `hung` when their CPU wrote nothing after them (as a hung CPU would not),
   * `went on` when it did (a disagreement).
   */
  kernel_hangs: KernelHang[];
  /** With --dynamic: the mappings outside the default pool, compared by the part they land in. */
  dynamic: DynamicReport | null;
  devices: DeviceReport[];
  boot_log: BootLogReport | null;
  hints: string[];
}

export interface InputReport {
  source: string;
  layout: TraceLayout;
  /** How arrays were printed: the kernel's {0x..}, old libtraceevent's decimal, or raw fields; 'none' without arrays. */
  arrays: ArrayStyle | 'none';
  lines: number;
  /** Event lines of any kind. */
  events: number;
  /** dma:* and swiotlb:* events read. */
  dma_events: number;
  swiotlb_bounced: number;
  /** Events of other systems (skipped). */
  unrelated_events: number;
  /** dma events of devices left out by --device. */
  filtered_events: number;
  bad_lines: { count: number; first: { line: number; message: string }[] };
  /** Events the ring buffer dropped (the kernel's and trace-cmd's CPU:N [...] lines); null when no line gave a count. */
  lost_events: number | null;
  lost_markers: number;
  /**
   * Events the ring buffer overwrote before the trace was read, by tracefs'
   * header (`entries-written` - `entries-in-buffer`, events of every kind; 6.12
   * kernel/trace/trace.c, get_total_entries_cpu(): written = in buffer +
   * ring_buffer_overrun_cpu()); null without that header (trace-cmd report).
   */
  overwritten_events: number | null;
  first_ts: number | null;
  last_ts: number | null;
}

export interface PoolReport {
  base: string;
  nslabs: number;
  nareas: number;
  area_nslabs: number;
  bytes: number;
  /** Where the geometry came from: the boot log, flags, a restricted pool. */
  source: string;
  /** The traced kernel's version (--kernel, or the boot log's banner); null when neither told it. */
  kernel: string | null;
  /** The profile whose rules the model follows. */
  profile: KernelVersion;
  /** A restricted-dma-pool (one area, exact size). */
  restricted: boolean;
  /** The model grows as CONFIG_SWIOTLB_DYNAMIC does (--dynamic). */
  dynamic: boolean;
  /** The model's pool has exactly the kernel's slots and areas (false only where no model pool can: see notes). */
  exact: boolean;
  rules: string;
  notes: string[];
}

export interface MapCounts {
  /** Mappings handed to the model: bounced maps, sg entries and allocations, and the kernel's swiotlb failures. */
  replayed: number;
  /** Maps (single or sg entries) the kernel placed in the pool. */
  bounced: number;
  /** Maps with dma_addr == phys_addr: not bounced. */
  direct: number;
  /** Maps with a dma_addr outside the pool and not the physical address, not announced by swiotlb_bounced (IOMMU, a DMA offset, or an unannounced bounce). */
  outside_pool: number;
  /** Maps outside the pool that a swiotlb_bounced line announced: transient or grown pools (CONFIG_SWIOTLB_DYNAMIC), or another pool. */
  outside_bounced: number;
  /** dma_addr=ffffffffffffffff of devices that bounce (swiotlb failures, replayed). */
  kernel_failed: number;
  /** Failed maps of devices never seen bouncing (not replayed). */
  kernel_failed_other: number;
  sg_lists: number;
  /** Lists the kernel printed only in part (the 128-entry limit of 6.12.117 and mainline). */
  sg_truncated: number;
  /** Lists with fewer DMA segments than buffers (merged by an IOMMU): not replayed. */
  sg_merged: number;
  /** dma_map_sg_err events (6.12.117 and mainline). */
  sg_errors: number;
  /** Coherent allocations from the pool (restricted pools). */
  allocs: number;
  /**
   * dma_alloc with a NULL virt_addr (a failed allocation) of a device whose
   * allocations come from the pool (one landed there earlier): replayed.
   */
  allocs_failed: number;
  /** Failed allocations of other devices (their allocator is not known to be the pool): not replayed. */
  allocs_failed_other: number;
  /** Maps replayed at the place of their swiotlb_bounced line. */
  reordered: number;
  /** swiotlb_bounced lines whose map line never came: a map that failed without a dma event (dma_map_sg's errors are not traced), or a lost event. */
  bounced_unmatched: number;
}

export interface Disagreement {
  line: number;
  device: string;
  cpu: number;
  /** Area the search started in. */
  area: number;
  size: number;
  phys: string;
  /** The kernel's dma_addr, or "failed". */
  kernel: string;
  /** The model's address, "full", "too_large" or "invalid". */
  model: string;
  reason: string;
}

export interface KernelFailure {
  line: number;
  device: string;
  cpu: number;
  size: number;
  /** `map`: a dma_map_* with dma_addr=ffffffffffffffff; `alloc`: a dma_alloc with a NULL virt_addr. */
  call: 'map' | 'alloc';
  /** What the model did with it. */
  model: 'full' | 'too_large' | 'invalid' | 'kernel_hang' | 'kernel_overrun' | 'placed';
}

export interface KernelHang {
  /** The swiotlb_bounced line. */
  line: number;
  device: string;
  cpu: number;
  size: number;
  phys: string;
  /** `hung`: the CPU wrote nothing after it; `went on`: it did (the kernel did not hang). */
  kernel: 'hung' | 'went on';
  /** The line of the CPU's last event, after this one (only when it went on). */
  next_line?: number;
}

/**
 * CONFIG_SWIOTLB_DYNAMIC: what the kernel placed outside its default pool
 * (transient and grown pools, whose addresses the model cannot predict) against
 * where the model placed the same requests.
 */
export interface DynamicReport {
  /** Maps the kernel bounced outside the default pool (announced by swiotlb_bounced). */
  kernel_outside: number;
  /** ... that the model placed outside its default pool too (a growth or a transient pool): agreement on the part. */
  both_outside: number;
  /** ... that the model placed in its default pool: a disagreement. */
  model_in_pool: number;
  /** ... that the model could not place at all. */
  model_failed: number;
  /** Maps the kernel placed in its default pool that the model placed outside its own. */
  model_outside_kernel_in_pool: number;
  /** Most slots the kernel held outside its default pool at once (from the trace's sizes). */
  kernel_outside_used_hiwater: number;
  /** The model's growths (swiotlb_dyn_alloc()), transient slots now, and mem->nslabs at the end. */
  growths: number;
  transient_nslabs: number;
  nslabs: number;
}

export interface AreaReport {
  area: number;
  /** Model placements in this area. */
  maps: number;
  used_hiwater: number;
  /** Kernel placements in this area (by its dma_addr), and their high water. */
  kernel_maps: number;
  kernel_used_hiwater: number;
}

export interface DeviceReport {
  device: string;
  min_align_mask: number;
  maps: number;
  bounced: number;
  direct: number;
  outside_pool: number;
  outside_bounced: number;
  kernel_failed: number;
  bytes_bounced: number;
  largest: number;
  sg_lists: number;
  syncs: number;
  unmaps_before_trace: number;
  agree: number;
  disagree: number;
}

export interface BootLogReport {
  source: string;
  full_warnings_total: number;
  /** Full warnings whose dmesg time lies inside the trace's time span (same clock by default). */
  /** null when the trace's times cannot be compared with the log's (the kernel's latency format). */
  full_warnings_during_trace: number | null;
  /** The first few. */
  full_warnings: FullWarning[];
  suppressed_warnings: number;
}

/** The last line `--json` prints. */
export interface TraceSummary {
  events: number;
  replayed: number;
  placements: { agree: number; disagree: number };
  full: number;
  used_hiwater: number;
  nslabs: number;
  /** The kernel's failures the replay took for a full pool: maps (dma_addr=ffffffffffffffff) and coherent allocations from the pool (a NULL virt_addr). */
  kernel_full: number;
  observed_used_hiwater: number;
  first_disagreement_line: number | null;
  unmaps_before_trace: number;
  lost_events: number | null;
  /** The profile whose rules the model followed. */
  profile: KernelVersion;
  /** Maps bounced outside the pool (announced by swiotlb_bounced). */
  outside_bounced: number;
  /** Requests where the traced 6.1 kernel hung (its CPU wrote nothing after them). */
  kernel_hangs: number;
}

export function summarize(r: TraceReport): TraceSummary {
  return {
    events: r.input.dma_events,
    replayed: r.maps.replayed,
    placements: { agree: r.placements.agree, disagree: r.placements.disagree },
    full: r.model.full,
    used_hiwater: r.model.used_hiwater,
    nslabs: r.pool.nslabs,
    kernel_full: r.maps.kernel_failed + r.maps.allocs_failed,
    observed_used_hiwater: r.observed.used_hiwater,
    first_disagreement_line: r.placements.first_disagreement_line,
    unmaps_before_trace: r.unmaps.before_trace,
    lost_events: r.input.lost_events,
    profile: r.pool.profile,
    outside_bounced: r.maps.outside_bounced,
    kernel_hangs: r.kernel_hangs.filter((h) => h.kernel === 'hung').length,
  };
}
