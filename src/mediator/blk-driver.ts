import { closeSync, existsSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { MediatorError } from '../errors.js';
import { DmaAttr, IO_TLB_SIZE } from '../swiotlb/constants.js';
import { BucketHistogram, LATENCY_BUCKETS_SECONDS } from '../util/bucket-histogram.js';
import { type Logger, NO_LOG, RateLimit } from '../util/logger.js';
import {
  BLK_HEADER_BYTES,
  SECTOR_SIZE,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../virtio/blk-format.js';
import { DEVICE_KINDS, type DeviceKind, type DeviceWorkerData } from '../virtio/device-spec.js';
import { idleMs } from '../virtio/thread-clock.js';
import { copyView } from '../workers/shared-copy.js';
import {
  BLK_OPS,
  type BlkDriverOptions,
  type BlkOp,
  type DeviceContext,
  deviceGuestLayout,
  OUTCOMES,
  type Outcome,
} from './blk-options.js';
import {
  type BlkQueue,
  failSlotWaiters,
  freeSlot,
  placeQueue,
  type RequestSlot,
  releaseQueueMemory,
  waitForSlot,
} from './blk-queue.js';
import { dataWritten, layOutRequest, opOf, outcomeOf, statusError } from './blk-request.js';
import {
  DEVICE_DEFAULTS,
  defaultDeviceSpinMicros,
  type FromDeviceBounce,
  type Mode,
} from './defaults.js';
import { deviceWorkerData, startDeviceThread, stopDeviceThread } from './device-thread.js';
import { FAULT_KINDS, type FaultKind, type UsedSink } from './driver-virtqueue.js';
import { LIMITS } from './limits.js';
import { type PoolBuffer, SharedWriteBuffer } from './shared-dma.js';
import { WriteFill, WriteFiller } from './write-fill.js';

export * from './blk-options.js';
export type { PoolBuffer } from './shared-dma.js';

export interface DeviceStats {
  id: string;
  kind: DeviceKind;
  mode: Mode;
  /** Bounce mode: what a read's map and unmap copy (`linux` or `used-length`). */
  fromDeviceBounce: FromDeviceBounce;
  capacity: number;
  queues: {
    index: number;
    size: number;
    depth: number;
    inFlight: number;
    waiting: number;
    /**
     * Seconds its device thread has spent polling for requests or asleep, as the
     * thread adds them up ({@link BlkDriver.deviceIdleMs}); null while that is no
     * number of seconds.
     */
    idleSeconds: number | null;
  }[];
  /** Requests finished, by op and outcome. */
  requests: Record<BlkOp, Record<Outcome, number>>;
  inFlight: number;
  /** Device misbehaviour detected, by kind. */
  faults: Record<FaultKind, number>;
  timeouts: number;
  resets: number;
  bytesRead: number;
  bytesWritten: number;
}

/** Why a device was reset: by its owner, after a request timed out, or its thread died. */
export type ResetReason = 'requested' | 'timeout' | 'thread_error' | 'thread_exit';

/**
 * Completions a queue reaps by re-polling within one event-loop turn (BlkDriver
 * reapInTurn), beyond the turn's own poll. It bounds how long completions hold
 * the thread before the event loop's other work runs, as NAPI's weight bounds a
 * network poll: include/linux/netdevice.h (5.15, and 6.x alike), "Default NAPI
 * poll() weight / Device drivers are strongly advised to not use bigger value",
 * #define NAPI_POLL_WEIGHT 64.
 */
export const REAP_BUDGET = 64;

/** A settled promise whose reactions queue a microtask ({@link BlkDriver.schedulePublish}). */
const SETTLED = Promise.resolve();

const RESET_WHY: Record<ResetReason, string> = {
  requested: 'requested',
  timeout: 'a request timed out',
  thread_error: 'its device thread failed',
  thread_exit: 'its device thread exited',
};

/** A queue's device-thread idle time in seconds, or null (see DeviceStats.queues). */
function idleSecondsOf(q: BlkQueue): number | null {
  const ms = idleMs(q.threadClock);
  return Number.isNaN(ms) ? null : ms / 1000;
}

function zeroOutcomes(): Record<Outcome, number> {
  return Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
}

/**
 * A virtio-blk device as the guest drives it: its virtqueues placed by the host in
 * the memory the device may see, one untrusted device thread per queue, and the
 * request pipeline (map, build the chain, notify, await and validate the used
 * entry, unmap, complete). This file is the pipeline, timeouts and resets; the
 * queue's placement and request slots are in blk-queue.ts, the request's layout in
 * blk-request.ts, the device threads in device-thread.ts.
 */
export class BlkDriver {
  readonly id: string;
  readonly kind: DeviceKind;
  readonly mode: Mode;
  readonly fromDeviceBounce: FromDeviceBounce;
  readonly capacity: number;
  readonly maxRequestBytes: number;
  readonly depth: number;
  readonly queueSize: number;
  readonly timeoutMs: number;
  /** See BlkDeviceOptions.readyTimeoutMs (never below timeoutMs). */
  private readonly readyTimeoutMs: number;
  private readonly ctx: DeviceContext;
  private readonly opts: BlkDriverOptions;
  private readonly queues: BlkQueue[] = [];
  private readonly segmentBytes: number;
  private readonly maxDescs: number;
  /** Fills synthetic writes' buffers as fio does (write-fill.ts). */
  private readonly filler = new WriteFiller();
  private readonly backing: SharedArrayBuffer | undefined;
  private fd: number | undefined;
  /**
   * file-blk: one Int32, the errno of the first fdatasync() that failed on the
   * backing file, 0 while none has; shared by every queue's thread and kept
   * across resets, as the descriptor is (FileStore).
   */
  private readonly syncFailed = new SharedArrayBuffer(4);
  private nextQueue = 0;
  /** The most data a request may carry and still fit the pool ({@link refuseWhatNeverFits}). */
  private poolFitBytes = Number.POSITIVE_INFINITY;
  private closing = false;
  private resetting: Promise<void> | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly counters: {
    requests: Record<BlkOp, Record<Outcome, number>>;
    faults: Record<FaultKind, number>;
    timeouts: number;
    resets: number;
    bytesRead: number;
    bytesWritten: number;
    inFlight: number;
  };
  private idleWaiters: (() => void)[] = [];
  /**
   * The memory the request slots' control blocks (header, status) are in, and
   * its first byte's address: guest memory, or the pool in shared mode.
   */
  private readonly ctlView: DataView;
  private readonly ctlBytes: Uint8Array;
  private readonly ctlBase: number;
  private readonly pollMs: number;
  private readonly recordLatency: boolean;
  /** Completion latency (seconds) of finished requests, by op; read at scrape time. */
  readonly latency: Record<BlkOp, BucketHistogram>;
  /** Every record carries `device`. */
  private readonly log: Logger;
  /** One fault warning per burst: a hostile device can fault on every request. */
  private readonly faultLimit: RateLimit;
  /** One store-error warning per burst: a failing disk fails every request. */
  private readonly ioErrorLimit: RateLimit;

  constructor(ctx: DeviceContext, opts: BlkDriverOptions) {
    this.ctx = ctx;
    this.opts = opts;
    this.log = (ctx.log ?? NO_LOG).child({ device: opts.id });
    this.faultLimit = new RateLimit(ctx.logIntervalMs);
    this.ioErrorLimit = new RateLimit(ctx.logIntervalMs);
    const ctlMemory = ctx.mode === 'shared' ? ctx.pool?.share().data : ctx.guest.buffer;
    this.ctlView = new DataView(ctlMemory ?? ctx.guest.buffer);
    this.ctlBytes = new Uint8Array(ctlMemory ?? ctx.guest.buffer);
    this.ctlBase = ctx.mode === 'shared' && ctx.pool ? ctx.pool.geometry.base : ctx.guest.base;
    this.pollMs = (opts.pollMicros ?? DEVICE_DEFAULTS.pollMicros) / 1000;
    this.recordLatency = opts.recordLatency ?? DEVICE_DEFAULTS.recordLatency;
    this.latency = Object.fromEntries(
      BLK_OPS.map((op) => [op, new BucketHistogram(LATENCY_BUCKETS_SECONDS)]),
    ) as Record<BlkOp, BucketHistogram>;
    this.id = opts.id;
    this.kind = opts.kind;
    this.mode = ctx.mode;
    this.fromDeviceBounce = opts.fromDeviceBounce ?? DEVICE_DEFAULTS.fromDeviceBounce;
    if (!DEVICE_KINDS.includes(opts.kind)) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: kind "${String(opts.kind)}" is not one of ${DEVICE_KINDS.join(', ')}`,
      );
    }
    this.capacity = opts.capacity ?? DEVICE_DEFAULTS.capacity;
    if (!Number.isSafeInteger(this.capacity) || this.capacity <= 0 || this.capacity % SECTOR_SIZE) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: capacity ${this.capacity} must be a positive multiple of 512`,
      );
    }
    this.maxRequestBytes = opts.maxRequestBytes ?? DEVICE_DEFAULTS.maxRequestBytes;
    if (this.maxRequestBytes <= 0 || this.maxRequestBytes % SECTOR_SIZE) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: maxRequestBytes ${this.maxRequestBytes} must be a positive multiple of 512`,
      );
    }
    this.timeoutMs = opts.timeoutMs ?? DEVICE_DEFAULTS.timeoutMs;
    this.readyTimeoutMs = Math.max(
      this.timeoutMs,
      opts.readyTimeoutMs ?? DEVICE_DEFAULTS.readyTimeoutMs,
    );
    this.queueSize = opts.queueSize ?? DEVICE_DEFAULTS.queueSize;
    const queues = opts.queues ?? DEVICE_DEFAULTS.queues;
    const [minQueues, maxQueues] = LIMITS.queues;
    if (!Number.isInteger(queues) || queues < minQueues || queues > maxQueues) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: queues must be from ${minQueues} to ${maxQueues}`,
      );
    }
    if (
      ctx.mode !== 'direct' &&
      (!ctx.pool || !ctx.gate || (ctx.mode === 'bounce' && !ctx.engine))
    ) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: ${ctx.mode} mode needs a pool`,
      );
    }
    const layout = deviceGuestLayout(
      {
        queues,
        queueSize: this.queueSize,
        depth: opts.depth ?? DEVICE_DEFAULTS.depth,
        maxRequestBytes: this.maxRequestBytes,
        minAlignMask: ctx.minAlignMask ?? DEVICE_DEFAULTS.minAlignMask,
      },
      ctx.mode,
    );
    this.segmentBytes = layout.segmentBytes;
    this.maxDescs = layout.maxDescs;
    this.depth = layout.depth;
    this.counters = {
      requests: Object.fromEntries(BLK_OPS.map((op) => [op, zeroOutcomes()])) as Record<
        BlkOp,
        Record<Outcome, number>
      >,
      faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
      timeouts: 0,
      resets: 0,
      bytesRead: 0,
      bytesWritten: 0,
      inFlight: 0,
    };
    if (opts.kind === 'ram-blk' || opts.kind === 'chaos') {
      this.backing = new SharedArrayBuffer(this.capacity);
    }
    if (opts.kind === 'file-blk') this.fd = this.openFile();
    try {
      for (let q = 0; q < queues; q++) this.queues.push(this.setupQueue(q));
    } catch (err) {
      this.abandon();
      throw err;
    }
    this.sweeper = setInterval(() => this.sweep(), Math.max(5, this.timeoutMs / 4));
    this.sweeper.unref();
  }

  /**
   * Reads `length` bytes at `sector`; returns a copy of them (or nothing with
   * `copyOut: false`). The copy holds the bytes the device's used length says it
   * wrote, zeros past them (VIRTIO 1.2 §2.7.8.3: the driver makes no assumption
   * about the rest): a slot's buffer never hands one caller's old data to another.
   */
  async read(
    sector: number,
    length: number,
    copyOut = true,
    queue?: number,
  ): Promise<Buffer | undefined> {
    if (!copyOut) {
      await this.submit(VIRTIO_BLK_T_IN, sector, length, queue);
      return undefined;
    }
    this.checkLength('read', length); // before the buffer is made for it
    const out = Buffer.allocUnsafe(length);
    await this.submit(VIRTIO_BLK_T_IN, sector, length, queue, undefined, out);
    return out;
  }

  /**
   * Writes `data` at `sector`; or, given a length, a synthetic I/O: the guest
   * buffer as it is, or first filled as `fill` says (what fio does to its
   * buffers: write-fill.ts).
   */
  write(
    sector: number,
    data: Uint8Array | number,
    queue?: number,
    fill: WriteFill = WriteFill.NONE,
  ): Promise<void> {
    if (typeof data !== 'number')
      return this.submit(VIRTIO_BLK_T_OUT, sector, data.length, queue, data);
    return this.submit(
      VIRTIO_BLK_T_OUT,
      sector,
      data,
      queue,
      undefined,
      undefined,
      undefined,
      fill,
    );
  }

  async flush(queue?: number): Promise<void> {
    await this.submit(VIRTIO_BLK_T_FLUSH, 0, 0, queue);
  }

  /** VIRTIO_BLK_T_GET_ID: the device's serial. */
  async getId(queue?: number): Promise<string> {
    // Parsed from a private copy: the pool is read once (shared mode).
    const out = Buffer.allocUnsafe(VIRTIO_BLK_ID_BYTES);
    await this.submit(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, queue, undefined, out);
    const end = out.indexOf(0);
    return out.subarray(0, end < 0 ? out.length : end).toString('latin1');
  }

  /**
   * Shared mode: allocates pool buffers for a write of `length` bytes (waiting at
   * the pool's back-pressure gate like any request), for the caller to fill and
   * hand to {@link writeBuffer}; the caller must release() them if it does not.
   * @throws MEDIATOR_BAD_CONFIG outside shared mode; BLK_BAD_LENGTH,
   *   MEDIATOR_REQUEST_TOO_LARGE, and what the gate throws (pool full, closing)
   */
  async allocBuffer(length: number, queue?: number): Promise<PoolBuffer> {
    const q = this.pickQueue(queue);
    const shared = q.shared;
    if (shared === undefined) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${this.id}: pool buffers exist in shared mode only (this device is in ${this.mode} mode)`,
      );
    }
    if (this.closing) throw new MediatorError('MEDIATOR_CLOSED', `device ${this.id} is closing`);
    this.checkLength('write', length);
    if (length === 0) {
      throw new MediatorError(
        'BLK_BAD_LENGTH',
        `device ${this.id}: a pool buffer holds at least one sector`,
        {
          length,
        },
      );
    }
    // Under the requeue policy, buffers taken before their request has a queue wait
    // in a line of the device's own (the gate's key when no queue is named).
    const buf = new SharedWriteBuffer(
      shared,
      length,
      this.segmentBytes,
      () => this.ctx.gate!.released(this.id),
      this,
    );
    const admitted = this.ctx.gate!.admit(
      () => buf.allocate(),
      () => this.ctx.pool!.fullError(buf.paddedBytes()),
      this.id,
    );
    if (admitted) await admitted;
    return buf;
  }

  /**
   * Shared mode: writes a buffer from {@link allocBuffer} at `sector`; the
   * request takes the buffer over (and frees it when it completes, or fails).
   */
  async writeBuffer(sector: number, buffer: PoolBuffer, queue?: number): Promise<void> {
    if (!(buffer instanceof SharedWriteBuffer) || buffer.state !== 'held') {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${this.id}: writeBuffer takes a buffer from allocBuffer, once`,
      );
    }
    try {
      // Another device's buffer lies in that device's pool (or is cut in its segment
      // size, and gated in its line): this driver could neither place nor free it.
      // Refused like any failed write: the buffer is freed (below).
      if (buffer.owner !== this) {
        throw new MediatorError(
          'MEDIATOR_BAD_CONFIG',
          `device ${this.id}: this pool buffer was allocated by another device; write it there`,
        );
      }
      await this.submit(
        VIRTIO_BLK_T_OUT,
        sector,
        buffer.length,
        queue,
        undefined,
        undefined,
        buffer,
      );
    } finally {
      buffer.release();
    }
  }

  /** Resolves when every queue's device thread is serving. */
  async ready(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.ready));
  }

  get queueCount(): number {
    return this.queues.length;
  }

  /**
   * Where the host placed this device's virtqueues in the pool (bounce mode; none
   * in direct mode, where they sit in guest memory): the coherent allocations a
   * slot map draws apart from bounce buffers. They stay put across resets.
   */
  queueMemory(): { addr: number; bytes: number }[] {
    return this.queues
      .filter((q) => q.poolAddr >= 0)
      .map((q) => ({ addr: q.poolAddr, bytes: q.vq.layout.bytes }));
  }

  stats(): DeviceStats {
    const c = this.counters;
    return {
      id: this.id,
      kind: this.kind,
      mode: this.mode,
      fromDeviceBounce: this.fromDeviceBounce,
      capacity: this.capacity,
      queues: this.queues.map((q) => ({
        index: q.index,
        size: this.queueSize,
        depth: this.depth,
        inFlight: q.vq.inFlight,
        waiting: q.slotWaiters.length,
        idleSeconds: idleSecondsOf(q),
      })),
      requests: structuredClone(c.requests),
      inFlight: c.inFlight,
      faults: { ...c.faults },
      timeouts: c.timeouts,
      resets: c.resets,
      bytesRead: c.bytesRead,
      bytesWritten: c.bytesWritten,
    };
  }

  /**
   * How long queue `queue`'s device thread has been idle (polling for requests or
   * asleep on the doorbell) since the queue was set up, in milliseconds: the
   * thread's own word (src/virtio/thread-clock.ts), to measure with; NaN when it
   * does not hold a number of milliseconds. What a window's length leaves beyond
   * it is the thread's work (bench:pipeline's device_us_per_io).
   * @throws BLK_BAD_QUEUE
   */
  deviceIdleMs(queue = 0): number {
    return idleMs(this.pickQueue(queue).threadClock);
  }

  /** What each device thread was given (for the isolation test and diagnostics). */
  workerData(queue = 0): DeviceWorkerData {
    return this.makeWorkerData(this.queues[queue]!);
  }

  /**
   * Stops every device thread, fails the requests in flight (MEDIATOR_DEVICE_RESET;
   * timed-out ones were failed already), frees their buffers without copying
   * anything back, clears the rings and starts fresh device threads. The disk
   * content survives. Requests queued for a slot go on afterwards.
   */
  reset(): Promise<void> {
    return this.resetFor('requested');
  }

  /** reset(), saying why in the log; a reset under way absorbs the later ones. */
  private resetFor(reason: ResetReason): Promise<void> {
    this.resetting ??= this.doReset(reason).finally(() => {
      this.resetting = undefined;
    });
    return this.resetting;
  }

  /**
   * Takes no new requests (MEDIATOR_CLOSED), waits for those in flight (bounded
   * by the request timeout), stops the device threads, frees the queue memory and
   * closes the backing file.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const q of this.queues) failSlotWaiters(q);
    if (this.counters.inFlight > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    if (this.resetting) await this.resetting;
    if (this.sweeper) clearInterval(this.sweeper);
    await Promise.all(this.queues.map((q) => stopDeviceThread(q, true)));
    // Every timeout was followed by a reset that freed it; this frees what a reset
    // could not (none is known), before the queue memory goes.
    const releasing: Promise<void>[] = [];
    for (const q of this.queues) this.releaseQuarantine(q, releasing);
    await Promise.all(releasing);
    for (const q of this.queues) releaseQueueMemory(this.ctx, q);
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  // ---------------------------------------------------------------------------
  // The request pipeline
  // ---------------------------------------------------------------------------

  /**
   * BLK_BAD_LENGTH or MEDIATOR_REQUEST_TOO_LARGE unless a request of `op` may move
   * `length` bytes: every request's check, and the one an answer that checks a
   * request without making it (the service's HEAD of a block read) asks.
   */
  checkLength(op: BlkOp, length: number): void {
    if (
      !Number.isSafeInteger(length) ||
      length < 0 ||
      length % (op === 'get_id' ? 1 : SECTOR_SIZE)
    ) {
      throw new MediatorError(
        'BLK_BAD_LENGTH',
        `device ${this.id}: length ${String(length)} must be a non-negative ${op === 'get_id' ? 'integer' : 'multiple of 512'}`,
        { length },
      );
    }
    if (length > this.maxRequestBytes) {
      throw new MediatorError(
        'MEDIATOR_REQUEST_TOO_LARGE',
        `request of ${length} bytes exceeds the device's ${this.maxRequestBytes}-byte limit per request`,
        { length, limit: this.maxRequestBytes },
      );
    }
    if (length > this.poolFitBytes) {
      throw new MediatorError(
        'MEDIATOR_REQUEST_TOO_LARGE',
        `request of ${length} bytes can never fit the device's pool: beside the virtqueues it holds at most ${this.poolFitBytes} bytes of one request's data`,
        { length, limit: this.poolFitBytes },
      );
    }
  }

  /**
   * MEDIATOR_IO_ERROR, before anything is mapped or sent, unless the `length`
   * bytes at `sector` lie within the capacity: VIRTIO 1.2 §5.2.6.1 (Block
   * Device, "Driver Requirements: Device Operation"): "A driver MUST NOT submit
   * a request which would cause a read or write beyond capacity". Linux
   * 6.12.117 never does: block/blk-core.c, submit_bio_noacct() -> bio_check_eod()
   * logs "attempt to access beyond end of device" and ends the bio with its
   * preset BLK_STS_IOERR (-EIO) before virtio-blk sees it. The same test: a bio
   * without sectors is not checked (`if (nr_sectors && (nr_sectors > maxsector ||
   * bio->bi_iter.bi_sector > maxsector - nr_sectors))`), so a read or write of no
   * data goes to the device, which fails it past the end (blk-backend.ts). Only
   * IN and OUT carry a sector range here: FLUSH and GET_ID have none (their
   * sector is 0), and DISCARD, WRITE_ZEROES and SECURE_ERASE are not offered.
   * The error's details carry the capacity in bytes (a 416 with Content-Range
   * over HTTP, whose routes refuse such a range first: HTTP_OUT_OF_RANGE).
   */
  private checkEnd(sector: number, length: number): void {
    const sectors = length / SECTOR_SIZE;
    const limit = this.capacity / SECTOR_SIZE;
    if (sectors > 0 && (sectors > limit || sector > limit - sectors)) {
      throw new MediatorError(
        'MEDIATOR_IO_ERROR',
        `device ${this.id}: attempt to access beyond end of device: sector ${sector}, nr_sectors ${sectors}, limit ${limit}; nothing was sent to the device`,
        { sector, length, capacity: this.capacity },
      );
    }
  }

  /**
   * Refuses from now on, at once and with MEDIATOR_REQUEST_TOO_LARGE, a request
   * that could never fit the pool: more data than `freeSlots` (the pool's slots
   * beside every virtqueue in it) hold once its header and status take a slot
   * each. Linux's virtio-blk requeues such a request for ever, and so does a
   * Mediator left as it is; the service asks for this, so that a client gets 413
   * rather than a wait that can only end in a timeout or the shutdown.
   */
  refuseWhatNeverFits(freeSlots: number): void {
    if (this.mode === 'direct') return;
    this.poolFitBytes = Math.max(0, freeSlots - 2) * IO_TLB_SIZE;
  }

  /**
   * One request: `data` is a write's payload (absent: whatever the buffer holds,
   * a synthetic I/O), `out` receives a read's data, `buffer` is a shared-mode
   * write's pool buffer, filled already. Not an async function: it validates and
   * takes a request slot, then returns {@link run}'s promise (one async frame per
   * request, not two); a bad argument is a rejected promise all the same.
   */
  private submit(
    type: number,
    sector: number,
    length: number,
    queueIndex: number | undefined,
    data?: Uint8Array,
    out?: Uint8Array,
    buffer?: SharedWriteBuffer,
    fill: WriteFill = WriteFill.NONE,
  ): Promise<void> {
    let q: BlkQueue;
    try {
      if (this.closing) throw new MediatorError('MEDIATOR_CLOSED', `device ${this.id} is closing`);
      if (!Number.isSafeInteger(sector) || sector < 0) {
        throw new MediatorError(
          'BLK_BAD_SECTOR',
          `device ${this.id}: sector ${String(sector)} must be a non-negative integer`,
          { sector },
        );
      }
      this.checkLength(opOf(type), length);
      if (type === VIRTIO_BLK_T_IN || type === VIRTIO_BLK_T_OUT) this.checkEnd(sector, length);
      q = this.pickQueue(queueIndex);
    } catch (err) {
      return Promise.reject(err);
    }
    const slot = q.freeSlots.pop();
    if (slot !== undefined) return this.run(q, slot, type, sector, length, data, out, buffer, fill);
    return waitForSlot(q).then((s) =>
      this.run(q, s, type, sector, length, data, out, buffer, fill),
    );
  }

  /**
   * A request in its slot: places and fills its buffers (mode by mode), submits
   * its chain, awaits and validates its completion, then {@link finish}; counts
   * it and frees the slot whatever happens.
   */
  private async run(
    q: BlkQueue,
    slot: number,
    type: number,
    sector: number,
    length: number,
    data: Uint8Array | undefined,
    out: Uint8Array | undefined,
    buffer: SharedWriteBuffer | undefined,
    fill: WriteFill,
  ): Promise<void> {
    if (slot < 0) throw new MediatorError('MEDIATOR_CLOSED', `device ${this.id} is closing`);
    const op: BlkOp = opOf(type);
    const req = q.requests[slot]!;
    const started = performance.now();
    req.busy = true;
    this.counters.inFlight++;
    let outcome: Outcome = 'error';
    try {
      // The device's clock for this request: from its slot, or from when it got pool
      // slots if it had to wait for them (so back-pressure never reads as a timeout).
      const placed = this.placeBuffers(q, req, type, sector, length, started, data, buffer, fill);
      const since = typeof placed === 'number' ? placed : await placed;
      let usedLen: number;
      try {
        usedLen = await this.completion(q, req, since);
      } catch (err) {
        // Unmapped, unless the request timed out (quarantined): the device may still
        // write into those slots, so they stay mapped until reset() has stopped it.
        if (!req.quarantined) {
          const releasing = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC, 0);
          if (releasing) await releasing;
        }
        throw err;
      } finally {
        req.complete = undefined;
        req.fail = undefined;
      }
      const finishing = this.finish(q, req, type, sector, length, usedLen, out);
      if (finishing) await finishing;
      outcome = 'ok';
      if (op === 'read') this.counters.bytesRead += length;
      if (op === 'write') this.counters.bytesWritten += length;
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      this.counters.requests[op][outcome]++;
      if (this.recordLatency) this.latency[op].observe((performance.now() - started) / 1000);
      if (!req.quarantined) freeSlot(q, req);
      if (--this.counters.inFlight === 0 && this.idleWaiters.length > 0) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const f of w) f();
      }
    }
  }

  /**
   * Submits the placed request's chain; resolves with the used length the device
   * reports (validated by the virtqueue), rejects on a timeout, a reset or a
   * device fault (the sink and the sweeper call req.complete / req.fail).
   */
  private completion(q: BlkQueue, req: RequestSlot, since: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      req.complete = resolve;
      req.fail = reject;
      const head = q.vq.addChain(req.n, req.batch.out, req.batch.sizes, req.writes);
      if (head < 0) {
        reject(new Error(`device ${this.id}: no free descriptors (depth accounting is wrong)`));
        return;
      }
      req.head = head;
      req.submittedAt = since;
      q.byHead[head] = req;
      this.schedulePublish(q);
    });
  }

  /**
   * After the device completed: unmaps (bounce: copies back what the device
   * wrote, by the fromDevice rule; direct: nothing to unmap), reads the status
   * once, hands a read's data back and throws on a failed status. Shared mode
   * reads the status and copies the data out before it frees the buffers, since
   * the device can still change them. A promise only when a copy back went to a
   * worker.
   */
  private finish(
    q: BlkQueue,
    req: RequestSlot,
    type: number,
    sector: number,
    length: number,
    usedLen: number,
    out: Uint8Array | undefined,
  ): Promise<void> | undefined {
    const statusAt = req.ctlAddr - this.ctlBase + BLK_HEADER_BYTES;
    if (q.shared) {
      // The device can still change these bytes: read the status once, copy the
      // data out once, then free the buffers; nothing is read from the pool again.
      const status = this.ctlBytes[statusAt]!;
      if (out && status === VIRTIO_BLK_S_OK) {
        q.shared.copyOut(req.n, req.batch, 1, out, dataWritten(length, usedLen));
      }
      this.releaseBuffers(q, req, 0, usedLen);
      this.checkStatus(q, status, type, sector, length);
      return undefined;
    }
    const releasing = this.releaseBuffers(q, req, 0, usedLen);
    if (releasing) {
      return releasing.then(() =>
        this.readBack(q, req, statusAt, type, sector, length, usedLen, out),
      );
    }
    this.readBack(q, req, statusAt, type, sector, length, usedLen, out);
    return undefined;
  }

  /** Bounce and direct mode, once unmapped: the status, and a read's data from guest memory. */
  private readBack(
    q: BlkQueue,
    req: RequestSlot,
    statusAt: number,
    type: number,
    sector: number,
    length: number,
    usedLen: number,
    out: Uint8Array | undefined,
  ): void {
    const status = this.ctlBytes[statusAt]!;
    if (out && status === VIRTIO_BLK_S_OK) {
      const guest = this.ctx.guest;
      const off = req.dataAddr - guest.base;
      const bytes = dataWritten(length, usedLen);
      copyView(out, 0, guest.bytes.subarray(off, off + bytes));
      if (bytes < out.length) out.fill(0, bytes);
    }
    this.checkStatus(q, status, type, sector, length);
  }

  /** Throws the error a status byte means (counting a byte no device may send as a fault). */
  private checkStatus(
    q: BlkQueue,
    status: number,
    type: number,
    sector: number,
    length: number,
  ): void {
    const failed = statusError(status, this.id, type, sector, length);
    if (failed === undefined) return;
    if (failed.code === 'MEDIATOR_DEVICE_FAULT') {
      this.counters.faults.bad_status++;
      this.warnFault(q.index, 'bad_status', `status byte ${status} is not a virtio-blk status`);
    }
    throw failed;
  }
  /**
   * Lays the request out and gets its buffers to the device: direct mode hands
   * over guest addresses; bounce mode places the buffers in the pool (through the
   * back-pressure gate) and makes the map copies; shared mode allocates the data
   * in the pool (through the gate) and writes the payload there, or takes over
   * a pool buffer the caller filled. Returns the time the device's clock starts,
   * as a promise only when the gate or a copy worker made it wait (no microtask
   * hop per request otherwise).
   */
  private placeBuffers(
    q: BlkQueue,
    req: RequestSlot,
    type: number,
    sector: number,
    length: number,
    started: number,
    data: Uint8Array | undefined,
    buffer: SharedWriteBuffer | undefined,
    fill: WriteFill,
  ): number | Promise<number> {
    const guest = this.ctx.guest;
    const shared = q.shared;
    layOutRequest(
      this.ctlView,
      this.ctlBase,
      req,
      type,
      sector,
      length,
      this.segmentBytes,
      shared ? -1 : req.dataAddr,
    );
    const n = req.n;
    const b = req.batch;
    if (!shared) {
      if (data) copyView(guest.bytes, req.dataAddr - guest.base, data);
      else if (fill !== WriteFill.NONE) {
        const stamp = this.filler.nextStamp();
        this.filler.fill(fill, guest.bytes, req.dataAddr - guest.base, length, sector * 512, stamp);
      }
    }
    if (this.mode === 'direct') {
      q.dma.tryPlace(n, b);
      return started;
    }
    if (buffer) {
      // Cannot throw: writeBuffer() took only this driver's buffers, which lie in
      // its pool, so every entry is placed already and nothing is allocated.
      buffer.handOver(b, 1, n - 1);
      q.dma.tryPlace(n, b);
      return started;
    }
    const admitted = this.ctx.gate!.admit(req.place, req.fullError, this.id, q);
    if (admitted) {
      return admitted.then(() =>
        this.fillPlaced(q, req, data, performance.now(), fill, sector, length),
      );
    }
    return this.fillPlaced(q, req, data, started, fill, sector, length);
  }

  /**
   * After the gate placed a request's buffers: shared mode writes the payload (or
   * a synthetic write's fill) into them, bounce mode makes the map copies
   * (unmapping them again if a copy fails).
   */
  private fillPlaced(
    q: BlkQueue,
    req: RequestSlot,
    data: Uint8Array | undefined,
    since: number,
    fill: WriteFill,
    sector: number,
    length: number,
  ): number | Promise<number> {
    const shared = q.shared;
    if (shared) {
      if (data) shared.fill(req.n, req.batch, 1, data);
      else if (fill !== WriteFill.NONE) {
        shared.fillSynthetic(req.n, req.batch, 1, length, this.filler, fill, sector * 512);
      }
      return since;
    }
    let copying: Promise<unknown> | undefined;
    try {
      copying = q.dma.copyIn(req.n, req.batch);
    } catch (err) {
      return this.unplace(q, req, err);
    }
    if (copying === undefined) return since;
    return copying.then(
      () => since,
      (err: unknown) => this.unplace(q, req, err),
    );
  }

  /** Unmaps the buffers of a request whose map copies failed, then fails with `err`. */
  private async unplace(q: BlkQueue, req: RequestSlot, err: unknown): Promise<never> {
    const releasing = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC, 0);
    if (releasing) await releasing;
    throw err;
  }

  /**
   * Unmaps a request's buffers and tells the back-pressure gate; a promise only
   * when a copy back went to a worker (no promise and no microtask hop otherwise).
   */
  private releaseBuffers(
    q: BlkQueue,
    req: RequestSlot,
    attrs: number,
    usedLen: number,
  ): Promise<void> | undefined {
    let pending: Promise<void> | undefined;
    try {
      pending = q.dma.release(req.n, req.batch, attrs, usedLen);
    } catch (err) {
      this.ctx.gate?.released(q);
      throw err;
    }
    if (pending === undefined) {
      this.ctx.gate?.released(q);
      return undefined;
    }
    return pending.finally(() => this.ctx.gate?.released(q));
  }

  private pickQueue(index: number | undefined): BlkQueue {
    if (index !== undefined) {
      const q = this.queues[index];
      if (!q)
        throw new MediatorError(
          'BLK_BAD_QUEUE',
          `device ${this.id} has no queue ${index} (queues 0 to ${this.queues.length - 1})`,
          { queue: index },
        );
      return q;
    }
    // The queue with a free slot, starting after the last one used (round robin).
    for (let k = 0; k < this.queues.length; k++) {
      const q = this.queues[(this.nextQueue + k) % this.queues.length]!;
      if (q.freeSlots.length > 0) {
        this.nextQueue = (q.index + 1) % this.queues.length;
        return q;
      }
    }
    const q = this.queues[this.nextQueue]!;
    this.nextQueue = (this.nextQueue + 1) % this.queues.length;
    return q;
  }

  /**
   * Publishes the chains added in this microtask run with one avail index update:
   * the completions of one batch start the next requests in the same run, so they
   * reach the device together (as virtio drivers batch with notification
   * suppression). A device that polls sees them at once. Queued as a reaction
   * to a settled promise, which runs as queueMicrotask() would: Node's
   * queueMicrotask() also makes an AsyncResource and a bound function per call
   * (lib/internal/process/task_queues.js), about twice the cost, and this runs
   * once per batch of requests.
   */
  private schedulePublish(q: BlkQueue): void {
    if (q.publishScheduled) return;
    q.publishScheduled = true;
    SETTLED.then(q.publishNow);
  }

  /**
   * Wakes a sleeping device once per event-loop turn, when the turn ends, not
   * once per request: by the rearm due then when this thread polls for
   * completions, else by an immediate of its own. A wake-up is a futex call that
   * costs this thread several microseconds in a VM (an IPI to the device's idle
   * vCPU), and a busy HTTP server handles one request per readable socket,
   * several in a turn: woken at each, the device polled for the next one for
   * spinMicros, slept again before it came, and cost a wake-up per request
   * (docs/performance.md, "The HTTP path"). Deferred to the turn's end, the
   * requests lose little: this thread reaps completions only between turns
   * anyway, and a lone request's turn ends right after it.
   */
  private ring(q: BlkQueue): void {
    if (q.ringDue) return;
    q.ringDue = true;
    if (!q.pollPending) setImmediate(q.ringNow);
  }

  /** Completes what the device finished and, while requests remain, waits for more. */
  private arm(q: BlkQueue): void {
    if (q.armed) return;
    const now = performance.now();
    if (q.vq.poll(q.sink) > 0) q.lastCompletion = now;
    if (q.vq.inFlight === 0 || q.worker === undefined) return;
    q.armed = true;
    // Hybrid polling (as blk-mq does): right after completions, look again on the
    // next event-loop turn, which costs less than a wake-up through waitAsync;
    // once the queue has been quiet for pollMicros, sleep until the device notifies.
    if (now - q.lastCompletion < this.pollMs) {
      q.pollPending = true;
      setImmediate(q.rearm);
      return;
    }
    // Announce the wait before the last look (the device notifies only a waiting
    // driver; see virtqueue-layout.ts), so a completion in between is never missed.
    const seen = q.vq.beginWait();
    if (q.vq.poll(q.sink) > 0) {
      q.lastCompletion = now;
      queueMicrotask(q.rearm);
      return;
    }
    const waited = Atomics.waitAsync(q.vq.notifyWords, q.vq.completionIndex, seen);
    if (waited.async) waited.value.then(q.rearm);
    else queueMicrotask(q.rearm);
  }

  /**
   * While the queue is polled (a rearm is due on the next event-loop turn), the
   * completions the device made while this thread worked are reaped at once,
   * in the turn that published the requests, rather than on the next turn: a
   * turn costs this thread an epoll_pwait() system call and the loop's phases
   * (several microseconds in a VM), and when this thread is the busier one the
   * device always has finished more by the time a batch is published. Their
   * completions start the next requests, whose publish comes back here, so a
   * budget bounds the turn, as NAPI's weight bounds a poll (REAP_BUDGET): once
   * the re-polls of a turn have reaped that many, the rest waits for the next
   * turn's poll, after the sockets and timers (a turn's poll and its last re-poll
   * reap up to the queue's depth each).
   */
  private reapInTurn(q: BlkQueue): void {
    if (q.turnReaped >= REAP_BUDGET) return;
    const n = q.vq.poll(q.sink);
    if (n === 0) return;
    q.turnReaped += n;
    // The next turn's poll may find nothing: it still counts as polling then.
    q.lastCompletion = performance.now();
  }

  private makeSink(q: BlkQueue): UsedSink {
    return {
      complete: (head, len) => {
        const req = q.byHead[head];
        q.byHead[head] = undefined;
        req?.complete?.(len);
      },
      fault: (kind, head, detail) => {
        this.counters.faults[kind]++;
        this.warnFault(q.index, kind, detail);
        if (head === undefined) return;
        const req = q.byHead[head];
        q.byHead[head] = undefined;
        req?.fail?.(
          new MediatorError('MEDIATOR_DEVICE_FAULT', `device ${this.id}: ${detail}`, { kind }),
        );
      },
    };
  }

  /** One warning per burst of faults, whatever their kind (the counters have them all). */
  private warnFault(queue: number, kind: FaultKind, detail: string): void {
    const suppressed = this.faultLimit.take();
    if (suppressed < 0) return;
    this.log.warn(
      { queue, code: 'MEDIATOR_DEVICE_FAULT', kind, suppressed },
      `device ${this.id}: ${detail}`,
    );
  }

  /**
   * Fails requests older than the timeout and resets the device. A queue whose
   * thread has not started serving yet times its requests from the thread's
   * start (q.startedAt), by readyTimeoutMs: its first 'ready' restarts their
   * clocks (device-thread.ts); a thread that never says it serves must not hold
   * them for ever.
   */
  private sweep(): void {
    const now = performance.now();
    let expired = false;
    for (const q of this.queues) {
      if (!q.isReady && now - q.startedAt < this.readyTimeoutMs) continue;
      // A thread past readyTimeoutMs without serving holds every request it has.
      const limit = q.isReady ? this.timeoutMs : this.readyTimeoutMs;
      let expiredHere = 0;
      for (let h = 0; h < q.byHead.length; h++) {
        const req = q.byHead[h];
        if (req === undefined || req.quarantined) continue;
        if (q.isReady && now - req.submittedAt < limit) continue;
        // On the queue's quarantine until the reset below has stopped the thread:
        // a late used entry may take it out of byHead before then.
        req.quarantined = true;
        q.quarantine.push(req);
        expired = true;
        expiredHere++;
        this.counters.timeouts++;
        this.counters.faults.timeout++;
        req.fail?.(
          new MediatorError(
            'MEDIATOR_DEVICE_TIMEOUT',
            q.isReady
              ? `device ${this.id}: no completion after ${this.timeoutMs} ms; resetting the device`
              : `device ${this.id}: its device thread has not started serving ${this.readyTimeoutMs} ms after its start; resetting the device`,
          ),
        );
      }
      if (expiredHere > 0) {
        this.log.warn(
          {
            queue: q.index,
            code: 'MEDIATOR_DEVICE_TIMEOUT',
            requests: expiredHere,
            timeoutMs: limit,
          },
          `device ${this.id}: ${expiredHere} request(s) on queue ${q.index} got no completion within ${limit} ms${q.isReady ? '' : ' (its device thread never started serving)'}; resetting the device`,
        );
      }
    }
    if (expired) void this.resetFor('timeout');
  }

  private async doReset(reason: ResetReason): Promise<void> {
    this.counters.resets++;
    await Promise.all(this.queues.map((q) => stopDeviceThread(q, false)));
    // From here to the new device threads, nothing may yield: a request that got
    // a head while this loop waited would survive it, lose its chain to
    // vq.reset(), and then its byHead entry to the next request given that head,
    // leaving its submitter waiting for ever (seen under a chaos device).
    const releasing: Promise<void>[] = [];
    let failed = 0;
    for (const q of this.queues) {
      for (let h = 0; h < q.byHead.length; h++) {
        const req = q.byHead[h];
        if (req === undefined) continue;
        q.byHead[h] = undefined;
        // A timed-out request is freed from the quarantine below.
        if (req.quarantined) continue;
        failed++;
        req.fail?.(new MediatorError('MEDIATOR_DEVICE_RESET', `device ${this.id} was reset`));
      }
      // Timed-out requests, whose submitters gave up already: free their buffers and
      // slots, now that the thread that could still write there is stopped. Taken
      // from the quarantine, not byHead: one completed late (after its timeout,
      // while the thread was being stopped) has left byHead, and would be lost.
      this.releaseQuarantine(q, releasing);
      q.vq.reset();
      if (!this.closing) q.worker = this.startWorker(q);
    }
    this.log.warn(
      {
        code: 'MEDIATOR_DEVICE_RESET',
        reason,
        failed,
        timedOut: releasing.length,
        resets: this.counters.resets,
      },
      `device ${this.id} reset (${RESET_WHY[reason]}): ${failed} request(s) in flight failed with MEDIATOR_DEVICE_RESET, ${releasing.length} timed-out request(s) freed`,
    );
    await Promise.all(releasing);
  }

  /**
   * Frees every timed-out request of `q` (its device thread must be stopped),
   * adding what is still being released to `into`. In a reset nothing after this
   * yields to a timer (these releases copy nothing back, so the promises are
   * settled), so no timeout the sweep finds later is absorbed by a reset that
   * has freed its quarantine already.
   */
  private releaseQuarantine(q: BlkQueue, into: Promise<void>[]): void {
    for (const req of q.quarantine) into.push(this.releaseQuarantined(q, req));
    q.quarantine.length = 0;
  }

  /** Frees a timed-out request's buffers (copying nothing back), then its slot. */
  private releaseQuarantined(q: BlkQueue, req: RequestSlot): Promise<void> {
    let pending: Promise<void> | undefined;
    try {
      pending = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC, 0);
    } catch {
      // the request failed already; its slots are what matters here
    }
    if (pending === undefined) {
      freeSlot(q, req);
      return Promise.resolve();
    }
    return pending.then(
      () => freeSlot(q, req),
      () => freeSlot(q, req),
    );
  }

  // ---------------------------------------------------------------------------
  // Set-up
  // ---------------------------------------------------------------------------

  /**
   * A constructor that failed part-way (a later queue did not fit the pool):
   * stops the device threads it started, gives their queue memory back and
   * closes the backing file. Nobody holds this driver, so nothing else would:
   * the threads kept the process alive and the pool lost the queues' slots.
   */
  private abandon(): void {
    for (const q of this.queues) {
      // Terminated (no request was ever given to them), then their memory freed.
      void stopDeviceThread(q, false).then(() => releaseQueueMemory(this.ctx, q));
    }
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private openFile(): number {
    const path = this.opts.file;
    if (!path) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${this.id}: file-blk needs a backing file path`,
      );
    }
    let fd: number | undefined;
    try {
      fd = openSync(path, existsSync(path) ? 'r+' : 'w+');
      if (fstatSync(fd).size < this.capacity) ftruncateSync(fd, this.capacity);
    } catch (err) {
      // Opened but not grown (a file system that refuses the size): not kept open.
      if (fd !== undefined) closeSync(fd);
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${this.id}: cannot open backing file ${path}: ${(err as Error).message}`,
      );
    }
    return fd;
  }

  private setupQueue(index: number): BlkQueue {
    const q = placeQueue(this.ctx, index, {
      deviceId: this.id,
      queueSize: this.queueSize,
      depth: this.depth,
      maxRequestBytes: this.maxRequestBytes,
      maxDescs: this.maxDescs,
      fromDeviceBounce: this.fromDeviceBounce,
    });
    q.sink = this.makeSink(q);
    q.ringNow = () => {
      if (!q.ringDue) return; // a rearm rang it first
      q.ringDue = false;
      q.vq.ring();
    };
    q.rearm = () => {
      q.armed = false;
      q.pollPending = false;
      q.turnReaped = 0;
      q.ringNow();
      q.vq.endWait();
      this.arm(q);
    };
    q.publishNow = () => {
      q.publishScheduled = false;
      if (q.vq.publish()) this.ring(q);
      // Polling (a rearm is due next turn): reap what the device finished meanwhile
      // now, in this turn, up to REAP_BUDGET completions per turn (see reapInTurn).
      if (q.pollPending) this.reapInTurn(q);
      else this.arm(q);
    };
    q.worker = this.startWorker(q);
    return q;
  }

  private makeWorkerData(q: BlkQueue): DeviceWorkerData {
    return deviceWorkerData(q, {
      kind: this.kind,
      serial: this.opts.serial ?? this.id,
      spinMicros:
        this.opts.spinMicros ?? defaultDeviceSpinMicros(this.opts.queues ?? DEVICE_DEFAULTS.queues),
      capacity: this.capacity,
      backing: this.backing,
      file:
        this.fd === undefined
          ? undefined
          : {
              fd: this.fd,
              capacity: this.capacity,
              durable: (this.opts.sync ?? DEVICE_DEFAULTS.sync) === 'durable',
              syncFailed: this.syncFailed,
            },
      chaos: this.opts.chaos,
      resets: this.counters.resets,
    });
  }

  private startWorker(q: BlkQueue): Worker {
    let threadId = -1;
    const worker = startDeviceThread(q, this.makeWorkerData(q), {
      death: (dead, death) => {
        const fields = { queue: q.index, threadId };
        if (death.how === 'exit') {
          this.log.debug(
            { ...fields, exitCode: death.exitCode },
            `device thread of queue ${q.index} stopped`,
          );
        } else {
          this.log.warn(
            { ...fields, err: death.error },
            `device thread of queue ${q.index} failed: ${death.error.message}`,
          );
        }
        // A device thread that dies is a device that stopped answering: reset it
        // (an exit during a reset is the reset's own doing).
        if (q.worker !== dead || this.closing) return;
        if (death.how === 'error' || !this.resetting)
          void this.resetFor(death.how === 'error' ? 'thread_error' : 'thread_exit');
      },
      ioError: (message) => {
        // The request has its IOERR already (MEDIATOR_IO_ERROR, outcome "ioerr" in
        // the metrics); this says why, once per burst.
        const suppressed = this.ioErrorLimit.take();
        if (suppressed < 0) return;
        this.log.warn(
          { queue: q.index, code: 'MEDIATOR_IO_ERROR', suppressed },
          `device ${this.id}: backing store error on queue ${q.index}: ${message}`,
        );
      },
    });
    threadId = worker.threadId;
    void q.ready.then(() => {
      if (q.isReady && q.worker === worker) {
        this.log.debug({ queue: q.index, threadId }, `device thread of queue ${q.index} serving`);
      }
    });
    return worker;
  }
}
