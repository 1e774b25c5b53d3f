import { isMediatorError, MediatorError } from '../errors.js';
import { type DmaDirection, IO_TLB_SEGSIZE, IO_TLB_SIZE, PAGE_SIZE } from './constants.js';
import {
  computeGeometry,
  type Geometry,
  type GeometryOptions,
  LOG_PREFIX,
  MAX_POOL_SLOTS,
} from './geometry.js';
import { DEFAULT_KERNEL, hasDynamicPools, isKernelVersion, type KernelVersion } from './kernel.js';
import { getOrder } from './plan.js';
import { SwiotlbPool } from './pool.js';
import type { AllocOptions, MapOptions, PoolStats } from './pool-types.js';
import { invalidArg, notMapped } from './validate.js';
import { DEFAULT_PLACEMENT, type Placement } from './warm.js';

/**
 * The default pool with CONFIG_SWIOTLB_DYNAMIC (6.6 and later), placement only:
 * what swiotlb_find_slots(), swiotlb_dyn_alloc() and swiotlb_del_transient() do
 * when the pool runs out. Each part is a SwiotlbPool of its own:
 *
 *   search order (mem->pools, list_add_rcu() puts the newest first):
 *     [ growth n ] -> ... -> [ growth 1 ] -> [ default pool ]
 *   per device, never searched for new requests:
 *     [ transient ] [ transient ] ...   one per mapping that found no room
 *
 * Rules (kernel/dma/swiotlb.c of 6.12.117; 6.6.y as noted):
 * - 6.10 searches area by area across the pools (swiotlb_search_area(): for
 *   i < default_nareas, every pool with more than i areas, area (cpu + i) &
 *   (nareas - 1)); 6.6.y searches pool by pool, each from its CPU's area round
 *   its areas (swiotlb_pool_find_slots(); the area-first order came later and
 *   is not in 6.6.y, whose 6.6.35 patches still patch swiotlb_area_find_slots()).
 * - A request that fits nowhere schedules one growth (schedule_work(&mem->dyn_alloc))
 *   and gets a transient pool of exactly nr_slots(alloc_size) slots in one area
 *   (swiotlb_alloc_pool(dev, nslabs, nslabs, 1, ...)); its unmap frees that pool
 *   (swiotlb_del_transient()). io_tlb_transient_nslabs counts their slots.
 * - A search for more than one segment: 6.10 returns -1 before anything else
 *   (`if (alloc_size > IO_TLB_SEGSIZE * IO_TLB_SIZE) return -1;`); 6.6.y, which
 *   lacks that line, fails it too but schedules a growth first
 *   (searchPoolFirstOrGrow() below).
 * - A growth adds a pool of default_nslabs slots in default_nareas areas, but at
 *   most SLABS_PER_PAGE << MAX_PAGE_ORDER = 2048 slots (4 MiB), with limit_nareas()
 *   (swiotlb_dyn_alloc() -> swiotlb_alloc_pool()); mem->nslabs grows by it.
 * - used counts every slot in use, transient ones included (inc_used_and_hiwater()
 *   runs in swiotlb_search_pool_area() for any pool).
 *
 * What the model simplifies (docs/kernels.md): the workqueue runs the growth
 * between two requests (in the kernel it runs later, so a burst may take more
 * transient pools than here); page allocations never fail below 1 GiB of pools in
 * all; pools sit at addresses after the default pool, each aligned to its
 * allocation order, and addresses are never reused.
 */

/** How the growable pool is asked for: a default pool (never a restricted one) and a kernel. */
export interface DynamicPoolOptions extends Omit<GeometryOptions, 'restricted'> {
  /**
   * '6.6' or '6.10' (6.1 has no CONFIG_SWIOTLB_DYNAMIC).
   * @default '6.10'
   */
  kernel?: KernelVersion;
  /**
   * Placement in every pool, growths and transient pools included (warm.ts).
   * @default 'linux'
   */
  placement?: Placement;
}

/** What a part of the growable pool is. */
export type DynamicPartKind = 'default' | 'growth' | 'transient';

export interface DynamicPartStats {
  kind: DynamicPartKind;
  base: number;
  nslabs: number;
  nareas: number;
  used: number;
}

export interface DynamicPoolStats extends PoolStats {
  /** Growths that ran (swiotlb_dyn_alloc()). */
  growths: number;
  /** A growth is scheduled and runs before the next request. */
  pending_growth: boolean;
  /** Every pool, search order first (growths newest first, the default pool), then the transient ones. */
  pools: DynamicPartStats[];
}

/** SLABS_PER_PAGE << MAX_PAGE_ORDER (4 KiB pages, MAX_PAGE_ORDER 10): the largest growth. */
const MAX_GROWTH_SLABS = (PAGE_SIZE / IO_TLB_SIZE) * 2 ** 10;

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** limit_nareas(). */
function limitNareas(nareas: number, nslots: number): number {
  return nslots < nareas * IO_TLB_SEGSIZE ? nslots / IO_TLB_SEGSIZE : nareas;
}

export class DynamicPool {
  readonly kernel: KernelVersion;
  readonly placement: Placement;
  /** The default pool (mem->defpool). */
  readonly defpool: SwiotlbPool;
  /** Lines the kernel logs along the way ("Failed to allocate new pool"). */
  readonly log: string[] = [];
  private readonly growth: SwiotlbPool[] = [];
  private readonly transient: SwiotlbPool[] = [];
  private pendingGrowth = false;
  private growths = 0;
  private nextAddr: number;
  private transientNslabs = 0;
  private hiwater = 0;
  private maps = 0;
  private unmaps = 0;
  private syncs = 0;

  constructor(opts: DynamicPoolOptions = {}) {
    const kernel = opts.kernel ?? DEFAULT_KERNEL;
    if (!isKernelVersion(kernel) || !hasDynamicPools(kernel)) {
      throw invalidArg(
        `kernel ${JSON.stringify(kernel)} has no CONFIG_SWIOTLB_DYNAMIC: growable pools need "6.6" or "6.10"`,
        { kernel },
      );
    }
    this.kernel = kernel;
    this.placement = opts.placement ?? DEFAULT_PLACEMENT;
    // Every pool of the model is exclusive: one thread maps (it counts in plain fields).
    this.defpool = SwiotlbPool.create({
      ...opts,
      restricted: false,
      kernel,
      area: 0,
      exclusive: true,
    });
    const g = this.defpool.geometry;
    this.nextAddr = g.base + g.bytes;
  }

  get geometry(): Geometry {
    return this.defpool.geometry;
  }

  /** mem->nslabs: the default pool and the growths (transient pools are not added). */
  nslabs(): number {
    return this.growth.reduce((n, p) => n + p.geometry.nslabs, this.defpool.geometry.nslabs);
  }

  /** total_used: every slot in use in every pool, transient ones included. */
  used(): number {
    let n = this.defpool.used();
    for (const p of this.growth) n += p.used();
    for (const p of this.transient) n += p.used();
    return n;
  }

  /**
   * swiotlb_tbl_map_single() on the growable pool. Returns the bounce address.
   * `opts.area` is the CPU (raw_smp_processor_id()): each pool takes its own area from it.
   */
  map(origAddr: number, size: number, dir: DmaDirection, opts: MapOptions = {}): number {
    const tlb = this.findSlots(
      opts.area,
      (pool, area) => pool.tryAllocateArea(area, origAddr, size, dir, opts),
      () => this.defpool.mapSlots(origAddr, size, opts),
    );
    if (tlb >= 0) return tlb;
    this.defpool.countFailure('full');
    throw this.defpool.fullError(
      this.defpool.paddedSize(origAddr, size, opts),
      this.nslabs(),
      this.used(),
    );
  }

  /**
   * swiotlb_alloc()'s search run on the growable pool. Not a path of the kernel:
   * dma_direct_alloc() calls swiotlb_alloc() only for a device whose io_tlb_mem is
   * for_alloc (a restricted pool: rmem_swiotlb_device_init(), 6.12.117), whose
   * can_grow stays false; the default pool serves streaming maps only. Here the
   * allocation is searched for as swiotlb_find_slots() would search the growable
   * pool (growth and transient pool included), for replays that place one.
   */
  alloc(size: number, opts: AllocOptions = {}): number {
    const tlb = this.findSlots(
      opts.area,
      (pool, area) => pool.tryAllocArea(area, size, opts),
      () => this.defpool.allocSlots(size),
    );
    if (tlb >= 0) return tlb;
    this.defpool.countFailure('full');
    throw this.defpool.allocFullError(size, opts.minAlignMask ?? 0, this.nslabs(), this.used());
  }

  unmap(tlbAddr: number, size: number, dir: DmaDirection, attrs = 0, owner = 0): void {
    const pool = this.poolOf(tlbAddr);
    pool.unmap(tlbAddr, size, dir, attrs, owner);
    this.unmaps++;
    this.dropIfTransient(pool);
  }

  free(tlbAddr: number, size: number, owner = 0): void {
    const pool = this.poolOf(tlbAddr);
    pool.free(tlbAddr, size, owner);
    this.unmaps++;
    this.dropIfTransient(pool);
  }

  syncForDevice(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    this.poolOf(tlbAddr).syncForDevice(tlbAddr, size, dir, owner);
    this.syncs++;
  }

  syncForCpu(tlbAddr: number, size: number, dir: DmaDirection, owner = 0): void {
    this.poolOf(tlbAddr).syncForCpu(tlbAddr, size, dir, owner);
    this.syncs++;
  }

  mapSlots(origAddr: number, size: number, opts: MapOptions = {}): number {
    return this.defpool.mapSlots(origAddr, size, opts);
  }

  bounceLimit(origAddr: number, size: number, opts: MapOptions = {}): number {
    return this.defpool.bounceLimit(origAddr, size, opts);
  }

  allocSlots(size: number): number {
    return this.defpool.allocSlots(size);
  }

  /** Which part holds `tlbAddr`: the default pool, a growth or a transient pool. */
  partOf(tlbAddr: number): DynamicPartKind {
    const pool = this.poolOf(tlbAddr);
    return pool === this.defpool ? 'default' : this.growth.includes(pool) ? 'growth' : 'transient';
  }

  /** Writing 0 to debugfs io_tlb_used_hiwater. */
  resetHiwater(): void {
    for (const p of [this.defpool, ...this.growth, ...this.transient]) p.resetHiwater();
    this.hiwater = 0;
  }

  stats(): DynamicPoolStats {
    const base = this.defpool.stats();
    const searched = [...this.growth, this.defpool];
    const failures = { ...base.map_failures };
    let largest = base.largest_free_run;
    for (const p of this.growth) {
      const s = p.stats();
      failures.full += s.map_failures.full;
      failures.too_large += s.map_failures.too_large;
      failures.invalid += s.map_failures.invalid;
      failures.kernel_defect += s.map_failures.kernel_defect;
      largest = Math.max(largest, s.largest_free_run);
    }
    const part = (kind: DynamicPartKind, p: SwiotlbPool): DynamicPartStats => ({
      kind,
      base: p.geometry.base,
      nslabs: p.geometry.nslabs,
      nareas: p.geometry.nareas,
      used: p.used(),
    });
    return {
      ...base,
      nslabs: this.nslabs(),
      used: this.used(),
      used_hiwater: this.hiwater,
      transient_nslabs: this.transientNslabs,
      largest_free_run: largest,
      map_failures: failures,
      maps: this.maps,
      unmaps: this.unmaps,
      syncs: this.syncs,
      growths: this.growths,
      pending_growth: this.pendingGrowth,
      pools: [
        ...searched.map((p) => part(p === this.defpool ? 'default' : 'growth', p)),
        ...this.transient.map((p) => part('transient', p)),
      ],
    };
  }

  /**
   * swiotlb_find_slots() with CONFIG_SWIOTLB_DYNAMIC: the pools in the kernel's
   * order, then a transient pool. `tryIn` searches one area of one pool; `slots`
   * gives nr_slots(alloc_size) for the transient pool.
   */
  private findSlots(
    startArea: number | undefined,
    tryIn: (pool: SwiotlbPool, area: number) => number,
    slots: () => number,
  ): number {
    this.runPendingGrowth();
    // The CPU number: each pool masks it with its own area count.
    const cpu = startArea ?? 0;
    if (!Number.isSafeInteger(cpu) || cpu < 0) {
      this.defpool.countFailure('invalid');
      throw invalidArg(`cpu ${String(cpu)} must be a non-negative integer`, { cpu });
    }
    const pools = [...this.growth, this.defpool];
    const tlb =
      this.kernel === '6.6'
        ? this.searchPoolFirstOrGrow(pools, cpu, tryIn)
        : this.searchAreaFirst(pools, cpu, tryIn);
    if (tlb >= 0) return this.placed(tlb);
    this.pendingGrowth = true; // schedule_work(&mem->dyn_alloc)
    const nslabs = slots();
    const bytes = nslabs * IO_TLB_SIZE;
    if (this.allBytes() + bytes > MAX_POOL_SLOTS * IO_TLB_SIZE) return -1;
    const pool = SwiotlbPool.create({
      restricted: true,
      size: bytes,
      base: this.takeAddress(bytes),
      kernel: this.kernel,
      placement: this.placement,
      area: 0,
      exclusive: true,
    });
    const found = tryIn(pool, 0);
    if (found < 0) return -1; // swiotlb_dyn_free(): the pool goes again
    this.transient.push(pool);
    this.transientNslabs += nslabs;
    return this.placed(found);
  }

  /** 6.10: each area offset in every pool before the next offset (swiotlb_search_area()). */
  private searchAreaFirst(
    pools: SwiotlbPool[],
    cpu: number,
    tryIn: (pool: SwiotlbPool, area: number) => number,
  ): number {
    const defaultNareas = this.defpool.geometry.nareas;
    for (let i = 0; i < defaultNareas; i++) {
      for (const pool of pools) {
        const nareas = pool.geometry.nareas;
        if (i >= nareas) continue;
        const tlb = tryIn(pool, (cpu + i) & (nareas - 1));
        if (tlb >= 0) return tlb;
      }
    }
    return -1;
  }

  /**
   * 6.6.y's swiotlb_find_slots() has no `if (alloc_size > IO_TLB_SEGSIZE *
   * IO_TLB_SIZE) return -1;` (3dc2f209208d, 6.8; its v1 quotes the 6.6/6.7 text:
   * the pool loop, then `if (!mem->can_grow) return -1; schedule_work(&mem->dyn_alloc);`).
   * A search for more than one segment (SWIOTLB_MAPPING_TOO_LARGE here, which the
   * pool throws before it searches) fails in every pool and in the transient pool
   * (no list[] reaches it), but schedules a growth on the way, unlike 6.10's.
   */
  private searchPoolFirstOrGrow(
    pools: SwiotlbPool[],
    cpu: number,
    tryIn: (pool: SwiotlbPool, area: number) => number,
  ): number {
    try {
      return this.searchPoolFirst(pools, cpu, tryIn);
    } catch (err) {
      if (isMediatorError(err, 'SWIOTLB_MAPPING_TOO_LARGE')) this.pendingGrowth = true;
      throw err;
    }
  }

  /** 6.6.y: swiotlb_pool_find_slots() on each pool in turn, all its areas from the CPU's. */
  private searchPoolFirst(
    pools: SwiotlbPool[],
    cpu: number,
    tryIn: (pool: SwiotlbPool, area: number) => number,
  ): number {
    for (const pool of pools) {
      const nareas = pool.geometry.nareas;
      const start = cpu & (nareas - 1);
      let a = start;
      do {
        const tlb = tryIn(pool, a);
        if (tlb >= 0) return tlb;
        if (++a >= nareas) a = 0;
      } while (a !== start);
    }
    return -1;
  }

  private placed(tlb: number): number {
    this.maps++;
    this.hiwater = Math.max(this.hiwater, this.used());
    return tlb;
  }

  /** swiotlb_dyn_alloc(), run by the workqueue: one growth pool. */
  private runPendingGrowth(): void {
    if (!this.pendingGrowth) return;
    this.pendingGrowth = false;
    const g = this.defpool.geometry;
    let nslabs = g.nslabs;
    let nareas = g.nareas;
    if (nslabs > MAX_GROWTH_SLABS) {
      nslabs = MAX_GROWTH_SLABS;
      nareas = limitNareas(nareas, nslabs);
    }
    const bytes = nslabs * IO_TLB_SIZE;
    if (this.allBytes() + bytes > MAX_POOL_SLOTS * IO_TLB_SIZE) {
      this.log.push(`${LOG_PREFIX}Failed to allocate new pool`);
      return;
    }
    const geometry = computeGeometry({ slots: nslabs, areas: nareas, base: 0 });
    if (geometry.nslabs !== nslabs || geometry.nareas !== nareas) {
      throw new MediatorError('SWIOTLB_INVALID_GEOMETRY', 'growth pool geometry drifted', {
        nslabs,
        nareas,
      });
    }
    const pool = SwiotlbPool.create({
      slots: nslabs,
      areas: nareas,
      base: this.takeAddress(bytes),
      kernel: this.kernel,
      placement: this.placement,
      area: 0,
      exclusive: true,
    });
    this.growth.unshift(pool); // list_add_rcu(): newest first
    this.growths++;
  }

  /** Bytes of every pool that exists now. */
  private allBytes(): number {
    let n = this.nslabs() * IO_TLB_SIZE;
    for (const p of this.transient) n += p.geometry.bytes;
    return n;
  }

  /** The address of a new pool: after everything so far, aligned to its page order (alloc_pages()). */
  private takeAddress(bytes: number): number {
    const align = PAGE_SIZE * 2 ** getOrder(bytes);
    const addr = alignUp(this.nextAddr, align);
    this.nextAddr = addr + align;
    return addr;
  }

  private poolOf(tlbAddr: number): SwiotlbPool {
    if (this.defpool.contains(tlbAddr)) return this.defpool;
    for (const p of this.growth) if (p.contains(tlbAddr)) return p;
    for (const p of this.transient) if (p.contains(tlbAddr)) return p;
    throw notMapped(tlbAddr, 'is outside every pool');
  }

  private dropIfTransient(pool: SwiotlbPool): void {
    const i = this.transient.indexOf(pool);
    if (i < 0) return;
    this.transient.splice(i, 1);
    this.transientNslabs -= pool.geometry.nslabs;
  }
}
