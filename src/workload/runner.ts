/**
 * Runs a fio job file in-process against a Mediator and measures it.
 *
 * - One Mediator per mode (mode `both`: bounce, then direct), one pool `pool0`.
 * - Each job section is one virtio-blk device; each of its `numjobs` clones is one
 *   queue of that device (queue q starts its maps in pool area q mod nareas) and
 *   keeps `iodepth` requests in flight: `iodepth` async submitters on that queue.
 * - Clones share the device's region [0, size): sequential jobs walk it with one
 *   cursor per clone, random jobs pick block-aligned offsets from a seeded PRNG.
 * - A clone stops after `number_ios` I/Os, or after `io_size` (default `size`)
 *   bytes unless `time_based`, or when `runtime` has passed, whichever comes first.
 *   `ramp_time` (the longest of the jobs) runs first and is not measured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, toMediatorSpec } from '../config/load.js';
import type { ConfigFile } from '../config/schema.js';
import type { BlkDriver } from '../mediator/blk-driver.js';
import { Mediator } from '../mediator/mediator.js';
import { roundUpPowerOfTwo } from '../swiotlb/geometry.js';
import type { Logger } from '../util/logger.js';
import {
  type FioJob,
  type JobFile,
  jobDirections,
  maxBlockSize,
  pickSize,
  prng,
} from './fio-job.js';
import {
  type ClatNs,
  clatSummary,
  type FioDirection,
  fioDirection,
  LatencyRecorder,
  latencyHistogram,
  sortedLatencies,
} from './stats.js';

export const POOL_NAME = 'pool0';
export const GUEST_NAME = 'guest0';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Device ids for the job sections: the section name when it is a valid id. */
export function deviceIds(jobs: readonly FioJob[]): string[] {
  const ids: string[] = [];
  for (const j of jobs) {
    let id = j.name.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64);
    if (!NAME_RE.test(id) || ids.includes(id)) id = `job${j.index}`;
    ids.push(id);
  }
  return ids;
}

/** Areas the pool gets by default: the largest numjobs, rounded up to a power of two. */
export function defaultAreas(jf: JobFile): number {
  return roundUpPowerOfTwo(Math.max(1, ...jf.jobs.map((j) => j.numjobs)));
}

/** Virtqueue size that lets `iodepth` requests of the job's largest chain fit. */
export function queueSizeFor(job: FioJob, maxRequestBytes: number): number {
  const maxMap = 256 * 1024 - (job.minAlignMask ? Math.ceil(job.minAlignMask / 2048) * 2048 : 0);
  const segment = Math.floor(maxMap / 512) * 512;
  const maxDescs = 2 + Math.ceil(maxRequestBytes / segment);
  return Math.min(4096, Math.max(256, roundUpPowerOfTwo(job.iodepth * maxDescs)));
}

/** Largest request of a job, rounded up to whole pages (its per-request guest buffer). */
export function maxRequestBytesFor(job: FioJob): number {
  return Math.ceil(maxBlockSize(job) / 4096) * 4096;
}

/**
 * The service configuration a job file runs on (what `serve --config` would
 * take). `poolSize`/`areas` override the job's; `fileDir` holds file-blk images.
 */
export function jobConfig(
  jf: JobFile,
  mode: 'bounce' | 'direct',
  opts: { poolSize?: number; poolSlots?: number; areas?: number; fileDir?: string } = {},
): ConfigFile {
  const ids = deviceIds(jf.jobs);
  const s = jf.settings;
  const pool: NonNullable<ConfigFile['pools']>[number] = {
    name: POOL_NAME,
    size: opts.poolSize ?? s.poolSize ?? 64 * 2 ** 20,
    areas: opts.areas ?? s.areas ?? defaultAreas(jf),
    backpressure: { policy: s.backpressure },
  };
  if (opts.poolSlots !== undefined) pool.slots = opts.poolSlots;
  const config: ConfigFile = {
    mode,
    pools: [pool],
    guests: [{ name: GUEST_NAME }],
    devices: jf.jobs.map((j, i) => {
      const maxRequestBytes = maxRequestBytesFor(j);
      const d: NonNullable<ConfigFile['devices']>[number] = {
        id: ids[i]!,
        kind: j.device,
        pool: POOL_NAME,
        guest: GUEST_NAME,
        capacity: j.size,
        queues: j.numjobs,
        queueSize: queueSizeFor(j, maxRequestBytes),
        depth: j.iodepth,
        maxRequestBytes,
        minAlignMask: j.minAlignMask,
      };
      if (j.device === 'file-blk') {
        d.file = join(opts.fileDir ?? tmpdir(), `${ids[i]}.img`);
        d.sync = 'none';
      }
      return d;
    }),
  };
  if (s.copyWorkers !== undefined) config.copy = { workers: s.copyWorkers };
  return config;
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

export interface DirectionResult extends FioDirection {}

export interface CloneResult {
  jobname: string;
  /** Section index. */
  job: number;
  /** Clone number within the section (0 .. numjobs-1). */
  clone: number;
  device: string;
  queue: number;
  /** Milliseconds from the start of measurement to this clone's last completion. */
  runtimeMs: number;
  read: DirectionResult;
  write: DirectionResult;
  /** Failed I/Os by error code. */
  errors: Record<string, number>;
}

export interface Sample {
  /** Milliseconds since measurement started (end of the interval). */
  t_ms: number;
  read_iops: number;
  write_iops: number;
  bw_bytes: number;
  /** Pool slots in use at the interval's peak (queues included). */
  pool_used_slots: number;
}

export interface MediatorView {
  mode: 'bounce' | 'direct';
  pool: {
    name: string;
    nslabs: number;
    nareas: number;
    bytes: number;
    /** Slots the virtqueues hold for the whole run (bounce mode). */
    queue_slots: number;
    used_hiwater_slots: number;
    used_hiwater_percent: number;
    map_failures: { full: number; too_large: number; invalid: number };
    maps: number;
  };
  /** Bytes the copy engine bounced, by direction (0 in direct mode). */
  bounced_bytes: { to_device: number; from_device: number };
  copies: { to_device: number; from_device: number };
  backpressure: { policy: string; waits: number; wait_seconds: number; timeouts: number };
  copy_workers: number;
  /** Requested vs granted queue depth per device (depth is capped by the queue size). */
  devices: { id: string; kind: string; queues: number; depth: number; iodepth: number }[];
}

export interface TotalResult {
  read: DirectionResult;
  write: DirectionResult;
  /** Reads and writes together. */
  all: { iops: number; bw_bytes: number; io_bytes: number; total_ios: number; clat_ns: ClatNs };
  runtimeMs: number;
}

export interface ModeResult {
  mode: 'bounce' | 'direct';
  clones: CloneResult[];
  total: TotalResult;
  mediator: MediatorView;
  timeline: Sample[];
  histogram: { le_ns: number; count: number }[];
  warnings: string[];
}

export interface ProgressSnapshot {
  mode: 'bounce' | 'direct';
  ramping: boolean;
  elapsedMs: number;
  /** 0..1 when known. */
  fraction: number | undefined;
  ios: number;
  bytes: number;
  /** Over the last interval. */
  iops: number;
  bwBytes: number;
}

export interface RunOptions {
  /** Called every sampling interval. */
  onProgress?: (p: ProgressSnapshot) => void;
  /** Sampling interval, ms. @default from the expected duration (100 to 1000) */
  intervalMs?: number;
  /**
   * The mediator's logger (device resets, faults, full pools...).
   * @default nothing is logged
   */
  log?: Logger;
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

interface DirAcc {
  ios: number;
  bytes: number;
  lat: LatencyRecorder;
}

interface Clone {
  job: FioJob;
  clone: number;
  device: BlkDriver;
  deviceId: string;
  rand: () => number;
  cursor: number;
  issued: number;
  issuedBytes: number;
  done: boolean;
  deadline: number;
  lastCompletion: number;
  read: DirAcc;
  write: DirAcc;
  errors: Map<string, number>;
}

function acc(): DirAcc {
  return { ios: 0, bytes: 0, lat: new LatencyRecorder() };
}

/** Runs every mode the job asks for (`both`: bounce then direct). */
export async function runJobFile(jf: JobFile, opts: RunOptions = {}): Promise<ModeResult[]> {
  const modes: ('bounce' | 'direct')[] =
    jf.settings.mode === 'both' ? ['bounce', 'direct'] : [jf.settings.mode];
  const results: ModeResult[] = [];
  for (const mode of modes) results.push(await runMode(jf, mode, opts));
  return results;
}

export async function runMode(
  jf: JobFile,
  mode: 'bounce' | 'direct',
  opts: RunOptions = {},
): Promise<ModeResult> {
  const needsDir = jf.jobs.some((j) => j.device === 'file-blk');
  const fileDir = needsDir ? mkdtempSync(join(tmpdir(), 'swiotlb-bench-')) : undefined;
  const config = parseConfig(jobConfig(jf, mode, fileDir ? { fileDir } : {}), {
    source: 'job file',
  });
  const m = new Mediator({ ...toMediatorSpec(config), ...(opts.log ? { log: opts.log } : {}) });
  try {
    return await measure(jf, mode, m, m.engine.workers, opts);
  } finally {
    await m.close();
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  }
}

async function measure(
  jf: JobFile,
  mode: 'bounce' | 'direct',
  m: Mediator,
  copyWorkers: number,
  opts: RunOptions,
): Promise<ModeResult> {
  const ids = deviceIds(jf.jobs);
  const devices = ids.map((id) => m.device(id)!);
  await Promise.all(devices.map((d) => d.ready()));
  const poolEntry = m.pools.get(POOL_NAME)!;
  const pool = poolEntry.pool;
  const gate = poolEntry.gate;
  const warnings: string[] = [];
  devices.forEach((d, i) => {
    const job = jf.jobs[i]!;
    if (d.depth < job.iodepth) {
      warnings.push(
        `[${job.name}] iodepth ${job.iodepth} capped to ${d.depth} by the queue size (${d.queueSize} descriptors)`,
      );
    }
  });

  const clones: Clone[] = [];
  jf.jobs.forEach((job, j) => {
    for (let c = 0; c < job.numjobs; c++) {
      clones.push({
        job,
        clone: c,
        device: devices[j]!,
        deviceId: ids[j]!,
        rand: prng((job.randseed + j * 7919 + c * 104729) >>> 0),
        cursor: 0,
        issued: 0,
        issuedBytes: 0,
        done: false,
        deadline: Number.POSITIVE_INFINITY,
        lastCompletion: 0,
        read: acc(),
        write: acc(),
        errors: new Map(),
      });
    }
  });

  const rampMs = Math.max(...jf.jobs.map((j) => j.rampTime)) * 1000;
  const runtimes = jf.jobs.map((j) => j.runtime).filter((r): r is number => r !== undefined);
  const expectedMs =
    jf.jobs.every((j) => j.timeBased) && runtimes.length > 0
      ? Math.max(...runtimes) * 1000
      : undefined;
  const intervalMs =
    opts.intervalMs ??
    (expectedMs === undefined
      ? 200
      : Math.min(1000, Math.max(100, Math.round(expectedMs / 60 / 50) * 50)));

  const queueSlots = pool.used();
  const live = { ios: 0, bytes: 0, readIos: 0, writeIos: 0 };
  let measuring = rampMs === 0;
  let measureStart = performance.now();
  const runStart = measureStart;
  let baseline = snapshot();

  function snapshot() {
    const e = m.engine.stats().totals;
    const g = gate.stats();
    const p = pool.stats();
    return { e, g, p };
  }

  const startMeasuring = () => {
    measuring = true;
    measureStart = performance.now();
    pool.resetHiwater();
    baseline = snapshot();
    for (const c of clones) {
      if (c.job.runtime !== undefined) c.deadline = measureStart + c.job.runtime * 1000;
    }
  };
  if (measuring) startMeasuring();

  const submitter = async (c: Clone): Promise<void> => {
    const dirs = jobDirections(c.job.rw);
    const random = c.job.rw.startsWith('rand');
    const job = c.job;
    const queue = c.clone;
    while (!c.done) {
      if (measuring) {
        if (performance.now() >= c.deadline) c.done = true;
        else if (job.numberIos !== undefined) c.done = c.issued >= job.numberIos;
        else if (!job.timeBased) c.done = c.issuedBytes >= job.ioSize;
        if (c.done) break;
      }
      const isRead = dirs.read && (!dirs.write || c.rand() * 100 < job.rwmixread);
      const len = pickSize(isRead ? job.bs.read : job.bs.write, c.rand());
      let offset: number;
      if (random) {
        offset = Math.floor(c.rand() * Math.floor(job.size / len)) * len;
      } else {
        if (c.cursor + len > job.size) c.cursor = 0;
        offset = c.cursor;
        c.cursor += len;
      }
      const counted = measuring;
      if (counted) {
        c.issued++;
        c.issuedBytes += len;
      }
      const t0 = performance.now();
      let ok = true;
      try {
        if (isRead) await c.device.read(offset / 512, len, false, queue);
        else await c.device.write(offset / 512, len, queue);
      } catch (err) {
        ok = false;
        const code = (err as { code?: string }).code ?? 'ERROR';
        c.errors.set(code, (c.errors.get(code) ?? 0) + 1);
        // An error that repeats at once (a closed device) must not spin forever.
        if (code === 'MEDIATOR_CLOSED') c.done = true;
      }
      const t1 = performance.now();
      if (ok) {
        live.ios++;
        live.bytes += len;
        if (isRead) live.readIos++;
        else live.writeIos++;
      }
      if (counted && ok && t0 >= measureStart) {
        const d = isRead ? c.read : c.write;
        d.ios++;
        d.bytes += len;
        d.lat.push((t1 - t0) * 1e6);
        c.lastCompletion = t1;
      }
    }
  };

  // Sampling: timeline, pool occupancy, progress.
  const timeline: Sample[] = [];
  let hiwater = 0;
  let last = { t: performance.now(), ios: 0, bytes: 0, readIos: 0, writeIos: 0 };
  const sample = (final: boolean) => {
    const now = performance.now();
    const dt = (now - last.t) / 1000;
    const p = pool.stats();
    const peak = Math.max(p.used_hiwater, p.used);
    if (measuring) {
      if (!final || dt > 0.02) {
        timeline.push({
          t_ms: Math.round(now - measureStart),
          read_iops: dt > 0 ? (live.readIos - last.readIos) / dt : 0,
          write_iops: dt > 0 ? (live.writeIos - last.writeIos) / dt : 0,
          bw_bytes: dt > 0 ? (live.bytes - last.bytes) / dt : 0,
          pool_used_slots: peak,
        });
      }
      hiwater = Math.max(hiwater, peak);
      pool.resetHiwater();
    }
    if (opts.onProgress) {
      let fraction: number | undefined;
      const elapsedMs = now - runStart;
      if (expectedMs !== undefined) {
        fraction = Math.min(1, elapsedMs / (expectedMs + rampMs));
      } else if (measuring) {
        let f = 0;
        for (const c of clones) {
          const j = c.job;
          let cf = j.numberIos !== undefined ? c.issued / j.numberIos : c.issuedBytes / j.ioSize;
          if (j.runtime !== undefined) {
            cf = Math.max(cf, (now - measureStart) / (j.runtime * 1000));
          }
          f += Math.min(1, c.done ? 1 : cf);
        }
        fraction = f / clones.length;
      }
      opts.onProgress({
        mode,
        ramping: !measuring,
        elapsedMs,
        fraction,
        ios: live.ios,
        bytes: live.bytes,
        iops: dt > 0 ? (live.ios - last.ios) / dt : 0,
        bwBytes: dt > 0 ? (live.bytes - last.bytes) / dt : 0,
      });
    }
    last = { t: now, ...live };
  };
  const ticker = setInterval(() => sample(false), intervalMs);
  let rampTimer: NodeJS.Timeout | undefined;
  if (!measuring) {
    rampTimer = setTimeout(() => {
      startMeasuring();
      last = { t: performance.now(), ...live };
    }, rampMs);
  }
  try {
    await Promise.all(
      clones.flatMap((c) =>
        Array.from({ length: Math.min(c.job.iodepth, c.device.depth) }, () => submitter(c)),
      ),
    );
  } finally {
    clearInterval(ticker);
    if (rampTimer) clearTimeout(rampTimer);
  }
  if (!measuring) startMeasuring(); // every clone finished during the ramp
  sample(true);

  const end = snapshot();
  const results: CloneResult[] = clones.map((c) => {
    const runtimeMs = Math.max(1, (c.lastCompletion || measureStart) - measureStart);
    return {
      jobname: c.job.name,
      job: c.job.index,
      clone: c.clone,
      device: c.deviceId,
      queue: c.clone,
      runtimeMs,
      read: fioDirection(c.read.ios, c.read.bytes, runtimeMs, sortedLatencies([c.read.lat])),
      write: fioDirection(c.write.ios, c.write.bytes, runtimeMs, sortedLatencies([c.write.lat])),
      errors: Object.fromEntries(c.errors),
    };
  });
  const runtimeMs = Math.max(1, Math.round(Math.max(...results.map((r) => r.runtimeMs))));
  const readSorted = sortedLatencies(clones.map((c) => c.read.lat));
  const writeSorted = sortedLatencies(clones.map((c) => c.write.lat));
  const allSorted = sortedLatencies(clones.flatMap((c) => [c.read.lat, c.write.lat]));
  const sum = (f: (c: Clone) => number) => clones.reduce((s, c) => s + f(c), 0);
  const readIos = sum((c) => c.read.ios);
  const writeIos = sum((c) => c.write.ios);
  const readBytes = sum((c) => c.read.bytes);
  const writeBytes = sum((c) => c.write.bytes);
  const seconds = runtimeMs / 1000;
  const total: TotalResult = {
    read: fioDirection(readIos, readBytes, runtimeMs, readSorted),
    write: fioDirection(writeIos, writeBytes, runtimeMs, writeSorted),
    all: {
      iops: Math.round(((readIos + writeIos) / seconds) * 1000) / 1000,
      bw_bytes: Math.round((readBytes + writeBytes) / seconds),
      io_bytes: readBytes + writeBytes,
      total_ios: readIos + writeIos,
      clat_ns: clatSummary(allSorted),
    },
    runtimeMs,
  };

  const b = baseline;
  const nslabs = pool.geometry.nslabs;
  const mediator: MediatorView = {
    mode,
    pool: {
      name: POOL_NAME,
      nslabs,
      nareas: pool.geometry.nareas,
      bytes: pool.geometry.bytes,
      queue_slots: queueSlots,
      used_hiwater_slots: hiwater,
      used_hiwater_percent: Math.round((hiwater / nslabs) * 10000) / 100,
      map_failures: {
        full: end.p.map_failures.full - b.p.map_failures.full,
        too_large: end.p.map_failures.too_large - b.p.map_failures.too_large,
        invalid: end.p.map_failures.invalid - b.p.map_failures.invalid,
      },
      maps: end.p.maps - b.p.maps,
    },
    bounced_bytes: {
      to_device: end.e.to_device.bytes - b.e.to_device.bytes,
      from_device: end.e.from_device.bytes - b.e.from_device.bytes,
    },
    copies: {
      to_device: end.e.to_device.copies - b.e.to_device.copies,
      from_device: end.e.from_device.copies - b.e.from_device.copies,
    },
    backpressure: {
      policy: gate.policy,
      waits: end.g.waits - b.g.waits,
      wait_seconds: Math.round((end.g.waitSeconds - b.g.waitSeconds) * 1e6) / 1e6,
      timeouts: end.g.timeouts - b.g.timeouts,
    },
    copy_workers: copyWorkers,
    devices: devices.map((d, i) => ({
      id: d.id,
      kind: d.kind,
      queues: d.queueCount,
      depth: d.depth,
      iodepth: jf.jobs[i]!.iodepth,
    })),
  };
  return {
    mode,
    clones: results,
    total,
    mediator,
    timeline,
    histogram: latencyHistogram(allSorted),
    warnings,
  };
}
