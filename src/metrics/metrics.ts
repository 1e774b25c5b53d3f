import { collectDefaultMetrics } from 'prom-client';
import type { Mediator } from '../mediator/mediator.js';
import { copySource, registerCopyMetrics, registerCopyWorkerMetrics } from './copies.js';
import { deviceSource, registerDeviceMetrics } from './devices.js';
import { registerBuildInfo } from './info.js';
import {
  poolSource,
  registerBackpressureMetrics,
  registerMapMetrics,
  registerPoolMetrics,
} from './pool.js';
import { ScrapeRegistry, WrapAccumulator } from './registry.js';
import { registerRequestMetrics } from './requests.js';

/**
 * Every metric of the service, by subject: info.ts (what the instance runs),
 * pool.ts (occupancy, maps, back-pressure), copies.ts (bounce copies, copy
 * workers), requests.ts (the pipeline), devices.ts (faults, resets, bytes). Each
 * source (every pool's stats, the copy engine's, every device's) is read once per
 * scrape (registry.ts).
 *
 * Every labelled series exists from start-up (at zero), so that dashboards and
 * alert expressions have data before the first event.
 */

export interface MetricsOptions {
  /**
   * Also export the process and Node.js default metrics (CPU, memory, event-loop lag, GC).
   * @default true
   */
  defaultMetrics?: boolean;
}

/** A Prometheus registry with every metric of `mediator`. */
export function createMetrics(mediator: Mediator, opts: MetricsOptions = {}): ScrapeRegistry {
  const registry = new ScrapeRegistry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  registerBuildInfo(registry, mediator);
  const wrap = new WrapAccumulator();

  const pools = poolSource(registry, mediator);
  registerPoolMetrics(registry, pools);
  registerMapMetrics(registry, pools, wrap);
  registerBackpressureMetrics(registry, pools);

  const copies = copySource(registry, mediator);
  registerCopyMetrics(registry, mediator, copies);
  registerCopyWorkerMetrics(registry, mediator, copies);

  const devices = deviceSource(registry, mediator);
  registerRequestMetrics(registry, mediator, devices);
  registerDeviceMetrics(registry, devices);
  return registry;
}

export { ScrapeRegistry } from './registry.js';
