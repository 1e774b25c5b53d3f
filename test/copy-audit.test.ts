/**
 * An audit of the copy engine (src/workers): what a copy descriptor may hold, the
 * ring's 32-bit counters where they wrap, a worker that throws, close() called
 * twice, statistics read while a writer is mid-update, and byte-exact copies of
 * every size and alignment, split or not. The tests marked "(defect)" failed
 * before the fix they name.
 */
import { MessageChannel } from 'node:worker_threads';
import fc from 'fast-check';
import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { CopyEngine, type CopyEngineOptions } from '../src/workers/copy-engine.js';
import {
  D_DIR,
  D_GUEST_OFFSET,
  D_GUEST_REGION,
  D_LENGTH,
  D_POOL_OFFSET,
  D_POOL_REGION,
  descriptorIndex,
  RING_HEAD,
  RING_STOP,
  RING_TAIL,
  ringBytes,
  type ServeTask,
} from '../src/workers/copy-ring.js';
import { CopyStatsWriter, readCopyStats, statsLayout } from '../src/workers/copy-stats.js';
import serve from '../src/workers/copy-worker.js';

const KiB = 1024;
const TO = DmaDirection.TO_DEVICE;
const FROM = DmaDirection.FROM_DEVICE;

/** The engine's rings, private: the tests reach the shared header and the port. */
interface RingView {
  header: Int32Array;
  head: number;
  port: { postMessage: (msg: unknown) => void };
}
const ringsOf = (engine: CopyEngine) => (engine as unknown as { rings: RingView[] }).rings;

/** Bytes that differ from their neighbours and from another seed's. */
function pattern(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + seed * 7 + (i >> 8)) & 255;
}

function rig(opts: CopyEngineOptions, size = 512 * KiB) {
  const engine = new CopyEngine(opts);
  const guestBuf = new SharedArrayBuffer(size);
  const poolBuf = new SharedArrayBuffer(size);
  const guest = new Uint8Array(guestBuf);
  const pool = new Uint8Array(poolBuf);
  const g = engine.registerRegion(guestBuf);
  const p = engine.registerRegion(poolBuf);
  return { engine, guest, pool, g, p };
}

describe('copy descriptors', () => {
  it('(defect) refuses NaN, fractional offsets or lengths and an unknown direction, and touches nothing', async () => {
    // Before: NaN passed every comparison and became offset 0; a fraction made the
    // byte loop store to non-index keys (a copy reported done with nothing copied).
    for (const workers of [0, 1]) {
      const { engine, guest, pool, g, p } = rig({ workers, inlineThreshold: 64 }, 4 * KiB);
      try {
        pattern(guest, 1);
        pattern(pool, 2);
        const before = pool.slice();
        const guestBefore = guest.slice();
        const bad: [number, number, number, number, number][] = [
          [TO, Number.NaN, 100, 8, 0],
          [TO, 0, Number.NaN, 8, 0],
          [TO, 0, 100, 200.5, 0],
          [TO, 0.5, 10.5, 4, 0],
          [FROM, 10, 0.25, 100, 0],
          [TO, 0, 0, Number.NaN, 0],
          [TO, 0, 0, 0, 0],
          [TO, -1, 0, 100, 0],
          [DmaDirection.BIDIRECTIONAL, 0, 0, 100, 0],
          [DmaDirection.NONE, 0, 0, 8, 0],
          [TO, 0, 0, 100, 1.5], // region id
        ];
        for (const [dir, from, to, length, regionShift] of bad) {
          expect(
            () => engine.copy(dir as typeof TO, g + regionShift, from, p, to, length),
            `workers ${workers}: ${dir} ${from} ${to} ${length}`,
          ).toThrow(RangeError);
        }
        expect(Buffer.compare(pool, before)).toBe(0);
        expect(Buffer.compare(guest, guestBefore)).toBe(0);
        expect(engine.stats().totals.to_device.copies).toBe(0);
      } finally {
        await engine.close();
      }
    }
  });

  it('(defect) never takes a region of 4 GiB, whose whole-region copy went to a worker as length 0', async () => {
    const engine = new CopyEngine({ workers: 1, inlineThreshold: 4 * KiB, splitThreshold: 0 });
    try {
      // Reserved, not touched: the OS maps the pages only when written.
      const big = new SharedArrayBuffer(2 ** 32);
      expect(() => engine.registerRegion(big)).toThrow(/smaller than 4 GiB/);
      // The largest region it takes: offsets above 2^31 travel in a descriptor's
      // int32 words and come back whole.
      const guestBuf = new SharedArrayBuffer(2 ** 32 - 1);
      const poolBuf = new SharedArrayBuffer(128 * KiB);
      const g = engine.registerRegion(guestBuf);
      const p = engine.registerRegion(poolBuf);
      const top = 2 ** 32 - 1 - 64 * KiB;
      const src = new Uint8Array(guestBuf, top, 64 * KiB);
      pattern(src, 3);
      const pending = engine.copy(TO, g, top, p, 1, 64 * KiB);
      expect(pending).toBeInstanceOf(Promise); // on the worker, through a descriptor
      await pending;
      expect(Buffer.compare(new Uint8Array(poolBuf, 1, 64 * KiB), src)).toBe(0);
      expect(() => engine.copy(TO, g, top, p, 0, 64 * KiB + 1)).toThrow(RangeError);
    } finally {
      await engine.close();
    }
  });

  it('(defect) refuses a ring capacity that is not an integer power of two', () => {
    // Before: 2.5 & 1.5 is 0, so 2.5 passed, and 3 copies in flight shared 2 descriptors.
    for (const ringCapacity of [2.5, 1.5 * 2 ** 10, 2 ** 31, 0, 3, Number.NaN]) {
      expect(() => new CopyEngine({ workers: 0, ringCapacity }), String(ringCapacity)).toThrow(
        RangeError,
      );
    }
  });

  it('a worker refuses a descriptor out of its region or naming an unknown region, before it copies', () => {
    // The engine validates first; this is the worker's own guard (copy-worker.ts),
    // run on this thread: the worker's serve() is a plain function.
    const cases: { offset: number; length: number; region: number; error: RegExp }[] = [
      { offset: 0xffffffff, length: 2, region: 1, error: /outside a region/ },
      { offset: 0, length: 0xffffffff, region: 1, error: /outside a region/ },
      { offset: 4 * KiB - 8, length: 9, region: 1, error: /outside a region/ },
      { offset: 0, length: 8, region: 7, error: /unknown region 7/ },
      { offset: 0, length: 8, region: -1, error: /unknown region -1/ },
    ];
    for (const c of cases) {
      const w = workerRig(4, 0);
      pattern(w.guest, 4);
      w.put(0, { dir: TO, guestRegion: 0, guestOffset: 0, poolRegion: c.region, ...c });
      Atomics.store(w.ring, RING_HEAD, 1);
      Atomics.store(w.ring, RING_STOP, 1);
      try {
        expect(() => serve(w.task), JSON.stringify(c)).toThrow(c.error);
        expect(w.pool.every((b) => b === 0)).toBe(true);
        expect(Atomics.load(w.ring, RING_TAIL)).toBe(0);
      } finally {
        w.close();
      }
    }
  });
});

interface Descriptor {
  dir: number;
  guestRegion: number;
  guestOffset: number;
  poolRegion: number;
  offset: number;
  length: number;
}

/** A ring and two 4 KiB regions (0 guest, 1 pool) for serve() on this thread. */
function workerRig(capacity: number, start: number) {
  const sab = new SharedArrayBuffer(ringBytes(capacity));
  const ring = new Int32Array(sab);
  Atomics.store(ring, RING_HEAD, start);
  Atomics.store(ring, RING_TAIL, start);
  const guestBuf = new SharedArrayBuffer(4 * KiB);
  const poolBuf = new SharedArrayBuffer(4 * KiB);
  const { port1, port2 } = new MessageChannel();
  const task: ServeTask = {
    ring: sab,
    capacity,
    stats: new SharedArrayBuffer(statsLayout(1, 8).bytes),
    blocks: 1,
    block: 0,
    maxRegions: 8,
    regions: [
      { id: 0, buffer: guestBuf },
      { id: 1, buffer: poolBuf },
    ],
    port: port2,
    spinMicros: 0,
  };
  return {
    ring,
    task,
    guest: new Uint8Array(guestBuf),
    pool: new Uint8Array(poolBuf),
    /** Writes descriptor `seq` as the engine's submit() does (int32 words). */
    put(seq: number, d: Descriptor): void {
      const i = descriptorIndex(seq, capacity);
      ring[i + D_DIR] = d.dir;
      ring[i + D_GUEST_REGION] = d.guestRegion;
      ring[i + D_GUEST_OFFSET] = d.guestOffset | 0;
      ring[i + D_POOL_REGION] = d.poolRegion;
      ring[i + D_POOL_OFFSET] = d.offset | 0;
      ring[i + D_LENGTH] = d.length | 0;
    },
    close(): void {
      port1.close();
      port2.close();
    },
  };
}

describe('ring counters at 2^31', () => {
  it('the worker copies across the wrap of HEAD and TAIL, each descriptor once, in order', () => {
    const start = 2 ** 31 - 3;
    const w = workerRig(4, start | 0);
    pattern(w.guest, 5);
    try {
      // 4 descriptors (a full ring) from 2^31 - 3: the last two after the wrap.
      for (let k = 0; k < 4; k++) {
        const seq = (start + k) | 0;
        w.put(seq, {
          dir: TO,
          guestRegion: 0,
          guestOffset: k * 100,
          poolRegion: 1,
          offset: k * 100 + 3,
          length: 100,
        });
      }
      Atomics.store(w.ring, RING_HEAD, (start + 4) | 0);
      Atomics.store(w.ring, RING_STOP, 1);
      expect(serve(w.task)).toEqual({ copies: 4 });
      expect(Atomics.load(w.ring, RING_TAIL)).toBe((start + 4) | 0);
      expect((start + 4) | 0).toBeLessThan(0);
      expect(Buffer.compare(w.pool.subarray(3, 403), w.guest.subarray(0, 400))).toBe(0);
    } finally {
      w.close();
    }
  });

  it('the engine submits, reaps and waits across the wrap, through a full ring and its backlog', async () => {
    // The counters are set before the worker's task is posted to it (piscina's
    // run() is the hand-off), so the worker starts at them: no race.
    const start = 2 ** 31 - 5;
    const proto = Piscina.prototype as unknown as {
      run: (task: ServeTask, opts?: unknown) => Promise<unknown>;
    };
    const run = proto.run;
    proto.run = function (this: unknown, task: ServeTask, opts?: unknown) {
      const h = new Int32Array(task.ring);
      Atomics.store(h, RING_HEAD, start);
      Atomics.store(h, RING_TAIL, start);
      return run.call(this, task, opts);
    };
    let r: ReturnType<typeof rig>;
    try {
      // pollMicros 0: every wait is a waitAsync on TAIL with NOTIFY_AT, the
      // comparisons that must hold across the wrap.
      r = rig({
        workers: 1,
        ringCapacity: 4,
        inlineThreshold: 64,
        splitThreshold: 0,
        pollMicros: 0,
      });
    } finally {
      proto.run = run;
    }
    const { engine, guest, pool, g, p } = r;
    const ring = ringsOf(engine)[0]!;
    ring.head = start;
    try {
      pattern(guest, 6);
      // 24 copies at once on a ring of 4: most wait in the backlog.
      const all = Array.from({ length: 24 }, (_, k) =>
        engine.copy(TO, g, k * 300, p, k * 300 + 5, 250),
      );
      await Promise.all(all);
      for (let k = 0; k < 24; k++) {
        expect(
          Buffer.compare(
            pool.subarray(k * 300 + 5, k * 300 + 255),
            guest.subarray(k * 300, k * 300 + 250),
          ),
        ).toBe(0);
      }
      expect(Atomics.load(ring.header, RING_TAIL)).toBe((start + 24) | 0);
      expect(engine.pendingCopies).toBe(0);
      expect(engine.stats().byWriter[1]).toMatchObject({ copies: 24, bytes: 24 * 250 });
    } finally {
      await engine.close();
    }
  });
});

describe('failure and close', () => {
  it('a worker that throws fails its copy with COPY_WORKER_CRASHED and is replaced', async () => {
    const { engine, guest, pool, g, p } = rig({
      workers: 1,
      inlineThreshold: 64,
      splitThreshold: 0,
    });
    try {
      // A region the worker never hears of (its registration message lost): the
      // worker's serve() throws on the descriptor that names it.
      const port = ringsOf(engine)[0]!.port;
      const post = port.postMessage;
      port.postMessage = () => undefined;
      const lostBuf = new SharedArrayBuffer(4 * KiB);
      const lost = engine.registerRegion(lostBuf);
      port.postMessage = post;
      const failed = engine.copy(TO, lost, 0, p, 0, 1000)!;
      const reason = await failed.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isMediatorError(reason, 'COPY_WORKER_CRASHED'), String(reason)).toBe(true);
      expect(String(reason)).toMatch(/unknown region/);
      expect(engine.workerCrashes).toBe(1);
      expect(engine.pendingCopies).toBe(0);
      // The replacement is given every region when it starts, that one too.
      pattern(new Uint8Array(lostBuf), 7);
      await engine.copy(TO, lost, 0, p, 0, 1000);
      expect(Buffer.compare(pool.subarray(0, 1000), new Uint8Array(lostBuf, 0, 1000))).toBe(0);
      pattern(guest, 8);
      await engine.copy(TO, g, 0, p, 2000, 1000);
      expect(Buffer.compare(pool.subarray(2000, 3000), guest.subarray(0, 1000))).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('(defect) a second close() settles only once the first has stopped every worker', async () => {
    // Before: close() set `closed` before it waited for the workers, so a second
    // call returned at once with the threads still running.
    const engine = new CopyEngine({ workers: 2 });
    const first = engine.close();
    const second = engine.close();
    await second;
    expect(engine.liveWorkers).toBe(0);
    await first;
    expect(() => engine.copy(TO, 0, 0, 0, 0, 1)).toThrow(
      expect.objectContaining({ code: 'COPY_ENGINE_CLOSED' }),
    );
    await engine.close();
  });

  it('(defect) close() with copies queued behind a full ring finishes them all, then refuses with a code', async () => {
    // Before: two close() calls made while copies were in flight both shut down,
    // and a worker thread was left running after both had settled.
    const { engine, guest, pool, g, p } = rig({
      workers: 1,
      ringCapacity: 2,
      inlineThreshold: 64,
      splitThreshold: 0,
    });
    pattern(pool, 9);
    // 30 copies on a ring of 2: 28 of them in the backlog when close() is called.
    const all = Array.from({ length: 30 }, (_, k) =>
      engine.copy(FROM, g, k * 1000, p, k * 1000 + 1, 900),
    );
    expect(engine.pendingCopies).toBe(30);
    const closing = [engine.close(), engine.close()];
    expect(() => engine.copy(TO, g, 0, p, 0, 100)).toThrow(
      expect.objectContaining({ code: 'COPY_ENGINE_CLOSED' }),
    );
    await Promise.all(all);
    await Promise.all(closing);
    expect(engine.pendingCopies).toBe(0);
    expect(engine.liveWorkers).toBe(0);
    for (let k = 0; k < 30; k++) {
      const got = guest.subarray(k * 1000, k * 1000 + 900);
      expect(Buffer.compare(got, pool.subarray(k * 1000 + 1, k * 1000 + 901)), `copy ${k}`).toBe(0);
    }
  });
});

describe('copy statistics', () => {
  it('(defect) count a block that stays mid-update once, not the block before it twice', () => {
    // Before: a block whose seq stayed odd (a worker dead mid-update, not yet
    // repaired) was read as whatever the previous block held.
    const blocks = 3;
    const buf = new SharedArrayBuffer(statsLayout(blocks, 4).bytes);
    const inline = new CopyStatsWriter(buf, blocks, 4, 0);
    inline.add(0, TO, 100, 0);
    const dead = new CopyStatsWriter(buf, blocks, 4, 1);
    dead.begin();
    dead.add(1, TO, 7, 0);
    const s = readCopyStats(buf, blocks, 4);
    expect(s.totals.to_device).toMatchObject({ copies: 2, bytes: 107 });
    expect(s.byWriter.map((w) => w.copies)).toEqual([1, 1, 0]);
    expect(s.histogram.to_device.reduce((a, b) => a + b, 0)).toBe(2);
    dead.repairAfterCrash();
    expect(readCopyStats(buf, blocks, 4).totals.to_device.copies).toBe(2);
  });
});

describe('every size and alignment', () => {
  it.each([
    { workers: 2, splitInline: true },
    { workers: 2, splitInline: false },
    { workers: 1, splitInline: true },
  ])(
    '$workers worker(s), splitInline $splitInline: byte-exact from 1 B to 256 KiB at any offsets, counted once',
    async (opts) => {
      // Inline below 2 KiB, split from 8 KiB: the three routes, each at odd offsets.
      const { engine, guest, pool, g, p } = rig({
        ...opts,
        inlineThreshold: 2 * KiB,
        splitThreshold: 8 * KiB,
      });
      const arb = fc.record({
        size: fc.oneof(
          fc.integer({ min: 0, max: 64 }),
          fc.integer({ min: 1, max: 16 * KiB }),
          fc.integer({ min: 1, max: 256 * KiB }),
        ),
        guestOffset: fc.nat({ max: 8 * KiB }),
        poolOffset: fc.nat({ max: 8 * KiB }),
        toDevice: fc.boolean(),
        seed: fc.nat({ max: 255 }),
      });
      try {
        await fc.assert(
          fc.asyncProperty(arb, async (c) => {
            await oneCopy(engine, guest, pool, g, p, c);
          }),
          { seed: 20260, numRuns: 120 },
        );
        // Every writer took part: the inline one (when it copies a part) and each worker.
        const writers = engine.stats().byWriter.map((w) => w.copies > 0);
        expect(writers).toEqual(Array.from({ length: opts.workers + 1 }, () => true));
      } finally {
        await engine.close();
      }
    },
  );
});

/**
 * One copy checked whole: the destination range equals the source, every byte
 * around it is untouched, and the statistics grew by exactly its bytes. A size of
 * 0 is refused and changes nothing.
 */
async function oneCopy(
  engine: CopyEngine,
  guest: Uint8Array,
  pool: Uint8Array,
  g: number,
  p: number,
  c: { size: number; guestOffset: number; poolOffset: number; toDevice: boolean; seed: number },
): Promise<void> {
  pattern(guest, c.seed);
  pattern(pool, c.seed + 1);
  const [src, dst] = c.toDevice ? [guest, pool] : [pool, guest];
  const [from, to] = c.toDevice ? [c.guestOffset, c.poolOffset] : [c.poolOffset, c.guestOffset];
  const expected = dst.slice();
  expected.set(src.subarray(from, from + c.size), to);
  const dir = c.toDevice ? TO : FROM;
  const key = c.toDevice ? 'to_device' : 'from_device';
  const before = engine.stats();
  if (c.size === 0) {
    expect(() => engine.copy(dir, g, c.guestOffset, p, c.poolOffset, 0)).toThrow(RangeError);
  } else {
    await engine.copy(dir, g, c.guestOffset, p, c.poolOffset, c.size);
  }
  expect(Buffer.compare(dst, expected)).toBe(0);
  const after = engine.stats();
  expect(after.totals[key].bytes - before.totals[key].bytes).toBe(c.size);
  const copies = after.totals[key].copies - before.totals[key].copies;
  const hist = (s: typeof after) => s.histogram[key].reduce((a, b) => a + b, 0);
  // One count per part (a split copy counts once per part, docs/monitoring.md), in
  // the histogram as in the totals; never more parts than writers.
  expect(hist(after) - hist(before)).toBe(copies);
  expect(copies).toBeLessThanOrEqual(c.size === 0 ? 0 : after.byWriter.length);
  if (c.size > 0) expect(copies).toBeGreaterThanOrEqual(1);
}

describe('a copy worker that fails outside a copy (piscina emits "error")', () => {
  const piscinaOf = (engine: CopyEngine) => (engine as unknown as { piscina: Piscina }).piscina;

  it('(defect) before its ring started: the ring is given up and copies are made inline; close() returns', async () => {
    // Piscina emits 'error' for a worker that fails at start-up and then starts no
    // more; the engine had no listener, so the event threw (the process crashed).
    // Emitted here before the worker can have taken its ring's task.
    const { engine, guest, pool, g, p } = rig({
      workers: 1,
      inlineThreshold: 64,
      splitThreshold: 0,
    });
    try {
      expect(() =>
        piscinaOf(engine).emit('error', new Error('worker failed at start-up')),
      ).not.toThrow();
      pattern(guest, 9);
      // Inline now: done on return, no promise.
      expect(engine.copy(TO, g, 0, p, 0, 64 * KiB)).toBeUndefined();
      expect(Buffer.compare(pool.subarray(0, 64 * KiB), guest.subarray(0, 64 * KiB))).toBe(0);
      expect(engine.pendingCopies).toBe(0);
    } finally {
      await engine.close();
    }
    expect(engine.liveWorkers).toBe(0);
  });

  it('once its ring is served, the ring is kept and copies still go to the worker', async () => {
    const { engine, guest, pool, g, p } = rig({
      workers: 1,
      inlineThreshold: 64,
      splitThreshold: 0,
    });
    try {
      pattern(guest, 10);
      await engine.copy(TO, g, 0, p, 0, 4 * KiB); // served: the worker has started
      piscinaOf(engine).emit('error', new Error('another worker failed'));
      const copying = engine.copy(TO, g, 4 * KiB, p, 4 * KiB, 64 * KiB);
      expect(copying).toBeInstanceOf(Promise);
      await copying;
      expect(Buffer.compare(pool.subarray(0, 68 * KiB), guest.subarray(0, 68 * KiB))).toBe(0);
      expect(engine.workerCrashes).toBe(0);
    } finally {
      await engine.close();
    }
  });
});
