/**
 * Runs a fio job file in-process against a Mediator and measures it.
 *
 * - One Mediator per mode (mode `both`: bounce, then direct; `all`: bounce,
 *   bounce-tuned, shared, direct), one pool `pool0`.
 * - Each job section is one virtio-blk device; each of its `numjobs` clones is one
 *   queue of that device (queue q starts its maps in pool area q mod nareas) and
 *   keeps `iodepth` requests in flight: `iodepth` async submitters on that queue.
 * - Clones share the device's region [0, size), as fio's clones share one
 *   `filename=` block device (fio's default, a file per clone, would need a
 *   device of size x numjobs). Where each I/O goes follows fio's io_u.c
 *   (setup.ts IoPicker): sequential jobs keep one offset per direction; random
 *   jobs keep a map of the blocks done and cover each block once per pass
 *   (`norandommap`: no map); the PRNG is not fio's, so the sequence is not fio's.
 * - A clone stops (fio's backend.c do_io() and keep_running()) when `runtime` has
 *   passed since its own ramp ended, or, unless `time_based`, when it has issued
 *   `io_size` (default `size`) bytes, ramp included, or `number_ios` I/Os since
 *   its ramp ended, whichever comes first. Each clone ramps for its own job's
 *   `ramp_time`, not measured.
 *
 * A run is three steps, each in its own module: setup.ts builds the Mediator and
 * the clones (from job-config.ts, the job's service configuration), sampling.ts
 * runs the measured window, results.ts turns its counters into the report.
 */
import { type JobFile, type JobMode, modesOf } from './fio-job.js';
import { type ModeResult, modeResult } from './results.js';
import { measureWindow, type RunOptions } from './sampling.js';
import { depthWarnings, makeClones, openRig } from './setup.js';

export {
  defaultAreas,
  deviceIds,
  GUEST_NAME,
  jobConfig,
  maxRequestBytesFor,
  POOL_NAME,
  queueSizeFor,
} from './job-config.js';
export type {
  CloneResult,
  DirectionResult,
  MediatorView,
  ModeResult,
  TotalResult,
} from './results.js';
export type { ProgressSnapshot, RunOptions, Sample } from './sampling.js';

/** Runs every mode the job asks for (`both`: bounce then direct; `all`: every mode). */
export async function runJobFile(jf: JobFile, opts: RunOptions = {}): Promise<ModeResult[]> {
  const results: ModeResult[] = [];
  for (const mode of modesOf(jf.settings.mode)) results.push(await runMode(jf, mode, opts));
  return results;
}

/** Runs the job file in one mode, on a Mediator of its own. */
export async function runMode(
  jf: JobFile,
  mode: JobMode,
  opts: RunOptions = {},
): Promise<ModeResult> {
  const rig = await openRig(jf, mode, opts.log);
  try {
    const warnings = depthWarnings(jf, rig);
    const clones = makeClones(jf, rig);
    // The virtqueues' slots, held for the whole run (bounce mode), before any I/O.
    const queueSlots = rig.pool.used();
    const window = await measureWindow(jf, mode, rig, clones, opts);
    return modeResult(jf, mode, rig, clones, window, queueSlots, warnings);
  } finally {
    await rig.close();
  }
}
