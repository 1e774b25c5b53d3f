/**
 * The calling thread's time on a CPU, from Linux's /proc/thread-self/schedstat
 * (`run_ns wait_ns timeslices`: nanoseconds run, nanoseconds spent runnable but
 * waiting for a CPU, times scheduled). Node 20 has no per-thread CPU clock
 * (process.cpuUsage() sums every thread), and the benchmarks need the main
 * thread's alone: it is the one that bounds most cases on 2 CPUs.
 */
import { readFileSync } from 'node:fs';

export interface ThreadTime {
  /** Nanoseconds this thread ran. */
  runNs: number;
  /** Nanoseconds it was runnable but waited for a CPU. */
  waitNs: number;
}

/** This thread's times so far, or undefined where the kernel does not offer them. */
export function threadTime(): ThreadTime | undefined {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    const runNs = Number(run);
    const waitNs = Number(wait);
    if (!Number.isFinite(runNs) || !Number.isFinite(waitNs)) return undefined;
    return { runNs, waitNs };
  } catch {
    return undefined;
  }
}
