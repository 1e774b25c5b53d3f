import type { ConfigFile } from '../../config/schema.js';
import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { formatSize } from '../../util/size.js';
import { jobConfig } from '../job-config.js';
import { adviseSize, unchangedSizeWarning } from '../sizing.js';
import { TraceDemand } from './demand.js';
import { jobShape } from './job-shape.js';
import { type DeviceProfile, TraceProfile } from './profile.js';
import type { ReplayObserver, TracedOp } from './replay-types.js';
import { type PoolReport, summarize, type TraceReport, type TraceSummary } from './report-types.js';
import { runTraceReplay, type TraceRunOptions } from './run.js';
import { type TracedJob, tracedJob } from './trace-job.js';
import { sizeFromTrace, type TraceSizing } from './trace-sizing.js';

/**
 * `size --trace` without the command line: replays the trace (run.ts) with two
 * observers, the workload's profile (profile.ts) and its demand on the pool
 * (demand.ts); sizes the pool from the demand (trace-sizing.ts); and, for this
 * service, runs the fio-job sizing (sizing.ts adviseSize()) on the traced
 * workload as a job file (trace-job.ts), since the service's pool also holds the
 * virtqueues and maps each request its own way.
 */

export interface TraceSizeOptions extends Omit<TraceRunOptions, 'observer'> {
  /** Head room over the smallest pool without failures. @default 0.25 */
  margin?: number;
  /** Areas to recommend for. @default the traced pool's */
  areas?: number;
  /** The fio-job sizing's completions and seed (the service's advice). */
  steps?: number;
  seed?: number;
}

/** What one device asked of the pool. */
export interface DeviceDemand {
  device: string;
  min_align_mask: number;
  maps: number;
  /** Bounced in the pool, outside it (grown, transient or other pools), failed by the kernel. */
  bounced: number;
  outside: number;
  failed: number;
  /** I/Os with data (virtio-blk requests, sg lists and virtqueue buffers with their indirect table, single maps), requests without data, requests cut short by a failed map. */
  ios: number;
  flushes: number;
  aborted: number;
  peak_live_ios: number;
  peak_bounced_bytes: number;
  peak_bounced_slots: number;
  largest: number;
  /** Share of data maps whose buffer does not start on a page (in %). */
  unaligned_percent: number;
  /** I/O sizes with their share (%), as the job file takes them. */
  read_sizes: [number, number][];
  write_sizes: [number, number][];
  rwmixread: number;
  cpus: number[];
  /** The areas those CPUs start their searches in (cpu & (nareas - 1)). */
  areas: number[];
}

export interface TraceSizeReport {
  trace: string;
  pool: PoolReport;
  replay: TraceSummary;
  devices: DeviceDemand[];
  sizing: TraceSizing;
  kernel_parameter: string | null;
  /**
   * The same with `,force`: a guest that is not confidential bounces only what a
   * device cannot reach unless forced (swiotlb_init_remap(), pci_swiotlb_detect()).
   */
  kernel_parameter_forced: string | null;
  /** A restricted-dma-pool node sized for one area. */
  device_tree: string | null;
  /** This service (serve --config): the fio-job sizing of the traced workload. */
  service: {
    recommended_slots: number | undefined;
    areas: number;
    config: ConfigFile | null;
    job: string;
  } | null;
  notes: string[];
}

/** Several observers as one. */
function both(a: ReplayObserver, b: ReplayObserver): ReplayObserver {
  return {
    onMap: (op: TracedOp) => {
      a.onMap?.(op);
      b.onMap?.(op);
    },
    onUnmap: (op: TracedOp) => {
      a.onUnmap?.(op);
      b.onUnmap?.(op);
    },
  };
}

function deviceDemand(p: DeviceProfile, nareas: number): DeviceDemand {
  const shape = jobShape(p);
  const cpus = [...p.cpus].sort((a, b) => a - b);
  return {
    device: p.device,
    min_align_mask: p.minAlignMask,
    maps: p.maps,
    bounced: p.bounced,
    outside: p.outside,
    failed: p.failed,
    ios: p.ios.blk + p.ios.sg + p.ios.single - p.ios.flushes - p.ios.aborted,
    flushes: p.ios.flushes,
    aborted: p.ios.aborted,
    peak_live_ios: p.liveIosMax,
    peak_bounced_bytes: p.liveBouncedBytesMax,
    peak_bounced_slots: p.liveBouncedSlotsMax,
    largest: p.largest,
    unaligned_percent: p.dataMaps > 0 ? Math.round((p.unaligned / p.dataMaps) * 1000) / 10 : 0,
    read_sizes: shape.read,
    write_sizes: shape.write,
    rwmixread: shape.rwmixread,
    cpus,
    areas: [...new Set(cpus.map((c) => c & (nareas - 1)))].sort((a, b) => a - b),
  };
}

/** A device-tree restricted-dma-pool node of `slots` slots (one area in Linux). */
export function restrictedPoolNode(slots: number, base: number | undefined): string {
  const bytes = slots * IO_TLB_SIZE;
  const at = base ?? 0x5000_0000;
  const hex = (n: number) => `0x${n.toString(16)}`;
  const hi = Math.floor(at / 2 ** 32);
  const lo = at % 2 ** 32;
  return `/* Binding: dtschema, schemas/reserved-memory/shared-dma-pool.yaml (in the kernel's
 * Documentation/devicetree/bindings/reserved-memory/ up to 6.1, gone from 6.12): no
 * "no-map", "reusable", "linux,cma-default" or "linux,dma-default" for this compatible
 * (rmem_swiotlb_setup() refuses the node); Linux gives the pool ONE area
 * (rmem_swiotlb_device_init()).${base === undefined ? " Pick a free, page-aligned address in the guest's RAM: the pool is used through the linear mapping." : " At the traced pool's address."}
 * #address-cells and #size-cells must be the root node's (__reserved_mem_check_root()). */
reserved-memory {
\t#address-cells = <2>;
\t#size-cells = <2>;
\tranges;

\tbounce_pool: restricted-dma-pool@${at.toString(16)} {
\t\tcompatible = "restricted-dma-pool";
\t\treg = <${hex(hi)} ${hex(lo)} 0x0 ${hex(bytes)}>; /* ${formatSize(bytes)}, ${slots} slots */
\t};
};

/* and in the node of each device that must bounce through it (a PCI device with
 * no node of its own: the host bridge's node, for every device behind it, as
 * of_dma_set_restricted_buffer() falls back to the node with the DMA configuration): */
\tmemory-region = <&bounce_pool>;`;
}

/** The service's configuration, sizes written as people write them. */
function serviceAdvice(
  job: TracedJob,
  o: TraceSizeOptions,
  areas: number,
): TraceSizeReport['service'] {
  const advice = adviseSize(job.jobFile, {
    areas,
    ...(o.margin === undefined ? {} : { margin: o.margin }),
    ...(o.steps === undefined ? {} : { steps: o.steps }),
    ...(o.seed === undefined ? {} : { seed: o.seed }),
  });
  let config: ConfigFile | null = null;
  // The service's pool also holds the virtqueues: the service-pool advice, not swiotlb='s.
  const slots = advice.service_pool.recommended_slots;
  if (slots !== undefined) {
    config = jobConfig(job.jobFile, 'bounce', {
      pool: { slots, areas: advice.areas },
      fileDir: '.',
    });
    config.kernel = advice.kernel;
    config.pools = (config.pools ?? []).map((p) => ({
      name: p.name,
      swiotlb: `${slots},${advice.areas}`,
      ...(p.backpressure ? { backpressure: p.backpressure } : {}),
    }));
    for (const d of config.devices ?? []) {
      if (typeof d.capacity === 'number') d.capacity = formatSize(d.capacity);
      if (typeof d.maxRequestBytes === 'number') d.maxRequestBytes = formatSize(d.maxRequestBytes);
    }
  }
  return {
    recommended_slots: slots,
    areas: advice.areas,
    config,
    job: job.text,
  };
}

/**
 * Replays the trace and sizes the pool from what it asked.
 * @throws the errors of runTraceReplay()
 */
export async function adviseFromTrace(o: TraceSizeOptions): Promise<TraceSizeReport> {
  const profile = new TraceProfile();
  const demand = new TraceDemand();
  const report: TraceReport = await runTraceReplay({ ...o, observer: both(profile, demand) });
  const pool = report.pool;
  const profiles = profile.result();
  const devices = profiles.map((p) => deviceDemand(p, pool.nareas));
  const cpus = new Set(profiles.flatMap((p) => [...p.cpus]));
  const sizing = sizeFromTrace(demand, {
    profile: pool.profile,
    base: Number(pool.base),
    kernelNslabs: pool.nslabs,
    kernelNareas: pool.nareas,
    cpus: cpus.size,
    ...(o.areas === undefined ? {} : { areas: o.areas }),
    ...(o.margin === undefined ? {} : { margin: o.margin }),
  });
  const notes = sizingNotes(report, sizing);
  let service: TraceSizeReport['service'] = null;
  try {
    const job = tracedJob(profiles, { poolBytes: pool.bytes, areas: sizing.areas });
    notes.push(...job.notes);
    service = serviceAdvice(job, o, sizing.areas);
  } catch (err) {
    notes.push(`no service configuration: ${(err as Error).message}`);
  }
  const rec = sizing.recommended_slots;
  const one = sizing.restricted.recommended_slots;
  return {
    trace: report.input.source,
    pool,
    replay: summarize(report),
    devices,
    sizing,
    kernel_parameter: rec === undefined ? null : `swiotlb=${rec},${sizing.areas}`,
    kernel_parameter_forced: rec === undefined ? null : `swiotlb=${rec},${sizing.areas},force`,
    device_tree:
      one === undefined
        ? null
        : restrictedPoolNode(one, pool.restricted ? Number(pool.base) : undefined),
    service,
    notes,
  };
}

/** What the sizing could not see, from the replay's counts. */
function sizingNotes(r: TraceReport, s: TraceSizing): string[] {
  const notes: string[] = [];
  if (r.unmaps.before_trace > 0 || r.syncs.before_trace > 0) {
    notes.push(
      `${r.unmaps.before_trace} unmaps of mappings made before the trace: their slots were in use before it started and are not in the demand; size with a trace started before the workload`,
    );
  }
  if (r.maps.kernel_failed > 0) {
    notes.push(
      `the kernel failed ${r.maps.kernel_failed} maps (its pool was full); each is in the demand as a map held for no time (it was never unmapped), and the driver's retries as later maps: a larger pool would have held them for their I/O's time, so take the margin seriously`,
    );
  }
  if (r.maps.allocs_failed > 0) {
    notes.push(
      `the kernel failed ${r.maps.allocs_failed} coherent allocations from the pool (a NULL virt_addr): a restricted pool holds the device's virtqueues and coherent buffers beside its bounce buffers, and had no room for them; the demand does not include them`,
    );
  }
  if (r.input.lost_markers > 0) {
    notes.push('the trace lost events: the demand misses their maps and unmaps');
  }
  if ((r.input.overwritten_events ?? 0) > 0) {
    notes.push(
      'the ring buffer overwrote the oldest events before the trace was read: the demand starts where the trace does, later than the recording',
    );
  }
  if (s.too_large > 0) {
    notes.push(
      `${s.too_large} maps search for more than one 128-slot segment (256 KiB, the min_align_mask padding included): no pool size places them`,
    );
  }
  if (r.maps.outside_pool > 0) {
    notes.push(
      `${r.maps.outside_pool} maps went outside the pool without a swiotlb_bounced line: they are not in the demand (an IOMMU, a DMA offset, or bounces into a grown pool: record swiotlb:swiotlb_bounced)`,
    );
  }
  const unchanged =
    s.recommended_slots === undefined ? undefined : unchangedSizeWarning(s.recommended_slots);
  if (unchanged !== undefined) notes.push(unchanged);
  if (r.pool.dynamic || r.maps.outside_bounced > 0) {
    notes.push(
      `${r.maps.outside_bounced} maps the kernel bounced outside the default pool are in the demand: with CONFIG_SWIOTLB_DYNAMIC (transient or grown pools) the minimal pool is the one that needs no growth; if they went to another pool (a restricted-dma-pool), leave its devices out with --device`,
    );
  }
  return notes;
}
