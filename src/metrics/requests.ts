import { BLK_OPS, OUTCOMES } from '../mediator/blk-driver.js';
import type { Mediator } from '../mediator/mediator.js';
import type { DeviceSnapshot } from './devices.js';
import { histogramSamples, type ScrapeRegistry } from './registry.js';

/** The request pipeline's metrics: outcomes, latency, what is in flight. */
export function registerRequestMetrics(
  registry: ScrapeRegistry,
  mediator: Mediator,
  devices: () => DeviceSnapshot[],
): void {
  registry.add(
    'mediator_requests_total',
    'Requests finished, by device, op and outcome.',
    'counter',
    () =>
      devices().flatMap(({ d, s }) =>
        BLK_OPS.flatMap((op) =>
          OUTCOMES.map((outcome) => ({
            labels: { device: d.id, op, outcome },
            value: s.requests[op][outcome],
          })),
        ),
      ),
  );
  // The latency histograms are plain fields of each device, read by this metric alone.
  const drivers = [...mediator.devices.values()];
  registry.add(
    'mediator_request_duration_seconds',
    'Request latency from queue slot to completion or failure, by device and op: every outcome (timed-out and failed requests too), back-pressure waits included.',
    'histogram',
    () =>
      drivers.flatMap((d) =>
        BLK_OPS.flatMap((op) => {
          const h = d.latency[op];
          return histogramSamples('mediator_request_duration_seconds', h.bounds, h.counts, h.sum, {
            device: d.id,
            op,
          });
        }),
      ),
  );
  registry.add('mediator_requests_in_flight', 'Requests in flight, by device.', 'gauge', () =>
    devices().map(({ d, s }) => ({ labels: { device: d.id }, value: s.inFlight })),
  );
  registry.add(
    'mediator_virtqueue_depth',
    'Descriptor chains in flight on each virtqueue.',
    'gauge',
    () =>
      devices().flatMap(({ d, s }) =>
        s.queues.map((q) => ({ labels: { device: d.id, queue: q.index }, value: q.inFlight })),
      ),
  );
}
