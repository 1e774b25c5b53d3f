/**
 * swiotlb allocator benchmark: map+unmap pairs per second, no copies (NO_COPY
 * bouncer), TO_DEVICE mappings of 4 KiB and 64 KiB with varying original addresses.
 * Each thread keeps RING mappings live, so every map runs the next-fit slot search
 * past used slots and every unmap merges free runs, all under an area lock.
 *
 * Cases, measured in one run so that their ratios share the machine's state:
 *   single               the main thread alone, 1-area pool;
 *   single-exclusive     the same on an exclusive pool (PoolOptions.exclusive: one
 *                        mapping thread, no lock, no atomic access): what the
 *                        locks and atomics cost a thread that never contends;
 *   two-threads-1-area   two workers on one pool with one lock: they contend;
 *   two-threads-2-areas  two workers, each starting in its own area (own lock and
 *                        cursor): the contention that Linux's swiotlb areas removed
 *                        (20347fca71a3 "swiotlb: split up the global swiotlb lock",
 *                        v6.0).
 * Lock contention per area is the growth of pool.stats().areas[i].contended over
 * the measured window (a map and an unmap each take one area lock).
 *
 * The reference machine has 2 shared, noisy cores: this prints ratios and never
 * asserts speed.
 *
 * Options: `npm run bench:swiotlb -- --help`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import {
  isKernelVersion,
  isPlacement,
  type KernelVersion,
  type Placement,
  SwiotlbPool,
} from '../src/swiotlb/index.js';
import { benchArgs, positiveFlag, usageError } from './cli.js';
import {
  BATCH,
  origBaseOf,
  PairLoop,
  Phase,
  type WorkerInput,
  type WorkerMessage,
} from './swiotlb-worker.js';

/** 4 MiB = 2048 slots: two threads' rings of 64 KiB mappings fill half of it. */
const POOL_BYTES = 4 * 2 ** 20;
const SIZES = [4096, 65536];

const USAGE = `Usage: npm run bench:swiotlb -- [options]
Pool map+unmap pairs per second: one thread (on a shared and on an exclusive pool),
two threads on one area, on two areas.

  --duration S     seconds per case (default 1.5)
  --warmup S       seconds of warm-up per case (default 0.3)
  --kernel V       whose search rules the pool follows: 6.1, 6.6 or 6.10 (default 6.10)
  --placement P    linux (the kernel's next-fit search; default) or warm (the runs
                   freed last first: src/swiotlb/warm.ts)
  --json           print {"results":[...],"ratios":{...}} as the last line
  -h, --help       this help`;

type CaseName = 'single' | 'single-exclusive' | 'two-threads-1-area' | 'two-threads-2-areas';

/** Whose rules the pools follow, and their placement. */
interface Rules {
  kernel: KernelVersion;
  placement: Placement;
}

interface Result {
  case: CaseName;
  size: number;
  pairs_per_sec: number;
  threads: number;
  areas: number;
  /** Lock waits in the measured window, summed over the areas. */
  contended: number;
  contended_by_area: number[];
}

/** Lock waits so far in each area (pool.stats() briefly takes each area's lock). */
function contendedNow(pool: SwiotlbPool): number[] {
  return pool.stats().areas.map((a) => a.contended);
}

/**
 * Reads the pool's counters once the case is over (threads done and drained) and
 * checks it ended empty. `before` is {@link contendedNow} at the start of the window.
 */
function result(
  pool: SwiotlbPool,
  name: CaseName,
  size: number,
  threads: number,
  pairsPerSec: number,
  before: number[],
): Result {
  const stats = pool.stats();
  if (stats.used !== 0 || stats.maps !== stats.unmaps) {
    console.error(
      `warning: ${name} ${size}: used ${stats.used}, maps ${stats.maps}, unmaps ${stats.unmaps}`,
    );
  }
  const byArea = stats.areas.map((a, i) => a.contended - before[i]!);
  return {
    case: name,
    size,
    pairs_per_sec: Math.round(pairsPerSec),
    threads,
    areas: stats.nareas,
    contended: byArea.reduce((s, c) => s + c, 0),
    contended_by_area: byArea,
  };
}

function runSingle(
  size: number,
  rules: Rules,
  warmupS: number,
  durationS: number,
  exclusive: boolean,
): Result {
  const pool = SwiotlbPool.create({ size: POOL_BYTES, areas: 1, ...rules, exclusive });
  const loop = new PairLoop(pool, size, origBaseOf(0));
  const warmEnd = performance.now() + warmupS * 1000;
  while (performance.now() < warmEnd) loop.run(BATCH);

  const before = contendedNow(pool);
  const t0 = performance.now();
  const end = t0 + durationS * 1000;
  let pairs = 0;
  let t = t0;
  while (t < end) {
    loop.run(BATCH);
    pairs += BATCH;
    t = performance.now();
  }
  loop.drain();
  const name = exclusive ? 'single-exclusive' : 'single';
  return result(pool, name, size, 1, pairs / ((t - t0) / 1000), before);
}

/**
 * The worker's entry: registers tsx inside the worker, then imports the .ts file.
 * `new Worker(url.ts, { execArgv: ['--import', 'tsx'] })` fails on Node 20 with
 * ERR_UNKNOWN_FILE_EXTENSION: loader hooks from a worker's execArgv only apply
 * from Node 22.2 (nodejs/node#47747, privatenumber/tsx#354).
 */
const WORKER_BOOT = import.meta.url.endsWith('.js')
  ? new URL('./swiotlb-worker.js', import.meta.url) // compiled (npm run bench:swiotlb)
  : new URL(
      `data:text/javascript,${encodeURIComponent(
        `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};\n` +
          'register();\n' +
          `await import(${JSON.stringify(new URL('./swiotlb-worker.ts', import.meta.url).href)});`,
      )}`,
    );

/** Starts a worker; `ready` once its ring is mapped, `done` with its measured pair count. */
function startWorker(input: WorkerInput): { ready: Promise<void>; done: Promise<number> } {
  const worker = new Worker(WORKER_BOOT, { workerData: input });
  const failed = new Promise<never>((_, reject) => {
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`benchmark worker exited with code ${code}`)));
  });
  const ready = new Promise<void>((resolve) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m === 'ready') resolve();
    });
  });
  const done = new Promise<number>((resolve) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m !== 'ready') resolve(m.pairs);
    });
  });
  return { ready: Promise.race([ready, failed]), done: Promise.race([done, failed]) };
}

async function runTwo(
  size: number,
  areas: 1 | 2,
  rules: Rules,
  warmupS: number,
  durationS: number,
): Promise<Result> {
  const pool = SwiotlbPool.create({ size: POOL_BYTES, areas, ...rules });
  const control = new SharedArrayBuffer(4);
  const phase = new Int32Array(control);
  const workers = [0, 1].map((index) =>
    startWorker({ shared: pool.share(), control, size, area: index % areas, index }),
  );
  await Promise.all(workers.map((w) => w.ready));

  Atomics.store(phase, 0, Phase.WARM);
  Atomics.notify(phase, 0);
  await sleep(warmupS * 1000);
  Atomics.store(phase, 0, Phase.MEASURE);
  const t0 = performance.now();
  const before = contendedNow(pool);
  await sleep(durationS * 1000);
  Atomics.store(phase, 0, Phase.STOP);
  const elapsedS = (performance.now() - t0) / 1000;

  const pairs = (await Promise.all(workers.map((w) => w.done))).reduce((s, p) => s + p, 0);
  const name = areas === 1 ? 'two-threads-1-area' : 'two-threads-2-areas';
  return result(pool, name, size, 2, pairs / elapsedS, before);
}

function ratio(a: Result | undefined, b: Result | undefined): number | null {
  return a && b && b.pairs_per_sec > 0
    ? Math.round((a.pairs_per_sec / b.pairs_per_sec) * 1000) / 1000
    : null;
}

async function main(): Promise<void> {
  const { durationS, warmupS, json, rules } = benchArgs(
    'bench:swiotlb',
    USAGE,
    {
      options: {
        duration: { type: 'string', default: '1.5' },
        warmup: { type: 'string', default: '0.3' },
        json: { type: 'boolean', default: false },
        kernel: { type: 'string', default: '6.10' },
        placement: { type: 'string', default: 'linux' },
      },
    },
    (values) => {
      if (!isKernelVersion(values.kernel)) {
        throw usageError(`--kernel: "${values.kernel}" is not 6.1, 6.6 or 6.10`);
      }
      if (!isPlacement(values.placement)) {
        throw usageError(`--placement: "${values.placement}" is not linux or warm`);
      }
      return {
        durationS: positiveFlag('duration', values.duration),
        warmupS: positiveFlag('warmup', values.warmup),
        json: values.json,
        rules: { kernel: values.kernel, placement: values.placement },
      };
    },
  );

  const started = performance.now();
  const results: Result[] = [];
  for (const size of SIZES) {
    console.error(
      `swiotlb bench: ${size} B mappings, Linux ${rules.kernel} rules, ${rules.placement} placement...`,
    );
    results.push(runSingle(size, rules, warmupS, durationS, false));
    results.push(runSingle(size, rules, warmupS, durationS, true));
    results.push(await runTwo(size, 1, rules, warmupS, durationS));
    results.push(await runTwo(size, 2, rules, warmupS, durationS));
  }

  const ratios: Record<string, Record<string, number | null>> = {};
  for (const size of SIZES) {
    const get = (name: CaseName) => results.find((r) => r.case === name && r.size === size);
    ratios[size] = {
      two_areas_vs_one_area: ratio(get('two-threads-2-areas'), get('two-threads-1-area')),
      exclusive_vs_single: ratio(get('single-exclusive'), get('single')),
      two_threads_1_area_vs_single: ratio(get('two-threads-1-area'), get('single')),
      two_threads_2_areas_vs_single: ratio(get('two-threads-2-areas'), get('single')),
    };
  }

  const row = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd([20, 6][i]!) : c.padStart(14))).join(' ');
  console.log(row(['case', 'size', 'pairs/s', 'contended/area']));
  for (const r of results) {
    console.log(
      row([
        r.case,
        String(r.size),
        r.pairs_per_sec.toLocaleString('en-US'),
        r.contended_by_area.join(' / '),
      ]),
    );
  }
  console.log('');
  for (const size of SIZES) {
    const r = ratios[size]!;
    console.log(
      `${size} B: 2 areas / 1 area = ${r.two_areas_vs_one_area}; ` +
        `exclusive / single = ${r.exclusive_vs_single}; ` +
        `two threads / single = ${r.two_threads_1_area_vs_single} (1 area), ` +
        `${r.two_threads_2_areas_vs_single} (2 areas)`,
    );
  }
  console.error(
    `(${((performance.now() - started) / 1000).toFixed(1)} s, ${durationS} s per case)`,
  );
  if (json) console.log(JSON.stringify({ results, ratios }));
}

await main();
