/**
 * A histogram kept as plain numbers (no prom-client call when observing), read at
 * scrape time. counts[i] counts observations <= bounds[i] and > bounds[i-1];
 * counts[bounds.length] counts the rest (+Inf). Not cumulative: the exporter sums.
 */
export class BucketHistogram {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Request latency buckets: 10 us to 10 s, so that both a null device and a stalled disk resolve. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5, 10,
];
