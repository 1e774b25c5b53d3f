/**
 * The HTTP API, in bounce and direct mode, against seeded random requests:
 * methods, paths, parameters, query strings, content types and bodies, mostly
 * well-formed, sometimes not. Whatever comes in, the answer is one the README
 * documents (never a 500), every error is the JSON error format with a known code,
 * the service stays up, and no request leaves pool slots behind.
 */
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { ERROR_SPECS } from '../src/errors.js';
import { type RunningServer, startServer } from '../src/server/index.js';
import { ioRequestSchema, plainRequest } from '../src/server/routes/io.js';
import { logCapture } from './helpers/http.js';

const KiB = 1024;
/** Sectors on each device (1 MiB). */
const SECTORS = 2048;
const BODY_LIMIT = 64 * KiB;
/** The statuses the README's HTTP API documents. */
const DOCUMENTED = new Set([200, 400, 404, 405, 413, 415, 416, 502, 503, 504]);

/** Mostly one of `names`, sometimes anything. */
const named = (...names: string[]) =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...names), weight: 8 },
    { arbitrary: fc.constantFrom('nope', '', 'ram%00', '..', '%zz', 'RAM'), weight: 1 },
    { arbitrary: fc.string({ maxLength: 12 }).map(encodeURIComponent), weight: 1 },
  );
const segment = named('ram', 'nul');
const poolName = named('p0');
/** Mostly room for a request's sectors after it; sometimes at or past the end. */
const sector = fc.oneof(
  { arbitrary: fc.nat({ max: SECTORS - 100 }), weight: 6 },
  { arbitrary: fc.integer({ min: SECTORS - 8, max: SECTORS + 4 }), weight: 1 },
);
const lba = fc.oneof(
  { arbitrary: sector.map(String), weight: 6 },
  {
    arbitrary: fc.constantFrom('-1', '1e3', '0x10', 'abc', ' 1', '99999999999999999999999', '7.5'),
    weight: 1,
  },
);
const count = fc.oneof(
  { arbitrary: fc.nat({ max: 80 }).map((n) => `?count=${n}`), weight: 4 },
  { arbitrary: fc.constant(''), weight: 2 },
  {
    arbitrary: fc.constantFrom(
      '?count=',
      '?count=-1',
      '?count=1&count=2',
      '?count=1e2',
      '?count=abc',
      '?count=0x10',
      '?count=1.5',
      '?x=1',
    ),
    weight: 1,
  },
);
/** undefined: the type the route takes (below); else this type, or none (''). */
const contentType = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 6 },
  {
    arbitrary: fc.constantFrom(
      '',
      'application/octet-stream',
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      ';;;',
    ),
    weight: 1,
  },
);
/** A synthetic-I/O body: mostly well-formed, sometimes with wrong or extra fields. */
const ioBody = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constantFrom('read', 'write'),
      size: fc.integer({ min: 1, max: 64 }).map((n) => n * 512),
      lba: sector,
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record(
      {
        op: fc.constantFrom('read', 'write', 'erase', ''),
        size: fc.oneof(
          fc.nat({ max: 160 }).map((n) => n * 512),
          fc.constantFrom(0, -512, 100, 2 ** 31, 1.5, '4096'),
        ),
        lba: fc.oneof(sector, fc.constantFrom(-1, 0.5, 2 ** 60, '7')),
        extra: fc.anything({ maxDepth: 1 }),
      },
      { requiredKeys: [] },
    ),
    weight: 1,
  },
);
const blocks = fc
  .tuple(segment, lba, count)
  .map(([id, l, q]) => `/v1/devices/${id}/blocks/${l}${q}`);
/** Block data: mostly whole sectors within the device's 32 KiB per request. */
const data = fc
  .tuple(
    fc.oneof({ arbitrary: fc.integer({ min: 1, max: 64 }), weight: 6 }, fc.nat({ max: 160 })),
    fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, fc.constantFrom(1, 3, 511)),
  )
  .map(([sectors, ragged]) => Buffer.alloc(sectors * 512 + ragged, 0x5a));
const anyPayload = fc.oneof(
  fc.constant(undefined),
  ioBody.map((b) => JSON.stringify(b)),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 40 }),
  data,
);
/** A route's own method, path and body, mostly well-formed. */
const routed = fc.oneof(
  fc.record({ method: fc.constant('PUT'), url: blocks, payload: data }),
  fc.record({ method: fc.constant('GET'), url: blocks, payload: fc.constant(undefined) }),
  fc.record({
    method: fc.constant('POST'),
    url: segment.map((id) => `/v1/devices/${id}/io`),
    payload: fc.oneof(
      { arbitrary: ioBody.map((b) => JSON.stringify(b)), weight: 4 },
      {
        arbitrary: anyPayload,
        weight: 1,
      },
    ),
  }),
  fc.record({
    method: fc.constant('POST'),
    url: segment.map((id) => `/v1/devices/${id}/flush`),
    payload: fc.constant(undefined),
  }),
  fc.record({
    method: fc.constant('GET'),
    url: fc.oneof(
      segment.map((id) => `/v1/devices/${id}`),
      poolName.map((name) => `/v1/pools/${name}`),
      fc.constantFrom('/v1/devices', '/v1/pools', '/v1/pool', '/healthz', '/readyz', '/metrics'),
    ),
    payload: fc.constant(undefined),
  }),
  fc.record({
    method: fc.constant('POST'),
    url: fc.oneof(
      poolName.map((name) => `/v1/pools/${name}/hiwater/reset`),
      fc.constant('/v1/pool/hiwater/reset'),
    ),
    payload: fc.constant(undefined),
  }),
);
/** Anything at all: any method on any of those paths, or none of them. */
const stray = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
  url: fc.oneof(
    routed.map((r) => r.url),
    fc.constantFrom('/', '/v1/devices/ram/blocks/', '/v1'),
    fc.string({ maxLength: 20 }).map((t) => `/${encodeURIComponent(t)}`),
  ),
  payload: anyPayload,
});
const request = fc
  .tuple(fc.oneof({ arbitrary: routed, weight: 4 }, { arbitrary: stray, weight: 1 }), contentType)
  .map(([r, type]) => ({
    ...r,
    // The type a well-formed request of that route carries, mostly; any other sometimes.
    contentType:
      type === ''
        ? undefined
        : (type ??
          (r.payload === undefined
            ? undefined
            : Buffer.isBuffer(r.payload)
              ? 'application/octet-stream'
              : 'application/json')),
  }));

describe.each(['bounce', 'direct', 'shared'] as const)(
  'HTTP API under random requests, %s mode',
  (mode) => {
    let server: RunningServer;
    const logs = logCapture();

    beforeAll(async () => {
      const config = parseConfig({
        mode,
        logLevel: 'info',
        http: { port: 0, bodyLimit: BODY_LIMIT, shutdownTimeoutMs: 5000, retryAfterSeconds: 1 },
        copy: { workers: 1 },
        pools: [{ name: 'p0', size: '2MiB', areas: 2 }],
        devices: [
          { id: 'ram', kind: 'ram-blk', capacity: SECTORS * 512, maxRequestBytes: '32KiB' },
          { id: 'nul', kind: 'null', capacity: SECTORS * 512, maxRequestBytes: '32KiB' },
        ],
      });
      server = await startServer(config, { logger: { level: 'info', stream: logs.stream } });
      await server.service.started;
    });

    afterAll(async () => {
      expect(await server.shutdown()).toBe(true);
    });

    it('answers every request as documented, stays up and leaks no pool slots', async () => {
      const pool = server.service.mediator.pools.get('p0')!.pool;
      // What the virtqueues hold: allocated once at start-up, for good.
      const baseline = pool.stats().used;
      const seen = new Map<string, number>();
      let completedIo = 0;
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const opts: InjectOptions = {
            method: r.method as InjectOptions['method'],
            url: r.url,
            headers: r.contentType === undefined ? {} : { 'content-type': r.contentType },
            ...(r.payload === undefined ? {} : { payload: r.payload }),
          };
          const res = await server.app.inject(opts);
          const what = `${r.method} ${r.url} (${r.contentType ?? 'no type'}) -> ${res.statusCode} ${res.body.slice(0, 200)}`;
          expect(DOCUMENTED.has(res.statusCode), what).toBe(true);
          if (res.statusCode >= 400 && r.method !== 'HEAD') {
            expect(res.headers['content-type'], what).toMatch(/^application\/json/);
            const body = res.json() as Record<string, unknown>;
            expect(body.statusCode, what).toBe(res.statusCode);
            expect(Object.keys(ERROR_SPECS), what).toContain(body.code);
            expect(typeof body.message, what).toBe('string');
            expect((body.message as string).length, what).toBeGreaterThan(0);
            const code = body.code as string;
            seen.set(code, (seen.get(code) ?? 0) + 1);
          }
          if (res.statusCode === 200 && /\/(blocks\/|io$)/.test(r.url)) completedIo++;
          if (res.statusCode === 200 && r.method === 'GET' && r.url.includes('/blocks/')) {
            const sectors = Number(/[?&]count=(\d+)/.exec(r.url)?.[1] ?? 1);
            expect(res.rawPayload.length, what).toBe(sectors * 512);
          }
          // Every request has completed: its slots are back.
          expect(pool.stats().used, what).toBe(baseline);
        }),
        { seed: 20261125, numRuns: 1000 },
      );
      const health = await server.app.inject({ method: 'GET', url: '/healthz' });
      expect(health.json()).toEqual({ status: 'ok', state: 'ready' });
      // The run did I/O through the pool, and reached the error paths it is for.
      expect(completedIo).toBeGreaterThan(100);
      for (const code of [
        'HTTP_NOT_FOUND',
        'HTTP_INVALID_PARAMETER',
        'HTTP_UNKNOWN_DEVICE',
        'HTTP_UNSUPPORTED_MEDIA_TYPE',
        'HTTP_BAD_BODY',
      ]) {
        expect(seen.get(code) ?? 0, `${code} in ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
      }
      // Nothing reached the "unexpected error" path (logged with its stack).
      const unexpected = logs.lines().filter((l) => String(l.msg).startsWith('unexpected error'));
      expect(unexpected).toEqual([]);
    }, 60_000);
  },
);

describe('POST /io: the hand-written check of a well-formed body', () => {
  it('accepts exactly what the schema accepts, with the same values (property)', () => {
    const value = fc.oneof(
      fc.constantFrom('read', 'write', 'READ', '', 'trim'),
      fc.integer({ min: -2, max: 5000 }).map((k) => k * 512),
      fc.integer({ min: -3, max: 100_000 }),
      fc.constantFrom(0, 0.5, 512.5, 2 ** 53, 2 ** 53 - 512, -0, Number.NaN, null, true, '512'),
    );
    const body = fc.oneof(
      fc.record({ op: value, size: value, lba: value, extra: value }, { requiredKeys: [] }),
      fc.record({ op: fc.constantFrom('read', 'write'), size: value }, { requiredKeys: [] }),
      fc.constantFrom(null, [], 'x', 7),
    );
    fc.assert(
      fc.property(body, (b) => {
        const fast = plainRequest(b);
        const slow = ioRequestSchema.safeParse(b);
        // The fast path never accepts what the schema refuses, and agrees on values;
        // what it leaves to the schema, the schema decides.
        if (fast !== undefined) {
          expect(slow.success).toBe(true);
          expect(fast).toEqual(slow.data);
        }
        if (slow.success && typeof b === 'object' && b !== null) {
          expect(fast).toEqual(slow.data);
        }
      }),
      { numRuns: 2000, seed: 11 },
    );
  });
});
