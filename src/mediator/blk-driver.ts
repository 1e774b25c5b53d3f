import { closeSync, existsSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { MediatorError } from '../errors.js';
import { DmaAttr } from '../swiotlb/constants.js';
import { BucketHistogram, LATENCY_BUCKETS_SECONDS } from '../util/bucket-histogram.js';
import { type Logger, NO_LOG, RateLimit } from '../util/logger.js';
import {
  BLK_HEADER_BYTES,
  SECTOR_SIZE,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../virtio/blk-format.js';
import { DEVICE_KINDS, type DeviceKind, type DeviceWorkerData } from '../virtio/device-spec.js';
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
import { layOutRequest, opOf, outcomeOf, statusError } from './blk-request.js';
import { DEVICE_DEFAULTS, defaultDeviceSpinMicros } from './defaults.js';
import { deviceWorkerData, startDeviceThread, stopDeviceThread } from './device-thread.js';
import { FAULT_KINDS, type FaultKind, type UsedSink } from './driver-virtqueue.js';
import { LIMITS } from './limits.js';

export * from './blk-options.js';

export interface DeviceStats {
  id: string;
  kind: DeviceKind;
  mode: 'bounce' | 'direct';
  capacity: number;
  queues: { index: number; size: number; depth: number; inFlight: number; waiting: number }[];
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

const RESET_WHY: Record<ResetReason, string> = {
  requested: 'requested',
  timeout: 'a request timed out',
  thread_error: 'its device thread failed',
  thread_exit: 'its device thread exited',
};

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
  readonly mode: 'bounce' | 'direct';
  readonly capacity: number;
  readonly maxRequestBytes: number;
  readonly depth: number;
  readonly queueSize: number;
  readonly timeoutMs: number;
  private readonly ctx: DeviceContext;
  private readonly opts: BlkDriverOptions;
  private readonly queues: BlkQueue[] = [];
  private readonly segmentBytes: number;
  private readonly maxDescs: number;
  private readonly backing: SharedArrayBuffer | undefined;
  private fd: number | undefined;
  private nextQueue = 0;
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
  private readonly guestView: DataView;
  private readonly pollMs: number;
  private readonly recordLatency: boolean;
  /** Completion latency (seconds) of finished requests, by op; read at scrape time. */
  readonly latency: Record<BlkOp, BucketHistogram>;
  /** Every record carries `device`. */
  private readonly log: Logger;
  /** One fault warning per burst: a hostile device can fault on every request. */
  private readonly faultLimit: RateLimit;

  constructor(ctx: DeviceContext, opts: BlkDriverOptions) {
    this.ctx = ctx;
    this.opts = opts;
    this.log = (ctx.log ?? NO_LOG).child({ device: opts.id });
    this.faultLimit = new RateLimit(ctx.logIntervalMs);
    this.guestView = new DataView(ctx.guest.buffer);
    this.pollMs = (opts.pollMicros ?? DEVICE_DEFAULTS.pollMicros) / 1000;
    this.recordLatency = opts.recordLatency ?? DEVICE_DEFAULTS.recordLatency;
    this.latency = Object.fromEntries(
      BLK_OPS.map((op) => [op, new BucketHistogram(LATENCY_BUCKETS_SECONDS)]),
    ) as Record<BlkOp, BucketHistogram>;
    this.id = opts.id;
    this.kind = opts.kind;
    this.mode = ctx.mode;
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
    this.queueSize = opts.queueSize ?? DEVICE_DEFAULTS.queueSize;
    const queues = opts.queues ?? DEVICE_DEFAULTS.queues;
    const [minQueues, maxQueues] = LIMITS.queues;
    if (!Number.isInteger(queues) || queues < minQueues || queues > maxQueues) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${opts.id}: queues must be from ${minQueues} to ${maxQueues}`,
      );
    }
    if (ctx.mode === 'bounce' && (!ctx.pool || !ctx.engine || !ctx.gate)) {
      throw new MediatorError('MEDIATOR_BAD_CONFIG', `device ${opts.id}: bounce mode needs a pool`);
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
    for (let q = 0; q < queues; q++) this.queues.push(this.setupQueue(q));
    this.sweeper = setInterval(() => this.sweep(), Math.max(5, this.timeoutMs / 4));
    this.sweeper.unref();
  }

  /** Reads `length` bytes at `sector`; returns a copy of them (or nothing with `copyOut: false`). */
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
    let out: Buffer | undefined;
    await this.submit(VIRTIO_BLK_T_IN, sector, length, queue, undefined, (view) => {
      out = Buffer.from(view);
    });
    return out;
  }

  /** Writes `data` (or, given a length, whatever the guest buffer holds: a synthetic I/O) at `sector`. */
  write(sector: number, data: Uint8Array | number, queue?: number): Promise<void> {
    const length = typeof data === 'number' ? data : data.length;
    return this.submit(
      VIRTIO_BLK_T_OUT,
      sector,
      length,
      queue,
      typeof data === 'number' ? undefined : data,
    );
  }

  async flush(queue?: number): Promise<void> {
    await this.submit(VIRTIO_BLK_T_FLUSH, 0, 0, queue);
  }

  /** VIRTIO_BLK_T_GET_ID: the device's serial. */
  async getId(queue?: number): Promise<string> {
    let id = '';
    await this.submit(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, queue, undefined, (view) => {
      const end = view.indexOf(0);
      id = Buffer.from(view.subarray(0, end < 0 ? view.length : end)).toString('latin1');
    });
    return id;
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
      capacity: this.capacity,
      queues: this.queues.map((q) => ({
        index: q.index,
        size: this.queueSize,
        depth: this.depth,
        inFlight: q.vq.inFlight,
        waiting: q.slotWaiters.length,
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
    for (const q of this.queues) releaseQueueMemory(this.ctx, q);
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  // ---------------------------------------------------------------------------
  // The request pipeline
  // ---------------------------------------------------------------------------

  private async submit(
    type: number,
    sector: number,
    length: number,
    queueIndex: number | undefined,
    data?: Uint8Array,
    onData?: (view: Uint8Array) => void,
  ): Promise<void> {
    const op: BlkOp = opOf(type);
    if (this.closing) throw new MediatorError('MEDIATOR_CLOSED', `device ${this.id} is closing`);
    if (!Number.isSafeInteger(sector) || sector < 0) {
      throw new MediatorError(
        'BLK_BAD_SECTOR',
        `device ${this.id}: sector ${String(sector)} must be a non-negative integer`,
        { sector },
      );
    }
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
    const q = this.pickQueue(queueIndex);
    const slot = q.freeSlots.pop() ?? (await waitForSlot(q));
    if (slot < 0) throw new MediatorError('MEDIATOR_CLOSED', `device ${this.id} is closing`);
    const req = q.requests[slot]!;
    const started = performance.now();
    req.busy = true;
    this.counters.inFlight++;
    let outcome: Outcome = 'error';
    try {
      await this.execute(q, req, type, sector, length, data, started);
      outcome = 'ok';
      const guest = this.ctx.guest;
      if (onData) {
        const off = req.dataAddr - guest.base;
        onData(guest.bytes.subarray(off, off + length));
      }
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

  private async execute(
    q: BlkQueue,
    req: RequestSlot,
    type: number,
    sector: number,
    length: number,
    data: Uint8Array | undefined,
    started: number,
  ): Promise<void> {
    const guest = this.ctx.guest;
    // The device's clock for this request: from its slot, or from when it got pool
    // slots if it had to wait for them (so back-pressure never reads as a timeout).
    let since = started;
    layOutRequest(this.guestView, guest.base, req, type, sector, length, this.segmentBytes);
    if (data) guest.bytes.set(data, req.dataAddr - guest.base);
    const n = req.n;
    const b = req.batch;

    const dma = q.dma;
    if (this.mode === 'bounce') {
      const gate = this.ctx.gate!;
      const admitted = gate.admit(req.place, req.fullError, this.id, q);
      if (admitted) {
        await admitted;
        since = performance.now();
      }
      try {
        const copying = dma.copyIn(n, b);
        if (copying) await copying;
      } catch (err) {
        const releasing = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC);
        if (releasing) await releasing;
        throw err;
      }
    } else {
      dma.tryPlace(n, b);
    }

    let usedLen: number;
    try {
      usedLen = await new Promise<number>((resolve, reject) => {
        req.complete = resolve;
        req.fail = reject;
        const head = q.vq.addChain(n, b.out, b.sizes, req.writes);
        if (head < 0) {
          reject(new Error(`device ${this.id}: no free descriptors (depth accounting is wrong)`));
          return;
        }
        req.head = head;
        req.submittedAt = since;
        q.byHead[head] = req;
        this.schedulePublish(q);
      });
    } catch (err) {
      req.complete = undefined;
      req.fail = undefined;
      // Timed out: the device may still write into these slots, so they stay
      // mapped until reset() has stopped the device thread.
      if (!req.quarantined) {
        const releasing = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC);
        if (releasing) await releasing;
      }
      throw err;
    }
    req.complete = undefined;
    req.fail = undefined;
    void usedLen; // buffers are copied back whole, as swiotlb does; the length was validated
    const releasing = this.releaseBuffers(q, req, 0);
    if (releasing) await releasing;
    const status = guest.bytes[req.ctlAddr - guest.base + BLK_HEADER_BYTES]!;
    const failed = statusError(status, this.id, type, sector, length);
    if (failed === undefined) return;
    if (failed.code === 'MEDIATOR_DEVICE_FAULT') {
      this.counters.faults.bad_status++;
      this.warnFault(q.index, 'bad_status', `status byte ${status} is not a virtio-blk status`);
    }
    throw failed;
  }

  /**
   * Unmaps a request's buffers and tells the back-pressure gate; a promise only
   * when a copy back went to a worker (no promise and no microtask hop otherwise).
   */
  private releaseBuffers(q: BlkQueue, req: RequestSlot, attrs: number): Promise<void> | undefined {
    let pending: Promise<void> | undefined;
    try {
      pending = q.dma.release(req.n, req.batch, attrs);
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
   * Publishes the chains added during this turn of the event loop with one avail
   * index update and at most one doorbell: the completions of one batch start
   * the next requests in the same microtask run, so they reach the device together
   * (as virtio drivers batch with notification suppression).
   */
  private schedulePublish(q: BlkQueue): void {
    if (q.publishScheduled) return;
    q.publishScheduled = true;
    queueMicrotask(q.publishNow);
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

  /** Fails requests older than the timeout and resets the device. */
  private sweep(): void {
    const now = performance.now();
    let expired = false;
    for (const q of this.queues) {
      if (!q.isReady) continue;
      let expiredHere = 0;
      for (let h = 0; h < q.byHead.length; h++) {
        const req = q.byHead[h];
        if (req === undefined || req.quarantined || now - req.submittedAt < this.timeoutMs)
          continue;
        req.quarantined = true;
        expired = true;
        expiredHere++;
        this.counters.timeouts++;
        this.counters.faults.timeout++;
        req.fail?.(
          new MediatorError(
            'MEDIATOR_DEVICE_TIMEOUT',
            `device ${this.id}: no completion after ${this.timeoutMs} ms; resetting the device`,
          ),
        );
      }
      if (expiredHere > 0) {
        this.log.warn(
          {
            queue: q.index,
            code: 'MEDIATOR_DEVICE_TIMEOUT',
            requests: expiredHere,
            timeoutMs: this.timeoutMs,
          },
          `device ${this.id}: ${expiredHere} request(s) on queue ${q.index} got no completion within ${this.timeoutMs} ms; resetting the device`,
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
        if (req.quarantined) {
          // Its submitter gave up already: free its buffers and slot here.
          releasing.push(this.releaseQuarantined(q, req));
        } else {
          failed++;
          req.fail?.(new MediatorError('MEDIATOR_DEVICE_RESET', `device ${this.id} was reset`));
        }
      }
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

  /** Frees a timed-out request's buffers (copying nothing back), then its slot. */
  private releaseQuarantined(q: BlkQueue, req: RequestSlot): Promise<void> {
    let pending: Promise<void> | undefined;
    try {
      pending = this.releaseBuffers(q, req, DmaAttr.SKIP_CPU_SYNC);
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

  private openFile(): number {
    const path = this.opts.file;
    if (!path) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `device ${this.id}: file-blk needs a backing file path`,
      );
    }
    let fd: number;
    try {
      fd = openSync(path, existsSync(path) ? 'r+' : 'w+');
      if (fstatSync(fd).size < this.capacity) ftruncateSync(fd, this.capacity);
    } catch (err) {
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
    });
    q.sink = this.makeSink(q);
    q.rearm = () => {
      q.armed = false;
      q.vq.endWait();
      this.arm(q);
    };
    q.publishNow = () => {
      q.publishScheduled = false;
      q.vq.publish();
      this.arm(q);
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
      backing: this.backing,
      file:
        this.fd === undefined
          ? undefined
          : {
              fd: this.fd,
              capacity: this.capacity,
              durable: (this.opts.sync ?? DEVICE_DEFAULTS.sync) === 'durable',
            },
      chaos: this.opts.chaos,
      resets: this.counters.resets,
    });
  }

  private startWorker(q: BlkQueue): Worker {
    let threadId = -1;
    const worker = startDeviceThread(q, this.makeWorkerData(q), (dead, death) => {
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
