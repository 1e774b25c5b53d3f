/**
 * BounceDma.mapSg() against dma_direct_map_sg() (kernel/dma/direct.c, 6.1.192 and
 * 6.12.117): entries are mapped in order, the first that fails ends the walk, the
 * ones before it are unmapped with SKIP_CPU_SYNC and the ones after it are never
 * tried. The synchronous pool API (SwiotlbPool.mapSg) is the reference.
 */
import { describe, expect, it } from 'vitest';
import { BounceDma } from '../src/mediator/dma.js';
import { GuestMemory } from '../src/mediator/guest-memory.js';
import { DmaDirection as D, IO_TLB_SIZE } from '../src/swiotlb/constants.js';
import type { KernelVersion } from '../src/swiotlb/kernel.js';
import { type PoolOptions, SwiotlbPool } from '../src/swiotlb/pool.js';
import { CopyEngine, type CopyEngineOptions } from '../src/workers/copy-engine.js';

const KiB = 1024;

function rig(engineOpts: CopyEngineOptions, poolOpts: PoolOptions) {
  const engine = new CopyEngine(engineOpts);
  const guest = new GuestMemory({ size: 4 * 2 ** 20 });
  const pool = SwiotlbPool.create(poolOpts);
  const dma = new BounceDma({
    guest,
    guestRegion: engine.registerRegion(guest.buffer),
    pool,
    poolRegion: engine.registerRegion(pool.share().data),
    engine,
  });
  return { engine, guest, pool, dma };
}

/** What the kernel's debugfs shows (and the cursor), plus the pool's own counters. */
function snapshot(pool: SwiotlbPool) {
  const s = pool.stats();
  return {
    used: s.used,
    used_hiwater: s.used_hiwater,
    cursor: s.areas[0]!.index,
    full: s.map_failures.full,
    maps: s.maps,
    unmaps: s.unmaps,
  };
}

const ENGINES: { name: string; opts: CopyEngineOptions }[] = [
  { name: 'inline copies', opts: { workers: 0 } },
  // Entries of 4 KiB and more are copied on the workers, concurrently.
  { name: 'two workers', opts: { workers: 2, inlineThreshold: 4096, splitThreshold: 0 } },
];
const KERNELS: KernelVersion[] = ['6.1', '6.6', '6.10'];

describe.each(ENGINES.flatMap((e) => KERNELS.map((kernel) => ({ ...e, kernel }))))(
  'mapSg on a pool too full for one entry ($name, kernel $kernel)',
  ({ opts, kernel }) => {
    it('stops at the failing entry: the entries after it are never tried', async () => {
      // One area of 512 slots (4 segments of 128), the kernel's next-fit search.
      const poolOpts: PoolOptions = {
        size: 2 ** 20,
        areas: 1,
        area: 0,
        placement: 'linux',
        kernel,
        exclusive: true,
      };
      const r = rig(opts, poolOpts);
      const ref = SwiotlbPool.create(poolOpts); // placement only: no copies
      try {
        const base = r.guest.base;
        const slot = (tlb: number) => (tlb - r.pool.geometry.base) / IO_TLB_SIZE;
        // Three segments taken: the cursor at slot 384, 128 slots free after it.
        for (let i = 0; i < 3; i++) {
          const addr = base + i * 256 * KiB;
          const tlb = await r.dma.mapSingle(addr, 256 * KiB, D.TO_DEVICE);
          expect(slot(tlb)).toBe(i * 128);
          expect(ref.map(addr, 256 * KiB, D.TO_DEVICE)).toBe(tlb);
        }
        expect(snapshot(r.pool).cursor).toBe(384);
        const entries = [
          { addr: base + 1024 * KiB, length: 100 * KiB }, // 50 slots: fits at 384
          { addr: base + 1280 * KiB, length: 200 * KiB }, // 100 slots: 78 left, full
          { addr: base + 1536 * KiB, length: 1000 }, // 1 slot: would fit at 434
        ];
        await expect(r.dma.mapSg(entries, D.TO_DEVICE)).rejects.toMatchObject({
          code: 'SWIOTLB_POOL_FULL',
        });
        expect(() => ref.mapSg(entries, D.TO_DEVICE)).toThrow(/swiotlb buffer is full/);

        // The kernel: entry 0 placed at 384 (cursor 384 + 50 = 434, hiwater 434),
        // entry 1 fails (a failed search leaves the cursor), entry 2 never tried;
        // entry 0 unmapped. The old code also placed entry 2 (cursor 435, hiwater 435).
        const after = snapshot(r.pool);
        expect(after).toEqual(snapshot(ref));
        expect(after).toMatchObject({ used: 384, used_hiwater: 434, cursor: 434, full: 1 });

        // The next placement is where the kernel's would be.
        const next = await r.dma.mapSingle(base + 1792 * KiB, 1000, D.TO_DEVICE);
        expect(slot(next)).toBe(434);
        expect(ref.map(base + 1792 * KiB, 1000, D.TO_DEVICE)).toBe(next);
      } finally {
        await r.engine.close();
      }
    });
  },
);

describe('mapSg copies', () => {
  it('copies every placed entry (on the workers) once all are placed', async () => {
    const r = rig(
      { workers: 2, inlineThreshold: 4096, splitThreshold: 0 },
      { size: 4 * 2 ** 20, areas: 1, area: 0, placement: 'linux', exclusive: true },
    );
    try {
      const entries = [5, 70_000, 4096, 1, 200_000, 9_999].map((length, i) => ({
        addr: r.guest.base + i * 300 * KiB + i,
        length,
      }));
      for (const [i, e] of entries.entries()) {
        const off = e.addr - r.guest.base;
        for (let k = 0; k < e.length; k++) r.guest.bytes[off + k] = (k * 7 + i * 13 + 1) & 0xff;
      }
      const tlbs = await r.dma.mapSg(entries, D.TO_DEVICE);
      for (const [i, e] of entries.entries()) {
        const g = e.addr - r.guest.base;
        const p = r.pool.offsetOf(tlbs[i]!);
        expect(
          Buffer.compare(
            r.guest.bytes.subarray(g, g + e.length),
            r.pool.data.subarray(p, p + e.length),
          ),
        ).toBe(0);
      }
      await r.dma.unmapSg(
        tlbs,
        entries.map((e) => e.length),
        D.TO_DEVICE,
      );
      expect(r.pool.used()).toBe(0);
    } finally {
      await r.engine.close();
    }
  });

  it('a copy that fails unmaps every entry and leaves the cursor where the placements left it', async () => {
    const r = rig(
      { workers: 0 },
      { size: 2 ** 20, areas: 1, area: 0, placement: 'linux', exclusive: true },
    );
    await r.engine.close();
    const entries = [
      { addr: r.guest.base, length: 3000 },
      { addr: r.guest.base + 8 * KiB, length: 1000 },
    ];
    await expect(r.dma.mapSg(entries, D.TO_DEVICE)).rejects.toMatchObject({
      code: 'COPY_ENGINE_CLOSED',
    });
    // Both entries were placed (2 slots + 1 slot), then unmapped.
    expect(snapshot(r.pool)).toMatchObject({ used: 0, used_hiwater: 3, cursor: 3, maps: 2 });
    expect(snapshot(r.pool).unmaps).toBe(2);
  });
});
