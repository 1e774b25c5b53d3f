import type { FastifyPluginAsync } from 'fastify';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import {
  type BlockParams,
  checkRange,
  countOf,
  type DeviceParams,
  deviceOf,
  lbaOf,
  type RouteOptions,
  refuseWhileDraining,
  requireType,
} from './common.js';

/**
 * Block I/O through the guest's DMA path: PUT and GET /v1/devices/:id/blocks/:lba
 * (raw sectors, application/octet-stream), POST /v1/devices/:id/flush.
 */
export const blockRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  app.put<{ Params: BlockParams; Body: Buffer }>(
    '/v1/devices/:id/blocks/:lba',
    {
      // Refused before the body is read: unknown device, bad lba, wrong type, draining.
      onRequest: async (request) => {
        deviceOf(service, request.params.id);
        lbaOf(request.params.lba);
        requireType(request, 'application/octet-stream');
        refuseWhileDraining(service);
      },
    },
    async (request) => {
      const device = deviceOf(service, request.params.id);
      const lba = lbaOf(request.params.lba);
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0 || body.length % SECTOR_SIZE !== 0) {
        throw httpError(
          'HTTP_BAD_BODY',
          `the body is ${Buffer.isBuffer(body) ? body.length : 0} bytes: block data must be a non-empty multiple of ${SECTOR_SIZE} bytes`,
        );
      }
      checkRange(device, lba, body.length / SECTOR_SIZE, request.params.lba);
      await service.run(() => device.write(lba, body));
      return { lba, bytes: body.length };
    },
  );

  app.get<{ Params: BlockParams; Querystring: { count?: unknown } }>(
    '/v1/devices/:id/blocks/:lba',
    async (request, reply) => {
      refuseWhileDraining(service);
      const device = deviceOf(service, request.params.id);
      const lba = lbaOf(request.params.lba);
      const count = countOf(request.query.count);
      checkRange(device, lba, count, request.params.lba, String(request.query.count ?? 1));
      const data = await service.run(() => device.read(lba, count * SECTOR_SIZE));
      return reply.type('application/octet-stream').send(data);
    },
  );

  app.post<{ Params: DeviceParams }>('/v1/devices/:id/flush', async (request) => {
    refuseWhileDraining(service);
    const device = deviceOf(service, request.params.id);
    await service.run(() => device.flush());
    return { id: device.id, flushed: true };
  });
};
