import { isMediatorError, MediatorError } from '../../errors.js';
import {
  type DmaDirection,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
} from '../../swiotlb/constants.js';
import { type DynamicPartKind, DynamicPool } from '../../swiotlb/dynamic.js';
import {
  computeGeometry,
  type GeometryOptions,
  roundUpPowerOfTwo,
} from '../../swiotlb/geometry.js';
import { hasDynamicPools, type KernelVersion } from '../../swiotlb/kernel.js';
import { type PoolStats, SwiotlbPool } from '../../swiotlb/pool.js';
import { rulesText } from './kernel-version.js';

/**
 * What the trace replay needs of an allocator: placement only (no copies), one
 * call per kernel map, unmap, coherent alloc and free. The replay is written
 * against this interface; {@link kernelPlacement} implements it on the project's
 * pool with the traced kernel's profile (6.1, 6.6, 6.10), the kernel's exact
 * geometry, and, with CONFIG_SWIOTLB_DYNAMIC, its growable pool (DynamicPool).
 */
export interface Placement {
  readonly geometry: PlacementGeometry;
  /** Which kernel rules it follows, in words for the report. */
  readonly rules: string;
  /** The profile it follows. */
  readonly profile: KernelVersion;
  /** The default pool grows (CONFIG_SWIOTLB_DYNAMIC): maps may land outside `geometry`. */
  readonly dynamic: boolean;
  /** swiotlb_tbl_map_single(): a streaming mapping of `size` bytes of the buffer at `orig`. */
  map(orig: number, size: number, dir: DmaDirection, opts: PlaceOptions): PlaceResult;
  /** swiotlb_alloc() (restricted pools): `size` bytes (page aligned by the caller), no original buffer. */
  alloc(size: number, opts: { cpu: number }): PlaceResult;
  /** Releases what {@link map} placed at `addr` (the size and direction it was mapped with). */
  unmap(addr: number, size: number, dir: DmaDirection): void;
  /** Releases what {@link alloc} placed at `addr`. */
  free(addr: number, size: number): void;
  /** Slots in use now (every pool of a growable one, transient ones included). */
  used(): number;
  stats(): PoolStats;
  /** Growths and transient pools of a growable pool (zeros otherwise). */
  growth(): { growths: number; transient_nslabs: number; nslabs: number };
}

export interface PlacementGeometry {
  readonly base: number;
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;
  readonly bytes: number;
}

export interface PlaceOptions {
  /**
   * The CPU number (raw_smp_processor_id()): the search starts in area
   * cpu & (nareas - 1) of each pool it searches.
   */
  cpu: number;
  /** The device's min_align_mask. */
  minAlignMask: number;
}

/**
 * Where it went and how many slots it took, or why it failed: no room, larger
 * than a mapping can be, arguments the allocator refuses (a size of 0, the
 * direction NONE: a trace the kernel could not have written), or a request the
 * profile's kernel would never finish (6.1's endless search, `kernel_hang`) or
 * would place past its pool's end (`kernel_overrun`, 6.1).
 */
export type PlaceResult =
  | { addr: number; slots: number; part: DynamicPartKind }
  | { failure: 'full' | 'too_large' | 'kernel_hang' | 'kernel_overrun' }
  | { failure: 'invalid'; message: string };

export type PlaceFailure = Exclude<PlaceResult, { addr: number }>;

/** The allocator's refusals, as a result instead of a throw. */
function refusal(err: unknown): PlaceFailure {
  if (isMediatorError(err, 'SWIOTLB_POOL_FULL')) return { failure: 'full' };
  if (isMediatorError(err, 'SWIOTLB_MAPPING_TOO_LARGE')) return { failure: 'too_large' };
  if (isMediatorError(err, 'SWIOTLB_KERNEL_WOULD_HANG')) return { failure: 'kernel_hang' };
  if (isMediatorError(err, 'SWIOTLB_KERNEL_OVERRUN')) return { failure: 'kernel_overrun' };
  if (
    isMediatorError(err, 'SWIOTLB_INVALID_ARGUMENT') ||
    isMediatorError(err, 'SWIOTLB_INVALID_DIRECTION')
  ) {
    return { failure: 'invalid', message: err.message };
  }
  throw err;
}

/** The pool the kernel had, as the trace replay asks for it. */
export interface PlacementSpec {
  base: number;
  /** The kernel's slots, as it reports them (already rounded). */
  nslabs: number;
  nareas: number;
  /** A restricted-dma-pool (one area, exactly nslabs slots). */
  restricted?: boolean;
  /** The profile whose rules apply. @default '6.10' */
  profile?: KernelVersion;
  /** The traced kernel's version as given ("6.12.3"), for the report. */
  kernel?: string;
  /** CONFIG_SWIOTLB_DYNAMIC: the default pool grows (6.6 and 6.10). @default false */
  dynamic?: boolean;
}

/** The placement and what differs from the kernel's pool, for the report. */
export interface PlacementSetup {
  placement: Placement;
  notes: string[];
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && roundUpPowerOfTwo(n) === n;
}

/**
 * The pool options that build exactly the kernel's pool, or the closest one and
 * why it differs. A default pool the kernel built always has a power of two of
 * at least 128 x nareas slots (round_up_default_nslabs(), halving in
 * swiotlb_init_remap() keeps that, limit_nareas() too), so `swiotlb=nslabs,nareas`
 * builds it unchanged; a restricted pool is built from its size. A one-area pool
 * of another size (a hand-given --slots) is built as a restricted one: the same
 * pool to the allocator, whose rules do not look at the kind.
 */
export function exactGeometry(spec: PlacementSpec): { opts: GeometryOptions; note?: string } {
  const { base, nslabs, nareas } = spec;
  if (spec.restricted) return { opts: { restricted: true, size: nslabs * IO_TLB_SIZE, base } };
  if (isPowerOfTwo(nareas) && isPowerOfTwo(nslabs) && nslabs >= nareas * IO_TLB_SEGSIZE) {
    return { opts: { slots: nslabs, areas: nareas, base } };
  }
  if (nareas === 1 && !spec.dynamic) {
    return { opts: { restricted: true, size: nslabs * IO_TLB_SIZE, base } };
  }
  const opts = { slots: nslabs, areas: nareas, base };
  const g = computeGeometry(opts);
  return {
    opts,
    note: `no kernel builds a default pool of ${nslabs} slots in ${nareas} areas (it rounds them to a power of two of at least 128 slots per area); the model's pool has ${g.nslabs} slots in ${g.nareas} areas: placements near the end of the pool can differ`,
  };
}

/**
 * The project's pool (NO_COPY: placement only) with the kernel's profile and
 * geometry; a DynamicPool with `dynamic`.
 * @throws SWIOTLB_INVALID_GEOMETRY, SWIOTLB_INVALID_ARGUMENT (dynamic on 6.1 or on a restricted pool)
 */
export function kernelPlacement(spec: PlacementSpec): PlacementSetup {
  const profile = spec.profile ?? '6.10';
  const notes: string[] = [];
  const { opts, note } = exactGeometry(spec);
  if (note) notes.push(note);
  let rules = rulesText(profile);
  if (spec.kernel !== undefined) rules += `, for Linux ${spec.kernel}`;
  if (spec.restricted) rules += '; restricted pool: one area, exact size';
  if (spec.dynamic) {
    if (!hasDynamicPools(profile) || spec.restricted) {
      throw new MediatorError(
        'CLI_USAGE',
        spec.restricted
          ? '--dynamic: a restricted-dma-pool never grows (CONFIG_SWIOTLB_DYNAMIC grows the default pool only)'
          : `--dynamic: Linux ${profile} has no CONFIG_SWIOTLB_DYNAMIC (it came with 6.6)`,
      );
    }
    rules += '; CONFIG_SWIOTLB_DYNAMIC: the pool grows';
    return {
      placement: dynamicPlacement(new DynamicPool({ ...opts, kernel: profile }), rules),
      notes,
    };
  }
  const pool = SwiotlbPool.create({ ...opts, kernel: profile, area: 0, exclusive: true });
  return { placement: poolPlacementOf(pool, rules), notes };
}

/** @deprecated the name of the first part; {@link kernelPlacement} with the 6.10 profile. */
export const poolPlacement = kernelPlacement;

function geometryOf(pool: SwiotlbPool): PlacementGeometry {
  const g = pool.geometry;
  return {
    base: g.base,
    nslabs: g.nslabs,
    nareas: g.nareas,
    areaNslabs: g.areaNslabs,
    bytes: g.bytes,
  };
}

function poolPlacementOf(pool: SwiotlbPool, rules: string): Placement {
  const nareas = pool.geometry.nareas;
  const fail = (f: PlaceFailure): PlaceFailure => {
    if (f.failure === 'full') pool.countFailure('full');
    return f;
  };
  return {
    geometry: geometryOf(pool),
    rules,
    profile: pool.kernel,
    dynamic: false,
    map(orig, size, dir, o) {
      const mapOpts = { area: o.cpu & (nareas - 1), minAlignMask: o.minAlignMask };
      try {
        const tlb = pool.tryAllocate(orig, size, dir, mapOpts);
        if (tlb < 0) return fail({ failure: 'full' });
        return { addr: tlb, slots: pool.mapSlots(orig, size, mapOpts), part: 'default' };
      } catch (err) {
        return refusal(err);
      }
    },
    alloc(size, o) {
      try {
        const tlb = pool.tryAlloc(size, { area: o.cpu & (nareas - 1) });
        if (tlb < 0) return fail({ failure: 'full' });
        return { addr: tlb, slots: pool.allocSlots(size), part: 'default' };
      } catch (err) {
        return refusal(err);
      }
    },
    unmap: (addr, size, dir) => pool.release(addr, size, dir),
    free: (addr, size) => pool.free(addr, size),
    used: () => pool.used(),
    stats: () => pool.stats(),
    growth: () => ({ growths: 0, transient_nslabs: 0, nslabs: pool.geometry.nslabs }),
  };
}

function dynamicPlacement(pool: DynamicPool, rules: string): Placement {
  return {
    geometry: geometryOf(pool.defpool),
    rules,
    profile: pool.kernel,
    dynamic: true,
    map(orig, size, dir, o) {
      const mapOpts = { area: o.cpu, minAlignMask: o.minAlignMask };
      try {
        const tlb = pool.map(orig, size, dir, mapOpts);
        return { addr: tlb, slots: pool.mapSlots(orig, size, mapOpts), part: pool.partOf(tlb) };
      } catch (err) {
        return refusal(err);
      }
    },
    alloc(size, o) {
      try {
        const tlb = pool.alloc(size, { area: o.cpu });
        return { addr: tlb, slots: pool.allocSlots(size), part: pool.partOf(tlb) };
      } catch (err) {
        return refusal(err);
      }
    },
    unmap: (addr, size, dir) => pool.unmap(addr, size, dir),
    free: (addr, size) => pool.free(addr, size),
    used: () => pool.used(),
    stats: () => pool.stats(),
    growth: () => {
      const s = pool.stats();
      return { growths: s.growths, transient_nslabs: s.transient_nslabs, nslabs: s.nslabs };
    },
  };
}

/** The slot index of a pool address. */
export function slotOf(g: PlacementGeometry, addr: number): number {
  return Math.floor((addr - g.base) / 2 ** IO_TLB_SHIFT);
}
