import { IO_TLB_SIZE } from '../../swiotlb/constants.js';

/** nr_slots(): the 2 KiB slots that `bytes` take. */
export function nrSlots(bytes: number): number {
  return Math.ceil(bytes / IO_TLB_SIZE);
}

/**
 * The kernel's pool as the trace's addresses show it: the range the replay
 * measures each traced dma_addr against, and the kernel's own slots of a
 * mapping it bounced there.
 *
 *   base                                                      end = base + nslabs * 2 KiB
 *   |  area 0 (areaNslabs slots)  |  area 1  |  ...  |  area nareas - 1  |
 *   |  slot = (dma_addr - offset - base) / 2 KiB, offset = dma_addr & (2 KiB - 1)
 *
 * Rules: a dma_addr in [base, end) was bounced into this pool. Its bounce offset
 * is dma_addr & (IO_TLB_SIZE - 1) (swiotlb_align_offset() keeps at most the low
 * 11 bits for streaming maps), and the mapping takes nr_slots(size + offset)
 * slots from the slot below (swiotlb_tbl_map_single()), cut at the pool's end.
 */
export class TracedPool {
  readonly base: number;
  /** One past the pool's last byte. */
  readonly end: number;
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;

  constructor(k: { base: number; nslabs: number; nareas: number }) {
    this.base = k.base;
    this.end = k.base + k.nslabs * IO_TLB_SIZE;
    this.nslabs = k.nslabs;
    this.nareas = k.nareas;
    this.areaNslabs = k.nslabs / k.nareas;
  }

  /** The kernel bounced a mapping with this dma_addr into the pool. */
  contains(addr: number): boolean {
    return addr >= this.base && addr < this.end;
  }

  /** The slot holding pool address `addr`. */
  slotAt(addr: number): number {
    return Math.floor((addr - this.base) / IO_TLB_SIZE);
  }

  /** The first slot of the kernel's mapping at dma_addr `kAddr` (below its bounce offset). */
  firstSlot(kAddr: number): number {
    return (kAddr - (kAddr & (IO_TLB_SIZE - 1)) - this.base) / IO_TLB_SIZE;
  }

  /** The slots the kernel's mapping of `size` bytes at `kAddr` takes, up to the pool's end. */
  slotCount(kAddr: number, size: number): number {
    return Math.min(
      nrSlots(size + (kAddr & (IO_TLB_SIZE - 1))),
      this.nslabs - this.firstSlot(kAddr),
    );
  }

  /** The area of a slot (the last area takes any slot past nareas * areaNslabs). */
  areaOfSlot(slot: number): number {
    return Math.min(Math.floor(slot / this.areaNslabs), this.nareas - 1);
  }

  /** The area a pool address lies in. */
  areaAt(addr: number): number {
    return Math.floor((addr - this.base) / IO_TLB_SIZE / this.areaNslabs);
  }
}
