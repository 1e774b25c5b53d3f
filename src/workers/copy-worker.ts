import { performance } from 'node:perf_hooks';
import { receiveMessageOnPort, threadId } from 'node:worker_threads';
import { DmaDirection } from '../swiotlb/constants.js';
import {
  D_DIR,
  D_GUEST_OFFSET,
  D_GUEST_REGION,
  D_LENGTH,
  D_POOL_OFFSET,
  D_POOL_REGION,
  descriptorIndex,
  type RegionMessage,
  RING_HEAD,
  RING_NOTIFY_AT,
  RING_SLEEPING,
  RING_STOP,
  RING_TAIL,
  RING_THREAD,
  type ServeTask,
} from './copy-ring.js';
import { CopyStatsWriter } from './copy-stats.js';
import { copyShared } from './shared-copy.js';

/**
 * A copy worker: the trusted DMA engine. It serves one descriptor ring for as long
 * as the ring lives (one long-lived piscina task per worker thread, not one task
 * per copy: a task round trip costs tens to hundreds of times a 4 KiB copy; the
 * figures are in docs/performance.md).
 * It copies between guest memory and pool buffers it was given, and sleeps in
 * Atomics.wait when there is nothing to do.
 */
export default function serve(task: ServeTask): { copies: number } {
  const ring = new Int32Array(task.ring);
  const capacity = task.capacity;
  const port = task.port;
  const regions: (Buffer | undefined)[] = new Array(task.maxRegions);
  for (const r of task.regions) regions[r.id] = Buffer.from(r.buffer);
  const stats = new CopyStatsWriter(task.stats, task.blocks, task.maxRegions, task.block);
  const spinMs = task.spinMicros / 1000;
  Atomics.store(ring, RING_THREAD, threadId);

  const region = (id: number): Buffer => {
    let buf = regions[id];
    while (buf === undefined) {
      // The main thread posts a region before the first descriptor that names it,
      // so the message is already queued on the port.
      const msg = receiveMessageOnPort(port);
      if (msg === undefined) throw new Error(`copy worker: unknown region ${id}`);
      const reg = msg.message as RegionMessage;
      regions[reg.id] = Buffer.from(reg.buffer);
      buf = regions[id];
    }
    return buf;
  };

  let total = 0;
  let tail = Atomics.load(ring, RING_TAIL);
  for (;;) {
    let head = Atomics.load(ring, RING_HEAD);
    if (head === tail) {
      if (Atomics.load(ring, RING_STOP)) break;
      // Poll briefly (a busy producer refills within microseconds), then sleep.
      const until = performance.now() + spinMs;
      while (head === tail && performance.now() < until) head = Atomics.load(ring, RING_HEAD);
      if (head === tail) {
        Atomics.store(ring, RING_SLEEPING, 1);
        head = Atomics.load(ring, RING_HEAD);
        if (head === tail && !Atomics.load(ring, RING_STOP)) Atomics.wait(ring, RING_HEAD, tail);
        Atomics.store(ring, RING_SLEEPING, 0);
        continue;
      }
    }
    while (tail !== head) {
      const d = descriptorIndex(tail, capacity);
      const dir = ring[d + D_DIR]!;
      const guestRegion = ring[d + D_GUEST_REGION]!;
      const guestOffset = ring[d + D_GUEST_OFFSET]! >>> 0;
      const poolOffset = ring[d + D_POOL_OFFSET]! >>> 0;
      const length = ring[d + D_LENGTH]! >>> 0;
      const guest = region(guestRegion);
      const pool = region(ring[d + D_POOL_REGION]!);
      const t0 = performance.now();
      if (dir === DmaDirection.TO_DEVICE) {
        checkRange(guest, guestOffset, length);
        checkRange(pool, poolOffset, length);
        copyShared(pool, poolOffset, guest.buffer, guestOffset, length);
      } else {
        checkRange(pool, poolOffset, length);
        checkRange(guest, guestOffset, length);
        copyShared(guest, guestOffset, pool.buffer, poolOffset, length);
      }
      // One seqlock section per copy: a worker that never runs dry must not keep a
      // scrape waiting for an even sequence number.
      stats.begin();
      stats.add(guestRegion, dir, length, (performance.now() - t0) * 1e6);
      stats.end();
      tail = (tail + 1) | 0;
      total++;
      // Each copy is published as soon as it is done: a main thread that polls can
      // unmap and submit the next I/O while this worker copies the rest of the batch.
      // A sleeping one is woken only at the copy it asked for (copy-ring.ts).
      Atomics.store(ring, RING_TAIL, tail);
      if (tail === Atomics.load(ring, RING_NOTIFY_AT)) Atomics.notify(ring, RING_TAIL);
      if (tail === head) head = Atomics.load(ring, RING_HEAD);
    }
  }
  return { copies: total };
}

/** Descriptors come from trusted code that validated them; this guards against our own bugs. */
function checkRange(buf: Buffer, offset: number, length: number): void {
  if (offset + length > buf.length) {
    throw new Error(`copy worker: [${offset}, +${length}) outside a region of ${buf.length} bytes`);
  }
}
