/**
 * The measured window of a run: the submitters that keep each clone's iodepth in
 * flight, the ramp (`ramp_time`, run first and not measured), the stop
 * conditions, and the sampling ticks (timeline, pool occupancy, progress). It
 * hands back the raw material of the report: the clones' counters (kept on the
 * clones), the timeline, the pool's high-water mark, and the mediator's counters
 * at both ends of the window.
 *
 *   runStart          measureStart                              end
 *   |---- ramp_time ----|------------- measured window -----------|
 *   I/Os not counted     I/Os counted on their clone; a sample every intervalMs
 */

import type { BackpressureStats } from '../mediator/pool-gate.js';
import type { PoolStats } from '../swiotlb/pool.js';
import type { Logger } from '../util/logger.js';
import type { CopyStatsSnapshot } from '../workers/copy-stats.js';
import { type JobFile, type JobMode, jobDirections, pickSize } from './fio-job.js';
import { PeakSlotMap, type SlotMapAtPeak } from './peak-slot-map.js';
import type { Clone, JobRig } from './setup.js';

/** One sampling interval of the timeline. */
export interface Sample {
  /** Milliseconds since measurement started (end of the interval). */
  t_ms: number;
  read_iops: number;
  write_iops: number;
  bw_bytes: number;
  /** Pool slots in use at the interval's peak (queues included). */
  pool_used_slots: number;
}

export interface ProgressSnapshot {
  mode: JobMode;
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
  /**
   * Keep the pool's slot map at the highest occupancy of the measured window
   * (bounce mode; `bench --html` draws it). Costs an atomic load per I/O and a
   * map read (microseconds) each time the occupancy reaches a new high.
   * @default false
   */
  slotMapAtPeak?: boolean;
}

/** The mediator's counters at one instant. Pool counters wrap modulo 2^32. */
export interface CounterSnapshot {
  /** performance.now() when it was taken, ms. */
  at: number;
  engine: CopyStatsSnapshot['totals'];
  gate: BackpressureStats;
  pool: PoolStats;
  /** Per device, per queue: its device thread's idle milliseconds so far (BlkDriver.deviceIdleMs; NaN: unknown). */
  deviceIdleMs: number[][];
}

export function snapshotCounters(rig: JobRig): CounterSnapshot {
  return {
    at: performance.now(),
    engine: rig.mediator.engine.stats().totals,
    gate: rig.gate.stats(),
    pool: rig.pool.stats(),
    deviceIdleMs: rig.devices.map((d) =>
      Array.from({ length: d.queueCount }, (_, q) => d.deviceIdleMs(q)),
    ),
  };
}

/** What the window measured, besides the clones' own counters. */
export interface WindowOutcome {
  /** performance.now() when measurement started (after the ramp). */
  measureStart: number;
  timeline: Sample[];
  /** Highest pool occupancy seen in the window, in slots (queues included). */
  hiwater: number;
  /** Counters when measurement started and when the last clone stopped. */
  before: CounterSnapshot;
  after: CounterSnapshot;
  /** The slot map at the window's highest occupancy, when asked for (RunOptions.slotMapAtPeak). */
  slotMapAtPeak?: SlotMapAtPeak;
}

/** When the window ends and how often it is sampled. */
interface WindowPlan {
  /** The longest ramp_time of the jobs, ms. */
  rampMs: number;
  /** How long the run takes when every job is time_based: the longest runtime; else undefined. */
  expectedMs: number | undefined;
  intervalMs: number;
}

/**
 * The window's timing: a sample about 60 times over a time_based run (every 100
 * to 1000 ms, in steps of 50), every 200 ms when the length is not known.
 */
function windowPlan(jf: JobFile, opts: RunOptions): WindowPlan {
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
  return { rampMs, expectedMs, intervalMs };
}

/** Completed I/Os of the whole run, ramp included (progress and timeline rates). */
interface LiveCounts {
  ios: number;
  bytes: number;
  readIos: number;
  writeIos: number;
}

/** The next I/O of a clone: direction, size and offset, drawn as fio would. */
function nextIo(c: Clone, random: boolean, dirs: { read: boolean; write: boolean }) {
  const job = c.job;
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
  return { isRead, len, offset };
}

/**
 * One run of the window. State shared by the submitters and the sampling tick;
 * all on the main thread, so no field is ever seen half updated.
 */
class MeasuredWindow {
  private measuring: boolean;
  private measureStart = performance.now();
  private readonly runStart = this.measureStart;
  private before: CounterSnapshot;
  private readonly live: LiveCounts = { ios: 0, bytes: 0, readIos: 0, writeIos: 0 };
  private last = { t: performance.now(), ios: 0, bytes: 0, readIos: 0, writeIos: 0 };
  private readonly timeline: Sample[] = [];
  private hiwater = 0;

  constructor(
    private readonly mode: JobMode,
    private readonly rig: JobRig,
    private readonly clones: readonly Clone[],
    private readonly plan: WindowPlan,
    private readonly onProgress: RunOptions['onProgress'],
    private readonly peak: PeakSlotMap | undefined,
  ) {
    this.measuring = plan.rampMs === 0;
    this.before = snapshotCounters(rig);
  }

  async run(): Promise<WindowOutcome> {
    if (this.measuring) this.startMeasuring();
    const ticker = setInterval(() => this.sample(false), this.plan.intervalMs);
    let rampTimer: NodeJS.Timeout | undefined;
    if (!this.measuring) {
      rampTimer = setTimeout(() => {
        this.startMeasuring();
        this.last = { t: performance.now(), ...this.live };
      }, this.plan.rampMs);
    }
    try {
      await Promise.all(
        this.clones.flatMap((c) =>
          Array.from({ length: Math.min(c.job.iodepth, c.device.depth) }, () => this.submit(c)),
        ),
      );
    } finally {
      clearInterval(ticker);
      if (rampTimer) clearTimeout(rampTimer);
    }
    if (!this.measuring) this.startMeasuring(); // every clone finished during the ramp
    this.sample(true);
    const slotMapAtPeak = this.peak?.result();
    return {
      measureStart: this.measureStart,
      timeline: this.timeline,
      hiwater: this.hiwater,
      before: this.before,
      after: snapshotCounters(this.rig),
      ...(slotMapAtPeak ? { slotMapAtPeak } : {}),
    };
  }

  /** End of the ramp: counters and the pool's high-water mark start from here. */
  private startMeasuring(): void {
    this.measuring = true;
    this.measureStart = performance.now();
    this.rig.pool.resetHiwater();
    this.peak?.restart();
    this.before = snapshotCounters(this.rig);
    for (const c of this.clones) {
      if (c.job.runtime !== undefined) c.deadline = this.measureStart + c.job.runtime * 1000;
    }
  }

  /** Whether clone `c` has reached a stop condition (only counted I/Os count). */
  private finished(c: Clone): boolean {
    const job = c.job;
    if (performance.now() >= c.deadline) return true;
    if (job.numberIos !== undefined) return c.issued >= job.numberIos;
    if (!job.timeBased) return c.issuedBytes >= job.ioSize;
    return false;
  }

  /** One submitter of clone `c`: one I/O at a time until the clone is done. */
  private async submit(c: Clone): Promise<void> {
    const dirs = jobDirections(c.job.rw);
    const random = c.job.rw.startsWith('rand');
    const queue = c.clone;
    while (!c.done) {
      if (this.measuring) {
        c.done = this.finished(c);
        if (c.done) break;
      }
      const { isRead, len, offset } = nextIo(c, random, dirs);
      const counted = this.measuring;
      if (counted) {
        c.issued++;
        c.issuedBytes += len;
      }
      const t0 = performance.now();
      let ok = true;
      try {
        const io = isRead
          ? c.device.read(offset / 512, len, false, queue)
          : c.device.write(offset / 512, len, queue, c.job.writeFill);
        // The occupancy only rises inside the driver's calls: look right after
        // this one placed its buffers, and after its completion let waiters in.
        this.peak?.check();
        await io;
        this.peak?.check();
      } catch (err) {
        ok = false;
        const code = (err as { code?: string }).code ?? 'ERROR';
        c.errors.set(code, (c.errors.get(code) ?? 0) + 1);
        // An error that repeats at once (a closed device) must not spin forever.
        if (code === 'MEDIATOR_CLOSED') c.done = true;
      }
      const t1 = performance.now();
      if (!ok) continue;
      this.live.ios++;
      this.live.bytes += len;
      if (isRead) this.live.readIos++;
      else this.live.writeIos++;
      if (counted && t0 >= this.measureStart) {
        const d = isRead ? c.read : c.write;
        d.ios++;
        d.bytes += len;
        d.lat.push((t1 - t0) * 1e6);
        c.lastCompletion = t1;
      }
    }
  }

  /** A sampling tick: a timeline point (while measuring) and a progress report. */
  private sample(final: boolean): void {
    const now = performance.now();
    const dt = (now - this.last.t) / 1000;
    const rate = (count: number, before: number) => (dt > 0 ? (count - before) / dt : 0);
    if (this.measuring) {
      const p = this.rig.pool.stats();
      const peak = Math.max(p.used_hiwater, p.used);
      // The final sample only when its interval is long enough to give a rate.
      if (!final || dt > 0.02) {
        this.timeline.push({
          t_ms: Math.round(now - this.measureStart),
          read_iops: rate(this.live.readIos, this.last.readIos),
          write_iops: rate(this.live.writeIos, this.last.writeIos),
          bw_bytes: rate(this.live.bytes, this.last.bytes),
          pool_used_slots: peak,
        });
      }
      this.hiwater = Math.max(this.hiwater, peak);
      this.rig.pool.resetHiwater();
    }
    this.onProgress?.({
      mode: this.mode,
      ramping: !this.measuring,
      elapsedMs: now - this.runStart,
      fraction: this.fraction(now),
      ios: this.live.ios,
      bytes: this.live.bytes,
      iops: rate(this.live.ios, this.last.ios),
      bwBytes: rate(this.live.bytes, this.last.bytes),
    });
    this.last = { t: now, ...this.live };
  }

  /**
   * How far the run is, 0..1: by the clock for a time_based run; otherwise, once
   * measuring, the mean over the clones of how far each is to its stop condition;
   * undefined during the ramp of a run whose length is not known.
   */
  private fraction(now: number): number | undefined {
    const { expectedMs, rampMs } = this.plan;
    if (expectedMs !== undefined) return Math.min(1, (now - this.runStart) / (expectedMs + rampMs));
    if (!this.measuring) return undefined;
    let f = 0;
    for (const c of this.clones) {
      const j = c.job;
      let cf = j.numberIos !== undefined ? c.issued / j.numberIos : c.issuedBytes / j.ioSize;
      if (j.runtime !== undefined)
        cf = Math.max(cf, (now - this.measureStart) / (j.runtime * 1000));
      f += Math.min(1, c.done ? 1 : cf);
    }
    return f / this.clones.length;
  }
}

/** Runs the measured window (ramp first) over `clones` until every clone stops. */
export function measureWindow(
  jf: JobFile,
  mode: JobMode,
  rig: JobRig,
  clones: readonly Clone[],
  opts: RunOptions,
): Promise<WindowOutcome> {
  const peak =
    mode === 'bounce' && opts.slotMapAtPeak
      ? new PeakSlotMap(
          rig.pool,
          rig.devices.flatMap((d) => d.queueMemory()),
        )
      : undefined;
  return new MeasuredWindow(mode, rig, clones, windowPlan(jf, opts), opts.onProgress, peak).run();
}
