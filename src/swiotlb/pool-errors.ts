import { MediatorError } from '../errors.js';
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from './constants.js';
import type { MapPlan } from './plan.js';
import { OVERRUN, WOULD_HANG } from './search.js';

/**
 * The pool's errors, worded as the kernel words them where it does ("swiotlb
 * buffer is full", "Buffer overflow detected"), and as what the kernel would do
 * where it answers nothing (a 6.1 search that never ends).
 */

/** "swiotlb buffer is full (sz: %zd bytes), total %lu (slots), used %lu (slots)". */
export function poolFullError(allocSize: number, total: number, used: number): MediatorError {
  return new MediatorError(
    'SWIOTLB_POOL_FULL',
    `swiotlb buffer is full (sz: ${allocSize} bytes), total ${total} (slots), used ${used} (slots)`,
    { size: allocSize, total, used },
  );
}

/** A coherent allocation that found no room: swiotlb_alloc() returns NULL and logs nothing. */
export function allocFullError(p: MapPlan, total: number, used: number): MediatorError {
  return new MediatorError(
    'SWIOTLB_POOL_FULL',
    `swiotlb_alloc() found no free run of ${p.nslots} slots aligned to ${p.allocAlignMask + 1} bytes for a coherent allocation of ${p.searchSize} bytes, total ${total} (slots), used ${used} (slots)`,
    { size: p.searchSize, total, used },
  );
}

/** swiotlb_bounce()'s "Buffer overflow detected": more bytes than the mapping holds from there. */
export function overflowError(tlbAddr: number, size: number, available: number): MediatorError {
  return new MediatorError(
    'SWIOTLB_BUFFER_OVERFLOW',
    `Buffer overflow detected. Allocation size: ${available}. Mapping size: ${size}.`,
    { tlbAddr, size, available },
  );
}

/**
 * A streaming map whose search is for more than one segment: no list[] reaches
 * that many slots, so every kernel's search fails and swiotlb_tbl_map_single()
 * logs "swiotlb buffer is full (sz: %zd bytes), ..." (sz: the searched size in
 * 6.10, alloc_size in 6.1 and 6.6) unless DMA_ATTR_NO_WARN. Not a comparison with
 * swiotlb_max_mapping_size(), which the map path never makes.
 */
export function tooLargeError(size: number, p: MapPlan): MediatorError {
  const limit = IO_TLB_SEGSIZE * IO_TLB_SIZE;
  return new MediatorError(
    'SWIOTLB_MAPPING_TOO_LARGE',
    `mapping of ${size} bytes searches for ${p.searchSize} bytes (${p.nslots} slots, the kept offset and any alignment padding included), more than one ${IO_TLB_SEGSIZE}-slot segment (${limit} bytes): no pool of any size can place it; the kernel's search fails and it logs "swiotlb buffer is full (sz: ${p.fullSize} bytes)" (unless DMA_ATTR_NO_WARN)`,
    { size, limit, allocSize: p.searchSize, nslots: p.nslots },
  );
}

/** A coherent allocation above one segment (swiotlb_find_slots() can never place it). */
export function allocTooLargeError(size: number, p: MapPlan): MediatorError {
  return new MediatorError(
    'SWIOTLB_MAPPING_TOO_LARGE',
    `coherent allocation of ${size} bytes (${p.searchSize} once page aligned) exceeds one ${IO_TLB_SEGSIZE}-slot segment (262144 bytes)`,
    { size, allocSize: p.searchSize },
  );
}

/** 6.1's swiotlb_alloc() in a pool whose base is not page aligned. */
export function unalignedAllocError(base: number): MediatorError {
  return new MediatorError(
    'SWIOTLB_KERNEL_OVERRUN',
    `6.1's swiotlb_alloc() aligns slot indexes, not addresses: in a pool at 0x${base.toString(16)} (not page aligned) it would hand out the page that starts before its slots`,
    { base },
  );
}

/** What a search result of WOULD_HANG or OVERRUN (6.1, search.ts) means for this request. */
export function kernelDefectError(
  code: number,
  kernel: string,
  area: number,
  p: MapPlan,
  nslabs: number,
): MediatorError {
  if (code === WOULD_HANG) {
    return new MediatorError(
      'SWIOTLB_KERNEL_WOULD_HANG',
      `Linux ${kernel} would spin for ever in swiotlb_do_find_slots() on this request (area ${area}, holding its lock): from the area's cursor the search steps past every slot whose address bits match the original's (iotlb_align_mask 0x${p.iotlbAlignMask.toString(16)}, stride ${p.stride}) and never returns to where it started; fixed by 7c3940bf81e5 in 6.3`,
      { area, nslots: p.nslots, iotlbAlignMask: p.iotlbAlignMask, stride: p.stride },
    );
  }
  if (code === OVERRUN) {
    return new MediatorError(
      'SWIOTLB_KERNEL_OVERRUN',
      `Linux ${kernel} would place these ${p.nslots} slots partly past the end of the pool (${nslabs} slots): its list[] counts the missing slots of a partial last segment as free`,
      { area, nslots: p.nslots, nslabs },
    );
  }
  throw new Error(`search result ${code} is no kernel defect`);
}
