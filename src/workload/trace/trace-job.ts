import { MediatorError } from '../../errors.js';
import { MAX_MIN_ALIGN_MASK } from '../../mediator/limits.js';
import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { roundUpPowerOfTwo } from '../../swiotlb/geometry.js';
import { type JobFile, parseJobFile } from '../fio-job.js';
import { fioJobText, jobShape } from './job-shape.js';
import { DATA_MIN_BYTES, type DeviceProfile } from './profile.js';

/**
 * The traced workload as a fio job file for this project's runner (`bench
 * --trace`, and the service configuration of `size --trace`): one job section
 * per device that bounced (or per device with data, when none did), its I/O
 * sizes (bssplit), directions (rwmixread), CPUs (numjobs) and concurrency
 * (iodepth) from profile.ts and job-shape.ts, its min_align_mask; the pool's size and areas in
 * [global]. What a job file cannot carry (timing, offsets, the order of sizes)
 * is listed in {@link TRACED_JOB_LIMITS} and in docs/trace.md.
 */

export interface TracedJobOptions {
  /** @default 'both' (bounce, then direct: the cost of isolation) */
  mode?: 'bounce' | 'direct' | 'both';
  /** Seconds each mode runs (time_based). @default 10 */
  runtime?: number;
  /** The pool's bytes (the traced pool's). Omitted: the runner's default (64 MiB). */
  poolBytes?: number;
  /** The pool's areas (the traced pool's). Omitted: numjobs rounded up. */
  areas?: number;
  /** @default 'ram-blk' */
  device?: 'ram-blk' | 'null';
}

export interface TracedJob {
  /** The job file's text. */
  text: string;
  jobFile: JobFile;
  /** The devices that became job sections, in order. */
  devices: string[];
  /** Devices left out, and why. */
  notes: string[];
}

/** What a generated job cannot carry over from the trace (printed with it). */
export const TRACED_JOB_LIMITS = [
  "timing: the runner issues each clone's next I/O as soon as one completes (iodepth stays full); the trace's think times and bursts are not replayed",
  'order: sizes and directions are drawn at random in the traced proportions (bssplit, rwmixread), not in the traced order',
  "offsets: the device region and the guest buffers are the runner's (random block-aligned offsets); the traced buffers' page offsets are not kept (min_align_mask is)",
  'sizes: the 16 most frequent I/O sizes per direction, rounded up to 512 bytes',
  'devices: each becomes a virtio-blk device of this service (ram-blk), whatever the traced device was (network, NVMe)',
];

/** A job section name for a device (no "]" or line breaks; "global" is taken). */
function sectionName(device: string, taken: Set<string>): string {
  let name = device.replace(/[\]\r\n;#]/g, '_').trim() || 'device';
  if (name.toLowerCase() === 'global') name = `${name}-device`;
  let n = name;
  for (let i = 2; taken.has(n); i++) n = `${name}-${i}`;
  taken.add(n);
  return n;
}

function hasData(p: DeviceProfile): boolean {
  const shape = jobShape(p);
  return shape.read.length + shape.write.length > 0;
}

/**
 * The job file for the traced devices.
 * @throws TRACE_NO_DMA_EVENTS when no device has data I/O to replay
 */
export function tracedJob(profiles: readonly DeviceProfile[], o: TracedJobOptions = {}): TracedJob {
  const notes: string[] = [];
  const bouncing = profiles.filter((p) => p.bounced + p.outside > 0);
  const chosen = (bouncing.length > 0 ? bouncing : profiles).filter((p) => {
    if (hasData(p)) return true;
    notes.push(`${p.device}: no data mappings of ${DATA_MIN_BYTES} bytes or more: left out`);
    return false;
  });
  if (chosen.length === 0) {
    throw new MediatorError(
      'TRACE_NO_DMA_EVENTS',
      `no device of the trace has data mappings (${DATA_MIN_BYTES} bytes or more) to replay as I/O${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
    );
  }
  if (bouncing.length === 0) {
    notes.push('no device bounced in the trace: every device with data is replayed');
  }
  const taken = new Set<string>();
  const sections = chosen.map((p) => {
    const mask = p.minAlignMask <= MAX_MIN_ALIGN_MASK ? p.minAlignMask : 0;
    return fioJobText(sectionName(p.device, taken), jobShape(p), mask);
  });
  const runtime = o.runtime ?? 10;
  const global = [
    '; The traced workload (swiotlb-mediator bench --trace): one job per device.',
    '[global]',
    `mode=${o.mode ?? 'both'}`,
    `device=${o.device ?? 'ram-blk'}`,
    `runtime=${runtime}`,
    'time_based',
  ];
  if (o.poolBytes !== undefined) {
    global.push(
      `pool_size=${Math.max(IO_TLB_SIZE, Math.floor(o.poolBytes / IO_TLB_SIZE) * IO_TLB_SIZE)}`,
    );
  }
  if (o.areas !== undefined) global.push(`areas=${roundUpPowerOfTwo(o.areas)}`);
  const text = `${global.join('\n')}\n\n${sections.join('\n')}`;
  return {
    text,
    jobFile: parseJobFile(text, 'the traced job'),
    devices: chosen.map((p) => p.device),
    notes,
  };
}
