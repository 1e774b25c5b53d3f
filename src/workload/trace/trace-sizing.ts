import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { computeGeometry, MAX_POOL_SLOTS, roundUpPowerOfTwo } from '../../swiotlb/geometry.js';
import type { KernelVersion } from '../../swiotlb/kernel.js';
import type { DemandResult, TraceDemand } from './demand.js';

/**
 * Pool sizing from a trace: the traced demand (demand.ts) replayed against pools
 * of other sizes and area counts, by the traced kernel's rules, from the CPUs
 * that searched. Unlike `size --job`, nothing is simulated: the requests, their
 * order and their concurrency are the guest's own.
 *
 * - A default pool is what `swiotlb=N,A` builds: N a power of two of at least
 *   128 x A slots (round_up_default_nslabs()), so those are the sizes tried, from
 *   the smallest up; the first without a failure is the minimum at A areas.
 * - A restricted-dma-pool has one area and any size (rmem_swiotlb_device_init():
 *   size >> 11 slots): whole segments are tried, by bisection, which assumes that
 *   more room never adds a failure. That holds in practice but not always (next-fit
 *   places differently in a larger area): the margin covers it.
 * - The recommendation adds a margin and rounds as the kernel would round it, up to
 *   the largest pool (1 GiB, MAX_POOL_SLOTS).
 */

export interface TraceSizingOptions {
  profile: KernelVersion;
  /** The traced pool's base: the same alignment of slot addresses in every pool tried. */
  base: number;
  /** The traced pool (for the table's "your pool" row). */
  kernelNslabs: number;
  kernelNareas: number;
  /** CPUs that searched the pool in the trace. */
  cpus: number;
  /** Areas to recommend for. @default the traced pool's */
  areas?: number;
  /** Head room over the minimum. @default 0.25 */
  margin?: number;
}

export interface TraceSizingRow extends DemandResult {
  bytes: number;
  used_hiwater_percent: number;
  /** The traced kernel's own pool. */
  traced: boolean;
}

export interface TraceSizing {
  margin: number;
  areas: number;
  /** Requests replayed against each pool (maps, allocations, the kernel's failures). */
  requests: number;
  /** Smallest default pool without failures at `areas`; undefined when even 1 GiB fails. */
  minimal_slots: number | undefined;
  recommended_slots: number | undefined;
  by_areas: { areas: number; minimal_slots: number | undefined }[];
  /** A restricted-dma-pool (one area, whole segments). */
  restricted: { minimal_slots: number | undefined; recommended_slots: number | undefined };
  table: TraceSizingRow[];
  /** Maps no pool places (larger than a mapping can be): not counted as failures. */
  too_large: number;
}

function row(r: DemandResult, traced: boolean): TraceSizingRow {
  return {
    ...r,
    bytes: r.nslabs * IO_TLB_SIZE,
    used_hiwater_percent: Math.round((r.used_hiwater / r.nslabs) * 10000) / 100,
    traced,
  };
}

/** Replays per pool, memoised (the table and the searches share sizes). */
class Runs {
  private readonly memo = new Map<string, DemandResult>();
  constructor(
    private readonly demand: TraceDemand,
    private readonly o: TraceSizingOptions,
  ) {}

  pool(nslabs: number, nareas: number): DemandResult {
    return this.run(`d${nslabs}/${nareas}`, { nslabs, nareas });
  }

  restricted(nslabs: number): DemandResult {
    return this.run(`r${nslabs}`, { nslabs, nareas: 1, restricted: true });
  }

  private run(
    key: string,
    g: { nslabs: number; nareas: number; restricted?: boolean },
  ): DemandResult {
    let r = this.memo.get(key);
    if (r === undefined) {
      r = this.demand.replay({ ...g, base: this.o.base, profile: this.o.profile });
      this.memo.set(key, r);
    }
    return r;
  }
}

/** The smallest power-of-two default pool at `areas` without failures. */
function minimalDefault(runs: Runs, areas: number): number | undefined {
  for (let n = IO_TLB_SEGSIZE * areas; n <= MAX_POOL_SLOTS; n *= 2) {
    if (runs.pool(n, areas).failures === 0) return n;
  }
  return undefined;
}

/** The smallest restricted pool, in whole segments, without failures (bisection). */
function minimalRestricted(runs: Runs): number | undefined {
  const maxSegs = MAX_POOL_SLOTS / IO_TLB_SEGSIZE;
  const ok = (segs: number) => runs.restricted(segs * IO_TLB_SEGSIZE).failures === 0;
  // Doubling first: a 1 GiB pool is tried only when everything below it fails.
  let lo = 0;
  let hi = 1;
  while (!ok(hi)) {
    if (hi >= maxSegs) return undefined;
    lo = hi;
    hi = Math.min(maxSegs, hi * 2);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) hi = mid;
    else lo = mid;
  }
  return hi * IO_TLB_SEGSIZE;
}

/**
 * The minimum plus the margin as `swiotlb=<slots>,<areas>` rounds it; the largest
 * pool (1 GiB) when that is past it (as `size --job`'s restricted pool is capped).
 */
function recommend(minimal: number, margin: number, areas: number): number {
  const wanted = Math.ceil(minimal * (1 + margin));
  return wanted > MAX_POOL_SLOTS
    ? MAX_POOL_SLOTS
    : computeGeometry({ slots: wanted, areas }).nslabs;
}

export function sizeFromTrace(demand: TraceDemand, o: TraceSizingOptions): TraceSizing {
  const margin = o.margin ?? 0.25;
  const areas = roundUpPowerOfTwo(o.areas ?? o.kernelNareas);
  const runs = new Runs(demand, o);
  const counts = new Set<number>([1, areas, o.kernelNareas]);
  const top = roundUpPowerOfTwo(Math.max(areas, o.kernelNareas, o.cpus));
  for (let a = 2; a <= top; a *= 2) counts.add(a);
  const by_areas = [...counts]
    .sort((a, b) => a - b)
    .map((a) => ({ areas: a, minimal_slots: minimalDefault(runs, a) }));
  const minimal = by_areas.find((b) => b.areas === areas)!.minimal_slots;
  const recommended = minimal === undefined ? undefined : recommend(minimal, margin, areas);
  const rMin = minimalRestricted(runs);
  const rRec =
    rMin === undefined
      ? undefined
      : Math.min(
          MAX_POOL_SLOTS,
          Math.ceil((rMin * (1 + margin)) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE,
        );

  const sizes = new Set<number>();
  const low = minimal ?? MAX_POOL_SLOTS;
  for (let n = Math.max(IO_TLB_SEGSIZE * areas, low / 4); n <= MAX_POOL_SLOTS; n *= 2) {
    sizes.add(n);
    if (n >= 2 * (recommended ?? low) && n >= 2 * low) break;
  }
  const tracedHere = o.kernelNareas === areas;
  if (tracedHere) sizes.add(o.kernelNslabs);
  const table = [...sizes]
    .sort((a, b) => a - b)
    .map((n) => row(runs.pool(n, areas), tracedHere && n === o.kernelNslabs));
  return {
    margin,
    areas,
    requests: table[0]?.requests ?? demand.requests,
    minimal_slots: minimal,
    recommended_slots: recommended,
    by_areas,
    restricted: { minimal_slots: rMin, recommended_slots: rRec },
    table,
    too_large: table[0]?.too_large ?? 0,
  };
}
