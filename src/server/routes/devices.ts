import type { FastifyPluginAsync } from 'fastify';
import type { BlkDriver } from '../../mediator/blk-driver.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import type { Service } from '../service.js';
import { type DeviceParams, deviceOf, type RouteOptions } from './common.js';

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
