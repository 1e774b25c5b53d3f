/**
 * What the virtqueue's two sides share, line by line: a side bumps the other's
 * notification counter (src/virtio/virtqueue-layout.ts) only when the other said
 * it waits, so that while both sides are busy neither writes the words' cache
 * line; the used ring starts on its own line, as Linux's vring_init() places it
 * with SMP_CACHE_BYTES; and a poll reads a batch's used entries in one pass,
 * before it completes any of them.
 */
import { describe, expect, it } from 'vitest';
import { DeviceQueue } from '../src/devices/device-queue.js';
import { GuestVirtqueue, type UsedSink } from '../src/mediator/driver-virtqueue.js';
import {
  layoutAt,
  NOTIFY_COMPLETION,
  NOTIFY_DEVICE_SLEEPING,
  NOTIFY_DOORBELL,
  NOTIFY_DRIVER_WAITING,
} from '../src/virtio/virtqueue-layout.js';

const LINE = 64;

function pair(size = 8) {
  const layout = layoutAt(0, size);
  const memory = new SharedArrayBuffer(layout.bytes + 4096);
  const driver = new GuestVirtqueue(memory, 0, layout);
  const device = new DeviceQueue({
    memory,
    memBase: 0,
    queue: layout, // a VirtqueueLayout is the queue part of the device's spec
  });
  const words = new Int32Array(memory, layout.notify, 16);
  return { layout, driver, device, words };
}

describe('virtqueue notification words', () => {
  it('a publish to a polling device writes no notification word; to a sleeping one it bumps the doorbell', () => {
    const { driver, words } = pair();
    const before = Int32Array.from(words);
    driver.addChain(2, [4096, 8192], [16, 1], [0, 1]);
    expect(driver.publish()).toBe(false);
    expect(Array.from(words)).toEqual(Array.from(before));
    words[NOTIFY_DEVICE_SLEEPING] = 1;
    driver.addChain(2, [4096, 8192], [16, 1], [0, 1]);
    expect(driver.publish()).toBe(true);
    expect(words[NOTIFY_DOORBELL]).toBe(before[NOTIFY_DOORBELL]! + 1);
  });

  it('a completion for a polling driver writes no notification word; for a waiting one it bumps COMPLETION', () => {
    const { driver, device, words } = pair();
    const head = driver.addChain(2, [4096, 8192], [16, 1], [0, 1]);
    driver.publish();
    const before = Int32Array.from(words);
    device.pushUsed(head, 1);
    device.publishUsed();
    expect(Array.from(words)).toEqual(Array.from(before));
    const seen = driver.beginWait();
    expect(words[NOTIFY_DRIVER_WAITING]).toBe(1);
    device.pushUsed(head, 1);
    device.publishUsed();
    expect(words[NOTIFY_COMPLETION]).toBe(seen + 1);
    driver.endWait();
    expect(words[NOTIFY_DRIVER_WAITING]).toBe(0);
  });

  it("the driver's end of a wait it never began (each polling turn) writes nothing", () => {
    const { driver, words } = pair();
    // A stand-in for "the device's core holds the line": any store would show.
    words[NOTIFY_DRIVER_WAITING] = 7;
    driver.endWait();
    expect(words[NOTIFY_DRIVER_WAITING]).toBe(7);
  });

  it('a device that announced its sleep before a publish does not sleep through it', () => {
    const { driver, device, words } = pair();
    // The device reads the doorbell and sets its flag (sleep()'s first two steps),
    // the driver publishes in between that and the device's wait: the doorbell
    // moved, so Atomics.wait on the value the device read returns at once.
    const bell = Atomics.load(words, NOTIFY_DOORBELL);
    Atomics.store(words, NOTIFY_DEVICE_SLEEPING, 1);
    driver.addChain(2, [4096, 8192], [16, 1], [0, 1]);
    expect(driver.publish()).toBe(true);
    expect(Atomics.wait(words, NOTIFY_DOORBELL, bell, 1000)).toBe('not-equal');
    expect(device.hasNew(device.availIdx())).toBe(true);
  });

  it('no cache line holds both a field the driver writes and one the device writes', () => {
    for (const size of [2, 8, 64, 128, 256, 1024]) {
      const { layout } = pair(size);
      const lineOf = (addr: number) => Math.floor(addr / LINE);
      // Driver-written: the descriptor table and the available ring (flags, idx,
      // ring[size], used_event). Device-written: the used ring (flags, idx,
      // elements, avail_event).
      const driverLast = lineOf(layout.avail + 6 + 2 * size - 1);
      const deviceFirst = lineOf(layout.used);
      const deviceLast = lineOf(layout.used + 6 + 8 * size - 1);
      expect(layout.used % LINE).toBe(0);
      expect(deviceFirst).toBeGreaterThan(driverLast);
      expect(lineOf(layout.notify)).toBeGreaterThan(deviceLast);
    }
  });
});

describe('virtqueue poll', () => {
  it('reads every used entry of a batch before it completes any: a device rewriting the ring meanwhile changes nothing', () => {
    const { layout, driver, device } = pair();
    const heads = [0, 1, 2].map(() => driver.addChain(2, [4096, 8192], [16, 1], [0, 1]));
    driver.publish();
    for (const h of heads) device.pushUsed(h, 1);
    device.publishUsed();
    const u32 = new Uint32Array(device.mem.buffer as SharedArrayBuffer);
    const seen: string[] = [];
    const sink: UsedSink = {
      complete: (head, len) => {
        seen.push(`ok ${head} ${len}`);
        // The device overwrites every entry of the batch with the first chain's id
        // and a length past what it may write: entries already read must not see it.
        for (let k = 0; k < 3; k++) {
          u32[(layout.used >>> 2) + 1 + k * 2] = heads[0]!;
          u32[(layout.used >>> 2) + 2 + k * 2] = 999;
        }
      },
      fault: (kind, head) => seen.push(`${kind} ${String(head)}`),
    };
    expect(driver.poll(sink)).toBe(3);
    expect(seen).toEqual(heads.map((h) => `ok ${h} 1`));
  });
});
