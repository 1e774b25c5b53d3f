import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { formatIssue } from '../../config/load.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import {
  checkFirst,
  checkRange,
  type DeviceParams,
  deviceOf,
  type RouteOptions,
  refuseWhileDraining,
  requireType,
} from './common.js';

/** The JSON body of POST /v1/devices/:id/io. */
export const ioRequestSchema = z.strictObject(
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

/** The body as the schema takes it, checked without zod (the common case, per request). */
export function plainRequest(
  body: unknown,
): { op: 'read' | 'write'; size: number; lba: number } | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  let keys = 0;
  for (const k in b) {
    if (k !== 'op' && k !== 'size' && k !== 'lba') return undefined;
    keys++;
  }
  const { op, size } = b;
  const lba = b.lba ?? 0;
  if (keys !== (b.lba === undefined ? 2 : 3)) return undefined;
  if (op !== 'read' && op !== 'write') return undefined;
  if (!Number.isSafeInteger(size) || (size as number) <= 0 || (size as number) % SECTOR_SIZE) {
    return undefined;
  }
  if (!Number.isSafeInteger(lba) || (lba as number) < 0) return undefined;
  return { op, size: size as number, lba: lba as number };
}

/**
 * Synthetic I/O, for load tests: POST /v1/devices/:id/io `{op, size, lba}` moves
 * `size` bytes of whatever the guest buffer holds, with no data in the HTTP body.
 * A well-formed body is checked by hand (a zod parse per request is dear:
 * docs/performance.md, "The HTTP path"); anything else goes through the
 * schema, which words the error.
 */
export const ioRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  app.post<{ Params: DeviceParams; Body: unknown }>(
    '/v1/devices/:id/io',
    {
      // Refused before the body is read: unknown device, wrong type, draining.
      onRequest: checkFirst<DeviceParams>((request) => {
        deviceOf(service, request.params.id);
        requireType(request, 'application/json');
        refuseWhileDraining(service);
      }),
    },
    async (request) => {
      const device = deviceOf(service, request.params.id);
      let io = plainRequest(request.body);
      if (io === undefined) {
        const parsed = ioRequestSchema.safeParse(request.body, { reportInput: true });
        if (!parsed.success) {
          throw httpError(
            'HTTP_INVALID_PARAMETER',
            formatIssue(parsed.error.issues[0]!, undefined, 'the request'),
          );
        }
        io = parsed.data;
      }
      const { op, size, lba } = io;
      checkRange(device, lba, size / SECTOR_SIZE);
      if (op === 'write') await service.run(() => device.write(lba, size));
      else await service.run(() => device.read(lba, size, false));
      return { op, lba, bytes: size };
    },
  );
};
