/**
 * One hand-worked case per rule that differs between the kernel profiles, with
 * the addresses worked out from each version's kernel/dma/swiotlb.c:
 *   6.1   6.1.192: swiotlb_do_find_slots(), swiotlb_tbl_map_single(), swiotlb_alloc()
 *   6.6   6.6.y after 6.6.35: swiotlb_area_find_slots() with the 6.9 fixes,
 *         swiotlb_tbl_map_single() searching alloc_size + offset
 *   6.10  6.12.117: swiotlb_search_pool_area(), swiotlb_tbl_map_single(), swiotlb_alloc()
 * and the cases where they place identically, checked as such.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { KERNEL_VERSIONS, type KernelVersion } from '../src/swiotlb/kernel.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { caught } from './helpers/caught.js';

function pool(kernel: KernelVersion, slots = 256, base = 0): SwiotlbPool {
  return SwiotlbPool.create({ slots, areas: 1, base, kernel, area: 0 });
}

const error = caught;

describe('where the bounce address sits: pad slots and the min_align_mask bits kept', () => {
  it('dma-iommu style (min 4095, alloc 4095): 6.6/6.10 keep bit 11 with a pad slot, 6.1 drops it', () => {
    // orig 0x1a34, 100 bytes. 6.6/6.10: offset = 0x1a34 & 4095 & (4095 | 2047) = 0xa34,
    // pad_slots 1, tlb = slot 0 + 0x800 + 0x234 = 0xa34 (bits 0-11 kept).
    // 6.1: offset = 0x1a34 & 4095 & 2047 = 0x234; iotlb_align_mask = 4095 & ~4095 = 0,
    // so nothing matches bit 11: slot 0, tlb 0x234 (bit 11 of the original lost).
    const opts = { minAlignMask: 4095, allocAlignMask: 4095 };
    expect(pool('6.10').map(0x1a34, 100, D.TO_DEVICE, opts)).toBe(0xa34);
    expect(pool('6.6').map(0x1a34, 100, D.TO_DEVICE, opts)).toBe(0xa34);
    expect(pool('6.1').map(0x1a34, 100, D.TO_DEVICE, opts)).toBe(0x234);
    expect(pool('6.10').mapSlots(0x1a34, 100, opts)).toBe(2); // ALIGN(100 + 0xa34, 4096)
    expect(pool('6.6').mapSlots(0x1a34, 100, opts)).toBe(2); // 100 + 0xa34 = 2712
    expect(pool('6.1').mapSlots(0x1a34, 100, opts)).toBe(1); // 100 + 0x234 = 664
  });

  it('6.6 and 6.1 search alloc_size + offset, 6.10 ALIGN(mapping_size + offset, alloc_align_mask + 1)', () => {
    // orig 0, 100 bytes, alloc_align_mask 8191: 6.10 searches 8192 bytes (4 slots),
    // 6.6 and 6.1 100 bytes (1 slot). Each starts 8 KiB aligned (slot 0), so the next
    // 1-slot map goes to the cursor: slot 4 (0x2000) on 6.10, slot 1 (0x800) on 6.6/6.1.
    for (const [kernel, slots, next] of [
      ['6.10', 4, 0x2000],
      ['6.6', 1, 0x800],
      ['6.1', 1, 0x800],
    ] as const) {
      const p = pool(kernel);
      expect(p.map(0, 100, D.TO_DEVICE, { allocAlignMask: 8191 }), kernel).toBe(0);
      expect(p.used(), kernel).toBe(slots);
      expect(p.map(0x10000, 2048, D.TO_DEVICE), kernel).toBe(next);
    }
  });

  it('6.1 and 6.6 take the separate alloc_size of dma-iommu (iova_align(size)); 6.10 has none', () => {
    // alloc_size 4096 for a 100-byte map at 0x1a34 (min 4095, alloc 4095): 6.6 searches
    // 4096 + 0xa34 = 6708 bytes = 4 slots, 6.1 4096 + 0x234 = 4660 = 3 slots.
    const opts = { minAlignMask: 4095, allocAlignMask: 4095, allocSize: 4096 };
    const six = pool('6.6');
    expect(six.map(0x1a34, 100, D.TO_DEVICE, opts)).toBe(0xa34);
    expect(six.used()).toBe(4);
    const one = pool('6.1');
    expect(one.map(0x1a34, 100, D.TO_DEVICE, opts)).toBe(0x234);
    expect(one.used()).toBe(3);
    expect(error(() => pool('6.10').map(0x1a34, 100, D.TO_DEVICE, opts)).code).toBe(
      'SWIOTLB_INVALID_ARGUMENT',
    );
    // "Invalid sizes (mapping: %zd bytes, alloc: %zd bytes)"
    expect(error(() => six.map(0, 5000, D.TO_DEVICE, { allocSize: 4096 })).message).toBe(
      'Invalid sizes (mapping: 5000 bytes, alloc: 4096 bytes)',
    );
  });

  it('prints the size the version prints when full: 6.10 the aligned size with the offset, 6.1/6.6 alloc_size', () => {
    for (const [kernel, sz] of [
      ['6.10', 100 + 0x234],
      ['6.6', 100],
      ['6.1', 100],
    ] as const) {
      const p = pool(kernel, 128);
      p.map(0x10_0000, 128 * 2048, D.TO_DEVICE);
      expect(error(() => p.map(0x1234, 100, D.TO_DEVICE, { minAlignMask: 4095 })).message).toBe(
        `swiotlb buffer is full (sz: ${sz} bytes), total 128 (slots), used 128 (slots)`,
      );
    }
  });
});

describe('page alignment of mappings of PAGE_SIZE or more', () => {
  it('6.6/6.10 align the address, 6.1 only the slot index (a pool at 0x800)', () => {
    // base 0x800: slot s is at 0x800 + s * 0x800, 4 KiB aligned when s is odd.
    // 6.6/6.10: alloc_align_mask = PAGE_SIZE - 1, each slot's address is checked: slot 1.
    // 6.1: stride 2 from ALIGN(0, 2) = 0, addresses never checked: slot 0 at 0x800.
    expect(pool('6.10', 256, 0x800).map(0x40_0000, 4096, D.TO_DEVICE)).toBe(0x1000);
    expect(pool('6.6', 256, 0x800).map(0x40_0000, 4096, D.TO_DEVICE)).toBe(0x1000);
    expect(pool('6.1', 256, 0x800).map(0x40_0000, 4096, D.TO_DEVICE)).toBe(0x800);
  });

  it('6.1 doubles the min_align_mask stride for a page or more, and starts at ALIGN(index, stride)', () => {
    // min 4095 (NVMe): iotlb_align_mask 0x800, stride 2; 4660 bytes >= PAGE_SIZE: stride 4.
    // Cursor at 1 (one 1-slot map): 6.1 starts at ALIGN(1, 4) = 4, needs bit 11 set:
    // 4 no, 5 yes -> 0x2800 + 0x234. 6.10 starts at 1 (bit 11 set): 0x800 + 0x234.
    const run = (kernel: KernelVersion): number => {
      const p = pool(kernel);
      p.map(0x10_0000, 2048, D.TO_DEVICE);
      return p.map(0x1a34, 4096, D.TO_DEVICE, { minAlignMask: 4095 });
    };
    expect(run('6.1')).toBe(0x2a34);
    expect(run('6.6')).toBe(0xa34);
    expect(run('6.10')).toBe(0xa34);
  });

  it("6.1's ALIGN(area->index, stride) is bit arithmetic, also for a stride that is not a power of two", () => {
    // min_align_mask 0x1fff, alloc_align_mask 0xfff (an IOMMU's 4 KiB granule):
    // iotlb_align_mask = 0x1fff & ~0xfff = 0x1000, stride (0x1000 >> 11) + 1 = 3,
    // doubled for a page or more: 6. ALIGN(1, 6) = (1 + 5) & ~5 = 2, not 6. From 2:
    // slots 2 and 3 have bit 12 set (the original's is clear), slot 4 (0x2000) fits.
    // Rounding up to a multiple of 6 would start at 6 and take slot 8 (0x4000).
    const p = pool('6.1');
    p.map(0x10_0000, 2048, D.TO_DEVICE); // cursor 0 -> 1
    expect(
      p.map(0x2_0000, 4096, D.TO_DEVICE, { minAlignMask: 0x1fff, allocAlignMask: 0xfff }),
    ).toBe(0x2000);
  });
});

describe("6.1's search that never ends (no 7c3940bf81e5)", () => {
  /**
   * One segment, 128 slots: every odd slot mapped (128 one-slot maps, then the even
   * ones unmapped). An NVMe request whose original has bit 11 set needs an odd slot
   * with 3 free slots: there is none.
   */
  function oddSlotsTaken(kernel: KernelVersion, extra: boolean): SwiotlbPool {
    const p = SwiotlbPool.create({ restricted: true, size: 128 * 2048, kernel, area: 0 });
    const tlbs: number[] = [];
    for (let i = 0; i < 128; i++) tlbs.push(p.map(0x100_0000 + i * 2048, 2048, D.TO_DEVICE));
    for (let i = 0; i < 128; i += 2) p.unmap(tlbs[i]!, 2048, D.TO_DEVICE);
    if (extra) expect(p.map(0x200_0000, 2048, D.TO_DEVICE)).toBe(0); // cursor 0 -> 1
    return p;
  }
  const nvme = { minAlignMask: 4095 };

  it('spins for ever when the walk starts past 0: answered as SWIOTLB_KERNEL_WOULD_HANG', () => {
    // wrap = ALIGN(1, 4) = 4; 4 is even (bit 11 clear) -> 5 (used) -> 9 ... 125 -> 129
    // wraps to 0 -> 1 -> 5 ...: the walk never meets 4 again.
    const p = oddSlotsTaken('6.1', true);
    const e = error(() => p.map(0x1a34, 4096, D.TO_DEVICE, nvme));
    expect(e.code).toBe('SWIOTLB_KERNEL_WOULD_HANG');
    expect(e.message).toContain('swiotlb_do_find_slots()');
    expect(p.stats().map_failures).toMatchObject({ kernel_defect: 1, full: 0 });
    expect(p.used()).toBe(65); // nothing taken
    // The pool goes on working: a request that fits is placed.
    expect(p.map(0x300_0000, 2048, D.TO_DEVICE)).toBe(2 * 2048);
  });

  it('gives up when the walk starts at 0 (it comes back to wrap), as "buffer is full"', () => {
    const p = oddSlotsTaken('6.1', false);
    expect(error(() => p.map(0x1a34, 4096, D.TO_DEVICE, nvme)).code).toBe('SWIOTLB_POOL_FULL');
  });

  it('is "buffer is full" on 6.6 and 6.10 in the same state', () => {
    for (const kernel of ['6.6', '6.10'] as const) {
      const p = oddSlotsTaken(kernel, true);
      expect(error(() => p.map(0x1a34, 4096, D.TO_DEVICE, nvme)).code, kernel).toBe(
        'SWIOTLB_POOL_FULL',
      );
    }
  });
});

describe('a partial last segment (restricted pool of 200 slots)', () => {
  it("6.1's list[] counts the missing slots as free: a run past the end is SWIOTLB_KERNEL_OVERRUN", () => {
    const make = (kernel: KernelVersion): SwiotlbPool => {
      const p = SwiotlbPool.create({ restricted: true, size: 200 * 2048, kernel, area: 0 });
      p.map(0x10_0000, 100 * 2048, D.TO_DEVICE); // slots 0-99, 100 slots left
      return p;
    };
    // From slot 100 (stride 2): slot 128 shows 72 real + 56 missing = 128 free slots
    // to 6.1, so a 73-slot run "fits" there and would end 1 slot past the pool.
    expect(error(() => make('6.1').map(0x20_0000, 73 * 2048, D.TO_DEVICE)).code).toBe(
      'SWIOTLB_KERNEL_OVERRUN',
    );
    expect(make('6.1').map(0x20_0000, 72 * 2048, D.TO_DEVICE)).toBe(128 * 2048);
    for (const kernel of ['6.6', '6.10'] as const) {
      expect(error(() => make(kernel).map(0x20_0000, 73 * 2048, D.TO_DEVICE)).code).toBe(
        'SWIOTLB_POOL_FULL',
      );
    }
  });
});

describe('coherent allocations (dma_alloc_coherent -> swiotlb_alloc / swiotlb_free)', () => {
  it('a 6784-byte ring: 6.6/6.10 align to its order (8 KiB), 6.1 to a page', () => {
    // PAGE_ALIGN(6784) = 8192, get_order = 1: align = 8191 on 6.6/6.10; 6.1 passes 0
    // (stride 2 for >= PAGE_SIZE). Cursor at 1: 6.10 checks 1, 2, 3, 4 (0x2000) -> slots
    // 4-7; 6.1 starts at ALIGN(1, 2) = 2 -> slots 2-5 at 0x1000.
    for (const [kernel, addr] of [
      ['6.10', 0x2000],
      ['6.6', 0x2000],
      ['6.1', 0x1000],
    ] as const) {
      const p = pool(kernel);
      p.map(0x10_0000, 2048, D.TO_DEVICE);
      expect(p.alloc(6784), kernel).toBe(addr);
      expect(p.used(), kernel).toBe(5);
      expect(p.allocSlots(6784)).toBe(4);
      p.free(addr, 6784);
      expect(p.used(), kernel).toBe(1);
    }
  });

  it('keeps allocations apart from mappings: no unmap or sync of one, no free of a mapping', () => {
    const p = pool('6.10');
    const ring = p.alloc(4096, { owner: 5 });
    const map = p.map(0x1000, 100, D.TO_DEVICE);
    expect(error(() => p.unmap(ring, 4096, D.BIDIRECTIONAL, 0, 5)).code).toBe('SWIOTLB_NOT_MAPPED');
    expect(error(() => p.syncForCpu(ring, 16, D.BIDIRECTIONAL, 5)).code).toBe('SWIOTLB_NOT_MAPPED');
    expect(error(() => p.free(map, 100)).code).toBe('SWIOTLB_NOT_MAPPED');
    expect(error(() => p.free(ring, 4096)).code).toBe('SWIOTLB_NOT_MAPPED'); // owner 0
    expect(error(() => p.free(ring, 8192, 5)).code).toBe('SWIOTLB_INVALID_ARGUMENT');
    p.free(ring, 4000, 5); // PAGE_ALIGN(4000) = the 4096 allocated
    expect(error(() => p.free(ring, 4096, 5)).code).toBe('SWIOTLB_NOT_MAPPED');
  });

  it('fails without a log line of the kernel, and refuses more than a segment', () => {
    const p = pool('6.10', 128);
    p.map(0x10_0000, 127 * 2048, D.TO_DEVICE);
    expect(p.tryAlloc(4096)).toBe(-1);
    expect(error(() => p.alloc(4096)).message).toBe(
      'swiotlb_alloc() found no free run of 2 slots aligned to 4096 bytes for a coherent allocation of 4096 bytes, total 128 (slots), used 127 (slots)',
    );
    expect(error(() => p.alloc(256 * 1024 + 1)).code).toBe('SWIOTLB_MAPPING_TOO_LARGE');
  });

  it('6.1 in a pool that is not page aligned would hand out the page before its slots', () => {
    expect(error(() => pool('6.1', 256, 0x800).alloc(4096)).code).toBe('SWIOTLB_KERNEL_OVERRUN');
    expect(pool('6.10', 256, 0x800).alloc(4096)).toBe(0x1000);
  });
});

describe('where the profiles agree', () => {
  it('6.6 and 6.10 place every dma-direct map alike (alloc_align_mask 0): property', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            orig: fc.nat({ max: 2 ** 32 }),
            size: fc.integer({ min: 1, max: 65536 }),
            min: fc.constantFrom(0, 511, 2047, 4095),
            unmap: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (ops) => {
          const six = pool('6.6', 512);
          const ten = pool('6.10', 512);
          const live: number[] = [];
          for (const op of ops) {
            const opts = { minAlignMask: op.min };
            const a = six.tryAllocate(op.orig, op.size, D.TO_DEVICE, opts);
            const b = ten.tryAllocate(op.orig, op.size, D.TO_DEVICE, opts);
            expect(a).toBe(b);
            if (a >= 0) live.push(a);
            if (op.unmap && live.length > 0) {
              const t = live.shift()!;
              six.release(t, 1, D.TO_DEVICE);
              ten.release(t, 1, D.TO_DEVICE);
            }
          }
          expect(six.stats().areas).toEqual(ten.stats().areas);
        },
      ),
      { numRuns: 100, seed: 0x66_10 },
    );
  });

  it('all three place maps without masks and of less than a page alike', () => {
    const places = KERNEL_VERSIONS.map((kernel) => {
      const p = pool(kernel);
      return [100, 2048, 3000, 4095].map((size, i) => p.map(i * 0x10000, size, D.TO_DEVICE));
    });
    expect(places[0]).toEqual(places[2]);
    expect(places[1]).toEqual(places[2]);
  });

  it('all three have the same max mapping size (swiotlb_max_mapping_size())', () => {
    for (const kernel of KERNEL_VERSIONS) {
      expect(pool(kernel).maxMappingSize(4095)).toBe(262144 - 4096);
      expect(pool(kernel).maxMappingSize(0)).toBe(262144);
    }
  });
});
