import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import { z } from 'zod';
import { formatIssue } from '../config/load.js';
import type { BlkDriver } from '../mediator/blk-driver.js';
import type { PoolEntry } from '../mediator/mediator.js';
import { createMetrics } from '../metrics/metrics.js';
import { SECTOR_SIZE } from '../virtio/blk-format.js';
import { errorBody, httpError, sendProblem } from './errors.js';
import type { Service } from './service.js';

export interface BuildServerOptions {
  /**
   * Fastify's logger option (pino): `false` for none, or `{ level, stream }`.
   * @default false
   */
  logger?: FastifyServerOptions['logger'];
  /**
   * Adds routes of other modules (a metrics endpoint...) to the app, after the
   * API's own; they share its error format and draining behaviour.
   */
  extend?: (app: FastifyInstance, service: Service) => void;
  /**
   * Serve the Prometheus metrics of src/metrics at GET /metrics.
   * @default true
   */
  metrics?: boolean;
}

const DIGITS = /^\d+$/;

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

type DeviceParams = { id: string };
type BlockParams = { id: string; lba: string };

function mediaType(request: FastifyRequest): string {
  const header = request.headers['content-type'];
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * The HTTP API over a {@link Service}: block I/O through the guest's DMA path,
 * synthetic I/O, pool and device statistics, health and readiness. Errors are
 * JSON `{statusCode, code, error, message}` with the codes of src/errors.ts.
 */
export function buildServer(service: Service, opts: BuildServerOptions = {}): FastifyInstance {
  const http = service.config.http;
  const problemContext = { retryAfterSeconds: http.retryAfterSeconds, bodyLimit: http.bodyLimit };
  const app = Fastify({
    logger: opts.logger ?? false,
    // Nothing logged per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: http.bodyLimit,
    // Draining is ours to answer (503 MEDIATOR_CLOSED in the error format).
    return503OnClosing: false,
    frameworkErrors: (err, request, reply) => {
      sendProblem(err, request, reply, problemContext);
    },
  }) as unknown as FastifyInstance;

  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer' },
    (_request, body, done) => {
      done(null, body);
    },
  );

  app.setErrorHandler((err, request, reply) => {
    sendProblem(err, request, reply, problemContext);
  });
  app.setNotFoundHandler((request, reply) => {
    request.log.debug({ code: 'HTTP_NOT_FOUND', status: 404 }, 'no such route');
    reply
      .code(404)
      .send(
        errorBody(
          404,
          'HTTP_NOT_FOUND',
          `no route ${request.method} ${request.url.split('?')[0]} (see docs/http-api.md)`,
        ),
      );
  });
  // While draining, every answer closes its connection so that shutdown is not
  // held up by idle keep-alive sockets.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (service.refusing) reply.header('connection', 'close');
    done(null, payload);
  });

  const deviceOf = (id: string): BlkDriver => {
    const device = service.device(id);
    if (!device) {
      throw httpError(
        'HTTP_UNKNOWN_DEVICE',
        `no device "${id}" (devices: ${[...service.mediator.devices.keys()].join(', ')})`,
      );
    }
    return device;
  };
  const lbaOf = (raw: string): number => {
    if (!DIGITS.test(raw)) {
      throw httpError(
        'HTTP_INVALID_PARAMETER',
        `lba ${JSON.stringify(raw)} is not a non-negative integer (a 512-byte sector number)`,
      );
    }
    // Digits too long for a safe integer are past the end of any device (416).
    return Number(raw);
  };
  const countOf = (raw: unknown): number => {
    if (raw === undefined) return 1;
    if (typeof raw !== 'string' || !DIGITS.test(raw) || Number(raw) < 1) {
      throw httpError(
        'HTTP_INVALID_PARAMETER',
        `count ${JSON.stringify(raw)} is not an integer of at least 1 (a number of 512-byte sectors)`,
      );
    }
    return Number(raw);
  };
  /**
   * 416 unless [lba, lba + sectors) lies on the device. The texts are the digits the
   * client sent: the message quotes the range exactly even where the numbers lost
   * precision (more than 2^53).
   */
  const checkRange = (
    device: BlkDriver,
    lba: number,
    sectors: number,
    lbaText = String(lba),
    sectorsText = String(sectors),
  ): void => {
    const total = device.capacity / SECTOR_SIZE;
    if (!(lba + sectors <= total)) {
      const first = BigInt(lbaText);
      const last = first + BigInt(sectorsText) - 1n;
      throw httpError(
        'HTTP_OUT_OF_RANGE',
        `sectors ${first} to ${last} are past the end of ${device.id} (${total} sectors of 512 bytes: lba 0 to ${total - 1})`,
        { capacity: device.capacity },
      );
    }
  };
  const requireType = (request: FastifyRequest, type: string): void => {
    const got = mediaType(request);
    if (got !== type) {
      throw httpError(
        'HTTP_UNSUPPORTED_MEDIA_TYPE',
        `Content-Type ${got ? JSON.stringify(got) : '(none)'} is not accepted here; send ${type}`,
      );
    }
  };
  const refuseWhileDraining = (): void => {
    if (service.refusing) {
      throw httpError('MEDIATOR_CLOSED', 'the service is shutting down and takes no new I/O');
    }
  };

  // --- Block I/O ---------------------------------------------------------------

  app.put<{ Params: BlockParams; Body: Buffer }>(
    '/v1/devices/:id/blocks/:lba',
    {
      // Refused before the body is read: unknown device, bad lba, wrong type, draining.
      onRequest: async (request) => {
        deviceOf(request.params.id);
        lbaOf(request.params.lba);
        requireType(request, 'application/octet-stream');
        refuseWhileDraining();
      },
    },
    async (request) => {
      const device = deviceOf(request.params.id);
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
      refuseWhileDraining();
      const device = deviceOf(request.params.id);
      const lba = lbaOf(request.params.lba);
      const count = countOf(request.query.count);
      checkRange(device, lba, count, request.params.lba, String(request.query.count ?? 1));
      const data = await service.run(() => device.read(lba, count * SECTOR_SIZE));
      return reply.type('application/octet-stream').send(data);
    },
  );

  app.post<{ Params: DeviceParams }>('/v1/devices/:id/flush', async (request) => {
    refuseWhileDraining();
    const device = deviceOf(request.params.id);
    await service.run(() => device.flush());
    return { id: device.id, flushed: true };
  });

  app.post<{ Params: DeviceParams; Body: unknown }>(
    '/v1/devices/:id/io',
    {
      onRequest: async (request) => {
        deviceOf(request.params.id);
        requireType(request, 'application/json');
        refuseWhileDraining();
      },
    },
    async (request) => {
      const device = deviceOf(request.params.id);
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

  // --- Devices -------------------------------------------------------------------

  const deviceView = (device: BlkDriver) => {
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
  };
  app.get('/v1/devices', async () => ({
    devices: [...service.mediator.devices.values()].map(deviceView),
  }));
  app.get<{ Params: DeviceParams }>('/v1/devices/:id', async (request) =>
    deviceView(deviceOf(request.params.id)),
  );

  // --- Pools (debugfs: io_tlb_nslabs, io_tlb_used, io_tlb_used_hiwater...) --------

  const pools = service.mediator.pools;
  const defaultPool = [...pools.values()][0]!;
  const poolOf = (name: string): PoolEntry => {
    const entry = pools.get(name);
    if (!entry) {
      throw httpError(
        'HTTP_UNKNOWN_POOL',
        `no pool "${name}" (pools: ${[...pools.keys()].join(', ')})`,
      );
    }
    return entry;
  };
  const poolView = (entry: PoolEntry) => {
    const g = entry.pool.geometry;
    return {
      name: entry.name,
      base: `0x${g.base.toString(16)}`,
      bytes: g.bytes,
      ...entry.pool.stats(),
      backpressure: {
        policy: entry.gate.policy,
        waitMs: entry.gate.waitMs,
        ...entry.gate.stats(),
      },
      devices: service.config.devices.filter((d) => d.pool === entry.name).map((d) => d.id),
    };
  };
  app.get('/v1/pools', async () => ({ pools: [...pools.values()].map(poolView) }));
  app.get('/v1/pool', async () => poolView(defaultPool));
  app.get<{ Params: { name: string } }>('/v1/pools/:name', async (request) =>
    poolView(poolOf(request.params.name)),
  );
  const resetHiwater = (entry: PoolEntry) => {
    entry.pool.resetHiwater();
    return poolView(entry);
  };
  app.post('/v1/pool/hiwater/reset', async () => resetHiwater(defaultPool));
  app.post<{ Params: { name: string } }>('/v1/pools/:name/hiwater/reset', async (request) =>
    resetHiwater(poolOf(request.params.name)),
  );

  // --- Prometheus ------------------------------------------------------------------

  if (opts.metrics ?? true) {
    const registry = createMetrics(service.mediator);
    app.get('/metrics', async (_request, reply) => {
      const text = await registry.metrics();
      return reply.type(registry.contentType).send(text);
    });
  }

  // --- Health ------------------------------------------------------------------

  app.get('/healthz', async () => ({ status: 'ok', state: service.state }));
  app.get('/readyz', async (_request, reply) => {
    const state = service.state;
    if (state === 'ready') return { status: 'ready' };
    const why =
      state === 'starting'
        ? 'the service is starting: device threads are not serving yet'
        : 'the service is draining for shutdown';
    return reply
      .code(503)
      .header('retry-after', String(http.retryAfterSeconds))
      .send(errorBody(503, 'HTTP_NOT_READY', why));
  });

  opts.extend?.(app, service);
  return app;
}

export type { FastifyBaseLogger, FastifyInstance };
