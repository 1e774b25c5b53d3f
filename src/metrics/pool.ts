import type { Mediator } from '../mediator/mediator.js';
import type { BackpressureStats } from '../mediator/pool-gate.js';
import type { PoolStats } from '../swiotlb/pool.js';
import type { MetricType, Sample, ScrapeRegistry, WrapAccumulator } from './registry.js';

/** The pools' metrics: debugfs's counters and beyond, map outcomes, back-pressure. */

export interface PoolSnapshot {
  name: string;
  s: PoolStats;
  gate: BackpressureStats;
}

/** Every pool's stats() and its gate's, read once per scrape. */
export function poolSource(registry: ScrapeRegistry, mediator: Mediator): () => PoolSnapshot[] {
  const pools = [...mediator.pools.values()];
  return registry.scrape.memo(() =>
    pools.map((p) => ({ name: p.name, s: p.pool.stats(), gate: p.gate.stats() })),
  );
}

/** One series per pool, labelled `pool`. */
function perPool(
  registry: ScrapeRegistry,
  pools: () => PoolSnapshot[],
  name: string,
  help: string,
  type: MetricType,
  value: (p: PoolSnapshot) => number,
): void {
  registry.add(name, help, type, () =>
    pools().map((p) => ({ labels: { pool: p.name }, value: value(p) })),
  );
}

/** Occupancy: the debugfs files (io_tlb_nslabs, io_tlb_used, io_tlb_used_hiwater) and per area. */
export function registerPoolMetrics(registry: ScrapeRegistry, pools: () => PoolSnapshot[]): void {
  const gauge = (name: string, help: string, value: (p: PoolSnapshot) => number) =>
    perPool(registry, pools, name, help, 'gauge', value);
  gauge(
    'swiotlb_pool_slots',
    'Slots in the pool (debugfs io_tlb_nslabs); a slot is 2 KiB.',
    (p) => p.s.nslabs,
  );
  gauge('swiotlb_pool_size_bytes', 'Size of the pool in bytes.', (p) => p.s.nslabs * 2048);
  gauge('swiotlb_pool_used_slots', 'Slots in use (debugfs io_tlb_used).', (p) => p.s.used);
  gauge(
    'swiotlb_pool_used_hiwater_slots',
    'Most slots in use at once since start or the last reset (debugfs io_tlb_used_hiwater).',
    (p) => p.s.used_hiwater,
  );
  gauge(
    'swiotlb_pool_largest_free_run_slots',
    'Largest run of free contiguous slots within one segment, so at most 128 (IO_TLB_SEGSIZE: a mapping never crosses a segment): the biggest mapping the pool can place now (fragmentation).',
    (p) => p.s.largest_free_run,
  );
  registry.add('swiotlb_pool_area_used_slots', 'Slots in use per area.', 'gauge', () =>
    pools().flatMap((p) =>
      p.s.areas.map((a, i) => ({ labels: { pool: p.name, area: i }, value: a.used })),
    ),
  );
}

type FailureReason = keyof PoolStats['map_failures'];

/**
 * Every reason of PoolStats.map_failures (one added there does not compile until
 * it is added here), with the key its count wraps under in the attempts.
 */
const ATTEMPT_KEYS: Readonly<Record<FailureReason, string>> = {
  full: 'attempt-full',
  too_large: 'attempt-large',
  invalid: 'attempt-invalid',
  kernel_defect: 'attempt-kernel',
};
const MAP_FAILURE_REASONS = Object.keys(ATTEMPT_KEYS) as FailureReason[];

/** Maps attempted, failed by reason, unmapped, and area lock contention (wrapping counters). */
export function registerMapMetrics(
  registry: ScrapeRegistry,
  pools: () => PoolSnapshot[],
  wrap: WrapAccumulator,
): void {
  registry.add(
    'swiotlb_area_lock_contended_total',
    'Times a thread found an area lock held (the contention swiotlb areas remove).',
    'counter',
    () =>
      pools().flatMap((p) =>
        p.s.areas.map((a, i) => ({
          labels: { pool: p.name, area: i },
          value: wrap.read(`contended/${p.name}/${i}`, a.contended),
        })),
      ),
  );
  registry.add('swiotlb_map_attempts_total', 'Maps attempted (placed or failed).', 'counter', () =>
    pools().map((p) => {
      let value = wrap.read(`maps/${p.name}`, p.s.maps);
      for (const reason of MAP_FAILURE_REASONS) {
        value += wrap.read(`${ATTEMPT_KEYS[reason]}/${p.name}`, p.s.map_failures[reason]);
      }
      return { labels: { pool: p.name }, value };
    }),
  );
  registry.add(
    'swiotlb_map_failures_total',
    'Maps that failed, by reason: full (no room, "swiotlb buffer is full": under the requeue policies only the requests that gave up waiting; each requeue counts in mediator_backpressure_requeues_total), too_large (a search for more than one 128-slot segment, offset and alignment included: no pool can place it), invalid (bad arguments), kernel_defect (what the 6.1 kernel would hang on or place past the pool).',
    'counter',
    () =>
      pools().flatMap((p) =>
        MAP_FAILURE_REASONS.map(
          (reason): Sample => ({
            labels: { pool: p.name, reason },
            value: wrap.read(`fail/${p.name}/${reason}`, p.s.map_failures[reason]),
          }),
        ),
      ),
  );
  registry.add('swiotlb_unmaps_total', 'Mappings released.', 'counter', () =>
    pools().map((p) => ({
      labels: { pool: p.name },
      value: wrap.read(`unmaps/${p.name}`, p.s.unmaps),
    })),
  );
}

/** The back-pressure gate of each pool (its requeues and waits; docs/monitoring.md). */
export function registerBackpressureMetrics(
  registry: ScrapeRegistry,
  pools: () => PoolSnapshot[],
): void {
  const metric = (
    name: string,
    help: string,
    type: MetricType,
    value: (p: PoolSnapshot) => number,
  ) => perPool(registry, pools, name, help, type, value);
  metric(
    'mediator_backpressure_waits_total',
    'Requests that waited for pool slots (back-pressure), counted when the wait begins.',
    'counter',
    (p) => p.gate.waits,
  );
  // Waits that ended (placed, timed out or cancelled): the gate counts a wait when it
  // begins and adds its time when it ends, so the mean wait is seconds / ended, not
  // seconds / waits (a wait that spans a rate window would divide by zero).
  metric(
    'mediator_backpressure_waits_ended_total',
    'Waits for pool slots that ended (slots found, timed out or cancelled); rate(mediator_backpressure_wait_seconds_total) / rate() of this is the mean wait.',
    'counter',
    (p) => p.gate.waits - p.gate.waiting,
  );
  metric(
    'mediator_backpressure_requeues_total',
    'Requests that found the pool full ("swiotlb buffer is full") and were requeued, as virtio-blk does with BLK_STS_RESOURCE (failed under policy fail).',
    'counter',
    (p) => p.gate.requeues,
  );
  metric(
    'mediator_backpressure_wait_seconds_total',
    'Time requests spent waiting for pool slots, added when each wait ends (see mediator_backpressure_waits_ended_total).',
    'counter',
    (p) => p.gate.waitSeconds,
  );
  metric(
    'mediator_backpressure_timeouts_total',
    'Requests that gave up waiting for pool slots.',
    'counter',
    (p) => p.gate.timeouts,
  );
  metric(
    'mediator_backpressure_waiting_requests',
    'Requests waiting for pool slots now.',
    'gauge',
    (p) => p.gate.waiting,
  );
}
