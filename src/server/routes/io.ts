import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { formatIssue } from '../../config/load.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import {
  checkRange,
  type DeviceParams,
  deviceOf,
  type RouteOptions,
  refuseWhileDraining,
  requireType,
} from './common.js';

/** The JSON body of POST /v1/devices/:id/io. */
const ioRequestSchema = z.strictObject(
  {
    op: z.enum(['read', 'write'], { error: 'one of "read", "write"' }),
    size: z
      .number({ error: `a positive multiple of ${SECTOR_SIZE} (bytes)` })
      .int()
      .positive()
      .multipleOf(SECTOR_SIZE),
    lba: z
      // int() also refuses numbers past 2^53: JSON.parse has already rounded them.
      .number({ error: 'a non-negative integer below 2^53 (a sector number)' })
      .int()
      .nonnegative()
      .default(0),
  },
  { error: (iss) => (iss.code === 'unrecognized_keys' ? 'op, size, lba' : 'a JSON object') },
);

/**
 * Synthetic I/O, for load tests: POST /v1/devices/:id/io `{op, size, lba}` moves
 * `size` bytes of whatever the guest buffer holds, with no data in the HTTP body.
 */
export const ioRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  app.post<{ Params: DeviceParams; Body: unknown }>(
    '/v1/devices/:id/io',
    {
      onRequest: async (request) => {
        deviceOf(service, request.params.id);
        requireType(request, 'application/json');
        refuseWhileDraining(service);
      },
    },
    async (request) => {
      const device = deviceOf(service, request.params.id);
      const parsed = ioRequestSchema.safeParse(request.body, { reportInput: true });
      if (!parsed.success) {
        throw httpError(
          'HTTP_INVALID_PARAMETER',
          formatIssue(parsed.error.issues[0]!, undefined, 'the request'),
        );
      }
      const { op, size, lba } = parsed.data;
      checkRange(device, lba, size / SECTOR_SIZE);
      if (op === 'write') await service.run(() => device.write(lba, size));
      else await service.run(() => device.read(lba, size, false));
      return { op, lba, bytes: size };
    },
  );
};
