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

/** A latency block as fio's JSON has it (stat.c add_ddir_lat_json()). */
export interface LatNs {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  /**
   * Keyed as fio prints them ("99.000000"); absent without samples, as fio leaves
   * it out (add_ddir_lat_json(): `if (percentiles && lat_stat->samples)`).
   */
  percentile?: Record<string, number>;
}

export function latSummary(sorted: Float64Array): LatNs {
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  const mean = n ? sum / n : 0;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (sorted[i]! - mean) ** 2;
  const out: LatNs = {
    min: n ? Math.round(sorted[0]!) : 0,
    max: n ? Math.round(sorted[n - 1]!) : 0,
    mean: Math.round(mean * 1000) / 1000,
    stddev: n > 1 ? Math.round(Math.sqrt(sq / (n - 1)) * 1000) / 1000 : 0,
    N: n,
  };
  if (n > 0) {
    const pct: Record<string, number> = {};
    for (const p of FIO_PERCENTILES) pct[p.toFixed(6)] = Math.round(percentile(sorted, p));
    out.percentile = pct;
  }
  return out;
}

/** A latency percentile of a summary, 0 without samples. */
export function latPercentile(lat: LatNs, p: string): number {
  return lat.percentile?.[p] ?? 0;
}

/**
 * fio's runtime of one direction, ms: 0 when the direction moved no bytes
 * (backend.c thread_main() calls update_runtime() for a direction only `if
 * (td->io_bytes[DDIR_READ] ...)`), else the elapsed microseconds rounded up
 * (update_runtime(): `(elapsed_us[ddir] + 999) / 1000`).
 */
export function fioRuntime(elapsedMs: number, bytes: number): number {
  if (bytes === 0 || !(elapsedMs > 0)) return 0;
  return Math.floor((Math.floor(elapsedMs * 1000) + 999) / 1000);
}

/** fio's per-direction block (`jobs[].read`, `jobs[].write`). */
export interface FioDirection {
  io_bytes: number;
  io_kbytes: number;
  bw_bytes: number;
  /** KiB/s, as fio's `bw`. */
  bw: number;
  iops: number;
  /** Milliseconds; 0 for a direction without I/O. */
  runtime: number;
  total_ios: number;
  short_ios: number;
  drop_ios: number;
  /**
   * fio's lat: from the submission (before the buffers are mapped and bounced)
   * to the completion. There is no clat_ns: the runner does not see when the
   * driver hands the request to the device.
   */
  lat_ns: LatNs;
}

/**
 * One direction's figures from its counts and its runtime (integer ms, as
 * fioRuntime() gives it), computed as stat.c add_ddir_status_json() does, in
 * integers: `bw_bytes = ((1000 * ts->io_bytes[ddir]) / runt)`, `bw = bw_bytes /
 * 1024`, `iops = (1000.0 * (uint64_t) ts->total_io_u[ddir]) / runt`, all 0 when
 * the runtime is 0. iops to 6 decimals, as json.c prints floats (`%f`).
 */
export function fioDirection(
  ios: number,
  bytes: number,
  runtime: number,
  sorted: Float64Array,
): FioDirection {
  const bwBytes = runtime > 0 ? Math.floor((1000 * bytes) / runtime) : 0;
  return {
    io_bytes: bytes,
    io_kbytes: Math.floor(bytes / 1024),
    bw_bytes: bwBytes,
    bw: Math.floor(bwBytes / 1024),
    iops: runtime > 0 ? Math.round(((1000 * ios) / runtime) * 1e6) / 1e6 : 0,
    runtime,
    total_ios: ios,
    short_ios: 0,
    drop_ios: 0,
    lat_ns: latSummary(sorted),
  };
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
