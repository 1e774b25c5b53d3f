import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { PoolBuffer } from '../../mediator/blk-driver.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import {
  type BlockParams,
  checkFirst,
  checkRange,
  countOf,
  type DeviceParams,
  deviceOf,
  lbaOf,
  onlyCount,
  type RouteOptions,
  refuseWhileDraining,
  requireType,
} from './common.js';
import { type BlockBody, poolBodyParser } from './pool-body.js';

/**
 * Block I/O through the guest's DMA path: PUT and GET /v1/devices/:id/blocks/:lba
 * (raw sectors, application/octet-stream; HEAD checks a read without doing it),
 * POST /v1/devices/:id/flush. In shared mode a PUT's body is read straight into
 * pool buffers (pool-body.ts), and a GET is answered from the one copy the driver
 * makes of the pool's bytes.
 */
export const blockRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const shared = service.mediator.mode === 'shared';
  if (shared) {
    // This plugin's own parser (Fastify scopes parsers to the plugin).
    app.removeContentTypeParser('application/octet-stream');
    app.addContentTypeParser(
      'application/octet-stream',
      poolBodyParser(service, service.config.http.bodyLimit),
    );
    // A body parsed into pool buffers that no write took over (the handler failed
    // before it) is released with the answer.
    app.addHook('onResponse', async (request) => {
      const body = request.body as BlockBody | undefined;
      if (body !== undefined && !Buffer.isBuffer(body) && typeof body === 'object') {
        (body as PoolBuffer).release();
      }
    });
  }

  app.put<{ Params: BlockParams; Body: BlockBody }>(
    '/v1/devices/:id/blocks/:lba',
    {
      // Refused before the body is read: unknown device, bad lba, wrong type, draining.
      onRequest: checkFirst<BlockParams>((request) => {
        deviceOf(service, request.params.id);
        lbaOf(request.params.lba);
        requireType(request, 'application/octet-stream');
        refuseWhileDraining(service);
      }),
    },
    async (request) => {
      const device = deviceOf(service, request.params.id);
      const lba = lbaOf(request.params.lba);
      const body = request.body;
      if (shared && !Buffer.isBuffer(body) && body !== undefined && body !== null) {
        // Checked (size, range) before the pool buffers were taken.
        await service.run(() => device.writeBuffer(lba, body));
        return { lba, bytes: body.length };
      }
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

  type ReadRequest = FastifyRequest<{ Params: BlockParams; Querystring: Record<string, unknown> }>;
  /** What a block read asks for, checked: the device and the sectors on it. */
  const readOf = (request: ReadRequest) => {
    refuseWhileDraining(service);
    const device = deviceOf(service, request.params.id);
    const lba = lbaOf(request.params.lba);
    onlyCount(request.query);
    const count = countOf(request.query.count);
    checkRange(device, lba, count, request.params.lba, String(request.query.count ?? 1));
    return { device, lba, bytes: count * SECTOR_SIZE };
  };

  app.get<{ Params: BlockParams; Querystring: Record<string, unknown> }>(
    '/v1/devices/:id/blocks/:lba',
    // HEAD is the route below, not Fastify's GET-and-discard.
    { exposeHeadRoute: false },
    async (request, reply) => {
      const { device, lba, bytes } = readOf(request);
      const data = await service.run(() => device.read(lba, bytes));
      return reply.type('application/octet-stream').send(data);
    },
  );

  // HEAD: the status and headers a GET would get (Content-Length included), with
  // no device read: nothing moves through the pool and the device counts nothing
  // (RFC 9110 §9.3.2 prefers that to generating and discarding the content).
  app.head<{ Params: BlockParams; Querystring: Record<string, unknown> }>(
    '/v1/devices/:id/blocks/:lba',
    async (request, reply) => {
      const { device, bytes } = readOf(request);
      device.checkLength('read', bytes);
      return reply.type('application/octet-stream').header('content-length', String(bytes)).send();
    },
  );

  app.post<{ Params: DeviceParams }>('/v1/devices/:id/flush', async (request) => {
    refuseWhileDraining(service);
    const device = deviceOf(service, request.params.id);
    await service.run(() => device.flush());
    return { id: device.id, flushed: true };
  });
};
