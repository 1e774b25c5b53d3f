/**
 * The benchmarks run and print the JSON their issues specify. Tiny windows: this
 * checks shapes and invariants, never speed (speed is what `npm run bench:*` is for).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type CopyResult, copyVerdicts } from '../bench/copy-targets.js';
import type { DmaResult } from '../bench/dma.bench.js';
import { type CaseResult, countedWindows, deviceWorkSeconds } from '../bench/pipeline-case.js';
import { caseKey, pipelineTargets, ratio, type TargetInputs } from '../bench/pipeline-targets.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;

/** Runs a bench file under tsx and returns the JSON of its last stdout line. */
async function bench(file: string, args: string[]): Promise<Record<string, unknown>> {
  return (await benchRun(file, args)).out;
}

/** {@link bench}, with what the run wrote to stderr. */
async function benchRun(
  file: string,
  args: string[],
): Promise<{ out: Record<string, unknown>; stderr: string }> {
  const { stdout, stderr } = await run(
    process.execPath,
    ['--import', 'tsx', file, ...args, '--json'],
    { cwd: ROOT, timeout: 60_000 },
  );
  const lines = stdout.trim().split('\n');
  return { out: JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>, stderr };
}

/** Half a unit in the last place of a value printed with `digits` decimals. */
const halfUlp = (digits: number) => 0.5 * 10 ** -digits;

/**
 * Checks a printed quotient against the quotient of the printed operands, to the
 * scale of the values: `ratio` is num / den rounded to `digits` decimals, and num
 * and den were themselves printed rounded to `operandDigits` decimals (undefined:
 * exact). The bound is that rounding and nothing more: with operands off by h at
 * most, num / den is off by a relative (1 + h/num) / (1 - h/den) - 1 at most, and
 * the final rounding adds half a unit of `digits`. An absolute tolerance fails for
 * large ratios (43.962 printed vs 43.9038 recomputed from operands of 3 decimals)
 * and is too loose for small ones.
 */
function expectRoundedQuotient(
  ratio: number,
  num: number,
  den: number,
  digits: number,
  operandDigits?: number,
): void {
  const exact = num / den;
  const h = operandDigits === undefined ? 0 : halfUlp(operandDigits);
  expect(den, 'denominator larger than its rounding').toBeGreaterThan(h);
  const operandsRel = (1 + h / num) / (1 - h / den) - 1;
  const allowed = (exact * operandsRel + halfUlp(digits)) / exact;
  // 1e-12: floating-point slack in the arithmetic itself.
  expect(Math.abs(ratio / exact - 1), `${ratio} vs ${num} / ${den}`).toBeLessThanOrEqual(
    allowed + 1e-12,
  );
}

const BENCHES = [
  ['bench:copy', 'bench/copy.bench.ts'],
  ['bench:memcpy', 'bench/memcpy.bench.ts'],
  ['bench:dma', 'bench/dma.bench.ts'],
  ['bench:instructions', 'bench/instructions.bench.ts'],
  ['bench:pipeline', 'bench/pipeline.bench.ts'],
  ['bench:metrics', 'bench/metrics.bench.ts'],
  ['bench:status', 'bench/status.bench.ts'],
  ['bench:swiotlb', 'bench/swiotlb.bench.ts'],
  ['loadtest', 'bench/loadtest.ts'],
  ['soak', 'bench/soak.ts'],
  ['bench:stability', 'bench/stability.bench.ts'],
] as const;

/** Runs a bench file under tsx; its exit code and output, whatever the code. */
async function exec(
  file: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', file, ...args], {
      cwd: ROOT,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('expectRoundedQuotient (the comparison the benchmark checks use)', () => {
  it('accepts a large ratio whose operands were rounded, to their rounding only', () => {
    // engine 14.24 GB/s, raw 0.32392: printed 14.24, 0.324 and ratio 43.961, where
    // the printed operands give 43.9506 (an absolute 0.05 tolerance fails this).
    expectRoundedQuotient(43.961, 14.24, 0.324, 3, 3);
    expect(() => expectRoundedQuotient(44.1, 14.24, 0.324, 3, 3)).toThrow();
  });

  it('holds a quotient of exact operands to half a unit of its last decimal', () => {
    expectRoundedQuotient(0.667, 2, 3, 3);
    expect(() => expectRoundedQuotient(0.668, 2, 3, 3)).toThrow();
    expectRoundedQuotient(1234.568, 1234567.8, 1000, 3);
  });
});

describe("bench:copy's verdicts (copyVerdicts)", () => {
  const row = (over: Partial<CopyResult>): CopyResult => ({
    size: 4096,
    sg: 1,
    forced_workers: false,
    raw_gbps: 12,
    engine_gbps: 4,
    ratio: 0.33,
    workers: 1,
    path: 'inline',
    ios_per_sec: 1e6,
    writer_share: [1, 0],
    writer_busy: [0.5, 0],
    in_copy_gbps: 6,
    engine_cpu_cores: 1,
    main_busy: 1,
    ...over,
  });
  const results = [
    row({}),
    row({ sg: 32, ratio: 0.48 }),
    row({ size: 65536, ratio: 0.85 }),
    row({
      size: 65536,
      workers: 1,
      forced_workers: true,
      path: 'worker',
      ratio: 0.9,
      engine_gbps: 9,
    }),
    row({
      size: 65536,
      workers: 2,
      forced_workers: true,
      path: 'worker',
      ratio: 0.8,
      engine_gbps: 8,
    }),
  ];
  const run = { sizes: [4096, 65536], sgList: [1, 32], workerCounts: [1, 2, 0] };

  it('4 KiB is judged in lists; one buffer per I/O is printed with the bound its copies set', () => {
    const lines = copyVerdicts(results, { ...run, cpus: 2 });
    expect(lines.slice(0, 3)).toEqual([
      "info   ratio at 4KiB, one buffer per I/O, workers=1: 0.33 (no target: lists count at 4KiB; bound: the engine's copies ran at 6.00 GB/s against raw 12.00, which alone allows 0.50; the rest is the pool's map and unmap per I/O)",
      'MET    ratio >= 0.4 at 4KiB in lists of 32, workers=1: 0.48',
      'MET    ratio >= 0.8 at 64KiB, workers=1: 0.85',
    ]);
  });

  it('two workers against one: no verdict on 2 CPUs, judged from 3', () => {
    const two = copyVerdicts(results, { ...run, cpus: 2 }).at(-1);
    expect(two).toBe(
      'info   two workers faster than one at 64KiB (forced onto the workers: the engine copies it inline here): 0.80 vs 0.90 of raw (8.00 vs 9.00 GB/s) (no target on 2 CPUs: a second worker needs a core of its own)',
    );
    expect(copyVerdicts(results, { ...run, cpus: 3 }).at(-1)).toBe(
      'MISSED two workers faster than one at 64KiB (forced onto the workers: the engine copies it inline here): 0.80 vs 0.90 of raw (8.00 vs 9.00 GB/s)',
    );
  });
});

describe("bench:pipeline's targets say what bounds a missed one (pipelineTargets)", () => {
  /** A measured case; the fields the targets do not read hold plausible values. */
  const result = (over: Partial<CaseResult>): CaseResult => ({
    device: 'ram-blk',
    op: 'write',
    size: 65536,
    mode: 'direct',
    pool_mib: 64,
    pool_areas: 2,
    placement: null,
    iops: 200_000,
    gbps: 13.1,
    p50_us: 150,
    p99_us: 300,
    copy_us_per_io: 0,
    inline_copy_share: 1,
    main_cpu_us_per_io: 4.75,
    main_busy: 0.95,
    device_us_per_io: 5,
    device_busy: 1,
    c2c_before_ns: 200,
    c2c_after_ns: 200,
    c2c_floor_ns: 200,
    huge_pages_mib: null,
    windows: 3,
    far_windows: 0,
    far_runs: 0,
    runs: 1,
    iops_min: over.iops ?? 200_000,
    iops_max: over.iops ?? 200_000,
    ...over,
  });
  const directW = result({});
  const directR = result({ op: 'read' });
  const tuned = (op: 'read' | 'write', iops: number, pool = 64) =>
    result({
      op,
      mode: 'bounce-tuned',
      pool_mib: pool,
      placement: 'warm',
      iops,
      copy_us_per_io: 2.5,
      main_cpu_us_per_io: 5.7,
      main_busy: 0.93,
      device_us_per_io: 5.5,
      device_busy: 0.9,
    });
  const results: CaseResult[] = [
    result({
      device: 'null',
      size: 4096,
      mode: 'bounce',
      placement: 'linux',
      iops: 250_000,
      copy_us_per_io: 1.25,
      main_cpu_us_per_io: 3.8,
      main_busy: 0.95,
    }),
    tuned('write', 170_000),
    tuned('write', 176_000, 8),
    tuned('read', 150_000),
    result({ mode: 'shared', placement: 'warm', iops: 170_000, device_us_per_io: 5.25 }),
    result({ mode: 'shared', placement: 'warm', iops: 180_000, pool_mib: 8 }),
    result({ op: 'read', mode: 'shared', placement: 'warm', iops: 190_000 }),
    result({ mode: 'bounce', placement: 'linux', iops: 150_000 }),
    result({
      op: 'read',
      mode: 'bounce',
      placement: 'linux',
      iops: 120_000,
      main_cpu_us_per_io: null,
      main_busy: null,
      device_us_per_io: null,
      device_busy: null,
    }),
    result({ op: 'read', mode: 'bounce', placement: 'linux', iops: 160_000, pool_mib: 8 }),
    directW,
    directR,
  ];
  const overDirect: TargetInputs['overDirect'] = {};
  const overDirectSized: TargetInputs['overDirectSized'] = {};
  for (const r of results) {
    if (r.mode === 'direct' || r.device !== 'ram-blk') continue;
    const d = r.op === 'write' ? directW : directR;
    const table = r.pool_mib === 64 ? overDirect : overDirectSized;
    table[r.mode] ??= {};
    table[r.mode]![caseKey(r)] = ratio(r, d, [r], [d]);
  }
  const targets = pipelineTargets({
    results,
    runsOf: new Map(results.map((r) => [r, [r]])),
    overDirect,
    overDirectSized,
    poolMiB: 64,
    sizedPoolMiB: 8,
  });
  const byName = new Map(targets.map((t) => [t.name, t]));

  it('a met target names no bound; a missed one names each bound measured, by its mode', () => {
    expect(targets.map((t) => [t.name, t.measured, t.met])).toEqual([
      ['null 4 KiB writes, bounce IOPS', 250_000, false],
      ['ram-blk 64 KiB writes, bounce-tuned ÷ direct', 0.85, false],
      ['ram-blk 64 KiB reads, bounce-tuned ÷ direct', 0.75, true],
      ['ram-blk 64 KiB writes, shared ÷ direct', 0.85, false],
      ['ram-blk 64 KiB reads, shared ÷ direct', 0.95, true],
      ['ram-blk 64 KiB writes, bounce ÷ direct (Linux)', 0.75, true],
      ['ram-blk 64 KiB reads, bounce ÷ direct (Linux)', 0.6, false],
    ]);
    for (const t of targets) if (t.met) expect(t.bounds).toEqual([]);
    expect(byName.get('null 4 KiB writes, bounce IOPS')!.bounds).toEqual([
      'the main thread was on a CPU 95% of the window, 3.80 us per request (its polling for completions included)',
      "the main thread's copies allow 800000 IOPS (1.25 us per request)",
    ]);
    // 1e6 / 2.5 us / 200k = 2; 1e6 / 5.5 us / 200k = 0.909.
    expect(byName.get('ram-blk 64 KiB writes, bounce-tuned ÷ direct')!.bounds).toEqual([
      'the main thread was on a CPU 93% of the window, 5.70 us per request (its polling for completions included)',
      "the main thread's copies allow 2 (copy time per request, measured)",
      'the device thread worked 90% of the window, 5.50 us per request (direct: 5.00 us): its work allows 0.909',
      'on a pool sized to the load (8 MiB) it measures 0.88: what the 64 MiB pool still costs bounce buffers with warm placement',
    ]);
    // Shared mode copies nothing: no copy bound, and its sized pool is warm too.
    expect(byName.get('ram-blk 64 KiB writes, shared ÷ direct')!.bounds).toEqual([
      'the main thread was on a CPU 95% of the window, 4.75 us per request (its polling for completions included)',
      'the device thread worked 100% of the window, 5.25 us per request (direct: 5.00 us): its work allows 0.952',
      "on a pool sized to the load (8 MiB) it measures 0.9: what the 64 MiB pool still costs shared mode's buffers with warm placement",
    ]);
    // Linux's bounce, its threads unmeasured: the placement is what is left to say.
    expect(byName.get('ram-blk 64 KiB reads, bounce ÷ direct (Linux)')!.bounds).toEqual([
      'on a pool sized to the load (8 MiB, buffers stay warm) it measures 0.8: the next-fit placement on 64 MiB costs the difference',
    ]);
  });

  it('a target whose cases did not run is neither met nor missed', () => {
    const none = pipelineTargets({
      results: [],
      runsOf: new Map(),
      overDirect: {},
      overDirectSized: {},
      poolMiB: 64,
      sizedPoolMiB: 8,
    });
    expect(none.map((t) => [t.measured, t.met, t.bounds])).toEqual(
      none.map(() => [null, null, []]),
    );
  });
});

describe("bench:pipeline's windows that count (countedWindows)", () => {
  // Probes in ns around each window; the floor is 100, so far is over 250.
  const w = (before: number, after: number, id: string) => ({ before, after, id });
  const windows = [w(100, 120, 'a'), w(600, 110, 'b'), w(130, 700, 'c'), w(240, 250, 'd')];

  it('near only: the windows with both probes near, the far ones counted apart', () => {
    const r = countedWindows(windows, true, 100);
    expect(r.kept.map((x) => x.id)).toEqual(['a', 'd']);
    expect(r.farWindows).toBe(2);
    expect(r.farKept).toBe(false);
  });

  it('near only, with no near window: every window counts, and says so', () => {
    const r = countedWindows(windows.slice(1, 3), true, 100);
    expect(r.kept.map((x) => x.id)).toEqual(['b', 'c']);
    expect(r.farWindows).toBe(2);
    expect(r.farKept).toBe(true);
  });

  it('any: every window counts, far ones included', () => {
    const r = countedWindows(windows, false, 100);
    expect(r.kept.map((x) => x.id)).toEqual(['a', 'b', 'c', 'd']);
    expect(r.farWindows).toBe(2);
    expect(r.farKept).toBe(true);
  });
});

describe("bench:pipeline's device work (deviceWorkSeconds)", () => {
  const w = (elapsed: number, deviceIdleMs: number) => ({ elapsed, deviceIdleMs });

  it('is each window less its idle time, added up', () => {
    expect(deviceWorkSeconds([w(0.2, 50), w(0.3, 0)])).toBeCloseTo(0.15 + 0.3, 12);
  });

  it('a window whose idle stretch began before it (and so counts whole) adds no work, never less', () => {
    expect(deviceWorkSeconds([w(0.2, 211), w(0.1, 40)])).toBeCloseTo(0.06, 12);
  });

  it("is unknown when a window's idle time is not a number of milliseconds", () => {
    for (const idle of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      expect(deviceWorkSeconds([w(0.2, 10), w(0.2, idle)])).toBeNull();
    }
  });
});

describe('benchmark command lines', () => {
  it.each(BENCHES)(
    '%s answers --help with a usage that names every option, exit 0',
    async (_name, file) => {
      // benchArgs refuses (and this run fails) when an option is missing from the usage.
      const { code, stdout, stderr } = await exec(file, ['--help']);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toMatch(/^Usage: npm run /);
      expect(stdout).toContain('--json');
    },
    60_000,
  );

  it.each(BENCHES)(
    '%s refuses an unknown flag in one line, exit 2, no stack trace',
    async (name, file) => {
      const { code, stdout, stderr } = await exec(file, ['--no-such-flag']);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toEqual([
        `${name}: unknown option --no-such-flag (--help lists the options)`,
      ]);
    },
    60_000,
  );

  it('a bad value names its flag and what it must be', async () => {
    const { code, stderr } = await exec('bench/pipeline.bench.ts', ['--devices', 'null,disk']);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe(
      'bench:pipeline: --devices: "disk" is not one of null, ram-blk (--help lists the options)',
    );
  }, 60_000);
});

describe('benchmarks', () => {
  it('bench:dma alternates this build with --against, and prints medians within their ranges', async () => {
    // This checkout against itself: the same path twice, measured in alternating blocks.
    const out = await bench('bench/dma.bench.ts', [
      '--blocks',
      '3',
      '--skip',
      '1',
      '--block-requests',
      '64',
      '--pool-mib',
      '8',
      '--against',
      '.',
    ]);
    // The bench's own result type; with --against both of its optional fields are set.
    const results = out.results as Required<DmaResult>[];
    expect(results.map((r) => [r.mode, r.size, r.depth, r.pool_mib, r.blocks])).toEqual([
      ['bounce', 4096, 32, 8, 2],
      ['bounce', 65536, 32, 8, 2],
      ['bounce-tuned', 4096, 32, 8, 2],
      ['bounce-tuned', 65536, 32, 8, 2],
    ]);
    for (const r of results) {
      expect(r.ns_min).toBeGreaterThan(0);
      expect(r.ns_per_request).toBeGreaterThanOrEqual(r.ns_min);
      expect(r.ns_per_request).toBeLessThanOrEqual(r.ns_max);
      expect(r.against_ns_per_request).toBeGreaterThan(0);
      // The ratio is of the unrounded medians; the medians are printed as integers.
      expectRoundedQuotient(r.over_against, r.ns_per_request, r.against_ns_per_request, 3, 0);
    }
    // A directory with no build in it: one line, exit 2, before any case runs.
    const missing = await exec('bench/dma.bench.ts', ['--against', 'no-such-dir']);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^bench:dma: --against: cannot load a build from "no-such-dir"/);
  }, 60_000);

  it('bench:memcpy prints every size hot and cold, ratios = shared / unshared and fill / shared', async () => {
    const out = await bench('bench/memcpy.bench.ts', [
      '--sizes',
      '4k,64k',
      '--rounds',
      '1',
      '--duration',
      '0.02',
      '--cold-mib',
      '4',
    ]);
    const results = out.results as {
      size: number;
      working_set: string;
      working_set_bytes: number;
      unshared_gbps: number;
      shared_gbps: number;
      shared_misaligned_gbps: number;
      fill_gbps: number;
      shared_over_unshared: number;
      fill_over_shared: number;
    }[];
    expect(results.map((r) => [r.size, r.working_set, r.working_set_bytes])).toEqual([
      [4096, 'hot', 2 ** 20],
      [65536, 'hot', 2 ** 20],
      [4096, 'cold', 4 * 2 ** 20],
      [65536, 'cold', 4 * 2 ** 20],
    ]);
    for (const r of results) {
      for (const g of [r.unshared_gbps, r.shared_gbps, r.shared_misaligned_gbps, r.fill_gbps]) {
        expect(g).toBeGreaterThan(0);
      }
      // The ratios are of the unrounded medians; the GB/s are printed to 3 decimals.
      expectRoundedQuotient(r.shared_over_unshared, r.shared_gbps, r.unshared_gbps, 3, 3);
      expectRoundedQuotient(r.fill_over_shared, r.fill_gbps, r.shared_gbps, 3, 3);
    }
  }, 60_000);

  it('bench:status prints IOPS with the page open and closed per workload, ratio = open / closed', async () => {
    const out = await bench('bench/status.bench.ts', [
      '--rounds',
      '1',
      '--duration',
      '0.3',
      '--interval',
      '100',
    ]);
    const results = out.results as {
      device: string;
      size: number;
      open_iops: number;
      closed_iops: number;
      open_over_closed: number;
      page_reads: number;
      page_bytes_per_read: number;
    }[];
    expect(results.map((r) => [r.device, r.size])).toEqual([
      ['null', 4096],
      ['ram-blk', 65536],
    ]);
    for (const r of results) {
      expect(r.closed_iops).toBeGreaterThan(0);
      expect(r.open_iops).toBeGreaterThan(0);
      // The ratio is of the unrounded medians; the IOPS are printed as integers.
      expectRoundedQuotient(r.open_over_closed, r.open_iops, r.closed_iops, 12, 0);
      // The page read while it was open: a 64 MiB pool's map is 8 KiB, 11 KiB in base64.
      expect(r.page_reads).toBeGreaterThan(0);
      expect(r.page_bytes_per_read).toBeGreaterThan(11 * 1024);
    }
  }, 60_000);

  it('bench:copy prints one result per size, worker count and list length, ratio = engine / raw', async () => {
    const out = await bench('bench/copy.bench.ts', [
      '--sizes',
      '4k,64k',
      '--workers',
      '0,1',
      '--duration',
      '0.04',
      '--warmup',
      '0.01',
      '--rounds',
      '2',
      '--guest-mib',
      '32',
    ]);
    const results = out.results as {
      size: number;
      sg: number;
      workers: number;
      raw_gbps: number;
      engine_gbps: number;
      ratio: number;
    }[];
    // 4 KiB alone and in lists of 32, 64 KiB alone; for workers 0 and 1.
    expect(results.map((r) => `${r.workers}/${r.size}/${r.sg}`).sort()).toEqual(
      ['0/4096/1', '0/4096/32', '0/65536/1', '1/4096/1', '1/4096/32', '1/65536/1'].sort(),
    );
    for (const r of results) {
      expect(r.raw_gbps).toBeGreaterThan(0);
      expect(r.engine_gbps).toBeGreaterThan(0);
      // bench/copy.bench.ts prints raw_gbps, engine_gbps and ratio rounded to 3 decimals.
      expectRoundedQuotient(r.ratio, r.engine_gbps, r.raw_gbps, 3, 3);
    }
  }, 90_000);

  it('bench:copy measures 64 KiB again on the workers when the engine copied it inline with 1 and 2', async () => {
    const out = await bench('bench/copy.bench.ts', [
      '--sizes',
      '64k',
      '--workers',
      '1,2',
      '--duration',
      '0.04',
      '--warmup',
      '0.01',
      '--rounds',
      '1',
      '--guest-mib',
      '32',
    ]);
    const results = out.results as { workers: number; path: string; forced_workers: boolean }[];
    const chosen = results.filter((r) => !r.forced_workers);
    const forced = results.filter((r) => r.forced_workers);
    expect(chosen.map((r) => r.workers)).toEqual([1, 2]);
    // Inline by default on 2 CPUs or fewer (128 KiB threshold), on the workers above.
    const bothInline = chosen.every((r) => r.path === 'inline');
    expect(forced.map((r) => `${r.workers}/${r.path}`)).toEqual(
      bothInline ? ['1/worker', '2/worker'] : [],
    );
  }, 90_000);

  it('soak runs its rounds: faults, timeouts and resets under load, one round closed under it', async () => {
    const out = await bench('bench/soak.ts', ['--rounds', '2', '--seconds', '1', '--seed', '3']);
    // Rounds 0 and 1 run no copy worker; rounds 2 and 3 crash one (not run here).
    const rounds = out.rounds as {
      round: number;
      seed: number;
      end: string;
      resets: number;
      outcomes: Record<string, number>;
    }[];
    expect(rounds.map((r) => `${r.round}/${r.seed}/${r.end}`)).toEqual([
      '0/3/stopped, reset',
      '1/4/closed under load',
    ]);
    for (const r of rounds) {
      expect(r.outcomes.ok).toBeGreaterThan(0);
      // The hostile device's lies were caught.
      expect(r.outcomes.MEDIATOR_DEVICE_FAULT).toBeGreaterThan(0);
    }
    // Requests it never answered timed out, and the device was reset.
    expect(rounds.reduce((n, r) => n + r.resets, 0)).toBeGreaterThan(0);
    // Closing under load: requests after the close are refused.
    expect(rounds[1]!.outcomes.MEDIATOR_CLOSED).toBeGreaterThan(0);
  }, 90_000);

  it('soak --mode shared: the same rounds with buffers allocated in the pool, a short timeout, no slot left', async () => {
    const out = await bench('bench/soak.ts', [
      '--mode',
      'shared',
      '--rounds',
      '1',
      '--seconds',
      '1',
      '--timeout-ms',
      '50',
      '--seed',
      '3',
    ]);
    const rounds = out.rounds as {
      end: string;
      leaked: number;
      outcomes: Record<string, number>;
    }[];
    expect(rounds.map((r) => `${r.end}/${r.leaked}`)).toEqual(['stopped, reset/0']);
    expect(rounds[0]!.outcomes.ok).toBeGreaterThan(0);
    expect(rounds[0]!.outcomes.MEDIATOR_DEVICE_FAULT).toBeGreaterThan(0);
  }, 90_000);

  it('bench:pipeline prints every mode (pooled modes on two pool sizes) and their ratios to direct', async () => {
    const { out, stderr } = await benchRun('bench/pipeline.bench.ts', [
      '--in-process',
      '--topology',
      'any',
      '--pool-areas',
      '4',
      '--repeat',
      '2',
      '--devices',
      'null',
      '--sizes',
      '4k',
      '--ops',
      'write',
      '--duration',
      '0.05',
      '--warmup',
      '0.02',
    ]);
    // The bench's own result type, not a copy of it to keep in step.
    const results = out.results as CaseResult[];
    expect(results.map((r) => `${r.mode}/${r.pool_mib}/${r.pool_areas}`)).toEqual([
      'bounce/64/4',
      'bounce/8/4',
      'bounce-tuned/64/4',
      'bounce-tuned/8/4',
      'shared/64/4',
      'shared/8/4',
      'direct/0/0',
    ]);
    for (const r of results) {
      expect(r).toMatchObject({ device: 'null', op: 'write', size: 4096 });
      expect(r.iops).toBeGreaterThan(0);
      // Two runs: the median of two lies between them.
      expect(r.runs).toBe(2);
      expect(r.iops_min).toBeLessThanOrEqual(r.iops);
      expect(r.iops).toBeLessThanOrEqual(r.iops_max);
      expect(r.p99_us).toBeGreaterThanOrEqual(r.p50_us);
      // Every run probed the cores before and after; the floor is the lowest probe.
      expect(r.c2c_before_ns).toBeGreaterThan(0);
      expect(r.c2c_after_ns).toBeGreaterThan(0);
      expect(r.c2c_floor_ns).toBeLessThanOrEqual(Math.min(r.c2c_before_ns, r.c2c_after_ns));
      expect(r.far_runs).toBeLessThanOrEqual(r.runs);
      // --duration 0.05 is one window (shorter than --window) per run, and
      // --topology any counts every window, far ones included.
      expect(r.windows).toBe(2);
      expect(r.far_windows).toBeLessThanOrEqual(r.windows);
      expect(r.far_runs > 0).toBe(r.far_windows > 0);
    }
    // Progress on stderr: one line per case run, counted k of 14 (7 runs, --repeat 2),
    // each with that run's IOPS, whose lowest and highest are the result's range.
    const progress = stderr.trim().split('\n');
    expect(progress).toHaveLength(14);
    const perRun = new Map<string, number[]>();
    for (const [k, line] of progress.entries()) {
      const m = line.match(
        /^bench:pipeline: \[(\d+)\/14\] null write 4096 ([a-z-]+)(?: (\d+) MiB)?: (\d+) IOPS, c2c \d+\/\d+ ns/,
      );
      expect(m, line).not.toBeNull();
      expect(Number(m![1])).toBe(k + 1);
      const key = `${m![2]}/${m![3] ?? 0}`;
      perRun.set(key, [...(perRun.get(key) ?? []), Number(m![4])]);
    }
    for (const r of results) {
      const iops = perRun.get(`${r.mode}/${r.pool_mib}`)!;
      expect([Math.min(...iops), Math.max(...iops)]).toEqual([r.iops_min, r.iops_max]);
    }
    const topology = out.topology as {
      mode: string;
      floor_ns: number;
      far_factor: number;
      far_runs: number;
      reruns: number;
    };
    expect(topology.mode).toBe('any');
    // --topology any never measures a case again.
    expect(topology.reruns).toBe(0);
    expect(topology.far_runs).toBe(results.reduce((n, r) => n + r.far_runs, 0));
    for (const r of results) {
      // A median of two probes is at least the lower one, which is at least the floor.
      expect(Math.max(r.c2c_before_ns, r.c2c_after_ns)).toBeGreaterThanOrEqual(topology.floor_ns);
    }
    // The device thread's work: known (its clock held numbers), none below 0 and
    // never more than the window.
    for (const r of results) {
      expect(r.device_us_per_io).not.toBeNull();
      expect(r.device_us_per_io).toBeGreaterThanOrEqual(0);
      expect(r.device_busy).toBeGreaterThanOrEqual(0);
      expect(r.device_busy).toBeLessThanOrEqual(1);
    }
    type Ratio = {
      iops: number;
      copy_bound: number | null;
      device_bound: number | null;
      rounds: number[];
    };
    const over = out.over_direct as Record<string, Record<string, Ratio>>;
    const sized = out.over_direct_sized_pool as Record<string, Record<string, Ratio>>;
    expect(Object.keys(over)).toEqual(['bounce', 'bounce-tuned', 'shared']);
    expect(out.bounce_over_direct).toEqual(over.bounce);
    expect(out.bounce_over_direct_sized_pool).toEqual(sized.bounce);
    const direct = results.at(-1)!;
    // Direct and shared mode copy nothing; bounce writes copy every request's data in.
    expect(direct.copy_us_per_io).toBe(0);
    for (const r of results) {
      const ratios = (r.pool_mib === 64 ? over : sized)[r.mode];
      if (r.mode === 'direct') continue;
      const ratio = ratios!['null/write/4096']!;
      // bench/pipeline.bench.ts: IOPS printed as integers, ratios to 3 decimals of them.
      expectRoundedQuotient(ratio.iops, r.iops, direct.iops, 3);
      // The device's cap: as many requests as its work per request allows, over direct's
      // (none when the windows show no work at all, as a loaded machine can make them).
      if (r.device_us_per_io! > 0) {
        expectRoundedQuotient(ratio.device_bound!, 1e6 / r.device_us_per_io!, direct.iops, 3);
      } else expect(ratio.device_bound).toBeNull();
      // One ratio per round, each of one run of the mode over one run of direct.
      expect(ratio.rounds).toHaveLength(2);
      for (const x of ratio.rounds) {
        expect(x).toBeGreaterThanOrEqual(+(r.iops_min / direct.iops_max).toFixed(3));
        expect(x).toBeLessThanOrEqual(+(r.iops_max / direct.iops_min).toFixed(3));
      }
      // The median of two runs is their mean, so the ratio of the medians is the
      // mediant of the two rounds' ratios and lies between them (to the rounding).
      expect(ratio.iops).toBeGreaterThanOrEqual(Math.min(...ratio.rounds) - 0.001);
      expect(ratio.iops).toBeLessThanOrEqual(Math.max(...ratio.rounds) + 0.001);
      if (r.mode === 'shared') {
        expect(r.copy_us_per_io).toBe(0);
        expect(ratio.copy_bound).toBeNull();
        continue;
      }
      expect(r.copy_us_per_io).toBeGreaterThan(0);
      expect(r.inline_copy_share).toBeGreaterThanOrEqual(0);
      expect(r.inline_copy_share).toBeLessThanOrEqual(1);
      // The cap holds only when the main thread made every copy.
      if (r.inline_copy_share < 0.999) expect(ratio.copy_bound).toBeNull();
      // copy_us_per_io is printed unrounded, the bound to 3 decimals.
      else expectRoundedQuotient(ratio.copy_bound!, 1e6 / r.copy_us_per_io, direct.iops, 3);
    }
    const targets = out.targets as {
      name: string;
      measured: number | null;
      met: boolean | null;
      rounds: number[];
    }[];
    const null4k = targets.find((t) => t.name.startsWith('null 4 KiB'))!;
    expect(null4k.measured).toBe(results[0]!.iops);
    // The null target's rounds are the bounce runs' IOPS, the lowest and the highest.
    expect([...null4k.rounds].sort((a, b) => a - b)).toEqual([
      results[0]!.iops_min,
      results[0]!.iops_max,
    ]);
    expect(null4k.met).toBe(results[0]!.iops >= 300_000);
    expect(out.notes as string[]).toContain(
      'bounce-tuned = bounce with warm placement (placement "warm": recently freed slots first, not the kernel\'s next-fit) and reads without the copy-in (fromDeviceBounce "used-length")',
    );
  }, 90_000);

  it('loadtest --baseline prints service / baseline per phase, the ratio of the two rates', async () => {
    const out = await bench('bench/loadtest.ts', [
      '--baseline',
      '--duration',
      '1',
      '--connections',
      '2',
    ]);
    const phases = out.phases as {
      name: string;
      rps: number;
      baseline_rps: number;
      ratio: number;
      client: { non_2xx: number; errors: number; server_cpu_us: number; client_cpu_us: number };
      baseline: { non_2xx: number; errors: number; server_cpu_us: number; client_cpu_us: number };
      cpu_us_per_request: { server: number; client: number; busy: number };
      baseline_cpu_us_per_request: { server: number; client: number; busy: number };
      cpu_bound_ratio: number;
    }[];
    expect(phases.map((p) => p.name)).toEqual([
      'synthetic write (POST /io)',
      'synthetic read (POST /io)',
      'block write (PUT /blocks)',
      'block read (GET /blocks)',
    ]);
    for (const p of phases) {
      expect(p.rps).toBeGreaterThan(0);
      expect(p.baseline_rps).toBeGreaterThan(0);
      expectRoundedQuotient(p.ratio, p.rps, p.baseline_rps, 3);
      expect(p.client).toMatchObject({ non_2xx: 0, errors: 0 });
      expect(p.baseline).toMatchObject({ non_2xx: 0, errors: 0 });
      // One window each: the medians are that window's figures, and the bound is
      // the baseline's CPU per request over the service's, the client's included.
      const mine = p.cpu_us_per_request;
      const theirs = p.baseline_cpu_us_per_request;
      expect(mine.server).toBe(p.client.server_cpu_us);
      expect(mine.client).toBe(p.client.client_cpu_us);
      expect(theirs.server).toBe(p.baseline.server_cpu_us);
      // A request costs both processes some CPU time.
      for (const v of [mine.server, mine.client, theirs.server, theirs.client]) {
        expect(v).toBeGreaterThan(0);
      }
      expectRoundedQuotient(
        p.cpu_bound_ratio,
        theirs.server + theirs.client,
        mine.server + mine.client,
        3,
      );
    }
    // 4 KiB (the default size) in the default mode and config: issue 17's targets,
    // PUT and GET at 0.8 of the baseline, judged on the phases' ratios.
    const targets = out.targets as {
      name: string;
      measured: number;
      target: number;
      met: boolean;
      bounds: string[];
    }[];
    expect(targets.map((t) => t.name)).toEqual([
      'block write (PUT /blocks), service ÷ baseline',
      'block read (GET /blocks), service ÷ baseline',
    ]);
    for (const [i, t] of targets.entries()) {
      const phase = phases[2 + i]!;
      expect(t.measured).toBe(phase.ratio);
      expect(t.target).toBe(0.8);
      expect(t.met).toBe(phase.ratio >= 0.8);
      // A missed target says what bounds it: the CPU per request, measured.
      expect(t.bounds).toEqual(
        t.met ? [] : [expect.stringContaining(`the CPU allows ${phase.cpu_bound_ratio}`)],
      );
    }
  }, 90_000);

  it("loadtest --config runs the file's mode unless --mode says otherwise; a bad file, or one without blk0, is a usage error", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loadtest-'));
    try {
      const shared = join(dir, 'shared.json');
      writeFileSync(shared, JSON.stringify({ mode: 'shared' }));
      const args = ['--config', shared, '--duration', '0.2', '--connections', '2'];
      expect((await bench('bench/loadtest.ts', args)).mode).toBe('shared');
      expect((await bench('bench/loadtest.ts', [...args, '--mode', 'direct'])).mode).toBe('direct');
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify({ mode: 'sharde' }));
      const r = await exec('bench/loadtest.ts', ['--config', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('loadtest: --config: config file');
      expect(r.stderr).toContain('mode: "sharde" is not allowed');
      // A config without the device every phase loads would measure 404s.
      const other = join(dir, 'other.json');
      writeFileSync(other, JSON.stringify({ devices: [{ id: 'x', kind: 'null' }] }));
      const o = await exec('bench/loadtest.ts', ['--config', other]);
      expect(o.code).toBe(2);
      expect(o.stderr).toContain('has no device "blk0", the device every phase loads');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  type StabilityFigure = { name: string; median: number; min: number; max: number };

  it('bench:stability --experiment pages: each way, the huge pages it got and every copy case', async () => {
    const out = await bench('bench/stability.bench.ts', [
      '--experiment',
      'pages',
      '--rounds',
      '1',
      '--seconds',
      '0.02',
    ]);
    const figs = (out.experiments as Record<string, StabilityFigure[]>).pages!;
    const cases = [
      '4K back to back',
      '4K with work between',
      '64K back to back',
      '64K with work between',
    ];
    for (const way of ['as allocated', 'with glibc.malloc.hugetlb=1']) {
      const names = figs.filter((f) => f.name.startsWith(`${way}: `)).map((f) => f.name);
      const copyCases = names.filter((n) => !n.endsWith('huge pages, MiB'));
      expect(copyCases).toEqual(cases.map((c) => `${way}: ${c}`));
    }
    for (const f of figs) {
      expect(f.min).toBeLessThanOrEqual(f.median);
      expect(f.median).toBeLessThanOrEqual(f.max);
      if (!f.name.endsWith('MiB')) expect(f.median).toBeGreaterThan(0);
    }
  }, 60_000);

  it('bench:stability --experiment pairs: every round in one state, ratios of the two modes', async () => {
    const out = await bench('bench/stability.bench.ts', [
      '--experiment',
      'pairs',
      '--rounds',
      '2',
      '--seconds',
      '0.05',
    ]);
    const figs = (out.experiments as Record<string, StabilityFigure[]>).pairs!;
    expect(figs.slice(0, 4).map((f) => f.name)).toEqual([
      'direct IOPS',
      'bounce-tuned IOPS',
      'bounce-tuned / direct, same round',
      'bounce-tuned / direct, a round apart',
    ]);
    expect(figs[0]!.min).toBeGreaterThan(0);
    expect(figs[1]!.min).toBeGreaterThan(0);
    // Each round is near or far, once.
    const byState = figs.slice(4).map((f) => Number(/\((\d+)\)$/.exec(f.name)![1]));
    expect(byState.reduce((a, b) => a + b, 0)).toBe(2);
  }, 90_000);

  it('bench:pipeline runs each case in a fresh process by default, on the pages asked for', async () => {
    const out = await bench('bench/pipeline.bench.ts', [
      '--pages',
      '2m',
      '--topology',
      'any',
      '--modes',
      'shared,direct',
      '--sized-pool-mib',
      '0',
      '--devices',
      'ram-blk',
      '--sizes',
      '4k',
      '--ops',
      'read',
      '--duration',
      '0.05',
      '--warmup',
      '0.02',
    ]);
    const results = out.results as CaseResult[];
    // Shared mode on warm placement, as the service runs it; direct has no pool.
    expect(results.map((r) => `${r.mode}/${r.pool_mib}/${r.placement}`)).toEqual([
      'shared/64/warm',
      'direct/0/null',
    ]);
    for (const r of results) expect(r.iops).toBeGreaterThan(0);
    // The main thread's CPU time per request, where Linux tells it: some time, and
    // never more than the window (busy at most 1, with a little slack for the clocks).
    if (existsSync('/proc/thread-self/schedstat')) {
      for (const r of results) {
        expect(r.main_cpu_us_per_io).toBeGreaterThan(0);
        expect(r.main_busy).toBeGreaterThan(0);
        expect(r.main_busy).toBeLessThan(1.05);
      }
    }
    expect((out.notes as string[])[2]).toMatch(
      /each in a fresh process; memory pre-touched; pages 2m \(glibc.malloc.hugetlb=1\)/,
    );
    // 2 MiB pages where THP can be asked for with madvise and glibc has the tunable (2.35).
    const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } })
      .header?.glibcVersionRuntime;
    const thp = existsSync('/sys/kernel/mm/transparent_hugepage/enabled')
      ? readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8')
      : '';
    const [major = 0, minor = 0] = (glibc ?? '0.0').split('.').map(Number);
    const canAsk = /\[(madvise|always)\]/.test(thp) && (major > 2 || (major === 2 && minor >= 35));
    for (const r of results) {
      if (canAsk && existsSync('/proc/self/smaps_rollup'))
        expect(r.huge_pages_mib).toBeGreaterThan(0);
      else expect(r.huge_pages_mib === null || r.huge_pages_mib >= 0).toBe(true);
    }
  }, 90_000);
});
