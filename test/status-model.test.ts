/**
 * The status page's arithmetic (static/status/model.js), run under Node: the
 * page decodes the server's slot map as the server encoded it, rates survive a
 * 32-bit wrap, windowed percentiles interpolate as histogram_quantile() does,
 * and every slot is drawn in a cell of its own that maps back to it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { SlotMapReader, slotStateAt } from '../src/swiotlb/slot-map.js';
import * as M from '../static/status/model.js';

describe('status page model', () => {
  it('decodes the base64 map the slot endpoint sends, slot for slot', () => {
    const pool = SwiotlbPool.create({ slots: 640, areas: 1 });
    for (let i = 0; i < 20; i++)
      pool.map(i * 8192 + 0x800, 3000 + i * 700, DmaDirection.TO_DEVICE, {
        minAlignMask: 4095,
        allocAlignMask: 4095,
      });
    const map = new SlotMapReader(pool.share()).read();
    const base64 = Buffer.from(map.bits).toString('base64');
    const decoded = M.decodeMap(base64);
    expect(decoded).toEqual(map.bits);
    const seen = new Set<number>();
    for (let s = 0; s < 640; s++) {
      expect(M.slotState(decoded, s)).toBe(slotStateAt(map.bits, s));
      seen.add(M.slotState(decoded, s));
    }
    // The case covers free, in-use and padding slots.
    expect([...seen].sort()).toEqual([0, 1, 2]);
  });

  it('counter deltas: plain, a 32-bit wrap, a counter that went back', () => {
    expect(M.counterDelta(10, 25)).toBe(15);
    expect(M.counterDelta(2 ** 32 - 5, 3, true)).toBe(8);
    expect(M.counterDelta(2 ** 32 - 5, 3, false)).toBe(0);
    expect(M.counterDelta(100, 40)).toBe(0);
    expect(M.ratePerSecond(100, 400, 2)).toBe(150);
    expect(M.ratePerSecond(undefined, 400, 2)).toBeUndefined();
    expect(M.ratePerSecond(100, 400, 0)).toBeUndefined();
  });

  it('busy share: 1 less the idle share of every thread, between 0 and 1', () => {
    // Two threads, 2 s: 1 s idle of 4 thread-seconds.
    expect(M.busyShare(10, 11, 2, 2)).toBe(0.75);
    expect(M.busyShare(10, 10, 2, 1)).toBe(1);
    // An idle stretch that began before the window counts whole in it: never below 0.
    expect(M.busyShare(10, 12.5, 2, 1)).toBe(0);
    // A counter that went back (a restart) tells nothing: not "all busy".
    expect(M.busyShare(10, 3, 2, 1)).toBeUndefined();
    expect(M.busyShare(undefined, 1, 2, 1)).toBeUndefined();
    expect(M.busyShare(0, 1, 0, 1)).toBeUndefined();
    expect(M.busyShare(0, 1, 2, 0)).toBeUndefined();
  });

  it('windowed quantiles interpolate inside the bucket, as histogram_quantile does', () => {
    const bounds = [1, 2, 4];
    // Two in (0,1], two in (1,2]: the median is the top of the first bucket,
    // the 75th percentile halfway through the second.
    expect(M.windowQuantile(bounds, [0, 0, 0, 0], [2, 2, 0, 0], 0.5)).toBe(1);
    expect(M.windowQuantile(bounds, [0, 0, 0, 0], [2, 2, 0, 0], 0.75)).toBe(1.5);
    // Only what the window added counts: before [5, 0, ...] is subtracted.
    expect(M.windowQuantile(bounds, [5, 0, 0, 0], [5, 0, 4, 0], 0.5)).toBe(3);
    // All in +Inf: the highest finite bound (Prometheus does the same).
    expect(M.windowQuantile(bounds, undefined, [0, 0, 0, 3], 0.99)).toBe(4);
    expect(M.windowQuantile(bounds, [1, 1, 1, 1], [1, 1, 1, 1], 0.5)).toBeUndefined();
  });

  it('lays out the default pool in one laptop screen, and a large one in the height asked', () => {
    const laptop = M.slotMapLayout(32768, 2, 16384, 1110, 560);
    expect(laptop).toMatchObject({ cell: 4, cols: 256, rowsPerArea: 64 });
    expect(laptop.height).toBeLessThanOrEqual(560);
    const big = M.slotMapLayout(524288, 1, 524288, 1110, 560);
    expect(big.cell).toBe(1);
    expect(big.cols).toBe(1024);
    const small = M.slotMapLayout(4096, 1, 4096, 1110, 560);
    expect(small.cell).toBeGreaterThanOrEqual(4);
  });

  it('every slot has a cell of its own that maps back to it (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 200, max: 1400 }),
        fc.integer({ min: 100, max: 800 }),
        (areaLog, segmentsPerArea, width, height) => {
          const nareas = 2 ** areaLog;
          const areaNslabs = segmentsPerArea * 128;
          const nslabs = nareas * areaNslabs;
          const layout = M.slotMapLayout(nslabs, nareas, areaNslabs, width, height);
          const wrong: string[] = [];
          for (let s = 0; s < nslabs; s++) {
            const { x, y } = M.slotXY(layout, s);
            const c = layout.cell - 1;
            if (x + c >= layout.width || y + c >= layout.height) wrong.push(`${s} outside`);
            if (M.slotAt(layout, x, y) !== s || M.slotAt(layout, x + c, y + c) !== s) {
              wrong.push(`${s} maps back to ${M.slotAt(layout, x, y)}`);
            }
          }
          expect(wrong.slice(0, 5)).toEqual([]);
          expect(M.slotAt(layout, -1, 0)).toBe(-1);
          expect(M.slotAt(layout, 0, layout.height)).toBe(-1);
        },
      ),
      { numRuns: 60, seed: 7 },
    );
  });

  it('writes numbers with three significant digits and their unit', () => {
    expect(M.formatCount(12345)).toBe('12.3k');
    expect(M.formatCount(999)).toBe('999');
    expect(M.formatCount(2.5)).toBe('2.50');
    expect(M.formatCount(undefined)).toBe('–');
    expect(M.formatRate(9.9996e6)).toBe('10.0 MB/s');
    expect(M.formatRate(2.34e9)).toBe('2.34 GB/s');
    expect(M.formatRate(512)).toBe('512 B/s');
    expect(M.formatSize(64 * 2 ** 20)).toBe('64.0 MiB');
    expect(M.formatSeconds(0.000338)).toBe('338 µs');
    expect(M.formatSeconds(0.0146)).toBe('14.6 ms');
    expect(M.formatPercent(1, 3)).toBe('33.3%');
    expect(M.formatInteger(32768)).toBe('32,768');
  });
});
