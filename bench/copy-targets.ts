/**
 * bench:copy's verdicts, a pure function of its results (test/bench.smoke.test.ts
 * feeds it some). The targets, with issue 17's answers to the copy-engine issue:
 * - engine ÷ raw >= 0.4 at 4 KiB, judged in lists of 32 (as the pipeline maps
 *   a request's buffers); one buffer per I/O is printed with its bound, no target;
 * - >= 0.8 at 64 KiB and 256 KiB;
 * - two workers faster than one from 64 KiB, judged with a third CPU only: on 2
 *   CPUs a second worker takes a device's or the main thread's core, so it is
 *   printed with no verdict.
 */

import { formatSize } from '../src/util/size.js';

/** Scatter-gather runs (--sg above 1) are for buffers up to this size. */
export const SG_MAX_SIZE = 4096;
/** "Two workers faster than one" is for copies of this size and up. */
export const TWO_WORKERS_FROM = 65536;
/** "Two workers faster than one" is judged on machines with at least this many CPUs. */
export const TWO_WORKERS_CPUS = 3;

export interface CopyResult {
  size: number;
  /** Buffers mapped together per I/O (a scatter-gather list); 1 = one buffer per I/O. */
  sg: number;
  /**
   * The inline threshold was lowered below this size so that the workers copy it:
   * an extra row, measured when the engine's own choice kept it inline with 1 and 2
   * workers (on 2 CPUs, up to 128 KiB), so that one and two workers can be compared.
   */
  forced_workers: boolean;
  raw_gbps: number;
  engine_gbps: number;
  ratio: number;
  workers: number;
  path: 'inline' | 'worker' | 'mixed';
  /** Engine I/Os (map + unmap pairs) per second. */
  ios_per_sec: number;
  /** Share of the measured bytes each writer copied: [inline, worker 0, worker 1, ...]. */
  writer_share: number[];
  /** Fraction of the engine windows' wall time each writer spent inside copies. */
  writer_busy: number[];
  /** Speed of the copies themselves (bytes / time inside copies, all writers). */
  in_copy_gbps: number;
  /** CPU time of the whole process (all threads) per wall second during the engine windows. */
  engine_cpu_cores: number;
  /** Main thread's event-loop utilization during the engine windows (1 = never idle). */
  main_busy: number;
}

/** What the run measured and on what: its sizes, --sg lists, worker counts, CPUs. */
export interface CopyRun {
  sizes: readonly number[];
  sgList: readonly number[];
  workerCounts: readonly number[];
  cpus: number;
}

/**
 * One line per target case: "MET   ", "MISSED" or "info  " (printed, not judged),
 * then what was measured. Judged on the worker configurations (workers >= 1);
 * workers=0 is a reference row.
 */
export function copyVerdicts(results: readonly CopyResult[], run: CopyRun): string[] {
  const lines: string[] = [];
  const get = (size: number, workers: number, sg = 1, forced = false) =>
    results.find(
      (r) => r.size === size && r.workers === workers && r.sg === sg && r.forced_workers === forced,
    );
  const verdict = (ok: boolean) => (ok ? 'MET   ' : 'MISSED');
  const ratioTargets: [number, number][] = [
    [4096, 0.4],
    [65536, 0.8],
    [262144, 0.8],
  ];
  for (const [size, min] of ratioTargets) {
    for (const sg of size <= SG_MAX_SIZE ? run.sgList : [1]) {
      for (const w of run.workerCounts.filter((n) => n > 0)) {
        const r = get(size, w, sg);
        if (!r) continue;
        if (size <= SG_MAX_SIZE && sg === 1) {
          // The copies' own speed inside the engine over raw: what they allow,
          // whatever the pool's map and unmap per I/O cost beside them.
          const allow = r.in_copy_gbps > 0 ? (r.in_copy_gbps / r.raw_gbps).toFixed(2) : undefined;
          lines.push(
            `info   ratio at ${formatSize(size)}, one buffer per I/O, workers=${w}: ${r.ratio.toFixed(2)} ` +
              `(no target: lists count at ${formatSize(size)}; bound: ${
                allow === undefined
                  ? 'no copy time measured'
                  : `the engine's copies ran at ${r.in_copy_gbps.toFixed(2)} GB/s against raw ${r.raw_gbps.toFixed(2)}, which alone allows ${allow}; the rest is the pool's map and unmap per I/O`
              })`,
          );
          continue;
        }
        const what = sg > 1 ? `${formatSize(size)} in lists of ${sg}` : formatSize(size);
        lines.push(
          `${verdict(r.ratio >= min)} ratio >= ${min} at ${what}, workers=${w}: ${r.ratio.toFixed(2)}`,
        );
      }
    }
  }
  for (const size of run.sizes.filter((s) => s >= TWO_WORKERS_FROM)) {
    const forcedOne = get(size, 1, 1, true);
    const forcedTwo = get(size, 2, 1, true);
    const one = forcedOne ?? get(size, 1);
    const two = forcedTwo ?? get(size, 2);
    if (!one || !two) continue;
    // Compared as ratios to the raw copy measured in the same windows: the two
    // configurations run seconds apart, and the machine's speed drifts between them.
    const figures =
      `${two.ratio.toFixed(2)} vs ${one.ratio.toFixed(2)} of raw ` +
      `(${two.engine_gbps.toFixed(2)} vs ${one.engine_gbps.toFixed(2)} GB/s)`;
    if (one.path === 'inline' && two.path === 'inline') {
      // Nothing to compare: no worker copied (the inline threshold was given).
      lines.push(
        `n/a    two workers faster than one at ${formatSize(size)}: both inline, ${figures}`,
      );
      continue;
    }
    const how = forcedOne ? ' (forced onto the workers: the engine copies it inline here)' : '';
    const judged = run.cpus >= TWO_WORKERS_CPUS;
    lines.push(
      `${judged ? verdict(two.ratio > one.ratio) : 'info  '} two workers faster than one at ${formatSize(size)}${how}: ${figures}${
        judged ? '' : ` (no target on ${run.cpus} CPUs: a second worker needs a core of its own)`
      }`,
    );
  }
  return lines;
}
