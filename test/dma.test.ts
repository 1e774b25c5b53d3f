/**
 * The guest DMA API end to end: real copies between guest memory and the pool, on
 * the main thread and on copy workers, checked byte for byte.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { BounceDma, DirectDma } from '../src/mediator/dma.js';
import { GuestMemory } from '../src/mediator/guest-memory.js';
import { DmaDirection as D, DmaAttr, type DmaDirection } from '../src/swiotlb/constants.js';
import { type PoolOptions, SwiotlbPool } from '../src/swiotlb/pool.js';
import { CopyEngine, type CopyEngineOptions } from '../src/workers/copy-engine.js';
import { RING_HEAD, RING_SLEEPING } from '../src/workers/copy-ring.js';

const KiB = 1024;

/** A deterministic pseudo-random byte stream (xorshift32). */
function fillRandom(bytes: Uint8Array, seed: number): void {
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

interface Rig {
  engine: CopyEngine;
  guest: GuestMemory;
  pool: SwiotlbPool;
  dma: BounceDma;
}

function rig(
  engineOpts: CopyEngineOptions,
  poolOpts: PoolOptions = { size: 32 * 2 ** 20, areas: 2 },
  minAlignMask = 0,
): Rig {
  const engine = new CopyEngine(engineOpts);
  const guest = new GuestMemory({ size: 32 * 2 ** 20 });
  const pool = SwiotlbPool.create({ area: 0, ...poolOpts });
  const dma = new BounceDma(
    {
      guest,
      guestRegion: engine.registerRegion(guest.buffer),
      pool,
      poolRegion: engine.registerRegion(pool.share().data),
      engine,
    },
    { minAlignMask },
  );
  return { engine, guest, pool, dma };
}

/** What the device sees at a bounce address. */
function poolView(r: Rig, tlb: number, size: number): Uint8Array {
  const off = r.pool.offsetOf(tlb);
  return r.pool.data.subarray(off, off + size);
}

function guestView(r: Rig, addr: number, size: number): Uint8Array {
  const off = addr - r.guest.base;
  return r.guest.bytes.subarray(off, off + size);
}

const SIZES = [1, 7, 511, 512, 2049, 4096, 4097, 30_001, 65_536, 131_071, 200_000];

describe.each([
  { name: 'inline only', opts: { workers: 0 } },
  {
    name: 'two workers',
    opts: { workers: 2, inlineThreshold: 4096, splitThreshold: 64 * KiB, splitInline: false },
  },
  // Every completion through waitAsync and the workers' one notification per batch.
  {
    name: 'two workers, no polling',
    opts: {
      workers: 2,
      inlineThreshold: 4096,
      splitThreshold: 64 * KiB,
      splitInline: false,
      pollMicros: 0,
    },
  },
  // Large copies split between the calling thread and the worker.
  {
    name: 'one worker, the caller copies a part',
    opts: { workers: 1, inlineThreshold: 4096, splitThreshold: 64 * KiB, splitInline: true },
  },
])('round trips ($name)', ({ opts }) => {
  let r: Rig;
  beforeAll(() => {
    r = rig(opts);
  });
  afterAll(async () => {
    await r.engine.close();
  });

  for (const dir of [D.TO_DEVICE, D.FROM_DEVICE, D.BIDIRECTIONAL] as DmaDirection[]) {
    it(`dir ${dir}: every size, odd offsets, the device's writes come back only when Linux copies them`, async () => {
      let seed = 1;
      for (const size of [...SIZES, r.dma.maxMappingSize()]) {
        for (const offset of [0, 1, 2047, 4095]) {
          const addr = r.guest.base + 1_000_000 + offset;
          const original = guestView(r, addr, size);
          fillRandom(original, seed++);
          const expectedOriginal = original.slice();
          const tlb = await r.dma.mapSingle(addr, size, dir);
          // map copied the buffer into the pool for every direction
          expect(firstDifference(poolView(r, tlb, size), expectedOriginal)).toBe(-1);
          // the device writes its answer into the pool
          const answer = new Uint8Array(size);
          fillRandom(answer, seed++);
          poolView(r, tlb, size).set(answer);
          await r.dma.unmapSingle(tlb, size, dir);
          const expected = dir === D.TO_DEVICE ? expectedOriginal : answer;
          expect(
            firstDifference(guestView(r, addr, size), expected),
            `size ${size} offset ${offset}`,
          ).toBe(-1);
        }
      }
      expect(r.pool.used()).toBe(0);
    });
  }

  it('keeps the min_align_mask bits: NVMe (4095)', async () => {
    const nvme = new BounceDma(
      {
        guest: r.guest,
        guestRegion: 0,
        pool: r.pool,
        poolRegion: 1,
        engine: r.engine,
      },
      { minAlignMask: 4095 },
    );
    expect(nvme.maxMappingSize()).toBe(256 * KiB - 4096);
    for (const off of [0, 1, 0x234, 0xa34, 0xfff]) {
      const addr = r.guest.base + 0x40_0000 + off;
      const size = nvme.maxMappingSize() - (off & 2047);
      fillRandom(guestView(r, addr, size), off);
      const tlb = await nvme.mapSingle(addr, size, D.TO_DEVICE);
      expect(tlb & 4095).toBe(addr & 4095);
      expect(firstDifference(poolView(r, tlb, size), guestView(r, addr, size))).toBe(-1);
      await nvme.unmapSingle(tlb, size, D.TO_DEVICE);
    }
    expect(r.pool.used()).toBe(0);
  });

  it('scatter-gather maps and unmaps every entry with its data', async () => {
    const entries = [3, 4096, 70_000, 1, 100_000].map((length, i) => ({
      addr: r.guest.base + 2_000_000 + i * 200_000 + i,
      length,
    }));
    for (const [i, e] of entries.entries()) fillRandom(guestView(r, e.addr, e.length), 100 + i);
    const tlbs = await r.dma.mapSg(entries, D.BIDIRECTIONAL);
    const answers = entries.map((e, i) => {
      expect(firstDifference(poolView(r, tlbs[i]!, e.length), guestView(r, e.addr, e.length))).toBe(
        -1,
      );
      const a = new Uint8Array(e.length);
      fillRandom(a, 200 + i);
      poolView(r, tlbs[i]!, e.length).set(a);
      return a;
    });
    await r.dma.unmapSg(
      tlbs,
      entries.map((e) => e.length),
      D.BIDIRECTIONAL,
    );
    for (const [i, e] of entries.entries()) {
      expect(firstDifference(guestView(r, e.addr, e.length), answers[i]!)).toBe(-1);
    }
    expect(r.pool.used()).toBe(0);
  });

  it('partial syncs copy exactly their range, in the direction Linux copies', async () => {
    const addr = r.guest.base + 5_000_000;
    const size = 100_000;
    fillRandom(guestView(r, addr, size), 77);
    const tlb = await r.dma.mapSingle(addr, size, D.BIDIRECTIONAL);
    // The device writes everything; the CPU looks at [40000, 40000+5000) only.
    poolView(r, tlb, size).fill(0xab);
    await r.dma.syncSingleForCpu(tlb + 40_000, 5000, D.BIDIRECTIONAL);
    const g = guestView(r, addr, size);
    expect(g.subarray(40_000, 45_000).every((b) => b === 0xab)).toBe(true);
    expect(g.subarray(0, 40_000).some((b) => b !== 0xab)).toBe(true);
    expect(g.subarray(45_000).some((b) => b !== 0xab)).toBe(true);
    // The CPU rewrites a range and hands it to the device again.
    g.subarray(60_000, 61_000).fill(0x11);
    await r.dma.syncSingleForDevice(tlb + 60_000, 1000, D.BIDIRECTIONAL);
    expect(poolView(r, tlb + 60_000, 1000).every((b) => b === 0x11)).toBe(true);
    expect(poolView(r, tlb + 59_999, 1)[0]).toBe(0xab);
    // SKIP_CPU_SYNC: nothing comes back on unmap.
    const beforeUnmap = g.slice();
    poolView(r, tlb, size).fill(0xcd);
    await r.dma.unmapSingle(tlb, size, D.BIDIRECTIONAL, DmaAttr.SKIP_CPU_SYNC);
    expect(firstDifference(g, beforeUnmap)).toBe(-1);
  });

  it('many mappings in flight at once, each buffer intact', async () => {
    const n = 200;
    const sizes = Array.from({ length: n }, (_, i) => 1 + ((i * 7919) % (96 * KiB)));
    const addrs = sizes.map((_, i) => r.guest.base + 10_000_000 + i * 100 * KiB + (i % 13));
    for (let i = 0; i < n; i++) fillRandom(guestView(r, addrs[i]!, sizes[i]!), 1000 + i);
    const originals = addrs.map((a, i) => guestView(r, a, sizes[i]!).slice());
    const tlbs = await Promise.all(
      addrs.map((a, i) => r.dma.mapSingle(a, sizes[i]!, D.BIDIRECTIONAL)),
    );
    expect(new Set(tlbs).size).toBe(n);
    for (let i = 0; i < n; i++) {
      const view = poolView(r, tlbs[i]!, sizes[i]!);
      expect(firstDifference(view, originals[i]!)).toBe(-1);
      for (let k = 0; k < view.length; k++) view[k] = view[k]! ^ 0x5a;
    }
    await Promise.all(tlbs.map((t, i) => r.dma.unmapSingle(t, sizes[i]!, D.BIDIRECTIONAL)));
    for (let i = 0; i < n; i++) {
      const expected = originals[i]!.map((b) => b ^ 0x5a);
      expect(firstDifference(guestView(r, addrs[i]!, sizes[i]!), expected)).toBe(-1);
    }
    expect(r.pool.used()).toBe(0);
  });
});

describe('the info-leak rule', () => {
  it('a FROM_DEVICE mapping on slots that held another buffer shows the device only its own buffer', async () => {
    // One segment: every 256 KiB mapping takes the same 128 slots.
    const r = rig({ workers: 2, inlineThreshold: 4096 }, { slots: 128, areas: 1 });
    try {
      const size = 256 * KiB;
      const secretAddr = r.guest.base;
      const secret = guestView(r, secretAddr, size);
      secret.fill(0x5e);
      const a = await r.dma.mapSingle(secretAddr, size, D.TO_DEVICE);
      await r.dma.unmapSingle(a, size, D.TO_DEVICE);

      const bAddr = r.guest.base + 4 * 2 ** 20;
      const b = guestView(r, bAddr, size);
      fillRandom(b, 9);
      const before = b.slice();
      const tlb = await r.dma.mapSingle(bAddr, size, D.FROM_DEVICE);
      expect(tlb).toBe(a);
      const seen = poolView(r, tlb, size);
      expect(seen.includes(0x5e) ? firstDifference(seen, before) : -1).toBe(-1);
      // The device writes only the first 1000 bytes; the rest of b must survive unmap.
      seen.subarray(0, 1000).fill(0xee);
      await r.dma.unmapSingle(tlb, size, D.FROM_DEVICE);
      expect(b.subarray(0, 1000).every((x) => x === 0xee)).toBe(true);
      expect(firstDifference(b.subarray(1000), before.subarray(1000))).toBe(-1);
    } finally {
      await r.engine.close();
    }
  });
});

describe('copy accounting', () => {
  it('counts bytes and copies per guest and direction, inline and on workers', async () => {
    const r = rig({ workers: 2, inlineThreshold: 8192 });
    try {
      const addr = r.guest.base;
      for (const size of [100, 5000, 10_000, 100_000]) {
        const t = await r.dma.mapSingle(addr, size, D.BIDIRECTIONAL);
        await r.dma.unmapSingle(t, size, D.BIDIRECTIONAL);
      }
      const t = await r.dma.mapSingle(addr, 3000, D.TO_DEVICE);
      await r.dma.unmapSingle(t, 3000, D.TO_DEVICE);
      const s = r.engine.stats();
      const total = 100 + 5000 + 10_000 + 100_000;
      expect(s.totals.to_device).toMatchObject({ bytes: total + 3000, copies: 5 });
      expect(s.totals.from_device).toMatchObject({ bytes: total, copies: 4 });
      const guest = s.byRegion.get(0)!;
      expect(guest.to_device.bytes).toBe(total + 3000);
      // 100, 5000 and 3000 B inline (block 0); 10000 and 100000 B on workers.
      expect(s.byWriter[0]).toMatchObject({ bytes: 2 * (100 + 5000) + 3000, copies: 5 });
      const onWorkers = s.byWriter.slice(1).reduce((a, w) => a + w.bytes, 0);
      expect(onWorkers).toBe(2 * (10_000 + 100_000));
      expect(s.histogram.to_device.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(5);
    } finally {
      await r.engine.close();
    }
  });
});

describe('split copies', () => {
  it.each([
    { workers: 1, splitInline: true, writers: [0, 1] },
    { workers: 2, splitInline: false, writers: [1, 2] },
    { workers: 3, splitInline: true, writers: [0, 1, 2, 3] },
  ])(
    '$workers worker(s), caller copies a part: $splitInline: one part per writer, every byte once',
    async ({ workers, splitInline, writers }) => {
      const r = rig({ workers, inlineThreshold: 4096, splitThreshold: 8192, splitInline });
      try {
        // 3 pages + 1 byte: as many parts as writers (4 at most), the last one 1 byte.
        for (const [k, size] of [3 * 4096 + 1, 200_001, 256 * KiB].entries()) {
          const addr = r.guest.base + 3 + k * 300 * KiB;
          fillRandom(guestView(r, addr, size), size);
          const before = r.engine.stats().byWriter;
          const t = await r.dma.mapSingle(addr, size, D.TO_DEVICE);
          const after = r.engine.stats().byWriter;
          expect(firstDifference(poolView(r, t, size), guestView(r, addr, size))).toBe(-1);
          await r.dma.unmapSingle(t, size, D.TO_DEVICE);
          const copied = after.map((w, i) => w.bytes - before[i]!.bytes);
          // Each part on its own writer (block 0 = the caller), nothing copied twice.
          expect(
            copied.flatMap((bytes, i) => (bytes > 0 ? [i] : [])),
            `size ${size}`,
          ).toEqual(writers);
          expect(copied.reduce((a, b) => a + b, 0)).toBe(size);
        }
        expect(r.pool.used()).toBe(0);
      } finally {
        await r.engine.close();
      }
    },
  );

  it('random batches of maps and unmaps, split or not, inline or not: every byte where Linux puts it', async () => {
    // Two workers and the caller, splitting from 4 KiB: whether a copy is split
    // depends on what else is in flight, which the batches vary.
    const r = rig({ workers: 2, inlineThreshold: 2048, splitThreshold: 4096, splitInline: true });
    const dirs = [D.TO_DEVICE, D.FROM_DEVICE, D.BIDIRECTIONAL] as DmaDirection[];
    const io = fc.record({
      size: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 5000, max: 256 * KiB })),
      offset: fc.integer({ min: 0, max: 4095 }),
      dir: fc.constantFrom(...dirs),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    });
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(io, { minLength: 1, maxLength: 6 }), async (batch) => {
          // Each I/O gets its own 300 KiB of guest memory.
          const ios = batch.map((b, i) => ({
            ...b,
            addr: r.guest.base + i * 300 * KiB + b.offset,
          }));
          for (const x of ios) fillRandom(guestView(r, x.addr, x.size), x.seed);
          const originals = ios.map((x) => guestView(r, x.addr, x.size).slice());
          const tlbs = await Promise.all(ios.map((x) => r.dma.mapSingle(x.addr, x.size, x.dir)));
          const answers = ios.map((x, i) => {
            // Map copied in for every direction; then the device writes its answer.
            expect(firstDifference(poolView(r, tlbs[i]!, x.size), originals[i]!)).toBe(-1);
            const answer = new Uint8Array(x.size);
            fillRandom(answer, x.seed + 1);
            poolView(r, tlbs[i]!, x.size).set(answer);
            return answer;
          });
          await Promise.all(ios.map((x, i) => r.dma.unmapSingle(tlbs[i]!, x.size, x.dir)));
          for (const [i, x] of ios.entries()) {
            const expected = x.dir === D.TO_DEVICE ? originals[i]! : answers[i]!;
            expect(firstDifference(guestView(r, x.addr, x.size), expected)).toBe(-1);
          }
          expect(r.pool.used()).toBe(0);
        }),
        { seed: 4242, numRuns: 60 },
      );
      // The runs did split copies across all three writers.
      expect(r.engine.stats().byWriter.map((w) => w.copies > 0)).toEqual([true, true, true]);
    } finally {
      await r.engine.close();
    }
  });

  it('does not split while other copies are in flight, nor below the threshold, nor with 0', async () => {
    for (const splitThreshold of [64 * KiB, 0]) {
      const r = rig({ workers: 2, inlineThreshold: 4096, splitThreshold, splitInline: false });
      try {
        const size = 100 * KiB;
        const before = r.engine.stats().byWriter;
        // Two at once: the second arrives with the first in flight.
        const maps = await Promise.all([
          r.dma.mapSingle(r.guest.base, size, D.TO_DEVICE),
          r.dma.mapSingle(r.guest.base + size, size, D.TO_DEVICE),
          // Below the threshold: one part.
          r.dma.mapSingle(r.guest.base + 2 * size, 8192, D.TO_DEVICE),
        ]);
        const after = r.engine.stats().byWriter;
        const copies = after.reduce((a, w, i) => a + w.copies - before[i]!.copies, 0);
        // With a threshold, the first copy is split in two; never the others.
        expect(copies, `splitThreshold ${splitThreshold}`).toBe(splitThreshold > 0 ? 4 : 3);
        await r.dma.unmapSingle(maps[0], size, D.TO_DEVICE);
        await r.dma.unmapSingle(maps[1], size, D.TO_DEVICE);
        await r.dma.unmapSingle(maps[2], 8192, D.TO_DEVICE);
      } finally {
        await r.engine.close();
      }
    }
  });
});

describe('errors', () => {
  it('refuses guest buffers outside guest memory and reports a full pool in the kernel words', async () => {
    const r = rig({ workers: 0 }, { slots: 128, areas: 1 });
    await expect(r.dma.mapSingle(r.guest.base - 1, 10, D.TO_DEVICE)).rejects.toMatchObject({
      code: 'DMA_BAD_ADDRESS',
    });
    await expect(
      r.dma.mapSingle(r.guest.base + r.guest.size - 5, 10, D.TO_DEVICE),
    ).rejects.toMatchObject({
      code: 'DMA_BAD_ADDRESS',
    });
    const t = await r.dma.mapSingle(r.guest.base, 256 * KiB, D.TO_DEVICE);
    await expect(r.dma.mapSingle(r.guest.base, 4096, D.TO_DEVICE)).rejects.toThrow(
      'swiotlb buffer is full (sz: 4096 bytes), total 128 (slots), used 128 (slots)',
    );
    await r.dma.unmapSingle(t, 256 * KiB, D.TO_DEVICE);
    await r.engine.close();
  });

  it('one guest cannot unmap or sync another guest on a shared pool', async () => {
    const r = rig({ workers: 0 });
    const other = new BounceDma(
      { guest: r.guest, guestRegion: 0, pool: r.pool, poolRegion: 1, engine: r.engine },
      { owner: 99 },
    );
    const t = await r.dma.mapSingle(r.guest.base, 100, D.BIDIRECTIONAL);
    await expect(other.unmapSingle(t, 100, D.BIDIRECTIONAL)).rejects.toMatchObject({
      code: 'SWIOTLB_NOT_MAPPED',
    });
    await expect(other.syncSingleForCpu(t, 100, D.BIDIRECTIONAL)).rejects.toMatchObject({
      code: 'SWIOTLB_NOT_MAPPED',
    });
    await r.dma.unmapSingle(t, 100, D.BIDIRECTIONAL);
    expect(r.pool.used()).toBe(0);
    await r.engine.close();
  });

  it('refuses a guest memory that overlaps the pool', () => {
    const engine = new CopyEngine({ workers: 0 });
    const guest = new GuestMemory({ size: 1 << 20, base: 0 });
    const pool = SwiotlbPool.create({ slots: 128, areas: 1, area: 0 });
    expect(
      () =>
        new BounceDma({
          guest,
          guestRegion: engine.registerRegion(guest.buffer),
          pool,
          poolRegion: 0,
          engine,
        }),
    ).toThrow(/overlaps the pool/);
  });
});

describe('direct mode', () => {
  it('hands the device guest addresses and copies nothing', async () => {
    const guest = new GuestMemory({ size: 1 << 20 });
    const dma = new DirectDma(guest);
    const addr = guest.base + 4096;
    expect(await dma.mapSingle(addr, 1000, D.FROM_DEVICE)).toBe(addr);
    expect(await dma.mapSg([{ addr, length: 10 }], D.TO_DEVICE)).toEqual([addr]);
    await dma.unmapSingle(addr, 1000, D.FROM_DEVICE);
    await expect(dma.mapSingle(guest.base + guest.size, 1, D.TO_DEVICE)).rejects.toMatchObject({
      code: 'DMA_BAD_ADDRESS',
    });
    await expect(dma.mapSingle(addr, 1, D.NONE)).rejects.toMatchObject({
      code: 'SWIOTLB_INVALID_DIRECTION',
    });
  });
});

describe('worker crash and close', () => {
  it('a crashed worker fails its in-flight copies with a code, is replaced, and leaks no slot', async () => {
    const r = rig({ workers: 2, inlineThreshold: 4096, splitThreshold: 2 ** 30 });
    try {
      let crashed = 0;
      let ok = 0;
      // Enough copies in flight that the crash lands among them; retried a few
      // times in case a run drains before the thread dies.
      for (let attempt = 0; attempt < 5 && crashed === 0; attempt++) {
        const size = 200 * KiB;
        const maps = Array.from({ length: 36 }, (_, i) =>
          r.dma.mapSingle(r.guest.base + i * size, size, D.TO_DEVICE),
        );
        const crash = r.engine.crashWorker(attempt % 2);
        const settled = await Promise.allSettled(maps);
        await crash;
        for (const s of settled) {
          if (s.status === 'fulfilled') {
            ok++;
            await r.dma.unmapSingle(s.value, size, D.TO_DEVICE);
          } else {
            expect(isMediatorError(s.reason, 'COPY_WORKER_CRASHED'), String(s.reason)).toBe(true);
            crashed++;
          }
        }
        expect(r.pool.used()).toBe(0);
      }
      expect(crashed).toBeGreaterThan(0);
      expect(r.engine.workerCrashes).toBeGreaterThan(0);
      // The replacement works.
      const addr = r.guest.base + 7 * 2 ** 20;
      fillRandom(guestView(r, addr, 100_000), 5);
      const t = await r.dma.mapSingle(addr, 100_000, D.TO_DEVICE);
      expect(firstDifference(poolView(r, t, 100_000), guestView(r, addr, 100_000))).toBe(-1);
      await r.dma.unmapSingle(t, 100_000, D.TO_DEVICE);
      expect(r.pool.used()).toBe(0);
      expect(ok + crashed).toBeGreaterThan(0);
    } finally {
      await r.engine.close();
    }
  });

  it('close() stops a worker that missed the wake-up (it read STOP just before it slept)', async () => {
    const r = rig({ workers: 2, inlineThreshold: 4096, spinMicros: 0 });
    const rings = (r.engine as unknown as { rings: { header: Int32Array }[] }).rings;
    // Both workers started and asleep on HEAD (they never spin: spinMicros 0).
    for (const ring of rings) {
      for (let t = 0; t < 2000 && Atomics.load(ring.header, RING_SLEEPING) !== 1; t++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      expect(Atomics.load(ring.header, RING_SLEEPING)).toBe(1);
    }
    // The race, made certain: close()'s first wake-up of each ring is lost, as when
    // a worker reads STOP as 0 and only then waits.
    const notify = Atomics.notify;
    const lost = new Set<Int32Array>();
    Atomics.notify = ((array: Int32Array, index: number, count?: number) => {
      if (index === RING_HEAD && !lost.has(array)) {
        lost.add(array);
        return 0;
      }
      return notify(array, index, count);
    }) as typeof Atomics.notify;
    try {
      const closed = await Promise.race([
        r.engine.close().then(() => 'closed'),
        new Promise((resolve) => setTimeout(() => resolve('hung'), 5000)),
      ]);
      expect(closed).toBe('closed');
      expect(lost.size).toBe(2);
      expect(r.engine.liveWorkers).toBe(0);
    } finally {
      Atomics.notify = notify;
    }
  });

  it('close() waits for in-flight copies, then refuses new ones and stops every worker', async () => {
    const r = rig({ workers: 2, inlineThreshold: 4096 });
    const size = 100 * KiB;
    for (let i = 0; i < 40; i++) fillRandom(guestView(r, r.guest.base + i * size, size), i);
    const maps = Array.from({ length: 40 }, (_, i) =>
      r.dma.mapSingle(r.guest.base + i * size, size, D.TO_DEVICE),
    );
    expect(r.engine.liveWorkers).toBe(2);
    const closing = r.engine.close();
    const tlbs = await Promise.all(maps); // none rejected: accepted copies finish
    await closing;
    for (const [i, t] of tlbs.entries()) {
      expect(
        firstDifference(poolView(r, t, size), guestView(r, r.guest.base + i * size, size)),
      ).toBe(-1);
    }
    await expect(r.dma.mapSingle(r.guest.base, size, D.TO_DEVICE)).rejects.toMatchObject({
      code: 'COPY_ENGINE_CLOSED',
    });
    // A FROM_DEVICE unmap cannot copy back any more, but its slots are still freed.
    const before = r.pool.used();
    await Promise.all(tlbs.map((t) => r.dma.unmapSingle(t, size, D.TO_DEVICE)));
    expect(before).toBeGreaterThan(0);
    expect(r.pool.used()).toBe(0);
    expect(r.engine.liveWorkers).toBe(0);
    await r.engine.close(); // idempotent
  });
});
