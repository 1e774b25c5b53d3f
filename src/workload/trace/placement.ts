import { isMediatorError } from '../../errors.js';
import {
  DmaDirection as Dir,
  type DmaDirection,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  PAGE_SIZE,
} from '../../swiotlb/constants.js';
import { type PoolStats, SwiotlbPool } from '../../swiotlb/pool.js';

/**
 * What the trace replay needs of an allocator: placement only (no copies), one
 * call per kernel map, unmap, coherent alloc and free. The replay is written
 * against this interface, not against SwiotlbPool, so that other models of the
 * kernel's allocator (per-kernel-version profiles, exact `swiotlb=N,A` and
 * restricted-pool geometry) plug in by implementing it; {@link poolPlacement}
 * is today's implementation on the project's pool.
 */
export interface Placement {
  readonly geometry: PlacementGeometry;
  /** Which kernel rules it follows, in words for the report. */
  readonly rules: string;
  /** swiotlb_tbl_map_single(): a streaming mapping of `size` bytes of the buffer at `orig`. */
  map(orig: number, size: number, dir: DmaDirection, opts: PlaceOptions): PlaceResult;
  /** swiotlb_alloc() (restricted pools): `size` bytes, no original buffer. */
  alloc(size: number, opts: { area: number }): PlaceResult;
  /** Releases what {@link map} placed at `addr` (the size and direction it was mapped with). */
  unmap(addr: number, size: number, dir: DmaDirection): void;
  /** Releases what {@link alloc} placed at `addr`. */
  free(addr: number, size: number): void;
  /** Slots in use now. */
  used(): number;
  stats(): PoolStats;
}

export interface PlacementGeometry {
  readonly base: number;
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;
  readonly bytes: number;
}

export interface PlaceOptions {
  /** Area the search starts in: the CPU number & (nareas - 1). */
  area: number;
  /** The device's min_align_mask. */
  minAlignMask: number;
}

/**
 * Where it went and how many slots it took, or why it failed: no room, larger
 * than a mapping can be, or arguments the allocator refuses (a size of 0, the
 * direction NONE: a trace the kernel could not have written).
 */
export type PlaceResult =
  | { addr: number; slots: number }
  | { failure: 'full' | 'too_large' }
  | { failure: 'invalid'; message: string };

/** The allocator's refusals, as a result instead of a throw. */
function refusal(err: unknown): PlaceResult {
  if (isMediatorError(err, 'SWIOTLB_MAPPING_TOO_LARGE')) return { failure: 'too_large' };
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
  nslabs: number;
  nareas: number;
  /** A restricted-dma-pool (one area, exactly nslabs slots in Linux). */
  restricted?: boolean;
  /** The traced kernel's version ("6.12"), when the user gave it. */
  kernel?: string;
}

/** The placement and what differs from the kernel's pool, for the report. */
export interface PlacementSetup {
  placement: Placement;
  notes: string[];
}

/** Oldest kernel line whose rules the project's pool follows (DESIGN.md: 6.10, unchanged through 6.19). */
const POOL_RULES_SINCE: readonly [number, number] = [6, 10];

/** "6.12", "6.6.30", "v6.1-rc3" -> [6, 12]; undefined when it is not a version. */
export function parseKernelVersion(text: string): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)/.exec(text.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function nrSlots(bytes: number): number {
  return Math.ceil(bytes / IO_TLB_SIZE);
}

/** get_order(size) + PAGE_SHIFT as a mask: the alignment swiotlb_alloc() asks (6.9+). */
function allocAlignMask(size: number): number {
  let span = PAGE_SIZE;
  while (span < size) span *= 2;
  return span - 1;
}

/**
 * The project's SwiotlbPool as a {@link Placement} (NO_COPY: placement only).
 * The pool rounds nslabs to whole segments per area and the area count to a
 * power of two; where that changes the kernel's geometry the notes say so.
 */
export function poolPlacement(spec: PlacementSpec): PlacementSetup {
  const notes: string[] = [];
  const pool = SwiotlbPool.create({
    slots: spec.nslabs,
    areas: spec.nareas,
    base: spec.base,
    area: 0,
  });
  const g = pool.geometry;
  if (g.nslabs !== spec.nslabs || g.nareas !== spec.nareas) {
    notes.push(
      `the model's pool has ${g.nslabs} slots in ${g.nareas} areas where the kernel's has ${spec.nslabs} in ${spec.nareas} (${g.log.join('; ')}): placements near the end of the pool can differ`,
    );
  }
  let rules = 'Linux 6.10 rules (unchanged through 6.19)';
  if (spec.kernel !== undefined) {
    const v = parseKernelVersion(spec.kernel);
    const older =
      v !== undefined &&
      (v[0] < POOL_RULES_SINCE[0] || (v[0] === POOL_RULES_SINCE[0] && v[1] < POOL_RULES_SINCE[1]));
    if (older) {
      rules = `Linux 6.10 rules: the pool has no profile for ${spec.kernel} yet, whose search and alignment rules differ`;
      notes.push(
        `--kernel ${spec.kernel}: the pool follows the 6.10 rules (its only profile today); placements that depend on the older search or alignment rules will disagree`,
      );
    } else {
      rules = `Linux 6.10 rules (unchanged through 6.19), for kernel ${spec.kernel}`;
    }
  }
  if (spec.restricted) {
    rules += '; restricted pool: one area';
  }

  const place = (tlb: number, slots: number): PlaceResult =>
    tlb < 0 ? fail(pool, 'full') : { addr: tlb, slots };

  const placement: Placement = {
    geometry: {
      base: g.base,
      nslabs: g.nslabs,
      nareas: g.nareas,
      areaNslabs: g.areaNslabs,
      bytes: g.bytes,
    },
    rules,
    map(orig, size, dir, opts) {
      const mapOpts = { area: opts.area, minAlignMask: opts.minAlignMask };
      try {
        const tlb = pool.tryAllocate(orig, size, dir, mapOpts);
        return place(tlb, nrSlots(pool.paddedSize(orig, size, mapOpts)));
      } catch (err) {
        return refusal(err);
      }
    },
    alloc(size, opts) {
      const mask = allocAlignMask(size);
      const mapOpts = { area: opts.area, allocAlignMask: mask };
      try {
        const tlb = pool.tryAllocate(0, size, Dir.BIDIRECTIONAL, mapOpts);
        return place(tlb, nrSlots(pool.paddedSize(0, size, mapOpts)));
      } catch (err) {
        return refusal(err);
      }
    },
    unmap(addr, size, dir) {
      pool.release(addr, size, dir);
    },
    free(addr, size) {
      pool.release(addr, size, Dir.BIDIRECTIONAL);
    },
    used: () => pool.used(),
    stats: () => pool.stats(),
  };
  return { placement, notes };
}

function fail(pool: SwiotlbPool, why: 'full'): PlaceResult {
  pool.countFailure(why);
  return { failure: why };
}

/** The slot index of a pool address. */
export function slotOf(g: PlacementGeometry, addr: number): number {
  return Math.floor((addr - g.base) / 2 ** IO_TLB_SHIFT);
}
