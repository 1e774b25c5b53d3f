/**
 * How far apart the machine's two cores are right now: the round trip of one
 * cache line between two threads (the main thread stores a counter, a probe thread
 * spinning on it stores it back, repeated for a few tens of milliseconds).
 *
 * Why the benchmarks need it: the 2-vCPU machines here are guests, and the host
 * places their vCPUs where it likes and moves them while they run: at some
 * moments the round trip is about three times what it is at others, and it
 * switches every few seconds to minutes (figures: docs/performance.md, "What made
 * one case swing"), as the two vCPUs share a last-level cache, or do not. Every cache line that one thread writes and
 * the other then touches pays that trip. A pipeline case moves every byte of every
 * request between the main thread and the device thread, so its IOPS follow the
 * topology as much as the code: a case measured in one state and its direct
 * baseline in the other is a ratio of luck. The benchmarks probe before and after
 * each case, print the figure beside the result, and can wait for the near state
 * (bench:pipeline `--topology near`).
 *
 * The probe thread sleeps on a futex between probes (no core taken while a case
 * runs); {@link closeProbe} ends it.
 */
import { Worker } from 'node:worker_threads';

// Word indices of the control array (one cache line each, so that only the
// counter's line travels during a probe).
const PING = 0;
const PONG = 16;
const AWAKE = 32;
/** PING values that are commands, not counters. */
const PAUSE = -2;
const EXIT = -1;

// The probe thread as a CommonJS script (eval: no file to resolve under tsx or dist).
const PROBE_THREAD = `
const { workerData } = require('node:worker_threads');
const ctl = new Int32Array(workerData);
outer: for (;;) {
  Atomics.wait(ctl, ${AWAKE}, 0);
  for (;;) {
    const v = Atomics.load(ctl, ${PING});
    if (v === ${EXIT}) break outer;
    if (v === ${PAUSE}) break;
    if (v !== Atomics.load(ctl, ${PONG})) Atomics.store(ctl, ${PONG}, v);
  }
}`;

let worker: Worker | undefined;
let ctl: Int32Array | undefined;

async function probeThread(): Promise<Int32Array> {
  if (worker !== undefined && ctl !== undefined) return ctl;
  const words = new Int32Array(new SharedArrayBuffer(64 * 4));
  const w = new Worker(PROBE_THREAD, { eval: true, workerData: words.buffer });
  await new Promise<void>((resolve, reject) => {
    w.once('online', resolve);
    w.once('error', reject);
  });
  // Not before it is online: an unref()ed thread's start would not hold the loop.
  w.unref();
  worker = w;
  ctl = words;
  return words;
}

/**
 * One probe: the mean round trip, in nanoseconds, of a cache line between this
 * thread and the probe thread over `ms` milliseconds. The probe keeps both cores
 * busy while it runs: call it between measurements, not during one.
 */
export async function coreToCoreNs(ms = 30): Promise<number> {
  const c = await probeThread();
  Atomics.store(c, PING, 0);
  Atomics.store(c, PONG, 0);
  Atomics.store(c, AWAKE, 1);
  Atomics.notify(c, AWAKE);
  // The probe thread answers its first ping once it is awake (not counted).
  Atomics.store(c, PING, 1);
  while (Atomics.load(c, PONG) !== 1);
  const t0 = performance.now();
  let n = 1;
  let now = t0;
  while (now - t0 < ms) {
    // 64 round trips between clock reads: the clock costs as much as a near trip.
    for (let k = 0; k < 64; k++) {
      Atomics.store(c, PING, ++n);
      while (Atomics.load(c, PONG) !== n);
    }
    now = performance.now();
  }
  Atomics.store(c, AWAKE, 0);
  Atomics.store(c, PING, PAUSE);
  return Math.round(((now - t0) * 1e6) / (n - 1));
}

/** Ends the probe thread (the process can exit without it: it is unref()ed). */
export async function closeProbe(): Promise<void> {
  const w = worker;
  const c = ctl;
  worker = undefined;
  ctl = undefined;
  if (w === undefined || c === undefined) return;
  Atomics.store(c, PING, EXIT);
  Atomics.store(c, AWAKE, 1);
  Atomics.notify(c, AWAKE);
  await w.terminate();
}

/**
 * Near or far, against the lowest round trip seen (`floorNs`): far when the
 * trip takes more than `factor` times the floor. The machines here show a
 * near state at one or two levels and a far one well above both
 * (docs/performance.md): the default keeps both near levels near.
 */
export function isFar(rttNs: number, floorNs: number, factor = 2.5): boolean {
  return rttNs > floorNs * factor;
}

/** The near state of a run of probes: what {@link waitForNear} keeps between calls. */
export interface NearState {
  /** The near state's round trip: the lowest probe seen, unless reset. */
  floorNs: number;
  /** The lowest probe of the whole run. */
  lowestNs: number;
  /** Times the near state did not come back within the wait and was reset. */
  resets: number;
}

export function nearState(): NearState {
  return { floorNs: Number.POSITIVE_INFINITY, lowestNs: Number.POSITIVE_INFINITY, resets: 0 };
}

/** Counts one probe (or a case's own floor) in the state. */
export function seeProbe(s: NearState, ns: number): void {
  s.floorNs = Math.min(s.floorNs, ns);
  s.lowestNs = Math.min(s.lowestNs, ns);
}

export interface WaitForNear {
  /** Longest wait for a near probe before the state is reset. */
  waitMs: number;
  /** Between two probes. @default 250 */
  everyMs?: number;
  /** Far: over this many times the floor. @default 2.5 */
  factor?: number;
  /** The clock, in ms. @default performance.now */
  now?: () => number;
  /** @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Probes until the cores are near the state's floor, for `waitMs` at most. When
 * the near state has not come back by then, the state the cores are in now
 * becomes the near one: the floor is reset to the lowest probe of the wait. The
 * host keeps the vCPUs apart for minutes at a time, and a state seen once (a
 * 195 ns round trip, against 870–940 ns for the hour after, on 2026-12-01) would
 * otherwise make every later case wait, be measured again and count far windows
 * all the same. Returns the last probe, the time waited, and the floor that was
 * given up, if one was.
 */
export async function waitForNear(
  s: NearState,
  probe: () => Promise<number>,
  opts: WaitForNear,
): Promise<{ ns: number; waitedMs: number; resetFrom?: number }> {
  const now = opts.now ?? (() => performance.now());
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const factor = opts.factor ?? 2.5;
  const t0 = now();
  let ns = await probe();
  seeProbe(s, ns);
  let lowest = ns;
  while (isFar(ns, s.floorNs, factor)) {
    if (now() - t0 >= opts.waitMs) {
      const resetFrom = s.floorNs;
      s.floorNs = lowest;
      s.resets++;
      return { ns, waitedMs: now() - t0, resetFrom };
    }
    await sleep(opts.everyMs ?? 250);
    ns = await probe();
    seeProbe(s, ns);
    lowest = Math.min(lowest, ns);
  }
  return { ns, waitedMs: now() - t0 };
}
