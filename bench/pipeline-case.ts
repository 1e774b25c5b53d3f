/**
 * One case of bench:pipeline (a device, an op, a size, a mode, a pool), measured
 * in a process of its own by default: bench/pipeline.bench.ts forks this file
 * once per case, hands it the case in SWIOTLB_PIPELINE_CASE and gets the result
 * back over IPC. Run in-process (`--in-process`), runCase() is called directly.
 *
 * Every case starts from the same state, whatever ran before it:
 * - a fresh process: no device thread of an earlier case still spinning, no
 *   heap, JIT or GC state inherited (a first case used to measure a cold JIT and
 *   later ones a warm one);
 * - memory pre-touched: every page of the pool, the RAM disk and the guest memory
 *   the device uses is written once before the first I/O (an atomic add of 0 per page, safe beside
 *   the device thread that already polls its queue). A SharedArrayBuffer starts
 *   as the kernel's zero page: reads of a disk nobody wrote all hit one cached
 *   page (direct-mode reads looked 2-3x faster than real memory allows), and the
 *   first write to each page takes a fault. `--cold` skips this, to measure it;
 * - the heap collected (when the process runs with --expose-gc, as the fork does)
 *   after the warm-up, before the window.
 */
import { Mediator } from '../src/mediator/mediator.js';
import type { Placement } from '../src/swiotlb/warm.js';
import type { DeviceKind } from '../src/virtio/device-spec.js';
import type { CopyEngineOptions } from '../src/workers/copy-engine.js';
import { closeProbe, coreToCoreNs } from './c2c-probe.js';
import { threadTime } from './thread-cpu.js';

/** The modes bench:pipeline compares, by the names its JSON carries. */
export const BENCH_MODES = ['direct', 'bounce', 'bounce-tuned', 'shared'] as const;
export type BenchMode = (typeof BENCH_MODES)[number];

export interface CaseSpec {
  device: DeviceKind;
  op: 'read' | 'write';
  size: number;
  mode: BenchMode;
  /** Pool size (bounce modes and shared); direct mode has none. */
  poolMiB: number;
  poolAreas: number | undefined;
  depth: number;
  durationMs: number;
  warmupMs: number;
  copy: CopyEngineOptions;
  deviceTuning: { spinMicros?: number; pollMicros?: number };
  /** Skip pre-touching memory (measure first-touch and zero-page effects). */
  cold: boolean;
  /** The parent's core-to-core probe just before the case (0: not probed). */
  c2cBeforeNs?: number;
}

export interface CaseResult {
  device: DeviceKind;
  op: 'read' | 'write';
  size: number;
  mode: BenchMode;
  /** The pool's size and areas (0 in direct mode, which has none). */
  pool_mib: number;
  pool_areas: number;
  /** Which free slots the pool hands out (null in direct mode). */
  placement: Placement | null;
  iops: number;
  gbps: number;
  p50_us: number;
  p99_us: number;
  /**
   * Guest-side copy time per request, microseconds, all copy threads (the copy
   * engine's timing over the measured window); 0 where nothing is copied.
   */
  copy_us_per_io: number;
  /** Share of the copied bytes copied inline on the main thread (1 = all). */
  inline_copy_share: number;
  /**
   * The main thread's time on a CPU per request over the measured window,
   * microseconds (bench/thread-cpu.ts), and that time over the window's length;
   * null where the kernel does not tell (no /proc/thread-self/schedstat).
   */
  main_cpu_us_per_io: number | null;
  main_busy: number | null;
  /**
   * Core-to-core round trip (bench/c2c-probe.ts), nanoseconds, probed just before
   * the case started (by the parent) and right after its window (by the case).
   */
  c2c_before_ns: number;
  c2c_after_ns: number;
  /** Runs behind this result with a far probe before or after (bench:pipeline sets it). */
  far_runs: number;
  /** Measurements behind this result (--repeat): the figures are their medians. */
  runs: number;
  iops_min: number;
  iops_max: number;
}

/** The environment variable a forked case reads its spec from. */
export const CASE_ENV = 'SWIOTLB_PIPELINE_CASE';

const PAGE = 4096;
/** The device's capacity in every case. */
export const CAPACITY = 64 * 2 ** 20;
/** Latencies kept per case: enough for 0.6 s at 4M IOPS; allocated once per process. */
let latencies: Float64Array | undefined;

/** Writes every page of `buffer`'s first `bytes` once (an atomic add of 0: no value changes, no race). */
function pretouch(buffer: SharedArrayBuffer, bytes = buffer.byteLength): void {
  const words = new Int32Array(buffer, 0, bytes >> 2);
  for (let i = 0; i < words.length; i += PAGE / 4) Atomics.add(words, i, 0);
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a bench case's Mediator is built from. */
export interface CaseMediator {
  mode: BenchMode;
  device: DeviceKind;
  size: number;
  depth: number;
  poolMiB: number;
  poolAreas?: number | undefined;
  copy: CopyEngineOptions;
  deviceTuning: { spinMicros?: number; pollMicros?: number };
}

/**
 * The Mediator of one mode's case: one guest, one pool, one device of `CAPACITY`.
 * bounce-tuned is bounce with warm placement and reads without the copy-in;
 * shared runs on warm placement, as the service's shared mode does.
 */
export function caseMediator(c: CaseMediator): Mediator {
  const { mode } = c;
  return new Mediator({
    mode: mode === 'bounce-tuned' ? 'bounce' : mode,
    copy: c.copy,
    pools: [
      {
        name: 'pool',
        size: c.poolMiB * 2 ** 20,
        ...(c.poolAreas === undefined ? {} : { areas: c.poolAreas }),
        // bounce-tuned, and shared as the service runs it: recently freed slots
        // first (src/swiotlb/warm.ts).
        placement: mode === 'bounce-tuned' || mode === 'shared' ? 'warm' : 'linux',
      },
    ],
    guests: [{ name: 'guest', size: 256 * 2 ** 20 }],
    devices: [
      {
        id: 'dev',
        kind: c.device,
        guest: 'guest',
        pool: 'pool',
        capacity: CAPACITY,
        depth: c.depth,
        queueSize: 256,
        maxRequestBytes: Math.max(c.size, 64 * 1024),
        // bounce-tuned: reads without the copy-in.
        fromDeviceBounce: mode === 'bounce-tuned' ? 'used-length' : 'linux',
        ...c.deviceTuning,
      },
    ],
  });
}

/** Builds the case's Mediator, warms it up, measures one window, closes it. */
export async function runCase(spec: CaseSpec): Promise<CaseResult> {
  const { device, op, size, mode, poolMiB, depth } = spec;
  const m = caseMediator(spec);
  try {
    const dev = m.device('dev')!;
    await dev.ready();
    const pool = m.pools.get('pool')!.pool;
    if (!spec.cold) {
      // Guest memory: the part the device's queues and request buffers use.
      const guest = m.guests.get('guest')!.memory;
      pretouch(guest.buffer, Math.ceil(guest.reservedBytes / PAGE) * PAGE);
      pretouch(pool.share().data);
      const backing = dev.workerData(0).backing;
      if (backing) pretouch(backing);
    }
    const sectors = (CAPACITY - size) / 512;
    latencies ??= new Float64Array(4_000_000);
    const lat = latencies;
    let count = 0;
    let recording = false;
    let stop = false;
    const loop = async (seed: number) => {
      let lba = (seed * 7919) % sectors;
      while (!stop) {
        lba = (lba + 4099 * (size / 512)) % sectors;
        const t0 = performance.now();
        if (op === 'write') await dev.write(lba, size);
        else await dev.read(lba, size, false);
        if (recording && count < lat.length) lat[count++] = performance.now() - t0;
      }
    };
    const loops = Array.from({ length: depth }, (_, i) => loop(i));
    await sleep(spec.warmupMs);
    // The same heap state for every case: collect what the warm-up left.
    (globalThis as { gc?: () => void }).gc?.();
    await sleep(20);
    recording = true;
    const copies0 = m.engine.stats().byWriter;
    const main0 = threadTime();
    const t0 = performance.now();
    await sleep(spec.durationMs);
    const done = count;
    const elapsed = (performance.now() - t0) / 1000;
    const main1 = threadTime();
    const copies1 = m.engine.stats().byWriter;
    recording = false;
    let copySeconds = 0;
    let copiedBytes = 0;
    for (const [i, w] of copies1.entries()) {
      copySeconds += w.seconds - copies0[i]!.seconds;
      copiedBytes += w.bytes - copies0[i]!.bytes;
    }
    const inlineBytes = copies1[0]!.bytes - copies0[0]!.bytes;
    stop = true;
    await Promise.all(loops);
    // The topology the window ran on, probed at once (no I/O runs now; the device
    // thread sleeps after its spin).
    const c2cAfter = await coreToCoreNs();
    await closeProbe();
    const sorted = lat.slice(0, done).sort();
    const iops = Math.round(done / elapsed);
    return {
      device,
      op,
      size,
      mode,
      pool_mib: mode === 'direct' ? 0 : poolMiB,
      pool_areas: mode === 'direct' ? 0 : pool.geometry.nareas,
      placement: mode === 'direct' ? null : pool.placement,
      iops,
      gbps: (done * size) / elapsed / 1e9,
      p50_us: percentile(sorted, 50) * 1000,
      p99_us: percentile(sorted, 99) * 1000,
      copy_us_per_io: done > 0 ? (copySeconds / done) * 1e6 : 0,
      inline_copy_share: copiedBytes > 0 ? inlineBytes / copiedBytes : 0,
      main_cpu_us_per_io:
        main0 && main1 && done > 0 ? (main1.runNs - main0.runNs) / 1000 / done : null,
      main_busy: main0 && main1 ? (main1.runNs - main0.runNs) / 1e9 / elapsed : null,
      c2c_before_ns: spec.c2cBeforeNs ?? 0,
      c2c_after_ns: c2cAfter,
      far_runs: 0,
      runs: 1,
      iops_min: iops,
      iops_max: iops,
    };
  } finally {
    await m.close();
  }
}

// A forked case: run it, send the result, exit.
const forked = process.env[CASE_ENV];
if (forked !== undefined && process.send) {
  const send = process.send.bind(process);
  runCase(JSON.parse(forked) as CaseSpec).then(
    (result) => send({ result }, () => process.exit(0)),
    (err: Error) => send({ error: err.stack ?? err.message }, () => process.exit(1)),
  );
}
