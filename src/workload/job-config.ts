/**
 * The service configuration a fio job file runs on: one pool `pool0`, one guest
 * `guest0`, one virtio-blk device per job section with one queue per clone.
 * Pure (no Mediator, no threads): the runner builds its Mediator from it, and
 * `size` prints it and simulates its allocation pattern (sizing.ts).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import { type ConfigFile, poolGeometryOptions } from '../config/schema.js';
import { requestChain } from '../mediator/blk-options.js';
import { DEVICE_DEFAULTS, defaultSpinMicrosFor } from '../mediator/defaults.js';
import { PAGE_SIZE } from '../swiotlb/constants.js';
import { computeGeometry, type Geometry, roundUpPowerOfTwo } from '../swiotlb/geometry.js';
import { type FioJob, type JobFile, type JobMode, jobPlacement, maxBlockSize } from './fio-job.js';

export const POOL_NAME = 'pool0';
export const GUEST_NAME = 'guest0';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/**
 * The runner's largest virtqueue (within the bounce-mode limit, MAX_BOUNCE_QUEUE_SIZE):
 * a deeper iodepth is capped by the device, and the report warns of it.
 */
const MAX_JOB_QUEUE_SIZE = 4096;

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

/**
 * Virtqueue size that lets `iodepth` requests of the job's largest chain fit
 * (requestChain, in bounce mode: data split at the max mapping size of the job's
 * min_align_mask), at least the device default, at most MAX_JOB_QUEUE_SIZE.
 */
export function queueSizeFor(job: FioJob, maxRequestBytes: number): number {
  const { maxDescs } = requestChain({ maxRequestBytes, minAlignMask: job.minAlignMask }, 'bounce');
  return Math.min(
    MAX_JOB_QUEUE_SIZE,
    Math.max(DEVICE_DEFAULTS.queueSize, roundUpPowerOfTwo(job.iodepth * maxDescs)),
  );
}

/** Largest request of a job, rounded up to whole pages (its per-request guest buffer). */
export function maxRequestBytesFor(job: FioJob): number {
  return Math.ceil(maxBlockSize(job) / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * A pool in the kernel's terms, as the config takes it: a restricted-dma-pool of
 * `restricted` bytes, or a default pool of `slots` (swiotlb=<nslabs>) or `size`
 * (swiotlb_adjust_size()) in `areas` areas.
 */
export interface JobPool {
  restricted?: number;
  size?: number;
  slots?: number;
  areas?: number;
}

/**
 * The job's pool: `restricted=`, or `swiotlb=` / `pool_size=` / `areas=` (the
 * areas default to the largest numjobs, rounded up to a power of two).
 */
export function jobPool(jf: JobFile): JobPool {
  const s = jf.settings;
  if (s.restricted !== undefined) return { restricted: s.restricted };
  return {
    ...(s.slots !== undefined ? { slots: s.slots } : {}),
    ...(s.poolSize !== undefined ? { size: s.poolSize } : {}),
    areas: s.areas ?? defaultAreas(jf),
  };
}

/**
 * The service configuration a job file runs on (what `serve --config` would
 * take). `pool` replaces the job's pool; `fileDir` holds file-blk images.
 */
export function jobConfig(
  jf: JobFile,
  mode: JobMode,
  opts: { pool?: JobPool; fileDir?: string } = {},
): ConfigFile {
  const ids = deviceIds(jf.jobs);
  const s = jf.settings;
  // bounce-tuned: bounce with the options that cost less and keep the isolation:
  // warm placement (the pool's `placement: "warm"`) and reads without the copy-in;
  // shared runs warm too unless the job says otherwise (jobPlacement).
  const pool: NonNullable<ConfigFile['pools']>[number] = {
    name: POOL_NAME,
    ...(opts.pool ?? jobPool(jf)),
    placement: jobPlacement(s, mode),
    backpressure: { policy: s.backpressure },
  };
  // A job is a closed loop of I/O in one process: its device threads poll as the
  // library's do, not as the HTTP service's (serviceDeviceSpinMicros).
  const spinMicros = defaultSpinMicrosFor(jf.jobs.map((j) => ({ queues: j.numjobs })));
  const config: ConfigFile = {
    kernel: s.kernel,
    mode: mode === 'bounce-tuned' ? 'bounce' : mode,
    fromDeviceBounce: mode === 'bounce-tuned' ? 'used-length' : s.fromDeviceBounce,
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
        spinMicros,
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

/**
 * The pool a job runs on (bounce mode), as the kernel builds it, with the lines
 * the kernel logs while building it (Geometry.log).
 * @throws MEDIATOR_BAD_CONFIG when the job's pool is one the kernel would not build
 */
export function jobPoolGeometry(jf: JobFile): Geometry {
  const config = parseConfig(jobConfig(jf, 'bounce'), { source: 'job file' });
  return computeGeometry(poolGeometryOptions(config.pools[0]!));
}
