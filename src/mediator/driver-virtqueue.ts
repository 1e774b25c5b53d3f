import {
  NOTIFY_COMPLETION,
  NOTIFY_DEVICE_SLEEPING,
  NOTIFY_DOORBELL,
  NOTIFY_DRIVER_WAITING,
  type VirtqueueLayout,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
} from '../virtio/virtqueue-layout.js';

/** Kinds of device misbehaviour the guest detects, counted per device. */
export const FAULT_KINDS = [
  'used_idx',
  'used_id',
  'used_len',
  'double_completion',
  'bad_status',
  'timeout',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What the driver learns from one used entry. */
export interface UsedSink {
  /** A valid completion of the chain whose head is `head`, with `len` bytes written. */
  complete(head: number, len: number): void;
  /** A used entry that broke a rule; `head` is the request it names when that is known. */
  fault(kind: FaultKind, head: number | undefined, detail: string): void;
}

const U32 = 2 ** 32;

/**
 * The guest (driver) side of one split virtqueue in device-visible memory.
 *
 * Private state, never read back from shared memory (the device can write there):
 * - the free descriptor list, the avail index, the last used index seen;
 * - per chain head: whether it is in flight, its descriptor count, how many
 *   bytes of it the device may write (the used length limit), and where its last
 *   buffer starts (to touch at completion: see {@link poll}).
 *
 * Shared memory is written as the spec orders it (descriptors, then the avail
 * entry, then avail->idx with Atomics.store), and read back only from the used
 * ring: used->idx once per poll, each entry's id and len once, all validated.
 */
export class GuestVirtqueue {
  readonly layout: VirtqueueLayout;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly i32: Int32Array;
  private readonly memBase: number;
  /** Index in `i32` of the first notification word (NOTIFY_* are offsets from it). */
  private readonly notifyWord: number;
  private readonly size: number;
  private readonly mask: number;
  private readonly freeList: Uint16Array;
  private freeCount: number;
  private availIdx = 0;
  private lastUsedIdx = 0;
  private readonly chainCount: Uint16Array;
  private readonly chainWritable: Float64Array;
  /** 0 free, 1 in flight, 2 completed (until its descriptors are reused: catches double completion). */
  private readonly state: Uint8Array;
  private inFlightChains = 0;
  /** Offset in `u8` of each chain's last buffer, the driver's own copy (poll's touch). */
  private readonly chainLast: Float64Array;
  /** The used entries of one poll, each read once from the ring (poll's first pass). */
  private readonly usedIds: Uint32Array;
  private readonly usedLens: Uint32Array;
  /** XOR of the bytes poll touches, so that the compiler keeps those reads. */
  private touched = 0;

  /**
   * @param memory the device-visible memory (pool bytes, or guest memory in direct mode)
   * @param memBase the address of memory[0]
   */
  constructor(memory: SharedArrayBuffer, memBase: number, layout: VirtqueueLayout) {
    this.layout = layout;
    this.memBase = memBase;
    this.notifyWord = (layout.notify - memBase) >>> 2;
    this.size = layout.size;
    this.mask = layout.size - 1;
    this.u8 = new Uint8Array(memory);
    this.u16 = new Uint16Array(memory);
    this.u32 = new Uint32Array(memory);
    this.i32 = new Int32Array(memory);
    this.freeList = new Uint16Array(this.size);
    this.chainCount = new Uint16Array(this.size);
    this.chainWritable = new Float64Array(this.size);
    this.state = new Uint8Array(this.size);
    this.chainLast = new Float64Array(this.size);
    this.usedIds = new Uint32Array(this.size);
    this.usedLens = new Uint32Array(this.size);
    this.freeCount = 0;
    this.reset();
  }

  /** Zeroes the rings and forgets every chain (after the device was stopped). */
  reset(): void {
    const start = this.layout.desc - this.memBase;
    this.u8.fill(0, start, start + this.layout.bytes);
    for (let i = 0; i < this.size; i++) this.freeList[i] = this.size - 1 - i;
    this.freeCount = this.size;
    this.availIdx = 0;
    this.lastUsedIdx = 0;
    this.chainCount.fill(0);
    this.chainWritable.fill(0);
    this.state.fill(0);
    this.inFlightChains = 0;
  }

  get freeDescriptors(): number {
    return this.freeCount;
  }

  get inFlight(): number {
    return this.inFlightChains;
  }

  /**
   * Writes a descriptor chain of `count` buffers (device addresses, lengths, and
   * whether the device writes them) and puts its head on the avail ring (not yet
   * published: see {@link publish}). Returns the head, or -1 when too few
   * descriptors are free.
   */
  addChain(
    count: number,
    addrs: ArrayLike<number>,
    lens: ArrayLike<number>,
    writes: ArrayLike<number>,
  ): number {
    if (count < 1 || count > this.freeCount) return -1;
    const descWord = (this.layout.desc - this.memBase) >>> 2;
    let writable = 0;
    let head = -1;
    let prev = -1;
    for (let i = 0; i < count; i++) {
      const d = this.freeList[--this.freeCount]!;
      if (i > 0) this.state[d] = 0;
      if (prev >= 0)
        this.u16[((descWord + prev * 4) << 1) + 7] = d; // prev.next
      else head = d;
      const w = descWord + d * 4;
      const addr = addrs[i]!;
      this.u32[w] = addr % U32;
      this.u32[w + 1] = Math.floor(addr / U32);
      this.u32[w + 2] = lens[i]!;
      const flags = (writes[i] ? VRING_DESC_F_WRITE : 0) | (i < count - 1 ? VRING_DESC_F_NEXT : 0);
      this.u16[(w << 1) + 6] = flags;
      this.u16[(w << 1) + 7] = 0;
      if (writes[i]) writable += lens[i]!;
      prev = d;
    }
    this.chainCount[head] = count;
    this.chainWritable[head] = writable;
    this.chainLast[head] = addrs[count - 1]! - this.memBase;
    // Remember the chain's other descriptors privately: the device may rewrite
    // `next` fields, so they are never read back from shared memory.
    this.chainNext(head, count);
    this.state[head] = 1;
    this.inFlightChains++;
    const availWord = (this.layout.avail - this.memBase) >>> 1;
    this.u16[availWord + 2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return head;
  }

  /**
   * Makes added chains visible to the device (a device that polls sees them at
   * once) and bumps the doorbell word. Returns true when the device sleeps: then
   * it must be woken with {@link ring}, now or a little later (a device that
   * announced its sleep before this bump either sees the new chains before it
   * waits, or waits on a doorbell value that no longer holds; only a ring wakes
   * one that already waits, so no wake-up is lost as long as a ring follows).
   */
  publish(): boolean {
    const availWord = (this.layout.avail - this.memBase) >>> 1;
    Atomics.store(this.u16, availWord + 1, this.availIdx);
    const n = this.notifyWord;
    // The doorbell moves only for a device that said it sleeps: a device that set
    // DEVICE_SLEEPING read the doorbell before, so this bump still fails its wait.
    // A bump at every publish was a locked write to the line whose flags both
    // sides read at each publish, taken from the other core's cache each time.
    if (Atomics.load(this.i32, n + NOTIFY_DEVICE_SLEEPING) === 0) return false;
    Atomics.add(this.i32, n + NOTIFY_DOORBELL, 1);
    return true;
  }

  /** Wakes the device if it sleeps on the doorbell (a futex wake: costly, so batched). */
  ring(): void {
    const n = this.notifyWord;
    if (Atomics.load(this.i32, n + NOTIFY_DEVICE_SLEEPING) !== 0) {
      Atomics.notify(this.i32, n + NOTIFY_DOORBELL, 1);
    }
  }

  /**
   * Reads new used entries, validates each, and reports them to `sink`. Valid
   * completions free their descriptors. Returns how many entries were consumed.
   *
   * Against Linux 6.12.117, drivers/virtio/virtio_ring.c, virtqueue_get_buf_ctx_split():
   * it checks `i >= vq->split.vring.num` ("id %u out of range") and
   * `!vq->split.desc_state[i].data` ("id %u is not a head!"), as `used_id` here
   * (a completed chain named again is `double_completion`, Linux's "not a head"
   * too). It does not check used->idx (`used_idx` here) nor the length (`*len` is
   * returned as read; virtblk_done() in drivers/block/virtio_blk.c ignores it),
   * which this driver bounds by the chain's device-writable bytes (`used_len`,
   * VIRTIO 1.2 §2.7.8: len is "the total of bytes written into the buffer").
   * Linux's BAD_RING() marks the whole virtqueue broken (every later get_buf
   * returns NULL, and virtio-blk has no timeout to end its requests); here a bad
   * entry fails at most the request it names, and the queue goes on.
   */
  poll(sink: UsedSink): number {
    const usedWord16 = (this.layout.used - this.memBase) >>> 1;
    const usedIdx = Atomics.load(this.u16, usedWord16 + 1); // read once
    let n = (usedIdx - this.lastUsedIdx) & 0xffff;
    if (n === 0) return 0;
    if (n > this.inFlightChains) {
      sink.fault(
        'used_idx',
        undefined,
        `used idx advanced by ${n} with ${this.inFlightChains} chains in flight`,
      );
      // Entries past what can be real are not read: the ring would wrap onto
      // entries already consumed. Resynchronise on the device's index.
      n = Math.min(n, this.size);
    }
    const ringWord32 = ((this.layout.used - this.memBase) >>> 2) + 1;
    const { usedIds, usedLens } = this;
    // First pass, in a tight loop: each entry read once into private arrays, and
    // the first byte of each completed chain's last buffer (virtio-blk's status,
    // which the device has just written) read too. Their cache lines then come
    // from the device's core all at once, not one stall per request when each
    // request's completion later reads its status (a batch can hold dozens).
    let touched = this.touched;
    for (let k = 0; k < n; k++) {
      const slot = ringWord32 + ((this.lastUsedIdx + k) & this.mask) * 2;
      const id = this.u32[slot]!; // read once
      usedIds[k] = id;
      usedLens[k] = this.u32[slot + 1]!; // read once
      if (id < this.size && this.state[id] === 1) touched ^= this.u8[this.chainLast[id]!]!;
    }
    this.touched = touched;
    for (let k = 0; k < n; k++) {
      const id = usedIds[k]!;
      const len = usedLens[k]!;
      if (id >= this.size) {
        sink.fault('used_id', undefined, `used id ${id} out of range (queue size ${this.size})`);
        continue;
      }
      const st = this.state[id]!;
      if (st !== 1) {
        sink.fault(
          st === 2 ? 'double_completion' : 'used_id',
          undefined,
          st === 2 ? `chain ${id} completed twice` : `used id ${id} is not a chain in flight`,
        );
        continue;
      }
      if (len > this.chainWritable[id]!) {
        this.release(id);
        sink.fault(
          'used_len',
          id,
          `used len ${len} exceeds the ${this.chainWritable[id]} device-writable bytes of chain ${id}`,
        );
        continue;
      }
      this.release(id);
      sink.complete(id, len);
    }
    this.lastUsedIdx = usedIdx;
    return n;
  }

  /** Takes a chain back without a completion (its request timed out and the device was stopped). */
  abandon(head: number): void {
    if (this.state[head] === 1) this.release(head);
  }

  /** The notification words, as Int32 (for Atomics.waitAsync on {@link completionIndex}). */
  get notifyWords(): Int32Array {
    return this.i32;
  }

  /** Index in {@link notifyWords} of the word the device bumps after publishing used entries. */
  get completionIndex(): number {
    return this.notifyWord + NOTIFY_COMPLETION;
  }

  /**
   * Tells the device the driver is about to wait on the completion word, and
   * returns the word's value to wait on. Poll once more after this and before
   * waiting: a completion published before the device saw the flag is found then.
   */
  beginWait(): number {
    const n = this.notifyWord;
    this.waiting = true;
    Atomics.store(this.i32, n + NOTIFY_DRIVER_WAITING, 1);
    return Atomics.load(this.i32, n + NOTIFY_COMPLETION);
  }

  /**
   * The driver is polling again: completions need no notify. Clears the flag only
   * if this side set it (remembered privately, not read back from shared memory):
   * the driver calls this at every event-loop turn while it polls, and a store
   * there would take the notification words' line from the device at each turn.
   */
  endWait(): void {
    if (!this.waiting) return;
    this.waiting = false;
    Atomics.store(this.i32, this.notifyWord + NOTIFY_DRIVER_WAITING, 0);
  }

  private readonly chainDescs: Uint16Array[] = [];
  /** Whether this side set DRIVER_WAITING and has not cleared it (beginWait/endWait). */
  private waiting = false;

  private chainNext(head: number, count: number): void {
    let list = this.chainDescs[head];
    if (list === undefined || list.length < count) {
      list = new Uint16Array(Math.max(count, 4));
      this.chainDescs[head] = list;
    }
    // The descriptors were taken from the top of the free list in order.
    for (let i = 0; i < count; i++) list[i] = this.freeList[this.freeCount + count - 1 - i]!;
  }

  private release(head: number): void {
    const list = this.chainDescs[head]!;
    const count = this.chainCount[head]!;
    for (let i = count - 1; i >= 0; i--) this.freeList[this.freeCount++] = list[i]!;
    this.state[head] = 2;
    this.inFlightChains--;
    for (let i = 1; i < count; i++) this.state[list[i]!] = 0;
  }
}
