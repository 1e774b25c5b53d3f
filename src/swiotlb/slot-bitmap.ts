import { IO_TLB_SEGSIZE } from './constants.js';

/**
 * Which pool slots are in use: one bit per slot, in place of the kernel's per-slot
 * `list[]` counts (struct io_tlb_slot.list).
 *
 *   word w = slot >>> 5, bit = slot & 31        (1 = used, 0 = free)
 *
 *   segment k (IO_TLB_SEGSIZE = 128 slots = 4 words):
 *     word 4k      word 4k+1    word 4k+2    word 4k+3
 *   [b0 ... b31] [b0 ... b31] [b0 ... b31] [b0 ... b31]
 *    ^ slot 128k                          slot 128k+127 ^
 *
 * The kernel's list[s] is freeRun(bits, s): the free slots from s up to the first
 * used slot or the end of s's segment, 0 when s is used. Linux keeps those counts
 * up to date by walking back through the free slots before every allocated or freed
 * run (up to 127 writes per map and per unmap, most of a 4 KiB map's bookkeeping);
 * the bitmap answers the same question from at most four words, so every placement
 * is the kernel's.
 *
 * Rules: a run never crosses a segment (a run is at most one segment, and areas are
 * whole segments or the whole pool), so a segment's words belong to one area and
 * change only under that area's lock. Slots past nslabs in a partial last segment
 * are set (used) for ever, so freeRun() stops at the pool's end as the kernel's
 * list[] does from 6.6 on (min(IO_TLB_SEGSIZE - io_tlb_offset(i), nslabs - i)).
 */

const WORDS_PER_SEGMENT = IO_TLB_SEGSIZE >>> 5;

/**
 * Words a bitmap for `nslabs` slots takes: whole segments, so that a partial last
 * segment (a restricted pool of nslabs % 128 != 0) has words for its missing slots,
 * which {@link markPhantom} marks used for ever.
 */
export function bitmapWords(nslabs: number): number {
  return Math.ceil(nslabs / IO_TLB_SEGSIZE) * WORDS_PER_SEGMENT;
}

/** Marks the slots after `nslabs` up to the segment's end used: they do not exist. */
export function markPhantom(bits: Int32Array, nslabs: number): void {
  const end = Math.ceil(nslabs / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
  if (end > nslabs) markRange(bits, nslabs, end - nslabs, true);
}

/** Count of trailing zero bits of a non-zero 32-bit value. */
function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** The kernel's list[slot]: free slots from `slot` to the first used one or the segment's end. */
export function freeRun(bits: Int32Array, slot: number): number {
  const bit = slot & 31;
  let w = slot >>> 5;
  let x = bits[w]! >>> bit;
  if (x !== 0) return ctz(x);
  let run = 32 - bit;
  const end = (Math.floor(slot / IO_TLB_SEGSIZE) + 1) * WORDS_PER_SEGMENT;
  for (w++; w < end; w++) {
    x = bits[w]!;
    if (x !== 0) return run + ctz(x);
    run += 32;
  }
  return run;
}

/** Whether `slot` is in use. */
export function isUsed(bits: Int32Array, slot: number): boolean {
  return ((bits[slot >>> 5]! >>> (slot & 31)) & 1) !== 0;
}

/** Whether every slot of [slot, slot + count) is in use (a word at a time). */
export function allUsed(bits: Int32Array, slot: number, count: number): boolean {
  const end = slot + count;
  for (let s = slot; s < end; ) {
    const bit = s & 31;
    const take = Math.min(32 - bit, end - s);
    const mask = take === 32 ? -1 : ((1 << take) - 1) << bit;
    if ((bits[s >>> 5]! & mask) !== mask) return false;
    s += take;
  }
  return true;
}

/** Marks slots [slot, slot + count) used (inside one segment). */
export function markUsed(bits: Int32Array, slot: number, count: number): void {
  markRange(bits, slot, count, true);
}

/** Marks slots [slot, slot + count) free (inside one segment). */
export function markFree(bits: Int32Array, slot: number, count: number): void {
  markRange(bits, slot, count, false);
}

/** Sets (used) or clears the bits of slots [slot, slot + count), a word at a time. */
function markRange(bits: Int32Array, slot: number, count: number, used: boolean): void {
  const end = slot + count;
  for (let s = slot; s < end; ) {
    const bit = s & 31;
    const take = Math.min(32 - bit, end - s);
    const mask = take === 32 ? -1 : ((1 << take) - 1) << bit;
    const w = s >>> 5;
    bits[w] = used ? bits[w]! | mask : bits[w]! & ~mask;
    s += take;
  }
}

/** Largest run of free slots in [from, to) (whole segments), as the kernel's largest list[]. */
export function largestFreeRun(bits: Int32Array, from: number, to: number): number {
  let largest = 0;
  for (let s = from; s < to; ) {
    if (isUsed(bits, s)) {
      s++;
      continue;
    }
    const run = freeRun(bits, s);
    if (run > largest) largest = run;
    s += run;
  }
  return largest;
}
