import { collectDefaultMetrics, Registry } from 'prom-client';
import { BLK_OPS, OUTCOMES } from '../mediator/blk-driver.js';
import { FAULT_KINDS } from '../mediator/driver-virtqueue.js';
import type { Mediator } from '../mediator/mediator.js';
import type { BucketHistogram } from '../util/bucket-histogram.js';
import { wrapDelta32 } from '../util/wrap32.js';
import { HISTOGRAM_BOUNDS } from '../workers/copy-stats.js';

/**
 * Every metric of the service, read at scrape time from where the numbers live:
 * pool metadata and copy counters in shared memory, device and gate counters in
 * plain fields. Nothing here runs per copy or per request; a scrape reads totals.
 *
 * Every labelled series exists from start-up (at zero), so that dashboards and
 * alert expressions have data before the first event.
 */

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}

interface ScrapeMetric {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  aggregator: 'sum';
  collect: () => void;
  get: () => Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: 'sum';
    values: Sample[];
  }>;
}

function register(
  registry: Registry,
  name: string,
  help: string,
  type: 'counter' | 'gauge' | 'histogram',
  read: () => Sample[],
): void {
  const metric: ScrapeMetric = {
    name,
    help,
    type,
    aggregator: 'sum',
    collect: () => undefined,
    get: async () => ({ name, help, type, aggregator: 'sum', values: read() }),
  };
  registry.registerMetric(metric as never);
}

/** Histogram samples (cumulative buckets, sum, count) from per-bucket counts. */
function histogramSamples(
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
class WrapAccumulator {
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

/** Memoises `read` until the current synchronous run ends. */
function perScrape<T>(read: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (cached === undefined) {
      cached = { value: read() };
      queueMicrotask(() => {
        cached = undefined;
      });
    }
    return cached.value;
  };
}

export interface MetricsOptions {
  /**
   * Also export the process and Node.js default metrics (CPU, memory, event-loop lag, GC).
   * @default true
   */
  defaultMetrics?: boolean;
}

/** A Prometheus registry with every metric of `mediator`. */
export function createMetrics(mediator: Mediator, opts: MetricsOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const wrap = new WrapAccumulator();
  const pools = [...mediator.pools.values()];
  const devices = [...mediator.devices.values()];
  const guestName = new Map([...mediator.guests.values()].map((g) => [g.region, g.name]));

  // --- the pool (debugfs and beyond) ----------------------------------------
  const readPools = () =>
    pools.map((p) => ({ name: p.name, s: p.pool.stats(), gate: p.gate.stats() }));
  // One pool walk per scrape, shared by the pool metrics below: a scrape calls every
  // metric's get() in one synchronous run, so the cache lives until the next microtask.
  const poolStats = perScrape(readPools);
  const perPool = (
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    value: (p: ReturnType<typeof readPools>[number]) => number,
  ) =>
    register(registry, name, help, type, () =>
      poolStats().map((p) => ({ labels: { pool: p.name }, value: value(p) })),
    );
  perPool(
    'swiotlb_pool_slots',
    'Slots in the pool (debugfs io_tlb_nslabs); a slot is 2 KiB.',
    'gauge',
    (p) => p.s.nslabs,
  );
  perPool(
    'swiotlb_pool_size_bytes',
    'Size of the pool in bytes.',
    'gauge',
    (p) => p.s.nslabs * 2048,
  );
  perPool(
    'swiotlb_pool_used_slots',
    'Slots in use (debugfs io_tlb_used).',
    'gauge',
    (p) => p.s.used,
  );
  perPool(
    'swiotlb_pool_used_hiwater_slots',
    'Most slots in use at once since start or the last reset (debugfs io_tlb_used_hiwater).',
    'gauge',
    (p) => p.s.used_hiwater,
  );
  perPool(
    'swiotlb_pool_largest_free_run_slots',
    'Largest run of free contiguous slots: the biggest mapping the pool can place now (fragmentation).',
    'gauge',
    (p) => p.s.largest_free_run,
  );
  register(registry, 'swiotlb_pool_area_used_slots', 'Slots in use per area.', 'gauge', () =>
    poolStats().flatMap((p) =>
      p.s.areas.map((a, i) => ({ labels: { pool: p.name, area: i }, value: a.used })),
    ),
  );
  register(
    registry,
    'swiotlb_area_lock_contended_total',
    'Times a thread found an area lock held (the contention swiotlb areas remove).',
    'counter',
    () =>
      poolStats().flatMap((p) =>
        p.s.areas.map((a, i) => ({
          labels: { pool: p.name, area: i },
          value: wrap.read(`contended/${p.name}/${i}`, a.contended),
        })),
      ),
  );
  register(
    registry,
    'swiotlb_map_attempts_total',
    'Maps attempted (placed or failed).',
    'counter',
    () =>
      poolStats().map((p) => {
        const f = p.s.map_failures;
        return {
          labels: { pool: p.name },
          value:
            wrap.read(`maps/${p.name}`, p.s.maps) +
            wrap.read(`attempt-full/${p.name}`, f.full) +
            wrap.read(`attempt-large/${p.name}`, f.too_large) +
            wrap.read(`attempt-invalid/${p.name}`, f.invalid),
        };
      }),
  );
  register(
    registry,
    'swiotlb_map_failures_total',
    'Maps that failed, by reason: full (no room, "swiotlb buffer is full"), too_large, invalid.',
    'counter',
    () =>
      poolStats().flatMap((p) =>
        (['full', 'too_large', 'invalid'] as const).map((reason) => ({
          labels: { pool: p.name, reason },
          value: wrap.read(`fail/${p.name}/${reason}`, p.s.map_failures[reason]),
        })),
      ),
  );
  register(registry, 'swiotlb_unmaps_total', 'Mappings released.', 'counter', () =>
    poolStats().map((p) => ({
      labels: { pool: p.name },
      value: wrap.read(`unmaps/${p.name}`, p.s.unmaps),
    })),
  );
  perPool(
    'mediator_backpressure_waits_total',
    'Requests that waited for pool slots (back-pressure).',
    'counter',
    (p) => p.gate.waits,
  );
  perPool(
    'mediator_backpressure_wait_seconds_total',
    'Time requests spent waiting for pool slots.',
    'counter',
    (p) => p.gate.waitSeconds,
  );
  perPool(
    'mediator_backpressure_timeouts_total',
    'Requests that gave up waiting for pool slots.',
    'counter',
    (p) => p.gate.timeouts,
  );
  perPool(
    'mediator_backpressure_waiting_requests',
    'Requests waiting for pool slots now.',
    'gauge',
    (p) => p.gate.waiting,
  );

  // --- copies ---------------------------------------------------------------
  const copyStats = perScrape(() => mediator.engine.stats());
  const perGuestDirection = (name: string, help: string, field: 'bytes' | 'copies' | 'seconds') =>
    register(registry, name, help, 'counter', () => {
      const s = copyStats();
      const out: Sample[] = [];
      for (const [region, guest] of guestName) {
        const r = s.byRegion.get(region);
        for (const direction of ['to_device', 'from_device'] as const) {
          out.push({ labels: { guest, direction }, value: r ? r[direction][field] : 0 });
        }
      }
      return out;
    });
  perGuestDirection(
    'mediator_bounce_bytes_total',
    'Bytes bounced between guest memory and the pool, by guest and direction; rate() is the copy throughput.',
    'bytes',
  );
  perGuestDirection(
    'mediator_bounce_copies_total',
    'Bounce copies, by guest and direction (a split copy counts once per part).',
    'copies',
  );
  perGuestDirection(
    'mediator_bounce_copy_seconds_total',
    'Time spent copying, by guest and direction (worker copies are all timed; inline copies one in 64, scaled; copies of 32 bytes or less are not timed).',
    'seconds',
  );
  register(
    registry,
    'mediator_bounce_copy_size_bytes',
    'Sizes of bounce copies.',
    'histogram',
    () => {
      const s = copyStats();
      return (['to_device', 'from_device'] as const).flatMap((direction) =>
        histogramSamples(
          'mediator_bounce_copy_size_bytes',
          HISTOGRAM_BOUNDS,
          s.histogram[direction],
          s.totals[direction].bytes,
          { direction },
        ),
      );
    },
  );
  register(
    registry,
    'mediator_bounce_copies_by_path_total',
    'Bounce copies done inline on the main thread vs on copy workers.',
    'counter',
    () => {
      const w = copyStats().byWriter;
      return [
        { labels: { path: 'inline' }, value: w[0]?.copies ?? 0 },
        { labels: { path: 'worker' }, value: w.slice(1).reduce((a, x) => a + x.copies, 0) },
      ];
    },
  );

  // --- copy workers -----------------------------------------------------------
  const engine = mediator.engine;
  register(registry, 'mediator_copy_workers', 'Copy worker threads running.', 'gauge', () => [
    { labels: {}, value: engine.liveWorkers },
  ]);
  register(
    registry,
    'mediator_copy_worker_busy_seconds_total',
    'Time each copy worker spent copying; rate() is its utilization (workers run long-lived ring tasks, so the piscina task timings do not apply).',
    'counter',
    () =>
      Array.from({ length: engine.workers }, (_, i) => ({
        labels: { worker: i },
        value: copyStats().byWriter[i + 1]?.seconds ?? 0,
      })),
  );
  register(
    registry,
    'mediator_copy_worker_crashes_total',
    'Copy workers that died and were replaced.',
    'counter',
    () => [{ labels: {}, value: engine.workerCrashes }],
  );
  register(
    registry,
    'mediator_copy_pending',
    'Copies handed to workers and not finished.',
    'gauge',
    () => [{ labels: {}, value: engine.pendingCopies }],
  );

  // --- the request pipeline ---------------------------------------------------
  const deviceStats = () => devices.map((d) => ({ d, s: d.stats() }));
  register(
    registry,
    'mediator_requests_total',
    'Requests finished, by device, op and outcome.',
    'counter',
    () =>
      deviceStats().flatMap(({ d, s }) =>
        BLK_OPS.flatMap((op) =>
          OUTCOMES.map((outcome) => ({
            labels: { device: d.id, op, outcome },
            value: s.requests[op][outcome],
          })),
        ),
      ),
  );
  register(
    registry,
    'mediator_request_duration_seconds',
    'Request latency from queue slot to completion, by device and op.',
    'histogram',
    () =>
      devices.flatMap((d) =>
        BLK_OPS.flatMap((op) => {
          const h: BucketHistogram = d.latency[op];
          return histogramSamples('mediator_request_duration_seconds', h.bounds, h.counts, h.sum, {
            device: d.id,
            op,
          });
        }),
      ),
  );
  register(registry, 'mediator_requests_in_flight', 'Requests in flight, by device.', 'gauge', () =>
    deviceStats().map(({ d, s }) => ({ labels: { device: d.id }, value: s.inFlight })),
  );
  register(
    registry,
    'mediator_virtqueue_depth',
    'Descriptor chains in flight on each virtqueue.',
    'gauge',
    () =>
      deviceStats().flatMap(({ d, s }) =>
        s.queues.map((q) => ({ labels: { device: d.id, queue: q.index }, value: q.inFlight })),
      ),
  );
  register(
    registry,
    'mediator_device_faults_total',
    'Device misbehaviour detected by the guest, by kind (used_idx, used_id, used_len, double_completion, bad_status, timeout).',
    'counter',
    () =>
      deviceStats().flatMap(({ d, s }) =>
        FAULT_KINDS.map((kind) => ({ labels: { device: d.id, kind }, value: s.faults[kind] })),
      ),
  );
  register(registry, 'mediator_device_timeouts_total', 'Requests that timed out.', 'counter', () =>
    deviceStats().map(({ d, s }) => ({ labels: { device: d.id }, value: s.timeouts })),
  );
  register(registry, 'mediator_device_resets_total', 'Device resets.', 'counter', () =>
    deviceStats().map(({ d, s }) => ({ labels: { device: d.id }, value: s.resets })),
  );
  register(
    registry,
    'mediator_device_read_bytes_total',
    'Bytes read by completed requests.',
    'counter',
    () => deviceStats().map(({ d, s }) => ({ labels: { device: d.id }, value: s.bytesRead })),
  );
  register(
    registry,
    'mediator_device_written_bytes_total',
    'Bytes written by completed requests.',
    'counter',
    () => deviceStats().map(({ d, s }) => ({ labels: { device: d.id }, value: s.bytesWritten })),
  );
  return registry;
}
