/**
 * Copies between SharedArrayBuffers, at memcpy speed where that pays.
 *
 * V8 copies a typed array over shared memory (TypedArray.prototype.set, and
 * Buffer.copy, which calls it) with base::Relaxed_Memcpy (src/base/atomicops.h,
 * V8 11.3 in Node 20): one relaxed 8-byte load and store at a time, and one byte
 * at a time for the whole copy when source and destination differ modulo 8.
 * Between ArrayBuffers the same call is the C library's memmove. Node's
 * Buffer.prototype.fill with a buffer as its value is one memcpy of that buffer
 * into the range (src/node_buffer.cc, Fill()), so a value exactly as long as the
 * range copies it. It costs a call into C++, which a short copy does not win
 * back: from {@link FILL_COPY_MIN} on it is the faster of the two, and from
 * {@link MISALIGNED_FILL_MIN} on when source and destination differ modulo 8
 * (`npm run bench:memcpy`; docs/performance.md).
 *
 * memcpy, unlike set(), is not defined for overlapping ranges: two views of one
 * buffer (a caller's payload cut from the memory it is copied into) take set().
 * Guest memory and a pool are separate buffers, so the engine's copies never do.
 */

/** Copies of this many bytes and more go through Buffer.prototype.fill's memcpy. */
export const FILL_COPY_MIN = 16384;
/** The same for a source and a destination that differ modulo 8 (V8 copies those a byte at a time). */
export const MISALIGNED_FILL_MIN = 512;

const fill = Buffer.prototype.fill as (
  this: Uint8Array,
  value: Uint8Array,
  offset: number,
  end: number,
) => Uint8Array;

/** Whether memcpy pays for `length` bytes whose source lies `skew` bytes off the destination. */
function memcpyPays(length: number, skew: number): boolean {
  return length >= FILL_COPY_MIN || (length >= MISALIGNED_FILL_MIN && (skew & 7) !== 0);
}

/** Copies all of `src` into `dst` at `to` (ranges checked by the caller). */
export function copyView(dst: Uint8Array, to: number, src: Uint8Array): void {
  const length = src.length;
  if (memcpyPays(length, src.byteOffset - dst.byteOffset - to) && src.buffer !== dst.buffer) {
    fill.call(dst, src, to, to + length);
  } else {
    dst.set(src, to);
  }
}

/**
 * Copies `length` bytes of the buffer `src` from `from` into `dst` at `to`
 * (ranges checked by the caller), where `dst` views its whole buffer: the
 * {@link copyView} of the copy engine, which holds each region's buffer. The
 * route is chosen from the offsets alone, with no view's getter read on the way
 * (on shared memory `byteOffset` and `buffer` are calls, not loads);
 * `dst.buffer` only when memcpy is in question.
 */
export function copyShared(
  dst: Uint8Array,
  to: number,
  src: ArrayBufferLike,
  from: number,
  length: number,
): void {
  const view = new Uint8Array(src, from, length);
  if (memcpyPays(length, from - to) && src !== dst.buffer) {
    fill.call(dst, view, to, to + length);
  } else {
    dst.set(view, to);
  }
}
