import { performance } from 'node:perf_hooks';
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
import type { Chain } from './blk-backend.js';

const U32 = 2 ** 32;

/**
 * The device's side of one split virtqueue (layout and notification words in
 * src/virtio/virtqueue-layout.ts), in the memory the device thread was given.
 *
 * Rules: the device trusts nothing the guest wrote either. A chain is walked at most
 * `size` steps (a loop ends it), every descriptor must lie inside the memory and
 * hold at least one byte, and a ring head past the table fails the walk; such a
 * chain is completed with 0 bytes (no status written). A zero-length descriptor
 * breaks no rule of the spec (split-ring.tex, "The Virtqueue Descriptor Table",
 * driver requirements, bound only a chain's total length, 2^32 bytes, and forbid
 * loops), but QEMU refuses it: hw/virtio/virtio.c, virtqueue_map_desc(), `if
 * (!sz) { virtio_error(vdev, "virtio: zero sized buffers are not allowed"); ...}`,
 * which marks the whole device broken; here the chain alone fails, as a
 * descriptor outside the memory does (QEMU's "bogus descriptor" in the same
 * function). Linux 6.12.117's virtio-blk makes none (drivers/block/virtio_blk.c:
 * virtblk_map_data() maps no data buffer for a request without data segments,
 * `if (!blk_rq_nr_phys_segments(req)) return 0;`), nor does this driver
 * (blk-request.ts layOutRequest()).
 * An available index more than `size` entries past the last one taken (the ring
 * holds no more) breaks the queue: it takes nothing more until the host stops the
 * thread (a reset), as QEMU's virtqueue_num_heads() (hw/virtio/virtio.c) calls
 * virtio_error(vdev, "Guest moved used index from %u to %u"), and as Linux
 * 6.12.117's vhost fails it (drivers/vhost/vhost.c, vhost_get_avail_idx():
 * `(u16)(avail_idx - vq->last_avail_idx) > vq->num`, "Invalid available index
 * change from %u to %u").
 * `lastAvail` and `usedIdx` are this thread's own free-running 16-bit counters; the
 * used index is published (and the guest woken) once per completed request.
 */
export class DeviceQueue {
  /** The device-visible memory, as bytes (what the backend reads and writes). */
  readonly mem: Buffer;
  readonly size: number;
  /** The chain {@link walk} read last: offsets into {@link mem}. Reused for every request. */
  readonly chain: Chain;
  /** Device-writable bytes of the chain {@link walk} read last. */
  chainWritable = 0;
  /** The next used ring slot to fill (free-running, 16 bits); chaos may move it. */
  usedIdx = 0;

  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly i32: Int32Array;
  private readonly mask: number;
  private readonly base: number;
  /** 16-bit word index of the available ring's flags. */
  private readonly availWord: number;
  /** 16-bit word index of the used ring's flags. */
  private readonly usedWord16: number;
  /** 32-bit word index of the used ring's first entry. */
  private readonly usedRing32: number;
  /** 32-bit word index of the descriptor table. */
  private readonly descWord: number;
  /** 32-bit word index of the notification words. */
  private readonly notify: number;
  /** The next available ring slot to take (free-running, 16 bits). */
  private lastAvail = 0;
  /**
   * The guest moved the available index by more than the ring holds: nothing is
   * taken any more (see the class comment). Only a new thread clears it.
   */
  broken = false;

  constructor(data: Pick<DeviceWorkerData, 'memory' | 'memBase' | 'queue'>) {
    const q = data.queue;
    this.mem = Buffer.from(data.memory);
    this.u16 = new Uint16Array(data.memory);
    this.u32 = new Uint32Array(data.memory);
    this.i32 = new Int32Array(data.memory);
    this.size = q.size;
    this.mask = q.size - 1;
    this.base = data.memBase;
    this.availWord = (q.avail - this.base) >>> 1;
    this.usedWord16 = (q.used - this.base) >>> 1;
    this.usedRing32 = ((q.used - this.base) >>> 2) + 1;
    this.descWord = (q.desc - this.base) >>> 2;
    this.notify = (q.notify - this.base) >>> 2;
    this.chain = {
      count: 0,
      offsets: new Float64Array(q.size),
      lens: new Uint32Array(q.size),
      writable: new Uint8Array(q.size),
    };
  }

  /** The guest's available index now. */
  availIdx(): number {
    return Atomics.load(this.u16, this.availWord + 1);
  }

  /**
   * Whether the available index `avail` holds entries this thread has not taken;
   * never once the queue is {@link broken}, which an index more than `size`
   * entries ahead makes it.
   */
  hasNew(avail: number): boolean {
    if (avail === this.lastAvail || this.broken) return false;
    if (((avail - this.lastAvail) & 0xffff) > this.size) {
      this.broken = true;
      return false;
    }
    return true;
  }

  /** Whether the host asked the thread to finish. */
  stopRequested(): boolean {
    return Atomics.load(this.i32, this.notify + NOTIFY_STOP) !== 0;
  }

  /** Polls the available index (last read as `avail`) for `spinMs` or until it moves; returns it. */
  spin(avail: number, spinMs: number): number {
    const until = performance.now() + spinMs;
    while (avail === this.lastAvail && !this.broken && performance.now() < until) {
      avail = this.availIdx();
    }
    return avail;
  }

  /**
   * Sleeps on the doorbell until the guest rings it, or for at most `timeoutMs`.
   * DEVICE_SLEEPING is set before the last look at the available index (and at
   * STOP), so a guest that publishes after that look sees the flag and rings: no
   * request is missed. A caller woken by the timeout looks again before it sleeps
   * again, so the flag's short drop in between misses nothing either. A broken
   * queue sleeps whatever its index says (until STOP, or the timeout).
   */
  sleep(timeoutMs = Number.POSITIVE_INFINITY): void {
    const bell = Atomics.load(this.i32, this.notify + NOTIFY_DOORBELL);
    Atomics.store(this.i32, this.notify + NOTIFY_DEVICE_SLEEPING, 1);
    const idle = this.broken || this.availIdx() === this.lastAvail;
    if (idle && !this.stopRequested()) {
      Atomics.wait(this.i32, this.notify + NOTIFY_DOORBELL, bell, timeoutMs);
    }
    Atomics.store(this.i32, this.notify + NOTIFY_DEVICE_SLEEPING, 0);
  }

  /** Takes the next available entry: the head of a chain (guest-written, unchecked). */
  takeHead(): number {
    const head = this.u16[this.availWord + 2 + (this.lastAvail & this.mask)]!;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return head;
  }

  /**
   * Walks the chain at `head` into {@link chain} (guest-written, so bounded and
   * range-checked); false when it leaves the table or the memory, has a
   * zero-length descriptor, or loops.
   */
  walk(head: number): boolean {
    const { chain, u16, u32, size } = this;
    let d = head;
    chain.count = 0;
    this.chainWritable = 0;
    for (let steps = 0; steps < size; steps++) {
      if (d >= size) return false;
      const w = this.descWord + d * 4;
      const addr = u32[w]! + u32[w + 1]! * U32;
      const len = u32[w + 2]!;
      const flags = u16[(w << 1) + 6]!;
      const next = u16[(w << 1) + 7]!;
      const off = addr - this.base;
      if (len === 0 || off < 0 || off + len > this.mem.length) return false;
      const i = chain.count++;
      chain.offsets[i] = off;
      chain.lens[i] = len;
      const writable = flags & VRING_DESC_F_WRITE ? 1 : 0;
      chain.writable[i] = writable;
      if (writable) this.chainWritable += len;
      if ((flags & VRING_DESC_F_NEXT) === 0) return true;
      d = next;
    }
    return false; // a loop
  }

  /** Fills the next used ring entry (not yet visible to the guest: see {@link publishUsed}). */
  pushUsed(id: number, len: number): void {
    const slot = this.usedRing32 + (this.usedIdx & this.mask) * 2;
    this.u32[slot] = id;
    this.u32[slot + 1] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /**
   * Publishes the used index; only while the guest said it waits (DRIVER_WAITING)
   * bumps COMPLETION and wakes it, since it polls otherwise. A guest that set the
   * flag read COMPLETION after it, so the bump still fails its wait; a bump at
   * every publish took the notification words' line from the guest's core each
   * time (see GuestVirtqueue.publish()).
   */
  publishUsed(): void {
    Atomics.store(this.u16, this.usedWord16 + 1, this.usedIdx);
    if (Atomics.load(this.i32, this.notify + NOTIFY_DRIVER_WAITING) !== 0) {
      Atomics.add(this.i32, this.notify + NOTIFY_COMPLETION, 1);
      Atomics.notify(this.i32, this.notify + NOTIFY_COMPLETION);
    }
  }

  /** Overwrites the descriptor at `head` with random words (the chaos device). */
  corruptDescriptor(head: number, random: () => number): void {
    const w = this.descWord + (head & this.mask) * 4;
    for (let k = 0; k < 4; k++) this.u32[w + k] = Math.floor(random() * U32);
  }
}
