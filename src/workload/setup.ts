/**
 * Setting a job up: the Mediator a job file runs on (one per mode), its devices
 * once they serve, and the clones (one per numjobs clone of each job section)
 * that the measured window drives.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, toMediatorSpec } from '../config/load.js';
import { isMediatorError, MediatorError } from '../errors.js';
import type { BlkDriver } from '../mediator/blk-driver.js';
import { Mediator } from '../mediator/mediator.js';
import type { PoolGate } from '../mediator/pool-gate.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import type { Logger } from '../util/logger.js';
import { type FioJob, type JobFile, type JobMode, prng } from './fio-job.js';
import { deviceIds, jobConfig, POOL_NAME } from './job-config.js';
import { LatencyRecorder } from './stats.js';

/** A job file's Mediator for one mode, with what the run reads of it. */
export interface JobRig {
  mediator: Mediator;
  /** The one pool and its back-pressure gate. */
  pool: SwiotlbPool;
  gate: PoolGate;
  /** One device per job section, in section order, and their ids. */
  devices: BlkDriver[];
  ids: string[];
  /** Closes the Mediator and removes the file-blk images. */
  close(): Promise<void>;
}

/**
 * Builds the Mediator of {@link jobConfig} for `mode` (file-blk images in a fresh
 * temporary folder) and waits until every device serves.
 * @throws MEDIATOR_BAD_CONFIG when the job's configuration cannot run
 */
export async function openRig(jf: JobFile, mode: JobMode, log?: Logger): Promise<JobRig> {
  const needsDir = jf.jobs.some((j) => j.device === 'file-blk');
  const fileDir = needsDir ? mkdtempSync(join(tmpdir(), 'swiotlb-bench-')) : undefined;
  const removeDir = () => {
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  };
  let mediator: Mediator;
  try {
    const config = parseConfig(jobConfig(jf, mode, fileDir ? { fileDir } : {}), {
      source: 'job file',
    });
    mediator = new Mediator({ ...toMediatorSpec(config), ...(log ? { log } : {}) });
  } catch (err) {
    removeDir();
    if (isMediatorError(err)) throw err;
    // What the config cannot foresee: memory the machine will not give (a
    // ram-blk disk of the job's size=, guest memory), as serve reports it.
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `job file: the mediator cannot be built for mode ${mode}: ${(err as Error).message} (the devices' size= and the pool are allocated in memory)`,
      { cause: (err as { code?: string }).code ?? (err as Error).name },
    );
  }
  const close = async () => {
    try {
      await mediator.close();
    } finally {
      removeDir();
    }
  };
  try {
    const ids = deviceIds(jf.jobs);
    const devices = ids.map((id) => mediator.device(id)!);
    await Promise.all(devices.map((d) => d.ready()));
    const { pool, gate } = mediator.pools.get(POOL_NAME)!;
    return { mediator, pool, gate, devices, ids, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What one direction of a clone did in the measured window. */
export interface DirAcc {
  ios: number;
  bytes: number;
  lat: LatencyRecorder;
}

/**
 * One numjobs clone of a job section: queue `clone` of its device, driven by
 * `iodepth` submitters (capped at the device's depth) that share its cursor,
 * PRNG and counters.
 */
export interface Clone {
  job: FioJob;
  clone: number;
  device: BlkDriver;
  deviceId: string;
  rand: () => number;
  /** Next offset of a sequential job. */
  cursor: number;
  /** I/Os and bytes issued in the measured window (the stop conditions). */
  issued: number;
  issuedBytes: number;
  done: boolean;
  /** performance.now() past which the clone stops (runtime); Infinity without one. */
  deadline: number;
  lastCompletion: number;
  read: DirAcc;
  write: DirAcc;
  /** Failed I/Os by error code. */
  errors: Map<string, number>;
}

function acc(): DirAcc {
  return { ios: 0, bytes: 0, lat: new LatencyRecorder() };
}

/** The clones of every job section, each seeded from the job's randseed, section and clone. */
export function makeClones(jf: JobFile, rig: JobRig): Clone[] {
  const clones: Clone[] = [];
  jf.jobs.forEach((job, j) => {
    for (let c = 0; c < job.numjobs; c++) {
      clones.push({
        job,
        clone: c,
        device: rig.devices[j]!,
        deviceId: rig.ids[j]!,
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
  return clones;
}

/** One warning per device whose queue size capped the job's iodepth. */
export function depthWarnings(jf: JobFile, rig: JobRig): string[] {
  const warnings: string[] = [];
  rig.devices.forEach((d, i) => {
    const job = jf.jobs[i]!;
    if (d.depth < job.iodepth) {
      warnings.push(
        `[${job.name}] iodepth ${job.iodepth} capped to ${d.depth} by the queue size (${d.queueSize} descriptors)`,
      );
    }
  });
  return warnings;
}
