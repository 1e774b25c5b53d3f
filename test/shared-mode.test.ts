/**
 * Shared mode: the driver allocates each request's buffers in the pool, as a
 * driver allocating from a restricted DMA pool does; nothing is bounced. The
 * device can see and change those buffers while a request is in flight, so what
 * the driver hands back is copied out of the pool once, and a device changing the
 * pool afterwards cannot change it.
 */
import { connect } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { isMediatorError } from '../src/errors.js';
import { createBatch } from '../src/mediator/dma.js';
import { Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { SharedDma } from '../src/mediator/shared-dma.js';
import { type RunningServer, startServer } from '../src/server/index.js';
import { DmaDirection as D, type DmaDirection } from '../src/swiotlb/constants.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { expectErrorBody, OCTET, randomBytes } from './helpers/http.js';

const MiB = 2 ** 20;

function spec(extra: Partial<MediatorSpec['devices'][number]> = {}): MediatorSpec {
  return {
    mode: 'shared',
    copy: { workers: 0 },
    pools: [{ name: 'p', size: 4 * MiB, areas: 2, backpressure: { policy: 'wait', waitMs: 5000 } }],
    guests: [{ name: 'g', size: 1 * MiB }],
    devices: [
      {
        id: 'd',
        kind: 'ram-blk',
        guest: 'g',
        pool: 'p',
        capacity: 8 * MiB,
        depth: 16,
        maxRequestBytes: 512 * 1024,
        ...extra,
      },
    ],
  };
}

async function withMediator<T>(s: MediatorSpec, fn: (m: Mediator) => Promise<T>): Promise<T> {
  const m = new Mediator(s);
  try {
    await Promise.all([...m.devices.values()].map((d) => d.ready()));
    return await fn(m);
  } finally {
    await m.close();
  }
}

describe('shared mode', () => {
  it('the device thread sees the pool, and request data is allocated there, not in guest memory', async () => {
    await withMediator(spec(), async (m) => {
      const dev = m.device('d')!;
      const pool = m.pools.get('p')!.pool;
      expect(dev.workerData(0).memory).toBe(pool.share().data);
      // Guest memory holds nothing of the device's: no headers, no data buffers.
      expect(m.guests.get('g')!.memory.reservedBytes).toBe(0);
      const idle = pool.used();
      const data = randomBytes(300 * 1024, 5);
      await dev.write(64, data);
      // The payload is in the pool (where the device read it), in the pool's bytes.
      expect(Buffer.from(pool.share().data).indexOf(data.subarray(0, 4096))).toBeGreaterThanOrEqual(
        0,
      );
      const back = await dev.read(64, data.length);
      expect(back!.equals(data)).toBe(true);
      // Every request's buffers were freed: only the queue and its headers stay.
      expect(pool.used()).toBe(idle);
      expect(m.engine.stats().byWriter.reduce((s, w) => s + w.bytes, 0)).toBe(0);
    });
  });

  it('buffers are placed as swiotlb_alloc() places them (6.10): aligned to their page order', () => {
    const pool = SwiotlbPool.create({ slots: 4096, areas: 1 });
    const dma = new SharedDma(pool, { minAlignMask: 0, area: 0, owner: 0 });
    // A 2 KiB buffer first, so that an unaligned search would find slot 1.
    const small = dma.allocate(512);
    expect(small).toBe(0);
    for (const [size, align] of [
      [4096, 4096],
      [4097, 8192],
      [64 * 1024, 64 * 1024],
      [256 * 1024, 256 * 1024],
    ] as const) {
      const addr = dma.allocate(size);
      expect(addr, `${size} bytes`).toBeGreaterThan(0);
      expect(addr % align, `${size} bytes at 0x${addr.toString(16)}`).toBe(0);
      expect(dma.allocBytes(size)).toBe(Math.ceil(size / 4096) * 4096);
      dma.free(addr, size);
    }
    dma.free(small, 512);
    expect(pool.used()).toBe(0);
  });

  it('in a warm pool, read and write buffers alike take the run freed last', () => {
    const pool = SwiotlbPool.create({ slots: 4096, areas: 1, placement: 'warm' });
    const dma = new SharedDma(pool, { minAlignMask: 0, area: 0, owner: 0 });
    // A 64 KiB buffer at 0, freed: warm hands it out again.
    const first = dma.allocate(65536);
    expect(first).toBe(0);
    dma.free(first, 65536);
    const batch = (dir: DmaDirection) => {
      const b = createBatch(1);
      b.addrs[0] = -1;
      b.sizes[0] = 65536;
      b.dirs[0] = dir;
      return b;
    };
    const read = batch(D.FROM_DEVICE);
    expect(dma.tryPlace(1, read)).toBe(true);
    expect(read.out[0]).toBe(0);
    // The freed run is taken: the next one comes from the kernel's search, past it.
    const write = batch(D.TO_DEVICE);
    expect(dma.tryPlace(1, write)).toBe(true);
    expect(write.out[0]).toBe(0x10000);
    dma.release(1, read);
    dma.release(1, write);
    // Freed in that order, the write's run is the newest: a read takes it first.
    const again = batch(D.FROM_DEVICE);
    expect(dma.tryPlace(1, again)).toBe(true);
    expect(again.out[0]).toBe(0x10000);
    dma.release(1, again);
    expect(pool.used()).toBe(0);
  });

  it('a device changing the pool after completion cannot change what the caller got (the data was copied out)', async () => {
    await withMediator(spec(), async (m) => {
      const dev = m.device('d')!;
      const poolBytes = new Uint8Array(m.pools.get('p')!.pool.share().data);
      const data = randomBytes(64 * 1024, 9);
      await dev.write(0, data);
      const back = await Promise.all(Array.from({ length: 8 }, () => dev.read(0, data.length)));
      // What a hostile device does once the requests completed: rewrite every
      // byte it can see (the data the guest read included).
      poolBytes.fill(0x5a);
      for (const b of back) expect(b!.equals(data)).toBe(true);
      const id = await dev.getId().catch((e: unknown) => e);
      // The device's queue was scribbled over too: whatever it answers, the id is
      // either a clean failure or a string parsed from one private copy.
      if (typeof id !== 'string') expect(isMediatorError(id)).toBe(true);
    });
  });

  it('a pool buffer filled before the write (an HTTP body read straight into the pool)', async () => {
    await withMediator(spec(), async (m) => {
      const dev = m.device('d')!;
      const pool = m.pools.get('p')!.pool;
      const idle = pool.used();
      const data = randomBytes(300 * 1024, 11);
      const buf = await dev.allocBuffer(data.length);
      expect(pool.used()).toBeGreaterThan(idle);
      // Chunks of odd sizes, across the 256 KiB segment boundary.
      for (let at = 0; at < data.length; at += 10_000) {
        buf.write(data.subarray(at, Math.min(data.length, at + 10_000)), at);
      }
      await dev.writeBuffer(128, buf);
      expect(pool.used()).toBe(idle);
      expect((await dev.read(128, data.length))!.equals(data)).toBe(true);
      // A buffer is written once; after that it is gone.
      await expect(dev.writeBuffer(128, buf)).rejects.toMatchObject({
        code: 'MEDIATOR_BAD_CONFIG',
      });
      expect(() => buf.write(data.subarray(0, 512), 0)).toThrow();
      // A buffer given up is freed, once.
      const dropped = await dev.allocBuffer(4096);
      dropped.release();
      dropped.release();
      expect(pool.used()).toBe(idle);
      // A failed write frees its buffer too.
      const past = await dev.allocBuffer(4096);
      await expect(dev.writeBuffer(dev.capacity / 512, past)).rejects.toMatchObject({
        code: 'MEDIATOR_IO_ERROR',
      });
      expect(pool.used()).toBe(idle);
    });
  });

  it('a pool buffer is written by the device that allocated it, and a refused one is freed', async () => {
    const s = spec();
    s.pools.push({ ...s.pools[0]!, name: 'q' });
    s.devices.push({ ...s.devices[0]!, id: 'e', pool: 'q' });
    await withMediator(s, async (m) => {
      const [d, e] = [m.device('d')!, m.device('e')!];
      const [p, q] = [m.pools.get('p')!.pool, m.pools.get('q')!.pool];
      const idle = [p.used(), q.used()];
      const buf = await d.allocBuffer(8192);
      buf.write(randomBytes(8192, 5), 0);
      // Before, e took it over and failed placing it (its addresses are not in
      // e's pool), and the buffer, marked taken, was never freed from d's pool.
      await expect(e.writeBuffer(0, buf)).rejects.toMatchObject({ code: 'MEDIATOR_BAD_CONFIG' });
      expect([p.used(), q.used()]).toEqual(idle);
      expect(m.pools.get('p')!.gate.stats().waiting).toBe(0);
    });
  });

  it('pool buffers wait at the back-pressure gate when the pool is full, and fit what the pool can hold', async () => {
    const s = spec();
    s.pools[0]!.size = 1 * MiB;
    await withMediator(s, async (m) => {
      const dev = m.device('d')!;
      const held = await Promise.all(Array.from({ length: 3 }, () => dev.allocBuffer(256 * 1024)));
      const late = dev.allocBuffer(256 * 1024);
      let got = false;
      void late.then(() => {
        got = true;
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(got).toBe(false);
      expect(m.pools.get('p')!.gate.stats().waiting).toBe(1);
      held[0]!.release();
      (await late).release();
      for (const b of held) b.release();
      expect(m.pools.get('p')!.gate.stats().waiting).toBe(0);
    });
  });

  it('pool buffers exist in shared mode only; lengths are checked', async () => {
    const bounce = spec();
    bounce.mode = 'bounce';
    bounce.guests[0]!.size = 16 * MiB;
    await withMediator(bounce, async (m) => {
      await expect(m.device('d')!.allocBuffer(4096)).rejects.toMatchObject({
        code: 'MEDIATOR_BAD_CONFIG',
      });
    });
    await withMediator(spec(), async (m) => {
      const dev = m.device('d')!;
      await expect(dev.allocBuffer(0)).rejects.toMatchObject({ code: 'BLK_BAD_LENGTH' });
      await expect(dev.allocBuffer(1000)).rejects.toMatchObject({ code: 'BLK_BAD_LENGTH' });
      await expect(dev.allocBuffer(1024 * 1024)).rejects.toMatchObject({
        code: 'MEDIATOR_REQUEST_TOO_LARGE',
      });
    });
  });

  it('a hostile device: every request ends, the pool comes back, guest memory is never handed over', async () => {
    const s = spec({
      kind: 'chaos',
      chaos: { seed: 5 },
      timeoutMs: 100,
      maxRequestBytes: 64 * 1024,
    });
    await withMediator(s, async (m) => {
      const dev = m.device('d')!;
      const pool = m.pools.get('p')!.pool;
      const outcomes = new Map<string, number>();
      await Promise.all(
        Array.from({ length: 8 }, async (_, k) => {
          for (let i = 0; i < 40; i++) {
            const size = 512 * (1 + ((i * 7 + k) % 64));
            try {
              if (i % 2) await dev.write(k * 1024 + i, randomBytes(size, i));
              else await dev.read(k * 1024 + i, size);
              outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
            } catch (err) {
              expect(isMediatorError(err), String(err)).toBe(true);
              const code = (err as { code: string }).code;
              outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
            }
          }
        }),
      );
      expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(320);
      expect(outcomes.get('MEDIATOR_DEVICE_FAULT') ?? 0).toBeGreaterThan(0);
      await dev.reset();
      // Queue and header memory only.
      expect(pool.used()).toBeLessThanOrEqual(8);
      expect(dev.workerData(0).memory).toBe(pool.share().data);
    });
  }, 60_000);
});

describe('shared mode over HTTP: bodies read straight into the pool', () => {
  async function withServer(fn: (s: RunningServer) => Promise<void>): Promise<void> {
    const config = parseConfig({
      mode: 'shared',
      logLevel: 'silent',
      http: { port: 0, bodyLimit: '256KiB' },
      pools: [{ name: 'p', size: '2MiB', areas: 1 }],
      devices: [{ id: 'ram', kind: 'ram-blk', capacity: '8MiB', maxRequestBytes: '128KiB' }],
    });
    const server = await startServer(config);
    try {
      await server.service.started;
      await fn(server);
    } finally {
      await server.shutdown();
    }
  }
  const used = (s: RunningServer) => s.service.mediator.pools.get('p')!.pool.used();

  it('PUT then GET: the data round-trips, and every pool buffer is freed after each answer', async () => {
    await withServer(async (s) => {
      const idle = used(s);
      const data = randomBytes(96 * 1024, 21);
      const put = await fetch(`${s.url}/v1/devices/ram/blocks/64`, {
        method: 'PUT',
        headers: OCTET,
        body: data,
      });
      expect(put.status).toBe(200);
      expect(await put.json()).toEqual({ lba: 64, bytes: data.length });
      expect(used(s)).toBe(idle);
      const get = await fetch(`${s.url}/v1/devices/ram/blocks/64?count=${data.length / 512}`);
      expect(Buffer.from(await get.arrayBuffer()).equals(data)).toBe(true);
      expect(used(s)).toBe(idle);
    });
  });

  it('a body refused by its Content-Length takes no pool slot; one cut short frees its buffers', async () => {
    await withServer(async (s) => {
      const idle = used(s);
      const odd = await fetch(`${s.url}/v1/devices/ram/blocks/0`, {
        method: 'PUT',
        headers: OCTET,
        body: randomBytes(1000, 1),
      });
      expect(odd.status).toBe(400);
      expectErrorBody(400, await odd.json(), 'HTTP_BAD_BODY', /1000 bytes/);
      const past = await fetch(`${s.url}/v1/devices/ram/blocks/${8 * 2048 - 1}`, {
        method: 'PUT',
        headers: OCTET,
        body: randomBytes(4096, 1),
      });
      expect(past.status).toBe(416);
      const big = await fetch(`${s.url}/v1/devices/ram/blocks/0`, {
        method: 'PUT',
        headers: OCTET,
        body: randomBytes(512 * 1024, 1),
      });
      expect(big.status).toBe(413);
      expect(used(s)).toBe(idle);
      // Half a body, then the client goes away.
      const { port } = new URL(s.url);
      const sock = connect(Number(port), '127.0.0.1');
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(
        'PUT /v1/devices/ram/blocks/0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n',
      );
      sock.write(randomBytes(10_000, 3));
      await vi.waitFor(() => expect(used(s)).toBeGreaterThan(idle), { timeout: 5000 });
      sock.destroy();
      await vi.waitFor(() => expect(used(s)).toBe(idle), { timeout: 5000 });
    });
  });

  it('a chunked body (no Content-Length) is collected and written as in the other modes', async () => {
    await withServer(async (s) => {
      const data = randomBytes(8192, 4);
      const body = new ReadableStream({
        start(c) {
          c.enqueue(data.subarray(0, 3000));
          c.enqueue(data.subarray(3000));
          c.close();
        },
      });
      const put = await fetch(`${s.url}/v1/devices/ram/blocks/8`, {
        method: 'PUT',
        headers: OCTET,
        body,
        duplex: 'half',
      } as RequestInit);
      expect(put.status).toBe(200);
      const get = await fetch(`${s.url}/v1/devices/ram/blocks/8?count=16`);
      expect(Buffer.from(await get.arrayBuffer()).equals(data)).toBe(true);
    });
  });
});
