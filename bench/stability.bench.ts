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
 * - `isolation`: one bench:pipeline case (ram-blk 64 KiB writes, bounce and
 *   direct, 64 MiB pool) measured N times in one process after other cases, and N
 *   times each in a fresh process with pre-touched memory (the default now): the
 *   spread of each (max / min of IOPS, and of bounce ÷ direct) says whether the
 *   state earlier cases leave behind (device threads, heap, JIT, pages) decided it.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs, choiceFlag, intFlag, positiveFlag } from './cli.js';

const USAGE = `Usage: npm run bench:stability -- [options]
What decides the swings between runs of one bench:pipeline case (needs a quiet machine).

  --experiment E      alias, backing, isolation or all (default all)
  --rounds N          alternated rounds per figure; medians and ranges (default 7)
  --seconds S         seconds per measurement window (alias, backing; default 0.3)
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
      'isolation',
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Figure {
  name: string;
  median: number;
  min: number;
  max: number;
}

const figure = (name: string, values: number[]): Figure => ({
  name,
  median: +median(values).toFixed(3),
  min: +Math.min(...values).toFixed(3),
  max: +Math.max(...values).toFixed(3),
});

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

const experiments: Record<string, Figure[]> = {};
const want = (e: string) => options.experiment === 'all' || options.experiment === e;
if (want('alias')) experiments.alias = alias();
if (want('backing')) experiments.backing = backing();
if (want('isolation')) experiments.isolation = isolation();
if (options.json) console.log(JSON.stringify({ experiments }));
