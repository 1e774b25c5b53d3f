/**
 * copyView/copyShared (src/workers/shared-copy.ts): every copy the guest side makes
 * between shared buffers goes through them, by Buffer.prototype.fill's memcpy from
 * FILL_COPY_MIN bytes on and by TypedArray.set below. Both routes must copy exactly
 * the range, whatever the buffers' kinds and the alignments.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  copyShared,
  copyView,
  FILL_COPY_MIN,
  MISALIGNED_FILL_MIN,
} from '../src/workers/shared-copy.js';

const SIZE = 3 * FILL_COPY_MIN;

function bytes(shared: boolean, seed: number): Uint8Array {
  const a = new Uint8Array(shared ? new SharedArrayBuffer(SIZE) : new ArrayBuffer(SIZE));
  for (let i = 0; i < SIZE; i++) a[i] = (i * 31 + seed) & 255;
  return a;
}

const caseArb = fc
  .record({
    srcShared: fc.boolean(),
    dstShared: fc.boolean(),
    length: fc.oneof(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: FILL_COPY_MIN - 9, max: FILL_COPY_MIN + 9 }),
      fc.integer({ min: MISALIGNED_FILL_MIN - 9, max: MISALIGNED_FILL_MIN + 9 }),
      fc.integer({ min: 1, max: 2 * FILL_COPY_MIN }),
    ),
    from: fc.nat({ max: FILL_COPY_MIN }),
    to: fc.nat({ max: FILL_COPY_MIN }),
  })
  .filter((c) => c.from + c.length <= SIZE && c.to + c.length <= SIZE);

describe('shared-copy', () => {
  it('copies exactly the range, by either route, at any alignment, shared or not', () => {
    fc.assert(
      fc.property(caseArb, fc.boolean(), (c, byBuffer) => {
        const src = bytes(c.srcShared, 7);
        const dst = bytes(c.dstShared, 101);
        const expected = Uint8Array.from(dst);
        expected.set(src.subarray(c.from, c.from + c.length), c.to);
        if (byBuffer) copyShared(dst, c.to, src.buffer, c.from, c.length);
        else copyView(dst, c.to, src.subarray(c.from, c.from + c.length));
        // Byte for byte: the range copied, everything around it unchanged.
        expect(Buffer.compare(Buffer.from(dst), Buffer.from(expected))).toBe(0);
      }),
      { numRuns: 300, seed: 0x5c0b },
    );
  });

  it('copies overlapping views of one buffer with set(), which is defined for them (memcpy is not)', () => {
    const set = Uint8Array.prototype.set;
    let sets = 0;
    Uint8Array.prototype.set = function (this: Uint8Array, ...args: [ArrayLike<number>, number?]) {
      sets++;
      return set.apply(this, args);
    };
    try {
      for (const [from, to] of [
        [0, 100],
        [100, 0],
        [3, 1030],
      ] as const) {
        const a = bytes(true, 9);
        const expected = Uint8Array.from(a);
        expected.copyWithin(to, from, from + 2 * FILL_COPY_MIN);
        copyView(a, to, a.subarray(from, from + 2 * FILL_COPY_MIN));
        expect(Buffer.compare(Buffer.from(a), Buffer.from(expected))).toBe(0);
      }
    } finally {
      Uint8Array.prototype.set = set;
    }
    // Every one of them long enough for memcpy, and every one copied by set().
    expect(sets).toBe(3);
  });

  it('takes the memcpy route from FILL_COPY_MIN bytes on (from MISALIGNED_FILL_MIN when misaligned), and set() below', () => {
    const dst = bytes(true, 3);
    const calls: number[] = [];
    const set = Uint8Array.prototype.set;
    Uint8Array.prototype.set = function (this: Uint8Array, ...args: [ArrayLike<number>, number?]) {
      calls.push(args[0].length);
      return set.apply(this, args);
    };
    try {
      copyView(dst, 0, bytes(false, 1).subarray(0, FILL_COPY_MIN));
      copyView(dst, 0, bytes(false, 1).subarray(0, FILL_COPY_MIN - 1));
      copyView(dst, 0, bytes(false, 1).subarray(1, MISALIGNED_FILL_MIN + 1)); // misaligned: fill
      copyView(dst, 0, bytes(false, 1).subarray(1, MISALIGNED_FILL_MIN)); // misaligned, short: set
      copyView(dst, 8, bytes(false, 1).subarray(0, MISALIGNED_FILL_MIN)); // aligned: set
      // The engine's route, chosen from the offsets (dst views its whole buffer).
      const src = bytes(true, 5).buffer;
      copyShared(dst, 0, src, 0, FILL_COPY_MIN); // long: fill
      copyShared(dst, 0, src, 3, MISALIGNED_FILL_MIN); // misaligned: fill
      copyShared(dst, 8, src, 16, FILL_COPY_MIN - 8); // aligned, shorter: set
      copyShared(dst, 16, dst.buffer, 0, FILL_COPY_MIN); // one buffer: set
    } finally {
      Uint8Array.prototype.set = set;
    }
    // Only these went through set(); the others were Buffer.fill's memcpy.
    expect(calls).toEqual([
      FILL_COPY_MIN - 1,
      MISALIGNED_FILL_MIN - 1,
      MISALIGNED_FILL_MIN,
      FILL_COPY_MIN - 8,
      FILL_COPY_MIN,
    ]);
  });
});
