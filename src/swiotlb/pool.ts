import { initMetadata, SwiotlbAllocator } from './allocator.js';
import { NO_COPY } from './bouncer.js';
import { DmaDirection as Dir, DmaAttr, type DmaDirection } from './constants.js';
import { MAP_COPY, syncForCpuCopies, syncForDeviceCopies, unmapCopies } from './dma-rules.js';
import { computeGeometry } from './geometry.js';
import { DEFAULT_KERNEL, isKernelVersion } from './kernel.js';
import { metadataBytes, metadataViews } from './layout.js';
import type { AttachOptions, MapOptions, PoolOptions, SgEntry, SharedPool } from './pool-types.js';
import { invalidArg } from './validate.js';
import { DEFAULT_PLACEMENT, isPlacement } from './warm.js';

export type {
  AllocOptions,
  AreaStats,
  AttachOptions,
  MapFailureReason,
  MapOptions,
  PoolOptions,
  PoolStats,
  SgEntry,
  SharedPool,
} from './pool-types.js';

/**
 * The synchronous DMA API as swiotlb implements it: placement by the allocator
 * it extends (allocator.ts: areas, slots, the kernel profile's search), copies
 * through the handle's bouncer at the steps dma-rules.ts names. Callers that copy
 * elsewhere (the copy engine) use the allocator's placement calls
 * (tryAllocate, beginUnmap/finishUnmap, resolve) directly.
 *
 * A subclass rather than functions over the allocator: a map and an unmap stay
 * one method call each on the hot path (measured: a function layer in between
 * made the engine inline less of the allocator).
 */
export class SwiotlbPool extends SwiotlbAllocator {
  /**
   * Allocates a new, empty pool.
   * @throws SWIOTLB_INVALID_GEOMETRY, SWIOTLB_INVALID_ARGUMENT (an unknown kernel or placement)
   */
  static create(opts: PoolOptions = {}): SwiotlbPool {
    const kernel = opts.kernel ?? DEFAULT_KERNEL;
    if (!isKernelVersion(kernel)) {
      throw invalidArg(`kernel ${JSON.stringify(kernel)} must be "6.1", "6.6" or "6.10"`, {
        kernel,
      });
    }
    const placement = opts.placement ?? DEFAULT_PLACEMENT;
    if (!isPlacement(placement)) {
      throw invalidArg(`placement ${JSON.stringify(placement)} must be "linux" or "warm"`, {
        placement,
      });
    }
    const geometry = computeGeometry(opts);
    const data = new SharedArrayBuffer(geometry.bytes);
    const meta = new SharedArrayBuffer(metadataBytes(geometry));
    const shared: SharedPool = { geometry, kernel, data, meta };
    const exclusive = opts.exclusive ?? false;
    if (typeof exclusive !== 'boolean') {
      throw invalidArg(`exclusive ${JSON.stringify(exclusive)} must be true or false`, {
        exclusive,
      });
    }
    initMetadata(metadataViews(meta, geometry), geometry, placement, exclusive);
    return new SwiotlbPool(shared, opts.bouncer ?? NO_COPY, opts.area);
  }

  /**
   * A handle on a pool created elsewhere (another thread's {@link SwiotlbPool.share}).
   * @throws SWIOTLB_INVALID_ARGUMENT when the pool was created exclusive
   */
  static attach(shared: SharedPool, opts: AttachOptions = {}): SwiotlbPool {
    const pool = new SwiotlbPool(shared, opts.bouncer ?? NO_COPY, opts.area);
    if (pool.exclusive) {
      throw invalidArg(
        'this pool was created with exclusive: true, so only the handle that created it may map and unmap; create it with exclusive: false to share it between threads',
        { exclusive: true },
      );
    }
    return pool;
  }

  /**
   * swiotlb_tbl_map_single(): places `size` bytes of the buffer at `origAddr`, copies
   * it into the pool (for every direction) and returns the bounce address.
   * @throws SWIOTLB_POOL_FULL, SWIOTLB_MAPPING_TOO_LARGE, SWIOTLB_INVALID_ARGUMENT,
   *   SWIOTLB_INVALID_DIRECTION, SWIOTLB_KERNEL_WOULD_HANG, SWIOTLB_KERNEL_OVERRUN
   */
  map(origAddr: number, size: number, dir: DmaDirection, opts: MapOptions = {}): number {
    const tlbAddr = this.tryAllocate(origAddr, size, dir, opts);
    if (tlbAddr < 0) {
      this.countFailure('full');
      throw this.fullError(this.paddedSize(origAddr, size, opts));
    }
    this.bouncer.bounce(MAP_COPY, origAddr, tlbAddr, size);
    return tlbAddr;
  }

  /**
   * swiotlb_tbl_unmap_single(): copies back (FROM_DEVICE, BIDIRECTIONAL; not with
   * SKIP_CPU_SYNC) and frees the slots. An address that is not a live mapping, a
   * size larger than the mapping or a direction other than the mapping's is an
   * error that changes nothing.
   */
  unmap(tlbAddr: number, size: number, dir: DmaDirection, attrs = 0, owner = 0): void {
    const head = this.beginUnmap(tlbAddr, size, dir, owner);
    if (unmapCopies(dir, attrs)) {
      this.bouncer.bounce(Dir.FROM_DEVICE, this.mappedOrigAddr(head), tlbAddr, size);
    }
    this.finishUnmap(head);
  }

  /** swiotlb_sync_single_for_device(): copies [tlbAddr, tlbAddr+size) to the pool unless FROM_DEVICE. */
  syncForDevice(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    const origAddr = this.resolve(tlbAddr, size, dir, owner);
    this.countSync();
    if (syncForDeviceCopies(dir)) this.bouncer.bounce(Dir.TO_DEVICE, origAddr, tlbAddr, size);
  }

  /** swiotlb_sync_single_for_cpu(): copies [tlbAddr, tlbAddr+size) back unless TO_DEVICE. */
  syncForCpu(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    const origAddr = this.resolve(tlbAddr, size, dir, owner);
    this.countSync();
    if (syncForCpuCopies(dir)) this.bouncer.bounce(Dir.FROM_DEVICE, origAddr, tlbAddr, size);
  }

  /**
   * dma_map_sg() through swiotlb: maps each entry. If one fails, every entry
   * already mapped is unmapped with SKIP_CPU_SYNC (as dma_direct_map_sg() does) and
   * the error is thrown: nothing stays allocated.
   */
  mapSg(entries: readonly SgEntry[], dir: DmaDirection, opts: MapOptions = {}): number[] {
    const out: number[] = [];
    try {
      for (const e of entries) out.push(this.map(e.addr, e.length, dir, opts));
    } catch (err) {
      const attrs = (opts.attrs ?? 0) | DmaAttr.SKIP_CPU_SYNC;
      for (let i = 0; i < out.length; i++) {
        this.unmap(out[i]!, entries[i]!.length, dir, attrs, opts.owner ?? 0);
      }
      throw err;
    }
    return out;
  }

  /** dma_unmap_sg(): unmaps each entry; `lengths[i]` is the length entry i was mapped with. */
  unmapSg(
    tlbAddrs: readonly number[],
    lengths: readonly number[],
    dir: DmaDirection,
    attrs = 0,
    owner = 0,
  ): void {
    if (tlbAddrs.length !== lengths.length) {
      throw invalidArg('unmapSg needs one length per address', {
        addresses: tlbAddrs.length,
        lengths: lengths.length,
      });
    }
    for (let i = 0; i < tlbAddrs.length; i++) {
      this.unmap(tlbAddrs[i]!, lengths[i]!, dir, attrs, owner);
    }
  }
}
