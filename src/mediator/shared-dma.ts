import { MediatorError } from '../errors.js';
import { IO_TLB_SIZE } from '../swiotlb/constants.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import { copyView } from '../workers/shared-copy.js';
import type { BatchDma, DmaBatch } from './dma.js';
import type { WriteFill, WriteFiller } from './write-fill.js';

/**
 * Shared mode: the driver allocates each request's data buffers in the pool itself,
 * as a driver whose device has a restricted DMA pool does with dma_alloc_coherent()
 * (dma_direct_alloc() -> swiotlb_alloc()). The device reads and writes them where
 * they are: no bounce copy. The request's header and status live in a control
 * block the queue allocated in the pool when it was set up.
 *
 * Placement is the kernel's: each data segment (at most the max mapping size, as in
 * bounce mode) is one coherent allocation through the pool's swiotlb_alloc() of its
 * kernel profile (SwiotlbPool.tryAlloc; in 6.10 `align = (1 << (get_order(size) +
 * PAGE_SHIFT)) - 1` with no original address, see docs/kernels.md), freed with
 * swiotlb_free() (SwiotlbPool.free). In a `warm` pool (the service's default) a
 * run freed lately is taken first, for read and write buffers alike (warm.ts).
 *
 * The trade-off (the README's "What the isolation covers"): the device sees, and
 * may change, these buffers for as long as the request is in flight, and the
 * bytes stay in the pool until they are freed. So the driver reads each byte it
 * hands back once: {@link copyOut} copies a read's data out of the pool into the
 * caller's buffer once, after the completion and before the buffers are freed,
 * and nothing is read from the pool again.
 *
 *   batch entry i:  addrs[i] = -1          to be allocated by tryPlace
 *                   addrs[i] in the pool   placed already (control block, or a
 *                                          buffer the caller filled: allocated[i] = 1)
 *   after tryPlace: out[i] = addrs[i]; allocated[i] = 1 for every buffer this
 *                   request owns in the pool; release() frees those, and only those.
 * Rule: a batch's data entries are either all -1 or all placed, so a tryPlace that
 * fails frees only what it allocated itself.
 */
export class SharedDma implements BatchDma {
  readonly mode = 'shared' as const;
  private readonly pool: SwiotlbPool;
  private readonly opts: { minAlignMask: number; area: number; owner: number };

  constructor(pool: SwiotlbPool, opts: { minAlignMask: number; area: number; owner: number }) {
    this.pool = pool;
    // Read buffers too take what the pool's placement gives (warm: a freed run):
    // unlike a bounce read, nothing but the device writes them before the driver's
    // one copy out, which is what direct mode's reused guest buffers see too
    // (docs/configuration.md, "Warm placement").
    this.opts = opts;
  }

  /**
   * Allocates one pool buffer of `size` bytes; its address, or -1 when the pool
   * has no room.
   */
  allocate(size: number): number {
    return this.pool.tryAlloc(size, this.opts);
  }

  /** Pool bytes one allocation of `size` takes (whole slots, as swiotlb_alloc() takes them). */
  allocBytes(size: number): number {
    return this.pool.allocSlots(size) * IO_TLB_SIZE;
  }

  /** Frees a buffer {@link allocate} returned. */
  free(addr: number, size: number): void {
    this.pool.free(addr, size, this.opts.owner);
  }

  /** The pool's bytes at [addr, addr + size): what the device sees there too. */
  view(addr: number, size: number): Uint8Array {
    const off = this.pool.offsetOf(addr);
    return this.pool.data.subarray(off, off + size);
  }

  /** Allocates every entry still at -1 (all or none) and hands the device the pool addresses. */
  tryPlace(n: number, b: DmaBatch): boolean {
    for (let i = 0; i < n; i++) {
      if (b.addrs[i]! >= 0) {
        const addr = b.addrs[i]!;
        if (!this.pool.contains(addr) || !this.pool.contains(addr + b.sizes[i]! - 1)) {
          throw new MediatorError(
            'DMA_BAD_ADDRESS',
            `shared buffer [0x${addr.toString(16)}, +${b.sizes[i]}) is not inside the pool`,
            { addr, size: b.sizes[i] },
          );
        }
        b.out[i] = addr;
        continue;
      }
      const addr = this.pool.tryAlloc(b.sizes[i]!, this.opts);
      if (addr < 0) {
        this.freeAllocated(i, b, true);
        return false;
      }
      b.addrs[i] = addr;
      b.out[i] = addr;
      b.allocated[i] = 1;
    }
    return true;
  }

  /** Nothing to copy: the buffers are where the device reads them. */
  copyIn(): undefined {
    return undefined;
  }

  /** Frees the buffers this request owns in the pool (no copy: nothing was bounced). */
  release(n: number, b: DmaBatch): undefined {
    this.freeAllocated(n, b, false);
    return undefined;
  }

  /** Copies `data` into the data entries of a placed batch, in order (a write's payload). */
  fill(n: number, b: DmaBatch, first: number, data: Uint8Array): void {
    let at = 0;
    for (let i = first; i < n && at < data.length; i++) {
      const size = Math.min(b.sizes[i]!, data.length - at);
      copyView(this.pool.data, this.pool.offsetOf(b.out[i]!), data.subarray(at, at + size));
      at += size;
    }
  }

  /**
   * A synthetic write's fill (write-fill.ts) over the first `length` bytes of the
   * data entries [first, ...) of a placed batch, for an I/O at device byte
   * `offset`: each segment in turn, with one stamp for the I/O.
   */
  fillSynthetic(
    n: number,
    b: DmaBatch,
    first: number,
    length: number,
    filler: WriteFiller,
    kind: WriteFill,
    offset: number,
  ): void {
    const stamp = filler.nextStamp();
    let at = 0;
    for (let i = first; i < n && at < length; i++) {
      const size = Math.min(b.sizes[i]!, length - at);
      filler.fill(kind, this.pool.data, this.pool.offsetOf(b.out[i]!), size, offset + at, stamp);
      at += size;
    }
  }

  /**
   * Copies the first `bytes` bytes of the data entries [first, ...) of a completed
   * batch into `out` (one read of each pool byte), and zeroes the rest of `out`.
   */
  copyOut(n: number, b: DmaBatch, first: number, out: Uint8Array, bytes: number): void {
    let at = 0;
    for (let i = first; i < n && at < bytes; i++) {
      const size = Math.min(b.sizes[i]!, bytes - at);
      const off = this.pool.offsetOf(b.out[i]!);
      copyView(out, at, this.pool.data.subarray(off, off + size));
      at += size;
    }
    if (at < out.length) out.fill(0, at);
  }

  /**
   * Frees what the batch owns among its first `count` entries; `undo` (a failed
   * tryPlace) also puts the entries it allocated back to -1.
   */
  private freeAllocated(count: number, b: DmaBatch, undo: boolean): void {
    for (let i = 0; i < count; i++) {
      if (b.allocated[i] !== 1) continue;
      b.allocated[i] = 0;
      this.free(b.addrs[i]!, b.sizes[i]!);
      if (undo) b.addrs[i] = -1;
    }
  }
}

/**
 * Shared mode: pool buffers holding one write's data, filled by the caller before
 * the write is submitted (the HTTP service reads a request body straight into
 * them). From BlkDriver.allocBuffer; BlkDriver.writeBuffer takes
 * them over. The device can see them as soon as they are allocated.
 */
export interface PoolBuffer {
  readonly length: number;
  /** Copies `chunk` in at byte `at` of the buffer. */
  write(chunk: Uint8Array, at: number): void;
  /** Frees the buffers unless a write took them over; safe to call more than once. */
  release(): void;
}

/**
 * A shared-mode write's data in the pool, allocated before the write is submitted:
 * segments of the driver's segment size (the layout the request's chain will have),
 * all allocated at once or none.
 *
 *   state: held  -> taken (a request owns the segments now and frees them)
 *          held  -> freed (release(): the caller gave up)
 */
export class SharedWriteBuffer implements PoolBuffer {
  state: 'held' | 'taken' | 'freed' = 'held';
  private readonly addrs: Float64Array;
  private readonly sizes: Uint32Array;
  private allocated = false;

  /**
   * @param owner who allocated it (the driver): only that driver may take it over,
   *   since its segments were sized, gated and will be freed by that driver's pool
   */
  constructor(
    private readonly dma: SharedDma,
    readonly length: number,
    segmentBytes: number,
    private readonly onFree: () => void,
    readonly owner: object,
  ) {
    const count = Math.max(1, Math.ceil(length / segmentBytes));
    this.addrs = new Float64Array(count).fill(-1);
    this.sizes = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      this.sizes[i] = Math.min(segmentBytes, length - i * segmentBytes);
    }
  }

  /** All segments or none; false when the pool has no room (the gate waits). */
  allocate(): boolean {
    for (let i = 0; i < this.addrs.length; i++) {
      const addr = this.dma.allocate(this.sizes[i]!);
      if (addr < 0) {
        for (let k = 0; k < i; k++) {
          this.dma.free(this.addrs[k]!, this.sizes[k]!);
          this.addrs[k] = -1;
        }
        return false;
      }
      this.addrs[i] = addr;
    }
    this.allocated = true;
    return true;
  }

  /** Pool bytes the segments take with swiotlb_alloc()'s alignment. */
  paddedBytes(): number {
    let total = 0;
    for (const size of this.sizes) total += this.dma.allocBytes(size);
    return total;
  }

  write(chunk: Uint8Array, at: number): void {
    if (this.state !== 'held' || !this.allocated) {
      throw new MediatorError('MEDIATOR_BAD_CONFIG', 'this pool buffer was freed or written');
    }
    if (!Number.isSafeInteger(at) || at < 0 || at + chunk.length > this.length) {
      throw new MediatorError(
        'DMA_BAD_ADDRESS',
        `${chunk.length} bytes at ${at} do not fit a pool buffer of ${this.length}`,
        { at, length: chunk.length },
      );
    }
    let seg = 0;
    let segStart = 0;
    while (segStart + this.sizes[seg]! <= at) segStart += this.sizes[seg++]!;
    let done = 0;
    while (done < chunk.length) {
      const within = at + done - segStart;
      const n = Math.min(this.sizes[seg]! - within, chunk.length - done);
      copyView(this.dma.view(this.addrs[seg]! + within, n), 0, chunk.subarray(done, done + n));
      done += n;
      segStart += this.sizes[seg++]!;
    }
  }

  /** Gives the segments to a request's batch, entries [first, end): it frees them now. */
  handOver(b: DmaBatch, first: number, end: number): void {
    if (this.state !== 'held' || end - first !== this.addrs.length) {
      throw new MediatorError('MEDIATOR_BAD_CONFIG', 'this pool buffer cannot be handed over');
    }
    for (let i = first; i < end; i++) {
      b.addrs[i] = this.addrs[i - first]!;
      b.allocated[i] = 1;
    }
    this.state = 'taken';
  }

  release(): void {
    if (this.state !== 'held') return;
    this.state = 'freed';
    if (!this.allocated) return;
    for (let i = 0; i < this.addrs.length; i++) this.dma.free(this.addrs[i]!, this.sizes[i]!);
    this.onFree();
  }
}
