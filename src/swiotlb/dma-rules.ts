import {
  type CopyDirection,
  DmaAttr,
  DmaDirection,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
} from './constants.js';

/**
 * Which copies Linux's swiotlb does at each step (kernel/dma/swiotlb.c; which
 * steps copy, in which direction, is the same in 6.1.192 and 6.12.117, and here
 * in every kernel profile). The pool and the guest DMA API both ask these, so the
 * rules live in one place.
 *
 * - map: original -> bounce for EVERY direction. For FROM_DEVICE this is what
 *   keeps a device that writes less than the whole buffer from exposing stale
 *   pool bytes (another mapping's data) and from clobbering, on unmap, the guest
 *   bytes it did not write (swiotlb_tbl_map_single()).
 * - unmap: bounce -> original for FROM_DEVICE and BIDIRECTIONAL, unless
 *   DMA_ATTR_SKIP_CPU_SYNC (swiotlb_tbl_unmap_single()).
 * - sync_for_device: original -> bounce unless FROM_DEVICE.
 * - sync_for_cpu: bounce -> original unless TO_DEVICE.
 *
 * What a partial sync (dma_sync_single_range_for_*()) copies is 6.12.117's in
 * every profile, 6.1 included: every byte of the range, wherever in the mapping
 * it starts. 6.1.192's swiotlb_bounce() copies nothing for a range that starts in
 * the mapping's second or a later slot at an in-slot offset below the mapping's
 * own offset (orig_addr & min_align_mask & (IO_TLB_SIZE - 1): not 0 only with a
 * min_align_mask); it takes that slot's offset for the mapping's start,
 * `dev_WARN_ONCE(... "Access before mapping start detected ...")` and returns.
 * 6.9 fixed it ("swiotlb: Fix swiotlb_bounce() to do partial sync's correctly";
 * 6.12.117: "It's valid for tlb_offset to be negative"); whether 6.6.y took the
 * fix is not checked here. A range that runs past the mapping's end is an
 * error here (SWIOTLB_BUFFER_OVERFLOW); both kernels warn "Buffer overflow
 * detected" and copy what fits (`replay` reports that: replay-warnings.ts).
 */

/** The copy that map does: always to the device. */
export const MAP_COPY: CopyDirection = DmaDirection.TO_DEVICE;

export function unmapCopies(dir: DmaDirection, attrs: number): boolean {
  return (
    (attrs & DmaAttr.SKIP_CPU_SYNC) === 0 &&
    (dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL)
  );
}

export function syncForDeviceCopies(dir: DmaDirection): boolean {
  return dir === DmaDirection.TO_DEVICE || dir === DmaDirection.BIDIRECTIONAL;
}

export function syncForCpuCopies(dir: DmaDirection): boolean {
  return dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL;
}

/** {@link maxMappingSize} with no min_align_mask: one segment, 256 KiB. */
export const MAX_SEGMENT_BYTES = IO_TLB_SIZE * IO_TLB_SEGSIZE;

/**
 * The largest mapping a device with `minAlignMask` can get, as
 * swiotlb_max_mapping_size() (kernel/dma/swiotlb.c, 6.1.192 and 6.12.117) gives it: one
 * segment (IO_TLB_SEGSIZE slots of IO_TLB_SIZE, 256 KiB), less
 * roundup(min_align_mask, IO_TLB_SIZE) when the mask is not 0, because the slot
 * search skips slots to keep the low min_align_mask bits of the original address.
 */
export function maxMappingSize(minAlignMask = 0): number {
  const minAlign = minAlignMask ? Math.ceil(minAlignMask / IO_TLB_SIZE) * IO_TLB_SIZE : 0;
  return MAX_SEGMENT_BYTES - minAlign;
}
