/**
 * Deltas of counters that wrap modulo 2^32: the pool's counters are Uint32 words
 * in shared memory (src/swiotlb/layout.ts), so a reader sees N after 2^32 + N
 * events. The delta between two readings is right as long as fewer than 2^32
 * events happened between them; the readings may also be sums of several such
 * counters (the pool's per-area counts), whose delta is the same modulo 2^32.
 *
 *   before = 0xffff_fff0, now = 0x0000_0010  ->  delta 0x20 (32), not -4294967264
 */
export function wrapDelta32(now: number, before: number): number {
  return (now - before) >>> 0;
}
