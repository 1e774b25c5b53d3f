/**
 * The trust audit's tests: what the guest side takes from a device thread (the
 * pool, the rings, the status byte, the thread's messages) is hostile. Each test
 * is a defect the audit found, and fails without its fix.
 */
import type { Worker } from 'node:worker_threads';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type DeviceSpec, Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { NO_FAULTS } from './helpers/chaos.js';
import { logCapture } from './helpers/http.js';

const MiB = 2 ** 20;

/** The device thread of `queue` (private to the driver: a test looks it up). */
function deviceThread(m: Mediator, device: string, queue = 0): Worker {
  const d = m.device(device) as unknown as { queues: { worker: Worker | undefined }[] };
  const worker = d.queues[queue]!.worker;
  if (worker === undefined) throw new Error(`device ${device} queue ${queue} has no thread`);
  return worker;
}

/**
 * One device `d` (ram-blk unless `device` says otherwise) on a 4 MiB pool and a
 * 16 MiB guest, in bounce mode with inline copies: what every test here needs.
 */
function oneDevice(
  device: Partial<DeviceSpec> = {},
  spec: Partial<MediatorSpec> = {},
): MediatorSpec {
  return {
    mode: 'bounce',
    copy: { workers: 0 },
    pools: [{ name: 'p', size: 4 * MiB, areas: 1 }],
    guests: [{ name: 'g', size: 16 * MiB }],
    devices: [
      { id: 'd', kind: 'ram-blk', guest: 'g', pool: 'p', capacity: 4 * MiB, depth: 4, ...device },
    ],
    ...spec,
  };
}

describe("a device thread's messages", () => {
  it("a thread that drops a request and says 'ready' again and again cannot keep it from timing out", async () => {
    // The 'ready' post restarts the clock of every request in flight (requests
    // queued while a thread starts are timed from when it serves). Heard each
    // time, a device that never completes a request and posts 'ready' within each
    // timeout would hold that request, and close() behind it, for ever.
    const timeoutMs = 200;
    const s = oneDevice({
      kind: 'chaos',
      maxRequestBytes: 64 * 1024,
      timeoutMs,
      // Takes every request, completes none.
      chaos: { ...NO_FAULTS, seed: 11, drop: 1 },
    });
    const m = new Mediator(s);
    try {
      const dev = m.device('d')!;
      await dev.ready();
      const thread = deviceThread(m, 'd');
      let outcome: string | undefined;
      void dev.read(0, 4096).then(
        () => {
          outcome = 'ok';
        },
        (err: { code?: string }) => {
          outcome = err.code ?? String(err);
        },
      );
      // What the thread's parentPort.postMessage({ type: 'ready' }) delivers, four
      // times per timeout, for up to 50 timeouts (the sweep runs four times per
      // timeout: the request is due after one).
      for (let k = 0; k < 200 && outcome === undefined; k++) {
        thread.emit('message', { type: 'ready' });
        await new Promise((resolve) => setTimeout(resolve, timeoutMs / 4));
      }
      expect(outcome).toBe('MEDIATOR_DEVICE_TIMEOUT');
      expect(dev.stats().faults.timeout).toBe(1);
    } finally {
      await m.close();
    }
  }, 30_000);

  it('a thread that throws something other than an Error (`throw null`) is reset; the process goes on', async () => {
    // Node's 'error' event hands over what the thread threw as it threw it (a
    // worker's `throw null` arrives as null). The death handler read its message
    // as an Error's and threw, out of the event: an uncaught exception that ends
    // the process, every device and guest with it.
    const m = new Mediator(oneDevice());
    try {
      const dev = m.device('d')!;
      await dev.ready();
      const thread = deviceThread(m, 'd');
      for (const thrown of [null, undefined]) {
        // What the thread's uncaught `throw null` delivers.
        expect(() => thread.emit('error', thrown)).not.toThrow();
      }
      // The thread is taken for dead: the device is reset once, and serves again.
      await dev.reset();
      expect(dev.stats().resets).toBe(1);
      expect(deviceThread(m, 'd')).not.toBe(thread);
      const data = Buffer.alloc(4096, 0x6b);
      await dev.write(8, data);
      expect((await dev.read(8, data.length))!.equals(data)).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('a thread that never says it serves fails the requests it holds once readyTimeoutMs has passed, and close() ends', async () => {
    // Requests queued while a thread starts are timed from its first 'ready'
    // (device-thread.ts); the sweep skipped a queue whose thread had not said it,
    // so a backend that hung while it set up held them, and close() behind them,
    // for ever.
    const m = new Mediator(
      oneDevice({
        kind: 'chaos',
        timeoutMs: 100,
        readyTimeoutMs: 400,
        chaos: { ...NO_FAULTS, silent: true },
      }),
    );
    let closed = false;
    try {
      const dev = m.device('d')!;
      const err = await dev.read(0, 4096).then(
        () => undefined,
        (e: { code?: string; message?: string }) => e,
      );
      expect(err?.code).toBe('MEDIATOR_DEVICE_TIMEOUT');
      expect(err?.message).toMatch(/has not started serving 400 ms after its start/);
      expect(dev.stats().faults.timeout).toBe(1);
      await m.close();
      closed = true;
    } finally {
      if (!closed) await m.close();
    }
  }, 30_000);

  it("a thread's error of a megabyte is logged cut, not whole", async () => {
    // The thread's message and stack are its own words: logged whole, one uncaught
    // throw could write megabytes into the service's log.
    const log = logCapture();
    const m = new Mediator(oneDevice({}, { log: pino({ level: 'warn' }, log.stream) }));
    try {
      const dev = m.device('d')!;
      await dev.ready();
      deviceThread(m, 'd').emit('error', new Error('x'.repeat(2 ** 20)));
      await dev.reset();
      const failed = log.lines().find((l) => String(l.msg).includes('failed'));
      expect(failed?.msg).toMatch(
        /^device thread of queue 0 failed: the device thread threw: x+ \(cut to 200 characters\)$/,
      );
      expect(JSON.stringify(failed).length).toBeLessThan(2000);
    } finally {
      await m.close();
    }
  });
});
