import { DmaDirection, IO_TLB_SIZE } from './constants.js';
import { syncForCpuCopies, syncForDeviceCopies, unmapCopies } from './dma-rules.js';
import type { KernelVersion } from './kernel.js';

/**
 * What a kernel prints for an unmap or a sync that it carries out anyway: a size
 * past the mapping, a direction other than the mapping's. The kernel never
 * refuses these calls (6.12.117, kernel/dma/mapping.c dma_unmap_page_attrs():
 * the unmap is made, then debug_dma_unmap_page() reports):
 *
 * - `swiotlb`: swiotlb_bounce() (kernel/dma/swiotlb.c), when the call copies,
 *   warns "Buffer overflow detected. Allocation size: %zu. Mapping size: %zu."
 *   (dev_WARN_ONCE(): once per boot, one flag per call site for every device)
 *   and copies the allocation size instead;
 *   __swiotlb_tbl_unmap_single() then releases the slots by the alloc_size the
 *   map stored (swiotlb_release_slots()), whatever size the unmap gave.
 * - `dma-debug`: with CONFIG_DMA_API_DEBUG, kernel/dma/debug.c check_unmap() and
 *   check_sync() report a different size or direction ("DMA-API: device driver
 *   frees DMA memory with different size ..."). The kernel prints the first
 *   such report only, unless told otherwise (dma_debug's show_num_errors).
 *
 * The kernel's lines start with the driver and the device ("DMA-API: virtio_blk
 * virtio1: ..."), which a replay does not have: the messages leave them out.
 *
 * 6.1's swiotlb_bounce() (6.1.192) also refuses a sync that starts in a later
 * slot at an in-slot offset below the mapping's: it warns "Access before mapping
 * start detected" and copies nothing. 6.12 takes such an offset ("It's valid for
 * tlb_offset to be negative"), and so do the 6.6 and 6.10 profiles here (6.6.y's
 * own text was not read).
 */
export interface KernelWarning {
  source: 'swiotlb' | 'dma-debug';
  message: string;
}

/** A live mapping as the warnings need it. */
export interface WarnedMapping {
  tlbAddr: number;
  size: number;
  dir: DmaDirection;
  /** The alloc_size swiotlb_bounce() reads at tlbAddr (SwiotlbAllocator.bounceLimit). */
  bounceLimit: number;
}

/** debug.c dir2name[]. */
function dir2name(dir: DmaDirection): string {
  switch (dir) {
    case DmaDirection.BIDIRECTIONAL:
      return 'DMA_BIDIRECTIONAL';
    case DmaDirection.TO_DEVICE:
      return 'DMA_TO_DEVICE';
    case DmaDirection.FROM_DEVICE:
      return 'DMA_FROM_DEVICE';
    default:
      return 'DMA_NONE';
  }
}

/** 0x%016llx */
function devAddr(addr: number): string {
  return `0x${addr.toString(16).padStart(16, '0')}`;
}

function overflow(allocSize: number, size: number): KernelWarning {
  return {
    source: 'swiotlb',
    message: `Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}.`,
  };
}

/** The reports of an unmap of `m` with this size, direction and attrs. */
export function unmapWarnings(
  m: WarnedMapping,
  size: number,
  dir: DmaDirection,
  attrs: number,
): KernelWarning[] {
  const out: KernelWarning[] = [];
  const copies = unmapCopies(dir, attrs);
  if (copies && size > m.bounceLimit) out.push(overflow(m.bounceLimit, size));
  const at = devAddr(m.tlbAddr);
  if (size !== m.size) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver frees DMA memory with different size [device address=${at}] [map size=${m.size} bytes] [unmap size=${size} bytes]`,
    });
  }
  if (dir !== m.dir) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver frees DMA memory with different direction [device address=${at}] [size=${size} bytes] [mapped with ${dir2name(m.dir)}] [unmapped with ${dir2name(dir)}]`,
    });
  }
  return out;
}

/**
 * The reports of a sync of [offset, offset + size) of `m` (offset inside the
 * mapping: the caller refuses one past it). check_sync() looks for a mapping
 * that contains the whole range (bucket_find_contain(), containing_match()):
 * one that runs past the mapping finds none, and is reported as memory the
 * driver "has not allocated", with no direction checks; a bidirectional mapping
 * gets none either.
 */
export function syncWarnings(
  m: WarnedMapping,
  offset: number,
  size: number,
  dir: DmaDirection,
  forDevice: boolean,
  kernel: KernelVersion,
): KernelWarning[] {
  const out: KernelWarning[] = [];
  const copies = forDevice ? syncForDeviceCopies(dir) : syncForCpuCopies(dir);
  // 6.1: tlb_offset = tlb_addr & (IO_TLB_SIZE - 1), against the slot's orig offset,
  // which is the mapping's own (pool bases are 2 KiB aligned).
  const origOffset = m.tlbAddr % IO_TLB_SIZE;
  const tlbOffset = (m.tlbAddr + offset) % IO_TLB_SIZE;
  if (copies && kernel === '6.1' && tlbOffset < origOffset) {
    out.push({
      source: 'swiotlb',
      message: `Access before mapping start detected. orig offset ${origOffset}, requested offset ${tlbOffset}.`,
    });
  } else if (copies && size > m.bounceLimit - offset) {
    // swiotlb_bounce() at tlb_addr + offset: that slot's alloc_size less the in-slot offset.
    out.push(overflow(m.bounceLimit - offset, size));
  }
  const at = devAddr(m.tlbAddr + offset);
  if (offset + size > m.size) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver tries to sync DMA memory it has not allocated [device address=${at}] [size=${size} bytes]`,
    });
    return out;
  }
  if (m.dir === DmaDirection.BIDIRECTIONAL) return out;
  const dirs = `[device address=${at}] [size=${m.size} bytes] [mapped with ${dir2name(m.dir)}] [synced with ${dir2name(dir)}]`;
  if (dir !== m.dir) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver syncs DMA memory with different direction ${dirs}`,
    });
  }
  if (!forDevice && m.dir !== DmaDirection.FROM_DEVICE && dir !== DmaDirection.TO_DEVICE) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver syncs device read-only DMA memory for cpu ${dirs}`,
    });
  }
  if (forDevice && m.dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
    out.push({
      source: 'dma-debug',
      message: `DMA-API: device driver syncs device write-only DMA memory to device ${dirs}`,
    });
  }
  return out;
}
