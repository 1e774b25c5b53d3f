import { threadId } from 'node:worker_threads';
import { MediatorError } from '../errors.js';
import { acquire, release } from './area-lock.js';
import type { Bouncer } from './bouncer.js';
import {
  DmaDirection as Dir,
  type DmaDirection,
  directionName,
  IO_TLB_SEGSIZE,
  IO_TLB_SIZE,
  isValidMappingDirection,
  PAGE_SIZE,
} from './constants.js';
import { maxMappingSize } from './dma-rules.js';
import { type Geometry, pageAlign } from './geometry.js';
import { K6_1, K6_10, type KernelCode, type KernelVersion, kernelCode } from './kernel.js';
import {
  AREA_CONTENDED,
  AREA_INDEX,
  AREA_LOCK,
  AREA_MAPS,
  AREA_STRIDE,
  AREA_UNMAPS,
  AREA_USED,
  allocSizeAt,
  G_EXCLUSIVE,
  G_FAIL_FULL,
  G_FAIL_INVALID,
  G_FAIL_KERNEL,
  G_FAIL_TOO_LARGE,
  G_HIWATER,
  G_PLACEMENT,
  G_SYNCS,
  G_TAIL_EXACT,
  G_TOTAL_USED,
  headOffsetAt,
  INVALID_PHYS_ADDR,
  type MetadataViews,
  mapDirAt,
  mapOwnerAt,
  mapSizeAt,
  metadataViews,
  noHintAt,
  origAddrAt,
  padSlotsAt,
} from './layout.js';
import { MapPlan, nrSlots, planAlloc, planMap, planMap610, planMapAllocSize } from './plan.js';
import {
  allocFullError as allocFullErrorOf,
  allocTooLargeError,
  kernelDefectError,
  overflowError,
  poolFullError,
  tooLargeError,
  unalignedAllocError,
} from './pool-errors.js';
import { readStats } from './pool-stats.js';
import type {
  AllocOptions,
  MapFailureReason,
  MapOptions,
  PoolStats,
  SharedPool,
} from './pool-types.js';
import { findWrapped, NOT_FOUND, skipsCandidate } from './search.js';
import { freeRun, markFree, markPhantom, markUsed } from './slot-bitmap.js';
import {
  checkArea,
  checkMapArgs,
  checkMask,
  checkOwner,
  checkSize,
  invalidArg,
  invalidDirection,
  notMapped,
} from './validate.js';
import {
  PLACEMENT_WARM,
  type Placement,
  placementCode,
  warmFind,
  warmPush,
  warmTop,
} from './warm.js';

/**
 * A swiotlb pool (struct io_tlb_pool) in shared memory, following one kernel
 * line's rules (kernel.ts, plan.ts, search.ts). Several threads may each hold a
 * handle on the same pool (see {@link SwiotlbPool.attach}) and map and unmap
 * concurrently; each area's slots are guarded by that area's lock.
 *
 * Slots and segments (the kernel's layout; one segment = 128 slots = 256 KiB):
 *
 *   slot:    0    1    2  ...  127 | 128  129 ... 255 | ...
 *   list:  128  127  126  ...    1 | 128  127 ...   1 | ...   (fresh pool)
 *   area:  [ area 0: slots 0 .. area_nslabs-1 ][ area 1 ... ]
 *
 * Invariants (checked by test/swiotlb.property.test.ts):
 * - list[s] = number of free slots from s up to the first used slot, the segment
 *   end or the pool's end, whichever is nearest; list[s] = 0 iff s is used. (The
 *   kernel stores list[]; here it is computed from a used-slot bitmap, slot-bitmap.ts.)
 * - a mapping's slots are contiguous and lie in one segment and one area;
 * - the sum of area used = TOTAL_USED = number of slots with list = 0.
 *
 * An exclusive pool (PoolOptions.exclusive) has one handle, the one that created
 * it, and nobody can attach: with no other mapper, its map and unmap take no area
 * lock and make no atomic access (each is a call into V8's Atomics builtins, about
 * a hundred instructions; docs/performance.md). Same placements, same counters.
 *
 * Placement (the pool's `placement`, warm.ts): `linux` is the kernel's search
 * alone; `warm` looks first in the area's ring of runs freed lately (pushed by
 * finishUnmap() under the same lock), then runs the kernel's search. Either way
 * a run is placed only where the pool's kernel profile would place it from some
 * cursor position, under the area's lock, with no allocation.
 *
 * This class is the allocator; the map/unmap/sync API with copies is its subclass
 * SwiotlbPool (pool.ts), which is what callers create.
 */
export class SwiotlbAllocator {
  readonly geometry: Geometry;
  /** The kernel line whose rules this pool follows. */
  readonly kernel: KernelVersion;
  /** The pool's bytes, indexed by (tlb_addr - base). */
  readonly data: Uint8Array;
  /** Default starting area of this handle. */
  readonly area: number;
  /** The copy done at map, unmap and sync (pool.ts). */
  readonly bouncer: Bouncer;
  private readonly shared: SharedPool;
  private readonly m: MetadataViews;
  private readonly g: number;
  private readonly k: KernelCode;
  /** Scratch for one request: a map allocates nothing (a handle is used by one thread). */
  private readonly plan = new MapPlan();
  /**
   * Scratch for one unmap or sync: what {@link headOfAddress} read of the mapping
   * it found (its first address, and its mapSize, read once), so that the caller
   * reads neither again.
   */
  private readonly found = { headTlb: 0, mapSize: 0 };
  /** The pool's placement is `warm` (G_PLACEMENT, set when the pool was created). */
  private readonly warm: boolean;
  /** The pool is exclusive (G_EXCLUSIVE): this handle is its only mapper. */
  private readonly isExclusive: boolean;
  /** The last segment is partial (a restricted pool's, 6.1's list[] counting past it). */
  private readonly partialTail: boolean;

  protected constructor(shared: SharedPool, bouncer: Bouncer, area: number | undefined) {
    this.shared = shared;
    this.geometry = shared.geometry;
    this.kernel = shared.kernel;
    this.k = kernelCode(shared.kernel);
    this.data = new Uint8Array(shared.data);
    this.m = metadataViews(shared.meta, shared.geometry);
    this.g = this.m.globalBase;
    this.warm = this.m.control[this.g + G_PLACEMENT] === PLACEMENT_WARM;
    this.isExclusive = this.m.control[this.g + G_EXCLUSIVE] === 1;
    this.partialTail = this.geometry.nslabs % IO_TLB_SEGSIZE !== 0;
    this.bouncer = bouncer;
    const defaultArea = area ?? threadId % this.geometry.nareas;
    checkArea(defaultArea, this.geometry.nareas);
    this.area = defaultArea;
  }

  /** Whether the pool is exclusive (PoolOptions.exclusive): this handle is its only mapper. */
  get exclusive(): boolean {
    return this.isExclusive;
  }

  /** The pool's placement policy (warm.ts): `linux` (the kernel's search) or `warm`. */
  get placement(): Placement {
    return this.warm ? 'warm' : 'linux';
  }

  /** The buffers to pass (in workerData or task data) to another thread that attaches. */
  share(): SharedPool {
    return this.shared;
  }

  /**
   * swiotlb_max_mapping_size(): 256 KiB less roundup(min_align_mask, 2 KiB) when a
   * mask is set. What drivers split their requests by (dma_max_mapping_size()); the
   * map path never compares with it, and neither does {@link tryAllocate}.
   */
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
  // Placement without copies, for callers that copy elsewhere (the copy engine)
  // ---------------------------------------------------------------------------

  /**
   * Finds and takes slots as swiotlb_tbl_map_single() + swiotlb_find_slots() do
   * under the pool's kernel, records orig_addr, copies nothing. Returns the bounce
   * address, or -1 when no area has room (the caller decides whether that is an
   * error or a wait; failure counters do not move here, see {@link countFailure}).
   * @throws SWIOTLB_MAPPING_TOO_LARGE (a search for more than one segment, padding
   *   included), SWIOTLB_INVALID_ARGUMENT, SWIOTLB_INVALID_DIRECTION,
   *   SWIOTLB_KERNEL_WOULD_HANG, SWIOTLB_KERNEL_OVERRUN
   */
  tryAllocate(origAddr: number, size: number, dir: DmaDirection, opts: MapOptions = {}): number {
    return this.allocateStreaming(origAddr, size, dir, opts, opts.area ?? this.area, false);
  }

  /**
   * {@link tryAllocate} in one area only (swiotlb_search_pool_area() alone), for
   * the growable-pool model, which orders areas and pools itself. `opts.area` is ignored.
   */
  tryAllocateArea(
    area: number,
    origAddr: number,
    size: number,
    dir: DmaDirection,
    opts: MapOptions = {},
  ): number {
    return this.allocateStreaming(origAddr, size, dir, opts, area, true);
  }

  /**
   * The map of {@link tryAllocate}: validation, the kernel's plan (plan.ts), then
   * the areas from `startArea` (or that one alone). One body on purpose: the hot
   * path, compiled as one unit (measured: split into helpers, the engine stopped
   * inlining the plan and a 4 KiB map+unmap got slower).
   */
  private allocateStreaming(
    origAddr: number,
    size: number,
    dir: DmaDirection,
    opts: MapOptions,
    startArea: number,
    oneArea: boolean,
  ): number {
    const owner = opts.owner ?? 0;
    const minAlignMask = opts.minAlignMask ?? 0;
    const allocAlignMask = opts.allocAlignMask ?? 0;
    const allocSize = opts.allocSize;
    const nareas = this.geometry.nareas;
    try {
      checkMapArgs(
        origAddr,
        size,
        dir,
        minAlignMask,
        allocAlignMask,
        allocSize,
        this.k !== K6_10,
        startArea,
        nareas,
        owner,
      );
    } catch (err) {
      this.countFailure('invalid');
      throw err;
    }
    const p = this.plan;
    if (this.k === K6_10) planMap610(p, origAddr, size, minAlignMask, allocAlignMask);
    else planMapAllocSize(this.k, p, origAddr, minAlignMask, allocAlignMask, allocSize ?? size);
    // The only size the kernel refuses: a search for more than one segment, which no
    // list[] can satisfy. swiotlb_max_mapping_size() is advice to drivers (via
    // dma_max_mapping_size()); neither swiotlb_map() nor swiotlb_tbl_map_single()
    // compares against it (6.1.192, 6.12.117), so a larger map is searched for.
    if (p.nslots > IO_TLB_SEGSIZE) throw this.beyondSegment(size, p, origAddr, startArea, oneArea);
    const warm = this.warm && opts.kernelSearch !== true;
    let a = startArea;
    do {
      const slot = this.searchArea(a, origAddr, origAddr, size, dir, owner, p, warm);
      if (slot >= 0) {
        this.incUsedAndHiwater(p.nslots);
        return this.geometry.base + (slot + p.padSlots) * IO_TLB_SIZE + p.headOffset;
      }
      if (slot !== NOT_FOUND) throw this.kernelDefect(slot, a, p);
      if (++a >= nareas) a = 0;
    } while (!oneArea && a !== startArea);
    return -1;
  }

  /**
   * Slots a map of these arguments takes under the pool's kernel (nr_slots() of
   * the size it searches for, padding included). Validates nothing.
   */
  mapSlots(origAddr: number, size: number, opts: MapOptions = {}): number {
    return this.planOf(origAddr, size, opts).nslots;
  }

  /**
   * The alloc_size swiotlb_bounce() reads at a map's bounce address: the bytes an
   * unmap or a sync from there may copy before the kernel warns "Buffer overflow
   * detected" and copies that many instead. 6.12.117 swiotlb_search_pool_area()
   * sets slots[i].alloc_size = alloc_size - (offset + ((i - slot_index) <<
   * IO_TLB_SHIFT)), and the bounce address lies pad_slots after slot_index. The
   * mapping size, unless 6.1/6.6's alloc_size or 6.10's alloc_align_mask padding
   * makes it more. Validates nothing.
   */
  bounceLimit(origAddr: number, size: number, opts: MapOptions = {}): number {
    const p = this.planOf(origAddr, size, opts);
    return p.searchSize - p.headOffset - p.padSlots * IO_TLB_SIZE;
  }

  /** The kernel's plan of a map of these arguments, in the shared plan object. Validates nothing. */
  private planOf(origAddr: number, size: number, opts: MapOptions): MapPlan {
    const p = this.plan;
    planMap(
      this.k,
      p,
      origAddr,
      size,
      opts.minAlignMask ?? 0,
      opts.allocAlignMask ?? 0,
      opts.allocSize ?? size,
    );
    return p;
  }

  /**
   * dma_alloc_coherent() of a device whose memory is this pool: dma_direct_alloc()
   * page-aligns `size`, swiotlb_alloc() searches with orig_addr 0 and the kernel's
   * alignment (plan.ts planAlloc()). Returns the page-aligned pool address, or -1
   * when no area has room (swiotlb_alloc() returns NULL). Free it with {@link free}.
   * @throws SWIOTLB_MAPPING_TOO_LARGE (more than one segment), SWIOTLB_INVALID_ARGUMENT,
   *   SWIOTLB_KERNEL_OVERRUN
   */
  tryAlloc(size: number, opts: AllocOptions = {}): number {
    const startArea = opts.area ?? this.area;
    const owner = opts.owner ?? 0;
    const p = this.prepareAlloc(size, opts, startArea, owner);
    const nareas = this.geometry.nareas;
    const warm = this.warm && opts.kernelSearch !== true;
    let a = startArea;
    do {
      const slot = this.searchArea(a, 0, INVALID_PHYS_ADDR, p.searchSize, Dir.NONE, owner, p, warm);
      if (slot >= 0) return this.placed(slot, p);
      if (slot !== NOT_FOUND) throw this.kernelDefect(slot, a, p);
      if (++a >= nareas) a = 0;
    } while (a !== startArea);
    return -1;
  }

  /** {@link tryAlloc} in one area only, for the growable-pool model. `opts.area` is ignored. */
  tryAllocArea(area: number, size: number, opts: AllocOptions = {}): number {
    const owner = opts.owner ?? 0;
    const p = this.prepareAlloc(size, opts, area, owner);
    const warm = this.warm && opts.kernelSearch !== true;
    const slot = this.searchArea(
      area,
      0,
      INVALID_PHYS_ADDR,
      p.searchSize,
      Dir.NONE,
      owner,
      p,
      warm,
    );
    if (slot >= 0) return this.placed(slot, p);
    if (slot !== NOT_FOUND) throw this.kernelDefect(slot, area, p);
    return -1;
  }

  /** Slots a coherent allocation of `size` bytes takes under the pool's kernel. */
  allocSlots(size: number): number {
    planAlloc(this.k, this.plan, size, 0);
    return this.plan.nslots;
  }

  /**
   * {@link tryAlloc}, or SWIOTLB_POOL_FULL when no area has room (dma_alloc_coherent()
   * fails; the kernel logs nothing of its own there).
   */
  alloc(size: number, opts: AllocOptions = {}): number {
    const addr = this.tryAlloc(size, opts);
    if (addr >= 0) return addr;
    this.countFailure('full');
    throw this.allocFullError(size, opts.minAlignMask ?? 0, this.geometry.nslabs, this.used());
  }

  /** The error of a coherent allocation that found no room (the kernel logs nothing there). */
  allocFullError(size: number, minAlignMask: number, total: number, used: number): MediatorError {
    planAlloc(this.k, this.plan, size, minAlignMask);
    return allocFullErrorOf(this.plan, total, used);
  }

  /**
   * dma_free_coherent() -> swiotlb_free(): releases an allocation of {@link alloc}.
   * `size` is the size it was allocated with (the DMA-API debug check); an
   * address that is not a live allocation of `owner` changes nothing.
   * @throws SWIOTLB_NOT_MAPPED, SWIOTLB_INVALID_ARGUMENT
   */
  free(tlbAddr: number, size: number, owner = 0): void {
    const head = this.headOfAddress(tlbAddr, owner);
    const { headTlb, mapSize: allocated } = this.found;
    if (headTlb !== tlbAddr) {
      throw notMapped(tlbAddr, 'is inside an allocation, not its start');
    }
    if (this.m.slotU8[mapDirAt(head)] !== Dir.NONE) {
      throw notMapped(tlbAddr, 'is a streaming mapping: unmap it, do not free it');
    }
    checkSize(size);
    if (pageAlign(size) !== allocated) {
      throw invalidArg(
        `free of ${size} bytes, but the allocation at 0x${tlbAddr.toString(16)} has ${allocated}`,
        { size, allocated },
      );
    }
    if (!this.takeMapping(head, allocated)) throw notMapped(tlbAddr, 'was freed concurrently');
    this.finishUnmap(head);
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
    const { headTlb, mapSize } = this.found;
    // Read once, after the mapSize that headOfAddress read: a concurrent unmap of
    // the same mapping (a caller bug) must read as "not mapped", never as an
    // original address of -1.
    const origAddr = this.m.slotF64[origAddrAt(head)]!;
    if (origAddr < 0) {
      throw this.m.slotU8[mapDirAt(head)] === Dir.NONE
        ? notMapped(tlbAddr, 'is a coherent allocation: it is never synced')
        : notMapped(tlbAddr, 'was unmapped concurrently');
    }
    checkSize(size);
    this.checkDirection(dir, head);
    const within = tlbAddr - headTlb;
    if (within + size > mapSize) throw overflowError(tlbAddr, size, mapSize - within);
    return origAddr + within;
  }

  /** Counts a map failure that a caller of {@link tryAllocate} decided is final. */
  countFailure(reason: MapFailureReason): void {
    const word =
      reason === 'full'
        ? G_FAIL_FULL
        : reason === 'too_large'
          ? G_FAIL_TOO_LARGE
          : reason === 'invalid'
            ? G_FAIL_INVALID
            : G_FAIL_KERNEL;
    Atomics.add(this.m.control, this.g + word, 1);
  }

  /** Counts one sync (pool.ts). */
  countSync(): void {
    Atomics.add(this.m.control, this.g + G_SYNCS, 1);
  }

  /**
   * The error a full pool gives, in the kernel's words, for an allocation of
   * `allocSize` bytes. `total` and `used` default to this pool's (a growable pool
   * passes the sums over its pools: mem->nslabs and mem_used()).
   */
  fullError(
    allocSize: number,
    total = this.geometry.nslabs,
    used = Atomics.load(this.m.control, this.g + G_TOTAL_USED),
  ): MediatorError {
    return poolFullError(allocSize, total, used);
  }

  /**
   * The size the pool's kernel prints for a full pool: 6.10 ALIGN(size + offset,
   * alloc_align_mask + 1); 6.1 and 6.6 the alloc_size (the mapping size by default).
   */
  paddedSize(origAddr: number, size: number, opts: MapOptions = {}): number {
    return this.planOf(origAddr, size, opts).fullSize;
  }

  // ---------------------------------------------------------------------------
  // Stats (debugfs)
  // ---------------------------------------------------------------------------

  stats(): PoolStats {
    return readStats(this.m, this.geometry);
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
  // Unmap in two halves (the copy engine copies back in between)
  // ---------------------------------------------------------------------------

  /**
   * First half of an unmap for callers that copy back themselves (the copy engine):
   * validates (tlbAddr, size, dir, owner) and takes the mapping out of reach of any
   * other unmap or sync (mapSize -> 0), so that a concurrent double unmap cannot
   * free it twice. Returns a handle (the head slot) for {@link mappedOrigAddr} and
   * {@link finishUnmap}, which the caller must call. Throws and changes nothing on error.
   */
  beginUnmap(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): number {
    const head = this.headOfAddress(tlbAddr, owner);
    const found = this.found;
    if (found.headTlb !== tlbAddr) {
      throw notMapped(tlbAddr, 'is inside a mapping, not its start');
    }
    const mapSize = found.mapSize;
    checkSize(size);
    if (size > mapSize) throw overflowError(tlbAddr, size, mapSize);
    this.checkDirection(dir, head);
    if (!this.takeMapping(head, mapSize)) throw notMapped(tlbAddr, 'was unmapped concurrently');
    return head;
  }

  /** The original address of the mapping whose unmap {@link beginUnmap} began. */
  mappedOrigAddr(head: number): number {
    return this.m.slotF64[origAddrAt(head)]!;
  }

  /**
   * swiotlb_release_slots() for a mapping whose unmap {@link beginUnmap} began (or
   * an allocation {@link free} took): index = head - pad_slots, nslots =
   * nr_slots(alloc_size of that slot + tlb_addr & min_align_mask & 2047). The same
   * in every profile (6.1 has no pad_slots: it is 0 there).
   */
  finishUnmap(head: number): void {
    const m = this.m;
    const c = m.control;
    const offset = m.slotU16[headOffsetAt(head)]!;
    const index = head - m.slotU8[padSlotsAt(head)]!;
    const nslots = nrSlots(m.slotI32[allocSizeAt(index)]! + offset);
    const area = Math.floor(index / this.geometry.areaNslabs);
    const word = area * AREA_STRIDE;
    const locked = !this.isExclusive;
    if (locked && acquire(c, word + AREA_LOCK)) Atomics.add(c, word + AREA_CONTENDED, 1);
    try {
      markFree(m.usedBits, index, nslots);
      // A run the kernel's search placed on request goes back to that search only
      // (noHint): on the ring it would sit above the runs that warm maps take back.
      if (this.warm) {
        if (m.slotU8[noHintAt(head)] === 0) warmPush(c, m.hints, area, index, nslots);
        else m.slotU8[noHintAt(head)] = 0;
      }
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
      if (locked) release(c, word + AREA_LOCK);
    }
    if (locked) Atomics.sub(c, this.g + G_TOTAL_USED, nslots);
    else c[this.g + G_TOTAL_USED] = c[this.g + G_TOTAL_USED]! - nslots;
  }

  /**
   * mapSize of the mapping at `head`, read once (an atomic load unless the pool is
   * exclusive): a concurrent unmap must read as 0, never as half a value.
   */
  private mapSizeOf(head: number): number {
    const at = mapSizeAt(head);
    return this.isExclusive ? this.m.slotI32[at]! : Atomics.load(this.m.slotI32, at);
  }

  /**
   * Takes the mapping at `head` out of reach of any other unmap, sync or free
   * (mapSize -> 0) if its mapSize is still `mapSize`; false when another thread
   * got there first (a compare-and-exchange unless the pool is exclusive).
   */
  private takeMapping(head: number, mapSize: number): boolean {
    const at = mapSizeAt(head);
    if (!this.isExclusive)
      return Atomics.compareExchange(this.m.slotI32, at, mapSize, 0) === mapSize;
    this.m.slotI32[at] = 0;
    return true;
  }

  // ---------------------------------------------------------------------------
  // Internals
  // ---------------------------------------------------------------------------

  /** Validates a coherent allocation and fills the plan. */
  private prepareAlloc(size: number, opts: AllocOptions, area: number, owner: number): MapPlan {
    const minAlignMask = opts.minAlignMask ?? 0;
    try {
      checkOwner(owner);
      checkSize(size);
      checkMask(minAlignMask, 'min_align_mask');
      checkArea(area, this.geometry.nareas);
    } catch (err) {
      this.countFailure('invalid');
      throw err;
    }
    if (this.k === K6_1 && this.geometry.base % PAGE_SIZE !== 0) {
      this.countFailure('kernel_defect');
      throw unalignedAllocError(this.geometry.base);
    }
    const p = this.plan;
    planAlloc(this.k, p, size, minAlignMask);
    if (p.nslots > IO_TLB_SEGSIZE) {
      this.countFailure('too_large');
      throw allocTooLargeError(size, p);
    }
    return p;
  }

  /**
   * One area's search and, when found, the bookkeeping of swiotlb_search_pool_area()
   * and swiotlb_tbl_map_single(): marks the run used, moves the cursor past it,
   * writes the mapping's records. With `warm` (the pool's placement, unless the
   * map asked for the kernel's search) the area's hint ring is looked at first
   * (warm.ts; a run found there leaves the cursor alone). `searchOrig` is
   * what the search compares (0 for a coherent allocation), `recordOrig` what is
   * stored (INVALID for one).
   * Returns the first slot, NOT_FOUND, or 6.1's WOULD_HANG / OVERRUN.
   */
  private searchArea(
    areaIndex: number,
    searchOrig: number,
    recordOrig: number,
    mappingSize: number,
    dir: number,
    owner: number,
    p: MapPlan,
    warm: boolean,
  ): number {
    const c = this.m.control;
    const used = this.m.usedBits;
    const { areaNslabs, base, nslabs } = this.geometry;
    const nslots = p.nslots;
    const word = areaIndex * AREA_STRIDE;
    const locked = !this.isExclusive;
    if (locked && acquire(c, word + AREA_LOCK)) Atomics.add(c, word + AREA_CONTENDED, 1);
    try {
      if (nslots > areaNslabs - c[word + AREA_USED]!) return NOT_FOUND;
      const slotBase = areaIndex * areaNslabs;
      const cursor = c[word + AREA_INDEX]!;
      // warm: a run freed lately, taken as the kernel's search would take it from
      // there (warm.ts); else the kernel's search from the cursor, which only it moves.
      let slotIndex = NOT_FOUND;
      if (warm) {
        // The usual case first, inlined here (warmTop); the walk is a call (warm.ts).
        const h = this.m.hints;
        slotIndex = warmTop(c, h, used, areaIndex, base, searchOrig, p);
        if (slotIndex < 0) {
          slotIndex = warmFind(c, h, used, areaIndex, slotBase, base, nslabs, searchOrig, p);
        }
      }
      const hinted = slotIndex >= 0;
      if (!hinted && p.wrapSearch) {
        slotIndex = this.searchWrapped(slotBase, cursor, searchOrig, p);
        if (slotIndex < 0) return slotIndex;
      } else if (!hinted) {
        // swiotlb_search_pool_area() of 6.10 (and 6.6.y after 6.6.35), from the cursor:
        //   for (slots_checked = 0; slots_checked < area_nslabs; ) {
        //     if ((tlb_addr & alloc_align_mask) || (orig_addr &&
        //         (tlb_addr & iotlb_align_mask) != (orig_addr & iotlb_align_mask)))
        //       { index = wrap(index + 1); slots_checked++; continue; }
        //     if (slots[slot_index].list >= nslots) goto found;
        //     index = wrap(index + stride); slots_checked += stride;
        //   }
        // Written here rather than in search.ts: inlined, the hot path measured faster.
        const allocAlignMask = p.allocAlignMask;
        const iotlbAlignMask = p.iotlbAlignMask;
        const origBits = (searchOrig & iotlbAlignMask) >>> 0;
        const stride = p.stride;
        let index = cursor;
        for (let checked = 0; checked < areaNslabs; ) {
          const candidate = slotBase + index;
          const tlbAddr = base + candidate * IO_TLB_SIZE;
          if (skipsCandidate(tlbAddr, allocAlignMask, iotlbAlignMask, searchOrig, origBits)) {
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
        if (slotIndex < 0) return NOT_FOUND;
      }

      const m = this.m;
      const end = slotIndex + nslots;
      const index = slotIndex - slotBase;
      markUsed(used, slotIndex, nslots);
      // 6.1, a partial last segment: a run ending at the last slot ends list[]'s count
      // past it (findWrapped()).
      if (end === nslabs && p.wrapSearch && this.partialTail) c[this.g + G_TAIL_EXACT] = 1;
      // alloc_size of the first slot; the kernel's later slots are derived (layout.ts).
      m.slotI32[allocSizeAt(slotIndex)] = p.searchSize - p.headOffset;
      if (!hinted) c[word + AREA_INDEX] = index + nslots >= areaNslabs ? 0 : index + nslots;
      c[word + AREA_USED] = c[word + AREA_USED]! + nslots;
      c[word + AREA_MAPS] = c[word + AREA_MAPS]! + 1;

      // The mapping's own records (swiotlb_tbl_map_single() after find_slots).
      const head = slotIndex + p.padSlots;
      m.slotU8[padSlotsAt(head)] = p.padSlots;
      m.slotF64[origAddrAt(head)] = recordOrig;
      for (let i = head; i < end; i++) m.slotHead[i] = head;
      m.slotU8[mapDirAt(head)] = dir;
      // Set only where it is 1 (layout.ts): a linux pool's maps make no extra store.
      if (this.warm && !warm) m.slotU8[noHintAt(head)] = 1;
      m.slotI32[mapOwnerAt(head)] = owner;
      m.slotU16[headOffsetAt(head)] = p.headOffset;
      // Publishes the mapping (last, so that a thread that sees mapSize sees the rest).
      if (locked) Atomics.store(m.slotI32, mapSizeAt(head), mappingSize);
      else m.slotI32[mapSizeAt(head)] = mappingSize;
      return slotIndex;
    } finally {
      if (locked) release(c, word + AREA_LOCK);
    }
  }

  /** 6.1's walk from the cursor (search.ts findWrapped()), told whether list[] still counts past the pool's end. */
  private searchWrapped(slotBase: number, cursor: number, searchOrig: number, p: MapPlan): number {
    const { areaNslabs, base, nslabs } = this.geometry;
    const exact = this.m.control[this.g + G_TAIL_EXACT] !== 0;
    const used = this.m.usedBits;
    return findWrapped(used, base, slotBase, areaNslabs, nslabs, cursor, searchOrig, p, exact);
  }

  /**
   * The error of a streaming map whose search is for more than one segment
   * (p.nslots > IO_TLB_SEGSIZE): no slot's list[] reaches nslots, so the kernel's
   * search fails in every pool and it logs "swiotlb buffer is full"
   * (swiotlb_tbl_map_single(), 6.1.192 and 6.12.117; the dynamic
   * swiotlb_find_slots() of 6.12.117 returns -1 at once for alloc_size >
   * IO_TLB_SEGSIZE * IO_TLB_SIZE, before any search or growth).
   * SWIOTLB_MAPPING_TOO_LARGE, since no pool size places it. 6.1 walks its areas
   * first and may spin on the way (swiotlb_do_find_slots() without 7c3940bf81e5):
   * then SWIOTLB_KERNEL_WOULD_HANG, as for any other request it would spin on.
   * Kept out of the hot path.
   */
  private beyondSegment(
    size: number,
    p: MapPlan,
    origAddr: number,
    startArea: number,
    oneArea: boolean,
  ): MediatorError {
    if (this.k === K6_1) {
      const nareas = this.geometry.nareas;
      let a = startArea;
      do {
        // No run is ever found (a free run ends at its segment): NOT_FOUND or WOULD_HANG.
        const slot = this.searchArea(a, origAddr, origAddr, size, Dir.NONE, 0, p, false);
        if (slot >= 0) throw new Error(`a run of ${p.nslots} slots was found at slot ${slot}`);
        if (slot !== NOT_FOUND) return this.kernelDefect(slot, a, p);
        if (++a >= nareas) a = 0;
      } while (!oneArea && a !== startArea);
    }
    this.countFailure('too_large');
    return tooLargeError(size, p);
  }

  /** After a found run: inc_used_and_hiwater() and the bounce address. */
  private placed(slotIndex: number, p: MapPlan): number {
    this.incUsedAndHiwater(p.nslots);
    return this.geometry.base + (slotIndex + p.padSlots) * IO_TLB_SIZE + p.headOffset;
  }

  /** The error of a request the pool's kernel would never answer properly (6.1). */
  private kernelDefect(code: number, area: number, p: MapPlan): MediatorError {
    this.countFailure('kernel_defect');
    return kernelDefectError(code, this.kernel, area, p, this.geometry.nslabs);
  }

  /**
   * The head slot of the live mapping of `owner` that contains `addr`, or
   * SWIOTLB_NOT_MAPPED. Leaves the mapping's first address and its mapSize, read
   * once, in {@link found}.
   */
  private headOfAddress(addr: number, owner: number): number {
    if (!Number.isSafeInteger(addr) || !this.contains(addr)) {
      throw notMapped(addr, 'is outside the pool');
    }
    const m = this.m;
    const head = m.slotHead[Math.floor((addr - this.geometry.base) / IO_TLB_SIZE)]!;
    if (head < 0 || head >= this.geometry.nslabs) throw notMapped(addr, 'is not mapped');
    const mapSize = this.mapSizeOf(head);
    if (mapSize <= 0) throw notMapped(addr, 'is not mapped');
    const headTlb = this.headTlbAddr(head);
    if (addr < headTlb) throw notMapped(addr, 'is in the padding before a mapping');
    if (m.slotI32[mapOwnerAt(head)] !== owner) {
      throw notMapped(addr, `is not mapped by owner ${owner}`);
    }
    this.found.headTlb = headTlb;
    this.found.mapSize = mapSize;
    return head;
  }

  private headTlbAddr(head: number): number {
    return this.geometry.base + head * IO_TLB_SIZE + this.m.slotU16[headOffsetAt(head)]!;
  }

  private checkDirection(dir: DmaDirection, head: number): void {
    const mapped = this.m.slotU8[mapDirAt(head)]!;
    // The usual case, answered without a call: the mapping's own direction, which
    // is a valid one unless the mapping is a coherent allocation (NONE).
    if (dir === mapped && mapped !== Dir.NONE) return;
    if (mapped !== Dir.BIDIRECTIONAL && dir !== mapped) throw this.directionError(dir, head);
    if (!isValidMappingDirection(dir)) throw invalidDirection(dir);
  }

  /** Why `dir` does not fit the mapping at `head` (kept out of the hot path). */
  private directionError(dir: DmaDirection, head: number): MediatorError {
    const mapped = this.m.slotU8[mapDirAt(head)]!;
    if (mapped === Dir.NONE) {
      return notMapped(
        this.headTlbAddr(head),
        'is a coherent allocation: free it, never unmap or sync it',
      );
    }
    if (!isValidMappingDirection(dir)) return invalidDirection(dir);
    return new MediatorError(
      'SWIOTLB_INVALID_DIRECTION',
      `direction ${directionName(dir)} differs from the mapping's direction ${directionName(mapped)}`,
      { dir, mapped },
    );
  }

  /** inc_used_and_hiwater(): total_used += nslots; raise used_hiwater to it. */
  private incUsedAndHiwater(nslots: number): void {
    const c = this.m.control;
    if (this.isExclusive) {
      const used = c[this.g + G_TOTAL_USED]! + nslots;
      c[this.g + G_TOTAL_USED] = used;
      if (used > c[this.g + G_HIWATER]!) c[this.g + G_HIWATER] = used;
      return;
    }
    const newUsed = Atomics.add(c, this.g + G_TOTAL_USED, nslots) + nslots;
    let old = Atomics.load(c, this.g + G_HIWATER);
    while (newUsed > old) {
      const seen = Atomics.compareExchange(c, this.g + G_HIWATER, old, newUsed);
      if (seen === old) break;
      old = seen;
    }
  }
}

/**
 * swiotlb_init_io_tlb_pool(): every slot free; the missing slots of a partial
 * segment used. And the pool's placement policy and whether it is exclusive,
 * which every handle reads.
 */
export function initMetadata(
  m: MetadataViews,
  geometry: Geometry,
  placement: Placement,
  exclusive: boolean,
): void {
  m.control[m.globalBase + G_PLACEMENT] = placementCode(placement);
  m.control[m.globalBase + G_EXCLUSIVE] = exclusive ? 1 : 0;
  m.slotHead.fill(-1);
  for (let i = 0; i < geometry.nslabs; i++) m.slotF64[origAddrAt(i)] = INVALID_PHYS_ADDR;
  markPhantom(m.usedBits, geometry.nslabs);
}
