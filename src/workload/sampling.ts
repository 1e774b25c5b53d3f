/**
 * The measured window of a run: the submitters that keep each clone's iodepth in
 * flight, each clone's ramp (its job's `ramp_time`, run first and not measured),
 * the stop conditions (fio's backend.c do_io() and keep_running()), and the
 * sampling ticks (timeline, pool occupancy, progress). It hands back the raw
 * material of the report: the clones' counters (kept on the clones), the
 * timeline, the pool's high-water mark, and the mediator's counters at both ends
 * of the window.
 *
 *   runStart   clone's rampEnd (its measureStart)                 its stop
 *   |- its ramp_time -|---------- its I/Os counted ---------------|
 *   |- shortest ramp -|------ the mediator's window and timeline ---------| end
 *
 * Each clone ramps for its own job's ramp_time, as fio does (time.c
 * ramp_period_check() compares each td's own `td->o.ramp_time`). The mediator's
 * window (its counters, the pool's high-water, the timeline) starts when the
 * first clone's ramp ends, and ends when the last clone stops: with ramps that
 * differ it also sees the I/O of clones still in their ramp.
 */

import type { BackpressureStats } from '../mediator/pool-gate.js';
import type { PoolStats } from '../swiotlb/pool.js';
import type { Logger } from '../util/logger.js';
import type { CopyStatsSnapshot } from '../workers/copy-stats.js';
import type { JobFile, JobMode } from './fio-job.js';
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
  /** performance.now() when the mediator's window started (the end of the shortest ramp). */
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

/** When the window starts and how often it is sampled. */
interface WindowPlan {
  /** The shortest ramp_time of the jobs, ms: when the mediator's window starts. */
  rampMs: number;
  /** How long the run takes when every job is time_based: the longest ramp + runtime; else undefined. */
  expectedMs: number | undefined;
  intervalMs: number;
}

/**
 * The window's timing: a sample about 60 times over a time_based run (every 100
 * to 1000 ms, in steps of 50), every 200 ms when the length is not known.
 */
function windowPlan(jf: JobFile, opts: RunOptions): WindowPlan {
  const rampMs = Math.min(...jf.jobs.map((j) => j.rampTime)) * 1000;
  const expectedMs = jf.jobs.every((j) => j.timeBased && j.runtime !== undefined)
    ? Math.max(...jf.jobs.map((j) => j.rampTime + (j.runtime ?? 0))) * 1000
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

/** What the stop conditions read of a clone. */
export type StopState = Pick<
  Clone,
  | 'job'
  | 'measuring'
  | 'deadline'
  | 'issued'
  | 'issuedBytes'
  | 'rampBytes'
  | 'maxBs'
  | 'ioSizeGiven'
>;

/**
 * Whether a clone stops before its next I/O, fio's do_io() loop: `while (...
 * !io_issue_bytes_exceeded(td) || td->o.time_based)`, where io_bytes_exceeded()
 * is `bytes >= limit || exceeds_number_ios(td)` (limit: io_size, else size; bytes:
 * td->io_issue_bytes, ramp included) and runtime_exceeded() is false while in the
 * ramp. So `number_ios` stops a job only before size / io_size does (HOWTO: it
 * "does not extend the amount of I/O"), and a time_based job runs its whole
 * runtime whatever number_ios, size and io_size say.
 */
export function stopReached(c: StopState, now: number): boolean {
  if (c.measuring && now >= c.deadline) return true;
  const job = c.job;
  if (job.timeBased) return false;
  return c.issuedBytes >= job.ioSize || (job.numberIos !== undefined && c.issued >= job.numberIos);
}

/**
 * Whether a clone goes on with a new pass when its pass ends (no offset left, or
 * no block that fits): backend.c keep_running(). A time_based job always does;
 * otherwise it stops once number_ios is reached, or when the bytes done (since
 * the ramp's end: td->io_bytes) reach the limit or leave less than the largest
 * block (`if (diff < td_max_bs(td)) return false;`), or when no io_size was
 * written (`if (fio_files_done(td) && !td->o.io_size) return false;`).
 */
export function keepRunning(c: StopState): boolean {
  const job = c.job;
  if (job.timeBased) return true;
  if (job.numberIos !== undefined && c.issued >= job.numberIos) return false;
  const bytes = c.measuring ? c.issuedBytes - c.rampBytes : c.issuedBytes;
  if (bytes >= job.ioSize) return false;
  if (job.ioSize - bytes < c.maxBs) return false;
  return c.ioSizeGiven;
}

/**
 * Picks the clone's next I/O into its picker; false when the clone stops at the
 * end of a pass. A new pass that cannot issue one I/O ends the job (backend.c
 * thread_main(): `if (!ddir_rw_sum(bytes_done)) fio_mark_td_terminate(td);`).
 */
export function pickNext(c: Clone): boolean {
  if (c.picker.next()) return true;
  if (!keepRunning(c)) return false;
  c.picker.newPass();
  return c.picker.next();
}

/**
 * The end of a clone's ramp: its counters and its runtime start (libfio.c
 * reset_all_stats(), called by time.c ramp_period_over()); the I/Os then in
 * flight still count toward number_ios (exceeds_number_ios(): `+= td->io_u_queued
 * + td->io_u_in_flight`).
 */
function endRamp(c: Clone): void {
  c.measuring = true;
  c.measureStart = c.rampEnd;
  if (c.job.runtime !== undefined) c.deadline = c.rampEnd + c.job.runtime * 1000;
  c.issued = c.inFlight;
  c.rampBytes = c.issuedBytes;
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
    for (const c of this.clones) {
      c.rampEnd = this.runStart + c.job.rampTime * 1000;
      if (c.job.rampTime === 0) endRamp(c);
    }
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

  /** End of the first ramp: the mediator's counters and the pool's high-water mark start from here. */
  private startMeasuring(): void {
    this.measuring = true;
    this.measureStart = performance.now();
    this.rig.pool.resetHiwater();
    this.peak?.restart();
    this.before = snapshotCounters(this.rig);
  }

  /**
   * One submitter of clone `c`: one I/O at a time until the clone is done. No
   * object is made per I/O here: the pick stays in the clone's picker.
   */
  private async submit(c: Clone): Promise<void> {
    const picker = c.picker;
    const queue = c.clone;
    while (!c.done) {
      const now = performance.now();
      if (!c.measuring && now >= c.rampEnd) endRamp(c);
      if (stopReached(c, now) || !pickNext(c)) {
        c.done = true;
        break;
      }
      const isRead = picker.read;
      const len = picker.len;
      const offset = picker.offset;
      c.issued++;
      c.issuedBytes += len;
      c.inFlight++;
      const counted = c.measuring;
      // fio's lat (io_u.c account_io_completion(): `tnsec = ntime_since(&io_u->start_time,
      // &icd->time)`): from before the driver maps (and bounces) the buffers to the
      // completion. Not clat, which starts at the issue to the device.
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
      c.inFlight--;
      if (!ok) continue;
      this.live.ios++;
      this.live.bytes += len;
      if (isRead) this.live.readIos++;
      else this.live.writeIos++;
      if (counted) {
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
   * undefined during the first ramp of a run whose length is not known.
   */
  private fraction(now: number): number | undefined {
    const { expectedMs } = this.plan;
    if (expectedMs !== undefined) return Math.min(1, (now - this.runStart) / expectedMs);
    if (!this.measuring) return undefined;
    let f = 0;
    for (const c of this.clones) {
      const j = c.job;
      let cf = j.timeBased ? 0 : c.issuedBytes / j.ioSize;
      if (j.numberIos !== undefined && c.measuring && !j.timeBased)
        cf = Math.max(cf, c.issued / j.numberIos);
      if (j.runtime !== undefined && c.measuring)
        cf = Math.max(cf, (now - c.measureStart) / (j.runtime * 1000));
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
