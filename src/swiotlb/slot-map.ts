import { IO_TLB_SIZE } from './constants.js';
import type { Geometry } from './geometry.js';
import { AREA_INDEX, AREA_STRIDE, type MetadataViews, metadataViews } from './layout.js';
import type { SharedPool } from './pool.js';

/**
 * The pool's slots as a picture: what each slot holds, 2 bits a slot, and where
 * each area's next-fit cursor stands. Read from the allocator's shared metadata
 * when asked (the status page, `bench --html`), like the metrics: nothing is kept
 * up to date on the map/unmap path for it.
 *
 *   byte k of the map holds slots 4k .. 4k+3, the lowest slot in the lowest bits:
 *
 *     bit:   7 6     5 4     3 2     1 0
 *          [4k+3]  [4k+2]  [4k+1]  [ 4k ]
 *
 *   state  0 free      no allocation holds it (the kernel's list[s] > 0)
 *          1 in use    part of an allocation from its head on: the mapping's data
 *                      and the slots its alignment rounds the allocation up to
 *          2 padding   taken by an allocation before its head (min_align_mask /
 *                      alloc_align_mask padding: the kernel's pad_slots)
 *          3 coherent  part of an allocation the caller names as coherent memory
 *                      (the virtqueues the host placed in the pool), whatever the
 *                      two states above would say
 *
 * Rules:
 * - No area lock is taken: a reader never makes an I/O wait. A slot mapped or
 *   unmapped while the map is read may show its state before or after, or show
 *   as padding for an instant (a map sets the used bit before it writes the head);
 *   the next read is right. Counts are of this picture, not of `used`.
 * - Slots past nslabs in the last byte read as free (0).
 * - Which allocations are coherent is not in the metadata: the caller, which
 *   placed them, names them by pool address (the virtqueues by the guest side).
 */

export const SLOT_FREE = 0;
export const SLOT_IN_USE = 1;
export const SLOT_PADDING = 2;
export const SLOT_COHERENT = 3;
export type SlotState = 0 | 1 | 2 | 3;

/** The states in their 2-bit order, as the HTTP API names them. */
export const SLOT_STATE_NAMES = ['free', 'in_use', 'padding', 'coherent'] as const;

/** A range of pool addresses (tlb_addr) that holds coherent memory. */
export interface PoolRange {
  /** First byte, a pool address (geometry.base + offset). */
  addr: number;
  bytes: number;
}

export interface SlotCounts {
  free: number;
  in_use: number;
  padding: number;
  coherent: number;
}

export interface SlotMap {
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;
  /** 2 bits per slot (see the picture above): ceil(nslabs / 4) bytes. */
  readonly bits: Uint8Array;
  /** Per area, the slot (pool-wide index) where its next search starts. */
  readonly cursors: number[];
  readonly counts: SlotCounts;
}

/** Bytes of a map of `nslabs` slots. */
export function slotMapBytes(nslabs: number): number {
  return Math.ceil(nslabs / 4);
}

/** The state of slot `s` in a map's bits. */
export function slotStateAt(bits: Uint8Array, s: number): SlotState {
  return ((bits[s >>> 2]! >>> ((s & 3) << 1)) & 3) as SlotState;
}

/**
 * Reads slot maps of one pool. Holds views on its metadata (made once), so that a
 * read allocates nothing but the map itself (and not that when given `out`).
 */
export class SlotMapReader {
  readonly geometry: Geometry;
  private readonly m: MetadataViews;

  /** `shared` is the pool's {@link SwiotlbPool.share}: only the guest side has its metadata. */
  constructor(shared: Pick<SharedPool, 'geometry' | 'meta'>) {
    this.geometry = shared.geometry;
    this.m = metadataViews(shared.meta, shared.geometry);
  }

  /**
   * The map now. `coherent` names the coherent allocations by pool address: each
   * slot of a range that is in use, and the rest of the allocation the range's
   * last slot belongs to, read as coherent. `out` (slotMapBytes(nslabs) bytes) is
   * filled and returned in `bits` instead of a new array.
   */
  read(coherent: readonly PoolRange[] = [], out?: Uint8Array): SlotMap {
    const { nslabs, nareas, areaNslabs } = this.geometry;
    const bits = out ?? new Uint8Array(slotMapBytes(nslabs));
    if (bits.length !== slotMapBytes(nslabs)) {
      throw new RangeError(
        `slot map buffer is ${bits.length} bytes, ${nslabs} slots need ${slotMapBytes(nslabs)}`,
      );
    }
    bits.fill(0);
    const used = this.m.usedBits;
    const head = this.m.slotHead;
    let inUse = 0;
    let padding = 0;
    // Word by word: a free word (the common case) costs one read.
    for (let w = 0; w < used.length; w++) {
      let x = used[w]!;
      while (x !== 0) {
        const bit = 31 - Math.clz32(x & -x);
        x &= x - 1;
        const s = (w << 5) | bit;
        if (s >= nslabs) break;
        const state = head[s]! >= 0 ? SLOT_IN_USE : SLOT_PADDING;
        if (state === SLOT_IN_USE) inUse++;
        else padding++;
        bits[s >>> 2]! |= state << ((s & 3) << 1);
      }
    }
    const counts: SlotCounts = {
      free: nslabs - inUse - padding,
      in_use: inUse,
      padding,
      coherent: 0,
    };
    for (const r of coherent) this.markCoherent(bits, r, counts);
    const cursors: number[] = [];
    for (let a = 0; a < nareas; a++) {
      cursors.push(a * areaNslabs + Atomics.load(this.m.control, a * AREA_STRIDE + AREA_INDEX));
    }
    return { nslabs, nareas, areaNslabs, bits, cursors, counts };
  }

  /**
   * Marks the used slots of range `r`, and the rest of the allocation its last
   * slot belongs to, coherent; moves them from their count to `coherent`.
   */
  private markCoherent(bits: Uint8Array, r: PoolRange, counts: SlotCounts): void {
    const { nslabs, base } = this.geometry;
    const used = this.m.usedBits;
    const head = this.m.slotHead;
    const from = Math.max(0, Math.floor((r.addr - base) / IO_TLB_SIZE));
    let to = Math.min(nslabs, Math.ceil((r.addr + r.bytes - base) / IO_TLB_SIZE));
    if (to <= from) return;
    // The allocation goes on past the range's bytes when its size was rounded up.
    const last = head[to - 1]!;
    if (last >= 0) while (to < nslabs && head[to] === last) to++;
    for (let s = from; s < to; s++) {
      if (((used[s >>> 5]! >>> (s & 31)) & 1) === 0) continue;
      const shift = (s & 3) << 1;
      const before = (bits[s >>> 2]! >>> shift) & 3;
      if (before === SLOT_COHERENT) continue;
      if (before === SLOT_PADDING) counts.padding--;
      else counts.in_use--;
      counts.coherent++;
      bits[s >>> 2] = (bits[s >>> 2]! & ~(3 << shift)) | (SLOT_COHERENT << shift);
    }
  }
}
