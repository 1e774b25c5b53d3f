import { DmaDirection as Dir, DmaAttr, type DmaDirection } from './constants.js';
import { MAP_COPY, syncForCpuCopies, syncForDeviceCopies, unmapCopies } from './dma-rules.js';
import type { SwiotlbPool } from './pool.js';
import type { MapOptions, SgEntry } from './pool-types.js';
import { invalidArg } from './validate.js';

/**
 * The synchronous DMA API as swiotlb implements it: placement by the pool's
 * allocator (pool.ts), copies through the pool's bouncer at the steps dma-rules.ts
 * names. SwiotlbPool's map/unmap/sync methods call these; callers that copy
 * elsewhere (the copy engine) use the pool's placement calls directly.
 */

/**
 * swiotlb_tbl_map_single(): places `size` bytes of the buffer at `origAddr`, copies
 * it into the pool (for every direction) and returns the bounce address.
 * @throws SWIOTLB_POOL_FULL, SWIOTLB_MAPPING_TOO_LARGE, SWIOTLB_INVALID_ARGUMENT,
 *   SWIOTLB_INVALID_DIRECTION, SWIOTLB_KERNEL_WOULD_HANG, SWIOTLB_KERNEL_OVERRUN
 */
export function dmaMap(
  pool: SwiotlbPool,
  origAddr: number,
  size: number,
  dir: DmaDirection,
  opts: MapOptions,
): number {
  const tlbAddr = pool.tryAllocate(origAddr, size, dir, opts);
  if (tlbAddr < 0) {
    pool.countFailure('full');
    throw pool.fullError(pool.paddedSize(origAddr, size, opts));
  }
  pool.bouncer.bounce(MAP_COPY, origAddr, tlbAddr, size);
  return tlbAddr;
}

/**
 * swiotlb_tbl_unmap_single(): copies back (FROM_DEVICE, BIDIRECTIONAL; not with
 * SKIP_CPU_SYNC) and frees the slots. An address that is not a live mapping, a
 * size larger than the mapping or a direction other than the mapping's is an
 * error that changes nothing.
 */
export function dmaUnmap(
  pool: SwiotlbPool,
  tlbAddr: number,
  size: number,
  dir: DmaDirection,
  attrs: number,
  owner: number,
): void {
  const head = pool.beginUnmap(tlbAddr, size, dir, owner);
  if (unmapCopies(dir, attrs)) {
    pool.bouncer.bounce(Dir.FROM_DEVICE, pool.mappedOrigAddr(head), tlbAddr, size);
  }
  pool.finishUnmap(head);
}

/** swiotlb_sync_single_for_device(): copies [tlbAddr, tlbAddr+size) to the pool unless FROM_DEVICE. */
export function dmaSyncForDevice(
  pool: SwiotlbPool,
  tlbAddr: number,
  size: number,
  dir: DmaDirection,
  owner: number,
): void {
  const origAddr = pool.resolve(tlbAddr, size, dir, owner);
  pool.countSync();
  if (syncForDeviceCopies(dir)) pool.bouncer.bounce(Dir.TO_DEVICE, origAddr, tlbAddr, size);
}

/** swiotlb_sync_single_for_cpu(): copies [tlbAddr, tlbAddr+size) back unless TO_DEVICE. */
export function dmaSyncForCpu(
  pool: SwiotlbPool,
  tlbAddr: number,
  size: number,
  dir: DmaDirection,
  owner: number,
): void {
  const origAddr = pool.resolve(tlbAddr, size, dir, owner);
  pool.countSync();
  if (syncForCpuCopies(dir)) pool.bouncer.bounce(Dir.FROM_DEVICE, origAddr, tlbAddr, size);
}

/**
 * dma_map_sg() through swiotlb: maps each entry. If one fails, every entry
 * already mapped is unmapped with SKIP_CPU_SYNC (as dma_direct_map_sg() does) and
 * the error is thrown: nothing stays allocated.
 */
export function dmaMapSg(
  pool: SwiotlbPool,
  entries: readonly SgEntry[],
  dir: DmaDirection,
  opts: MapOptions,
): number[] {
  const out: number[] = [];
  try {
    for (const e of entries) out.push(dmaMap(pool, e.addr, e.length, dir, opts));
  } catch (err) {
    const attrs = (opts.attrs ?? 0) | DmaAttr.SKIP_CPU_SYNC;
    for (let i = 0; i < out.length; i++) {
      dmaUnmap(pool, out[i]!, entries[i]!.length, dir, attrs, opts.owner ?? 0);
    }
    throw err;
  }
  return out;
}

/** dma_unmap_sg(): unmaps each entry; `lengths[i]` is the length entry i was mapped with. */
export function dmaUnmapSg(
  pool: SwiotlbPool,
  tlbAddrs: readonly number[],
  lengths: readonly number[],
  dir: DmaDirection,
  attrs: number,
  owner: number,
): void {
  if (tlbAddrs.length !== lengths.length) {
    throw invalidArg('unmapSg needs one length per address', {
      addresses: tlbAddrs.length,
      lengths: lengths.length,
    });
  }
  for (let i = 0; i < tlbAddrs.length; i++) {
    dmaUnmap(pool, tlbAddrs[i]!, lengths[i]!, dir, attrs, owner);
  }
}
