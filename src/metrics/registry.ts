import { Registry } from 'prom-client';
import { wrapDelta32 } from '../util/wrap32.js';

/**
 * The registry of the service's metrics and the per-scrape snapshots they read.
 *
 * Every metric here is read at scrape time from where its numbers live (pool
 * metadata and copy counters in shared memory, device and gate counters in plain
 * fields): nothing runs per copy or per request. Several metrics show one source
 * (a pool's stats() feeds twelve of them), so each source is read once per
 * scrape and memoised for all of its metrics: one scrape shows one consistent
 * state, and a pool walk is not repeated per metric.
 *
 *   registry.metrics()  -- begin(): generation g+1, open+1
 *     metric.get() -> source() -> read()   (first call in generation g+1)
 *     metric.get() -> source() -> cached   (same generation)
 *   done                -- end(): open-1
 *   source() outside a scrape -> read() every time (never a stale value)
 *
 * Rules: a scrape is an exposition call of the registry (metrics(),
 * getMetricsAsJSON(), getSingleMetricAsString()); a memo serves the value of
 * the current generation only while a scrape is open.
 */

export type Labels = Record<string, string | number>;

export interface Sample {
  value: number;
  labels: Labels;
  /** For the series of a histogram: name_bucket, name_sum, name_count. */
  metricName?: string;
}

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Scrape generations and the memos keyed by them (see the picture above). */
export class ScrapeCache {
  private generation = 0;
  private open = 0;

  begin(): void {
    this.generation++;
    this.open++;
  }

  end(): void {
    this.open--;
  }

  /** `read`, called at most once per scrape. */
  memo<T>(read: () => T): () => T {
    let seen = -1;
    let value: T | undefined;
    return () => {
      if (this.open === 0) return read();
      if (seen !== this.generation) {
        value = read();
        seen = this.generation;
      }
      return value as T;
    };
  }
}

/** A prom-client registry whose scrapes open a generation of {@link ScrapeCache}. */
export class ScrapeRegistry extends Registry {
  readonly scrape = new ScrapeCache();

  override async metrics(): Promise<string> {
    this.scrape.begin();
    try {
      return await super.metrics();
    } finally {
      this.scrape.end();
    }
  }

  override async getMetricsAsJSON(): ReturnType<Registry['getMetricsAsJSON']> {
    this.scrape.begin();
    try {
      return await super.getMetricsAsJSON();
    } finally {
      this.scrape.end();
    }
  }

  override async getSingleMetricAsString(name: string): Promise<string> {
    this.scrape.begin();
    try {
      return await super.getSingleMetricAsString(name);
    } finally {
      this.scrape.end();
    }
  }

  /** Registers a metric whose samples `read` gives at scrape time. */
  add(name: string, help: string, type: MetricType, read: () => Sample[]): void {
    const metric = {
      name,
      help,
      type,
      aggregator: 'sum' as const,
      collect: () => undefined,
      get: async () => ({ name, help, type, aggregator: 'sum' as const, values: read() }),
    };
    // prom-client's Metric type is its own classes; the registry needs only the
    // fields above (name, help, type, aggregator, get).
    this.registerMetric(metric as never);
  }
}

/** Histogram samples (cumulative buckets, sum, count) from per-bucket counts. */
export function histogramSamples(
  name: string,
  bounds: readonly number[],
  counts: ArrayLike<number>,
  sum: number,
  labels: Labels,
): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += counts[i]!;
    out.push({
      metricName: `${name}_bucket`,
      labels: { ...labels, le: bounds[i]! },
      value: cumulative,
    });
  }
  cumulative += counts[bounds.length]!;
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative });
  out.push({ metricName: `${name}_sum`, labels, value: sum });
  out.push({ metricName: `${name}_count`, labels, value: cumulative });
  return out;
}

/**
 * Turns counters that wrap modulo 2^32 (the pool's shared Uint32 words) into
 * totals that only grow, as long as scrapes come more often than 2^32 events.
 */
export class WrapAccumulator {
  private readonly last = new Map<string, number>();
  private readonly total = new Map<string, number>();

  read(key: string, raw: number): number {
    const prev = this.last.get(key);
    const total = (this.total.get(key) ?? 0) + (prev === undefined ? raw : wrapDelta32(raw, prev));
    this.last.set(key, raw);
    this.total.set(key, total);
    return total;
  }
}
