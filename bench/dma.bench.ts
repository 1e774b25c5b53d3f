/**
 * The guest side's bounce path alone, in ns per request: `tryPlace`, `copyIn`
 * and `release` (src/mediator/dma.ts) of a virtio-blk write's three buffers
 * (header 16 B, data, status 1 B with its preset), copies inline, on Linux's
 * default pool (`--pool-mib`, one area per CPU), `--depth` requests completed
 * together and then as many placed, as the pipeline reaps and refills a queue.
 * No device, no virtqueue, no event loop: what a bounce mode adds to the main
 * thread's work, steady enough to tell a change of a few percent, which
 * `bench:pipeline`'s rounds cannot (docs/performance.md, "How to read the figures").
 *
 * `--against DIR` loads the same path from another build (a checkout's
 * `dist-bench`, built by `npm run build:bench`) into this process, and the two
 * alternate block by block: each case prints this ÷ that, both measured at the
 * same moments of the machine, each going first in every other block. Medians of
 * the blocks after `--skip`.
 *
 * Options: `npm run bench:dma -- --help`. Never asserts speed.
 */
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { DmaBatch } from '../src/mediator/dma.js';
import * as dmaModule from '../src/mediator/dma.js';
import * as guestModule from '../src/mediator/guest-memory.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import * as poolModule from '../src/swiotlb/pool.js';
import { formatSize, parseSize } from '../src/util/size.js';
import * as engineModule from '../src/workers/copy-engine.js';
import { benchArgs, choicesFlag, intFlag, listFlag, usageError } from './cli.js';
import { median } from './median.js';

const USAGE = `Usage: npm run bench:dma -- [options]
The guest side's bounce path alone (tryPlace, copyIn, release of a virtio-blk
write's three buffers, copies inline), in ns per request.

  --modes LIST          bounce, bounce-tuned (default both)
  --sizes LIST          data buffer sizes, 512 to 256k (default 4k,64k)
  --depth N             requests completed, then placed, together (default 32)
  --pool-mib MIB        the pool, in one area per CPU (default 64, Linux's default)
  --blocks N            blocks per case (default 21)
  --skip N              first blocks not counted: warm-up (default 5)
  --block-requests N    requests per block (default 50000)
  --against DIR         another build's dist-bench: alternated block by block,
                        this ÷ that printed per case
  --json                print {"results":[...]} as the last line
  -h, --help            this help`;

const MODES = ['bounce', 'bounce-tuned'] as const;
type Mode = (typeof MODES)[number];
const MiB = 2 ** 20;

/** What one build provides: the modules the path is made of. */
interface Build {
  dma: typeof dmaModule;
  guest: typeof guestModule;
  pool: typeof poolModule;
  engine: typeof engineModule;
}

/** One case's result in `--json` (the smoke test reads it through this type: `import type` runs nothing). */
export interface DmaResult {
  mode: Mode;
  size: number;
  depth: number;
  pool_mib: number;
  blocks: number;
  ns_per_request: number;
  ns_min: number;
  ns_max: number;
  /** With --against: the other build's median, and this ÷ that. */
  against_ns_per_request?: number;
  over_against?: number;
}

const options = benchArgs(
  'bench:dma',
  USAGE,
  {
    options: {
      modes: { type: 'string', default: MODES.join(',') },
      sizes: { type: 'string', default: '4k,64k' },
      depth: { type: 'string', default: '32' },
      'pool-mib': { type: 'string', default: '64' },
      blocks: { type: 'string', default: '21' },
      skip: { type: 'string', default: '5' },
      'block-requests': { type: 'string', default: '50000' },
      against: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  },
  (v) => {
    const blocks = intFlag('blocks', v.blocks);
    const skip = intFlag('skip', v.skip);
    if (blocks < 1) throw usageError(`--blocks: "${v.blocks}" must be at least 1`);
    if (skip < 0 || skip >= blocks) {
      throw usageError(`--skip: "${v.skip}" must be from 0 to --blocks - 1`);
    }
    const depth = intFlag('depth', v.depth);
    if (depth < 1 || depth > 256) throw usageError(`--depth: "${v.depth}" must be from 1 to 256`);
    const requests = intFlag('block-requests', v['block-requests']);
    if (requests < 1)
      throw usageError(`--block-requests: "${v['block-requests']}" must be at least 1`);
    const poolMiB = intFlag('pool-mib', v['pool-mib']);
    if (poolMiB < 1) throw usageError(`--pool-mib: "${v['pool-mib']}" must be at least 1`);
    return {
      modes: choicesFlag('modes', v.modes, MODES),
      sizes: listFlag(
        'sizes',
        v.sizes,
        (s) => {
          const n = parseSize(s);
          return n !== undefined && n >= 512 && n <= 256 * 1024 ? n : undefined;
        },
        'a size from 512 to 256k',
      ),
      depth,
      poolMiB,
      blocks,
      skip,
      requests,
      against: v.against,
      json: v.json,
    };
  },
);

/** Loads the path's modules of the build whose dist-bench is `dir`. */
async function loadBuild(dir: string): Promise<Build> {
  const at = (p: string) => import(pathToFileURL(resolve(dir, p)).href);
  try {
    const [dma, guest, pool, engine] = await Promise.all([
      at('src/mediator/dma.js'),
      at('src/mediator/guest-memory.js'),
      at('src/swiotlb/pool.js'),
      at('src/workers/copy-engine.js'),
    ]);
    return { dma, guest, pool, engine } as Build;
  } catch (err) {
    // A usage error, worded as benchArgs words one (bench/cli.ts).
    process.stderr.write(
      `bench:dma: --against: cannot load a build from "${dir}" (${(err as Error).message.split('\n')[0]})\n`,
    );
    process.exit(2);
  }
}

/** One build's path for one case, with its pool, guest memory and engine; `run` times a block. */
function makeRig(b: Build, mode: Mode, size: number) {
  const { depth, poolMiB } = options;
  const engine = new b.engine.CopyEngine({ workers: 0 });
  const guest = new b.guest.GuestMemory({ size: Math.max(16 * MiB, 2 * depth * (size + 4096)) });
  const pool = b.pool.SwiotlbPool.create({
    size: poolMiB * MiB,
    area: 0,
    exclusive: true,
    placement: mode === 'bounce-tuned' ? 'warm' : 'linux',
  });
  // Every page written once, so that no block takes a first-touch fault.
  guest.bytes.fill(0x5a);
  pool.data.fill(0);
  const dma = new b.dma.BounceDma(
    {
      guest,
      guestRegion: engine.registerRegion(guest.buffer),
      pool,
      poolRegion: engine.registerRegion(pool.share().data),
      engine,
    },
    { fromDevice: mode === 'bounce-tuned' ? 'used-length' : 'linux' },
  );
  const batches: DmaBatch[] = [];
  for (let i = 0; i < depth; i++) {
    const ctl = guest.reserve(64, 64);
    const batch = b.dma.createBatch(3);
    const set = (k: number, addr: number, len: number, dir: DmaDirection, preset: number) => {
      batch.addrs[k] = addr;
      batch.sizes[k] = len;
      batch.dirs[k] = dir;
      batch.presets[k] = preset;
    };
    set(0, ctl, 16, DmaDirection.TO_DEVICE, -1);
    set(1, guest.reserve(size, 4096), size, DmaDirection.TO_DEVICE, -1);
    set(2, ctl + 16, 1, DmaDirection.FROM_DEVICE, 0xff);
    batches.push(batch);
  }
  let placed = false;
  const inline = (p: unknown) => {
    if (p !== undefined) throw new Error('bench:dma: a copy went to a worker (workers: 0)');
  };
  return {
    /** ns per request over at least `n` requests (whole rounds of `depth`). */
    run(n: number): number {
      let done = 0;
      const t0 = performance.now();
      while (done < n) {
        // The device reports the status byte written (used length 1).
        if (placed) for (const batch of batches) inline(dma.release(3, batch, 0, 1));
        for (const batch of batches) {
          if (!dma.tryPlace(3, batch)) throw new Error('bench:dma: the pool is full');
          inline(dma.copyIn(3, batch));
        }
        placed = true;
        done += depth;
      }
      return ((performance.now() - t0) * 1e6) / done;
    },
    close(): Promise<void> {
      if (placed) for (const batch of batches) inline(dma.release(3, batch, 0, 1));
      placed = false;
      return engine.close();
    },
  };
}

/** Medians of one case, this build alone or alternated with `that`. */
async function measure(mode: Mode, size: number, that: Build | undefined): Promise<DmaResult> {
  const builds = [{ dma: dmaModule, guest: guestModule, pool: poolModule, engine: engineModule }];
  if (that) builds.push(that);
  const rigs = builds.map((b) => makeRig(b, mode, size));
  const times: number[][] = rigs.map(() => []);
  for (let block = 0; block < options.blocks; block++) {
    // Each build goes first in every other block: the second of a pair runs in
    // the caches the first left.
    for (let k = 0; k < rigs.length; k++) {
      const i = block % 2 === 0 ? k : rigs.length - 1 - k;
      const ns = rigs[i]!.run(options.requests);
      if (block >= options.skip) times[i]!.push(ns);
    }
  }
  await Promise.all(rigs.map((r) => r.close()));
  const mine = times[0]!;
  const result: DmaResult = {
    mode,
    size,
    depth: options.depth,
    pool_mib: options.poolMiB,
    blocks: mine.length,
    ns_per_request: Math.round(median(mine)),
    ns_min: Math.round(Math.min(...mine)),
    ns_max: Math.round(Math.max(...mine)),
  };
  if (that) {
    const theirs = median(times[1]!);
    result.against_ns_per_request = Math.round(theirs);
    result.over_against = Number((median(mine) / theirs).toFixed(3));
  }
  return result;
}

const that = options.against === undefined ? undefined : await loadBuild(options.against);
const results: DmaResult[] = [];
console.log(
  `pool ${options.poolMiB} MiB, depth ${options.depth}, ${options.blocks} blocks of ${options.requests} requests (first ${options.skip} not counted)${that ? `; alternated with ${options.against}` : ''}`,
);
console.log(`mode          size    ns/request (range)${that ? '        that   this/that' : ''}`);
for (const mode of options.modes) {
  for (const size of options.sizes) {
    const r = await measure(mode, size, that);
    results.push(r);
    const line = `${mode.padEnd(12)} ${formatSize(size).padStart(5)}  ${String(r.ns_per_request).padStart(8)} (${r.ns_min}-${r.ns_max})`;
    console.log(
      that
        ? `${line.padEnd(42)} ${String(r.against_ns_per_request).padStart(6)}   ${r.over_against}`
        : line,
    );
  }
}
if (options.json) console.log(JSON.stringify({ results }));
