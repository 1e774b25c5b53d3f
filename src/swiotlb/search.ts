import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from './constants.js';
import type { MapPlan } from './plan.js';
import { freeRun } from './slot-bitmap.js';

/**
 * 6.1's slot search of one area, as the kernel walks it with the area's lock
 * held (6.6's and 6.10's is in allocator.ts searchArea(), where it is the hot path).
 * It reads the used-slot bitmap only (the caller holds the lock and does the
 * bookkeeping of a found run: area->index = wrap(found index + nslots)) and
 * returns the first slot of the run, or one of the codes below. Neither search
 * checks iommu_is_span_boundary(): the model's devices have no segment boundary.
 */

/** No run in this area: try the next area. */
export const NOT_FOUND = -1;
/** 6.1 only: the kernel's loop would never end (see {@link findWrapped}). */
export const WOULD_HANG = -2;
/** 6.1 only: the kernel would hand out slots past the pool's end (see {@link findWrapped}). */
export const OVERRUN = -3;

/**
 * Whether the kernel's search steps past the candidate at `tlbAddr` without
 * looking at its free run (swiotlb_search_pool_area(), 6.10 and 6.6.y after
 * 6.6.35): `(tlb_addr & alloc_align_mask) || (orig_addr && (tlb_addr &
 * iotlb_align_mask) != (orig_addr & iotlb_align_mask))`. `origBits` is
 * `orig_addr & iotlb_align_mask`, read once per search; `allocAlignMask` is 0
 * for 6.1, whose stride alone aligns (swiotlb_do_find_slots(), 6.1, checks only
 * the iotlb part). The one statement of that rule for the pool's searches
 * (allocator.ts, {@link findWrapped}) and the warm lookups (warm.ts).
 */
export function skipsCandidate(
  tlbAddr: number,
  allocAlignMask: number,
  iotlbAlignMask: number,
  origAddr: number,
  origBits: number,
): boolean {
  return (
    low(tlbAddr, allocAlignMask) !== 0 ||
    (origAddr !== 0 && low(tlbAddr, iotlbAlignMask) !== origBits)
  );
}

/** addr & mask on the low 32 bits (masks are below 2^32). */
function low(addr: number, mask: number): number {
  return (addr & mask) >>> 0;
}

/**
 * swiotlb_do_find_slots() of 6.1.y (6.1.192), which lacks 7c3940bf81e5 ("swiotlb:
 * fix the deadlock in swiotlb_do_find_slots", 6.3):
 *
 *   index = wrap = wrap_area_index(mem, ALIGN(area->index, stride));
 *   do {
 *     if (orig_addr && (slot_addr(tbl_dma_addr, slot_index) & iotlb_align_mask) !=
 *         (orig_addr & iotlb_align_mask))
 *       { index = wrap_area_index(mem, index + 1); continue; }
 *     if (mem->slots[slot_index].list >= nslots) goto found;
 *     index = wrap_area_index(mem, index + stride);
 *   } while (index != wrap);
 *
 * With the lock held nothing changes during the walk, so the next index is a
 * function of the index alone: a walk that takes more steps than the area has
 * slots has repeated an index without meeting `wrap`, and the kernel spins there
 * for ever (holding the area lock). That is answered as WOULD_HANG.
 *
 * 6.1's swiotlb_init_io_tlb_mem() sets list = IO_TLB_SEGSIZE - io_tlb_offset(i)
 * even in a partial last segment (a restricted pool of nslabs % 128 != 0): the
 * slots past the end count as free there, and a run reaching into them is OVERRUN.
 * Until `tailExact`: once a run ending at the last slot has been handed out, its
 * release reads `count = mem->slots[index + nslots].list` (swiotlb_release_slots(),
 * 6.1.192) at slots[nslabs], past the array, in the slack of the kcalloc()ed
 * object, which is zero (mm/slab.h slab_post_alloc_hook() zeroes s->object_size,
 * __kmalloc_large_node() takes __GFP_ZERO pages; 6.1.192): the freed slots, and
 * the free slots before them that the allocation recounted, then hold exact
 * counts, and no later write brings the missing slots back. (For the few nslabs
 * whose slots[nslabs].list lies past the object, 1, 2, 4, 5, 8, 10, 21, 42, 85,
 * 170, 341, 682, ..., the kernel reads a neighbour's bytes; the model takes 0 too.)
 */
export function findWrapped(
  used: Int32Array,
  base: number,
  slotBase: number,
  areaNslabs: number,
  nslabs: number,
  cursor: number,
  origAddr: number,
  p: MapPlan,
  tailExact: boolean,
): number {
  const iotlbAlignMask = p.iotlbAlignMask;
  const stride = p.stride;
  const nslots = p.nslots;
  const origBits = low(origAddr, iotlbAlignMask);
  // The kernel's ALIGN(x, a) is ((x + a - 1) & ~(a - 1)) (include/uapi/linux/const.h,
  // __ALIGN_KERNEL_MASK): a round-up only for a power of two. 6.1's stride need not be
  // one (min_align_mask 0x1fff with alloc_align_mask 0xfff gives 3, then 6), and
  // then the walk starts where the bit arithmetic puts it, as here.
  const aligned = ((cursor + stride - 1) & ~(stride - 1)) >>> 0;
  const wrap = aligned >= areaNslabs ? 0 : aligned;
  let index = wrap;
  for (let steps = 0; ; ) {
    const candidate = slotBase + index;
    // 6.1 checks no candidate against alloc_align_mask (its stride aligns): mask 0.
    if (skipsCandidate(base + candidate * IO_TLB_SIZE, 0, iotlbAlignMask, origAddr, origBits)) {
      index = index + 1 >= areaNslabs ? 0 : index + 1;
    } else {
      let run = freeRun(used, candidate);
      if (!tailExact && candidate + run === nslabs && nslabs % IO_TLB_SEGSIZE !== 0) {
        run += IO_TLB_SEGSIZE - (nslabs % IO_TLB_SEGSIZE); // 6.1's list[] counts past the end
      }
      if (run >= nslots) return candidate + nslots > nslabs ? OVERRUN : candidate;
      index = index + stride >= areaNslabs ? 0 : index + stride;
    }
    if (index === wrap) return NOT_FOUND;
    if (++steps > areaNslabs) return WOULD_HANG;
  }
}
