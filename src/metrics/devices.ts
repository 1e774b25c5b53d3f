import type { BlkDriver, DeviceStats } from '../mediator/blk-driver.js';
import { FAULT_KINDS } from '../mediator/driver-virtqueue.js';
import type { Mediator } from '../mediator/mediator.js';
import type { ScrapeRegistry } from './registry.js';

/** The devices' metrics: misbehaviour the guest caught, timeouts, resets, bytes moved. */

export interface DeviceSnapshot {
  d: BlkDriver;
  s: DeviceStats;
}

/** Every device's stats(), read once per scrape (for these and the request metrics). */
export function deviceSource(registry: ScrapeRegistry, mediator: Mediator): () => DeviceSnapshot[] {
  const devices = [...mediator.devices.values()];
  return registry.scrape.memo(() => devices.map((d) => ({ d, s: d.stats() })));
}

export function registerDeviceMetrics(
  registry: ScrapeRegistry,
  devices: () => DeviceSnapshot[],
): void {
  const perDevice = (name: string, help: string, value: (s: DeviceStats) => number) =>
    registry.add(name, help, 'counter', () =>
      devices().map(({ d, s }) => ({ labels: { device: d.id }, value: value(s) })),
    );
  registry.add(
    'mediator_device_faults_total',
    'Device misbehaviour detected by the guest, by kind (used_idx, used_id, used_len, double_completion, bad_status, timeout).',
    'counter',
    () =>
      devices().flatMap(({ d, s }) =>
        FAULT_KINDS.map((kind) => ({ labels: { device: d.id, kind }, value: s.faults[kind] })),
      ),
  );
  perDevice('mediator_device_timeouts_total', 'Requests that timed out.', (s) => s.timeouts);
  perDevice('mediator_device_resets_total', 'Device resets.', (s) => s.resets);
  perDevice(
    'mediator_device_read_bytes_total',
    'Bytes read by completed requests.',
    (s) => s.bytesRead,
  );
  perDevice(
    'mediator_device_written_bytes_total',
    'Bytes written by completed requests.',
    (s) => s.bytesWritten,
  );
  // The idle clock is the device thread's own word, and that thread is untrusted: a
  // value below one already exported would read to Prometheus as a counter reset
  // (rate() would count the whole new value as idle time), so such a sample is left
  // out, as a value that is no number is, until the clock passes the last one again.
  const lastIdle = new Map<string, number>();
  registry.add(
    'mediator_device_thread_idle_seconds_total',
    "Time each device thread spent polling for requests or asleep on its doorbell, as the thread adds it up (the untrusted side's own figure; absent while it is no number of seconds or below a value already exported). 1 - rate() is how busy the device backend kept its thread.",
    'counter',
    () =>
      devices().flatMap(({ d, s }) =>
        s.queues.flatMap((q) => {
          const key = `${d.id}\0${q.index}`;
          const value = q.idleSeconds;
          if (value === null || value < (lastIdle.get(key) ?? 0)) return [];
          lastIdle.set(key, value);
          return [{ labels: { device: d.id, queue: q.index }, value }];
        }),
      ),
  );
}
