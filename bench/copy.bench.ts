/**
 * Copy engine benchmark: what a bounce copy through the engine achieves compared
 * with the machine's own single-thread copy, on memory that is not in the caches.
 *
 * For each I/O size and each engine configuration (workers = 1, 2 and 0), in one
 * process and side by side:
 *   raw     TypedArray.set on the main thread: guest bytes -> a pool-sized buffer,
 *           the same access pattern as the engine case (guest buffers walk through
 *           all of guest memory; destinations walk through one pool area in
 *           slot-rounded steps, as the next-fit allocator places them). The
 *           physical limit of one thread.
 *   engine  map + copy + unmap of one TO_DEVICE buffer per I/O (guest -> pool at
 *           map; a TO_DEVICE unmap copies nothing), with --concurrency loops in
 *           flight so that the workers stay busy. --api batch (default): through
 *           BounceDma.tryPlace/copyIn/release, the path every virtqueue request
 *           takes (no promise when the copy is inline); --api promise: through
 *           the promise API mapSingle/unmapSingle (two promises per I/O).
 *           Buffers of 4 KiB and less are measured twice (--sg 1,32): one buffer
 *           per I/O, and 32 buffers mapped, copied and unmapped together per
 *           I/O, as dma_map_sg() handles a scatter-gather list (each buffer still
 *           has its own pool allocation; the bookkeeping and copies run in bursts).
 * ratio = engine GB/s / raw GB/s. The path each size took (inline on the main
 * thread or on the workers) is read from engine.stats().byWriter over the
 * measured windows (block 0 = inline, 1.. = workers).
 *
 * Sizes the engine copies inline with both 1 and 2 workers (on 2 CPUs, up to
 * 128 KiB) are measured once more with the inline threshold lowered so that the
 * workers copy them (path "worker*", forced_workers in the JSON): "two workers
 * faster than one" is compared on those rows (judged with 3 CPUs or more), the
 * ratio targets on the engine's own choice (bench/copy-targets.ts). Not when
 * --inline-threshold is given. One and two workers are compared by their ratios
 * to raw (each measured beside its own raw windows), since the machine's speed
 * drifts between the two configurations.
 *
 * Guest memory (--guest-mib, default 256 MiB) is much larger than the L3 cache
 * and every copy reads guest bytes no copy read recently. Raw and engine windows
 * alternate (--rounds) so that both see the same machine state; warm-up first.
 *
 * The reference machine has 2 shared, noisy cores: this prints whether the
 * targets are met and never fails on them.
 *
 * Options: `npm run bench:copy -- --help`.
 *
 * The engine options left out keep the engine's defaults. --watchdog: when no I/O
 * completes for that many seconds, print the rings' state and exit with code 2.
 */

import { availableParallelism } from 'node:os';
import { BounceDma, createBatch, type DmaBatch } from '../src/mediator/dma.js';
import { GuestMemory } from '../src/mediator/guest-memory.js';
import { DmaDirection, SwiotlbPool } from '../src/swiotlb/index.js';
import { formatSize, parseSize } from '../src/util/size.js';
import { CopyEngine, type CopyEngineOptions } from '../src/workers/copy-engine.js';
import { benchArgs, choiceFlag, intFlag, listFlag, positiveFlag, sizeFlag } from './cli.js';
import {
  copyVerdicts,
  type CopyResult as Result,
  SG_MAX_SIZE,
  TWO_WORKERS_FROM,
} from './copy-targets.js';

const GB = 1e9;

const USAGE = `Usage: npm run bench:copy -- [options]
Bounce copies (map + copy + unmap) through the copy engine vs raw TypedArray.set.

  --sizes LIST            I/O sizes (default 512,4k,64k,256k)
  --workers LIST          copy worker counts; 0 = inline only (default 1,2,0)
  --sg LIST               buffers per I/O for sizes <= 4 KiB (default 1,32)
  --concurrency N         I/Os in flight (default 32)
  --duration S            seconds per measurement (default 0.7)
  --warmup S              seconds of warm-up per case (default 0.15)
  --rounds N              raw/engine windows alternated per case (default 4)
  --guest-mib MIB         guest memory, larger than the CPU caches (default 256)
  --api batch|promise     batch DMA path (as the pipeline) or mapSingle/unmapSingle
  --inline-threshold B    engine option; default: the engine's own
  --split-threshold B     engine option (0: never split)
  --spill-bytes B         engine option
  --ring-capacity N       engine option
  --poll-micros US        engine option
  --spin-micros US        engine option
  --watchdog S            no I/O for S seconds: print the rings and exit 2 (default 10)
  --json                  print {"results":[...]} as the last line
  -h, --help              this help`;

/** Completed engine I/Os, for the watchdog. */
let progress = 0;
/** What the bench is doing, for the watchdog's message. */
let phase = 'starting';
/** Pool slot (IO_TLB_SIZE): the allocator places mappings in whole slots. */
const SLOT = 2048;

/** Walks [0, limit) in steps of `stride`, wrapping before a copy of `size` would overrun. */
class Cursor {
  private off = 0;
  constructor(
    private readonly stride: number,
    private readonly size: number,
    private readonly limit: number,
  ) {}

  next(): number {
    const o = this.off;
    this.off += this.stride;
    if (this.off + this.size > this.limit) this.off = 0;
    return o;
  }
}

interface Window {
  bytes: number;
  seconds: number;
  cpuSeconds: number;
  /** Time the main thread's event loop was not idle. */
  mainSeconds: number;
}

function add(a: Window, b: Window): Window {
  return {
    bytes: a.bytes + b.bytes,
    seconds: a.seconds + b.seconds,
    cpuSeconds: a.cpuSeconds + b.cpuSeconds,
    mainSeconds: a.mainSeconds + b.mainSeconds,
  };
}

const EMPTY: Window = { bytes: 0, seconds: 0, cpuSeconds: 0, mainSeconds: 0 };

function cpuSince(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

/** TypedArray.set copies for `ms` milliseconds. */
function rawWindow(
  src: Uint8Array,
  dst: Uint8Array,
  guest: Cursor,
  pool: Cursor,
  size: number,
  ms: number,
): Window {
  // Look at the clock every ~256 KiB copied: a clock read costs as much as a small copy.
  const batch = Math.max(1, Math.floor(262144 / size));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + ms;
  let copies = 0;
  let t = t0;
  while (t < end) {
    for (let i = 0; i < batch; i++) {
      const g = guest.next();
      dst.set(src.subarray(g, g + size), pool.next());
    }
    copies += batch;
    t = performance.now();
  }
  const seconds = (t - t0) / 1000;
  return { bytes: copies * size, seconds, cpuSeconds: cpuSince(cpu0), mainSeconds: seconds };
}

/** map + unmap I/Os from `concurrency` async loops for `ms` milliseconds. */
async function engineWindow(
  dma: BounceDma,
  guestBase: number,
  guest: Cursor,
  size: number,
  ms: number,
  concurrency: number,
  api: 'batch' | 'promise',
  sg: number,
): Promise<Window> {
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const end = t0 + ms;
  let ios = 0;
  let rounds = 0;
  let stop = false;
  const promiseLoop = async (): Promise<void> => {
    // Inline copies never yield to the event loop (only to microtasks), so no timer
    // can end the window: the loops read the clock, every 8th I/O.
    while (!stop) {
      const tlb = await dma.mapSingle(guestBase + guest.next(), size, DmaDirection.TO_DEVICE);
      await dma.unmapSingle(tlb, size, DmaDirection.TO_DEVICE);
      progress++;
      if ((++ios & 7) === 0 && performance.now() >= end) stop = true;
    }
  };
  // One I/O through the pipeline's batch path (`sg` buffers mapped together, as
  // dma_map_sg maps a scatter-gather list); a promise only when a copy went to a worker.
  const batchIo = (b: DmaBatch): Promise<void> | undefined => {
    for (let k = 0; k < sg; k++) b.addrs[k] = guestBase + guest.next();
    if (!dma.tryPlace(sg, b)) throw new Error('copy bench: the pool is full');
    const copied = dma.copyIn(sg, b);
    if (copied) return copied.then(() => dma.release(sg, b, 0));
    return dma.release(sg, b, 0);
  };
  const batchLoop = async (): Promise<void> => {
    const b = createBatch(sg);
    b.sizes.fill(size);
    b.dirs.fill(DmaDirection.TO_DEVICE);
    while (!stop) {
      const pending = batchIo(b);
      if (pending) await pending;
      progress += sg;
      ios += sg;
      if ((++rounds & 7) === 0 && performance.now() >= end) stop = true;
    }
  };
  const loop = api === 'batch' ? batchLoop : promiseLoop;
  await Promise.all(Array.from({ length: concurrency }, loop));
  return {
    bytes: ios * size,
    seconds: (performance.now() - t0) / 1000,
    cpuSeconds: cpuSince(cpu0),
    mainSeconds: performance.eventLoopUtilization(elu0).active / 1000,
  };
}

function writerTotals(engine: CopyEngine): { bytes: number; seconds: number }[] {
  return engine.stats().byWriter.map((w) => ({ bytes: w.bytes, seconds: w.seconds }));
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/**
 * Waits until every copy worker has taken a copy (each boots tsx first): bursts of
 * 64 concurrent copies, enough queued bytes for the engine to spill past its first
 * workers. Straight engine copies into the (still empty) pool: nothing is mapped.
 */
async function bootWorkers(
  engine: CopyEngine,
  guestRegion: number,
  poolRegion: number,
  poolBytes: number,
): Promise<void> {
  const burst = 64;
  const length = Math.min(Math.max(engine.inlineThreshold, 4096), Math.floor(poolBytes / burst));
  for (let round = 0; round < 200; round++) {
    const copies: (Promise<void> | undefined)[] = [];
    for (let i = 0; i < burst; i++) {
      const off = i * length;
      copies.push(engine.copy(DmaDirection.TO_DEVICE, guestRegion, off, poolRegion, off, length));
    }
    await Promise.all(copies);
    if (engine.stats().byWriter.every((w, i) => i === 0 || w.copies > 0)) return;
  }
  console.error(`warning: workers=${engine.workers}: not every copy worker took a warm-up copy`);
}

/** The engine's internals, read only to explain a stall (they are private). */
interface EngineInternals {
  rings: {
    index: number;
    header: Int32Array;
    head: number;
    pending: { length: number };
    armed: boolean;
    dead: boolean;
    outstandingBytes: number;
  }[];
  backlog: { length: number };
}

/**
 * A lost completion would leave the engine windows waiting for ever: when no I/O
 * completes for `seconds` while the engine runs, prints the rings' state and exits.
 */
function startWatchdog(seconds: number, current: () => CopyEngine | undefined): void {
  let last = progress;
  let still = 0;
  setInterval(() => {
    const engine = current();
    if (engine === undefined || progress !== last) {
      last = progress;
      still = 0;
      return;
    }
    if (++still < seconds) return;
    const e = engine as unknown as EngineInternals;
    console.error(
      `copy bench: no I/O completed for ${seconds} s during ${phase} (workers=${engine.workers}, ` +
        `${engine.pendingCopies} copies pending, backlog ${e.backlog.length}); rings:`,
    );
    for (const r of e.rings) {
      const h = r.header;
      console.error(
        `  ring ${r.index}: head ${r.head} HEAD ${Atomics.load(h, 0)} TAIL ${Atomics.load(h, 1)} ` +
          `SLEEPING ${Atomics.load(h, 2)} STOP ${Atomics.load(h, 3)} thread ${Atomics.load(h, 4)}; ` +
          `pending ${r.pending.length}, armed ${r.armed}, dead ${r.dead}, ` +
          `outstanding ${r.outstandingBytes} B`,
      );
    }
    process.exit(2);
  }, 1000).unref();
}

async function main(): Promise<void> {
  const opts = benchArgs(
    'bench:copy',
    USAGE,
    {
      options: {
        duration: { type: 'string', default: '0.7' },
        warmup: { type: 'string', default: '0.15' },
        rounds: { type: 'string', default: '4' },
        json: { type: 'boolean', default: false },
        sizes: { type: 'string', default: '512,4k,64k,256k' },
        workers: { type: 'string', default: '1,2,0' },
        concurrency: { type: 'string', default: '32' },
        'guest-mib': { type: 'string', default: '256' },
        'inline-threshold': { type: 'string' },
        'split-threshold': { type: 'string' },
        'spin-micros': { type: 'string' },
        'ring-capacity': { type: 'string' },
        'spill-bytes': { type: 'string' },
        'poll-micros': { type: 'string' },
        watchdog: { type: 'string', default: '10' },
        api: { type: 'string', default: 'batch' },
        sg: { type: 'string', default: '1,32' },
      },
    },
    (values) => {
      const api = choiceFlag('api', values.api, ['batch', 'promise'] as const);
      const tuning: CopyEngineOptions = {
        inlineThreshold: sizeFlag('inline-threshold', values['inline-threshold']),
        splitThreshold:
          values['split-threshold']?.trim() === '0'
            ? 0
            : sizeFlag('split-threshold', values['split-threshold']),
        spillBytes: sizeFlag('spill-bytes', values['spill-bytes']),
        spinMicros: intFlag('spin-micros', values['spin-micros']),
        pollMicros: intFlag('poll-micros', values['poll-micros']),
        ringCapacity: intFlag('ring-capacity', values['ring-capacity'], 1),
      };
      // Left out, an option keeps the engine's default.
      for (const key of Object.keys(tuning) as (keyof CopyEngineOptions)[]) {
        if (tuning[key] === undefined) delete tuning[key];
      }
      return {
        durationMs: positiveFlag('duration', values.duration) * 1000,
        warmupMs: positiveFlag('warmup', values.warmup) * 1000,
        rounds: intFlag('rounds', values.rounds, 1),
        concurrency: intFlag('concurrency', values.concurrency, 1),
        guestMiB: positiveFlag('guest-mib', values['guest-mib']),
        watchdogSeconds: positiveFlag('watchdog', values.watchdog),
        json: values.json,
        api,
        // The promise API maps one buffer per call.
        sgList:
          api === 'promise'
            ? [1]
            : listFlag(
                'sg',
                values.sg,
                (s) => {
                  const n = Number(s);
                  return Number.isInteger(n) && n >= 1 && n <= 128 ? n : undefined;
                },
                'an integer from 1 to 128',
              ),
        sizes: listFlag('sizes', values.sizes, (s) => parseSize(s) || undefined, 'a size'),
        workerCounts: listFlag(
          'workers',
          values.workers,
          (s) => {
            const n = Number(s);
            return Number.isInteger(n) && n >= 0 ? n : undefined;
          },
          'an integer >= 0',
        ),
        tuning,
      };
    },
  );
  const { durationMs, warmupMs, rounds, concurrency, api, sgList, sizes, workerCounts, tuning } =
    opts;

  const started = performance.now();
  const guest = new GuestMemory({ size: opts.guestMiB * 2 ** 20 });
  const pool = SwiotlbPool.create();
  const rawDst = new Uint8Array(new SharedArrayBuffer(pool.geometry.bytes));
  // Touch every page now, so that no measured copy pays for a first-touch fault.
  for (let i = 0; i < guest.size; i += 4096) guest.bytes[i] = (i >>> 12) & 0xff;
  for (let i = 0; i < rawDst.length; i += 4096) rawDst[i] = 1;
  for (let i = 0; i < pool.data.length; i += 4096) pool.data[i] = 1;
  // The main thread's maps start in its area and stay there while it has room:
  // the allocator's destinations walk through one area's bytes.
  const areaBytes = pool.geometry.areaNslabs * SLOT;
  console.error(
    `copy bench: guest ${formatSize(guest.size)}, pool ${formatSize(pool.geometry.bytes)} ` +
      `(${pool.geometry.nareas} areas of ${formatSize(areaBytes)}), ${concurrency} I/Os in flight, ` +
      `${durationMs / 1000} s per measurement in ${rounds} rounds`,
  );

  const results: Result[] = [];
  let running: CopyEngine | undefined;
  startWatchdog(opts.watchdogSeconds, () => running);
  let thresholds: { inline: number; split: number } | undefined;
  const measure = async (
    workers: number,
    engineOptions: CopyEngineOptions,
    cases: (readonly [number, number])[],
    forced: boolean,
  ): Promise<void> => {
    const engine = new CopyEngine({ ...engineOptions, workers });
    running = engine;
    if (!forced) thresholds = { inline: engine.inlineThreshold, split: engine.splitThreshold };
    const guestRegion = engine.registerRegion(guest.buffer);
    const poolRegion = engine.registerRegion(pool.share().data);
    const dma = new BounceDma({ guest, guestRegion, pool, poolRegion, engine });
    phase = 'worker start-up';
    if (workers > 0) await bootWorkers(engine, guestRegion, poolRegion, pool.geometry.bytes);
    try {
      for (const [size, sg] of cases) {
        const label = sg > 1 ? `${formatSize(size)} x${sg}` : formatSize(size);
        console.error(
          `  workers=${workers} ${label}${forced ? ' (forced onto the workers)' : ''}...`,
        );
        phase = `the ${label} case`;
        // One walk through guest memory shared by raw and engine windows: neither
        // reads what the other just pulled into the cache.
        const guestCursor = new Cursor(size, size, guest.size);
        const rawPool = new Cursor(Math.ceil(size / SLOT) * SLOT, size, areaBytes);
        rawWindow(guest.bytes, rawDst, guestCursor, rawPool, size, warmupMs);
        await engineWindow(dma, guest.base, guestCursor, size, warmupMs, concurrency, api, sg);

        let raw = EMPTY;
        let eng = EMPTY;
        const before = writerTotals(engine);
        for (let r = 0; r < rounds; r++) {
          raw = add(
            raw,
            rawWindow(guest.bytes, rawDst, guestCursor, rawPool, size, durationMs / rounds),
          );
          eng = add(
            eng,
            await engineWindow(
              dma,
              guest.base,
              guestCursor,
              size,
              durationMs / rounds,
              concurrency,
              api,
              sg,
            ),
          );
        }
        const after = writerTotals(engine);
        const delta = after.map((w, i) => w.bytes - before[i]!.bytes);
        const busy = after.map((w, i) => w.seconds - before[i]!.seconds);
        const copySeconds = busy.reduce((s, b) => s + b, 0);
        const used = pool.used();
        if (used !== 0) {
          console.error(
            `warning: workers=${workers} size=${size}: pool.used() = ${used} after the case`,
          );
        }
        const inlineBytes = delta[0]!;
        const workerBytes = delta.slice(1).reduce((s, b) => s + b, 0);
        const total = inlineBytes + workerBytes;
        const rawGbps = raw.bytes / raw.seconds / GB;
        const engineGbps = eng.bytes / eng.seconds / GB;
        results.push({
          size,
          sg,
          forced_workers: forced,
          raw_gbps: round(rawGbps, 3),
          engine_gbps: round(engineGbps, 3),
          ratio: round(engineGbps / rawGbps, 3),
          workers,
          path: workerBytes === 0 ? 'inline' : inlineBytes === 0 ? 'worker' : 'mixed',
          ios_per_sec: Math.round(eng.bytes / size / eng.seconds),
          writer_share: delta.map((b) => round(total > 0 ? b / total : 0, 3)),
          writer_busy: busy.map((b) => round(b / eng.seconds, 3)),
          in_copy_gbps: round(copySeconds > 0 ? total / copySeconds / GB : 0, 3),
          engine_cpu_cores: round(eng.cpuSeconds / eng.seconds, 2),
          main_busy: round(eng.mainSeconds / eng.seconds, 3),
        });
      }
    } finally {
      running = undefined;
      await engine.close();
    }
  };
  const cases = sizes.flatMap((size) =>
    (size <= SG_MAX_SIZE ? sgList : [1]).map((sg) => [size, sg] as const),
  );
  for (const workers of workerCounts) await measure(workers, tuning, cases, false);
  // Sizes from 64 KiB that the engine kept inline with both 1 and 2 workers: measured
  // again with the copies forced onto the workers, or "two workers faster than one"
  // would compare two inline runs. Not when the inline threshold was given.
  const inlineBoth = sizes.filter(
    (size) =>
      size >= TWO_WORKERS_FROM &&
      [1, 2].every(
        (w) =>
          results.find((r) => r.size === size && r.sg === 1 && r.workers === w)?.path === 'inline',
      ),
  );
  if (tuning.inlineThreshold === undefined && inlineBoth.length > 0) {
    const forcedOptions = { ...tuning, inlineThreshold: Math.min(...inlineBoth) };
    const forcedCases = inlineBoth.map((size) => [size, 1] as const);
    for (const workers of [1, 2]) await measure(workers, forcedOptions, forcedCases, true);
  }

  // path "worker*": forced onto the workers (see the header).
  // busy: share of the engine windows' wall time each writer (inline | worker 0, 1..)
  // spent inside copies; copy GB/s: speed inside those copies; cpu: process CPU time
  // (all threads) per wall second; main: the main thread's event-loop utilization.
  const widths = [7, 11, 9, 9, 6, 7, 7, 17, 9, 5, 5];
  const row = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(' ');
  console.log(
    row([
      'workers',
      'size',
      'raw GB/s',
      'eng GB/s',
      'ratio',
      'kIO/s',
      'path',
      'busy inl|w0 w1',
      'copy GB/s',
      'cpu',
      'main',
    ]),
  );
  const pct = (f: number) => `${Math.round(f * 100)}%`;
  for (const r of results) {
    const [inl = 0, ...ws] = r.writer_busy;
    console.log(
      row([
        String(r.workers),
        r.sg > 1 ? `${formatSize(r.size)} x${r.sg}` : formatSize(r.size),
        r.raw_gbps.toFixed(2),
        r.engine_gbps.toFixed(2),
        r.ratio.toFixed(2),
        (r.ios_per_sec / 1000).toFixed(1),
        r.forced_workers ? `${r.path}*` : r.path,
        `${pct(inl)}|${ws.map(pct).join(' ') || '-'}`,
        r.in_copy_gbps.toFixed(2),
        r.engine_cpu_cores.toFixed(2),
        pct(r.main_busy),
      ]),
    );
  }
  console.log('');
  const t = thresholds;
  const given = Object.entries(tuning).map(([k, v]) => `${k}=${v}`);
  if (t) {
    console.log(
      `engine: inlineThreshold ${formatSize(t.inline)}, splitThreshold ${t.split > 0 ? formatSize(t.split) : 'off'}; ` +
        `options given: ${given.length > 0 ? given.join(', ') : 'none (defaults)'}; ` +
        `${concurrency} I/Os in flight`,
    );
  }

  for (const line of copyVerdicts(results, {
    sizes,
    sgList,
    workerCounts,
    cpus: availableParallelism(),
  })) {
    console.log(line);
  }
  console.error(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
  if (opts.json) console.log(JSON.stringify({ results }));
}

await main();
