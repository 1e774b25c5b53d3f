import { performance } from 'node:perf_hooks';
import { MediatorError } from '../errors.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import { Fifo } from '../util/fifo.js';
import { type Logger, NO_LOG, RateLimit } from '../util/logger.js';
import {
  BACKPRESSURE_DEFAULTS,
  BACKPRESSURE_POLICIES,
  type BackpressurePolicy,
  BLK_MQ_RESOURCE_DELAY_MS,
  backpressurePolicy,
} from './defaults.js';

export interface BackpressureOptions {
  /**
   * What a request does when the pool has no room for its buffers (the policies
   * and the kernel code each follows: BACKPRESSURE_POLICIES in defaults.ts):
   * `requeue` is Linux's virtio-blk (BLK_STS_RESOURCE, blk-mq requeues the request
   * until slots come back, no time limit); `requeue-bounded` requeues too, first
   * come first served across the pool, for up to `waitMs`; `fail` is the DMA API's
   * answer ("swiotlb buffer is full" fails the request), which virtio-blk never gives.
   * `wait`, the old name of `requeue-bounded`, is still taken.
   * @default 'requeue-bounded'
   */
  policy?: BackpressurePolicy | 'wait';
  /**
   * `requeue-bounded`: longest wait for slots before the request gives up with
   * MEDIATOR_BACKPRESSURE_TIMEOUT. Ignored by the other policies.
   * @default 5000
   */
  waitMs?: number;
}

/** Where a gate logs its full pool and its timed-out waits. */
export interface PoolGateLogOptions {
  /**
   * The logger.
   * @default {@link NO_LOG}: nothing
   */
  log?: Logger;
  /**
   * The pool's name, the `pool` field of each record.
   * @default 'pool'
   */
  pool?: string;
  /**
   * One warning per burst of this length, per event (see RateLimit).
   * @default 5000 (the kernel's DEFAULT_RATELIMIT_INTERVAL)
   */
  intervalMs?: number;
}

interface Waiter {
  tryPlace: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
  /** requeue-bounded: the waitMs timer. */
  timer: NodeJS.Timeout | undefined;
  since: number;
  done: boolean;
}

/**
 * Policy `requeue`: one queue's requests put back, as blk-mq's hctx->dispatch
 * list holds them, and the pending run of that queue.
 */
interface DispatchList {
  key: unknown;
  waiters: Fifo<Waiter>;
  /** Cancels the armed run (a setImmediate or a BLK_MQ_RESOURCE_DELAY timer). */
  cancelRun: (() => void) | undefined;
  /** The armed run is the BLK_MQ_RESOURCE_DELAY one, which a run at once replaces. */
  delayed: boolean;
}

export interface BackpressureStats {
  /** Requests that had to wait for slots (requeued, or behind a requeued one). */
  waits: number;
  /**
   * Requests that found the pool full when they tried it ("swiotlb buffer is
   * full"), each counted once: virtio-blk's BLK_STS_RESOURCE, after which blk-mq
   * requeues the request. Under `fail` these fail instead and count here too.
   */
  requeues: number;
  /** Total time spent waiting, seconds. */
  waitSeconds: number;
  /** Waits that gave up (requeue-bounded). */
  timeouts: number;
  /** Requests waiting now. */
  waiting: number;
}

/**
 * Admission to one pool for the request pipeline. A request places all its
 * buffers at once (tryPlace) or waits, by its policy:
 *
 *   requeue-bounded: one line for the pool    requeue: one line per queue (hctx->dispatch)
 *     [w1 w2 w3] <- newcomers                   queue A: [a1 a2] <- A's newcomers; run armed
 *     retried in order on every release;        queue B: [b1]    <- B's newcomers; run armed
 *     each gives up after waitMs                a line is retried when one of its queue's
 *                                               requests completes or a newcomer joins it,
 *                                               and 3 ms after a failed run
 *
 * Rules:
 * - A waiter sits in one line until it is settled (placed, timed out or
 *   rejected); settling clears its timer and counts its wait.
 * - requeue-bounded: while anyone waits, a newcomer queues behind without trying
 *   the pool, so a large request is never starved by a stream of small ones.
 * - requeue (blk_mq_dispatch_rq_list() and __blk_mq_sched_dispatch_requests() in
 *   block/blk-mq.c and blk-mq-sched.c, 6.1 to 7.2): a queue with requests put
 *   back dispatches them first and takes no new request before they go, so a
 *   newcomer of that queue waits behind them without trying; a newcomer of
 *   another queue tries the pool at once, as another hctx does. A failed attempt
 *   arms a run of its queue: at once the first time (blk_mq_run_hw_queue(hctx,
 *   true), SCHED_RESTART not yet set), then BLK_MQ_RESOURCE_DELAY (3 ms) after each
 *   failed run (SCHED_RESTART set, BLK_STS_RESOURCE); a request of that queue that
 *   completes runs it at once (blk_mq_sched_restart() in __blk_mq_free_request()),
 *   and so does a newcomer joining the line (blk_mq_submit_bio() inserts it and
 *   runs its hctx, `blk_mq_run_hw_queue(hctx, true)`, 6.1.192 and 6.12.117; that
 *   kblockd_mod_delayed_work_on(.., 0) brings a pending 3 ms run forward).
 *   Releases by other queues do not run it: the 3 ms run picks their slots up.
 *   No time limit. A line with no waiter is dropped with its armed run. This is
 *   blk-mq's dispatch path (an I/O scheduler, as mq-deadline on a one-queue
 *   device); under "none" a synchronous request is issued directly and tries the
 *   pool ahead of those put back (docs/kernels.md, "virtio-blk on a full pool").
 */
export class PoolGate {
  readonly policy: BackpressurePolicy;
  /** requeue-bounded: the longest wait; null under `requeue` (no limit) and `fail`. */
  readonly waitMs: number | null;
  /** requeue-bounded: the pool's one line. Settled waiters may linger; they are skipped. */
  private readonly waiters = new Fifo<Waiter>();
  /** requeue: the lines of the queues that have requests put back. */
  private readonly lists = new Map<unknown, DispatchList>();
  private readonly counters: BackpressureStats = {
    waits: 0,
    requeues: 0,
    waitSeconds: 0,
    timeouts: 0,
    waiting: 0,
  };

  private readonly log: Logger;
  private readonly poolName: string;
  private readonly fullLimit: RateLimit;
  private readonly timeoutLimit: RateLimit;

  constructor(
    readonly pool: SwiotlbPool,
    opts: BackpressureOptions = {},
    logging: PoolGateLogOptions = {},
  ) {
    const policy = backpressurePolicy(opts.policy ?? BACKPRESSURE_DEFAULTS.policy);
    if (policy === undefined) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `back-pressure policy ${JSON.stringify(opts.policy)} is not one of ${BACKPRESSURE_POLICIES.join(', ')}`,
      );
    }
    this.policy = policy;
    this.waitMs =
      this.policy === 'requeue-bounded' ? (opts.waitMs ?? BACKPRESSURE_DEFAULTS.waitMs) : null;
    this.log = logging.log ?? NO_LOG;
    this.poolName = logging.pool ?? 'pool';
    this.fullLimit = new RateLimit(logging.intervalMs);
    this.timeoutLimit = new RateLimit(logging.intervalMs);
  }

  /**
   * Runs `tryPlace` now if nobody ahead waits and it succeeds; otherwise fails
   * fast (policy fail: `fullError()` in the kernel's words) or waits its turn.
   * Resolves once `tryPlace` has returned true. `device` names the caller in the
   * log, as the kernel's dev_warn does; `queue` identifies its virtqueue (the
   * hardware queue blk-mq requeues on) for the `requeue` policy, which takes the
   * device as the queue when it is left out.
   */
  admit(
    tryPlace: () => boolean,
    fullError: () => MediatorError,
    device = '',
    queue?: unknown,
  ): Promise<void> | undefined {
    if (this.policy === 'requeue')
      return this.requeue(tryPlace, fullError, device, queue ?? device);
    const first = this.waiters.isEmpty();
    if (first && tryPlace()) return undefined;
    this.counters.requeues += first ? 1 : 0;
    if (this.policy === 'fail') {
      this.pool.countFailure('full');
      const err = fullError();
      this.warnFull(device, () => err);
      return Promise.reject(err);
    }
    // A newcomer behind other waiters did not try the pool: only a failed try is
    // what the kernel reports as full.
    if (first) this.warnFull(device, fullError);
    return this.enqueue(this.waiters, tryPlace, this.waitMs ?? BACKPRESSURE_DEFAULTS.waitMs);
  }

  /**
   * Slots were freed by a request of `queue` (its virtqueue, as given to admit):
   * lets waiters in, in order, until one does not fit. Under `requeue` only that
   * queue's line runs (blk_mq_sched_restart()), and only when `queue` is given.
   */
  released(queue?: unknown): void {
    if (this.policy === 'requeue') {
      const list = queue === undefined ? undefined : this.lists.get(queue);
      if (list !== undefined) this.run(list);
      return;
    }
    this.letIn(this.waiters);
  }

  /** Fails every waiter (shutdown). */
  rejectAll(err: Error): void {
    const lines = [this.waiters, ...[...this.lists.values()].map((l) => l.waiters)];
    for (const list of this.lists.values()) list.cancelRun?.();
    this.lists.clear();
    for (const line of lines) {
      for (let w = line.shift(); w !== undefined; w = line.shift()) {
        if (w.done) continue;
        this.settle(w);
        w.reject(err);
      }
    }
  }

  stats(): BackpressureStats {
    return { ...this.counters };
  }

  /** Policy requeue: virtio_queue_rq() returned BLK_STS_RESOURCE, or the queue has requests put back. */
  private requeue(
    tryPlace: () => boolean,
    fullError: () => MediatorError,
    device: string,
    key: unknown,
  ): Promise<void> | undefined {
    let list = this.lists.get(key);
    if (list === undefined) {
      if (tryPlace()) return undefined;
      list = { key, waiters: new Fifo<Waiter>(4), cancelRun: undefined, delayed: false };
      this.lists.set(key, list);
      this.counters.requeues++;
      this.warnFull(device, fullError);
    }
    const admitted = this.enqueue(list.waiters, tryPlace, undefined);
    // The first failure: blk_mq_dispatch_rq_list() finds SCHED_RESTART not set yet,
    // so the queue runs again at once (asynchronously). A newcomer joining the line:
    // blk_mq_submit_bio() inserts it and runs its queue at once, which retries the
    // requests put back ahead of it (block/blk-mq.c, 6.1.192 and 6.12.117).
    this.arm(list, 0);
    return admitted;
  }

  /**
   * Arms a run of `list` after `delayMs` (0: as soon as the event loop turns). One
   * run is armed at a time, as hctx->run_work is one delayed work: a run at once
   * replaces an armed BLK_MQ_RESOURCE_DELAY run (kblockd_mod_delayed_work_on() in
   * blk_mq_delay_run_hw_queue()), any other armed run stays.
   */
  private arm(list: DispatchList, delayMs: number): void {
    if (list.cancelRun !== undefined) {
      if (delayMs !== 0 || !list.delayed) return;
      list.cancelRun();
    }
    list.delayed = delayMs !== 0;
    if (delayMs === 0) {
      const t = setImmediate(() => {
        list.cancelRun = undefined;
        this.run(list);
      });
      list.cancelRun = () => clearImmediate(t);
    } else {
      const t = setTimeout(() => {
        list.cancelRun = undefined;
        this.run(list);
      }, delayMs);
      list.cancelRun = () => clearTimeout(t);
    }
  }

  /**
   * A run of one queue under `requeue`: its requests put back go in order until
   * one does not fit, which arms the next run BLK_MQ_RESOURCE_DELAY later
   * (blk_mq_delay_run_hw_queue()); an empty line is dropped.
   */
  private run(list: DispatchList): void {
    list.cancelRun?.();
    list.cancelRun = undefined;
    if (!this.letIn(list.waiters)) {
      this.arm(list, BLK_MQ_RESOURCE_DELAY_MS);
      return;
    }
    if (this.lists.get(list.key) === list) this.lists.delete(list.key);
  }

  /** Lets the waiters of `line` in, in order; false when one is left that does not fit. */
  private letIn(line: Fifo<Waiter>): boolean {
    for (let w = line.peek(); w !== undefined; w = line.peek()) {
      if (w.done) {
        line.shift();
        continue;
      }
      let placed: boolean;
      try {
        placed = w.tryPlace();
      } catch (err) {
        line.shift();
        this.settle(w);
        w.reject(err as Error);
        continue;
      }
      if (!placed) return false;
      line.shift();
      this.settle(w);
      w.resolve();
    }
    return true;
  }

  /** Queues a waiter on `line`; `waitMs` bounds its wait (undefined: no limit). */
  private enqueue(
    line: Fifo<Waiter>,
    tryPlace: () => boolean,
    waitMs: number | undefined,
  ): Promise<void> {
    this.counters.waits++;
    this.counters.waiting++;
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        tryPlace,
        resolve,
        reject,
        timer: undefined,
        since: performance.now(),
        done: false,
      };
      if (waitMs !== undefined) w.timer = setTimeout(() => this.expire(w), waitMs);
      line.push(w);
    });
  }

  /**
   * "swiotlb buffer is full" in the kernel's words and figures, once per burst:
   * swiotlb_tbl_map_single() in kernel/dma/swiotlb.c (6.10; the same in 6.1.192 and
   * 6.12.117) warns with dev_warn_ratelimited() unless DMA_ATTR_NO_WARN, on every
   * failed map; the gate warns once per request, not on its retries. Under the requeue policies
   * it is the moment virtio-blk returns BLK_STS_RESOURCE and blk-mq requeues the
   * request.
   */
  private warnFull(device: string, fullError: () => MediatorError): void {
    const suppressed = this.fullLimit.take();
    if (suppressed < 0) return;
    const e = fullError();
    this.log.warn(
      {
        pool: this.poolName,
        ...(device ? { device } : {}),
        code: e.code,
        ...e.details,
        policy: this.policy,
        suppressed,
      },
      this.policy === 'fail'
        ? e.message
        : `${e.message}; the request is requeued (BLK_STS_RESOURCE) until slots come back`,
    );
  }

  private settle(w: Waiter): void {
    w.done = true;
    if (w.timer) clearTimeout(w.timer);
    this.counters.waiting--;
    this.counters.waitSeconds += (performance.now() - w.since) / 1000;
  }

  /** requeue-bounded: a waiter ran out of time. */
  private expire(w: Waiter): void {
    if (w.done) return;
    this.settle(w);
    this.counters.timeouts++;
    this.pool.countFailure('full');
    const used = this.pool.used();
    const total = this.pool.geometry.nslabs;
    const err = new MediatorError(
      'MEDIATOR_BACKPRESSURE_TIMEOUT',
      `gave up after waiting ${this.waitMs} ms for pool slots (${used} of ${total} slots in use)`,
      { waitMs: this.waitMs },
    );
    const suppressed = this.timeoutLimit.take();
    if (suppressed >= 0) {
      this.log.warn(
        { pool: this.poolName, code: err.code, waitMs: this.waitMs, used, total, suppressed },
        `pool ${this.poolName}: a request ${err.message}`,
      );
    }
    w.reject(err);
    // The head may have been this waiter: the next one may fit.
    this.letIn(this.waiters);
  }
}
