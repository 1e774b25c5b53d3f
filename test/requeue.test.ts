/**
 * A full pool, as Linux's virtio-blk meets it: the request is requeued
 * (BLK_STS_RESOURCE) until slots come back, never failed. The pool gate's three
 * policies by hand (requeue: per queue, rerun on a completion of that queue and
 * every BLK_MQ_RESOURCE_DELAY, no time limit; requeue-bounded: pool-wide first come
 * first served, bounded; fail: the DMA API's answer), then virtio-blk devices on
 * a pool far smaller than their load.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediatorError } from '../src/errors.js';
import { BLK_MQ_RESOURCE_DELAY_MS } from '../src/mediator/defaults.js';
import { type DeviceSpec, Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { PoolGate } from '../src/mediator/pool-gate.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import type { Logger } from '../src/util/logger.js';
import { randomBytes } from './helpers/http.js';
import { fullError, Slots } from './helpers/slots.js';

const MiB = 2 ** 20;

function recorder(): { log: Logger; warnings: { fields: object; msg: string }[] } {
  const warnings: { fields: object; msg: string }[] = [];
  const log: Logger = {
    error: () => undefined,
    warn: (fields, msg) => warnings.push({ fields, msg: msg ?? '' }),
    info: () => undefined,
    debug: () => undefined,
    child: () => log,
  };
  return { log, warnings };
}

/** Settles microtasks (promise reactions), no timers. */
const tick = () => new Promise<void>((r) => queueMicrotask(r));

afterEach(() => {
  vi.useRealTimers();
});

describe('PoolGate, policy requeue (Linux: virtio_queue_rq -> BLK_STS_RESOURCE -> blk-mq)', () => {
  const pool = () => SwiotlbPool.create({ slots: 128, areas: 1, area: 0 });

  it('a request that found the pool full runs again when a request of its queue completes', async () => {
    const slots = new Slots(0);
    const gate = new PoolGate(pool(), { policy: 'requeue' });
    let placed = false;
    const p = gate.admit(slots.request('a', 2), fullError, 'd', 'q0')!;
    void p.then(() => {
      placed = true;
    });
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 1, waiting: 1 });
    slots.free = 2;
    gate.released('q0'); // blk_mq_sched_restart(): at once
    await tick();
    expect(placed).toBe(true);
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 1, waiting: 0 });
  });

  it('a release by another queue does not run it: the BLK_MQ_RESOURCE_DELAY run does', async () => {
    vi.useFakeTimers();
    const slots = new Slots(0);
    const gate = new PoolGate(pool(), { policy: 'requeue' });
    let placed = false;
    void gate.admit(slots.request('a', 2), fullError, 'd', 'q0')!.then(() => {
      placed = true;
    });
    // The first failure reruns the queue at once (SCHED_RESTART not set yet).
    await vi.advanceTimersByTimeAsync(0);
    expect(slots.tries.get('a')).toBe(2);
    slots.free = 2;
    gate.released('q1');
    await tick();
    expect(placed).toBe(false);
    expect(slots.tries.get('a')).toBe(2);
    await vi.advanceTimersByTimeAsync(BLK_MQ_RESOURCE_DELAY_MS - 1);
    expect(placed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(placed).toBe(true);
    expect(slots.tries.get('a')).toBe(3);
  });

  it('keeps trying every 3 ms for as long as it takes: no time limit', async () => {
    vi.useFakeTimers();
    const slots = new Slots(0);
    const gate = new PoolGate(pool(), { policy: 'requeue' });
    expect(gate.waitMs).toBeNull();
    let placed = false;
    void gate.admit(slots.request('a', 1), fullError, 'd', 'q0')!.then(() => {
      placed = true;
    });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(placed).toBe(false);
    // One immediate rerun, then one run per BLK_MQ_RESOURCE_DELAY.
    expect(slots.tries.get('a')).toBe(2 + Math.floor(60_000 / BLK_MQ_RESOURCE_DELAY_MS));
    expect(gate.stats()).toMatchObject({ requeues: 1, timeouts: 0, waiting: 1 });
    slots.free = 1;
    await vi.advanceTimersByTimeAsync(BLK_MQ_RESOURCE_DELAY_MS);
    expect(placed).toBe(true);
  });

  it('a queue with requests put back takes no new one before them; another queue tries at once', async () => {
    const slots = new Slots(1);
    const gate = new PoolGate(pool(), { policy: 'requeue' });
    const order: string[] = [];
    const admit = (name: string, n: number, q: string) => {
      const p = gate.admit(slots.request(name, n), fullError, 'd', q);
      if (p === undefined) order.push(name);
      else void p.then(() => order.push(name));
    };
    admit('big', 4, 'q0'); // does not fit: requeued
    admit('small', 1, 'q0'); // q0 has a request put back: waits behind it, untried
    expect(slots.tries.get('small')).toBeUndefined();
    admit('other', 1, 'q1'); // another hardware queue: dispatched at once
    expect(order).toEqual(['other']);
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 2, waiting: 2 });
    slots.free = 5;
    gate.released('q0');
    await tick();
    expect(order).toEqual(['other', 'big', 'small']);
    expect(gate.stats().waiting).toBe(0);
  });

  it('logs the kernel\'s "swiotlb buffer is full" once per burst, saying the request is requeued', () => {
    const { log, warnings } = recorder();
    const gate = new PoolGate(
      pool(),
      { policy: 'requeue' },
      { log, pool: 'p', intervalMs: 60_000 },
    );
    const slots = new Slots(0);
    const ignore = () => undefined;
    gate.admit(slots.request('a', 1), fullError, 'd', 'q0')?.catch(ignore);
    gate.admit(slots.request('b', 1), fullError, 'd', 'q1')?.catch(ignore);
    expect(gate.stats().requeues).toBe(2);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.fields).toMatchObject({ pool: 'p', device: 'd', policy: 'requeue' });
    expect(warnings[0]!.msg).toBe(
      'swiotlb buffer is full (sz: 4096 bytes); the request is requeued (BLK_STS_RESOURCE) until slots come back',
    );
    gate.rejectAll(new MediatorError('MEDIATOR_CLOSED', 'closing'));
  });

  it('rejectAll fails every request put back and stops their runs', async () => {
    vi.useFakeTimers();
    const slots = new Slots(0);
    const gate = new PoolGate(pool(), { policy: 'requeue' });
    const codes: string[] = [];
    for (const q of ['q0', 'q0', 'q1']) {
      void gate.admit(slots.request(q, 1), fullError, 'd', q)!.catch((e: MediatorError) => {
        codes.push(e.code);
      });
    }
    gate.rejectAll(new MediatorError('MEDIATOR_CLOSED', 'closing'));
    await vi.advanceTimersByTimeAsync(100);
    expect(codes).toEqual(['MEDIATOR_CLOSED', 'MEDIATOR_CLOSED', 'MEDIATOR_CLOSED']);
    expect(gate.stats().waiting).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('PoolGate, policies requeue-bounded and fail', () => {
  const pool = () => SwiotlbPool.create({ slots: 128, areas: 1, area: 0 });

  it('requeue-bounded (old name "wait"): one line for the pool, retried on any release, bounded', async () => {
    vi.useFakeTimers();
    const gate = new PoolGate(pool(), { policy: 'wait', waitMs: 100 });
    expect(gate.policy).toBe('requeue-bounded');
    const slots = new Slots(0);
    const order: string[] = [];
    const codes: string[] = [];
    const admit = (name: string, n: number, q: string) =>
      void gate.admit(slots.request(name, n), fullError, 'd', q)!.then(
        () => order.push(name),
        (e: MediatorError) => codes.push(e.code),
      );
    admit('a', 2, 'q0');
    admit('b', 1, 'q1'); // behind a, though on another queue, untried
    expect(slots.tries.get('b')).toBeUndefined();
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 2 });
    slots.free = 3;
    gate.released(); // any release lets the line in
    await tick();
    expect(order).toEqual(['a', 'b']);
    admit('c', 9, 'q0');
    await vi.advanceTimersByTimeAsync(100);
    expect(codes).toEqual(['MEDIATOR_BACKPRESSURE_TIMEOUT']);
    expect(gate.stats()).toMatchObject({ requeues: 2, timeouts: 1, waiting: 0 });
  });

  it("fail: the DMA API's answer, the request fails at once with the kernel's message", async () => {
    const p = pool();
    const gate = new PoolGate(p, { policy: 'fail' });
    expect(gate.waitMs).toBeNull();
    const slots = new Slots(0);
    await expect(gate.admit(slots.request('a', 1), fullError, 'd', 'q0')).rejects.toMatchObject({
      code: 'SWIOTLB_POOL_FULL',
    });
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 0, waiting: 0 });
    expect(p.stats().map_failures.full).toBe(1);
  });
});

describe('virtio-blk on a pool far smaller than its load, policy requeue', () => {
  function spec(devices: Partial<DeviceSpec>[], slots: number): MediatorSpec {
    return {
      mode: 'bounce',
      copy: { workers: 0 },
      pools: [{ name: 'p0', slots, areas: 2, backpressure: { policy: 'requeue' } }],
      guests: [{ name: 'g0', size: 64 * MiB }],
      devices: devices.map((d, i) => ({
        id: `d${i}`,
        kind: 'ram-blk',
        guest: 'g0',
        pool: 'p0',
        capacity: 8 * MiB,
        ...d,
      })),
    };
  }

  it('completes every request, with requeues and no error, and the data reads back', async () => {
    // Two devices of two queues each, 32 deep, 64 KiB requests: 128 requests of
    // 34 slots in flight would take 4352 slots; the pool has 256 (queues included).
    const m = new Mediator(
      spec(
        [
          { queues: 2, depth: 32, maxRequestBytes: 64 * 1024 },
          { queues: 2, depth: 32, maxRequestBytes: 64 * 1024 },
        ],
        256,
      ),
    );
    try {
      const devs = [m.device('d0')!, m.device('d1')!];
      await Promise.all(devs.map((d) => d.ready()));
      const writes = await Promise.allSettled(
        devs.flatMap((d, k) =>
          Array.from({ length: 64 }, (_, i) =>
            d.write(i * 128, randomBytes(64 * 1024, i + k * 100)),
          ),
        ),
      );
      expect(writes.filter((r) => r.status === 'rejected')).toEqual([]);
      const reads = await Promise.allSettled(
        devs.flatMap((d) => Array.from({ length: 64 }, (_, i) => d.read(i * 128, 64 * 1024))),
      );
      expect(reads.filter((r) => r.status === 'rejected')).toEqual([]);
      reads.forEach((r, j) => {
        const k = Math.floor(j / 64);
        const i = j % 64;
        const got = (r as PromiseFulfilledResult<Buffer | undefined>).value!;
        expect(Buffer.compare(got, randomBytes(64 * 1024, i + k * 100))).toBe(0);
      });
      const { gate, pool } = m.pools.get('p0')!;
      const s = gate.stats();
      expect(s.requeues).toBeGreaterThan(0);
      expect(s.waits).toBeGreaterThanOrEqual(s.requeues);
      expect(s).toMatchObject({ timeouts: 0, waiting: 0 });
      // Nothing failed at the DMA API either: a requeue is not a map failure.
      expect(pool.stats().map_failures.full).toBe(0);
    } finally {
      await m.close();
    }
  });

  it('close() ends a request that can never fit (the kernel would retry it for ever): MEDIATOR_CLOSED', async () => {
    // 256 slots, the queue's ring and more: a 512 KiB write needs 256 slots of its own.
    const m = new Mediator(spec([{ queues: 1, depth: 2, maxRequestBytes: 512 * 1024 }], 256));
    const dev = m.device('d0')!;
    await dev.ready();
    const write = dev.write(0, randomBytes(512 * 1024, 1)).then(
      () => 'written',
      (e: MediatorError) => e.code,
    );
    // Requeued (found the pool full), and retried every 3 ms without end.
    await vi.waitFor(() => expect(m.pools.get('p0')!.gate.stats().requeues).toBeGreaterThan(0));
    await m.close();
    expect(await write).toBe('MEDIATOR_CLOSED');
    // Nothing of it stayed in the pool.
    expect(m.pools.get('p0')!.pool.used()).toBe(0);
  }, 10_000);
});
