/**
 * The HTTP API, in process: Fastify inject and a real socket, on every device kind,
 * in bounce, direct and shared mode; every error case; concurrent clients; draining.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectOptions } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { ERROR_SPECS } from '../src/errors.js';
import { BlkDriver } from '../src/mediator/blk-driver.js';
import { buildServer, type RunningServer, Service, startServer } from '../src/server/index.js';
import { NO_FAULTS } from './helpers/chaos.js';
import { expectErrorBody, JSON_TYPE, logCapture, OCTET, randomBytes } from './helpers/http.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CAPACITY = 8 * MiB;
const SECTORS = CAPACITY / 512;

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `request` as is on a new TCP connection (what fetch cannot: a bad
 * Content-Length, a 20 KB header) and resolves with the answer once the server
 * closes the connection; rejects when it keeps it open for 3 s.
 */
function rawExchange(url: string, request: string): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the server kept the connection open'));
    }, 3000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
      const headers = Object.fromEntries(
        lines.map((l) => {
          const i = l.indexOf(':');
          return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
        }),
      );
      resolve({
        status: Number(statusLine!.split(' ')[1]),
        headers,
        body: text.slice(split + 4),
      });
    });
    socket.write(request);
  });
}

function testConfig(mode: 'bounce' | 'direct' | 'shared', dir: string) {
  return parseConfig({
    mode,
    logLevel: 'info',
    http: { port: 0, bodyLimit: '256KiB', shutdownTimeoutMs: 5000, retryAfterSeconds: 2 },
    copy: { workers: 1 },
    pools: [
      { name: 'p0', size: '4MiB', areas: 2 },
      { name: 'tiny', size: '256KiB', areas: 1, backpressure: { policy: 'wait', waitMs: 100 } },
    ],
    devices: [
      { id: 'ram', kind: 'ram-blk', capacity: CAPACITY, maxRequestBytes: '128KiB', depth: 8 },
      {
        id: 'file',
        kind: 'file-blk',
        capacity: CAPACITY,
        file: join(dir, 'disk.img'),
        maxRequestBytes: '128KiB',
        depth: 8,
        queues: 2,
      },
      { id: 'nul', kind: 'null', capacity: CAPACITY, maxRequestBytes: '128KiB', depth: 4 },
      {
        id: 'faulty',
        kind: 'chaos',
        capacity: '1MiB',
        maxRequestBytes: '64KiB',
        depth: 2,
        chaos: { ...NO_FAULTS, badLen: 1 },
      },
      {
        id: 'stall',
        kind: 'chaos',
        pool: 'tiny',
        capacity: '1MiB',
        maxRequestBytes: '256KiB',
        depth: 2,
        queueSize: 16,
        timeoutMs: 1500,
        chaos: { ...NO_FAULTS, drop: 1 },
      },
    ],
  });
}

describe.each(['bounce', 'direct', 'shared'] as const)('HTTP API, %s mode', (mode) => {
  let server: RunningServer;
  let dir: string;
  const logs = logCapture();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'serve-'));
    server = await startServer(testConfig(mode, dir), {
      logger: { level: 'info', stream: logs.stream },
    });
    await server.service.started;
  });

  afterAll(async () => {
    try {
      expect(await server.shutdown()).toBe(true);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  const inject = (opts: InjectOptions) => server.app.inject(opts);

  it('is alive and ready once every device thread serves', async () => {
    expect(server.service.state).toBe('ready');
    const health = await inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok', state: 'ready' });
    const ready = await inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  it.each(['ram', 'file'])(
    '%s: random data written then read back byte for byte (inject)',
    async (id) => {
      const writes = [512, 4096, 65_536, 128 * KiB].map((size, i) => ({
        lba: i * 1024 + 7,
        data: randomBytes(size, i + 11),
      }));
      for (const w of writes) {
        const res = await inject({
          method: 'PUT',
          url: `/v1/devices/${id}/blocks/${w.lba}`,
          headers: OCTET,
          payload: w.data,
        });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.json()).toEqual({ lba: w.lba, bytes: w.data.length });
      }
      for (const w of writes) {
        const res = await inject({
          method: 'GET',
          url: `/v1/devices/${id}/blocks/${w.lba}?count=${w.data.length / 512}`,
        });
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toBe('application/octet-stream');
        expect(Buffer.compare(res.rawPayload, w.data)).toBe(0);
      }
      // Without count: one sector.
      const one = await inject({
        method: 'GET',
        url: `/v1/devices/${id}/blocks/${writes[2]!.lba}`,
      });
      expect(Buffer.compare(one.rawPayload, writes[2]!.data.subarray(0, 512))).toBe(0);
      const flush = await inject({ method: 'POST', url: `/v1/devices/${id}/flush` });
      expect(flush.statusCode).toBe(200);
      expect(flush.json()).toEqual({ id, flushed: true });
    },
  );

  it('file-blk: an acknowledged write is in the backing file', async () => {
    const data = randomBytes(8192, 99);
    const lba = 3000;
    const res = await inject({
      method: 'PUT',
      url: `/v1/devices/file/blocks/${lba}`,
      headers: { 'content-type': 'application/octet-stream; charset=binary' },
      payload: data,
    });
    expect(res.statusCode).toBe(200);
    const onDisk = readFileSync(join(dir, 'disk.img'));
    expect(onDisk.length).toBe(CAPACITY);
    expect(Buffer.compare(onDisk.subarray(lba * 512, lba * 512 + data.length), data)).toBe(0);
  });

  it('null: writes are accepted and reads return the sectors asked for', async () => {
    const put = await inject({
      method: 'PUT',
      url: '/v1/devices/nul/blocks/5',
      headers: OCTET,
      payload: randomBytes(4096, 5),
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ lba: 5, bytes: 4096 });
    const get = await inject({ method: 'GET', url: '/v1/devices/nul/blocks/5?count=8' });
    expect(get.statusCode).toBe(200);
    expect(get.headers['content-type']).toBe('application/octet-stream');
    expect(get.rawPayload.length).toBe(4096);
    const s = server.service.device('nul')!.stats();
    expect(s.requests.write.ok).toBeGreaterThanOrEqual(1);
    expect(s.requests.read.ok).toBeGreaterThanOrEqual(1);
  });

  it('synthetic I/O on guest memory, no body transfer', async () => {
    const before = server.service.device('ram')!.stats();
    for (const op of ['write', 'read'] as const) {
      const res = await inject({
        method: 'POST',
        url: '/v1/devices/ram/io',
        headers: JSON_TYPE,
        payload: { op, size: 65_536, lba: 2048 },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({ op, lba: 2048, bytes: 65_536 });
    }
    const noLba = await inject({
      method: 'POST',
      url: '/v1/devices/nul/io',
      headers: JSON_TYPE,
      payload: { op: 'write', size: 4096 },
    });
    expect(noLba.json()).toEqual({ op: 'write', lba: 0, bytes: 4096 });
    const after = server.service.device('ram')!.stats();
    expect(after.requests.write.ok - before.requests.write.ok).toBe(1);
    expect(after.requests.read.ok - before.requests.read.ok).toBe(1);
    expect(after.bytesWritten - before.bytesWritten).toBe(65_536);
  });

  it('a real socket: concurrent clients write and read back their own blocks', async () => {
    const clients = 12;
    const perClient = 6;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        const id = c % 2 === 0 ? 'ram' : 'file';
        for (let k = 0; k < perClient; k++) {
          const lba = 8192 + (c * perClient + k) * 16;
          const data = randomBytes(512 * (1 + ((c + k) % 16)), 1000 + c * 100 + k);
          const put = await fetch(`${server.url}/v1/devices/${id}/blocks/${lba}`, {
            method: 'PUT',
            headers: OCTET,
            body: data,
          });
          expect(put.status).toBe(200);
          expect(await put.json()).toEqual({ lba, bytes: data.length });
          const get = await fetch(
            `${server.url}/v1/devices/${id}/blocks/${lba}?count=${data.length / 512}`,
          );
          expect(get.status).toBe(200);
          expect(get.headers.get('content-type')).toBe('application/octet-stream');
          expect(Buffer.compare(Buffer.from(await get.arrayBuffer()), data)).toBe(0);
        }
      }),
    );
  });

  it('GET /v1/devices: every device with its queues and counters', async () => {
    const res = await inject({ method: 'GET', url: '/v1/devices' });
    expect(res.statusCode).toBe(200);
    const { devices } = res.json() as { devices: Record<string, unknown>[] };
    expect(devices.map((d) => d.id)).toEqual(['ram', 'file', 'nul', 'faulty', 'stall']);
    const file = devices[1]!;
    expect(file).toMatchObject({
      id: 'file',
      kind: 'file-blk',
      mode,
      capacity: CAPACITY,
      sectors: SECTORS,
      guest: 'guest0',
      pool: 'p0',
      sync: 'durable',
      maxRequestBytes: 128 * KiB,
    });
    expect((file.queues as unknown[]).length).toBe(2);
    expect((file.requests as { write: { ok: number } }).write.ok).toBeGreaterThan(0);
    const one = await inject({ method: 'GET', url: '/v1/devices/ram' });
    expect(one.json()).toMatchObject({ id: 'ram', kind: 'ram-blk', inFlight: 0 });
  });

  it('GET /v1/pool, /v1/pools, /v1/pools/:name and the hiwater reset', async () => {
    const all = await inject({ method: 'GET', url: '/v1/pools' });
    const { pools } = all.json() as { pools: Record<string, unknown>[] };
    expect(pools.map((p) => p.name)).toEqual(['p0', 'tiny']);
    const res = await inject({ method: 'GET', url: '/v1/pool' });
    expect(res.statusCode).toBe(200);
    const p0 = res.json() as Record<string, number> & { backpressure: Record<string, unknown> };
    expect(p0).toMatchObject({
      name: 'p0',
      nslabs: (4 * MiB) / 2048,
      transient_nslabs: 0,
      nareas: 2,
      devices: ['ram', 'file', 'nul', 'faulty'],
    });
    expect(p0.backpressure).toMatchObject({
      policy: 'requeue-bounded',
      waitMs: 5000,
      timeouts: 0,
      requeues: 0,
    });
    // The virtqueues live in the pool in bounce and shared mode: slots in use even when idle.
    if (mode !== 'direct') {
      expect(p0.used).toBeGreaterThan(0);
      expect(p0.used_hiwater).toBeGreaterThan(p0.used!);
      expect(p0.maps).toBeGreaterThan(0);
    }
    const reset = await inject({ method: 'POST', url: '/v1/pool/hiwater/reset' });
    expect(reset.statusCode).toBe(200);
    expect(reset.json()).toMatchObject({ name: 'p0', used_hiwater: 0 });
    const tiny = await inject({ method: 'GET', url: '/v1/pools/tiny' });
    expect(tiny.json()).toMatchObject({
      name: 'tiny',
      nslabs: 128,
      nareas: 1,
      devices: ['stall'],
      // Configured with the old name "wait": the policy it means now.
      backpressure: { policy: 'requeue-bounded', waitMs: 100 },
    });
    const resetTiny = await inject({ method: 'POST', url: '/v1/pools/tiny/hiwater/reset' });
    expect(resetTiny.json()).toMatchObject({ name: 'tiny', used_hiwater: 0 });
  });

  it('GET /metrics: the Prometheus text of the pools and devices', async () => {
    const res = await inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toMatch(/^swiotlb_pool_slots\{pool="p0"\} 2048$/m);
    expect(res.body).toMatch(/^swiotlb_pool_slots\{pool="tiny"\} 128$/m);
    expect(res.body).toMatch(
      /^mediator_requests_total\{device="ram",op="write",outcome="ok"\} [1-9]/m,
    );
  });

  describe('bad input gets a clear 4xx and changes nothing', () => {
    const lba = 100;
    const original = randomBytes(4096, 4242);

    beforeAll(async () => {
      const res = await inject({
        method: 'PUT',
        url: `/v1/devices/ram/blocks/${lba}`,
        headers: OCTET,
        payload: original,
      });
      expect(res.statusCode).toBe(200);
    });

    const expectUnchanged = async () => {
      const res = await inject({ method: 'GET', url: `/v1/devices/ram/blocks/${lba}?count=8` });
      expect(Buffer.compare(res.rawPayload, original)).toBe(0);
    };

    it('unknown device, unknown pool, unknown route: 404', async () => {
      const dev = await inject({ method: 'GET', url: '/v1/devices/nope/blocks/0' });
      expect(dev.statusCode).toBe(404);
      expectErrorBody(404, dev.json(), 'HTTP_UNKNOWN_DEVICE', /"nope"/);
      const put = await inject({
        method: 'PUT',
        url: '/v1/devices/nope/blocks/0',
        headers: OCTET,
        payload: Buffer.alloc(512),
      });
      expectErrorBody(404, put.json(), 'HTTP_UNKNOWN_DEVICE');
      for (const url of ['/v1/devices/nope/io', '/v1/devices/nope/flush']) {
        const res = await inject({ method: 'POST', url, headers: JSON_TYPE, payload: {} });
        expectErrorBody(404, res.json(), 'HTTP_UNKNOWN_DEVICE');
      }
      const pool = await inject({ method: 'GET', url: '/v1/pools/nope' });
      expect(pool.statusCode).toBe(404);
      expectErrorBody(404, pool.json(), 'HTTP_UNKNOWN_POOL');
      const route = await inject({ method: 'GET', url: '/v2/whatever' });
      expect(route.statusCode).toBe(404);
      expectErrorBody(404, route.json(), 'HTTP_NOT_FOUND', /\/v2\/whatever/);
      // A path of the API with a method it does not take: 405 with Allow (RFC 9110 §15.5.6).
      const method = await inject({ method: 'DELETE', url: '/v1/devices/ram/blocks/0' });
      expect(method.statusCode).toBe(405);
      expect(method.headers.allow).toBe('GET, HEAD, PUT');
      expectErrorBody(405, method.json(), 'HTTP_METHOD_NOT_ALLOWED');
    });

    it('lba or count not a non-negative integer: 400', async () => {
      for (const bad of ['abc', '-1', '1.5', '0x10', '1e3', '%201', '']) {
        for (const method of ['GET', 'PUT'] as const) {
          const res = await inject({
            method,
            url: `/v1/devices/ram/blocks/${bad}`,
            headers: OCTET,
            ...(method === 'PUT' ? { payload: Buffer.alloc(512) } : {}),
          });
          expect(res.statusCode, `${method} ${bad}`).toBe(400);
          expectErrorBody(400, res.json(), 'HTTP_INVALID_PARAMETER', /lba/);
        }
      }
      for (const bad of ['0', '-1', 'x', '1.5', '2&count=3']) {
        const res = await inject({ method: 'GET', url: `/v1/devices/ram/blocks/0?count=${bad}` });
        expect(res.statusCode, `count=${bad}`).toBe(400);
        expectErrorBody(400, res.json(), 'HTTP_INVALID_PARAMETER', /count/);
      }
      await expectUnchanged();
    });

    it('past the end of the device: 416 with Content-Range', async () => {
      // `range`: the sectors the message must quote, exactly, even past 2^53.
      const cases = [
        {
          method: 'GET' as const,
          url: `/v1/devices/ram/blocks/${SECTORS}`,
          range: `${SECTORS} to ${SECTORS}`,
        },
        {
          method: 'GET' as const,
          url: `/v1/devices/ram/blocks/${SECTORS - 1}?count=2`,
          range: `${SECTORS - 1} to ${SECTORS}`,
        },
        {
          method: 'GET' as const,
          url: '/v1/devices/ram/blocks/99999999999999999999999',
          range: '99999999999999999999999 to 99999999999999999999999',
        },
        {
          method: 'GET' as const,
          url: '/v1/devices/ram/blocks/9007199254740993?count=3',
          range: '9007199254740993 to 9007199254740995',
        },
        {
          method: 'GET' as const,
          url: '/v1/devices/ram/blocks/1?count=99999999999999999999999',
          range: '1 to 99999999999999999999999',
        },
        {
          method: 'PUT' as const,
          url: `/v1/devices/ram/blocks/${SECTORS}`,
          range: `${SECTORS} to ${SECTORS + 1}`,
        },
        {
          method: 'PUT' as const,
          url: `/v1/devices/ram/blocks/${SECTORS - 1}`,
          range: `${SECTORS - 1} to ${SECTORS}`,
        },
        {
          method: 'PUT' as const,
          url: '/v1/devices/ram/blocks/9007199254740993',
          range: '9007199254740993 to 9007199254740994',
        },
      ];
      for (const { range, ...c } of cases) {
        const res = await inject({
          ...c,
          headers: OCTET,
          ...(c.method === 'PUT' ? { payload: Buffer.alloc(1024) } : {}),
        });
        expect(res.statusCode, c.url).toBe(416);
        expect(res.headers['content-range']).toBe(`bytes */${CAPACITY}`);
        expectErrorBody(416, res.json(), 'HTTP_OUT_OF_RANGE', /past the end of ram/);
        expect(res.json().message, c.url).toContain(`sectors ${range} are past the end`);
      }
      const io = await inject({
        method: 'POST',
        url: '/v1/devices/ram/io',
        headers: JSON_TYPE,
        payload: { op: 'write', size: 4096, lba: SECTORS - 4 },
      });
      expectErrorBody(416, io.json(), 'HTTP_OUT_OF_RANGE');
      // The last sector itself is fine.
      const last = await inject({ method: 'GET', url: `/v1/devices/ram/blocks/${SECTORS - 1}` });
      expect(last.statusCode).toBe(200);
      expect(last.rawPayload.length).toBe(512);
    });

    it('a body that is not a non-empty multiple of 512 bytes: 400', async () => {
      const writesBefore = server.service.device('ram')!.stats().requests.write;
      for (const size of [0, 1, 511, 513, 4095]) {
        const res = await inject({
          method: 'PUT',
          url: `/v1/devices/ram/blocks/${lba}`,
          headers: OCTET,
          payload: Buffer.alloc(size, 0xee),
        });
        expect(res.statusCode, `${size} bytes`).toBe(400);
        expectErrorBody(400, res.json(), 'HTTP_BAD_BODY', /multiple of 512/);
      }
      expect(server.service.device('ram')!.stats().requests.write).toEqual(writesBefore);
      await expectUnchanged();
    });

    it('larger than the body limit or the device request limit: 413', async () => {
      const overLimit = await inject({
        method: 'PUT',
        url: `/v1/devices/ram/blocks/${lba}`,
        headers: OCTET,
        payload: Buffer.alloc(256 * KiB + 512, 0xee),
      });
      expect(overLimit.statusCode).toBe(413);
      expectErrorBody(
        413,
        overLimit.json(),
        'HTTP_BODY_TOO_LARGE',
        /http\.bodyLimit \(262144 bytes\)/,
      );
      // Within the body limit, over the device's 128 KiB per request.
      const overDevice = await inject({
        method: 'PUT',
        url: `/v1/devices/ram/blocks/${lba}`,
        headers: OCTET,
        payload: Buffer.alloc(192 * KiB, 0xee),
      });
      expect(overDevice.statusCode).toBe(413);
      expectErrorBody(413, overDevice.json(), 'MEDIATOR_REQUEST_TOO_LARGE');
      const read = await inject({ method: 'GET', url: '/v1/devices/ram/blocks/0?count=512' });
      expectErrorBody(413, read.json(), 'MEDIATOR_REQUEST_TOO_LARGE');
      const io = await inject({
        method: 'POST',
        url: '/v1/devices/ram/io',
        headers: JSON_TYPE,
        payload: { op: 'read', size: 256 * KiB },
      });
      expectErrorBody(413, io.json(), 'MEDIATOR_REQUEST_TOO_LARGE');
      await expectUnchanged();
    });

    it('wrong content type: 415', async () => {
      for (const headers of [
        JSON_TYPE,
        { 'content-type': 'text/plain' },
        { 'content-type': 'application/x-www-form-urlencoded' },
        {},
      ]) {
        const res = await inject({
          method: 'PUT',
          url: `/v1/devices/ram/blocks/${lba}`,
          headers,
          payload: JSON.stringify({ not: 'blocks' }).padEnd(512),
        });
        expect(res.statusCode, JSON.stringify(headers)).toBe(415);
        expectErrorBody(
          415,
          res.json(),
          'HTTP_UNSUPPORTED_MEDIA_TYPE',
          /application\/octet-stream/,
        );
      }
      const io = await inject({
        method: 'POST',
        url: '/v1/devices/ram/io',
        headers: OCTET,
        payload: Buffer.from('{"op":"write","size":512}'),
      });
      expect(io.statusCode).toBe(415);
      expectErrorBody(415, io.json(), 'HTTP_UNSUPPORTED_MEDIA_TYPE', /application\/json/);
      await expectUnchanged();
    });

    it('synthetic I/O with bad JSON or bad fields: 400', async () => {
      const cases: [string, RegExp, string][] = [
        ['{"op":"erase","size":512}', /^op: "erase" is not allowed/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":"write","size":100}', /^size: 100 is not allowed/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":"write","size":0}', /size/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":"write"}', /size/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":"read","size":512,"lba":-1}', /lba/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":"read","size":512,"lba":"7"}', /lba/, 'HTTP_INVALID_PARAMETER'],
        [
          '{"op":"read","size":512,"lba":9007199254740993}',
          /^lba: .* is not allowed; expected a non-negative integer below 2\^53/,
          'HTTP_INVALID_PARAMETER',
        ],
        [
          '{"op":"read","size":512,"extra":1}',
          /extra: unknown field; the fields of the request are op, size, lba/,
          'HTTP_INVALID_PARAMETER',
        ],
        ['[1,2]', /JSON object/, 'HTTP_INVALID_PARAMETER'],
        ['{"op":', /JSON/, 'HTTP_BAD_BODY'],
        ['', /empty/i, 'HTTP_BAD_BODY'],
      ];
      for (const [payload, message, code] of cases) {
        const res = await inject({
          method: 'POST',
          url: '/v1/devices/ram/io',
          headers: JSON_TYPE,
          payload,
        });
        expect(res.statusCode, payload).toBe(400);
        expectErrorBody(400, res.json(), code, message);
      }
    });

    it('every error answer uses the status of its code', async () => {
      const res = await inject({ method: 'GET', url: '/v1/devices/ram/blocks/x' });
      const body = res.json() as { code: keyof typeof ERROR_SPECS };
      expect(res.statusCode).toBe(ERROR_SPECS[body.code].status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
    });

    it('what the HTTP parser refuses before any route (bad Content-Length, 20 KB header): HTTP_BAD_REQUEST, connection closed', async () => {
      const cases: [string, number, RegExp][] = [
        [
          `PUT /v1/devices/ram/blocks/${lba} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: abc\r\n\r\n${'x'.repeat(512)}`,
          400,
          /^malformed HTTP request: .*Content-Length/,
        ],
        [
          `GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(20 * KiB)}\r\n\r\n`,
          431,
          /headers are larger than the server accepts \(\d+ bytes\)/,
        ],
        ['NOT-HTTP\r\n\r\n', 400, /^malformed HTTP request/],
      ];
      for (const [request, status, message] of cases) {
        const res = await rawExchange(server.url, request);
        expect(res.status, request.slice(0, 40)).toBe(status);
        const body = JSON.parse(res.body) as Record<string, unknown>;
        expectErrorBody(status, body, 'HTTP_BAD_REQUEST', message);
        expect(Object.keys(body).sort()).toEqual(['code', 'error', 'message', 'statusCode']);
        expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
        expect(res.headers.connection).toBe('close');
        expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
      }
      // The service goes on answering.
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      await expectUnchanged();
    });
  });

  it.runIf(mode === 'bounce')(
    'a device fault is a 502 with its code; back-pressure giving up a 503 with Retry-After; a device timeout a 504',
    async () => {
      for (const method of ['PUT', 'GET'] as const) {
        const res = await inject({
          method,
          url: '/v1/devices/faulty/blocks/0?count=8',
          headers: OCTET,
          ...(method === 'PUT' ? { payload: randomBytes(4096, 1) } : {}),
        });
        expect(res.statusCode, method).toBe(502);
        expectErrorBody(502, res.json(), 'MEDIATOR_DEVICE_FAULT', /used len/);
      }
      expect(server.service.device('faulty')!.stats().faults.used_len).toBe(2);

      // "stall" never completes. Its first request holds 102 of the 128 slots of
      // pool "tiny" until it times out; the second cannot fit and gives up after 100 ms.
      const first = inject({
        method: 'PUT',
        url: '/v1/devices/stall/blocks/0',
        headers: OCTET,
        payload: randomBytes(200 * KiB, 2),
      });
      const tinyUsed = () => server.service.mediator.pools.get('tiny')!.pool.used();
      const idle = tinyUsed();
      await vi.waitFor(() => expect(tinyUsed()).toBeGreaterThan(idle + 100), {
        timeout: 5000,
        interval: 5,
      });
      const second = await inject({
        method: 'PUT',
        url: '/v1/devices/stall/blocks/1024',
        headers: OCTET,
        payload: randomBytes(128 * KiB, 3),
      });
      expect(second.statusCode).toBe(503);
      expect(second.headers['retry-after']).toBe('2');
      expectErrorBody(
        503,
        second.json(),
        'MEDIATOR_BACKPRESSURE_TIMEOUT',
        /gave up after waiting 100 ms/,
      );
      const timedOut = await first;
      expect(timedOut.statusCode).toBe(504);
      expectErrorBody(504, timedOut.json(), 'MEDIATOR_DEVICE_TIMEOUT');
      const tiny = (await inject({ method: 'GET', url: '/v1/pools/tiny' })).json();
      expect(tiny).toMatchObject({ backpressure: { waits: 1, timeouts: 1, waiting: 0 } });
      await server.service.device('stall')!.reset();
      expect(tinyUsed()).toBe(idle);
    },
  );

  it('no input crashes the process: a seeded storm of malformed requests', async () => {
    let x = 12345;
    const rnd = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const methods = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const;
    const paths = [
      '/v1/devices/ram/blocks/',
      '/v1/devices/file/blocks/',
      '/v1/devices/nul/io',
      '/v1/devices/%00/blocks/1',
      '/v1/devices/ram/blocks/1?count=',
      '/v1/pool/hiwater/reset',
      '/v1/pools/%E0%A4%A',
      '/v1/devices/__proto__/blocks/0',
      '/v1/devices/constructor/flush',
      '/readyz',
      '/%%%',
    ];
    const types = [
      'application/octet-stream',
      'application/json',
      'text/plain',
      'multipart/form-data; boundary=x',
      '',
    ];
    const statuses = new Set<number>();
    for (let i = 0; i < 150; i++) {
      const method = methods[rnd(methods.length)]!;
      const path = paths[rnd(paths.length)]! + (rnd(2) ? String(rnd(SECTORS * 2)) : '');
      const type = types[rnd(types.length)]!;
      const body =
        method === 'GET' || method === 'HEAD'
          ? undefined
          : rnd(3) === 0
            ? `{"op":"write","size":${rnd(5000)}`
            : randomBytes(rnd(3) * 512 + rnd(2), i);
      const res = await inject({
        method,
        url: path,
        headers: type ? { 'content-type': type } : {},
        ...(body !== undefined ? { payload: body } : {}),
      });
      statuses.add(res.statusCode);
      expect(res.statusCode, `${method} ${path}`).toBeLessThan(500);
    }
    expect(statuses.size).toBeGreaterThan(3);
    const health = await inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    const data = randomBytes(1024, 77);
    await inject({
      method: 'PUT',
      url: '/v1/devices/ram/blocks/9000',
      headers: OCTET,
      payload: data,
    });
    const back = await inject({ method: 'GET', url: '/v1/devices/ram/blocks/9000?count=2' });
    expect(Buffer.compare(back.rawPayload, data)).toBe(0);
  });

  it('logs its start-up (and, in bounce and shared mode, which devices share a pool) and nothing per request at info', () => {
    const all = logs.lines();
    const info = all.filter((l) => l.level === 30);
    // Bounce mode: first the kernel's lines for each pool, as it builds them
    // (swiotlb_adjust_size() for a pool given by its size).
    const kernelLines = info.filter((l) => String(l.msg).startsWith('software IO TLB: '));
    expect(kernelLines.map((l) => [l.pool, l.msg])).toEqual(
      mode === 'bounce'
        ? [
            ['p0', 'software IO TLB: area num 2.'],
            ['p0', 'software IO TLB: SWIOTLB bounce buffer size adjusted to 4MB'],
            ['p0', 'software IO TLB: mapped [mem 0x0000000000000000-0x0000000000400000] (4MB)'],
            ['tiny', 'software IO TLB: area num 1.'],
            ['tiny', 'software IO TLB: SWIOTLB bounce buffer size adjusted to 0MB'],
            ['tiny', 'software IO TLB: mapped [mem 0x0000000000000000-0x0000000000040000] (0MB)'],
          ]
        : [],
    );
    expect(info.slice(0, kernelLines.length)).toEqual(kernelLines);
    const lines = info.slice(kernelLines.length);
    // p0 holds ram, file, nul and faulty; tiny holds stall alone.
    expect(lines.length, JSON.stringify(lines)).toBe(mode === 'direct' ? 1 : 2);
    expect(lines[0]!.level).toBe(30);
    expect(String(lines[0]!.msg)).toMatch(
      new RegExp(
        `listening on http://127\\.0\\.0\\.1:\\d+: ${mode} mode${mode === 'bounce' ? ', Linux 6\\.10 swiotlb rules' : ''}; pools: p0 4MiB \\(2048 slots, 2 areas; requeue-bounded, at most 5000 ms${mode === 'direct' ? '' : "; warm placement, not the kernel's"}\\)`,
      ),
    );
    expect(String(lines[0]!.msg)).toMatch(
      /devices: ram \(ram-blk, 8MiB(, fromDeviceBounce used-length)?\), file \(file-blk/,
    );
    if (mode !== 'direct') {
      expect(lines[1]).toMatchObject({
        level: 30,
        pool: 'p0',
        devices: ['ram', 'file', 'nul', 'faulty'],
      });
      expect(String(lines[1]!.msg)).toMatch(
        /^pool p0 is shared by devices ram, file, nul, faulty: each of them can read and alter the others' I\/O/,
      );
    }
    // Above info: the misbehaviour the chaos devices were made for (bounce mode
    // only), each kind once (two faults, one warning); nothing at error.
    const above = all.filter((l) => (l.level as number) > 30);
    expect(above.every((l) => l.level === 40)).toBe(true);
    const codes = above.map((l) => String(l.code));
    expect(new Set(codes)).toEqual(
      new Set(
        mode === 'bounce'
          ? [
              'MEDIATOR_DEVICE_FAULT',
              'SWIOTLB_POOL_FULL',
              'MEDIATOR_BACKPRESSURE_TIMEOUT',
              'MEDIATOR_DEVICE_TIMEOUT',
              'MEDIATOR_DEVICE_RESET',
            ]
          : [],
      ),
    );
    expect(codes.filter((c) => c === 'MEDIATOR_DEVICE_FAULT')).toHaveLength(
      mode === 'bounce' ? 1 : 0,
    );
  });
});

describe('one logger', () => {
  it('the logger given to startServer is the one of Fastify and of the mediator', async () => {
    const logs = logCapture();
    const logger = pino({ level: 'info' }, logs.stream);
    const server = await startServer(
      parseConfig({
        logLevel: 'silent',
        http: { port: 0 },
        copy: { workers: 0 },
        pools: [{ size: '1MiB', areas: 1 }],
        devices: [{ id: 'ram', kind: 'ram-blk', capacity: '1MiB', maxRequestBytes: '64KiB' }],
      }),
      { logger },
    );
    try {
      await server.service.started;
      expect(server.service.logger).toBe(logger);
      // The instance is used as given: its level wins over the config's "silent".
      await server.service.device('ram')!.reset();
      // The kernel's lines for the pool, then where it listens.
      const lines = logs.lines().filter((l) => !String(l.msg).startsWith('software IO TLB: '));
      expect(String(lines[0]!.msg)).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
      expect(lines.slice(1)).toEqual([
        expect.objectContaining({ level: 40, device: 'ram', code: 'MEDIATOR_DEVICE_RESET' }),
      ]);
    } finally {
      expect(await server.shutdown()).toBe(true);
    }
  });
});

describe('readiness and draining', () => {
  const config = () =>
    parseConfig({
      logLevel: 'silent',
      http: { port: 0 },
      copy: { workers: 0 },
      pools: [{ size: '1MiB', areas: 1 }],
      devices: [{ id: 'ram', kind: 'ram-blk', capacity: '1MiB', maxRequestBytes: '64KiB' }],
    });

  it('not ready while starting: /readyz answers 503 until every device thread serves', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const spy = vi.spyOn(BlkDriver.prototype, 'ready').mockImplementation(() => gate);
    const service = new Service(config());
    spy.mockRestore();
    const app = buildServer(service);
    try {
      const starting = await app.inject({ method: 'GET', url: '/readyz' });
      expect(starting.statusCode).toBe(503);
      expectErrorBody(503, starting.json(), 'HTTP_NOT_READY', /starting/);
      expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({
        status: 'ok',
        state: 'starting',
      });
      release();
      await service.started;
      expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    } finally {
      await app.close();
      await service.close();
    }
  });

  it('draining: in-flight I/O finishes, new I/O gets 503, then everything closes', async () => {
    const server = await startServer(config());
    await server.service.started;
    const device = server.service.device('ram')!;
    // Hold the writes on their way to the device, so that they are in flight for sure.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const write = device.write.bind(device);
    vi.spyOn(device, 'write').mockImplementation(async (...args) => {
      await gate;
      return write(...args);
    });
    const data = randomBytes(64 * KiB, 8);
    const writes = Array.from({ length: 4 }, (_, i) =>
      fetch(`${server.url}/v1/devices/ram/blocks/${i * 128}`, {
        method: 'PUT',
        headers: OCTET,
        body: data,
      }).then(async (r) => ({ status: r.status, body: await r.json() })),
    );
    await vi.waitFor(() => expect(server.service.inFlightRequests).toBe(4), { timeout: 5000 });

    server.service.drain();
    const readyz = await server.app.inject({ method: 'GET', url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expectErrorBody(503, readyz.json(), 'HTTP_NOT_READY', /draining/);
    const refused = await server.app.inject({
      method: 'PUT',
      url: '/v1/devices/ram/blocks/0',
      headers: OCTET,
      payload: Buffer.alloc(512),
    });
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers.connection).toBe('close');
    expectErrorBody(503, refused.json(), 'MEDIATOR_CLOSED');
    const shutdown = server.shutdown();
    await vi.waitFor(() => expect(server.app.server.listening).toBe(false), { timeout: 5000 });
    // New connections are refused; the held writes are still in flight.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    expect(server.service.inFlightRequests).toBe(4);
    expect(server.service.state).toBe('draining');

    release();
    expect(await shutdown).toBe(true);
    expect(server.service.state).toBe('closed');
    for (const r of await Promise.all(writes)) {
      expect(r).toEqual({ status: 200, body: { lba: expect.any(Number), bytes: 64 * KiB } });
    }
    expect(device.stats().requests.write.ok).toBe(4);
    expect(device.stats().bytesWritten).toBe(4 * 64 * KiB);
  });
});
