/**
 * Shutdown with requests waiting for pool slots: they fail at once with
 * MEDIATOR_CLOSED (503), as docs/configuration.md says, instead of holding the
 * shutdown until its timeout; what the devices hold finishes.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import type { PoolBuffer } from '../src/mediator/blk-driver.js';
import { startServer } from '../src/server/index.js';
import { expectErrorBody, OCTET, randomBytes } from './helpers/http.js';

const KiB = 1024;

describe('shutdown', () => {
  it('fails the requests waiting for slots at once, under requeue too, and finishes cleanly', async () => {
    const server = await startServer(
      parseConfig({
        mode: 'shared',
        logLevel: 'silent',
        http: { port: 0, shutdownTimeoutMs: 30_000 },
        pools: [{ name: 'p', restricted: '1MiB', backpressure: { policy: 'requeue' } }],
        devices: [{ id: 'd', kind: 'ram-blk', maxRequestBytes: '256KiB', capacity: '4MiB' }],
      }),
      { logger: false },
    );
    await server.service.started;
    const device = server.service.device('d')!;
    const { gate } = server.service.mediator.pools.get('p')!;
    // Take the pool's free slots in buffers held outside any request.
    const held: PoolBuffer[] = [];
    for (;;) {
      const before = gate.stats().requeues;
      const taken = device.allocBuffer(64 * KiB);
      const settled = await Promise.race([
        taken.then((b) => b),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 50)),
      ]);
      if (settled === undefined || gate.stats().requeues > before) {
        // Full: this one waits for slots; it fails at shutdown like the PUT.
        void taken.then((b) => b.release()).catch(() => undefined);
        break;
      }
      held.push(settled);
    }
    expect(held.length).toBeGreaterThan(0);
    const put = fetch(`${server.url}/v1/devices/d/blocks/0`, {
      method: 'PUT',
      headers: OCTET,
      body: randomBytes(64 * KiB, 1),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
    // The PUT waits for slots that only the held buffers could give back.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    expect(await server.shutdown()).toBe(true);
    // Well within the 30 s timeout: nothing waited for it (a relative bound).
    expect(performance.now() - started).toBeLessThan(30_000 / 2);
    const answer = await put;
    expect(answer.status).toBe(503);
    expectErrorBody(503, answer.body, 'MEDIATOR_CLOSED', /shutting down/);
    for (const b of held) b.release();
  }, 60_000);
});
