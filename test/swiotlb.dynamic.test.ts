/**
 * The growable default pool (CONFIG_SWIOTLB_DYNAMIC), cases worked from
 * swiotlb_find_slots(), swiotlb_search_area(), swiotlb_dyn_alloc(),
 * swiotlb_alloc_pool() and swiotlb_del_transient() of 6.12.117, and 6.6.y's
 * swiotlb_pool_find_slots() (pool by pool; the area-first order came later).
 */
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { DynamicPool } from '../src/swiotlb/dynamic.js';
import { ReplayEngine } from '../src/swiotlb/replay.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

describe('growable default pool', () => {
  it('a request that fits nowhere gets a transient pool and schedules one growth', () => {
    const d = new DynamicPool({ slots: 128, areas: 1, kernel: '6.10' });
    d.map(0x10_0000, 121 * 2048, D.TO_DEVICE); // slots 0-120: 7 left
    // 16 KiB (8 slots) fits nowhere: a transient pool of exactly 8 slots, one area,
    // right after the default pool (256 KiB), aligned to its order (16 KiB).
    const t = d.map(0x20_0000, 16384, D.TO_DEVICE);
    expect(d.partOf(t)).toBe('transient');
    expect(t).toBe(0x40000);
    let s = d.stats();
    expect(s).toMatchObject({
      nslabs: 128, // transient pools are not in mem->nslabs
      used: 129, // ...but their slots are used
      transient_nslabs: 8,
      growths: 0,
      pending_growth: true,
    });
    // The workqueue runs before the next request: a growth of default_nslabs (128)
    // in default_nareas (1), searched first (list_add_rcu() puts it at the head).
    const g = d.map(0x30_0000, 16384, D.TO_DEVICE);
    expect(d.partOf(g)).toBe('growth');
    s = d.stats();
    expect(s).toMatchObject({ nslabs: 256, used: 137, growths: 1, pending_growth: false });
    expect(s.pools.map((p) => [p.kind, p.nslabs, p.used])).toEqual([
      ['growth', 128, 8],
      ['default', 128, 121],
      ['transient', 8, 8],
    ]);
    // swiotlb_del_transient(): the unmap frees the whole transient pool.
    d.unmap(t, 16384, D.TO_DEVICE);
    expect(d.stats()).toMatchObject({ used: 129, transient_nslabs: 0, used_hiwater: 137 });
    expect(d.stats().pools.map((p) => p.kind)).toEqual(['growth', 'default']);
  });

  it('grows by at most 2048 slots (4 MiB, SLABS_PER_PAGE << MAX_PAGE_ORDER) in limit_nareas() areas', () => {
    const d = new DynamicPool({ slots: 32768, areas: 32, kernel: '6.10' });
    for (let a = 0; a < 32; a++) {
      for (let i = 0; i < 8; i++) d.map(0x1000_0000, 256 * 1024, D.TO_DEVICE, { area: a });
    }
    expect(d.stats().used).toBe(32768);
    d.map(0x2000_0000, 4096, D.TO_DEVICE); // transient
    d.map(0x2000_0000, 4096, D.TO_DEVICE); // after the growth
    const growth = d.stats().pools[0]!;
    // 2048 < 128 x 32: limit_nareas(32, 2048) = 16.
    expect(growth).toMatchObject({ kind: 'growth', nslabs: 2048, nareas: 16 });
  });

  it('6.10 tries each area in every pool first; 6.6 searches pool by pool', () => {
    // Default pool: 2 areas of 128; area 0 keeps 8 free slots, area 1 is full. The
    // growth (2 areas) has its area 0 full. A 4-slot map from CPU 0:
    //   6.10: offset 0 -> growth area 0 (full), default area 0 (room): default.
    //   6.6:  growth areas 0 then 1 (room): growth.
    const place = (kernel: '6.6' | '6.10'): string => {
      const d = new DynamicPool({ slots: 256, areas: 2, kernel });
      d.map(0x100_0000, 120 * 2048, D.TO_DEVICE, { area: 0 });
      d.map(0x100_0000, 128 * 2048, D.TO_DEVICE, { area: 1 });
      d.map(0x200_0000, 16 * 2048, D.TO_DEVICE, { area: 0 }); // transient, schedules a growth
      d.map(0x300_0000, 128 * 2048, D.TO_DEVICE, { area: 0 }); // the growth's area 0
      expect(d.stats().pools[0]).toMatchObject({ kind: 'growth', used: 128 });
      return d.partOf(d.map(0x400_0000, 4 * 2048, D.TO_DEVICE, { area: 0 }));
    };
    expect(place('6.10')).toBe('default');
    expect(place('6.6')).toBe('growth');
  });

  it('a transient pool of one slot cannot keep an odd bit 11 (NVMe): the kernel says full', () => {
    // nr_slots(2048) = 1 slot at a page-aligned address: bit 11 clear, the original's
    // set, and no second slot to move to: swiotlb_dyn_free(), -1.
    const d = new DynamicPool({ slots: 128, areas: 1 });
    d.map(0x10_0000, 128 * 2048, D.TO_DEVICE);
    expect(code(() => d.map(0x800, 2048, D.TO_DEVICE, { minAlignMask: 4095 }))).toBe(
      'SWIOTLB_POOL_FULL',
    );
    expect(d.stats()).toMatchObject({ transient_nslabs: 0, pending_growth: true });
  });

  it('has no 6.1 and no restricted pool', () => {
    expect(code(() => new DynamicPool({ kernel: '6.1' }))).toBe('SWIOTLB_INVALID_ARGUMENT');
    expect(
      code(() => new ReplayEngine({ dynamic: true, pool: { restricted: true, size: 2 ** 20 } })),
    ).toBe('SWIOTLB_INVALID_GEOMETRY');
  });

  it('replays with "pool" on each placement and the growth in stats', () => {
    const r = new ReplayEngine({ pool: { slots: 128, areas: 1 }, dynamic: true });
    const out = [
      '{"op":"map","id":"a","orig":"0x100000","size":262144,"dir":"to_device"}',
      '{"op":"map","id":"b","orig":"0x200000","size":4096,"dir":"to_device"}',
      '{"op":"alloc","id":"q","size":6784}',
      '{"op":"unmap","id":"b"}',
      '{"op":"stats"}',
    ].map((l, i) => r.handle(l, i + 1));
    expect(out[0]).toEqual({ id: 'a', ok: true, tlb_addr: '0x0', slots: 128, pool: 'default' });
    expect(out[1]).toMatchObject({ id: 'b', ok: true, slots: 2, pool: 'transient' });
    expect(out[2]).toMatchObject({ id: 'q', ok: true, slots: 4, pool: 'growth' });
    expect(out[4]).toMatchObject({ nslabs: 256, used: 132, transient_nslabs: 0, growths: 1 });
  });
});
