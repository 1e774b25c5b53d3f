/**
 * The copy-size histogram of the copy engine's accounting (src/workers/copy-stats.ts):
 * a copy lands in the first bucket whose bound holds it, from 32 B (the copies too
 * small to time: 1-byte status, 16-byte virtio-blk headers) up to 512 KiB.
 */
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import {
  CopyStatsWriter,
  HISTOGRAM_BOUNDS,
  HISTOGRAM_BUCKETS,
  histogramBucket,
  readCopyStats,
  statsLayout,
} from '../src/workers/copy-stats.js';

/** The bucket by definition: the first bound at or above `length`, else the last (+Inf). */
function bucketOf(length: number): number {
  const i = HISTOGRAM_BOUNDS.findIndex((bound) => length <= bound);
  return i === -1 ? HISTOGRAM_BUCKETS - 1 : i;
}

describe('copy size buckets', () => {
  it('are 32 B, 64 B, ... 512 KiB and +Inf', () => {
    expect(HISTOGRAM_BOUNDS.length).toBe(HISTOGRAM_BUCKETS - 1);
    expect(HISTOGRAM_BOUNDS[0]).toBe(32);
    expect(HISTOGRAM_BOUNDS.slice(0, 5)).toEqual([32, 64, 128, 256, 512]);
    expect(HISTOGRAM_BOUNDS.at(-1)).toBe(512 * 1024);
  });

  it('a status byte and a header go to the 32 B bucket, apart from 33 B and up', () => {
    expect(histogramBucket(1)).toBe(0);
    expect(histogramBucket(16)).toBe(0);
    expect(histogramBucket(32)).toBe(0);
    expect(histogramBucket(33)).toBe(1);
    expect(histogramBucket(64)).toBe(1);
    expect(histogramBucket(65)).toBe(2);
    expect(histogramBucket(512)).toBe(4);
    expect(histogramBucket(513)).toBe(5);
    expect(histogramBucket(512 * 1024)).toBe(HISTOGRAM_BUCKETS - 2);
    expect(histogramBucket(512 * 1024 + 1)).toBe(HISTOGRAM_BUCKETS - 1);
    expect(histogramBucket(2 ** 32 - 1)).toBe(HISTOGRAM_BUCKETS - 1);
  });

  it('every length lands in the first bucket whose bound holds it', () => {
    const lengths = new Set<number>();
    for (let n = 1; n <= 4096; n++) lengths.add(n);
    for (const bound of HISTOGRAM_BOUNDS) for (const d of [-1, 0, 1]) lengths.add(bound + d);
    for (let e = 12; e < 32; e++) for (const d of [-1, 0, 1]) lengths.add(2 ** e + d);
    for (const n of lengths) {
      if (n < 1 || n > 2 ** 32 - 1) continue;
      expect(histogramBucket(n), `length ${n}`).toBe(bucketOf(n));
    }
  });

  it('a writer counts each copy in its bucket and the reader sums them per direction', () => {
    const blocks = 2;
    const maxRegions = 2;
    const buffer = new SharedArrayBuffer(statsLayout(blocks, maxRegions).bytes);
    const inline = new CopyStatsWriter(buffer, blocks, maxRegions, 0);
    const worker = new CopyStatsWriter(buffer, blocks, maxRegions, 1);
    inline.begin();
    for (const n of [16, 4096, 1]) inline.add(0, D.TO_DEVICE, n, 0);
    inline.add(1, D.FROM_DEVICE, 1, 0);
    inline.add(1, D.FROM_DEVICE, 48, 0);
    inline.end();
    worker.begin();
    worker.add(0, D.TO_DEVICE, 1 << 20, 1000);
    worker.end();
    const s = readCopyStats(buffer, blocks, maxRegions);
    const expected = (lengths: number[]) => {
      const counts = new Array<number>(HISTOGRAM_BUCKETS).fill(0);
      for (const n of lengths) counts[bucketOf(n)]! += 1;
      return counts;
    };
    expect(s.histogram.to_device).toEqual(expected([16, 4096, 1, 1 << 20]));
    expect(s.histogram.from_device).toEqual(expected([1, 48]));
    expect(s.histogram.to_device[0]).toBe(2);
    expect(s.histogram.from_device.slice(0, 2)).toEqual([1, 1]);
  });
});
