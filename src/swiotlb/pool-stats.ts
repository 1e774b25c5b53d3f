import { acquire, release } from './area-lock.js';
import type { Geometry } from './geometry.js';
import {
  AREA_CONTENDED,
  AREA_INDEX,
  AREA_LOCK,
  AREA_MAPS,
  AREA_STRIDE,
  AREA_UNMAPS,
  AREA_USED,
  G_FAIL_FULL,
  G_FAIL_INVALID,
  G_FAIL_KERNEL,
  G_FAIL_TOO_LARGE,
  G_HIWATER,
  G_SYNCS,
  G_TOTAL_USED,
  type MetadataViews,
} from './layout.js';
import type { AreaStats, PoolStats } from './pool-types.js';
import { largestFreeRun } from './slot-bitmap.js';

/**
 * The pool's debugfs files and counters, read from its metadata. Each area is
 * read under its lock (so its used count and largest free run agree); the
 * pool-wide words are atomics, read once each.
 */
export function readStats(m: MetadataViews, geometry: Geometry): PoolStats {
  const c = m.control;
  const { nareas, areaNslabs } = geometry;
  const areas: AreaStats[] = [];
  let largest = 0;
  let maps = 0;
  let unmaps = 0;
  for (let a = 0; a < nareas; a++) {
    const word = a * AREA_STRIDE;
    acquire(c, word + AREA_LOCK);
    let areaLargest = 0;
    try {
      areaLargest = largestFreeRun(m.usedBits, a * areaNslabs, (a + 1) * areaNslabs);
      areas.push({
        used: c[word + AREA_USED]!,
        index: c[word + AREA_INDEX]!,
        contended: c[word + AREA_CONTENDED]! >>> 0,
        largest_free_run: areaLargest,
      });
      maps += c[word + AREA_MAPS]! >>> 0;
      unmaps += c[word + AREA_UNMAPS]! >>> 0;
    } finally {
      release(c, word + AREA_LOCK);
    }
    if (areaLargest > largest) largest = areaLargest;
  }
  const g = m.globalBase;
  return {
    nslabs: geometry.nslabs,
    used: Atomics.load(c, g + G_TOTAL_USED),
    used_hiwater: Atomics.load(c, g + G_HIWATER),
    transient_nslabs: 0,
    nareas,
    area_nslabs: areaNslabs,
    areas,
    largest_free_run: largest,
    map_failures: {
      full: Atomics.load(c, g + G_FAIL_FULL) >>> 0,
      too_large: Atomics.load(c, g + G_FAIL_TOO_LARGE) >>> 0,
      invalid: Atomics.load(c, g + G_FAIL_INVALID) >>> 0,
      kernel_defect: Atomics.load(c, g + G_FAIL_KERNEL) >>> 0,
    },
    maps,
    unmaps,
    syncs: Atomics.load(c, g + G_SYNCS) >>> 0,
  };
}
