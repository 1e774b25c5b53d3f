/**
 * Maps larger than swiotlb_max_mapping_size(): the kernel searches for them like
 * any other map. Neither swiotlb_map() nor swiotlb_tbl_map_single() compares a
 * size with swiotlb_max_mapping_size() (kernel/dma/swiotlb.c, 6.1.192 and
 * 6.12.117): that limit reaches drivers as dma_max_mapping_size() advice. The one
 * size no search can place is more than a segment (nslots > IO_TLB_SEGSIZE: no
 * list[] is above 128; the dynamic swiotlb_find_slots() of 6.12.117 returns -1
 * for alloc_size > IO_TLB_SEGSIZE * IO_TLB_SIZE). Every placement below is worked
 * by hand from each version's source.
 */
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { DynamicPool } from '../src/swiotlb/dynamic.js';
import { KERNEL_VERSIONS, type KernelVersion, kernelCode } from '../src/swiotlb/kernel.js';
import { MapPlan, planMap } from '../src/swiotlb/plan.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { caught } from './helpers/caught.js';

const NVME = { minAlignMask: 4095 };

function pool(kernel: KernelVersion, base = 0): SwiotlbPool {
  return SwiotlbPool.create({ slots: 1024, areas: 1, base, kernel, area: 0 });
}

const error = caught;

function plan(kernel: KernelVersion, orig: number, size: number, minAlignMask: number): MapPlan {
  const p = new MapPlan();
  planMap(kernelCode(kernel), p, orig, size, minAlignMask, 0, size);
  return p;
}

describe('maps above swiotlb_max_mapping_size() are searched for, as the kernel does', () => {
  it('the max mapping size with min_align_mask 4095 is 258048: advice, not a limit of the map', () => {
    expect(pool('6.10').maxMappingSize(4095)).toBe(258048);
  });

  it('orig 0x200000, 256 KiB, min_align_mask 4095: slot 0 in every profile', () => {
    // offset = 0x200000 & 4095 & 2047 = 0 (6.1's swiotlb_align_offset(); 6.6/6.10 add
    // alloc_align_mask 0 to the last mask: the same), search 262144 bytes = 128 slots.
    // iotlb_align_mask = 4095 & ~2047 = 0x800; the original's bit 11 is clear.
    // 6.10/6.6 (swiotlb_search_pool_area()): no default page alignment (a min_align_mask
    // is set), stride = get_max_slots(max(2047, 0x800)) = 2; from index 0: slot 0's
    // address 0 has bit 11 clear, list[0] = 128 >= 128: found.
    // 6.1 (swiotlb_do_find_slots()): stride = (0x800 >> 11) + 1 = 2, doubled to 4 since
    // alloc_size >= PAGE_SIZE, max with (2047 >> 11) + 1 = 1: 4; index = wrap =
    // ALIGN(0, 4) = 0; slot 0 matches bit 11, list[0] = 128: found.
    expect(plan('6.1', 0x200000, 262144, 4095).stride).toBe(4);
    expect(plan('6.6', 0x200000, 262144, 4095).stride).toBe(2);
    expect(plan('6.10', 0x200000, 262144, 4095).stride).toBe(2);
    for (const kernel of KERNEL_VERSIONS) {
      const p = pool(kernel);
      expect(p.map(0x200000, 262144, D.TO_DEVICE, NVME), kernel).toBe(0);
      expect(p.used(), kernel).toBe(128);
      expect(p.stats().areas[0]!.index, kernel).toBe(128);
      expect(p.stats().map_failures.too_large, kernel).toBe(0);
    }
  });

  it('orig 0x200800, 260000 bytes, min_align_mask 4095: slot 1 in every profile', () => {
    // offset = 0x800 & 2047 = 0; 260000 bytes = 127 slots (126 * 2048 = 258048 < 260000).
    // Bit 11 of the original is set, so the slot's address must have it: odd slots.
    // 6.10/6.6: slot 0 fails the bit-11 check -> index 1; list[1] = 127 >= 127: found.
    // 6.1: wrap = 0, stride 4 (as above); slot 0 mismatches -> index 1 (the do-while
    // goes on: 1 != wrap); slot 1 matches, list[1] = 127: found.
    for (const kernel of KERNEL_VERSIONS) {
      const p = pool(kernel);
      expect(p.map(0x200800, 260000, D.TO_DEVICE, NVME), kernel).toBe(0x800);
      expect(p.used(), kernel).toBe(127);
      expect(p.stats().areas[0]!.index, kernel).toBe(128);
    }
  });

  it("6.1's index-aligned start skips the run at the cursor that 6.6 and 6.10 take", () => {
    // 256 KiB at slot 0 (cursor 128), then one slot at 128 (stride 1 everywhere: no mask,
    // 2048 < PAGE_SIZE; cursor 129). Segment 1 has slots 129-255 free: list[129] = 127.
    // The 127-slot map with bit 11 set:
    // 6.10/6.6: index = 129, slot 129 (0x40800) has bit 11, list 127: found.
    // 6.1: index = wrap = ALIGN(129, 4) = 132; 132 mismatches -> 133, list[133] = 123 <
    // 127 -> 137 ... 253 (list 3) -> 257: bit 11 set, list[257] = 384 - 257 = 127:
    // found at slot 257 (0x80800). Slot 129 is never a candidate of this walk.
    const expected = { '6.1': 257 * 2048, '6.6': 129 * 2048, '6.10': 129 * 2048 } as const;
    for (const kernel of KERNEL_VERSIONS) {
      const p = pool(kernel);
      expect(p.map(0x200000, 262144, D.TO_DEVICE, NVME), kernel).toBe(0);
      expect(p.map(0x300000, 2048, D.TO_DEVICE), kernel).toBe(128 * 2048);
      expect(p.stats().areas[0]!.index, kernel).toBe(129);
      expect(p.map(0x200800, 260000, D.TO_DEVICE, NVME), kernel).toBe(expected[kernel]);
    }
  });

  it('a pool whose base has bit 11 set places the 128-slot map with bit 11 set at slot 0', () => {
    // base 0x800: slot 0's address 0x800 matches the original's bit 11, list[0] = 128.
    for (const kernel of KERNEL_VERSIONS) {
      expect(pool(kernel, 0x800).map(0x200800, 262144, D.TO_DEVICE, NVME), kernel).toBe(0x800);
    }
  });

  it('a 128-slot map whose bit 11 no segment start matches is "buffer is full", as in the kernel', () => {
    // Only slot 0 of a segment has list 128, and its address (page aligned pool) has
    // bit 11 clear; every odd slot has list <= 127. The kernel's search fails.
    for (const kernel of KERNEL_VERSIONS) {
      const p = pool(kernel);
      const e = error(() => p.map(0x200800, 262144, D.TO_DEVICE, NVME));
      expect(e, kernel).toEqual({
        code: 'SWIOTLB_POOL_FULL',
        message: 'swiotlb buffer is full (sz: 262144 bytes), total 1024 (slots), used 0 (slots)',
      });
    }
  });

  it('the grown pool model (6.10) places them too', () => {
    const d = new DynamicPool({ slots: 1024, areas: 1, kernel: '6.10' });
    expect(d.map(0x200000, 262144, D.TO_DEVICE, NVME)).toBe(0);
    expect(d.map(0x200800, 260000, D.TO_DEVICE, NVME)).toBe(129 * 2048);
    expect(d.stats()).toMatchObject({ growths: 0, transient_nslabs: 0, used: 255 });
  });
});

describe('a search for more than one segment is refused: no list[] reaches 129', () => {
  it('129 slots: SWIOTLB_MAPPING_TOO_LARGE, with the line the kernel logs', () => {
    for (const kernel of KERNEL_VERSIONS) {
      const p = pool(kernel);
      const e = error(() => p.map(0x200000, 262145, D.TO_DEVICE, NVME));
      expect(e.code, kernel).toBe('SWIOTLB_MAPPING_TOO_LARGE');
      expect(e.message, kernel).toContain('129 slots');
      expect(e.message, kernel).toContain('swiotlb buffer is full (sz: 262145 bytes)');
      expect(p.used(), kernel).toBe(0);
      expect(p.stats().map_failures, kernel).toMatchObject({ too_large: 1, full: 0 });
    }
  });

  it('the kept offset counts: 6.10 prints the searched size, 6.1 and 6.6 the alloc_size', () => {
    // orig 0x200100: offset = 0x100 in every profile, so 262144 - 0x100 bytes search
    // exactly 262144 (128 slots, slot 0: bit 11 clear) and one byte more 262145.
    const size = 262144 - 0x100;
    for (const kernel of KERNEL_VERSIONS) {
      expect(pool(kernel).map(0x200100, size, D.TO_DEVICE, NVME), kernel).toBe(0x100);
      const e = error(() => pool(kernel).map(0x200100, size + 1, D.TO_DEVICE, NVME));
      expect(e.code, kernel).toBe('SWIOTLB_MAPPING_TOO_LARGE');
      // "swiotlb buffer is full (sz: %zd bytes)": 6.12.117 prints size =
      // ALIGN(mapping_size + offset, alloc_align_mask + 1); 6.1.192 prints alloc_size.
      const sz = kernel === '6.10' ? 262145 : size + 1;
      expect(e.message, kernel).toContain(`swiotlb buffer is full (sz: ${sz} bytes)`);
    }
  });

  it('6.6 and 6.10 count a pad slot, 6.1 keeps no bit above 2 KiB and places what they refuse', () => {
    // orig 0x800, min_align_mask 4095, alloc_align_mask 4095 (dma-iommu), 260097 bytes.
    // 6.10/6.6: offset = 0x800 & 4095 & (4095 | 2047) = 0x800: one pad slot, search
    // 262145 bytes (6.10: ALIGN(262145, 4096) = 266240) -> more than a segment.
    // 6.1: offset = 0x800 & 4095 & 2047 = 0, search 260097 bytes = 128 slots;
    // iotlb_align_mask = 4095 & ~4095 = 0, stride max(1 -> 2 (page), (4095 >> 11) + 1 = 2)
    // = 2; wrap = 0, list[0] = 128: slot 0, tlb 0.
    const opts = { minAlignMask: 4095, allocAlignMask: 4095 };
    expect(error(() => pool('6.10').map(0x800, 260097, D.TO_DEVICE, opts)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    expect(error(() => pool('6.6').map(0x800, 260097, D.TO_DEVICE, opts)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    expect(pool('6.1').map(0x800, 260097, D.TO_DEVICE, opts)).toBe(0);
    // One byte less fits all three: 6.10/6.6 at slot 0 after the pad slot.
    expect(pool('6.10').map(0x800, 260096, D.TO_DEVICE, opts)).toBe(0x800);
    expect(pool('6.6').map(0x800, 260096, D.TO_DEVICE, opts)).toBe(0x800);
  });

  it('6.1 walks its area first: from cursor 1 it would spin, from cursor 0 the search fails', () => {
    // 129 slots (264192 bytes), bit 11 set, min_align_mask 4095: stride 4.
    // Cursor 1 (one slot at 0): wrap = ALIGN(1, 4) = 4; 4 mismatches -> 5, 9, ... 1021
    // (lists < 129) -> 1025 wraps to 0 -> mismatch -> 1, 5, ...: never 4 again.
    const hung = pool('6.1');
    expect(hung.map(0x300000, 2048, D.TO_DEVICE)).toBe(0);
    const e = error(() => hung.map(0x200800, 264192, D.TO_DEVICE, NVME));
    expect(e.code).toBe('SWIOTLB_KERNEL_WOULD_HANG');
    expect(hung.stats().map_failures).toMatchObject({ kernel_defect: 1, too_large: 0 });
    expect(hung.used()).toBe(1);
    // Cursor 0: wrap = 0; 0 mismatches -> 1, 5, ... 1021 -> 0 = wrap: the loop ends.
    expect(error(() => pool('6.1').map(0x200800, 264192, D.TO_DEVICE, NVME)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    // 6.6 and 6.10 end every walk: too large from either cursor.
    for (const kernel of ['6.6', '6.10'] as const) {
      const p = pool(kernel);
      p.map(0x300000, 2048, D.TO_DEVICE);
      expect(error(() => p.map(0x200800, 264192, D.TO_DEVICE, NVME)).code, kernel).toBe(
        'SWIOTLB_MAPPING_TOO_LARGE',
      );
    }
  });

  it('the grown pool model refuses it at once: no transient pool, no growth (6.12.117)', () => {
    // swiotlb_find_slots(): if (alloc_size > IO_TLB_SEGSIZE * IO_TLB_SIZE) return -1;
    // before any search, schedule_work() or swiotlb_alloc_pool().
    const d = new DynamicPool({ slots: 1024, areas: 1, kernel: '6.10' });
    expect(error(() => d.map(0x200000, 262145, D.TO_DEVICE, NVME)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    expect(d.stats()).toMatchObject({
      growths: 0,
      pending_growth: false,
      transient_nslabs: 0,
      used: 0,
    });
  });
});
