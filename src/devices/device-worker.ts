import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import type { DeviceWorkerData } from '../virtio/device-spec.js';
import { IDLE_TICK_MS, IdleClock } from '../virtio/thread-clock.js';
import { BlkBackend } from './blk-backend.js';
import { type BlockStore, FileStore, RamStore } from './block-store.js';
import { Chaos } from './chaos.js';
import { DeviceQueue } from './device-queue.js';

/** The device's disk: memory for ram-blk and chaos, the host's file for file-blk, none for null. */
function openStore(data: DeviceWorkerData): BlockStore | undefined {
  if (data.kind === 'ram-blk' || data.kind === 'chaos') return new RamStore(data.backing!);
  if (data.kind === 'file-blk') {
    const f = data.file!;
    return new FileStore(f.fd, f.capacity, f.durable, f.syncFailed);
  }
  return undefined;
}

/** Handles the chain at `head` and fills its used entry; returns the used length. */
function handle(queue: DeviceQueue, device: BlkBackend, head: number): number {
  if (!queue.walk(head)) return 0;
  try {
    return device.handle(queue.mem, queue.chain);
  } catch (err) {
    // A store error (EIO, ENOSPC...) is the request's IOERR, not the thread's death.
    const written = device.fail(queue.mem, queue.chain);
    parentPort?.postMessage({ type: 'io-error', message: (err as Error).message });
    return written;
  }
}

/**
 * Completes the request at `head` as the hostile device: everything it can do to
 * the memory it sees (the draws, in this order, are what a seed reproduces).
 */
function completeAsChaos(queue: DeviceQueue, chaos: Chaos, head: number, written: number): void {
  const r = chaos.rates;
  const size = queue.size;
  if (chaos.roll(r.corruptDesc)) queue.corruptDescriptor(head, chaos.random);
  if (chaos.roll(r.scribble)) chaos.scribble(queue.mem);
  if (chaos.roll(r.drop)) return;
  const id = chaos.roll(r.badId) ? chaos.int(size * 2) : head;
  const len = chaos.roll(r.badLen) ? queue.chainWritable + 1 + chaos.int(1 << 20) : written;
  queue.pushUsed(id, len);
  if (chaos.roll(r.double)) queue.pushUsed(id, len);
  if (chaos.roll(r.jumpIdx)) queue.usedIdx = (queue.usedIdx + 1 + chaos.int(size * 4)) & 0xffff;
}

/**
 * A device backend thread serving one virtqueue: the untrusted side. Its
 * workerData ({@link DeviceWorkerData}) is everything it has. It takes requests
 * while there are any, polls `spinMicros` for more, then sleeps on the doorbell;
 * it ends when the host sets STOP and the queue is empty. Its poll and sleep
 * time go on its idle clock (thread-clock.ts), which tells the host how busy it was.
 */
function run(data: DeviceWorkerData): void {
  const queue = new DeviceQueue(data);
  const store = openStore(data);
  const device = new BlkBackend(store, data.serial, data.capacity);
  const chaos = data.kind === 'chaos' ? new Chaos(data.chaos) : undefined;
  const spinMs = data.spinMicros / 1000;
  const idle = new IdleClock(data.clock);
  if (chaos !== undefined && data.chaos?.silent === true) {
    // Never says it serves, never serves: only a stop ends it.
    while (!queue.stopRequested()) queue.sleep(IDLE_TICK_MS);
    store?.close();
    return;
  }
  parentPort?.postMessage({ type: 'ready' });
  // Asleep since the last request: a thread the tick woke goes back to sleep
  // without polling first (it polled before it fell asleep).
  let asleep = false;
  for (;;) {
    let avail = queue.availIdx();
    if (!queue.hasNew(avail)) {
      if (queue.stopRequested()) break;
      // Idle from here until a request is seen: the poll, and the sleep if it came to that.
      const since = performance.now();
      if (!asleep) avail = queue.spin(avail, spinMs);
      asleep = !queue.hasNew(avail);
      // Woken by a request, or by the tick: either way the time so far is added.
      if (asleep) queue.sleep(IDLE_TICK_MS);
      idle.addSince(since, performance.now());
      if (asleep) continue;
    }
    asleep = false;
    while (queue.hasNew(avail)) {
      const head = queue.takeHead();
      const written = handle(queue, device, head);
      if (chaos === undefined) queue.pushUsed(head, written);
      else completeAsChaos(queue, chaos, head, written);
      // Each request is completed as soon as it is done, not after the whole batch:
      // the guest side unmaps and submits the next ones while this thread works,
      // and it sees new requests here without going back to sleep.
      queue.publishUsed();
      if (!queue.hasNew(avail)) avail = queue.availIdx();
    }
  }
  store?.close();
}

if (parentPort !== null && workerData !== null && typeof workerData === 'object') {
  run(workerData as DeviceWorkerData);
}
