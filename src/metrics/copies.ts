import type { Mediator } from '../mediator/mediator.js';
import { type CopyStatsSnapshot, HISTOGRAM_BOUNDS } from '../workers/copy-stats.js';
import { histogramSamples, type Sample, type ScrapeRegistry } from './registry.js';

/** The copy engine's metrics: bounce copies by guest and direction, and its workers. */

export interface CopySnapshot {
  /** The engine's counters in shared memory (seqlocked blocks, one per copying thread). */
  stats: CopyStatsSnapshot;
  liveWorkers: number;
  crashes: number;
  pending: number;
}

/** The copy engine's accounting and worker state, read once per scrape. */
export function copySource(registry: ScrapeRegistry, mediator: Mediator): () => CopySnapshot {
  const engine = mediator.engine;
  return registry.scrape.memo(() => ({
    stats: engine.stats(),
    liveWorkers: engine.liveWorkers,
    crashes: engine.workerCrashes,
    pending: engine.pendingCopies,
  }));
}

const DIRECTIONS = ['to_device', 'from_device'] as const;

/** Bytes, copies and time by guest and direction; sizes; inline vs worker. */
export function registerCopyMetrics(
  registry: ScrapeRegistry,
  mediator: Mediator,
  copies: () => CopySnapshot,
): void {
  const guestName = new Map([...mediator.guests.values()].map((g) => [g.region, g.name]));
  const perGuestDirection = (name: string, help: string, field: 'bytes' | 'copies' | 'seconds') =>
    registry.add(name, help, 'counter', () => {
      const s = copies().stats;
      const out: Sample[] = [];
      for (const [region, guest] of guestName) {
        const r = s.byRegion.get(region);
        for (const direction of DIRECTIONS) {
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
  registry.add('mediator_bounce_copy_size_bytes', 'Sizes of bounce copies.', 'histogram', () => {
    const s = copies().stats;
    return DIRECTIONS.flatMap((direction) =>
      histogramSamples(
        'mediator_bounce_copy_size_bytes',
        HISTOGRAM_BOUNDS,
        s.histogram[direction],
        s.totals[direction].bytes,
        { direction },
      ),
    );
  });
  registry.add(
    'mediator_bounce_copies_by_path_total',
    'Bounce copies done inline on the main thread vs on copy workers.',
    'counter',
    () => {
      const w = copies().stats.byWriter;
      return [
        { labels: { path: 'inline' }, value: w[0]?.copies ?? 0 },
        { labels: { path: 'worker' }, value: w.slice(1).reduce((a, x) => a + x.copies, 0) },
      ];
    },
  );
}

/** The copy worker threads: how many run, how busy each is, crashes, copies pending. */
export function registerCopyWorkerMetrics(
  registry: ScrapeRegistry,
  mediator: Mediator,
  copies: () => CopySnapshot,
): void {
  const workers = mediator.engine.workers;
  registry.add('mediator_copy_workers', 'Copy worker threads running.', 'gauge', () => [
    { labels: {}, value: copies().liveWorkers },
  ]);
  registry.add(
    'mediator_copy_worker_busy_seconds_total',
    'Time each copy worker spent copying; rate() is its utilization (workers run long-lived ring tasks, so the piscina task timings do not apply).',
    'counter',
    () => {
      const byWriter = copies().stats.byWriter;
      return Array.from({ length: workers }, (_, i) => ({
        labels: { worker: i },
        value: byWriter[i + 1]?.seconds ?? 0,
      }));
    },
  );
  registry.add(
    'mediator_copy_worker_crashes_total',
    'Copy workers that died and were replaced.',
    'counter',
    () => [{ labels: {}, value: copies().crashes }],
  );
  registry.add(
    'mediator_copy_pending',
    'Copies handed to workers and not finished.',
    'gauge',
    () => [{ labels: {}, value: copies().pending }],
  );
}
