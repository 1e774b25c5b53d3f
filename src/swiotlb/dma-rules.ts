import { type CopyDirection, DmaAttr, DmaDirection } from './constants.js';

/**
 * Which copies Linux's swiotlb does at each step (kernel/dma/swiotlb.c, 6.6-6.10).
 * The pool and the guest DMA API both ask these, so the rules live in one place.
 *
 * - map: original -> bounce for EVERY direction. For FROM_DEVICE this is what
 *   keeps a device that writes less than the whole buffer from exposing stale
 *   pool bytes (another mapping's data) and from clobbering, on unmap, the guest
 *   bytes it did not write (swiotlb_tbl_map_single()).
 * - unmap: bounce -> original for FROM_DEVICE and BIDIRECTIONAL, unless
 *   DMA_ATTR_SKIP_CPU_SYNC (swiotlb_tbl_unmap_single()).
 * - sync_for_device: original -> bounce unless FROM_DEVICE.
 * - sync_for_cpu: bounce -> original unless TO_DEVICE.
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
