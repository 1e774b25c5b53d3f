import { parentPort, workerData } from 'node:worker_threads';
import type { DeviceWorkerData } from '../virtio/device-spec.js';
import {
  NOTIFY_COMPLETION,
  NOTIFY_DEVICE_SLEEPING,
  NOTIFY_DOORBELL,
  NOTIFY_DRIVER_WAITING,
  NOTIFY_STOP,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from '../virtio/virtqueue-layout.js';
import { BlkBackend, type Chain } from './blk-backend.js';
import { type BlockStore, FileStore, RamStore } from './block-store.js';
import { Chaos } from './chaos.js';

/**
 * A device backend thread serving one virtqueue: the untrusted side. Its
 * workerData ({@link DeviceWorkerData}) is everything it has.
 */
const U32 = 2 ** 32;

function run(data: DeviceWorkerData): void {
  const mem = Buffer.from(data.memory);
  const u16 = new Uint16Array(data.memory);
  const u32 = new Uint32Array(data.memory);
  const i32 = new Int32Array(data.memory);
  const q = data.queue;
  const size = q.size;
  const mask = size - 1;
  const base = data.memBase;
  const availWord = (q.avail - base) >>> 1;
  const usedWord16 = (q.used - base) >>> 1;
  const usedRing32 = ((q.used - base) >>> 2) + 1;
  const descWord = (q.desc - base) >>> 2;
  const notify = (q.notify - base) >>> 2;

  let store: BlockStore | undefined;
  if (data.kind === 'ram-blk' || data.kind === 'chaos') store = new RamStore(data.backing!);
  else if (data.kind === 'file-blk') {
    const f = data.file!;
    store = new FileStore(f.fd, f.capacity, f.durable);
  }
  const device = new BlkBackend(store, data.serial);
  const chaos = data.kind === 'chaos' ? new Chaos(data.chaos) : undefined;

  const chain: Chain = {
    count: 0,
    offsets: new Float64Array(size),
    lens: new Uint32Array(size),
    writable: new Uint8Array(size),
  };
  let chainWritable = 0;

  /** Walks the chain at `head` (guest-written, so bounded and range-checked). */
  const walk = (head: number): boolean => {
    let d = head;
    chain.count = 0;
    chainWritable = 0;
    for (let steps = 0; steps < size; steps++) {
      if (d >= size) return false;
      const w = descWord + d * 4;
      const addr = u32[w]! + u32[w + 1]! * U32;
      const len = u32[w + 2]!;
      const flags = u16[(w << 1) + 6]!;
      const next = u16[(w << 1) + 7]!;
      const off = addr - base;
      if (off < 0 || off + len > mem.length) return false;
      const i = chain.count++;
      chain.offsets[i] = off;
      chain.lens[i] = len;
      const writable = flags & VRING_DESC_F_WRITE ? 1 : 0;
      chain.writable[i] = writable;
      if (writable) chainWritable += len;
      if ((flags & VRING_DESC_F_NEXT) === 0) return true;
      d = next;
    }
    return false; // a loop
  };

  let lastAvail = 0;
  let usedIdx = 0;
  const pushUsed = (id: number, len: number) => {
    const slot = usedRing32 + (usedIdx & mask) * 2;
    u32[slot] = id;
    u32[slot + 1] = len;
    usedIdx = (usedIdx + 1) & 0xffff;
  };

  /** Handles the chain at `head` and pushes its used entry (or, as chaos, worse). */
  const serve = (head: number): void => {
    let written = 0;
    if (walk(head)) {
      try {
        written = device.handle(mem, chain);
      } catch (err) {
        // A store error (EIO, ENOSPC...) is the request's IOERR, not the thread's death.
        written = device.fail(mem, chain);
        parentPort?.postMessage({ type: 'io-error', message: (err as Error).message });
      }
    }
    if (chaos === undefined) {
      pushUsed(head, written);
      return;
    }
    // The hostile device: everything it can do to the memory it sees.
    const r = chaos.rates;
    if (chaos.roll(r.corruptDesc)) {
      const w = descWord + (head & mask) * 4;
      for (let k = 0; k < 4; k++) u32[w + k] = Math.floor(chaos.random() * U32);
    }
    if (chaos.roll(r.scribble)) chaos.scribble(mem);
    if (chaos.roll(r.drop)) return;
    const id = chaos.roll(r.badId) ? chaos.int(size * 2) : head;
    const len = chaos.roll(r.badLen) ? chainWritable + 1 + chaos.int(1 << 20) : written;
    pushUsed(id, len);
    if (chaos.roll(r.double)) pushUsed(id, len);
    if (chaos.roll(r.jumpIdx)) usedIdx = (usedIdx + 1 + chaos.int(size * 4)) & 0xffff;
  };

  const spinMs = data.spinMicros / 1000;
  parentPort?.postMessage({ type: 'ready' });
  for (;;) {
    let avail = Atomics.load(u16, availWord + 1);
    if (avail === lastAvail) {
      if (Atomics.load(i32, notify + NOTIFY_STOP) !== 0) break;
      const until = performance.now() + spinMs;
      while (avail === lastAvail && performance.now() < until)
        avail = Atomics.load(u16, availWord + 1);
      if (avail === lastAvail) {
        const bell = Atomics.load(i32, notify + NOTIFY_DOORBELL);
        Atomics.store(i32, notify + NOTIFY_DEVICE_SLEEPING, 1);
        if (
          Atomics.load(u16, availWord + 1) === lastAvail &&
          Atomics.load(i32, notify + NOTIFY_STOP) === 0
        ) {
          Atomics.wait(i32, notify + NOTIFY_DOORBELL, bell);
        }
        Atomics.store(i32, notify + NOTIFY_DEVICE_SLEEPING, 0);
        continue;
      }
    }
    while (lastAvail !== avail) {
      const head = u16[availWord + 2 + (lastAvail & mask)]!;
      lastAvail = (lastAvail + 1) & 0xffff;
      serve(head);
      // Each request is completed as soon as it is done, not after the whole batch:
      // the guest side unmaps and submits the next ones while this thread works,
      // and it sees new requests here without going back to sleep.
      Atomics.store(u16, usedWord16 + 1, usedIdx);
      Atomics.add(i32, notify + NOTIFY_COMPLETION, 1);
      if (Atomics.load(i32, notify + NOTIFY_DRIVER_WAITING) !== 0) {
        Atomics.notify(i32, notify + NOTIFY_COMPLETION);
      }
      if (lastAvail === avail) avail = Atomics.load(u16, availWord + 1);
    }
  }
  store?.close();
}

if (parentPort !== null && workerData !== null && typeof workerData === 'object') {
  run(workerData as DeviceWorkerData);
}
