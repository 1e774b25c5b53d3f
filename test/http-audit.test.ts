/**
 * The HTTP surface against RFC 9110: 405 with Allow for a method a path does not
 * take, HEAD on a block read without a device read, Cache-Control on live
 * answers, unknown query parameters of a block read. In process (inject), and
 * one real socket for HEAD's framing.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { buildServer, type RunningServer, Service, startServer } from '../src/server/index.js';
import { expectErrorBody, JSON_TYPE, OCTET } from './helpers/http.js';

const config = () =>
  parseConfig({
    logLevel: 'silent',
    http: { port: 0, host: '127.0.0.1', retryAfterSeconds: 3 },
    copy: { workers: 0 },
    pools: [{ size: '1MiB', areas: 1 }],
    devices: [{ id: 'ram', kind: 'ram-blk', capacity: '1MiB', maxRequestBytes: '64KiB' }],
  });

describe('the HTTP surface (RFC 9110)', () => {
  let service: Service;
  let app: ReturnType<typeof buildServer>;

  beforeAll(async () => {
    service = new Service(config());
    app = buildServer(service);
    await service.started;
  });

  afterAll(async () => {
    await app.close();
    await service.close();
  });

  it('a method a path does not take: 405 with Allow (§15.5.6), in the error format', async () => {
    const cases: [string, string, string][] = [
      ['DELETE', '/v1/devices/ram/blocks/0', 'GET, HEAD, PUT'],
      ['POST', '/v1/devices/ram/blocks/0?count=2', 'GET, HEAD, PUT'],
      ['PATCH', '/v1/devices', 'GET, HEAD'],
      ['GET', '/v1/devices/ram/flush', 'POST'],
      ['PUT', '/v1/devices/ram/io', 'POST'],
      ['GET', '/v1/pool/hiwater/reset', 'POST'],
      ['DELETE', '/metrics', 'GET, HEAD'],
      ['OPTIONS', '/healthz', 'GET, HEAD'],
      // A device that does not exist: the path is still one of the API's.
      ['DELETE', '/v1/devices/nope/blocks/0', 'GET, HEAD, PUT'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await app.inject({ method: method as 'GET', url });
      expect(res.statusCode, `${method} ${url}`).toBe(405);
      expect(res.headers.allow, `${method} ${url}`).toBe(allow);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expectErrorBody(405, res.json(), 'HTTP_METHOD_NOT_ALLOWED', new RegExp(`^${method} `));
    }
    // A path of no route stays 404, with no Allow.
    for (const url of ['/v2/whatever', '/v1/devices/ram/blocks/0/extra', '/healthz/']) {
      const res = await app.inject({ method: 'DELETE', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.headers.allow).toBeUndefined();
      expectErrorBody(404, res.json(), 'HTTP_NOT_FOUND');
    }
  });

  it('HEAD of a block read: the headers of the GET, no device read (§9.3.2)', async () => {
    const device = service.device('ram')!;
    const before = device.stats();
    const head = await app.inject({ method: 'HEAD', url: '/v1/devices/ram/blocks/8?count=4' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-type']).toBe('application/octet-stream');
    expect(head.headers['content-length']).toBe('2048');
    expect(head.rawPayload.length).toBe(0);
    const after = device.stats();
    expect(after.requests.read).toEqual(before.requests.read);
    expect(after.bytesRead).toBe(before.bytesRead);
    // The GET's answer has the same headers.
    const get = await app.inject({ method: 'GET', url: '/v1/devices/ram/blocks/8?count=4' });
    expect(get.headers['content-type']).toBe(head.headers['content-type']);
    expect(get.headers['content-length']).toBe(head.headers['content-length']);
    expect(device.stats().requests.read.ok).toBe(before.requests.read.ok + 1);
  });

  it('HEAD of a block read answers the status the GET would, still without reading', async () => {
    const device = service.device('ram')!;
    const before = device.stats().requests.read;
    const cases: [string, number, string, Record<string, string>][] = [
      [
        '/v1/devices/ram/blocks/2048',
        416,
        'HTTP_OUT_OF_RANGE',
        { 'content-range': 'bytes */1048576' },
      ],
      ['/v1/devices/ram/blocks/x', 400, 'HTTP_INVALID_PARAMETER', {}],
      ['/v1/devices/ram/blocks/0?count=0', 400, 'HTTP_INVALID_PARAMETER', {}],
      ['/v1/devices/nope/blocks/0', 404, 'HTTP_UNKNOWN_DEVICE', {}],
      ['/v1/devices/ram/blocks/0?count=129', 413, 'MEDIATOR_REQUEST_TOO_LARGE', {}],
    ];
    for (const [url, status, code, headers] of cases) {
      const get = await app.inject({ method: 'GET', url });
      expect(get.statusCode, url).toBe(status);
      expectErrorBody(status, get.json(), code);
      const head = await app.inject({ method: 'HEAD', url });
      expect(head.statusCode, url).toBe(status);
      expect(head.rawPayload.length).toBe(0);
      expect(head.headers['content-length']).toBe(get.headers['content-length']);
      for (const [name, value] of Object.entries(headers)) expect(head.headers[name]).toBe(value);
    }
    expect(device.stats().requests.read).toEqual(before);
  });

  it('Cache-Control: no-store on the live answers, errors included; no-cache on the status page', async () => {
    for (const url of [
      '/v1/devices',
      '/v1/devices/ram',
      '/v1/pools',
      '/v1/pool',
      '/v1/pool/slots',
      '/v1/copy',
      '/metrics',
      '/healthz',
      '/readyz',
      '/v1/devices/ram/blocks/0',
      '/v1/devices/ram/blocks/99999',
      '/v2/nothing',
    ]) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await app.inject({ method, url });
        expect(res.headers['cache-control'], `${method} ${url}`).toBe('no-store');
      }
    }
    const io = await app.inject({
      method: 'POST',
      url: '/v1/devices/ram/io',
      headers: JSON_TYPE,
      payload: { op: 'read', size: 512 },
    });
    expect(io.statusCode).toBe(200);
    expect(io.headers['cache-control']).toBe('no-store');
    const page = await app.inject({ method: 'GET', url: '/' });
    expect(page.headers['cache-control']).toBe('no-cache');
  });

  it('a block read with a query parameter other than count: 400, nothing read', async () => {
    const device = service.device('ram')!;
    const before = device.stats().requests.read;
    for (const query of ['?cnt=8', '?count=2&x=1', '?Count=2']) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await app.inject({ method, url: `/v1/devices/ram/blocks/0${query}` });
        expect(res.statusCode, `${method} ${query}`).toBe(400);
        if (method === 'GET') {
          expectErrorBody(400, res.json(), 'HTTP_INVALID_PARAMETER', /unknown query parameter/);
        }
      }
    }
    expect(device.stats().requests.read).toEqual(before);
    // count alone, and no query at all, still read.
    const ok = await app.inject({ method: 'GET', url: '/v1/devices/ram/blocks/0?count=2' });
    expect(ok.rawPayload.length).toBe(1024);
  });

  it('a block write is unaffected by the HEAD route (PUT still takes octet-stream only)', async () => {
    const put = await app.inject({
      method: 'PUT',
      url: '/v1/devices/ram/blocks/0',
      headers: OCTET,
      payload: Buffer.alloc(512, 7),
    });
    expect(put.statusCode).toBe(200);
    const text = await app.inject({
      method: 'PUT',
      url: '/v1/devices/ram/blocks/0',
      headers: { 'content-type': 'text/plain' },
      payload: 'x'.repeat(512),
    });
    expectErrorBody(415, text.json(), 'HTTP_UNSUPPORTED_MEDIA_TYPE');
  });

  it('a body-less POST ignores a JSON or text body; another type is a 415 that names it', async () => {
    for (const url of ['/v1/devices/ram/flush', '/v1/pool/hiwater/reset']) {
      const json = await app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json' },
        payload: '{}',
      });
      expect(json.statusCode, url).toBe(200);
      const xml = await app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/xml' },
        payload: '<a/>',
      });
      const body = xml.json() as { message: string };
      expectErrorBody(415, body, 'HTTP_UNSUPPORTED_MEDIA_TYPE');
      // Fastify's own message is the bare status text.
      expect(body.message).toContain('"application/xml" is not accepted here');
    }
  });
});

describe('HEAD and 405 on a real socket', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer(config(), { logger: false });
    await server.service.started;
  });

  afterAll(async () => {
    expect(await server.shutdown()).toBe(true);
  });

  const exchange = (method: string, path: string) =>
    new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>(
      (resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const req = httpRequest({ host: hostname, port, method, path }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
            }),
          );
        });
        req.on('error', reject);
        req.end();
      },
    );

  it('HEAD of a block: Content-Length of the sectors, no body, no read; 405 carries Allow', async () => {
    const device = server.service.device('ram')!;
    const before = device.stats().requests.read;
    const head = await exchange('HEAD', '/v1/devices/ram/blocks/0?count=8');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('4096');
    expect(head.headers['content-type']).toBe('application/octet-stream');
    expect(head.body.length).toBe(0);
    expect(device.stats().requests.read).toEqual(before);
    const del = await exchange('DELETE', '/v1/devices/ram/blocks/0');
    expect(del.status).toBe(405);
    expect(del.headers.allow).toBe('GET, HEAD, PUT');
    expect(Number(del.headers['content-length'])).toBe(del.body.length);
  });
});

describe('HEAD of a block read while draining', () => {
  it('503 MEDIATOR_CLOSED with Retry-After and Connection: close, as the GET', async () => {
    const service = new Service(config());
    const app = buildServer(service);
    try {
      await service.started;
      service.drain();
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await app.inject({ method, url: '/v1/devices/ram/blocks/0' });
        expect(res.statusCode, method).toBe(503);
        expect(res.headers['retry-after']).toBe('3');
        expect(res.headers.connection).toBe('close');
        expect(res.headers['cache-control']).toBe('no-store');
      }
    } finally {
      await app.close();
      await service.close();
    }
  });
});

describe('HEAD of a block read larger than its pool can ever hold', () => {
  it('413 MEDIATOR_REQUEST_TOO_LARGE as the GET, with the same message length, no read', async () => {
    const service = new Service(
      parseConfig({
        logLevel: 'silent',
        http: { port: 0 },
        // 256 slots, less the virtqueue's: 1 MiB (512 slots) never fits.
        pools: [{ name: 't', restricted: '512KiB' }],
        devices: [{ id: 'd', kind: 'ram-blk', capacity: '4MiB', maxRequestBytes: '2MiB' }],
      }),
    );
    const app = buildServer(service);
    try {
      await service.started;
      const url = '/v1/devices/d/blocks/0?count=2048';
      const get = await app.inject({ method: 'GET', url });
      expectErrorBody(413, get.json(), 'MEDIATOR_REQUEST_TOO_LARGE', /can never fit/);
      const before = service.device('d')!.stats().requests.read;
      const head = await app.inject({ method: 'HEAD', url });
      expect(head.statusCode).toBe(413);
      expect(head.headers['content-length']).toBe(get.headers['content-length']);
      expect(service.device('d')!.stats().requests.read).toEqual(before);
      // What fits: 200 with the length of the sectors.
      const fits = await app.inject({ method: 'HEAD', url: '/v1/devices/d/blocks/0?count=256' });
      expect(fits.statusCode).toBe(200);
      expect(fits.headers['content-length']).toBe(String(256 * 512));
    } finally {
      await app.close();
      await service.close();
    }
  });
});
