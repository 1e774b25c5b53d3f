/**
 * bench:pipeline's ratios and targets: mode ÷ direct for a case (with the bounds
 * the main thread's copies and the device thread's work put on it), and issue
 * 17's targets (with issue 4's for the Linux-faithful path, marked "(Linux)"),
 * each with what bounds it, measured, when it is missed. Pure functions of the
 * measured results, apart from the benchmark's runs, so that a test can feed
 * them results and read what they say (test/bench.smoke.test.ts).
 */
import type { BenchMode, CaseResult } from './pipeline-case.js';

/** The modes that have a pool, and so a ratio over direct. */
export type PooledMode = Exclude<BenchMode, 'direct'>;

/** Copies all inline (on the main thread): below this share, the copy bound does not hold. */
export const ALL_INLINE = 0.999;

export interface Ratio {
  iops: number;
  p99: number;
  /**
   * The highest IOPS ratio the main thread's copies alone allow (the header of
   * bench/pipeline.bench.ts), or null when some copies ran on workers or there
   * were none.
   */
  copy_bound: number | null;
  /**
   * The highest IOPS ratio the device thread's work per request allows (the
   * header of bench/pipeline.bench.ts), or null where its idle clock told nothing.
   */
  device_bound: number | null;
  /**
   * mode ÷ direct of each round of --repeat (the k-th run of the mode over the
   * k-th run of direct, measured one after the other), in round order: how far
   * the machine moved the ratio between rounds.
   */
  rounds: number[];
}

/** The key of a case's ratios in overDirect and overDirectSized: "device/op/size". */
export const caseKey = (c: Pick<CaseResult, 'device' | 'op' | 'size'>): string =>
  `${c.device}/${c.op}/${c.size}`;

export const ratio = (
  b: CaseResult,
  d: CaseResult,
  bRuns: CaseResult[],
  dRuns: CaseResult[],
): Ratio => ({
  iops: +(b.iops / d.iops).toFixed(3),
  rounds: bRuns.map((r, k) => +(r.iops / dRuns[k]!.iops).toFixed(3)),
  p99: +(b.p99_us / d.p99_us).toFixed(3),
  copy_bound:
    b.inline_copy_share >= ALL_INLINE && b.copy_us_per_io > 0
      ? +(1e6 / b.copy_us_per_io / d.iops).toFixed(3)
      : null,
  device_bound:
    b.device_us_per_io !== null && b.device_us_per_io > 0
      ? +(1e6 / b.device_us_per_io / d.iops).toFixed(3)
      : null,
});

/** The lowest and the highest of a figure's rounds; undefined with fewer than two. */
export function roundsSpan(rounds: readonly number[]): [number, number] | undefined {
  return rounds.length < 2 ? undefined : [Math.min(...rounds), Math.max(...rounds)];
}

/** " (rounds 0.70-0.95)" when there was more than one round. */
export function roundsText(r: Ratio | undefined): string {
  const span = r && roundsSpan(r.rounds);
  return span ? ` (rounds ${span[0]}-${span[1]})` : '';
}

/** "the main thread was busy Z% (Y us per request on a CPU, ...)", or undefined when unknown. */
function mainBusyText(r: CaseResult): string | undefined {
  if (r.main_cpu_us_per_io === null || r.main_busy === null) return undefined;
  return `the main thread was on a CPU ${Math.round(r.main_busy * 100)}% of the window, ${r.main_cpu_us_per_io.toFixed(2)} us per request (its polling for completions included)`;
}

/** "the device thread was busy Z% ..." with direct's work beside it, or undefined when unknown. */
function deviceBusyText(r: CaseResult, direct: CaseResult | undefined): string | undefined {
  if (r.device_us_per_io === null || r.device_busy === null) return undefined;
  const d = direct?.device_us_per_io;
  return `the device thread worked ${Math.round(r.device_busy * 100)}% of the window, ${r.device_us_per_io.toFixed(2)} us per request${d == null ? '' : ` (direct: ${d.toFixed(2)} us)`}`;
}

/** ", copies allow N" and ", device allows N" where they are known. */
export const boundText = (r: Ratio | undefined) =>
  (r?.copy_bound == null ? '' : `, copies allow ${r.copy_bound}`) +
  (r?.device_bound == null ? '' : `, device allows ${r.device_bound}`);

export interface Target {
  name: string;
  measured: number | null;
  target: number;
  met: boolean | null;
  /** The figure of each round of --repeat (Ratio.rounds; IOPS for the null target). */
  rounds: number[];
  /** What bounds it, measured, when it is missed. */
  bounds: string[];
}

/** A ratio target on `mode` ÷ direct for `key`, with its bounds when missed. */
function ratioTarget(
  c: TargetInputs,
  name: string,
  mode: PooledMode,
  key: string,
  target: number,
): Target {
  const { results, poolMiB, sizedPoolMiB } = c;
  const r = c.overDirect[mode]?.[key];
  const s = c.overDirectSized[mode]?.[key];
  const met = r === undefined ? null : r.iops >= target;
  const bounds: string[] = [];
  if (met === false) {
    const result = results.find(
      (x) => x.mode === mode && caseKey(x) === key && x.pool_mib === poolMiB,
    );
    const main = result ? mainBusyText(result) : undefined;
    if (main !== undefined) bounds.push(main);
    if (r?.copy_bound != null) {
      bounds.push(
        `the main thread's copies allow ${r.copy_bound} (copy time per request, measured)`,
      );
    }
    const direct = results.find((x) => x.mode === 'direct' && caseKey(x) === key);
    const dev = result ? deviceBusyText(result, direct) : undefined;
    if (dev !== undefined) {
      bounds.push(r?.device_bound == null ? dev : `${dev}: its work allows ${r.device_bound}`);
    }
    if (s !== undefined) {
      bounds.push(
        mode === 'bounce'
          ? `on a pool sized to the load (${sizedPoolMiB} MiB, buffers stay warm) it measures ${s.iops}: the next-fit placement on ${poolMiB} MiB costs the difference`
          : `on a pool sized to the load (${sizedPoolMiB} MiB) it measures ${s.iops}: what the ${poolMiB} MiB pool still costs ${mode === 'shared' ? "shared mode's buffers" : 'bounce buffers'} with warm placement`,
      );
    }
    if (bounds.length === 0) bounds.push('no bound measured in this run');
  }
  return { name, measured: r?.iops ?? null, target, met, rounds: r?.rounds ?? [], bounds };
}

/** What bounds the null 4 KiB bounce figure: how busy the main thread was, its copies. */
function nullBounds(b: CaseResult): string[] {
  const bounds: string[] = [];
  const main = mainBusyText(b);
  if (main !== undefined) bounds.push(main);
  // A cap only when the main thread made every copy (as Ratio.copy_bound), with
  // or without direct measured beside it.
  if (b.inline_copy_share >= ALL_INLINE && b.copy_us_per_io > 0) {
    bounds.push(
      `the main thread's copies allow ${Math.round(1e6 / b.copy_us_per_io)} IOPS (${b.copy_us_per_io.toFixed(2)} us per request)`,
    );
  }
  if (bounds.length === 0) bounds.push('no bound measured in this run');
  return bounds;
}

/** What the targets are judged on: the benchmark's results and ratios. */
export interface TargetInputs {
  /** Every case's result (medians of its rounds). */
  results: readonly CaseResult[];
  /** The rounds behind each result, in order. */
  runsOf: ReadonlyMap<CaseResult, readonly CaseResult[]>;
  /** mode ÷ direct per case key ({@link caseKey}), on the default pool and on the sized one. */
  overDirect: Partial<Record<PooledMode, Record<string, Ratio>>>;
  overDirectSized: Partial<Record<PooledMode, Record<string, Ratio>>>;
  poolMiB: number;
  sizedPoolMiB: number;
}

/** The null device's 4 KiB bounce writes must reach this many IOPS (issue 4, then 17). */
export const NULL_4K_BOUNCE_IOPS = 300_000;

/**
 * Issue 17's targets, the null 4 KiB one first, then issue 4's for the Linux
 * path; a target whose cases did not run has `measured` null.
 */
export function pipelineTargets(c: TargetInputs): Target[] {
  const nullBounce4k = c.results.find(
    (r) =>
      r.device === 'null' &&
      r.size === 4096 &&
      r.mode === 'bounce' &&
      r.op === 'write' &&
      r.pool_mib === c.poolMiB,
  );
  const met = nullBounce4k ? nullBounce4k.iops >= NULL_4K_BOUNCE_IOPS : null;
  return [
    {
      name: 'null 4 KiB writes, bounce IOPS',
      measured: nullBounce4k?.iops ?? null,
      target: NULL_4K_BOUNCE_IOPS,
      met,
      rounds: (nullBounce4k ? (c.runsOf.get(nullBounce4k) ?? []) : []).map((x) => x.iops),
      bounds: met === false && nullBounce4k ? nullBounds(nullBounce4k) : [],
    },
    ratioTarget(
      c,
      'ram-blk 64 KiB writes, bounce-tuned ÷ direct',
      'bounce-tuned',
      'ram-blk/write/65536',
      0.9,
    ),
    ratioTarget(
      c,
      'ram-blk 64 KiB reads, bounce-tuned ÷ direct',
      'bounce-tuned',
      'ram-blk/read/65536',
      0.7,
    ),
    ratioTarget(c, 'ram-blk 64 KiB writes, shared ÷ direct', 'shared', 'ram-blk/write/65536', 0.9),
    ratioTarget(c, 'ram-blk 64 KiB reads, shared ÷ direct', 'shared', 'ram-blk/read/65536', 0.9),
    ratioTarget(
      c,
      'ram-blk 64 KiB writes, bounce ÷ direct (Linux)',
      'bounce',
      'ram-blk/write/65536',
      0.7,
    ),
    ratioTarget(
      c,
      'ram-blk 64 KiB reads, bounce ÷ direct (Linux)',
      'bounce',
      'ram-blk/read/65536',
      0.7,
    ),
  ];
}
