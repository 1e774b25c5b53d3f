/** Latency recording and fio-shaped summaries. */

/** fio's default percentile list (percentile_list), keyed as fio prints them. */
export const FIO_PERCENTILES = [
  1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
] as const;

/** Every latency recorded (nanoseconds), for exact percentiles. Grows as needed. */
export class LatencyRecorder {
  private buf = new Float64Array(1024);
  private n = 0;

  push(ns: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = ns;
  }

  get count(): number {
    return this.n;
  }

  values(): Float64Array {
    return this.buf.subarray(0, this.n);
  }
}

/** Sorted copy of several recorders' values. */
export function sortedLatencies(recs: readonly LatencyRecorder[]): Float64Array {
  const total = recs.reduce((s, r) => s + r.count, 0);
  const out = new Float64Array(total);
  let at = 0;
  for (const r of recs) {
    out.set(r.values(), at);
    at += r.count;
  }
  return out.sort();
}

/** Nearest-rank percentile of sorted values (0 when empty). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface ClatNs {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  percentile: Record<string, number>;
}

export function clatSummary(sorted: Float64Array): ClatNs {
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  const mean = n ? sum / n : 0;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (sorted[i]! - mean) ** 2;
  const pct: Record<string, number> = {};
  for (const p of FIO_PERCENTILES) pct[p.toFixed(6)] = Math.round(percentile(sorted, p));
  return {
    min: n ? Math.round(sorted[0]!) : 0,
    max: n ? Math.round(sorted[n - 1]!) : 0,
    mean: Math.round(mean * 1000) / 1000,
    stddev: n > 1 ? Math.round(Math.sqrt(sq / (n - 1)) * 1000) / 1000 : 0,
    N: n,
    percentile: pct,
  };
}

/** fio's per-direction block (`jobs[].read`, `jobs[].write`). */
export interface FioDirection {
  io_bytes: number;
  io_kbytes: number;
  bw_bytes: number;
  /** KiB/s, as fio's `bw`. */
  bw: number;
  iops: number;
  /** Milliseconds. */
  runtime: number;
  total_ios: number;
  short_ios: number;
  drop_ios: number;
  /** Completion latency: from submission to the request's completion, in ns. */
  clat_ns: ClatNs;
  /** The same figures: this runner measures submission to completion as one span. */
  lat_ns: ClatNs;
}

export function fioDirection(ios: number, bytes: number, runtimeMs: number, sorted: Float64Array) {
  // Rates come from the runtime as reported (whole ms), so iops × runtime = total_ios.
  const runtime = Math.max(1, Math.round(runtimeMs));
  const seconds = runtime / 1000;
  const clat = clatSummary(sorted);
  const out: FioDirection = {
    io_bytes: bytes,
    io_kbytes: Math.floor(bytes / 1024),
    bw_bytes: seconds > 0 ? Math.round(bytes / seconds) : 0,
    bw: seconds > 0 ? Math.round(bytes / 1024 / seconds) : 0,
    iops: seconds > 0 ? Math.round((ios / seconds) * 1000) / 1000 : 0,
    runtime,
    total_ios: ios,
    short_ios: 0,
    drop_ios: 0,
    clat_ns: clat,
    lat_ns: clat,
  };
  return out;
}

/** Log-spaced histogram of latencies (for charts): bins of 2^(1/4) from 1 µs. */
export function latencyHistogram(sorted: Float64Array): { le_ns: number; count: number }[] {
  if (sorted.length === 0) return [];
  const bins: { le_ns: number; count: number }[] = [];
  let bound = 1000;
  while (bound < sorted[0]!) bound *= 2 ** 0.25;
  let i = 0;
  while (i < sorted.length) {
    let count = 0;
    while (i < sorted.length && sorted[i]! <= bound) {
      count++;
      i++;
    }
    bins.push({ le_ns: Math.round(bound), count });
    bound *= 2 ** 0.25;
  }
  return bins;
}
