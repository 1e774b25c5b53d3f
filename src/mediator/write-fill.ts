import { mulberry32 } from '../util/prng.js';
import { copyView } from '../workers/shared-copy.js';

/**
 * What the guest does to the buffer of a synthetic write (BlkDriver.write given
 * a length, no payload) before the driver maps it: what fio does to its I/O
 * buffers, so that the fio runner's writes touch the memory fio's touch.
 *
 * fio (axboe/fio: io_u.c get_io_u() and small_content_scramble() as of commit
 * b2a432bf, options.c as of 43522848, init.c init_flags()), for a write:
 * - `refill_buffers`: io_u_fill_buffer() rewrites the whole buffer with random
 *   data before every write;
 * - otherwise, with `scramble_buffers` (a bool whose default is 1, options.c)
 *   and neither `zero_buffers` set explicitly nor compression nor verify
 *   (init.c init_flags()): small_content_scramble() writes, into every 512-byte
 *   block, the block's byte offset (8 bytes) at the start of one of its eight
 *   cache lines, picked once per I/O as (start_time.tv_nsec ^ offset) & 7, and
 *   the I/O's start time (16 bytes) into the last 16 bytes of its first cache
 *   line: one or two of the block's eight lines;
 * - with `scramble_buffers=0` or `zero_buffers`: nothing (the buffer keeps what it
 *   holds).
 *
 * Here the start time is a per-driver count of fills (the bytes are not read;
 * which lines are written is what costs). Refill copies from a block of random
 * bytes made once per driver, at a moving offset: one memcpy per write, where
 * fio generates the bytes (fill_random_buf()).
 */
export const WriteFill = {
  /** The buffer keeps what it holds (fio `scramble_buffers=0`, `zero_buffers`). */
  NONE: 0,
  /** fio's default: small_content_scramble(). */
  SCRAMBLE: 1,
  /** fio `refill_buffers`: the whole buffer rewritten. */
  REFILL: 2,
} as const;
export type WriteFill = (typeof WriteFill)[keyof typeof WriteFill];

const BLOCK = 512;
/** Random bytes a refill copies from; a write copies from a moving offset in it. */
const RANDOM_BYTES = 2 ** 20;

/**
 * Applies a {@link WriteFill} to ranges of buffers. One per driver: it keeps the
 * view it writes through and the random block, so a write allocates nothing.
 */
export class WriteFiller {
  private stamp = 0;
  private random: Uint8Array | undefined;
  private randomAt = 0;
  private lastBuffer: ArrayBufferLike | undefined;
  private lastView: DataView | undefined;

  /** The stamp of the next I/O (fio's start time): once per I/O, before its ranges. */
  nextStamp(): number {
    this.stamp = (this.stamp + 1) >>> 0;
    return this.stamp;
  }

  /**
   * Fills [at, at + length) of `bytes`, the range of an I/O that starts at byte
   * `offset` of the device (`length` a multiple of 512: a buffer split over
   * segments is filled segment by segment, each with the I/O's own stamp).
   */
  fill(
    kind: WriteFill,
    bytes: Uint8Array,
    at: number,
    length: number,
    offset: number,
    stamp: number,
  ): void {
    if (kind === WriteFill.SCRAMBLE) this.scramble(bytes, at, length, offset, stamp);
    else if (kind === WriteFill.REFILL) this.refill(bytes, at, length);
  }

  /** small_content_scramble() on the range. */
  private scramble(
    bytes: Uint8Array,
    at: number,
    length: number,
    offset: number,
    stamp: number,
  ): void {
    const view = this.viewOf(bytes.buffer);
    const base = bytes.byteOffset + at;
    const line = ((stamp ^ offset) & 7) << 6;
    for (let b = 0; b < length; b += BLOCK) {
      const p = base + b;
      const boffset = offset + b;
      view.setUint32(p + line, boffset >>> 0, true);
      view.setUint32(p + line + 4, Math.floor(boffset / 2 ** 32), true);
      view.setUint32(p + 48, stamp, true);
      view.setUint32(p + 52, 0, true);
      view.setUint32(p + 56, stamp, true);
      view.setUint32(p + 60, 0, true);
    }
  }

  /** The range rewritten from the random block, a memcpy at a time. */
  private refill(bytes: Uint8Array, at: number, length: number): void {
    const r = this.randomBlock();
    let done = 0;
    while (done < length) {
      if (this.randomAt >= RANDOM_BYTES) this.randomAt = 0;
      const n = Math.min(length - done, RANDOM_BYTES - this.randomAt);
      copyView(bytes, at + done, r.subarray(this.randomAt, this.randomAt + n));
      done += n;
      this.randomAt += n;
    }
    // An odd step of sectors past the end: consecutive writes do not repeat one another.
    this.randomAt = (this.randomAt + 7 * BLOCK) % RANDOM_BYTES;
  }

  private randomBlock(): Uint8Array {
    if (this.random !== undefined) return this.random;
    const r = new Uint8Array(RANDOM_BYTES);
    // Seeded: the bytes need only be incompressible, never secret.
    const rand = mulberry32(0x9e3779b9);
    const words = new Uint32Array(r.buffer);
    for (let i = 0; i < words.length; i++) words[i] = rand() * 2 ** 32;
    this.random = r;
    return r;
  }

  private viewOf(buffer: ArrayBufferLike): DataView {
    if (buffer !== this.lastBuffer) {
      this.lastBuffer = buffer;
      this.lastView = new DataView(buffer);
    }
    return this.lastView!;
  }
}
