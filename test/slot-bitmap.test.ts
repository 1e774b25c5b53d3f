import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allUsed,
  bitmapWords,
  freeRun,
  isUsed,
  largestFreeRun,
  markFree,
  markPhantom,
  markUsed,
} from '../src/swiotlb/slot-bitmap.js';

const SEG = 128;

/** The kernel's list[] computed the slow way from a boolean per slot. */
function modelRun(used: boolean[], s: number): number {
  if (used[s]) return 0;
  const end = (Math.floor(s / SEG) + 1) * SEG;
  let n = 0;
  while (s + n < end && !used[s + n]) n++;
  return n;
}

describe('slot bitmap', () => {
  it('answers the kernel list[] for hand-picked runs', () => {
    const bits = new Int32Array(bitmapWords(256));
    expect(freeRun(bits, 0)).toBe(128);
    expect(freeRun(bits, 127)).toBe(1);
    expect(freeRun(bits, 128)).toBe(128);
    markUsed(bits, 30, 5); // crosses the word boundary at 32
    expect(freeRun(bits, 0)).toBe(30);
    expect(freeRun(bits, 29)).toBe(1);
    expect(freeRun(bits, 30)).toBe(0);
    expect(freeRun(bits, 34)).toBe(0);
    expect(freeRun(bits, 35)).toBe(93);
    expect(isUsed(bits, 31)).toBe(true);
    markUsed(bits, 128, 128);
    expect(bits.slice(4, 8)).toEqual(new Int32Array([-1, -1, -1, -1]));
    expect(freeRun(bits, 200)).toBe(0);
    expect(largestFreeRun(bits, 0, 256)).toBe(93);
    markFree(bits, 30, 5);
    expect(freeRun(bits, 0)).toBe(128);
    markFree(bits, 128, 128);
    expect(Array.from(bits)).toEqual(new Array(8).fill(0));
  });

  it('ends the runs of a partial last segment at the pool end (list = min(.., nslabs - i))', () => {
    // 200 slots: the second segment has 72; its words cover 128 slots, the last 56 used.
    expect(bitmapWords(200)).toBe(8);
    const bits = new Int32Array(bitmapWords(200));
    markPhantom(bits, 200);
    expect(freeRun(bits, 128)).toBe(72);
    expect(freeRun(bits, 199)).toBe(1);
    expect(isUsed(bits, 200)).toBe(true);
    expect(largestFreeRun(bits, 0, 200)).toBe(128);
    markUsed(bits, 0, 128);
    expect(largestFreeRun(bits, 0, 200)).toBe(72);
    // A whole number of segments has nothing to mark.
    const whole = new Int32Array(bitmapWords(256));
    markPhantom(whole, 256);
    expect(whole.every((w) => w === 0)).toBe(true);
  });

  it('allUsed: whole words, partial words, a range across a word boundary', () => {
    const bits = new Int32Array(bitmapWords(128));
    markUsed(bits, 30, 40); // slots 30-69: the end of word 0, word 1, the start of word 2
    expect(allUsed(bits, 30, 40)).toBe(true);
    expect(allUsed(bits, 32, 32)).toBe(true);
    expect(allUsed(bits, 29, 2)).toBe(false);
    expect(allUsed(bits, 69, 2)).toBe(false);
    markFree(bits, 50, 1);
    expect(allUsed(bits, 30, 40)).toBe(false);
    expect(allUsed(bits, 51, 19)).toBe(true);
  });

  it('matches a per-slot model under random marks and frees', () => {
    const segments = 3;
    const op = fc.record({
      segment: fc.integer({ min: 0, max: segments - 1 }),
      start: fc.integer({ min: 0, max: SEG - 1 }),
      length: fc.integer({ min: 1, max: SEG }),
      used: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const n = segments * SEG;
        const bits = new Int32Array(bitmapWords(n));
        const model = new Array<boolean>(n).fill(false);
        for (const o of ops) {
          const from = o.segment * SEG + o.start;
          const count = Math.min(o.length, SEG - o.start);
          (o.used ? markUsed : markFree)(bits, from, count);
          for (let s = from; s < from + count; s++) model[s] = o.used;
        }
        let largest = 0;
        for (let s = 0; s < n; s++) {
          expect(isUsed(bits, s)).toBe(model[s]);
          const run = modelRun(model, s);
          expect(freeRun(bits, s)).toBe(run);
          largest = Math.max(largest, run);
        }
        expect(largestFreeRun(bits, 0, n)).toBe(largest);
        // allUsed over ranges of every length and offset, across word boundaries.
        for (let from = 0; from < n; from += 7) {
          for (const count of [1, 5, 31, 32, 33, 64, 100]) {
            if (from + count > n) continue;
            const want = model.slice(from, from + count).every((u) => u);
            expect(allUsed(bits, from, count), `allUsed(${from}, ${count})`).toBe(want);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
