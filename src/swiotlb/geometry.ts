import { availableParallelism } from 'node:os';
import { MediatorError } from '../errors.js';
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SEGSIZE, IO_TLB_SHIFT, IO_TLB_SIZE } from './constants.js';

/** How a pool is asked for. Either `size` or `slots` may be given; `slots` wins. */
export interface GeometryOptions {
  /**
   * Pool size in bytes. Rounded up to whole 128-slot segments, as the kernel's
   * `swiotlb=` and swiotlb_adjust_size() round it.
   * @default 67108864 (64 MiB, 32768 slots: IO_TLB_DEFAULT_SIZE)
   */
  size?: number;
  /** Pool size in slots (the kernel's nslabs, `swiotlb=<nslabs>`); overrides `size`. */
  slots?: number;
  /**
   * Number of areas, each with its own lock and next-fit cursor. Rounded up to a
   * power of two and capped so that each area has at least one segment, as
   * swiotlb_adjust_nareas() and limit_nareas() do.
   * @default the number of CPUs rounded up to a power of two
   */
  areas?: number;
  /**
   * Address of the pool's first byte in guest-physical space (io_tlb_mem.start).
   * Must be a multiple of 2 KiB. Alignment rules apply to `base + offset`; Linux
   * pools are page aligned, and with a base that is not, page-aligned mappings
   * start on odd slots, so a full 256 KiB mapping can never be placed.
   * @default 0
   */
  base?: number;
}

/** The pool's shape after the kernel's rounding. */
export interface Geometry {
  /** Total slots (debugfs io_tlb_nslabs). */
  readonly nslabs: number;
  readonly nareas: number;
  /** Slots per area (io_tlb_pool.area_nslabs). */
  readonly areaNslabs: number;
  /** Guest-physical address of the first slot. */
  readonly base: number;
  /** Pool size in bytes: nslabs * 2 KiB. */
  readonly bytes: number;
  /** What was rounded and why, in the words of the kernel's log; empty when nothing was. */
  readonly adjustments: readonly string[];
}

const MAX_SLOTS = 2 ** 30 / IO_TLB_SIZE; // 1 GiB: the largest SharedArrayBuffer we allow for one pool
const MAX_AREAS = 1 << 16;

export function roundUpPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function invalid(message: string, details: Record<string, unknown>): MediatorError {
  return new MediatorError('SWIOTLB_INVALID_GEOMETRY', message, details);
}

export function defaultAreaCount(): number {
  return roundUpPowerOfTwo(availableParallelism());
}

/**
 * Works out nslabs, nareas and area_nslabs as the kernel does:
 * - nslabs = ALIGN(requested slots, IO_TLB_SEGSIZE);
 * - nareas = roundup_pow_of_two(areas), and if nareas * 128 > nslabs the pool grows
 *   to nareas * 128 slots (swiotlb_adjust_nareas());
 * - area_nslabs = nslabs / nareas.
 *
 * One deliberate difference: nslabs is also rounded up to a multiple of
 * nareas * 128 so that no segment straddles two areas. In the kernel such a
 * straddling segment (e.g. `swiotlb=384,2`) lets a mapping found by one area take
 * slots that another area's lock guards; with real threads here that is a race.
 */
export function computeGeometry(opts: GeometryOptions = {}): Geometry {
  const adjustments: string[] = [];
  const base = opts.base ?? 0;
  if (!Number.isSafeInteger(base) || base < 0 || base % IO_TLB_SIZE !== 0) {
    throw invalid(`base address ${String(base)} must be a non-negative multiple of 2048`, {
      base,
    });
  }

  let requestedSlots: number;
  if (opts.slots !== undefined) {
    if (!Number.isSafeInteger(opts.slots) || opts.slots <= 0) {
      throw invalid(`slot count ${String(opts.slots)} must be a positive integer`, {
        slots: opts.slots,
      });
    }
    requestedSlots = opts.slots;
  } else {
    const size = opts.size ?? IO_TLB_DEFAULT_SIZE;
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw invalid(`pool size ${String(size)} must be a positive number of bytes`, { size });
    }
    requestedSlots = Math.ceil(size / IO_TLB_SIZE);
  }

  let nslabs = alignUp(requestedSlots, IO_TLB_SEGSIZE);
  if (nslabs !== requestedSlots) {
    adjustments.push(`nslabs ${requestedSlots} rounded up to ${nslabs} (whole 128-slot segments)`);
  }

  const requestedAreas = opts.areas ?? defaultAreaCount();
  if (!Number.isSafeInteger(requestedAreas) || requestedAreas <= 0 || requestedAreas > MAX_AREAS) {
    throw invalid(
      `area count ${String(requestedAreas)} must be an integer from 1 to ${MAX_AREAS}`,
      {
        areas: requestedAreas,
      },
    );
  }
  const nareas = roundUpPowerOfTwo(requestedAreas);
  if (nareas !== requestedAreas) {
    adjustments.push(`area num ${requestedAreas} rounded up to ${nareas}`);
  }
  const segmentsPerAreaMultiple = nareas * IO_TLB_SEGSIZE;
  if (nslabs % segmentsPerAreaMultiple !== 0) {
    const grown = alignUp(nslabs, segmentsPerAreaMultiple);
    adjustments.push(
      `SWIOTLB bounce buffer size adjusted to ${(grown << IO_TLB_SHIFT) / 2 ** 20}MB (${grown} slots: ${nareas} areas of whole segments)`,
    );
    nslabs = grown;
  }
  if (nslabs > MAX_SLOTS) {
    throw invalid(`pool of ${nslabs} slots exceeds the limit of ${MAX_SLOTS} slots (1 GiB)`, {
      nslabs,
    });
  }
  const bytes = nslabs * IO_TLB_SIZE;
  if (!Number.isSafeInteger(base + bytes)) {
    throw invalid('base address + pool size exceeds 2^53', { base, bytes });
  }
  return { nslabs, nareas, areaNslabs: nslabs / nareas, base, bytes, adjustments };
}
