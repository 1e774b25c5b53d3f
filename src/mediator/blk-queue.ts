import type { Worker } from 'node:worker_threads';
import { MediatorError } from '../errors.js';
import { IO_TLB_SIZE, PAGE_SIZE } from '../swiotlb/constants.js';
import { Fifo } from '../util/fifo.js';
import { threadClock } from '../virtio/thread-clock.js';
import { layoutAt, virtqueueBytes } from '../virtio/virtqueue-layout.js';
import { type DeviceContext, REQUEST_CTL_BYTES } from './blk-options.js';
import type { FromDeviceBounce } from './defaults.js';
import { type BatchDma, BounceDma, createBatch, DirectDma, type DmaBatch } from './dma.js';
import { GuestVirtqueue, type UsedSink } from './driver-virtqueue.js';
import { SharedDma } from './shared-dma.js';

/**
 * One virtqueue of a block device on the guest side: where the host placed it,
 * the guest DMA it maps through, and its request slots.
 *
 * Each slot owns, for the device's lifetime, REQUEST_CTL_BYTES for the
 * virtio_blk_req header and status byte (in guest memory; in the pool in shared
 * mode), one data buffer of maxRequestBytes in guest memory (none in shared mode,
 * where each request allocates its data in the pool), and a preallocated
 * descriptor batch: a request allocates no buffer or batch of its own in bounce
 * and direct mode, only its promises.
 *
 *   freeSlots (stack)        slots                       byHead[descriptor head]
 *   [ 31 30 ... k ]   ->   [ 0 | 1 | ... | depth-1 ]  <-  the request whose chain
 *   slotWaiters (FIFO): callers waiting for a slot        starts there, while the
 *                                                          device holds it
 *   quarantine: [ timed-out slots ], freed by the reset that follows (or close)
 * Rules:
 * - a slot is in freeSlots, or busy (one caller owns it), or quarantined (its
 *   request timed out: the device may still write into its buffers, so they stay
 *   mapped and the slot unused until the device thread has been stopped);
 * - a quarantined slot is on `quarantine` from its timeout until the reset that
 *   follows it (or close) has stopped the device thread and frees its buffers and
 *   the slot; that list, not byHead, is what the reset frees: a late used entry
 *   (a completion or a fault) takes a timed-out request out of byHead while the
 *   thread is still being stopped;
 * - a freed slot goes to the oldest waiter first, so no caller starves;
 * - byHead[h] is set from when the chain is added until its used entry is taken
 *   (or the device is reset); the used ring names heads, never slots.
 */

/** Owner id of virtqueue memory in the pool: no guest can unmap it. */
export const QUEUE_OWNER = 0x7fff_fff0;

export interface RequestSlot {
  readonly slot: number;
  /** Header and status: a guest address, or a pool address in shared mode. */
  readonly ctlAddr: number;
  /** The slot's data buffer in guest memory; -1 in shared mode. */
  readonly dataAddr: number;
  readonly batch: DmaBatch;
  /** Per buffer of the chain: 1 when the device writes it (VIRTQ_DESC_F_WRITE). */
  readonly writes: Uint8Array;
  /** Buffers in the chain being submitted. */
  n: number;
  head: number;
  submittedAt: number;
  /**
   * Timed out: its buffers stay mapped (quarantined), and it stays on its queue's
   * `quarantine`, until the device thread is stopped.
   */
  quarantined: boolean;
  busy: boolean;
  complete: ((len: number) => void) | undefined;
  fail: ((err: Error) => void) | undefined;
  /** Places this request's buffers (made once per slot: no closure per request). */
  place: () => boolean;
  fullError: () => MediatorError;
}

export interface BlkQueue {
  readonly index: number;
  readonly dma: BatchDma;
  /** Shared mode: the same object as `dma`, typed for its buffer operations. */
  readonly shared: SharedDma | undefined;
  readonly vq: GuestVirtqueue;
  /** What the device thread may see: the pool (bounce, shared) or guest memory (direct). */
  readonly memory: SharedArrayBuffer;
  readonly memBase: number;
  /** Pool address of the queue memory (bounce, shared) or -1. */
  readonly poolAddr: number;
  /** Pool address of the request slots' control blocks (shared) or -1. */
  readonly ctlPoolAddr: number;
  /** Bytes of the control blocks (all modes). */
  readonly ctlBytes: number;
  readonly requests: RequestSlot[];
  readonly freeSlots: number[];
  readonly slotWaiters: Fifo<(slot: number) => void>;
  readonly byHead: (RequestSlot | undefined)[];
  /** Timed-out requests whose buffers and slots the next reset (or close) frees. */
  readonly quarantine: RequestSlot[];
  worker: Worker | undefined;
  /** The device thread's idle time, added up by the thread (src/virtio/thread-clock.ts). */
  readonly threadClock: SharedArrayBuffer;
  publishScheduled: boolean;
  publishNow: () => void;
  /** A rearm is due on the next event-loop turn (the driver polls for completions). */
  pollPending: boolean;
  /** The sleeping device is to be woken at the end of this turn (BlkDriver.ring). */
  ringDue: boolean;
  ringNow: () => void;
  rearm: () => void;
  lastCompletion: number;
  /** Completions reaped by re-polls in this event-loop turn (BlkDriver.publishNow; at most REAP_BUDGET). */
  turnReaped: number;
  /** The device thread has started serving (timeouts count from then). */
  ready: Promise<void>;
  isReady: boolean;
  /** performance.now() when the current device thread was started (startDeviceThread). */
  startedAt: number;
  armed: boolean;
  sink: UsedSink;
}

export interface QueueShape {
  deviceId: string;
  queueSize: number;
  depth: number;
  maxRequestBytes: number;
  maxDescs: number;
  /**
   * Bounce mode: what a DMA_FROM_DEVICE buffer's map and unmap copy.
   * @default 'linux'
   */
  fromDeviceBounce?: FromDeviceBounce;
}

/** Takes page-aligned pool memory for the host's own structures (queues, control blocks). */
function poolCoherent(
  ctx: DeviceContext,
  bytes: number,
  area: number,
  what: string,
  shape: QueueShape,
): number {
  const pool = ctx.pool!;
  let addr: number;
  try {
    // dma_alloc_coherent() -> swiotlb_alloc(): page-aligned size, aligned to its order.
    addr = pool.tryAlloc(bytes, { minAlignMask: ctx.minAlignMask ?? 0, owner: QUEUE_OWNER, area });
  } catch (err) {
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `device ${shape.deviceId}: ${what} (${bytes} bytes) cannot be placed in the pool: ${(err as Error).message}`,
    );
  }
  if (addr < 0) {
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `device ${shape.deviceId}: the pool has no room for ${what} (${bytes} bytes)`,
    );
  }
  return addr;
}

/**
 * The queue's request slots: slot s owns REQUEST_CTL_BYTES at ctlBase + s *
 * REQUEST_CTL_BYTES, maxRequestBytes of data at dataBase + s * maxRequestBytes
 * (none when dataBase is -1: shared mode), and a descriptor batch of its own.
 */
function requestSlots(
  ctx: DeviceContext,
  shape: QueueShape,
  dma: BatchDma,
  ctlBase: number,
  dataBase: number,
): RequestSlot[] {
  const requests: RequestSlot[] = [];
  for (let s = 0; s < shape.depth; s++) {
    const req: RequestSlot = {
      slot: s,
      ctlAddr: ctlBase + s * REQUEST_CTL_BYTES,
      dataAddr: dataBase < 0 ? -1 : dataBase + s * shape.maxRequestBytes,
      batch: createBatch(shape.maxDescs),
      writes: new Uint8Array(shape.maxDescs),
      n: 0,
      head: -1,
      submittedAt: 0,
      quarantined: false,
      busy: false,
      complete: undefined,
      fail: undefined,
      place: () => dma.tryPlace(req.n, req.batch),
      fullError: () => ctx.pool!.fullError(paddedTotal(ctx, req.n, req.batch)),
    };
    requests.push(req);
  }
  return requests;
}

/**
 * Places queue `index`: in bounce and shared mode the host allocates the virtqueue
 * in the pool (dma_alloc_coherent() from a restricted pool: the pool's
 * swiotlb_alloc(), never bounced) starting in area index mod nareas; in direct mode
 * it sits in guest memory. Then reserves the request slots' control blocks (the pool in shared
 * mode, else guest memory) and data buffers (guest memory; none in shared mode).
 * The caller wires the device thread and the completion callbacks (worker, sink,
 * rearm, publishNow, ringNow).
 * @throws MEDIATOR_BAD_CONFIG when the pool has no room for the queue
 */
export function placeQueue(ctx: DeviceContext, index: number, shape: QueueShape): BlkQueue {
  const bytes = virtqueueBytes(shape.queueSize);
  const ctlBytes = shape.depth * REQUEST_CTL_BYTES;
  let memory: SharedArrayBuffer;
  let memBase: number;
  let base: number;
  let poolAddr = -1;
  let ctlPoolAddr = -1;
  let dma: BatchDma;
  let shared: SharedDma | undefined;
  if (ctx.mode === 'bounce' || ctx.mode === 'shared') {
    const pool = ctx.pool!;
    const area = index % pool.geometry.nareas;
    poolAddr = poolCoherent(ctx, bytes, area, `a queue of ${shape.queueSize} descriptors`, shape);
    memory = pool.share().data;
    memBase = pool.geometry.base;
    base = poolAddr;
    if (ctx.mode === 'bounce') {
      dma = new BounceDma(
        {
          guest: ctx.guest,
          guestRegion: ctx.guestRegion!,
          pool,
          poolRegion: ctx.poolRegion!,
          engine: ctx.engine!,
        },
        {
          minAlignMask: ctx.minAlignMask ?? 0,
          area,
          fromDevice: shape.fromDeviceBounce ?? 'linux',
        },
      );
    } else {
      try {
        ctlPoolAddr = poolCoherent(ctx, ctlBytes, area, `${shape.depth} request headers`, shape);
      } catch (err) {
        pool.free(poolAddr, bytes, QUEUE_OWNER);
        throw err;
      }
      shared = new SharedDma(pool, {
        minAlignMask: ctx.minAlignMask ?? 0,
        area,
        owner: ctx.guestRegion ?? 0,
      });
      dma = shared;
    }
  } else {
    memory = ctx.guest.buffer;
    memBase = ctx.guest.base;
    base = ctx.guest.reserve(bytes, PAGE_SIZE);
    dma = new DirectDma(ctx.guest);
  }
  const vq = new GuestVirtqueue(memory, memBase, layoutAt(base, shape.queueSize));
  const ctlBase = ctlPoolAddr >= 0 ? ctlPoolAddr : ctx.guest.reserve(ctlBytes, PAGE_SIZE);
  const dataBase =
    ctx.mode === 'shared' ? -1 : ctx.guest.reserve(shape.depth * shape.maxRequestBytes, PAGE_SIZE);
  const requests = requestSlots(ctx, shape, dma, ctlBase, dataBase);
  return {
    index,
    dma,
    shared,
    vq,
    memory,
    memBase,
    poolAddr,
    ctlPoolAddr,
    ctlBytes,
    requests,
    freeSlots: Array.from({ length: shape.depth }, (_, i) => shape.depth - 1 - i),
    slotWaiters: new Fifo(),
    byHead: new Array(shape.queueSize),
    quarantine: [],
    worker: undefined,
    threadClock: threadClock(),
    publishScheduled: false,
    publishNow: () => undefined,
    pollPending: false,
    ringDue: false,
    ringNow: () => undefined,
    rearm: () => undefined,
    lastCompletion: 0,
    turnReaped: 0,
    ready: Promise.resolve(),
    isReady: false,
    startedAt: 0,
    armed: false,
    sink: undefined as unknown as UsedSink,
  };
}

/** Gives the queue's pool memory back (bounce, shared); the device thread must be stopped. */
export function releaseQueueMemory(ctx: DeviceContext, q: BlkQueue): void {
  if (q.poolAddr >= 0) ctx.pool!.free(q.poolAddr, q.vq.layout.bytes, QUEUE_OWNER);
  if (q.ctlPoolAddr >= 0) ctx.pool!.free(q.ctlPoolAddr, q.ctlBytes, QUEUE_OWNER);
}

/** Resolves with a slot once one is freed for this caller (FIFO), or -1 at close. */
export function waitForSlot(q: BlkQueue): Promise<number> {
  return new Promise<number>((resolve) => q.slotWaiters.push(resolve));
}

/** Hands the slot to the oldest waiter, or back to the free stack. */
export function freeSlot(q: BlkQueue, req: RequestSlot): void {
  req.busy = false;
  req.quarantined = false;
  const waiter = q.slotWaiters.shift();
  if (waiter) waiter(req.slot);
  else q.freeSlots.push(req.slot);
}

/** Tells every caller waiting for a slot that none will come (close). */
export function failSlotWaiters(q: BlkQueue): void {
  for (let w = q.slotWaiters.shift(); w !== undefined; w = q.slotWaiters.shift()) w(-1);
}

/** Pool bytes the batch needs with its alignment padding (the "buffer is full" message). */
function paddedTotal(ctx: DeviceContext, n: number, b: DmaBatch): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (ctx.mode === 'shared') {
      // Only the entries still to allocate, in the slots swiotlb_alloc() takes for them.
      if (b.addrs[i]! < 0) total += ctx.pool!.allocSlots(b.sizes[i]!) * IO_TLB_SIZE;
    } else {
      total += ctx.pool!.paddedSize(b.addrs[i]!, b.sizes[i]!, {
        minAlignMask: ctx.minAlignMask ?? 0,
      });
    }
  }
  return total;
}
