/**
 * One test per rule of DESIGN.md "Linux swiotlb semantics to follow", with
 * addresses worked out by hand from kernel/dma/swiotlb.c (6.10):
 * swiotlb_tbl_map_single(), swiotlb_search_pool_area(), swiotlb_release_slots().
 */
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import type { Bouncer } from '../src/swiotlb/bouncer.js';
import { DmaDirection as D, DmaAttr, type DmaDirection } from '../src/swiotlb/constants.js';
import { computeGeometry, roundUpPowerOfTwo } from '../src/swiotlb/geometry.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';

const KiB = 1024;

function pool(slots: number, areas = 1, base = 0, bouncer?: Bouncer): SwiotlbPool {
  return SwiotlbPool.create({ slots, areas, base, area: 0, ...(bouncer ? { bouncer } : {}) });
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

class RecordingBouncer implements Bouncer {
  copies: [string, number, number, number][] = [];
  bounce(dir: number, orig: number, tlb: number, len: number): void {
    this.copies.push([dir === D.TO_DEVICE ? 'to_device' : 'from_device', orig, tlb, len]);
  }
}

describe('geometry', () => {
  it('defaults to 64 MiB = 32768 slots and CPUs rounded up to a power of two areas', () => {
    const g = computeGeometry();
    expect(g.nslabs).toBe(32768);
    expect(g.bytes).toBe(64 * 2 ** 20);
    expect(g.nareas).toBe(roundUpPowerOfTwo(availableParallelism()));
    expect(g.areaNslabs).toBe(32768 / g.nareas);
  });

  it('rounds slots to whole segments, then to a power of two, as swiotlb=<nslabs> does', () => {
    // ALIGN(300, 128) = 384, not a power of two: roundup_pow_of_two() -> 512
    // (round_up_default_nslabs(); test/swiotlb.geometry.test.ts has the kernel cases).
    expect(computeGeometry({ slots: 300, areas: 1 }).nslabs).toBe(512);
    expect(computeGeometry({ size: 1, areas: 1 }).nslabs).toBe(128);
    expect(computeGeometry({ size: 3 * 2 ** 20, areas: 1 }).nslabs).toBe(2048);
  });

  it('rounds areas up to a power of two and grows the pool to 128 slots per area', () => {
    const g = computeGeometry({ slots: 128, areas: 3 });
    expect(g.nareas).toBe(4);
    expect(g.nslabs).toBe(512);
    expect(g.areaNslabs).toBe(128);
    expect(g.log).toContain('software IO TLB: area num 4.');
  });

  it('refuses a base that is not 2 KiB aligned, and sizes that are not whole numbers', () => {
    expect(codeOf(() => computeGeometry({ base: 0x801 }))).toBe('SWIOTLB_INVALID_GEOMETRY');
    expect(codeOf(() => computeGeometry({ slots: -1 }))).toBe('SWIOTLB_INVALID_GEOMETRY');
    expect(codeOf(() => computeGeometry({ slots: 1.5 }))).toBe('SWIOTLB_INVALID_GEOMETRY');
    expect(codeOf(() => computeGeometry({ size: -1 }))).toBe('SWIOTLB_INVALID_GEOMETRY');
    expect(codeOf(() => computeGeometry({ areas: -1 }))).toBe('SWIOTLB_INVALID_GEOMETRY');
  });
});

describe('slots, segments and the max mapping size', () => {
  it('max mapping size = 256 KiB - roundup(min_align_mask, 2 KiB)', () => {
    const p = pool(256);
    expect(p.maxMappingSize(0)).toBe(262144);
    expect(p.maxMappingSize(4095)).toBe(262144 - 4096);
    expect(p.maxMappingSize(2047)).toBe(262144 - 2048);
    expect(p.maxMappingSize(511)).toBe(262144 - 2048);
  });

  it('takes a whole segment, refuses a search of one byte more, and places what the max mapping size only advises against', () => {
    const p = pool(256);
    expect(p.map(0x100000, 256 * KiB, D.TO_DEVICE)).toBe(0);
    expect(p.used()).toBe(128);
    try {
      p.map(0x100000, 256 * KiB + 1, D.TO_DEVICE);
      expect.unreachable();
    } catch (err) {
      expect(isMediatorError(err, 'SWIOTLB_MAPPING_TOO_LARGE')).toBe(true);
      expect((err as Error).message).toContain('262144 bytes');
      expect((err as Error).message).toContain('swiotlb buffer is full (sz: 262145 bytes)');
    }
    // 258049 bytes is above swiotlb_max_mapping_size() for min_align_mask 4095 (258048),
    // but swiotlb_tbl_map_single() never compares with it: 127 slots, bit 11 of the
    // original clear, so the even slot 128 (list 128) takes it.
    expect(p.map(0x1000, 258049, D.TO_DEVICE, { minAlignMask: 4095 })).toBe(128 * 2 * KiB);
    expect(p.used()).toBe(255);
    // The offset counts: orig & 4095 & 2047 = 0x100, so 262144 - 0x100 + 1 bytes search
    // 262145 bytes, 129 slots: more than any segment.
    expect(
      codeOf(() => p.map(0x1100, 262144 - 0x100 + 1, D.TO_DEVICE, { minAlignMask: 4095 })),
    ).toBe('SWIOTLB_MAPPING_TOO_LARGE');
    expect(p.stats().map_failures.too_large).toBe(2);
  });

  it('never crosses a segment: a run too short before the segment end is skipped', () => {
    const p = pool(256);
    // 100 slots (200 KiB >= PAGE_SIZE: page aligned) at slot 0; cursor -> 100.
    expect(p.map(0x200000, 100 * 2 * KiB, D.TO_DEVICE)).toBe(0);
    // 64 slots: slots 100..127 have list <= 28, so the search strides (2 slots, page
    // alignment) to slot 128, the next segment: 128 * 2048 = 0x40000.
    expect(p.map(0x300000, 64 * 2 * KiB, D.TO_DEVICE)).toBe(0x40000);
  });
});

describe('alignment and padding (swiotlb_tbl_map_single)', () => {
  it('keeps the min_align_mask bits of the original: NVMe 4095', () => {
    const p = pool(256);
    // offset = 0x1234 & 4095 & 2047 = 0x234; iotlb_align_mask = 4095 & ~2047 = 0x800
    // -> a slot whose bit 11 equals orig's (0): slot 0; tlb = 0 + 0x234.
    expect(p.map(0x1234, 100, D.TO_DEVICE, { minAlignMask: 4095 })).toBe(0x234);
    // orig 0x1a34 has bit 11 set: needs an odd slot; cursor is at 1 -> slot 1.
    expect(p.map(0x1a34, 100, D.TO_DEVICE, { minAlignMask: 4095 })).toBe(0x800 + 0x234);
    // orig 0x5a34 again odd; cursor at 2 (even) is skipped -> slot 3: 0x1800 + 0x234.
    expect(p.map(0x5a34, 100, D.TO_DEVICE, { minAlignMask: 4095 })).toBe(0x1a34);
  });

  it('pads with whole slots when alloc_align_mask keeps the full offset', () => {
    const p = pool(256);
    // offset = 0x1a34 & 4095 & (4095|2047) = 0xa34; size = ALIGN(100 + 0xa34, 4096) = 4096;
    // 2 slots at a 4 KiB aligned slot (0); pad_slots = 1; tlb = slot 1 + 0x234.
    const tlb = p.map(0x1a34, 100, D.TO_DEVICE, { minAlignMask: 4095, allocAlignMask: 4095 });
    expect(tlb).toBe(0xa34);
    expect(p.used()).toBe(2);
    expect(p.paddedSize(0x1a34, 100, { minAlignMask: 4095, allocAlignMask: 4095 })).toBe(4096);
    p.unmap(tlb, 100, D.TO_DEVICE);
    expect(p.used()).toBe(0);
    expect(p.stats().largest_free_run).toBe(128);
  });

  it('aligns mappings of PAGE_SIZE or more to a page when no mask is given', () => {
    const p = pool(256);
    expect(p.map(0x10, 100, D.TO_DEVICE)).toBe(0); // slot 0, cursor 1
    // 4096 bytes, both masks 0: alloc_align_mask = 4095 -> slot 1 skipped, slot 2.
    expect(p.map(0x20, 4096, D.TO_DEVICE)).toBe(0x1000);
    // 2048 bytes: slot-aligned only -> the cursor's slot 4; slot 1 stays free (next fit).
    expect(p.map(0x30, 2048, D.TO_DEVICE)).toBe(0x2000);
  });

  it('applies alloc_align_mask to the bounce address, base included', () => {
    const base = 0x8000_0800; // 2 KiB aligned, not 4 KiB aligned
    const p = pool(256, 1, base);
    // slot 0 is at 0x80000800 which breaks the 4 KiB alignment: slot 1 (0x80001000).
    expect(p.map(0x42, 100, D.TO_DEVICE, { allocAlignMask: 4095 })).toBe(0x8000_1000);
  });

  it('skips the iotlb check for orig_addr 0, as the kernel does', () => {
    const p = pool(256);
    p.map(0x10, 100, D.TO_DEVICE); // slot 0, cursor 1
    // orig 0 with min_align_mask 4095: offset 0, no iotlb constraint -> slot 1.
    expect(p.map(0, 100, D.TO_DEVICE, { minAlignMask: 4095 })).toBe(0x800);
  });
});

describe('search: next fit, wrap, one pass, areas', () => {
  it('advances the cursor past each mapping and wraps to 0 at the area end', () => {
    const p = pool(256);
    const a = p.map(0x100000, 256 * KiB, D.TO_DEVICE); // segment 0, cursor 128
    expect(a).toBe(0);
    const b = p.map(0x200000, 127 * 2 * KiB, D.TO_DEVICE); // slots 128..254, cursor 255
    expect(b).toBe(128 * 2048);
    expect(p.stats().areas[0]!.index).toBe(255);
    p.unmap(a, 256 * KiB, D.TO_DEVICE);
    // 4 KiB: page aligned; slot 255 is odd -> skipped, index wraps to 0 -> slot 0.
    expect(p.map(0x300000, 4096, D.TO_DEVICE)).toBe(0);
  });

  it('starts in the caller area and tries the others in order', () => {
    const p = pool(512, 4); // 4 areas of 128 slots
    expect(p.map(0x1000, 2048, D.TO_DEVICE, { area: 2 })).toBe(256 * 2048);
    p.unmap(256 * 2048, 2048, D.TO_DEVICE);
    const fill2 = p.map(0x1000, 256 * KiB, D.TO_DEVICE, { area: 2 });
    expect(fill2).toBe(256 * 2048);
    // area 2 is full: area 3 is next.
    const fill3 = p.map(0x1000, 256 * KiB, D.TO_DEVICE, { area: 2 });
    expect(fill3).toBe(384 * 2048);
    // areas 2 and 3 full: wrap to area 0.
    expect(p.map(0x1000, 2048, D.TO_DEVICE, { area: 2 })).toBe(0);
    const s = p.stats();
    expect(s.areas.map((x) => x.used)).toEqual([1, 0, 128, 128]);
  });

  it('fails only when every area fails, with the kernel message', () => {
    const p = pool(128); // one segment
    p.map(0x100000, 100 * 2 * KiB, D.TO_DEVICE); // 100 slots, 28 left
    try {
      p.map(0x200000, 64 * KiB, D.TO_DEVICE);
      expect.unreachable();
    } catch (err) {
      expect(isMediatorError(err, 'SWIOTLB_POOL_FULL')).toBe(true);
      expect((err as Error).message).toBe(
        'swiotlb buffer is full (sz: 65536 bytes), total 128 (slots), used 100 (slots)',
      );
    }
    // 28 free slots, but page alignment and the segment end leave room for 14 pages.
    expect(p.map(0x300000, 28 * KiB, D.TO_DEVICE)).toBe(100 * 2048);
    expect(p.stats().map_failures.full).toBe(1);
  });

  it('reports the padded size in the full message (sz includes the alignment offset)', () => {
    const p = pool(128);
    p.map(0x100000, 256 * KiB, D.TO_DEVICE);
    expect(() =>
      p.map(0x1a34, 100, D.TO_DEVICE, { minAlignMask: 4095, allocAlignMask: 4095 }),
    ).toThrow('swiotlb buffer is full (sz: 4096 bytes), total 128 (slots), used 128 (slots)');
  });
});

describe('copies at map, unmap and sync', () => {
  it('map copies original -> bounce for every direction', () => {
    for (const dir of [D.TO_DEVICE, D.FROM_DEVICE, D.BIDIRECTIONAL]) {
      const rec = new RecordingBouncer();
      const p = pool(128, 1, 0, rec);
      const tlb = p.map(0x4000, 3000, dir);
      expect(rec.copies).toEqual([['to_device', 0x4000, tlb, 3000]]);
    }
  });

  it('unmap copies back for FROM_DEVICE and BIDIRECTIONAL only, never with SKIP_CPU_SYNC', () => {
    const cases: [DmaDirection, number, boolean][] = [
      [D.TO_DEVICE, 0, false],
      [D.FROM_DEVICE, 0, true],
      [D.BIDIRECTIONAL, 0, true],
      [D.FROM_DEVICE, DmaAttr.SKIP_CPU_SYNC, false],
      [D.BIDIRECTIONAL, DmaAttr.SKIP_CPU_SYNC, false],
    ];
    for (const [dir, attrs, copies] of cases) {
      const rec = new RecordingBouncer();
      const p = pool(128, 1, 0, rec);
      const tlb = p.map(0x4000, 3000, dir);
      rec.copies = [];
      p.unmap(tlb, 3000, dir, attrs);
      expect(rec.copies).toEqual(copies ? [['from_device', 0x4000, tlb, 3000]] : []);
    }
  });

  it('sync_for_device copies unless FROM_DEVICE; sync_for_cpu copies unless TO_DEVICE', () => {
    for (const dir of [D.TO_DEVICE, D.FROM_DEVICE, D.BIDIRECTIONAL]) {
      const rec = new RecordingBouncer();
      const p = pool(128, 1, 0, rec);
      const tlb = p.map(0x4000, 3000, dir);
      rec.copies = [];
      p.syncForDevice(tlb, 3000, dir);
      p.syncForCpu(tlb, 3000, dir);
      const expected: [string, number, number, number][] = [];
      if (dir !== D.FROM_DEVICE) expected.push(['to_device', 0x4000, tlb, 3000]);
      if (dir !== D.TO_DEVICE) expected.push(['from_device', 0x4000, tlb, 3000]);
      expect(rec.copies).toEqual(expected);
    }
  });

  it('partial syncs mid-buffer copy only their range, from the matching original bytes', () => {
    const rec = new RecordingBouncer();
    const p = pool(128, 1, 0, rec);
    const tlb = p.map(0x1_0000_1234, 10_000, D.BIDIRECTIONAL, { minAlignMask: 4095 });
    expect(tlb % 4096).toBe(0x234);
    rec.copies = [];
    p.syncForCpu(tlb + 5000, 100, D.BIDIRECTIONAL);
    p.syncForDevice(tlb + 9_999, 1, D.BIDIRECTIONAL);
    expect(rec.copies).toEqual([
      ['from_device', 0x1_0000_1234 + 5000, tlb + 5000, 100],
      ['to_device', 0x1_0000_1234 + 9_999, tlb + 9_999, 1],
    ]);
    expect(codeOf(() => p.syncForCpu(tlb + 9_950, 100, D.BIDIRECTIONAL))).toBe(
      'SWIOTLB_BUFFER_OVERFLOW',
    );
  });

  it('refuses DMA_NONE and a sync direction other than the mapping direction', () => {
    const p = pool(128);
    const tlb = p.map(0x4000, 3000, D.TO_DEVICE);
    expect(codeOf(() => p.syncForDevice(tlb, 10, D.NONE))).toBe('SWIOTLB_INVALID_DIRECTION');
    expect(codeOf(() => p.syncForCpu(tlb, 10, D.FROM_DEVICE))).toBe('SWIOTLB_INVALID_DIRECTION');
    expect(codeOf(() => p.map(0x4000, 10, D.NONE))).toBe('SWIOTLB_INVALID_DIRECTION');
    const bidi = p.map(0x8000, 3000, D.BIDIRECTIONAL);
    expect(() => p.syncForCpu(bidi, 10, D.FROM_DEVICE)).not.toThrow();
    expect(() => p.syncForDevice(bidi, 10, D.TO_DEVICE)).not.toThrow();
  });
});

describe('unmap errors change nothing', () => {
  it('not mapped, inside a mapping, too large, wrong direction', () => {
    const p = pool(256);
    const tlb = p.map(0x4000, 3000, D.FROM_DEVICE);
    const before = p.stats();
    expect(codeOf(() => p.unmap(tlb + 1, 2999, D.FROM_DEVICE))).toBe('SWIOTLB_NOT_MAPPED');
    expect(codeOf(() => p.unmap(0x10_0000, 10, D.FROM_DEVICE))).toBe('SWIOTLB_NOT_MAPPED');
    expect(codeOf(() => p.unmap(50 * 2048, 10, D.FROM_DEVICE))).toBe('SWIOTLB_NOT_MAPPED');
    expect(codeOf(() => p.unmap(tlb, 3001, D.FROM_DEVICE))).toBe('SWIOTLB_BUFFER_OVERFLOW');
    expect(() => p.unmap(tlb, 3001, D.FROM_DEVICE)).toThrow(
      'Buffer overflow detected. Allocation size: 3000. Mapping size: 3001.',
    );
    expect(codeOf(() => p.unmap(tlb, 3000, D.TO_DEVICE))).toBe('SWIOTLB_INVALID_DIRECTION');
    expect(p.stats()).toEqual(before);
    p.unmap(tlb, 3000, D.FROM_DEVICE);
    expect(codeOf(() => p.unmap(tlb, 3000, D.FROM_DEVICE))).toBe('SWIOTLB_NOT_MAPPED');
    expect(p.used()).toBe(0);
  });

  it('rejects bad arguments with SWIOTLB_INVALID_ARGUMENT and counts them', () => {
    const p = pool(128);
    expect(codeOf(() => p.map(0x1000, 0, D.TO_DEVICE))).toBe('SWIOTLB_INVALID_ARGUMENT');
    expect(codeOf(() => p.map(-1, 10, D.TO_DEVICE))).toBe('SWIOTLB_INVALID_ARGUMENT');
    expect(codeOf(() => p.map(0x1000, 1.5, D.TO_DEVICE))).toBe('SWIOTLB_INVALID_ARGUMENT');
    expect(codeOf(() => p.map(0x1000, 10, D.TO_DEVICE, { minAlignMask: 4096 }))).toBe(
      'SWIOTLB_INVALID_ARGUMENT',
    );
    expect(codeOf(() => p.map(0x1000, 10, D.TO_DEVICE, { area: 1 }))).toBe(
      'SWIOTLB_INVALID_ARGUMENT',
    );
    expect(p.stats().map_failures.invalid).toBe(5);
    expect(p.used()).toBe(0);
  });
});

describe('scatter-gather', () => {
  it('maps each entry, and on a failure midway unmaps all of them without copying back', () => {
    const rec = new RecordingBouncer();
    const p = pool(128, 1, 0, rec);
    const entries = [
      { addr: 0x10_0000, length: 100 * KiB },
      { addr: 0x20_0000, length: 100 * KiB },
      { addr: 0x30_0000, length: 100 * KiB },
    ];
    expect(codeOf(() => p.mapSg(entries, D.FROM_DEVICE))).toBe('SWIOTLB_POOL_FULL');
    expect(p.used()).toBe(0);
    expect(rec.copies.map((c) => c[0])).toEqual(['to_device', 'to_device']);
    const ok = p.mapSg(entries.slice(0, 2), D.FROM_DEVICE);
    expect(ok).toEqual([0, 50 * 2048]);
    p.unmapSg(ok, [100 * KiB, 100 * KiB], D.FROM_DEVICE);
    expect(p.used()).toBe(0);
  });
});

describe('debugfs stats', () => {
  it('nslabs, used, used_hiwater (resettable to 0), transient_nslabs', () => {
    const p = pool(256);
    const a = p.map(0x1000, 2048, D.TO_DEVICE);
    p.map(0x2000, 4096, D.TO_DEVICE);
    p.map(0x3000, 2048, D.TO_DEVICE);
    p.unmap(a, 2048, D.TO_DEVICE);
    let s = p.stats();
    expect([s.nslabs, s.used, s.used_hiwater, s.transient_nslabs]).toEqual([256, 3, 4, 0]);
    p.resetHiwater();
    expect(p.stats().used_hiwater).toBe(0);
    p.map(0x4000, 2048, D.TO_DEVICE);
    s = p.stats();
    expect([s.used, s.used_hiwater]).toEqual([4, 4]);
    expect(s.maps).toBe(4);
    expect(s.unmaps).toBe(1);
  });

  it('largest free run tracks fragmentation', () => {
    const p = pool(256);
    const addrs: number[] = [];
    for (let i = 0; i < 256; i++) addrs.push(p.map(0x1000 * i, 2048, D.TO_DEVICE));
    expect(p.stats().largest_free_run).toBe(0);
    for (let i = 0; i < 256; i += 2) p.unmap(addrs[i]!, 2048, D.TO_DEVICE);
    expect(p.stats().largest_free_run).toBe(1);
    p.unmap(addrs[1]!, 2048, D.TO_DEVICE);
    expect(p.stats().largest_free_run).toBe(3);
  });
});

describe('attach', () => {
  it('a second handle on the shared buffers sees the same allocations', () => {
    const p = pool(256, 2);
    const q = SwiotlbPool.attach(p.share(), { area: 1 });
    const tlb = q.map(0x5000, 3000, D.TO_DEVICE);
    expect(tlb).toBe(128 * 2048);
    expect(p.stats().areas[1]!.used).toBe(2);
    p.unmap(tlb, 3000, D.TO_DEVICE);
    expect(q.used()).toBe(0);
  });
});
