import type { FastifyPluginAsync } from 'fastify';
import { BLK_OPS, type BlkDriver } from '../../mediator/blk-driver.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import type { Service } from '../service.js';
import { type DeviceParams, deviceOf, type RouteOptions } from './common.js';

/**
 * The device's request latency over every op, as /metrics' histogram
 * mediator_request_duration_seconds summed over `op`: bucket upper bounds in
 * seconds and the count in each bucket (not cumulative; the last is +Inf). A
 * reader takes p50/p99 over a window from two reads (the status page does).
 * All zero when the device does not record latency.
 */
function latencyView(device: BlkDriver) {
  const first = device.latency[BLK_OPS[0]!];
  const counts = new Array<number>(first.counts.length).fill(0);
  let count = 0;
  let sum = 0;
  for (const op of BLK_OPS) {
    const h = device.latency[op];
    for (let i = 0; i < counts.length; i++) counts[i]! += h.counts[i]!;
    count += h.count;
    sum += h.sum;
  }
  return { bounds: first.bounds, counts, count, sum };
}

/** A device's statistics with its configuration (GET /v1/devices[/:id]). */
function deviceView(service: Service, device: BlkDriver) {
  const c = service.deviceConfig(device.id);
  return {
    ...device.stats(),
    guest: c?.guest,
    pool: c?.pool,
    sectors: device.capacity / SECTOR_SIZE,
    queueSize: device.queueSize,
    depth: device.depth,
    maxRequestBytes: device.maxRequestBytes,
    timeoutMs: device.timeoutMs,
    latency: latencyView(device),
    ...(c?.kind === 'file-blk' ? { file: c.file, sync: c.sync } : {}),
  };
}

/** GET /v1/devices and GET /v1/devices/:id. */
export const deviceRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  app.get('/v1/devices', async () => ({
    devices: [...service.mediator.devices.values()].map((d) => deviceView(service, d)),
  }));
  app.get<{ Params: DeviceParams }>('/v1/devices/:id', async (request) =>
    deviceView(service, deviceOf(service, request.params.id)),
  );
};
