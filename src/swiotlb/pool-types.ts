import type { Bouncer } from './bouncer.js';
import type { Geometry, GeometryOptions } from './geometry.js';
import type { KernelVersion } from './kernel.js';
import type { Placement } from './warm.js';

/** Per-mapping options: the device's DMA constraints and attributes. */
export interface MapOptions {
  /**
   * The device's min_align_mask (dma_get_min_align_mask()): the low bits of the
   * bounce address equal those of the original. NVMe sets 4095.
   * @default 0
   */
  minAlignMask?: number;
  /**
   * Alignment the allocation itself needs (alloc_align_mask), e.g. an IOVA granule - 1.
   * @default 0
   */
  allocAlignMask?: number;
  /**
   * The separate alloc_size argument of 6.1's and 6.6's swiotlb_tbl_map_single()
   * (dma-iommu passes iova_align(size)); at least the mapping size. 6.10 has no
   * such argument: a value other than the mapping size is an error there.
   * @default the mapping size (what dma-direct's swiotlb_map() passes)
   */
  allocSize?: number;
  /**
   * DMA_ATTR_* bits (see {@link DmaAttr}).
   * @default 0
   */
  attrs?: number;
  /**
   * Area the search starts in; the others are tried in order after it. Linux uses
   * the CPU number; here a thread or a queue picks its own.
   * @default the handle's area
   */
  area?: number;
  /**
   * Who maps (a guest id, when several guests share one pool). unmap and sync
   * must name the same owner, so one guest can never unmap or sync another's slots.
   * @default 0
   */
  owner?: number;
  /**
   * Under the pool's `warm` placement, place this mapping by the kernel's search
   * alone, as under `linux`; its slots go back to that search when unmapped, not
   * onto the warm ring (layout.ts, `noHint`), where they would sit above the runs
   * the next warm maps take back.
   * For a buffer the CPU does not fill at map time (a DMA_FROM_DEVICE buffer
   * bounced with `used-length`): warm slots pay off through the CPU's copy into
   * them, and a device writing slots the CPU has just read pays for them instead
   * (docs/performance.md, "64 KiB reads").
   * @default false
   */
  kernelSearch?: boolean;
}

/** Options of a coherent allocation (dma_alloc_coherent() through swiotlb_alloc()). */
export interface AllocOptions {
  /**
   * The device's min_align_mask: it enters the search stride (6.1) and the
   * iotlb_align_mask, though with orig_addr 0 no slot is checked against it.
   * @default 0
   */
  minAlignMask?: number;
  /** @default the handle's area */
  area?: number;
  /** @default 0 */
  owner?: number;
  /**
   * Under the pool's `warm` placement, take the kernel's search alone (as
   * {@link MapOptions.kernelSearch}; freed, the run is not pushed on the warm
   * ring either), for a caller that wants a fresh run rather than the one freed
   * last. Shared mode does not ask it: its read buffers are reused as direct mode
   * reuses guest buffers (shared-dma.ts).
   * @default false
   */
  kernelSearch?: boolean;
}

/** Everything a thread needs to attach to the same pool. Only the guest side gets `meta`. */
export interface SharedPool {
  readonly geometry: Geometry;
  /** The kernel whose rules the pool follows. */
  readonly kernel: KernelVersion;
  /** The pool's bytes: the only memory a device backend ever sees. */
  readonly data: SharedArrayBuffer;
  /** The allocator's metadata: trusted, guest side only. */
  readonly meta: SharedArrayBuffer;
}

export interface PoolOptions extends GeometryOptions {
  /**
   * The kernel line whose search, alignment, padding and release rules the pool
   * follows: '6.1' (6.1.y), '6.6' (6.6.y) or '6.10' (6.10 and later). See docs/kernels.md.
   * @default '6.10'
   */
  kernel?: KernelVersion;
  /**
   * Which free run a map takes: `linux`, the kernel's search from the area's
   * next-fit cursor (what the kernel does); or `warm`, the runs freed most
   * recently first (so a steady workload keeps reusing the same, cache-warm
   * slots), the kernel's search when none fits. Every warm placement keeps the
   * profile's alignment, offset and padding rules; it is not a kernel behaviour
   * (docs/kernels.md, src/swiotlb/warm.ts).
   * @default 'linux'
   */
  placement?: Placement;
  /**
   * The handle this creates is the pool's only mapper: {@link SwiotlbPool.attach}
   * refuses the pool, and map, unmap, alloc and free take no area lock and make no
   * atomic access. Same placements, same counters; for a pool one thread maps
   * (the mediator's, the replay's and the sizing simulation's).
   * @default false
   */
  exclusive?: boolean;
  /**
   * The copy done at map/unmap/sync.
   * @default NO_COPY (placement only)
   */
  bouncer?: Bouncer;
  /**
   * Default starting area of this handle.
   * @default 0 on the main thread; threadId modulo the area count in a worker
   */
  area?: number;
}

export interface AttachOptions {
  /** @default NO_COPY */
  bouncer?: Bouncer;
  /** @default threadId modulo the area count */
  area?: number;
}

export interface AreaStats {
  /** Slots in use in this area. */
  used: number;
  /** The area's next-fit cursor (slot index within the area). */
  index: number;
  /** Times a thread found this area's lock held and had to spin or sleep. */
  contended: number;
  /** Largest run of free contiguous slots in this area (what its biggest map can take). */
  largest_free_run: number;
}

/** The kernel's debugfs files (io_tlb_nslabs, io_tlb_used, io_tlb_used_hiwater, io_tlb_transient_nslabs) and what Linux lacks. */
export interface PoolStats {
  nslabs: number;
  used: number;
  used_hiwater: number;
  /** Slots in transient pools (CONFIG_SWIOTLB_DYNAMIC); 0 for a pool that never grows. */
  transient_nslabs: number;
  nareas: number;
  area_nslabs: number;
  areas: AreaStats[];
  /** Largest run of free contiguous slots anywhere: the biggest mapping the pool can place now. */
  largest_free_run: number;
  /**
   * Map failures by reason. `kernel_defect`: requests the pool's kernel would never
   * finish or would place past the pool's end (6.1 only). Counters wrap modulo 2^32.
   */
  map_failures: { full: number; too_large: number; invalid: number; kernel_defect: number };
  /** Successful maps, unmaps and syncs. Per-area counters wrap modulo 2^32. */
  maps: number;
  unmaps: number;
  syncs: number;
}

/** One entry of a scatter-gather list: a guest buffer. */
export interface SgEntry {
  addr: number;
  length: number;
}

export type MapFailureReason = 'full' | 'too_large' | 'invalid' | 'kernel_defect';
