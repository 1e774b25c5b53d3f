import { describe, expect, it } from 'vitest';
import { Mediator } from '../src/mediator/mediator.js';
import {
  IDLE_TICK_MS,
  IdleClock,
  idleMs,
  THREAD_CLOCK_BYTES,
  threadClock,
} from '../src/virtio/thread-clock.js';

const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a device thread idle clock (src/virtio/thread-clock.ts)', () => {
  it('adds the stretches it is told of', () => {
    const buffer = threadClock();
    expect(buffer.byteLength).toBe(THREAD_CLOCK_BYTES);
    expect(idleMs(buffer)).toBe(0);
    const clock = new IdleClock(buffer);
    clock.addSince(10, 12.5);
    clock.addSince(100, 101);
    expect(idleMs(buffer)).toBe(3.5);
  });

  it('reads as NaN what is no number of milliseconds (the device side wrote it)', () => {
    const buffer = threadClock();
    const word = new Float64Array(buffer);
    for (const v of [Number.NaN, -0.5, Number.POSITIVE_INFINITY]) {
      word[0] = v;
      expect(idleMs(buffer)).toBeNaN();
    }
  });

  it('counts the time a device thread with nothing to do polls and sleeps', async () => {
    const m = new Mediator({
      mode: 'bounce',
      copy: { workers: 0 },
      pools: [{ name: 'p', size: 8 * MiB, areas: 1 }],
      guests: [{ name: 'g', size: 16 * MiB }],
      devices: [{ id: 'd', kind: 'ram-blk', guest: 'g', pool: 'p', capacity: MiB, depth: 4 }],
    });
    try {
      const dev = m.device('d')!;
      await dev.ready();
      expect(() => dev.deviceIdleMs(1)).toThrow(expect.objectContaining({ code: 'BLK_BAD_QUEUE' }));
      // Timed from before the write after which the measured idle stretch begins.
      const t0 = performance.now();
      await dev.write(0, 4096);
      const before = dev.deviceIdleMs();
      const s0 = performance.now();
      await sleep(100);
      const slept = performance.now() - s0;
      // Nothing to do: it polled, then slept on the doorbell. A request ends the sleep,
      // and that stretch is added when it ends: it holds our sleep (the thread had
      // finished the first write, the second came after) and lies within the whole.
      await dev.write(8, 4096);
      const idle = dev.deviceIdleMs() - before;
      const elapsed = performance.now() - t0;
      expect(idle).toBeGreaterThanOrEqual(slept * 0.99);
      expect(idle).toBeLessThanOrEqual(elapsed * 1.01);
      // With no request at all, a sleeping thread still adds its time every
      // IDLE_TICK_MS: an idle device never reads as busy.
      const quiet0 = dev.deviceIdleMs();
      const q0 = performance.now();
      await sleep(300);
      const quiet = dev.deviceIdleMs() - quiet0;
      expect(quiet).toBeGreaterThanOrEqual((performance.now() - q0) * 0.99 - 2 * IDLE_TICK_MS);
      // The device's stats (GET /v1/devices) carry the same figure, in seconds.
      expect(dev.stats().queues[0]!.idleSeconds).toBe(dev.deviceIdleMs() / 1000);
      // Scribbled by a device that lies: the host reads no figure from it. The
      // thread adds to the word every IDLE_TICK_MS meanwhile, so the lies are ones
      // that an added stretch leaves a lie (-1 became 49 ms once, in a CI run).
      const clock = new Float64Array(dev.workerData(0).clock);
      for (const lie of [-1e15, Number.NaN, Number.POSITIVE_INFINITY]) {
        clock[0] = lie;
        expect(dev.deviceIdleMs()).toBeNaN();
        expect(dev.stats().queues[0]!.idleSeconds).toBeNull();
      }
    } finally {
      await m.close();
    }
  });
});
