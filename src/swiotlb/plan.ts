import { IO_TLB_SHIFT, IO_TLB_SIZE, PAGE_SIZE } from './constants.js';
import { K6_1, K6_10, type KernelCode } from './kernel.js';

/**
 * What one kernel version derives from one request before it searches: the size
 * it searches for, the masks and stride of the search, and where the bounce
 * address sits in the allocation.
 *
 *   allocation:  [ pad slots ][ head slot ........................ ]
 *                ^ first slot  ^ head = first + padSlots
 *                              |<-headOffset->| bounce address (tlb_addr)
 *
 * Rules (all versions): nslots = ceil(searchSize / 2 KiB); headOffset < 2 KiB;
 * the first slot's alloc_size is searchSize - headOffset, from which the release
 * takes nslots again (swiotlb_release_slots()).
 *
 * A plan is a scratch object, filled in place: a pool handle keeps one, so a map
 * allocates nothing.
 */
export class MapPlan {
  /** The alloc_size swiotlb_find_slots() is given (bytes, padding included). */
  searchSize = 0;
  nslots = 0;
  /** Alignment the first slot's address must have (6.6/6.10: checked per slot). */
  allocAlignMask = 0;
  /** Address bits of a slot that must equal the original's (when orig_addr != 0). */
  iotlbAlignMask = 0;
  /** Slots the search steps over after an aligned candidate. */
  stride = 1;
  /** Whole slots of padding before the head (6.6/6.10 pad_slots; 6.1: always 0). */
  padSlots = 0;
  /** tlb_addr & 2047. */
  headOffset = 0;
  /** The "sz" of "swiotlb buffer is full (sz: %zd bytes)". */
  fullSize = 0;
  /**
   * 6.1's search: start at ALIGN(area->index, stride), loop while index != wrap,
   * never check a slot's address against allocAlignMask.
   */
  wrapSearch = false;
}

/** addr & mask for a (up to 53-bit) address and a mask below 2^32: `&` takes the value modulo 2^32 (ToInt32), no floating-point `%` needed. */
export function maskLow(addr: number, mask: number): number {
  return (addr & mask) >>> 0;
}

/** nr_slots(): DIV_ROUND_UP(bytes, IO_TLB_SIZE). */
export function nrSlots(bytes: number): number {
  // A huge alloc_align_mask can make an allocation size above 2^31: no shift then.
  return bytes < 0x4000_0000
    ? (bytes + IO_TLB_SIZE - 1) >>> IO_TLB_SHIFT
    : Math.ceil(bytes / IO_TLB_SIZE);
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * The masks and stride of swiotlb_search_pool_area() (6.10, and 6.6 from 6.6.35):
 * a default page alignment for streaming maps of PAGE_SIZE or more with no mask,
 * slot alignment always, and iotlb_align_mask without the bits the offset keeps.
 */
function searchMasks610(p: MapPlan, allocAlignMask: number, minAlignMask: number): void {
  let align = allocAlignMask;
  if (!align && !minAlignMask && p.searchSize >= PAGE_SIZE) align = PAGE_SIZE - 1;
  align = (align | (IO_TLB_SIZE - 1)) >>> 0;
  p.allocAlignMask = align;
  p.iotlbAlignMask = (minAlignMask & ~align) >>> 0;
  p.stride = (Math.max(align, p.iotlbAlignMask) >>> IO_TLB_SHIFT) + 1;
  p.wrapSearch = false;
}

/** The masks and stride of 6.1.y's swiotlb_do_find_slots(). */
function searchMasks61(p: MapPlan, allocAlignMask: number, minAlignMask: number): void {
  const align = (allocAlignMask | (IO_TLB_SIZE - 1)) >>> 0;
  const iotlb = (minAlignMask & ~align) >>> 0;
  let stride = (iotlb >>> IO_TLB_SHIFT) + 1;
  // "For allocations of PAGE_SIZE or larger only look for page aligned allocations."
  if (p.searchSize >= PAGE_SIZE) stride = Math.max(stride, stride * (PAGE_SIZE / IO_TLB_SIZE));
  p.stride = Math.max(stride, (align >>> IO_TLB_SHIFT) + 1);
  p.allocAlignMask = align;
  p.iotlbAlignMask = iotlb;
  p.wrapSearch = true;
}

/**
 * swiotlb_tbl_map_single() up to its call of swiotlb_find_slots(), per version:
 *
 *   6.10: offset = orig & min_align_mask & (alloc_align_mask | 2047)
 *         size   = ALIGN(mapping_size + offset, alloc_align_mask + 1)   (printed when full)
 *   6.6:  offset as 6.10; size = alloc_size + offset (alloc_size printed when full)
 *   6.1:  offset = orig & min_align_mask & 2047; size = alloc_size + offset
 *
 * `allocSize` is the separate alloc_size argument that 6.1 and 6.6 take
 * (dma-direct passes the mapping size; dma-iommu iova_align(size)); 6.10 has none.
 */
export function planMap(
  k: KernelCode,
  p: MapPlan,
  origAddr: number,
  size: number,
  minAlignMask: number,
  allocAlignMask: number,
  allocSize: number,
): void {
  if (k === K6_10) planMap610(p, origAddr, size, minAlignMask, allocAlignMask);
  else planMapAllocSize(k, p, origAddr, minAlignMask, allocAlignMask, allocSize);
}

/** 6.10: the hot path, kept small so that it inlines into the pool's map. */
export function planMap610(
  p: MapPlan,
  origAddr: number,
  size: number,
  minAlignMask: number,
  allocAlignMask: number,
): void {
  const offset = maskLow(origAddr, minAlignMask) & (allocAlignMask | (IO_TLB_SIZE - 1));
  const searchSize =
    allocAlignMask === 0 ? size + offset : alignUp(size + offset, allocAlignMask + 1);
  p.searchSize = searchSize;
  p.fullSize = searchSize;
  p.padSlots = offset >>> IO_TLB_SHIFT;
  p.headOffset = offset & (IO_TLB_SIZE - 1);
  p.nslots = nrSlots(searchSize);
  searchMasks610(p, allocAlignMask, minAlignMask);
}

/** 6.1 and 6.6: the search is for alloc_size + offset. */
export function planMapAllocSize(
  k: KernelCode,
  p: MapPlan,
  origAddr: number,
  minAlignMask: number,
  allocAlignMask: number,
  allocSize: number,
): void {
  if (k === K6_1) {
    const offset = maskLow(origAddr, minAlignMask) & (IO_TLB_SIZE - 1);
    p.searchSize = allocSize + offset;
    p.padSlots = 0;
    p.headOffset = offset;
    searchMasks61(p, allocAlignMask, minAlignMask);
  } else {
    const offset = maskLow(origAddr, minAlignMask) & (allocAlignMask | (IO_TLB_SIZE - 1));
    p.searchSize = allocSize + offset;
    p.padSlots = offset >>> IO_TLB_SHIFT;
    p.headOffset = offset & (IO_TLB_SIZE - 1);
    searchMasks610(p, allocAlignMask, minAlignMask);
  }
  p.fullSize = allocSize;
  p.nslots = nrSlots(p.searchSize);
}

/** get_order(): the smallest order with PAGE_SIZE << order >= bytes. */
export function getOrder(bytes: number): number {
  let order = 0;
  while (PAGE_SIZE * 2 ** order < bytes) order++;
  return order;
}

/**
 * dma_direct_alloc() -> swiotlb_alloc() -> swiotlb_find_slots(dev, 0, size, align):
 * the size is PAGE_ALIGN()ed first (dma_direct_alloc()); then
 *
 *   6.6, 6.10: align = (1 << (get_order(size) + PAGE_SHIFT)) - 1  (the allocation's order)
 *   6.1:       align = 0  (so only 6.1's page stride for sizes >= PAGE_SIZE)
 *
 * orig_addr is 0: no iotlb_align_mask check, no offset, no padding.
 */
export function planAlloc(k: KernelCode, p: MapPlan, size: number, minAlignMask: number): void {
  p.searchSize = alignUp(size, PAGE_SIZE);
  p.fullSize = p.searchSize;
  p.padSlots = 0;
  p.headOffset = 0;
  if (k === K6_1) {
    searchMasks61(p, 0, minAlignMask);
  } else {
    searchMasks610(p, PAGE_SIZE * 2 ** getOrder(p.searchSize) - 1, minAlignMask);
  }
  p.nslots = nrSlots(p.searchSize);
}
