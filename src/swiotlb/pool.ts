import { threadId } from 'node:worker_threads';
import { MediatorError } from '../errors.js';
import { acquire, release } from './area-lock.js';
import { type Bouncer, NO_COPY } from './bouncer.js';
import {
  DmaDirection as Dir,
  DmaAttr,
  type DmaDirection,
  directionName,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  isValidMappingDirection,
  PAGE_SIZE,
} from './constants.js';
import {
  MAP_COPY,
  maxMappingSize,
  syncForCpuCopies,
  syncForDeviceCopies,
  unmapCopies,
} from './dma-rules.js';
import { computeGeometry, type Geometry, type GeometryOptions } from './geometry.js';
import {
  AREA_CONTENDED,
  AREA_INDEX,
  AREA_LOCK,
  AREA_MAPS,
  AREA_STRIDE,
  AREA_UNMAPS,
  AREA_USED,
  allocSizeAt,
  G_FAIL_FULL,
  G_FAIL_INVALID,
  G_FAIL_TOO_LARGE,
  G_HIWATER,
  G_SYNCS,
  G_TOTAL_USED,
  headOffsetAt,
  INVALID_PHYS_ADDR,
  type MetadataViews,
  mapDirAt,
  mapOwnerAt,
  mapSizeAt,
  metadataBytes,
  metadataViews,
  origAddrAt,
  padSlotsAt,
} from './layout.js';
import { freeRun, largestFreeRun, markFree, markUsed } from './slot-bitmap.js';

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
}

/** Everything a thread needs to attach to the same pool. Only the guest side gets `meta`. */
export interface SharedPool {
  readonly geometry: Geometry;
  /** The pool's bytes: the only memory a device backend ever sees. */
  readonly data: SharedArrayBuffer;
  /** The allocator's metadata: trusted, guest side only. */
  readonly meta: SharedArrayBuffer;
}

export interface PoolOptions extends GeometryOptions {
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
  /** Always 0: this pool never grows (no CONFIG_SWIOTLB_DYNAMIC transient pools). */
  transient_nslabs: number;
  nareas: number;
  area_nslabs: number;
  areas: AreaStats[];
  /** Largest run of free contiguous slots anywhere: the biggest mapping the pool can place now. */
  largest_free_run: number;
  /** Map failures by reason. Counters wrap modulo 2^32. */
  map_failures: { full: number; too_large: number; invalid: number };
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

export type MapFailureReason = 'full' | 'too_large' | 'invalid';

const TWO_POW_32 = 0x1_0000_0000;

/**
 * addr & mask for a (up to 53-bit) address and a mask that fits 32 bits: `&`
 * converts with ToInt32, which is the value modulo 2^32 for any safe integer, so
 * no `%` (a floating-point remainder, dear on the map path: docs/performance.md) is needed.
 */
function maskLow(addr: number, mask: number): number {
  return (addr & mask) >>> 0;
}

function nrSlots(bytes: number): number {
  // A huge alloc_align_mask can make an allocation size above 2^31: no shift then.
  return bytes < 0x4000_0000
    ? (bytes + IO_TLB_SIZE - 1) >>> IO_TLB_SHIFT
    : Math.ceil(bytes / IO_TLB_SIZE);
}

function isMask(mask: number): boolean {
  return (
    Number.isInteger(mask) && mask >= 0 && mask < TWO_POW_32 && ((mask + 1) & mask) === 0 // 2^k - 1
  );
}

function invalidArg(message: string, details: Record<string, unknown>): MediatorError {
  return new MediatorError('SWIOTLB_INVALID_ARGUMENT', message, details);
}

/**
 * A swiotlb pool (struct io_tlb_pool) in shared memory. Several threads may each
 * hold a handle on the same pool (see {@link SwiotlbPool.attach}) and map and
 * unmap concurrently; each area's slots are guarded by that area's lock.
 *
 * Slots and segments (the kernel's layout; one segment = 128 slots = 256 KiB):
 *
 *   slot:    0    1    2  ...  127 | 128  129 ... 255 | ...
 *   list:  128  127  126  ...    1 | 128  127 ...   1 | ...   (fresh pool)
 *   area:  [ area 0: slots 0 .. area_nslabs-1 ][ area 1 ... ]
 *
 * Invariants (checked by test/swiotlb.property.test.ts):
 * - list[s] = number of free slots from s up to the first used slot or the segment
 *   end, whichever is nearer; list[s] = 0 iff s is used. (The kernel stores list[];
 *   here it is computed from a used-slot bitmap, see slot-bitmap.ts.)
 * - a mapping's slots are contiguous and lie in one segment and one area;
 * - the sum of area used = TOTAL_USED = number of slots with list = 0.
 */
export class SwiotlbPool {
  readonly geometry: Geometry;
  /** The pool's bytes, indexed by (tlb_addr - base). */
  readonly data: Uint8Array;
  /** Default starting area of this handle. */
  readonly area: number;
  private readonly shared: SharedPool;
  private readonly m: MetadataViews;
  private readonly bouncer: Bouncer;
  private readonly g: number;

  /** Allocates a new, empty pool. */
  static create(opts: PoolOptions = {}): SwiotlbPool {
    const geometry = computeGeometry(opts);
    const data = new SharedArrayBuffer(geometry.bytes);
    const meta = new SharedArrayBuffer(metadataBytes(geometry));
    const shared: SharedPool = { geometry, data, meta };
    initMetadata(metadataViews(meta, geometry), geometry);
    return new SwiotlbPool(shared, opts.bouncer ?? NO_COPY, opts.area);
  }

  /** A handle on a pool created elsewhere (another thread's {@link SwiotlbPool.share}). */
  static attach(shared: SharedPool, opts: AttachOptions = {}): SwiotlbPool {
    return new SwiotlbPool(shared, opts.bouncer ?? NO_COPY, opts.area);
  }

  private constructor(shared: SharedPool, bouncer: Bouncer, area: number | undefined) {
    this.shared = shared;
    this.geometry = shared.geometry;
    this.data = new Uint8Array(shared.data);
    this.m = metadataViews(shared.meta, shared.geometry);
    this.g = this.m.globalBase;
    this.bouncer = bouncer;
    const defaultArea = area ?? threadId % this.geometry.nareas;
    this.checkArea(defaultArea);
    this.area = defaultArea;
  }

  /** The buffers to pass (in workerData or task data) to another thread that attaches. */
  share(): SharedPool {
    return this.shared;
  }

  /** swiotlb_max_mapping_size(): 256 KiB less roundup(min_align_mask, 2 KiB) when a mask is set. */
  maxMappingSize(minAlignMask = 0): number {
    return maxMappingSize(minAlignMask);
  }

  /** Offset of a pool address in {@link data}. */
  offsetOf(tlbAddr: number): number {
    return tlbAddr - this.geometry.base;
  }

  /** True when `addr` lies inside this pool (is_swiotlb_buffer()). */
  contains(addr: number): boolean {
    return addr >= this.geometry.base && addr < this.geometry.base + this.geometry.bytes;
  }

  // ---------------------------------------------------------------------------
  // The DMA API as swiotlb implements it (copies through the bouncer)
  // ---------------------------------------------------------------------------

  /**
   * swiotlb_tbl_map_single(): places `size` bytes of the buffer at `origAddr`, copies
   * it into the pool (for every direction) and returns the bounce address.
   * @throws SWIOTLB_POOL_FULL, SWIOTLB_MAPPING_TOO_LARGE, SWIOTLB_INVALID_ARGUMENT, SWIOTLB_INVALID_DIRECTION
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
      this.bouncer.bounce(Dir.FROM_DEVICE, this.m.slotF64[origAddrAt(head)]!, tlbAddr, size);
    }
    this.finishUnmap(head);
  }

  /** swiotlb_sync_single_for_device(): copies [tlbAddr, tlbAddr+size) to the pool unless FROM_DEVICE. */
  syncForDevice(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    const origAddr = this.resolve(tlbAddr, size, dir, owner);
    Atomics.add(this.m.control, this.g + G_SYNCS, 1);
    if (syncForDeviceCopies(dir)) this.bouncer.bounce(Dir.TO_DEVICE, origAddr, tlbAddr, size);
  }

  /** swiotlb_sync_single_for_cpu(): copies [tlbAddr, tlbAddr+size) back unless TO_DEVICE. */
  syncForCpu(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    const origAddr = this.resolve(tlbAddr, size, dir, owner);
    Atomics.add(this.m.control, this.g + G_SYNCS, 1);
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

  // ---------------------------------------------------------------------------
  // Placement without copies, for callers that copy elsewhere (the copy engine)
  // ---------------------------------------------------------------------------

  /**
   * Finds and takes slots as swiotlb_tbl_map_single() + swiotlb_find_slots() do,
   * records orig_addr, copies nothing. Returns the bounce address, or -1 when no
   * area has room (the caller decides whether that is an error or a wait; failure
   * counters do not move here, see {@link countFailure}).
   * @throws SWIOTLB_MAPPING_TOO_LARGE, SWIOTLB_INVALID_ARGUMENT, SWIOTLB_INVALID_DIRECTION
   */
  tryAllocate(origAddr: number, size: number, dir: DmaDirection, opts: MapOptions = {}): number {
    const minAlignMask = opts.minAlignMask ?? 0;
    let allocAlignMask = opts.allocAlignMask ?? 0;
    const startArea = opts.area ?? this.area;
    const owner = opts.owner ?? 0;
    this.checkMapArgs(origAddr, size, dir, minAlignMask, allocAlignMask, startArea, owner);

    if (size > this.maxMappingSize(minAlignMask)) {
      this.countFailure('too_large');
      throw this.tooLargeError(size, minAlignMask);
    }
    // swiotlb_align_offset(dev, alloc_align_mask, orig_addr)
    let offset = maskLow(origAddr, minAlignMask) & (allocAlignMask | (IO_TLB_SIZE - 1));
    const allocSize = alignUp(size + offset, allocAlignMask + 1);
    const nslots = nrSlots(allocSize);
    if (nslots > IO_TLB_SEGSIZE) {
      this.countFailure('too_large');
      throw this.tooLargeError(size, minAlignMask, allocSize);
    }

    // swiotlb_search_pool_area(): the search masks, the same for every area.
    let iotlbAlignMask = minAlignMask;
    if (!allocAlignMask && !iotlbAlignMask && allocSize >= PAGE_SIZE) {
      allocAlignMask = PAGE_SIZE - 1;
    }
    allocAlignMask = (allocAlignMask | (IO_TLB_SIZE - 1)) >>> 0;
    iotlbAlignMask = (iotlbAlignMask & ~allocAlignMask) >>> 0;
    const stride = (Math.max(allocAlignMask, iotlbAlignMask) >>> IO_TLB_SHIFT) + 1;
    // The search skips bounce offsets by this much: swiotlb_align_offset(dev, 0, orig_addr).
    const slotOffset = maskLow(origAddr, minAlignMask) & (IO_TLB_SIZE - 1);

    const nareas = this.geometry.nareas;
    let a = startArea;
    let slotIndex = -1;
    do {
      slotIndex = this.searchArea(
        a,
        origAddr,
        allocSize,
        nslots,
        allocAlignMask,
        iotlbAlignMask,
        stride,
        slotOffset,
        offset >>> IO_TLB_SHIFT,
        size,
        dir,
        owner,
      );
      if (slotIndex >= 0) break;
      if (++a >= nareas) a = 0;
    } while (a !== startArea);
    if (slotIndex < 0) return -1;

    this.incUsedAndHiwater(nslots);
    const padSlots = offset >>> IO_TLB_SHIFT;
    offset &= IO_TLB_SIZE - 1;
    return this.geometry.base + (slotIndex + padSlots) * IO_TLB_SIZE + offset;
  }

  /**
   * Validates an unmap and frees the slots without copying (the copy engine copies
   * back first, then calls this). Same errors as {@link unmap}, same "changes nothing".
   */
  release(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    this.finishUnmap(this.beginUnmap(tlbAddr, size, dir, owner));
  }

  /**
   * Validates that [tlbAddr, tlbAddr+size) lies inside one live mapping and that
   * `dir` fits it, and returns the original address that tlbAddr bounces
   * (what swiotlb_bounce() computes from the slot's orig_addr).
   * @throws SWIOTLB_NOT_MAPPED, SWIOTLB_BUFFER_OVERFLOW, SWIOTLB_INVALID_DIRECTION
   */
  resolve(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): number {
    const head = this.headOfAddress(tlbAddr, owner);
    const headTlb = this.headTlbAddr(head);
    // Read once: a concurrent unmap of the same mapping (a caller bug) must read as
    // "not mapped", never as a size of 0 or an original address of -1.
    const mapSize = Atomics.load(this.m.slotI32, mapSizeAt(head));
    const origAddr = this.m.slotF64[origAddrAt(head)]!;
    if (mapSize <= 0 || origAddr < 0) throw this.notMapped(tlbAddr, 'was unmapped concurrently');
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw invalidArg(`size ${String(size)} must be a positive integer`, { size });
    }
    this.checkDirection(dir, head);
    const within = tlbAddr - headTlb;
    if (within + size > mapSize) {
      throw new MediatorError(
        'SWIOTLB_BUFFER_OVERFLOW',
        `Buffer overflow detected. Allocation size: ${mapSize - within}. Mapping size: ${size}.`,
        { tlbAddr, size, available: mapSize - within },
      );
    }
    return origAddr + within;
  }

  /** Counts a map failure that a caller of {@link tryAllocate} decided is final. */
  countFailure(reason: MapFailureReason): void {
    const word =
      reason === 'full' ? G_FAIL_FULL : reason === 'too_large' ? G_FAIL_TOO_LARGE : G_FAIL_INVALID;
    Atomics.add(this.m.control, this.g + word, 1);
  }

  /** The error a full pool gives, in the kernel's words, for an allocation of `allocSize` bytes. */
  fullError(allocSize: number): MediatorError {
    const total = this.geometry.nslabs;
    const used = Atomics.load(this.m.control, this.g + G_TOTAL_USED);
    return new MediatorError(
      'SWIOTLB_POOL_FULL',
      `swiotlb buffer is full (sz: ${allocSize} bytes), total ${total} (slots), used ${used} (slots)`,
      { size: allocSize, total, used },
    );
  }

  /** The size the kernel prints for a full pool: ALIGN(size + offset, alloc_align_mask + 1). */
  paddedSize(origAddr: number, size: number, opts: MapOptions = {}): number {
    const allocAlignMask = opts.allocAlignMask ?? 0;
    const offset = maskLow(origAddr, opts.minAlignMask ?? 0) & (allocAlignMask | (IO_TLB_SIZE - 1));
    return alignUp(size + offset, allocAlignMask + 1);
  }

  // ---------------------------------------------------------------------------
  // Stats (debugfs)
  // ---------------------------------------------------------------------------

  stats(): PoolStats {
    const c = this.m.control;
    const { nareas, areaNslabs } = this.geometry;
    const areas: AreaStats[] = [];
    let largest = 0;
    let maps = 0;
    let unmaps = 0;
    for (let a = 0; a < nareas; a++) {
      const lockWord = a * AREA_STRIDE + AREA_LOCK;
      acquire(c, lockWord);
      let areaLargest = 0;
      try {
        areaLargest = largestFreeRun(this.m.usedBits, a * areaNslabs, (a + 1) * areaNslabs);
        areas.push({
          used: c[a * AREA_STRIDE + AREA_USED]!,
          index: c[a * AREA_STRIDE + AREA_INDEX]!,
          contended: c[a * AREA_STRIDE + AREA_CONTENDED]! >>> 0,
          largest_free_run: areaLargest,
        });
        maps += c[a * AREA_STRIDE + AREA_MAPS]! >>> 0;
        unmaps += c[a * AREA_STRIDE + AREA_UNMAPS]! >>> 0;
      } finally {
        release(c, lockWord);
      }
      if (areaLargest > largest) largest = areaLargest;
    }
    const g = this.g;
    return {
      nslabs: this.geometry.nslabs,
      used: Atomics.load(c, g + G_TOTAL_USED),
      used_hiwater: Atomics.load(c, g + G_HIWATER),
      transient_nslabs: 0,
      nareas,
      area_nslabs: areaNslabs,
      areas,
      largest_free_run: largest,
      map_failures: {
        full: Atomics.load(c, g + G_FAIL_FULL) >>> 0,
        too_large: Atomics.load(c, g + G_FAIL_TOO_LARGE) >>> 0,
        invalid: Atomics.load(c, g + G_FAIL_INVALID) >>> 0,
      },
      maps,
      unmaps,
      syncs: Atomics.load(c, g + G_SYNCS) >>> 0,
    };
  }

  /** Slots in use now (io_tlb_used), without taking locks. */
  used(): number {
    return Atomics.load(this.m.control, this.g + G_TOTAL_USED);
  }

  /** Writing 0 to debugfs io_tlb_used_hiwater. */
  resetHiwater(): void {
    Atomics.store(this.m.control, this.g + G_HIWATER, 0);
  }

  // ---------------------------------------------------------------------------
  // Internals
  // ---------------------------------------------------------------------------

  /** swiotlb_search_pool_area() for one area, then the bookkeeping of a found run. */
  private searchArea(
    areaIndex: number,
    origAddr: number,
    allocSize: number,
    nslots: number,
    allocAlignMask: number,
    iotlbAlignMask: number,
    stride: number,
    slotOffset: number,
    padSlots: number,
    mappingSize: number,
    dir: DmaDirection,
    owner: number,
  ): number {
    const c = this.m.control;
    const used = this.m.usedBits;
    const areaNslabs = this.geometry.areaNslabs;
    const base = this.geometry.base;
    const word = areaIndex * AREA_STRIDE;
    if (acquire(c, word + AREA_LOCK)) Atomics.add(c, word + AREA_CONTENDED, 1);
    try {
      if (nslots > areaNslabs - c[word + AREA_USED]!) return -1;
      const slotBase = areaIndex * areaNslabs;
      let index = c[word + AREA_INDEX]!;
      let slotIndex = -1;
      for (let checked = 0; checked < areaNslabs; ) {
        const candidate = slotBase + index;
        const tlbAddr = base + candidate * IO_TLB_SIZE;
        if (
          maskLow(tlbAddr, allocAlignMask) !== 0 ||
          (origAddr !== 0 && maskLow(tlbAddr, iotlbAlignMask) !== maskLow(origAddr, iotlbAlignMask))
        ) {
          index = index + 1 >= areaNslabs ? 0 : index + 1; // wrap_area_index()
          checked++;
          continue;
        }
        if (freeRun(used, candidate) >= nslots) {
          slotIndex = candidate;
          break;
        }
        index = index + stride >= areaNslabs ? 0 : index + stride;
        checked += stride;
      }
      if (slotIndex < 0) return -1;

      const m = this.m;
      const end = slotIndex + nslots;
      markUsed(used, slotIndex, nslots);
      // alloc_size of the first slot; the kernel's later slots are derived (layout.ts).
      m.slotI32[allocSizeAt(slotIndex)] = allocSize - slotOffset;
      c[word + AREA_INDEX] = index + nslots >= areaNslabs ? 0 : index + nslots;
      c[word + AREA_USED] = c[word + AREA_USED]! + nslots;
      c[word + AREA_MAPS] = c[word + AREA_MAPS]! + 1;

      // The mapping's own records (swiotlb_tbl_map_single() after find_slots).
      const head = slotIndex + padSlots;
      m.slotU8[padSlotsAt(head)] = padSlots;
      m.slotF64[origAddrAt(head)] = origAddr;
      for (let i = head; i < end; i++) m.slotHead[i] = head;
      m.slotU8[mapDirAt(head)] = dir;
      m.slotI32[mapOwnerAt(head)] = owner;
      m.slotU16[headOffsetAt(head)] = slotOffset;
      Atomics.store(m.slotI32, mapSizeAt(head), mappingSize); // publishes the mapping
      return slotIndex;
    } finally {
      release(c, word + AREA_LOCK);
    }
  }

  /**
   * First half of an unmap for callers that copy back themselves (the copy engine):
   * validates (tlbAddr, size, dir, owner) and takes the mapping out of reach of any
   * other unmap or sync (mapSize -> 0), so that a concurrent double unmap cannot
   * free it twice. Returns a handle (the head slot) for {@link mappedOrigAddr} and
   * {@link finishUnmap}, which the caller must call. Throws and changes nothing on error.
   */
  beginUnmap(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): number {
    const head = this.headOfAddress(tlbAddr, owner);
    if (this.headTlbAddr(head) !== tlbAddr) {
      throw this.notMapped(tlbAddr, 'is inside a mapping, not its start');
    }
    const mapSize = Atomics.load(this.m.slotI32, mapSizeAt(head));
    if (mapSize <= 0) throw this.notMapped(tlbAddr, 'was unmapped concurrently');
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw invalidArg(`size ${String(size)} must be a positive integer`, { size });
    }
    if (size > mapSize) {
      throw new MediatorError(
        'SWIOTLB_BUFFER_OVERFLOW',
        `Buffer overflow detected. Allocation size: ${mapSize}. Mapping size: ${size}.`,
        { tlbAddr, size, mapSize },
      );
    }
    this.checkDirection(dir, head);
    if (Atomics.compareExchange(this.m.slotI32, mapSizeAt(head), mapSize, 0) !== mapSize) {
      throw this.notMapped(tlbAddr, 'was unmapped concurrently');
    }
    return head;
  }

  /** The original address of the mapping whose unmap {@link beginUnmap} began. */
  mappedOrigAddr(head: number): number {
    return this.m.slotF64[origAddrAt(head)]!;
  }

  /** swiotlb_release_slots() for a mapping whose unmap {@link beginUnmap} began. */
  finishUnmap(head: number): void {
    const m = this.m;
    const c = m.control;
    const offset = m.slotU16[headOffsetAt(head)]!;
    const index = head - m.slotU8[padSlotsAt(head)]!;
    const nslots = nrSlots(m.slotI32[allocSizeAt(index)]! + offset);
    const word = Math.floor(index / this.geometry.areaNslabs) * AREA_STRIDE;
    if (acquire(c, word + AREA_LOCK)) Atomics.add(c, word + AREA_CONTENDED, 1);
    try {
      markFree(m.usedBits, index, nslots);
      for (let i = index + nslots - 1; i >= index; i--) m.slotHead[i] = -1;
      // Set on the first and the head slot only (see layout.ts).
      m.slotI32[allocSizeAt(index)] = 0;
      m.slotF64[origAddrAt(head)] = INVALID_PHYS_ADDR;
      m.slotU8[padSlotsAt(head)] = 0;
      m.slotU8[mapDirAt(head)] = 0;
      m.slotU16[headOffsetAt(head)] = 0;
      m.slotI32[mapOwnerAt(head)] = 0;
      c[word + AREA_USED] = c[word + AREA_USED]! - nslots;
      c[word + AREA_UNMAPS] = c[word + AREA_UNMAPS]! + 1;
    } finally {
      release(c, word + AREA_LOCK);
    }
    Atomics.sub(c, this.g + G_TOTAL_USED, nslots);
  }

  /** The head slot of the live mapping of `owner` that contains `addr`, or SWIOTLB_NOT_MAPPED. */
  private headOfAddress(addr: number, owner: number): number {
    if (!Number.isSafeInteger(addr) || !this.contains(addr)) {
      throw this.notMapped(addr, 'is outside the pool');
    }
    const slot = Math.floor((addr - this.geometry.base) / IO_TLB_SIZE);
    const head = this.m.slotHead[slot]!;
    if (
      head < 0 ||
      head >= this.geometry.nslabs ||
      Atomics.load(this.m.slotI32, mapSizeAt(head)) <= 0
    ) {
      throw this.notMapped(addr, 'is not mapped');
    }
    const headTlb = this.headTlbAddr(head);
    if (addr < headTlb) throw this.notMapped(addr, 'is in the padding before a mapping');
    if (this.m.slotI32[mapOwnerAt(head)] !== owner)
      throw this.notMapped(addr, `is not mapped by owner ${owner}`);
    return head;
  }

  private headTlbAddr(head: number): number {
    return this.geometry.base + head * IO_TLB_SIZE + this.m.slotU16[headOffsetAt(head)]!;
  }

  private checkDirection(dir: DmaDirection, head: number): void {
    const mapped = this.m.slotU8[mapDirAt(head)]!;
    if (!isValidMappingDirection(dir)) {
      throw new MediatorError(
        'SWIOTLB_INVALID_DIRECTION',
        `invalid DMA direction ${directionName(dir)}`,
        {
          dir,
        },
      );
    }
    if (mapped !== Dir.BIDIRECTIONAL && dir !== mapped) {
      throw new MediatorError(
        'SWIOTLB_INVALID_DIRECTION',
        `direction ${directionName(dir)} differs from the mapping's direction ${directionName(mapped)}`,
        { dir, mapped },
      );
    }
  }

  private checkArea(area: number): void {
    if (!Number.isInteger(area) || area < 0 || area >= this.geometry.nareas) {
      throw invalidArg(
        `area ${String(area)} must be an integer from 0 to ${this.geometry.nareas - 1}`,
        {
          area,
        },
      );
    }
  }

  private checkMapArgs(
    origAddr: number,
    size: number,
    dir: DmaDirection,
    minAlignMask: number,
    allocAlignMask: number,
    area: number,
    owner: number,
  ): void {
    try {
      if (!Number.isInteger(owner) || owner < 0 || owner > 0x7fff_ffff) {
        throw invalidArg(`owner ${String(owner)} must be a non-negative 31-bit integer`, { owner });
      }
      if (!Number.isSafeInteger(origAddr) || origAddr < 0) {
        throw invalidArg(
          `original address ${String(origAddr)} must be a non-negative integer below 2^53`,
          {
            origAddr,
          },
        );
      }
      if (!Number.isSafeInteger(size) || size <= 0) {
        throw invalidArg(`size ${String(size)} must be a positive integer`, { size });
      }
      if (!Number.isSafeInteger(origAddr + size)) {
        throw invalidArg('original address + size exceeds 2^53', { origAddr, size });
      }
      if (!isMask(minAlignMask)) {
        throw invalidArg(`min_align_mask ${String(minAlignMask)} must be 2^k - 1 below 2^32`, {
          minAlignMask,
        });
      }
      if (!isMask(allocAlignMask)) {
        throw invalidArg(`alloc_align_mask ${String(allocAlignMask)} must be 2^k - 1 below 2^32`, {
          allocAlignMask,
        });
      }
      if (!isValidMappingDirection(dir)) {
        throw new MediatorError(
          'SWIOTLB_INVALID_DIRECTION',
          `invalid DMA direction ${directionName(dir)}`,
          {
            dir,
          },
        );
      }
      this.checkArea(area);
    } catch (err) {
      this.countFailure('invalid');
      throw err;
    }
  }

  private tooLargeError(size: number, minAlignMask: number, allocSize?: number): MediatorError {
    const limit = this.maxMappingSize(minAlignMask);
    const why =
      allocSize === undefined
        ? ''
        : ` (${allocSize} bytes once aligned, more than one ${IO_TLB_SEGSIZE}-slot segment)`;
    return new MediatorError(
      'SWIOTLB_MAPPING_TOO_LARGE',
      `mapping of ${size} bytes exceeds the max mapping size of ${limit} bytes${why}`,
      { size, limit, allocSize },
    );
  }

  private notMapped(addr: number, why: string): MediatorError {
    const hex = Number.isSafeInteger(addr) && addr >= 0 ? `0x${addr.toString(16)}` : String(addr);
    return new MediatorError('SWIOTLB_NOT_MAPPED', `address ${hex} ${why}`, { addr });
  }

  /** inc_used_and_hiwater(): total_used += nslots; raise used_hiwater to it. */
  private incUsedAndHiwater(nslots: number): void {
    const c = this.m.control;
    const newUsed = Atomics.add(c, this.g + G_TOTAL_USED, nslots) + nslots;
    let old = Atomics.load(c, this.g + G_HIWATER);
    while (newUsed > old) {
      const seen = Atomics.compareExchange(c, this.g + G_HIWATER, old, newUsed);
      if (seen === old) break;
      old = seen;
    }
  }
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** swiotlb_init_io_tlb_pool(): every slot free (usedBits starts zeroed). */
function initMetadata(m: MetadataViews, geometry: Geometry): void {
  m.slotHead.fill(-1);
  for (let i = 0; i < geometry.nslabs; i++) m.slotF64[origAddrAt(i)] = INVALID_PHYS_ADDR;
}
