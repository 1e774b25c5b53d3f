/**
 * The kernel's placement arithmetic and slot search, written out from each
 * version's kernel/dma/swiotlb.c independently of src/, for the property tests
 * (test/swiotlb.property.test.ts, test/swiotlb.warm.test.ts):
 *   6.10  swiotlb_tbl_map_single() + swiotlb_search_pool_area() (6.12.117);
 *   6.6   the same search, alloc_size + offset searched (6.6.y after 6.6.35);
 *   6.1   swiotlb_do_find_slots() of 6.1.192 (ALIGN(area->index, stride),
 *         do { } while (index != wrap), no pad_slots).
 */
import { IO_TLB_SHIFT, IO_TLB_SIZE, PAGE_SIZE } from '../../src/swiotlb/constants.js';
import type { Geometry } from '../../src/swiotlb/geometry.js';

const TWO_POW_32 = 2 ** 32;

/** addr & mask on the low 32 bits (masks here are below 2^31). */
export function low(addr: number, mask: number): number {
  return ((addr % TWO_POW_32) & mask) >>> 0;
}

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

export type Kernel = '6.1' | '6.6' | '6.10';

/** What swiotlb_tbl_map_single() + the search derive from one request. */
export interface Placement {
  /** Bytes from the allocation's start to the bounce address (pad slots included). */
  readonly offset: number;
  /** The size searched for (the first slot's alloc_size + headOffset). */
  readonly allocSize: number;
  /** The "sz" the kernel prints when full. */
  readonly fullSize: number;
  readonly nslots: number;
  readonly padSlots: number;
  /** tlb_addr & 2047. */
  readonly headOffset: number;
  /** The alignment the search demands of the allocation's first slot address (6.6/6.10). */
  readonly searchAlignMask: number;
  readonly iotlbAlignMask: number;
  readonly stride: number;
  /** 6.1: the search never checks addresses against searchAlignMask. */
  readonly indexAligned: boolean;
}

/** 6.10: ALIGN(mapping_size + offset, alloc_align_mask + 1); 6.6: alloc_size + offset. */
export function placement610(
  kernel: '6.6' | '6.10',
  orig: number,
  size: number,
  minAlignMask: number,
  allocAlignMask: number,
  allocSizeArg: number,
): Placement {
  const offset = low(orig, minAlignMask) & (allocAlignMask | (IO_TLB_SIZE - 1));
  const allocSize =
    kernel === '6.10' ? alignUp(size + offset, allocAlignMask + 1) : allocSizeArg + offset;
  let searchAlignMask = allocAlignMask;
  if (allocAlignMask === 0 && minAlignMask === 0 && allocSize >= PAGE_SIZE) {
    searchAlignMask = PAGE_SIZE - 1;
  }
  searchAlignMask |= IO_TLB_SIZE - 1;
  const iotlbAlignMask = minAlignMask & ~searchAlignMask;
  return {
    offset,
    allocSize,
    fullSize: kernel === '6.10' ? allocSize : allocSizeArg,
    nslots: Math.ceil(allocSize / IO_TLB_SIZE),
    padSlots: offset >> IO_TLB_SHIFT,
    headOffset: offset & (IO_TLB_SIZE - 1),
    searchAlignMask,
    iotlbAlignMask,
    stride: (Math.max(searchAlignMask, iotlbAlignMask) >> IO_TLB_SHIFT) + 1,
    indexAligned: false,
  };
}

/** 6.1.192: offset inside a slot only, stride doubled for >= PAGE_SIZE, then the alloc mask's. */
export function placement61(
  orig: number,
  minAlignMask: number,
  allocAlignMask: number,
  allocSizeArg: number,
): Placement {
  const offset = low(orig, minAlignMask) & (IO_TLB_SIZE - 1);
  const allocSize = allocSizeArg + offset;
  const align = allocAlignMask | (IO_TLB_SIZE - 1);
  const iotlbAlignMask = minAlignMask & ~align;
  let stride = (iotlbAlignMask >> IO_TLB_SHIFT) + 1;
  if (allocSize >= PAGE_SIZE) stride = Math.max(stride, stride << (12 - IO_TLB_SHIFT));
  stride = Math.max(stride, (align >> IO_TLB_SHIFT) + 1);
  return {
    offset,
    allocSize,
    fullSize: allocSizeArg,
    nslots: Math.ceil(allocSize / IO_TLB_SIZE),
    padSlots: 0,
    headOffset: offset,
    searchAlignMask: align,
    iotlbAlignMask,
    stride,
    indexAligned: true,
  };
}

export function placement(
  kernel: Kernel,
  orig: number,
  size: number,
  minAlignMask: number,
  allocAlignMask: number,
  allocSize = size,
): Placement {
  return kernel === '6.1'
    ? placement61(orig, minAlignMask, allocAlignMask, allocSize)
    : placement610(kernel, orig, size, minAlignMask, allocAlignMask, allocSize);
}

/** A slot whose address the search accepts as the first slot of this allocation. */
export function slotAcceptable(
  geometry: Geometry,
  slot: number,
  orig: number,
  p: Placement,
): boolean {
  const addr = geometry.base + slot * IO_TLB_SIZE;
  if (!p.indexAligned && low(addr, p.searchAlignMask) !== 0) return false;
  return orig === 0 || low(addr, p.iotlbAlignMask) === low(orig, p.iotlbAlignMask);
}

/** One area's search as the kernel starts it: the area, its used count and cursor, the request. */
export interface AreaSearch {
  area: number;
  used: number;
  cursor: number;
  orig: number;
  p: Placement;
}

/**
 * The first slot the kernel's search of one area takes, -1 when it finds none, or
 * 'hang' when 6.1's loop would never end. `freeRun(slot)` is the kernel's list[slot].
 */
export function refSearchArea(
  geometry: Geometry,
  freeRun: (slot: number) => number,
  s: AreaSearch,
): number | 'hang' {
  return s.p.indexAligned
    ? searchArea61(geometry, freeRun, s)
    : searchArea610(geometry, freeRun, s);
}

/** swiotlb_search_pool_area() (6.6 and 6.10). */
function searchArea610(
  geometry: Geometry,
  freeRun: (slot: number) => number,
  { area, used, cursor, orig, p }: AreaSearch,
): number {
  const n = geometry.areaNslabs;
  if (p.nslots > n - used) return -1;
  const wrap = (i: number): number => (i >= n ? 0 : i);
  let index = cursor;
  for (let checked = 0; checked < n; ) {
    const slot = area * n + index;
    if (!slotAcceptable(geometry, slot, orig, p)) {
      index = wrap(index + 1);
      checked += 1;
      continue;
    }
    if (freeRun(slot) >= p.nslots) return slot;
    index = wrap(index + p.stride);
    checked += p.stride;
  }
  return -1;
}

/**
 * 6.1's swiotlb_do_find_slots(): from ALIGN(area->index, stride), do { ... }
 * while (index != wrap). An index seen twice before `wrap` comes round again
 * means the loop never ends.
 */
function searchArea61(
  geometry: Geometry,
  freeRun: (slot: number) => number,
  { area, used, cursor, orig, p }: AreaSearch,
): number | 'hang' {
  const n = geometry.areaNslabs;
  if (p.nslots > n - used) return -1;
  const wrapIndex = (i: number): number => (i >= n ? 0 : i);
  // ALIGN(x, a) = (x + a - 1) & ~(a - 1) (include/uapi/linux/const.h), also for a stride
  // that is not a power of two.
  const start = wrapIndex(((cursor + p.stride - 1) & ~(p.stride - 1)) >>> 0);
  const seen = new Set<number>();
  let index = start;
  do {
    if (seen.has(index)) return 'hang';
    seen.add(index);
    const slot = area * n + index;
    if (!slotAcceptable(geometry, slot, orig, p)) {
      index = wrapIndex(index + 1);
      continue;
    }
    if (freeRun(slot) >= p.nslots) return slot;
    index = wrapIndex(index + p.stride);
  } while (index !== start);
  return -1;
}
