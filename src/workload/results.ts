/**
 * A run's results: the clones' counters and the mediator's counters over the
 * measured window turned into fio-shaped figures (per clone, total) and the
 * mediator's view (pool, copies, back-pressure). Pure: no clock, no I/O.
 */
import { wrapDelta32 } from '../util/wrap32.js';
import type { JobFile, JobMode } from './fio-job.js';
import { POOL_NAME } from './job-config.js';
import type { SlotMapAtPeak } from './peak-slot-map.js';
import type { CounterSnapshot, Sample, WindowOutcome } from './sampling.js';
import type { Clone, JobRig } from './setup.js';
import {
  type FioDirection,
  fioDirection,
  fioRuntime,
  type LatNs,
  latencyHistogram,
  latSummary,
  sortedLatencies,
} from './stats.js';

export interface DirectionResult extends FioDirection {}

/**
 * One entry of the report's jobs[]: one clone, or under `group_reporting` the
 * clones fio merges into one (then `job`, `clone`, `device`, `queue` are its first
 * member's, as fio names a group after its first job).
 */
export interface CloneResult {
  jobname: string;
  /** Section index. */
  job: number;
  /** Clone number within the section (0 .. numjobs-1). */
  clone: number;
  device: string;
  queue: number;
  /** Clones merged into this entry (1 without group_reporting). */
  members: number;
  /** Milliseconds from the end of its ramp to its last completion (the longest of the members). */
  runtimeMs: number;
  /** fio's job_runtime, ms: summed over the members (stat.c sum_thread_stats(): `dst->total_run_time += src->total_run_time`). */
  jobRuntimeMs: number;
  read: DirectionResult;
  write: DirectionResult;
  /** Failed I/Os by error code. */
  errors: Record<string, number>;
}

export interface MediatorView {
  mode: JobMode;
  pool: {
    name: string;
    nslabs: number;
    nareas: number;
    bytes: number;
    /** Slots the virtqueues hold for the whole run (bounce mode). */
    queue_slots: number;
    used_hiwater_slots: number;
    used_hiwater_percent: number;
    /** Map failures by reason; kernel_defect: requests the kernel profile would hang on or overrun with (6.1). */
    map_failures: { full: number; too_large: number; invalid: number; kernel_defect: number };
    maps: number;
  };
  /** Bytes the copy engine bounced, by direction (0 in direct mode). */
  bounced_bytes: { to_device: number; from_device: number };
  copies: { to_device: number; from_device: number };
  /**
   * The pool gate: `requeues` are requests that found the pool full ("swiotlb
   * buffer is full") and were requeued, as virtio-blk does (failed under `fail`);
   * `waits` the requests held (requeued, or behind a requeued one).
   */
  backpressure: {
    policy: string;
    requeues: number;
    waits: number;
    wait_seconds: number;
    timeouts: number;
  };
  copy_workers: number;
  /**
   * Requested vs granted queue depth per device (depth is capped by the queue
   * size), and `busy`: the share of the window its device threads spent on
   * requests rather than polling for them or asleep ({@link busyShare}), null
   * where a thread's idle clock told no number.
   */
  devices: {
    id: string;
    kind: string;
    queues: number;
    depth: number;
    iodepth: number;
    busy: number | null;
  }[];
  /** The pool's slot map at the window's highest occupancy (bounce mode, when asked for: `bench --html`). */
  slot_map_at_peak?: SlotMapAtPeak;
}

export interface TotalResult {
  read: DirectionResult;
  write: DirectionResult;
  /** Reads and writes together, over the longer of their runtimes. */
  all: { iops: number; bw_bytes: number; io_bytes: number; total_ios: number; lat_ns: LatNs };
  runtimeMs: number;
}

export interface ModeResult {
  mode: JobMode;
  /** One per clone. */
  clones: CloneResult[];
  /** What jobs[] reports: one per clone, or per group under group_reporting ({@link reportedJobs}). */
  jobs: CloneResult[];
  total: TotalResult;
  mediator: MediatorView;
  timeline: Sample[];
  histogram: { le_ns: number; count: number }[];
  warnings: string[];
}

/** A clone's measured time, ms: from the end of its own ramp to its last counted completion. */
function cloneMs(c: Clone): number {
  return c.measuring && c.lastCompletion > 0 ? Math.max(0, c.lastCompletion - c.measureStart) : 0;
}

/**
 * One direction of several clones merged as stat.c sum_thread_stats() merges
 * threads: bytes and I/Os added, latencies pooled, the runtime the longest of
 * theirs (`if (dst->runtime[l] < src->runtime[l]) dst->runtime[l] = src->runtime[l];`).
 */
function mergedDirection(members: readonly Clone[], dir: 'read' | 'write'): DirectionResult {
  let ios = 0;
  let bytes = 0;
  let runtime = 0;
  for (const c of members) {
    ios += c[dir].ios;
    bytes += c[dir].bytes;
    runtime = Math.max(runtime, fioRuntime(cloneMs(c), c[dir].bytes));
  }
  return fioDirection(ios, bytes, runtime, sortedLatencies(members.map((c) => c[dir].lat)));
}

/** The entry of one clone, or of the clones of a group (the first one names it). */
function mergedResult(members: readonly Clone[]): CloneResult {
  const first = members[0]!;
  const errors: Record<string, number> = {};
  for (const c of members) {
    for (const [code, n] of c.errors) errors[code] = (errors[code] ?? 0) + n;
  }
  return {
    jobname: first.job.name,
    job: first.job.index,
    clone: first.clone,
    device: first.deviceId,
    queue: first.clone,
    members: members.length,
    runtimeMs: Math.max(...members.map(cloneMs)),
    jobRuntimeMs: members.reduce((s, c) => s + cloneMs(c), 0),
    read: mergedDirection(members, 'read'),
    write: mergedDirection(members, 'write'),
    errors,
  };
}

/** Each clone's figures, over its own measured time. */
export function cloneResults(clones: readonly Clone[]): CloneResult[] {
  return clones.map((c) => mergedResult([c]));
}

/**
 * The clones as fio's jobs[] groups them under `group_reporting`, in stat.c
 * __show_run_stats()'s loop: a clone opens a new entry `if (idx &&
 * (!td->o.group_reporting || (td->o.group_reporting && last_ts != td->groupid)))`,
 * else it is summed into the current one. Every job of a mode is in one group
 * here (no stonewall nor new_group), so a clone without group_reporting has an
 * entry of its own and a clone with it joins the entry before it, as in fio
 * (even the entry of a job without group_reporting just before it).
 */
export function reportedJobs(clones: readonly Clone[]): CloneResult[] {
  const groups: Clone[][] = [];
  for (const c of clones) {
    const current = groups[groups.length - 1];
    if (current === undefined || !c.job.groupReporting) groups.push([c]);
    else current.push(c);
  }
  return groups.map(mergedResult);
}

/** All clones together, merged as one fio group (per direction, the longest runtime). */
export function totalResult(clones: readonly Clone[], allSorted: Float64Array): TotalResult {
  const read = mergedDirection(clones, 'read');
  const write = mergedDirection(clones, 'write');
  const runtime = Math.max(read.runtime, write.runtime);
  const ios = read.total_ios + write.total_ios;
  const bytes = read.io_bytes + write.io_bytes;
  return {
    read,
    write,
    all: {
      iops: runtime > 0 ? Math.round(((1000 * ios) / runtime) * 1e6) / 1e6 : 0,
      bw_bytes: runtime > 0 ? Math.floor((1000 * bytes) / runtime) : 0,
      io_bytes: bytes,
      total_ios: ios,
      lat_ns: latSummary(allSorted),
    },
    runtimeMs: Math.max(1, Math.round(Math.max(...clones.map(cloneMs)))),
  };
}

/** What the mediator's counters moved by over the window. */
export interface WindowDeltas {
  map_failures: MediatorView['pool']['map_failures'];
  maps: number;
  bounced_bytes: MediatorView['bounced_bytes'];
  copies: MediatorView['copies'];
  backpressure: Omit<MediatorView['backpressure'], 'policy'>;
}

/**
 * The counters' deltas between two snapshots. The pool's counters are 32-bit
 * words that wrap (wrapDelta32); the copy engine's (Float64) and the gate's
 * (numbers on the main thread) do not.
 */
export function windowDeltas(b: CounterSnapshot, e: CounterSnapshot): WindowDeltas {
  const pool = (f: (s: CounterSnapshot['pool']) => number) => wrapDelta32(f(e.pool), f(b.pool));
  return {
    map_failures: {
      full: pool((p) => p.map_failures.full),
      too_large: pool((p) => p.map_failures.too_large),
      invalid: pool((p) => p.map_failures.invalid),
      kernel_defect: pool((p) => p.map_failures.kernel_defect),
    },
    maps: pool((p) => p.maps),
    bounced_bytes: {
      to_device: e.engine.to_device.bytes - b.engine.to_device.bytes,
      from_device: e.engine.from_device.bytes - b.engine.from_device.bytes,
    },
    copies: {
      to_device: e.engine.to_device.copies - b.engine.to_device.copies,
      from_device: e.engine.from_device.copies - b.engine.from_device.copies,
    },
    backpressure: {
      requeues: e.gate.requeues - b.gate.requeues,
      waits: e.gate.waits - b.gate.waits,
      wait_seconds: Math.round((e.gate.waitSeconds - b.gate.waitSeconds) * 1e6) / 1e6,
      timeouts: e.gate.timeouts - b.gate.timeouts,
    },
  };
}

/**
 * How busy a device's threads were between two snapshots `ms` apart: 1 less
 * their idle share (their idle milliseconds summed over threads x ms), between
 * 0 and 1 (an idle stretch is added when it ends or after IDLE_TICK_MS of sleep,
 * so one that began before the window counts whole in it), to 3 decimals; null
 * when a reading is no number, went back, or there is no interval.
 */
export function busyShare(
  before: readonly number[],
  after: readonly number[],
  ms: number,
): number | null {
  if (!(ms > 0) || before.length === 0 || before.length !== after.length) return null;
  let idle = 0;
  for (let i = 0; i < before.length; i++) {
    const d = after[i]! - before[i]!;
    if (!(d >= 0) || !Number.isFinite(d)) return null;
    idle += d;
  }
  return Math.round(Math.min(1, Math.max(0, 1 - idle / (before.length * ms))) * 1000) / 1000;
}

/** What the mediator did in the window, with the pool's shape and the devices' depths. */
export function mediatorView(
  jf: JobFile,
  mode: JobMode,
  rig: JobRig,
  window: Pick<WindowOutcome, 'before' | 'after' | 'hiwater' | 'slotMapAtPeak'>,
  queueSlots: number,
): MediatorView {
  const d = windowDeltas(window.before, window.after);
  const hiwater = window.hiwater;
  const { nslabs, nareas, bytes } = rig.pool.geometry;
  return {
    mode,
    pool: {
      name: POOL_NAME,
      nslabs,
      nareas,
      bytes,
      queue_slots: queueSlots,
      used_hiwater_slots: hiwater,
      used_hiwater_percent: Math.round((hiwater / nslabs) * 10000) / 100,
      map_failures: d.map_failures,
      maps: d.maps,
    },
    bounced_bytes: d.bounced_bytes,
    copies: d.copies,
    backpressure: { policy: rig.gate.policy, ...d.backpressure },
    copy_workers: rig.mediator.engine.workers,
    devices: rig.devices.map((dev, i) => ({
      id: dev.id,
      kind: dev.kind,
      queues: dev.queueCount,
      depth: dev.depth,
      iodepth: jf.jobs[i]!.iodepth,
      busy: busyShare(
        window.before.deviceIdleMs[i] ?? [],
        window.after.deviceIdleMs[i] ?? [],
        window.after.at - window.before.at,
      ),
    })),
    ...(window.slotMapAtPeak ? { slot_map_at_peak: window.slotMapAtPeak } : {}),
  };
}

/** The report of one mode: per clone, as jobs[] reports them, total, mediator view, timeline and histogram. */
export function modeResult(
  jf: JobFile,
  mode: JobMode,
  rig: JobRig,
  clones: readonly Clone[],
  window: WindowOutcome,
  queueSlots: number,
  warnings: string[],
): ModeResult {
  const allSorted = sortedLatencies(clones.flatMap((c) => [c.read.lat, c.write.lat]));
  return {
    mode,
    clones: cloneResults(clones),
    jobs: reportedJobs(clones),
    total: totalResult(clones, allSorted),
    mediator: mediatorView(jf, mode, rig, window, queueSlots),
    timeline: window.timeline,
    histogram: latencyHistogram(allSorted),
    warnings,
  };
}
