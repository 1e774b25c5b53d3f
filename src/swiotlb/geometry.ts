import { availableParallelism } from 'node:os';
import { MediatorError } from '../errors.js';
import {
  IO_TLB_DEFAULT_SIZE,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  PAGE_SIZE,
} from './constants.js';

/**
 * A pool's shape, built exactly as the kernel builds it. Two kinds of pool:
 *
 * - the default pool (io_tlb_default_mem), sized by `swiotlb=<nslabs>[,<nareas>]`
 *   or by an architecture's swiotlb_adjust_size() (confidential guests):
 *
 *     setup_io_tlb_npages():   nslabs = ALIGN(N, IO_TLB_SEGSIZE)
 *     swiotlb_adjust_nareas(): nareas = A ? roundup_pow_of_two(A) : 1, logs "area num %d."
 *                              (A = the number of CPUs when `swiotlb=` gave none)
 *     round_up_default_nslabs(): nslabs < 128 * nareas ? 128 * nareas
 *                              : roundup_pow_of_two(nslabs),
 *                              logs "SWIOTLB bounce buffer size roundup to %luMB"
 *     swiotlb_init_remap():    area_nslabs = nslabs / nareas, logs (swiotlb_print_info)
 *                              "mapped [mem %pa-%pa] (%luMB)"
 *
 *   So nslabs is a power of two of at least 128 * nareas and every area is a
 *   whole number of 128-slot segments. limit_nareas() lowers nareas only when the
 *   memblock allocation fails and the pool is halved, which this model never does.
 *   Read in kernel/dma/swiotlb.c of 6.1.192 and 6.12.117: the functions above are
 *   the same text in both (6.1.y took "swiotlb: always set the number of areas
 *   before allocating the pool" and its two companions), so all profiles share them.
 *
 * - a device tree restricted-dma-pool of `size` bytes (rmem_swiotlb_device_init()):
 *   nslabs = size >> IO_TLB_SHIFT exactly, one area, no rounding. Its last segment
 *   may be partial (e.g. 200 slots = one segment of 128 and one of 72).
 *
 *   slot:   0 ........ 127 | 128 ...... 199 | (200 ... 255 do not exist)
 *   area:   [ area 0: the whole pool, area_nslabs = nslabs                 ]
 *
 * Rules every Geometry keeps: nslabs >= 1; nareas is a power of two; area_nslabs =
 * nslabs / nareas exactly; a default pool's areas are whole segments; base is a
 * multiple of 2 KiB (Linux pools are page aligned; 2 KiB is allowed to test the
 * alignment rules).
 */

/** How a pool is asked for: the default pool (slots/areas/size) or a restricted pool (restricted + size). */
export interface GeometryOptions {
  /**
   * Default pool: bytes the architecture asks for (swiotlb_adjust_size(), as SEV and
   * TDX guests do), rounded like `swiotlb=`. Restricted pool: the reserved-memory
   * region's size; its slots are `size >> 11`, no rounding.
   * @default 67108864 (64 MiB, 32768 slots: IO_TLB_DEFAULT_SIZE)
   */
  size?: number;
  /**
   * The kernel's `swiotlb=<nslabs>`: slots of the default pool before the kernel's
   * rounding. Then `size` applies only when ALIGN(slots, 128) is 32768: the
   * kernel's swiotlb_adjust_size() tests the value, not whether `swiotlb=` was given.
   */
  slots?: number;
  /**
   * The kernel's `swiotlb=<nslabs>,<nareas>`: areas of the default pool before the
   * kernel rounds them up to a power of two. Each area has its own lock and next-fit cursor.
   * @default the number of CPUs (num_possible_cpus()), rounded up to a power of two
   */
  areas?: number;
  /**
   * A restricted-dma-pool of `size` bytes: exact slots, one area, never grows.
   * `slots` and `areas` do not apply to it.
   * @default false
   */
  restricted?: boolean;
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
  readonly kind: 'default' | 'restricted';
  /** Total slots (debugfs io_tlb_nslabs). */
  readonly nslabs: number;
  readonly nareas: number;
  /** Slots per area (io_tlb_pool.area_nslabs). */
  readonly areaNslabs: number;
  /** Guest-physical address of the first slot. */
  readonly base: number;
  /** Pool size in bytes: nslabs * 2 KiB. */
  readonly bytes: number;
  /** The lines the kernel logs while building this pool, in its words and order. */
  readonly log: readonly string[];
}

/** Every line of kernel/dma/swiotlb.c starts so (its pr_fmt). */
export const LOG_PREFIX = 'software IO TLB: ';

/** 1 GiB: the largest SharedArrayBuffer this project allows for one pool. */
export const MAX_POOL_SLOTS = 2 ** 30 / IO_TLB_SIZE;
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

/** num_possible_cpus() rounded up to a power of two, as swiotlb_adjust_nareas() rounds it. */
export function defaultAreaCount(): number {
  return roundUpPowerOfTwo(availableParallelism());
}

/** `%pa` of a 64-bit kernel: 0x and 16 hex digits. */
export function formatPhysAddr(addr: number): string {
  return `0x${addr.toString(16).padStart(16, '0')}`;
}

/** The "%luMB" the kernel prints for a slot count: (nslabs << IO_TLB_SHIFT) >> 20. */
function megabytes(nslabs: number): number {
  return Math.floor((nslabs * IO_TLB_SIZE) / 2 ** 20);
}

function checkBase(base: number): void {
  if (!Number.isSafeInteger(base) || base < 0 || base % IO_TLB_SIZE !== 0) {
    throw invalid(`base address ${String(base)} must be a non-negative multiple of 2048`, {
      base,
    });
  }
}

function checkWhole(value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw invalid(`${what} ${String(value)} must be an integer >= ${min}`, { [what]: value });
  }
}

/** State of setup_io_tlb_npages() / swiotlb_adjust_nareas() while the default pool is sized. */
class DefaultSizing {
  nslabs = IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT;
  nareas = 0;
  readonly log: string[] = [];

  /** round_up_default_nslabs(): true when nslabs changed. */
  private roundUp(): boolean {
    if (this.nareas === 0) return false;
    if (this.nslabs < IO_TLB_SEGSIZE * this.nareas) this.nslabs = IO_TLB_SEGSIZE * this.nareas;
    else if (roundUpPowerOfTwo(this.nslabs) === this.nslabs) return false;
    this.nslabs = roundUpPowerOfTwo(this.nslabs);
    return true;
  }

  /** swiotlb_adjust_nareas(). */
  adjustNareas(nareas: number): void {
    this.nareas = nareas === 0 ? 1 : roundUpPowerOfTwo(nareas);
    this.log.push(`${LOG_PREFIX}area num ${this.nareas}.`);
    if (this.roundUp()) {
      this.log.push(
        `${LOG_PREFIX}SWIOTLB bounce buffer size roundup to ${megabytes(this.nslabs)}MB`,
      );
    }
  }

  /** swiotlb_adjust_size(): only while no `swiotlb=<nslabs>` changed the default. */
  adjustSize(size: number): void {
    if (this.nslabs !== IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT) return;
    let bytes = alignUp(size, IO_TLB_SIZE);
    this.nslabs = alignUp(bytes / IO_TLB_SIZE, IO_TLB_SEGSIZE);
    if (this.roundUp()) bytes = this.nslabs * IO_TLB_SIZE;
    this.log.push(
      `${LOG_PREFIX}SWIOTLB bounce buffer size adjusted to ${Math.floor(bytes / 2 ** 20)}MB`,
    );
  }
}

/**
 * Works out nslabs, nareas and area_nslabs of a pool exactly as the kernel does
 * (see the rules at the top of this file), with the kernel's log lines.
 * @throws SWIOTLB_INVALID_GEOMETRY
 */
export function computeGeometry(opts: GeometryOptions = {}): Geometry {
  const base = opts.base ?? 0;
  checkBase(base);
  const g = opts.restricted === true ? restrictedGeometry(opts, base) : defaultGeometry(opts, base);
  if (g.nslabs > MAX_POOL_SLOTS) {
    throw invalid(
      `pool of ${g.nslabs} slots exceeds the limit of ${MAX_POOL_SLOTS} slots (1 GiB)`,
      {
        nslabs: g.nslabs,
      },
    );
  }
  if (!Number.isSafeInteger(base + g.bytes)) {
    throw invalid('base address + pool size exceeds 2^53', { base, bytes: g.bytes });
  }
  return g;
}

/** setup_io_tlb_npages(), swiotlb_adjust_size(), swiotlb_adjust_nareas(), swiotlb_print_info(). */
function defaultGeometry(opts: GeometryOptions, base: number): Geometry {
  const s = new DefaultSizing();
  if (opts.slots !== undefined) {
    checkWhole(opts.slots, 'slots', 0);
    s.nslabs = alignUp(opts.slots, IO_TLB_SEGSIZE);
  }
  if (opts.areas !== undefined) {
    checkWhole(opts.areas, 'areas', 0);
    if (opts.areas > MAX_AREAS) {
      throw invalid(`area count ${opts.areas} must be at most ${MAX_AREAS}`, {
        areas: opts.areas,
      });
    }
    s.adjustNareas(opts.areas);
  }
  // swiotlb_adjust_size() (kernel/dma/swiotlb.c, 6.1.192 and 6.12.117) runs after
  // setup_io_tlb_npages() whether or not `swiotlb=` gave a count, and returns only
  // if (default_nslabs != IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT): adjustSize() keeps
  // that test, so a swiotlb= that aligns to 32768 slots is resized as in the kernel.
  if (opts.size !== undefined) {
    checkWhole(opts.size, 'size', 1);
    s.adjustSize(opts.size);
  }
  if (s.nareas === 0) s.adjustNareas(availableParallelism());
  const bytes = s.nslabs * IO_TLB_SIZE;
  s.log.push(
    `${LOG_PREFIX}mapped [mem ${formatPhysAddr(base)}-${formatPhysAddr(base + bytes)}] (${megabytes(s.nslabs)}MB)`,
  );
  return {
    kind: 'default',
    nslabs: s.nslabs,
    nareas: s.nareas,
    areaNslabs: s.nslabs / s.nareas,
    base,
    bytes,
    log: s.log,
  };
}

/** rmem_swiotlb_setup() and rmem_swiotlb_device_init(). */
function restrictedGeometry(opts: GeometryOptions, base: number): Geometry {
  if (opts.slots !== undefined || opts.areas !== undefined) {
    throw invalid('a restricted-dma-pool is given by its size alone: no slots, no areas', {
      slots: opts.slots,
      areas: opts.areas,
    });
  }
  if (opts.size === undefined) {
    throw invalid('a restricted-dma-pool needs its size in bytes', {});
  }
  checkWhole(opts.size, 'size', IO_TLB_SIZE);
  const nslabs = Math.floor(opts.size / IO_TLB_SIZE);
  return {
    kind: 'restricted',
    nslabs,
    nareas: 1,
    areaNslabs: nslabs,
    base,
    bytes: nslabs * IO_TLB_SIZE,
    log: [
      `${LOG_PREFIX}Reserved memory: created restricted DMA pool at ${formatPhysAddr(base)}, size ${Math.floor(opts.size / 2 ** 20)} MiB`,
    ],
  };
}

/** What the kernel reads from `swiotlb=...`: the parts setup_io_tlb_npages() takes. */
export interface SwiotlbParameter {
  slots?: number;
  areas?: number;
  force?: boolean;
  noforce?: boolean;
}

/**
 * simple_strtoul(str, &end, 0): a number in base 0 (0x hex, a leading 0 octal,
 * else decimal) at the start of `s`; returns the value and the characters used.
 */
function strtoul(s: string): [number, number] {
  const hex = /^0[xX]([0-9a-fA-F]+)/.exec(s);
  if (hex) return [Number.parseInt(hex[1]!, 16), hex[0].length];
  const oct = /^0([0-7]*)/.exec(s);
  if (oct) return [oct[1] === '' ? 0 : Number.parseInt(oct[1]!, 8), oct[0].length];
  const dec = /^\d+/.exec(s)!;
  return [Number(dec[0]), dec[0].length];
}

/**
 * Reads a `swiotlb=` kernel parameter ("swiotlb=3000,3", "3000,3,force") as
 * setup_io_tlb_npages() does: optional nslabs, optional ",nareas", optional
 * ",force" or ",noforce". Returns undefined for text the kernel would not read whole.
 */
export function parseSwiotlbParameter(text: string): SwiotlbParameter | undefined {
  let s = text.trim().replace(/^swiotlb=/, '');
  const out: SwiotlbParameter = {};
  if (/^\d/.test(s)) {
    const [n, used] = strtoul(s);
    out.slots = n;
    s = s.slice(used);
  }
  if (s.startsWith(',')) s = s.slice(1);
  if (/^\d/.test(s)) {
    const [n, used] = strtoul(s);
    out.areas = n;
    s = s.slice(used);
  }
  if (s.startsWith(',')) s = s.slice(1);
  if (s === 'force') out.force = true;
  else if (s === 'noforce') out.noforce = true;
  else if (s !== '') return undefined;
  if (!Number.isSafeInteger(out.slots ?? 0) || !Number.isSafeInteger(out.areas ?? 0)) {
    return undefined;
  }
  return out;
}

/** PAGE_ALIGN(). */
export function pageAlign(bytes: number): number {
  return alignUp(bytes, PAGE_SIZE);
}
