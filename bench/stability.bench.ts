/**
 * What makes the same bench:pipeline case measure differently from run to run:
 * experiments, one per suspect, each printing figures side by side in one run
 * (alternated, repeated, medians and ranges). They need a quiet machine: run them
 * when nothing else runs (`uptime` load below 1), and read ratios, not absolutes.
 *
 * Options: `npm run bench:stability -- --help`.
 *
 * - `alias`: a copy whose source and destination addresses are equal modulo
 *   4 KiB (what guest buffers and pool slots, both page aligned, always are)
 *   against offsets of 64 B to 2 KiB, for 4 KiB and 64 KiB copies, hot (one pair
 *   of buffers) and walking (a 32 MiB destination area, as next-fit walks a pool
 *   area). If 4K aliasing stalls the copies, offset 0 is slower.
 * - `backing`: the page state of a SharedArrayBuffer: copies into pages never
 *   touched (each first write faults) against pre-touched pages, and reads of
 *   pages never written (the kernel's one zero page, always cached) against
 *   written ones. The latter is what direct-mode reads of a disk nobody wrote
 *   measured before bench:pipeline pre-touched its disks.
 * - `pages`: 4 KiB pages against 2 MiB ones behind a 32 MiB area that copies
 *   walk as next-fit does (bench/stability-pages.ts).
 * - `isolation`: one bench:pipeline case (ram-blk 64 KiB writes, bounce and
 *   direct, 64 MiB pool) measured N times in one process after other cases, and N
 *   times each in a fresh process with pre-touched memory (the default now): the
 *   spread of each (max / min of IOPS, and of bounce ÷ direct) says whether the
 *   state earlier cases leave behind (device threads, heap, JIT, pages) decided it.
 * - `topology`: how far apart the two cores are (bench/c2c-probe.ts), probed
 *   before and after each window, and what it does to a 64 KiB hand-off between
 *   two threads as a read makes it: a worker (the device) writes a buffer from a
 *   64 MiB disk, the main thread (the driver) copies it out. Two slot policies
 *   alternate: `reuse`, the buffer the main thread copied out last is written
 *   next (warm placement), and `walk`, buffers taken round a 32 MiB area
 *   (next-fit). Windows are classed near or far by their probes.
 * - `pairs`: bounce-tuned and direct in two live processes taking turns, one
 *   short window each per round: does a ratio of adjacent windows hold still
 *   where separate runs do not (bench/stability-pairs.ts)?
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { closeProbe, coreToCoreNs, isFar } from './c2c-probe.js';
import { benchArgs, choiceFlag, intFlag, positiveFlag } from './cli.js';
import { type Figure, figure } from './stability-figure.js';
import { pagesExperiment } from './stability-pages.js';
import { pairsExperiment } from './stability-pairs.js';

const USAGE = `Usage: npm run bench:stability -- [options]
What decides the swings between runs of one bench:pipeline case (needs a quiet machine).

  --experiment E      alias, backing, pages, isolation, topology, pairs or all
                      (default all)
  --rounds N          alternated rounds per figure; medians and ranges (default 7)
  --seconds S         seconds per measurement window (alias, backing, pages,
                      topology, pairs; default 0.3)
  --repeat N          isolation: measurements of the case each way (default 5)
  --json              print {"experiments":{...}} as the last line
  -h, --help          this help`;

const options = benchArgs(
  'bench:stability',
  USAGE,
  {
    options: {
      experiment: { type: 'string', default: 'all' },
      rounds: { type: 'string', default: '7' },
      seconds: { type: 'string', default: '0.3' },
      repeat: { type: 'string', default: '5' },
      json: { type: 'boolean', default: false },
    },
  },
  (v) => ({
    experiment: choiceFlag('experiment', v.experiment, [
      'alias',
      'backing',
      'pages',
      'isolation',
      'topology',
      'pairs',
      'all',
    ] as const),
    rounds: intFlag('rounds', v.rounds, 1),
    windowMs: positiveFlag('seconds', v.seconds) * 1000,
    repeat: intFlag('repeat', v.repeat, 1),
    json: v.json,
  }),
);

const log = (line: string) => {
  if (!options.json) console.log(line);
};

const show = (unit: string, f: Figure) =>
  log(`  ${f.name.padEnd(44)} ${String(f.median).padStart(9)} ${unit}  (${f.min}-${f.max})`);

/** GB/s of `copy(i)` (which moves `bytes`) repeated for `ms`. */
function rate(ms: number, bytes: number, copy: (i: number) => void): number {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let k = 0; k < 64; k++) copy(n++);
    t = performance.now();
  }
  return (n * bytes) / ((t - t0) / 1000) / 1e9;
}

const MiB = 2 ** 20;

function alias(): Figure[] {
  const offsets = [0, 64, 256, 1024, 2048];
  const src = new Uint8Array(new SharedArrayBuffer(2 * MiB));
  const area = new Uint8Array(new SharedArrayBuffer(32 * MiB + 4096));
  src.fill(1);
  area.fill(2);
  const out: Figure[] = [];
  for (const size of [4096, 65536]) {
    for (const walking of [false, true]) {
      const values = new Map<number, number[]>(offsets.map((o) => [o, []]));
      const slots = walking ? Math.floor((32 * MiB) / size) : 1;
      for (let r = 0; r < options.rounds; r++) {
        for (const off of offsets) {
          const s = src.subarray(0, size);
          values.get(off)!.push(
            rate(options.windowMs, size, (i) => {
              const at = (i % slots) * size + off;
              area.set(s, at);
            }),
          );
        }
      }
      log(
        `alias: ${size / 1024} KiB copies, ${walking ? 'walking a 32 MiB area (cold)' : 'one destination (hot)'}, GB/s by (dst - src) mod 4096:`,
      );
      for (const off of offsets) {
        const f = figure(
          `${size / 1024}K ${walking ? 'walking' : 'hot'} offset ${off}`,
          values.get(off)!,
        );
        show('GB/s', f);
        out.push(f);
      }
    }
  }
  return out;
}

function backing(): Figure[] {
  const size = 65536;
  const bytes = 64 * MiB;
  const src = new Uint8Array(new SharedArrayBuffer(size)).fill(3);
  const fresh: number[] = [];
  const touched: number[] = [];
  const zeroRead: number[] = [];
  const writtenRead: number[] = [];
  const dst = new Uint8Array(size);
  for (let r = 0; r < options.rounds; r++) {
    // Writes: a new buffer each round, so every page is first touched by the copy.
    const virgin = new Uint8Array(new SharedArrayBuffer(bytes));
    const slots = bytes / size;
    let i = 0;
    const t0 = performance.now();
    for (; i < slots; i++) virgin.set(src, i * size);
    fresh.push((slots * size) / ((performance.now() - t0) / 1000) / 1e9);
    touched.push(rate(options.windowMs, size, (k) => virgin.set(src, (k % slots) * size)));
    // Reads: pages never written (the zero page) and pages written.
    const unwritten = new Uint8Array(new SharedArrayBuffer(bytes));
    zeroRead.push(
      rate(options.windowMs, size, (k) =>
        dst.set(unwritten.subarray((k % slots) * size, (k % slots) * size + size)),
      ),
    );
    writtenRead.push(
      rate(options.windowMs, size, (k) =>
        dst.set(virgin.subarray((k % slots) * size, (k % slots) * size + size)),
      ),
    );
  }
  const out = [
    figure('64K copies into pages never touched', fresh),
    figure('64K copies into touched pages', touched),
    figure('64K reads of pages never written', zeroRead),
    figure('64K reads of written pages', writtenRead),
  ];
  log('backing: a 64 MiB SharedArrayBuffer, GB/s:');
  for (const f of out) show('GB/s', f);
  return out;
}

interface PipelineResult {
  device: string;
  op: string;
  size: number;
  mode: string;
  iops: number;
}

/** One bench:pipeline run (bounce and direct on a 64 MiB pool, once each); its results. */
function pipelineRun(args: string[]): PipelineResult[] {
  const here = fileURLToPath(import.meta.url);
  const script = here.replace(/stability\.bench\.(ts|js)$/, 'pipeline.bench.$1');
  const stdout = execFileSync(
    process.execPath,
    [
      ...process.execArgv,
      script,
      '--modes',
      'bounce,direct',
      '--sized-pool-mib',
      '0',
      '--json',
      ...args,
    ],
    { encoding: 'utf8', maxBuffer: 64 * MiB },
  );
  const lines = stdout.trim().split('\n');
  return (JSON.parse(lines[lines.length - 1]!) as { results: PipelineResult[] }).results;
}

function isolation(): Figure[] {
  const out: Figure[] = [];
  const ways = [
    [
      // The case runs after the null-device and 4 KiB cases, in their process, as
      // earlier bench:pipeline runs did.
      'in one process, after other cases',
      [
        '--in-process',
        '--warmup',
        '0.2',
        '--devices',
        'null,ram-blk',
        '--sizes',
        '4k,64k',
        '--ops',
        'write',
      ],
    ],
    [
      'in a fresh process, memory pre-touched',
      ['--devices', 'ram-blk', '--sizes', '64k', '--ops', 'write'],
    ],
  ] as const;
  for (const [name, args] of ways) {
    const bounce: number[] = [];
    const direct: number[] = [];
    const ratio: number[] = [];
    for (let k = 0; k < options.repeat; k++) {
      const r = pipelineRun([...args]).filter(
        (x) => x.device === 'ram-blk' && x.size === 65536 && x.op === 'write',
      );
      const b = r.find((x) => x.mode === 'bounce')!.iops;
      const d = r.find((x) => x.mode === 'direct')!.iops;
      bounce.push(b);
      direct.push(d);
      ratio.push(b / d);
    }
    const figs = [
      figure(`${name}: bounce IOPS`, bounce),
      figure(`${name}: direct IOPS`, direct),
      figure(`${name}: bounce / direct`, ratio),
    ];
    log(`isolation: ram-blk 64 KiB writes, 64 MiB pool, ${options.repeat} runs ${name}:`);
    for (const f of figs) show('', f);
    out.push(...figs);
  }
  return out;
}

// The device side of the topology hand-off: waits while RUN is 0; while it is 1,
// writes each posted slot from the disk and counts it done.
const HANDOFF_THREAD = `
const { workerData } = require('node:worker_threads');
const { ctl, pool, disk } = workerData;
const c = new Int32Array(ctl), p = new Uint8Array(pool), d = new Uint8Array(disk);
const N = 65536;
let taken = 0, at = 0;
for (;;) {
  Atomics.wait(c, 0, 0);
  if (Atomics.load(c, 0) === -1) break;
  taken = Atomics.load(c, 2);
  while (Atomics.load(c, 0) === 1) {
    const posted = Atomics.load(c, 1);
    while (taken < posted) {
      const slot = Atomics.load(c, 16 + (taken & 31));
      at = (at + 4099 * N) % (d.length - N);
      p.set(d.subarray(at & ~4095, (at & ~4095) + N), slot * N);
      Atomics.store(c, 2, ++taken);
    }
  }
}`;

async function topologyExperiment(): Promise<Figure[]> {
  const N = 65536;
  const SLOTS = 512; // 32 MiB: the walk
  const ctl = new Int32Array(new SharedArrayBuffer(64 * 4));
  const pool = new SharedArrayBuffer(SLOTS * N);
  const disk = new SharedArrayBuffer(64 * MiB);
  const guest = new Uint8Array(32 * N);
  for (const b of [pool, disk]) {
    const words = new Int32Array(b);
    for (let i = 0; i < words.length; i += 1024) words[i] = 1;
  }
  const worker = new Worker(HANDOFF_THREAD, {
    eval: true,
    workerData: { ctl: ctl.buffer, pool, disk },
  });
  await new Promise((resolve) => worker.once('online', resolve));
  const p = new Uint8Array(pool);
  /** Hand-offs per second for `ms`, 16 in flight. */
  const window = (reuse: boolean, ms: number): number => {
    const free: number[] = [];
    for (let i = 15; i >= 0; i--) free.push(i);
    let walk = 0;
    let posted = Atomics.load(ctl, 2);
    let done = posted;
    const start = done;
    Atomics.store(ctl, 1, posted);
    Atomics.store(ctl, 0, 1);
    Atomics.notify(ctl, 0);
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < ms) {
      for (let k = 0; k < 16; k++) {
        while (posted - done < 16) {
          walk = (walk + 1) % SLOTS;
          const slot = reuse ? free.pop()! : walk;
          Atomics.store(ctl, 16 + (posted & 31), slot);
          Atomics.store(ctl, 1, ++posted);
        }
        const finished = Atomics.load(ctl, 2);
        while (done < finished) {
          const slot = Atomics.load(ctl, 16 + (done & 31));
          guest.set(p.subarray(slot * N, slot * N + N), (done & 31) * N);
          if (reuse) free.push(slot);
          done++;
        }
      }
      t = performance.now();
    }
    // Let the worker drain what is posted, then park it.
    while (Atomics.load(ctl, 2) < posted);
    Atomics.store(ctl, 0, 0);
    return (done - start) / ((t - t0) / 1000);
  };
  const samples: { policy: string; before: number; after: number; rate: number }[] = [];
  try {
    for (let r = 0; r < options.rounds; r++) {
      for (const policy of ['reuse', 'walk']) {
        const before = await coreToCoreNs();
        const rate = window(policy === 'reuse', options.windowMs);
        const after = await coreToCoreNs();
        samples.push({ policy, before, after, rate });
      }
    }
  } finally {
    Atomics.store(ctl, 0, -1);
    Atomics.notify(ctl, 0);
    await worker.terminate();
    await closeProbe();
  }
  const floor = Math.min(...samples.flatMap((x) => [x.before, x.after]));
  const far = (x: (typeof samples)[number]) => isFar(Math.max(x.before, x.after), floor);
  const out: Figure[] = [];
  log(
    `topology: core-to-core round trip (lowest ${floor} ns; far = over 2.5x that) and 64 KiB hand-offs per second, device thread writes, main thread copies out:`,
  );
  for (const state of ['near', 'far'] as const) {
    const inState = samples.filter((x) => far(x) === (state === 'far'));
    if (inState.length === 0) {
      log(`  ${state}: no window`);
      continue;
    }
    const f = figure(
      `${state}: round trip ns (${inState.length} windows)`,
      inState.flatMap((x) => [x.before, x.after]),
    );
    show('ns', f);
    out.push(f);
    for (const policy of ['reuse', 'walk']) {
      const values = inState.filter((x) => x.policy === policy).map((x) => x.rate);
      if (values.length === 0) continue;
      const g = figure(`${state}: ${policy} hand-offs/s (${values.length} windows)`, values);
      show('/s', g);
      out.push(g);
    }
  }
  return out;
}

const experiments: Record<string, Figure[]> = {};
const want = (e: string) => options.experiment === 'all' || options.experiment === e;
if (want('alias')) experiments.alias = alias();
if (want('backing')) experiments.backing = backing();
if (want('pages')) experiments.pages = pagesExperiment(options.rounds, options.windowMs, log, show);
if (want('isolation')) experiments.isolation = isolation();
if (want('topology')) experiments.topology = await topologyExperiment();
if (want('pairs')) {
  experiments.pairs = await pairsExperiment(options.rounds, options.windowMs, log, show);
}
if (options.json) console.log(JSON.stringify({ experiments }));
