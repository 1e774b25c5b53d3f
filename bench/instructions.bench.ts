/**
 * Instructions per request of the main thread, mode by mode, counted by callgrind:
 * what each mode asks of the thread that issues, maps, copies and completes every
 * request, in a figure that moves by a few percent between runs (a compilation
 * or a collection in the counted window) on a loaded or a slow machine, where
 * IOPS swing by half between runs (docs/performance.md, "How to read the figures").
 *
 * Each mode's case (bench/instructions-case.ts: nothing polls, so the count is work,
 * not waiting) runs twice under `valgrind --tool=callgrind --separate-threads=yes`,
 * with `--count` and with twice as many measured requests after the same
 * `--warmup`; the main thread's instructions per request are the difference of
 * the two totals over the difference of the counts, so start-up, warm-up, the
 * JIT's compilations and the close cancel out. Each mode ÷ direct is what the
 * isolation costs that thread in instructions (not in time: a cache miss is one
 * instruction; bench:pipeline measures time). A copy counts as the instructions
 * that make it: V8's relaxed copy of shared memory about 6 per 8 bytes, and the C
 * library's memcpy of a large copy (Buffer.fill's, from 16 KiB) a `rep movsb`,
 * which callgrind counts once per byte moved: large copies read far dearer here
 * than they are (bench:memcpy has their speed).
 *
 * Needs valgrind (Debian's `valgrind` package). Options: `npm run bench:instructions -- --help`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../src/util/size.js';
import { FILL_COPY_MIN } from '../src/workers/shared-copy.js';
import { mainThreadInstructions } from './callgrind.js';
import { benchArgs, choiceFlag, choicesFlag, intFlag, usageError } from './cli.js';
import { INSTRUCTIONS_ENV, type InstructionsSpec } from './instructions-case.js';
import { BENCH_MODES, type BenchMode } from './pipeline-case.js';

const USAGE = `Usage: npm run bench:instructions -- [options]
Instructions per request of the main thread in each mode, counted by callgrind
(needs valgrind), and each mode / direct.

  --modes LIST     direct,bounce,bounce-tuned,shared (default: all)
  --device D       null or ram-blk (default null)
  --size N         request size (default 4k)
  --op OP          read or write (default write)
  --warmup N       requests before the count, each run (default 30000)
  --count N        requests counted in the first run; the second counts twice as
                   many (default 20000)
  --json           print {"results":[...]} as the last line
  -h, --help       this help`;

interface Result {
  mode: BenchMode;
  device: string;
  size: number;
  op: string;
  instructions_per_io: number;
  over_direct: number | null;
}

const options = benchArgs(
  'bench:instructions',
  USAGE,
  {
    options: {
      modes: { type: 'string', default: BENCH_MODES.join(',') },
      device: { type: 'string', default: 'null' },
      size: { type: 'string', default: '4k' },
      op: { type: 'string', default: 'write' },
      warmup: { type: 'string', default: '30000' },
      count: { type: 'string', default: '20000' },
      json: { type: 'boolean', default: false },
    },
  },
  (v) => {
    const size = parseSize(v.size);
    if (size === undefined || size < 512 || size % 512 !== 0 || size > 256 * 1024) {
      throw usageError(`--size: "${v.size}" must be a multiple of 512 from 512 to 256k`);
    }
    const count = intFlag('count', v.count);
    if (count < 1) throw usageError(`--count: "${v.count}" must be at least 1`);
    return {
      modes: choicesFlag('modes', v.modes, BENCH_MODES),
      device: choiceFlag('device', v.device, ['null', 'ram-blk'] as const),
      size,
      op: choiceFlag('op', v.op, ['read', 'write'] as const),
      warmup: intFlag('warmup', v.warmup),
      count,
      json: v.json,
    };
  },
);

const compiled = import.meta.url.endsWith('.js');
const CASE = fileURLToPath(
  new URL(`./instructions-case.${compiled ? 'js' : 'ts'}`, import.meta.url),
);

/** Runs one case under callgrind; the main thread's instructions. */
function countRun(spec: InstructionsSpec, dir: string): Promise<number> {
  const out = join(dir, `cg.${spec.mode}.${spec.count}`);
  const node = [...(compiled ? [] : ['--import', 'tsx']), CASE];
  const args = [
    '--tool=callgrind',
    '--separate-threads=yes',
    '--dump-instr=no',
    `--callgrind-out-file=${out}`,
    process.execPath,
    ...node,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('valgrind', args, {
      env: { ...process.env, [INSTRUCTIONS_ENV]: JSON.stringify(spec) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(
          new Error(`callgrind run of ${spec.mode} exited with ${code}: ${stderr.slice(-2000)}`),
        );
        return;
      }
      // --separate-threads: one file per thread, "-01" the main thread's.
      resolve(mainThreadInstructions(readFileSync(`${out}-01`, 'utf8')));
    });
  });
}

if (spawnSync('valgrind', ['--version']).status !== 0) {
  process.stderr.write(
    'bench:instructions: needs valgrind on PATH (Debian: apt-get install valgrind)\n',
  );
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'swiotlb-instructions-'));
const results: Result[] = [];
try {
  for (const mode of options.modes) {
    console.error(`instructions bench: ${mode}...`);
    const base = {
      mode,
      device: options.device,
      size: options.size,
      op: options.op,
      warmup: options.warmup,
    };
    const one = await countRun({ ...base, count: options.count }, dir);
    const two = await countRun({ ...base, count: 2 * options.count }, dir);
    results.push({
      mode,
      device: options.device,
      size: options.size,
      op: options.op,
      instructions_per_io: Math.round((two - one) / options.count),
      over_direct: null,
    });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const direct = results.find((r) => r.mode === 'direct');
for (const r of results) {
  r.over_direct = direct
    ? Math.round((r.instructions_per_io / direct.instructions_per_io) * 1000) / 1000
    : null;
}

console.log(
  `${options.device} ${options.size} B ${options.op}s, queue depth 32, nothing polling: the main thread's instructions per request`,
);
console.log(`${'mode'.padEnd(14)} ${'instr/IO'.padStart(10)} ${'÷ direct'.padStart(10)}`);
for (const r of results) {
  console.log(
    `${r.mode.padEnd(14)} ${r.instructions_per_io.toLocaleString('en-US').padStart(10)} ${(r.over_direct === null ? '-' : r.over_direct.toFixed(3)).padStart(10)}`,
  );
}
if (options.size >= FILL_COPY_MIN) {
  console.log(
    `(copies of ${FILL_COPY_MIN / 1024} KiB and more are memcpy's rep movsb, which callgrind counts once per byte: their instructions overstate them; bench:memcpy has their speed)`,
  );
}
if (options.json) console.log(JSON.stringify({ results }));
