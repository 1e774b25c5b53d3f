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
 *   after the warm-up, before the first window.
 *
 * And it is measured in the state of the machine it names: in short windows
 * (`windowMs`, each after a ramp with its requests flowing), with the
 * core-to-core round trip probed between each two while no I/O runs. The host
 * moves the two vCPUs between a near and a far state within seconds
 * (docs/performance.md, "What made one case swing"), and the far state costs the
 * bounce modes far more than direct mode, so a case counts only its near windows
 * when asked (`nearOnly`, bench:pipeline `--topology near`), measuring up to
 * WINDOW_BUDGET times the windows it needs; with no near window, all count and
 * the result says so (`far_runs`).
 */
import { Mediator } from '../src/mediator/mediator.js';
import type { Placement } from '../src/swiotlb/warm.js';
import type { DeviceKind } from '../src/virtio/device-spec.js';
import type { CopyEngineOptions } from '../src/workers/copy-engine.js';
import { closeProbe, coreToCoreNs, isFar } from './c2c-probe.js';
import { anonHugeMiB } from './huge-pages.js';
import { median } from './median.js';
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
  /** Length of each measured window; the case measures windows until `durationMs` of them count. */
  windowMs: number;
  /**
   * Count only windows whose cores were near, by the probes around each (`--topology
   * near`); false counts every window. When no window was near, every one counts.
   */
  nearOnly: boolean;
  /** The lowest core-to-core round trip the parent has seen (0: none yet). */
  floorNs?: number;
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
   * The device thread's work per request over the measured window, microseconds:
   * the window's length less the time the thread spent polling for requests or
   * asleep (its idle clock, src/virtio/thread-clock.ts), over the requests done;
   * and that work over the window's length. It includes any time the scheduler
   * took the thread off its CPU while it worked. Null when the clock said nothing
   * usable.
   */
  device_us_per_io: number | null;
  device_busy: number | null;
  /**
   * Core-to-core round trip (bench/c2c-probe.ts), nanoseconds, probed between the
   * case's windows (with no I/O running): the medians of the probes just before
   * and just after the windows that count, and the lowest round trip the case
   * knew of (its own probes and the parent's floor).
   */
  c2c_before_ns: number;
  c2c_after_ns: number;
  c2c_floor_ns: number;
  /**
   * MiB of the case process's anonymous memory on huge pages once its memory was
   * pre-touched (AnonHugePages; bench:pipeline --pages), null where Linux does not say.
   */
  huge_pages_mib: number | null;
  /** Windows that count in this result, and windows measured with the cores far. */
  windows: number;
  far_windows: number;
  /** Runs behind this result that count a window with the cores far. */
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
/** Latencies kept per case (the rest are counted, not kept): 2.4 s of windows at 1.6M IOPS; allocated once per process. */
let latencies: Float64Array | undefined;

/** Writes every page of `buffer`'s first `bytes` once (an atomic add of 0: no value changes, no race). */
function pretouch(buffer: SharedArrayBuffer, bytes = buffer.byteLength): void {
  const words = new Int32Array(buffer, 0, bytes >> 2);
  for (let i = 0; i < words.length; i += PAGE / 4) Atomics.add(words, i, 0);
}

/**
 * Pre-touches what a {@link caseMediator} case's I/O touches: the guest memory its
 * queues and request buffers use, the pool, and the device's disk.
 */
export function pretouchCase(m: Mediator): void {
  const guest = m.guests.get('guest')!.memory;
  pretouch(guest.buffer, Math.ceil(guest.reservedBytes / PAGE) * PAGE);
  pretouch(m.pools.get('pool')!.pool.share().data);
  const backing = m.device('dev')!.workerData(0).backing;
  if (backing) pretouch(backing);
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

/** What one window measured: deltas over it, and the probes around it. */
export interface Window {
  done: number;
  elapsed: number;
  copySeconds: number;
  copiedBytes: number;
  inlineBytes: number;
  mainNs: number | null;
  /** The device thread's idle milliseconds over it (NaN: unknown). */
  deviceIdleMs: number;
  /** Where its latencies lie in the latency array: [latFrom, latTo). */
  latFrom: number;
  latTo: number;
  before: number;
  after: number;
}

/** Requests flow this long after a window's start before it counts (device thread awake, queues full). */
export const RAMP_MS = 100;
/** Windows a case may measure: this many times those it needs (the rest for far ones). */
const WINDOW_BUDGET = 4;

/**
 * Builds the case's Mediator, warms it up, measures windows with a
 * core-to-core probe between each two (no I/O runs during a probe), closes it.
 */
export async function runCase(spec: CaseSpec): Promise<CaseResult> {
  const m = caseMediator(spec);
  try {
    const dev = m.device('dev')!;
    await dev.ready();
    const pool = m.pools.get('pool')!.pool;
    if (!spec.cold) pretouchCase(m);
    latencies ??= new Float64Array(4_000_000);
    const hugeMiB = anonHugeMiB();
    const io = new CaseIo(dev, spec, latencies);
    io.start();
    await sleep(spec.warmupMs);
    await io.stop();
    // The same heap state for every case: collect what the warm-up left.
    (globalThis as { gc?: () => void }).gc?.();
    const windowMs = Math.min(spec.windowMs, spec.durationMs);
    const needed = Math.ceil(spec.durationMs / windowMs);
    const windows: Window[] = [];
    // A window's probe before is the probe after the one before it.
    let probe = await coreToCoreNs();
    let floor = Math.min(spec.floorNs || Number.POSITIVE_INFINITY, probe);
    const counted = () => countedWindows(windows, spec.nearOnly, floor).kept.length;
    while (windows.length < needed * WINDOW_BUDGET && counted() < needed) {
      const w = await measureWindow(m, io, windowMs, probe);
      windows.push(w);
      probe = w.after;
      floor = Math.min(floor, probe);
    }
    await closeProbe();
    return summarize(spec, pool, countedWindows(windows, spec.nearOnly, floor), floor, hugeMiB);
  } finally {
    await m.close();
  }
}

/**
 * The closed loop of a case: `depth` requests in flight. While `recording`, each
 * completion counts, and its latency is kept while the array has room.
 */
export class CaseIo {
  /** Completions while recording. */
  done = 0;
  /** Latencies kept in the array: its first `kept` entries. */
  kept = 0;
  recording = false;
  private stopping = false;
  private loops: Promise<void>[] = [];
  private seed = 0;

  constructor(
    private readonly dev: ReturnType<Mediator['device']> & object,
    private readonly spec: Pick<CaseSpec, 'op' | 'size' | 'depth'>,
    private readonly lat: Float64Array,
  ) {}

  start(): void {
    this.stopping = false;
    const { op, size, depth } = this.spec;
    const sectors = (CAPACITY - size) / 512;
    const loop = async (seed: number) => {
      let lba = (seed * 7919) % sectors;
      while (!this.stopping) {
        lba = (lba + 4099 * (size / 512)) % sectors;
        const t0 = performance.now();
        if (op === 'write') await this.dev.write(lba, size);
        else await this.dev.read(lba, size, false);
        if (this.recording) {
          this.done++;
          if (this.kept < this.lat.length) this.lat[this.kept++] = performance.now() - t0;
        }
      }
    };
    this.loops = Array.from({ length: depth }, () => loop(this.seed++));
  }

  /** Stops issuing and waits for the requests in flight. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }
}

/** One window: requests flow, ramp up, count for `ms`, stop; then the probe after it. */
async function measureWindow(m: Mediator, io: CaseIo, ms: number, before: number): Promise<Window> {
  io.start();
  await sleep(RAMP_MS);
  const latFrom = io.kept;
  const done0 = io.done;
  io.recording = true;
  const copies0 = m.engine.stats().byWriter;
  const main0 = threadTime();
  const dev = m.device('dev')!;
  const idle0 = dev.deviceIdleMs();
  const t0 = performance.now();
  await sleep(ms);
  const latTo = io.kept;
  const done = io.done - done0;
  const elapsed = (performance.now() - t0) / 1000;
  const main1 = threadTime();
  const idle1 = dev.deviceIdleMs();
  const copies1 = m.engine.stats().byWriter;
  io.recording = false;
  await io.stop();
  let copySeconds = 0;
  let copiedBytes = 0;
  for (const [i, w] of copies1.entries()) {
    copySeconds += w.seconds - copies0[i]!.seconds;
    copiedBytes += w.bytes - copies0[i]!.bytes;
  }
  // The topology the window ran on, probed at once (no I/O runs now; the device
  // thread sleeps after its spin).
  const after = await coreToCoreNs();
  return {
    done,
    elapsed,
    copySeconds,
    copiedBytes,
    inlineBytes: copies1[0]!.bytes - copies0[0]!.bytes,
    mainNs: main0 && main1 ? main1.runNs - main0.runNs : null,
    deviceIdleMs: idle1 - idle0,
    latFrom,
    latTo,
    before,
    after,
  };
}

/**
 * The windows that count: under `nearOnly` the near ones (both probes within
 * isFar()'s factor of `floor`), unless none was; else all. Also how many were
 * far, and whether a far one counts.
 */
export function countedWindows<W extends Pick<Window, 'before' | 'after'>>(
  windows: readonly W[],
  nearOnly: boolean,
  floor: number,
): { kept: readonly W[]; farWindows: number; farKept: boolean } {
  const far = (w: W) => isFar(Math.max(w.before, w.after), floor);
  const near = windows.filter((w) => !far(w));
  const kept = nearOnly && near.length > 0 ? near : windows;
  return { kept, farWindows: windows.length - near.length, farKept: kept.some(far) };
}

/**
 * The device thread's work over `windows`, seconds: each one's length less its
 * idle time, at least 0 (an idle stretch is added when it ends or after
 * IDLE_TICK_MS of sleep, so one that began before a window counts whole in it);
 * null when a window's idle time is not a number of milliseconds (the clock is
 * the device side's own word).
 */
export function deviceWorkSeconds(
  windows: readonly Pick<Window, 'elapsed' | 'deviceIdleMs'>[],
): number | null {
  let work = 0;
  for (const w of windows) {
    const idle = w.deviceIdleMs / 1000;
    if (!(Number.isFinite(idle) && idle >= 0)) return null;
    work += Math.max(0, w.elapsed - idle);
  }
  return work;
}

/** The case's result over the windows that count. */
function summarize(
  spec: CaseSpec,
  pool: { geometry: { nareas: number }; placement: Placement },
  picked: { kept: readonly Window[]; farWindows: number; farKept: boolean },
  floor: number,
  hugeMiB: number | null,
): CaseResult {
  const { device, op, size, mode, poolMiB } = spec;
  const kept = picked.kept;
  const sum = (f: (w: Window) => number) => kept.reduce((n, w) => n + f(w), 0);
  const done = sum((w) => w.done);
  const elapsed = sum((w) => w.elapsed);
  const copiedBytes = sum((w) => w.copiedBytes);
  const mainNs = kept.every((w) => w.mainNs !== null) ? sum((w) => w.mainNs!) : null;
  const deviceWork = deviceWorkSeconds(kept);
  const lat = latencies!;
  const sorted = new Float64Array(kept.reduce((n, w) => n + w.latTo - w.latFrom, 0));
  let at = 0;
  for (const w of kept) {
    sorted.set(lat.subarray(w.latFrom, w.latTo), at);
    at += w.latTo - w.latFrom;
  }
  sorted.sort();
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
    copy_us_per_io: done > 0 ? (sum((w) => w.copySeconds) / done) * 1e6 : 0,
    inline_copy_share: copiedBytes > 0 ? sum((w) => w.inlineBytes) / copiedBytes : 0,
    main_cpu_us_per_io: mainNs !== null && done > 0 ? mainNs / 1000 / done : null,
    main_busy: mainNs !== null ? mainNs / 1e9 / elapsed : null,
    device_us_per_io: deviceWork !== null && done > 0 ? (deviceWork / done) * 1e6 : null,
    device_busy: deviceWork !== null ? deviceWork / elapsed : null,
    c2c_before_ns: Math.round(median(kept.map((w) => w.before))),
    c2c_after_ns: Math.round(median(kept.map((w) => w.after))),
    c2c_floor_ns: floor,
    huge_pages_mib: hugeMiB,
    windows: kept.length,
    far_windows: picked.farWindows,
    far_runs: picked.farKept ? 1 : 0,
    runs: 1,
    iops_min: iops,
    iops_max: iops,
  };
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
