/**
 * One pool, several threads: the main thread and worker threads map, fill the
 * bounce buffer with a per-thread pattern, check it, and unmap, concurrently and
 * many thousands of times each (see test/fixtures/pool-worker.ts). A slot handed
 * to two threads at once shows up in the shared owner table or as an overwritten
 * pattern; lost or doubled bookkeeping shows up in the final stats and metadata.
 * Then racing unmaps: two workers unmap the same mappings at the same moment;
 * each must be freed exactly once, and the loser told SWIOTLB_NOT_MAPPED.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DmaDirection } from '../src/swiotlb/constants.js';
import type { KernelVersion } from '../src/swiotlb/kernel.js';
import {
  AREA_CONTENDED,
  AREA_HINT_COUNT,
  AREA_HINT_TOP,
  AREA_INDEX,
  AREA_MAPS,
  AREA_STRIDE,
  AREA_UNMAPS,
  G_FAIL_FULL,
  G_FAIL_INVALID,
  G_FAIL_KERNEL,
  G_FAIL_TOO_LARGE,
  G_HIWATER,
  G_SYNCS,
  metadataViews,
} from '../src/swiotlb/layout.js';
import { type SharedPool, SwiotlbPool } from '../src/swiotlb/pool.js';
import type { Placement } from '../src/swiotlb/warm.js';
import {
  POOL_WORKER_ROLE,
  type PoolWorkerData,
  RACE_COUNT,
  RACE_DONE,
  RACE_ROUND,
  RACE_STOP,
  RACE_WORDS,
  type RaceReport,
  type RaceWorkerData,
  runWorkload,
  SYNC_GO,
  SYNC_READY,
  SYNC_WORDS,
  type WorkloadOptions,
  type WorkloadReport,
} from './fixtures/pool-worker.js';

const WORKERS = 2;
const OPS_PER_THREAD = 40_000;
/** Small enough that a map sometimes finds its start area, or the whole pool, full. */
const SLOTS = 256;

/**
 * A copy of the metadata with what may differ from a fresh pool zeroed: cursors,
 * counters, and the warm placement's hint rings.
 */
function normalizedMeta(shared: SharedPool): Uint8Array {
  const copy = new SharedArrayBuffer(shared.meta.byteLength);
  new Uint8Array(copy).set(new Uint8Array(shared.meta));
  const v = metadataViews(copy, shared.geometry);
  for (let a = 0; a < shared.geometry.nareas; a++) {
    for (const w of [
      AREA_INDEX,
      AREA_CONTENDED,
      AREA_MAPS,
      AREA_UNMAPS,
      AREA_HINT_TOP,
      AREA_HINT_COUNT,
    ]) {
      v.control[a * AREA_STRIDE + w] = 0;
    }
  }
  v.hints.fill(0);
  for (const w of [
    G_HIWATER,
    G_FAIL_FULL,
    G_FAIL_TOO_LARGE,
    G_FAIL_INVALID,
    G_FAIL_KERNEL,
    G_SYNCS,
  ]) {
    v.control[v.globalBase + w] = 0;
  }
  return new Uint8Array(copy);
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * The worker's entry: registers tsx in the worker, then imports the TypeScript
 * fixture. (`new Worker(url.ts, { execArgv: ['--import', 'tsx'] })` fails on Node 20
 * with ERR_UNKNOWN_FILE_EXTENSION: hooks from a worker's execArgv apply to its
 * entry only from Node 22.2; see bench/swiotlb.bench.ts.) tsx's ESM API is located
 * through its package.json exports, as a data: URL cannot resolve bare specifiers.
 */
function workerBoot(): URL {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('tsx/package.json');
  const pkg = require(pkgPath) as { exports: Record<string, { import: { default: string } }> };
  const api = new URL(pkg.exports['./esm/api']!.import.default, pathToFileURL(pkgPath)).href;
  const fixture = new URL('./fixtures/pool-worker.ts', import.meta.url).href;
  const source =
    `import { register } from ${JSON.stringify(api)};\n` +
    'register();\n' +
    `await import(${JSON.stringify(fixture)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

function startWorker<R>(data: PoolWorkerData | RaceWorkerData): {
  worker: Worker;
  report: Promise<R>;
} {
  const worker = new Worker(workerBoot(), { workerData: data });
  const report = new Promise<R>((resolve, reject) => {
    worker.once('message', (msg: R) => resolve(msg));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      reject(new Error(`worker exited with code ${code} before reporting`));
    });
  });
  return { worker, report };
}

async function runThreads(
  areas: number,
  kernel: KernelVersion = '6.10',
  placement: Placement = 'linux',
): Promise<void> {
  const pool = SwiotlbPool.create({ slots: SLOTS, areas, area: 0, kernel, placement });
  const g = pool.geometry;
  expect(g.nareas).toBe(areas);
  const owners = new SharedArrayBuffer(g.nslabs * 4);
  const sync = new SharedArrayBuffer(SYNC_WORDS * 4);
  const barrier = new Int32Array(sync);
  const options = (id: number): WorkloadOptions => ({
    id,
    ops: OPS_PER_THREAD,
    seed: 0x5eed_0000 + id * 7919 + areas,
    maxLive: 8,
    maxSize: 64 * 1024,
  });

  const started = Array.from({ length: WORKERS }, (_, i) =>
    startWorker<WorkloadReport>({
      role: POOL_WORKER_ROLE,
      task: 'workload',
      shared: pool.share(),
      owners,
      sync,
      area: (i + 1) % g.nareas,
      options: options(i + 2),
    }),
  );
  try {
    // Start together: wait (without blocking this event loop) until every worker
    // has attached, then release them and run the main thread's share at once.
    let failed: unknown;
    for (const s of started) s.report.catch((err: unknown) => (failed ??= err));
    while (Atomics.load(barrier, SYNC_READY) < WORKERS) {
      if (failed !== undefined) throw failed;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    Atomics.store(barrier, SYNC_GO, 1);
    Atomics.notify(barrier, SYNC_GO);
    const mine = runWorkload(pool, new Int32Array(owners), options(1));
    const reports = [mine, ...(await Promise.all(started.map((s) => s.report)))];

    for (const r of reports) {
      expect(r.error, `thread ${r.id}`).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.maps).toBeGreaterThan(OPS_PER_THREAD / 4);
      expect(r.maxHeld).toBe(8);
    }

    const stats = pool.stats();
    const sum = (f: (r: WorkloadReport) => number): number => reports.reduce((n, r) => n + f(r), 0);
    expect(stats.used).toBe(0);
    expect(stats.areas.reduce((n, a) => n + a.used, 0)).toBe(0);
    expect(stats.maps).toBe(sum((r) => r.maps));
    expect(stats.unmaps).toBe(sum((r) => r.unmaps));
    expect(stats.maps).toBe(stats.unmaps);
    expect(stats.map_failures).toEqual({
      full: sum((r) => r.fulls),
      too_large: 0,
      invalid: 0,
      kernel_defect: sum((r) => r.hangs),
    });
    if (kernel !== '6.1') expect(sum((r) => r.hangs)).toBe(0);
    expect(stats.used_hiwater).toBeGreaterThan(0);
    expect(stats.used_hiwater).toBeLessThanOrEqual(g.nslabs);
    expect(stats.largest_free_run).toBe(128);
    expect(new Int32Array(owners).every((o) => o === 0)).toBe(true);

    const fresh = SwiotlbPool.create({ slots: SLOTS, areas, placement });
    const got = normalizedMeta(pool.share());
    const want = normalizedMeta(fresh.share());
    expect(got.length).toBe(want.length);
    expect(firstDifference(got, want), 'first metadata byte that differs from a fresh pool').toBe(
      -1,
    );
  } finally {
    await Promise.all(started.map((s) => s.worker.terminate()));
  }
}

const RACERS = 2;
const RACE_ROUNDS = 300;
const RACE_MAPPINGS = 128;

/** Waits (blocking, as the racers never need this thread) until `word` reaches `target`. */
function waitFor(control: Int32Array, word: number, target: number): void {
  for (let v = Atomics.load(control, word); v < target; v = Atomics.load(control, word)) {
    // The time limit only turns a hung racer into a failure instead of a hung test run.
    if (Atomics.wait(control, word, v, 30_000) === 'timed-out') {
      throw new Error(`racers did not finish a round (word ${word} = ${v}, want ${target})`);
    }
  }
}

async function raceUnmaps(areas: number): Promise<void> {
  const pool = SwiotlbPool.create({ slots: 1024, areas, area: 0 });
  const controlBuf = new SharedArrayBuffer(RACE_WORDS * 4);
  const control = new Int32Array(controlBuf);
  const addrsBuf = new SharedArrayBuffer(RACE_MAPPINGS * 8);
  const sizesBuf = new SharedArrayBuffer(RACE_MAPPINGS * 4);
  const winsBuf = new SharedArrayBuffer(RACE_MAPPINGS * 4);
  const arriveBuf = new SharedArrayBuffer(RACE_MAPPINGS * 4);
  const arrive = new Int32Array(arriveBuf);
  const addrs = new Float64Array(addrsBuf);
  const sizes = new Int32Array(sizesBuf);
  const wins = new Int32Array(winsBuf);
  const racers = Array.from({ length: RACERS }, () =>
    startWorker<RaceReport>({
      role: POOL_WORKER_ROLE,
      task: 'race-unmap',
      shared: pool.share(),
      control: controlBuf,
      addrs: addrsBuf,
      sizes: sizesBuf,
      wins: winsBuf,
      arrive: arriveBuf,
      racers: RACERS,
    }),
  );
  try {
    let failed: unknown;
    for (const r of racers) r.report.catch((err: unknown) => (failed ??= err));
    while (Atomics.load(control, RACE_DONE) < RACERS) {
      if (failed !== undefined) throw failed;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    let contested = 0;
    for (let round = 1; round <= RACE_ROUNDS; round++) {
      wins.fill(0);
      arrive.fill(0);
      for (let i = 0; i < RACE_MAPPINGS; i++) {
        sizes[i] = 1 + ((round * 7919 + i * 104729) % 4096);
        addrs[i] = pool.map(round * 2 ** 20 + i * 8192, sizes[i]!, DmaDirection.BIDIRECTIONAL, {
          area: i % areas,
        });
      }
      const used = pool.used();
      expect(used).toBeGreaterThan(0);
      Atomics.store(control, RACE_COUNT, RACE_MAPPINGS);
      Atomics.store(control, RACE_DONE, 0);
      Atomics.store(control, RACE_ROUND, round);
      Atomics.notify(control, RACE_ROUND);
      waitFor(control, RACE_DONE, RACERS);
      // Each mapping was freed exactly once, whoever won.
      const doubled = wins.findIndex((w) => w !== 1);
      expect(doubled, `mapping ${doubled} unmapped ${wins[doubled]} times`).toBe(-1);
      expect(pool.used()).toBe(0);
      contested += RACE_MAPPINGS;
    }
    Atomics.store(control, RACE_ROUND, RACE_STOP);
    Atomics.notify(control, RACE_ROUND);
    const reports = await Promise.all(racers.map((r) => r.report));
    for (const r of reports) {
      expect(r.error).toBeUndefined();
      expect(r.rounds).toBe(RACE_ROUNDS);
      // The loser of a race is told the mapping is not mapped (any more), nothing else.
      expect(r.otherErrors).toEqual({});
      expect(r.unmapped + r.notMapped).toBe(contested);
    }
    expect(reports.reduce((n, r) => n + r.unmapped, 0)).toBe(contested);

    const stats = pool.stats();
    expect(stats.used).toBe(0);
    expect(stats.maps).toBe(contested);
    expect(stats.unmaps).toBe(contested);
    const fresh = SwiotlbPool.create({ slots: 1024, areas });
    expect(firstDifference(normalizedMeta(pool.share()), normalizedMeta(fresh.share()))).toBe(-1);
  } finally {
    Atomics.store(control, RACE_ROUND, RACE_STOP);
    Atomics.notify(control, RACE_ROUND);
    await Promise.all(racers.map((r) => r.worker.terminate()));
  }
}

describe('swiotlb pool shared by threads', () => {
  it('main thread + 2 workers, 2 areas: no slot handed out twice, books balance', async () => {
    await runThreads(2);
  });

  it('main thread + 2 workers, 1 area (one lock for all)', async () => {
    await runThreads(1);
  });

  it('the 6.1 and 6.6 profiles under the same threads: no slot twice, books balance', async () => {
    await runThreads(2, '6.1');
    await runThreads(2, '6.6');
  });

  it('warm placement (hint rings under the area locks), 2 areas and 1, every profile', async () => {
    await runThreads(2, '6.10', 'warm');
    await runThreads(1, '6.10', 'warm');
    await runThreads(2, '6.1', 'warm');
    await runThreads(2, '6.6', 'warm');
  });

  it('racing unmaps of the same mappings free each one exactly once', async () => {
    await raceUnmaps(2);
  });
});
