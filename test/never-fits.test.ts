/**
 * A request its pool could never hold: the service answers 413 at once
 * (MEDIATOR_REQUEST_TOO_LARGE), under every back-pressure policy, where Linux's
 * virtio-blk (and the Mediator API) would requeue it for ever. What fits is served.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { startServer } from '../src/server/index.js';
import { expectErrorBody } from './helpers/http.js';

const JSON_BODY = { 'content-type': 'application/json' };

describe('a request larger than its pool can hold', () => {
  it.each(['requeue', 'requeue-bounded', 'fail'] as const)(
    'is refused at once with 413 under %s; one that fits is served',
    async (policy) => {
      const server = await startServer(
        parseConfig({
          logLevel: 'silent',
          http: { port: 0 },
          // 256 slots, less the virtqueue's: a 1 MiB request (512 slots) never fits.
          pools: [{ name: 't', restricted: '512KiB', backpressure: { policy } }],
          devices: [{ id: 'd', kind: 'ram-blk', capacity: '4MiB' }],
        }),
        { logger: false },
      );
      try {
        await server.service.started;
        const io = (size: number) =>
          fetch(`${server.url}/v1/devices/d/io`, {
            method: 'POST',
            headers: JSON_BODY,
            body: JSON.stringify({ op: 'write', size }),
          }).then(async (r) => ({ status: r.status, body: await r.json() }));
        const big = await io(1024 * 1024);
        expect(big.status).toBe(413);
        expectErrorBody(413, big.body, 'MEDIATOR_REQUEST_TOO_LARGE', /can never fit/);
        // Nothing waits behind it: the device serves what fits.
        expect((await io(256 * 1024)).status).toBe(200);
        expect(server.service.mediator.pools.get('t')!.gate.stats().waiting).toBe(0);
      } finally {
        await server.shutdown();
      }
    },
  );
});
