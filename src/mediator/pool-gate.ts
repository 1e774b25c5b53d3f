import { MediatorError } from '../errors.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import { Fifo } from '../util/fifo.js';
import { type Logger, NO_LOG, RateLimit } from '../util/logger.js';
import { BACKPRESSURE_DEFAULTS } from './defaults.js';

export interface BackpressureOptions {
  /**
   * What a request does when the pool has no room for its buffers:
   * `fail` is Linux (the map fails at once with "swiotlb buffer is full");
   * `wait` queues it, first come first served, until slots are freed or `waitMs` passes
   * (what DMA_ATTR_MAY_BLOCK proposed for Linux and never merged).
   * @default 'wait'
   */
  policy?: 'fail' | 'wait';
  /**
   * Longest wait for slots before the request gives up with MEDIATOR_BACKPRESSURE_TIMEOUT.
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
  timer: NodeJS.Timeout | undefined;
  since: number;
  done: boolean;
}

export interface BackpressureStats {
  /** Requests that had to wait for slots. */
  waits: number;
  /** Total time spent waiting, seconds. */
  waitSeconds: number;
  /** Waits that gave up. */
  timeouts: number;
  /** Requests waiting now. */
  waiting: number;
}

/**
 * Admission to one pool for the request pipeline. A request places all its
 * buffers at once (tryPlace) or waits. Waiters are served strictly in order: while
 * anyone waits, a newcomer queues behind even if it would fit, so a large request
 * is never starved by a stream of small ones. Whoever frees slots calls
 * {@link released}, which lets waiters in from the front until one does not fit.
 */
export class PoolGate {
  readonly policy: 'fail' | 'wait';
  readonly waitMs: number;
  private readonly waiters = new Fifo<Waiter>();
  private readonly counters: BackpressureStats = {
    waits: 0,
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
    this.policy = opts.policy ?? BACKPRESSURE_DEFAULTS.policy;
    this.waitMs = opts.waitMs ?? BACKPRESSURE_DEFAULTS.waitMs;
    this.log = logging.log ?? NO_LOG;
    this.poolName = logging.pool ?? 'pool';
    this.fullLimit = new RateLimit(logging.intervalMs);
    this.timeoutLimit = new RateLimit(logging.intervalMs);
  }

  /**
   * Runs `tryPlace` now if nobody waits and it succeeds; otherwise fails fast
   * (policy fail: `fullError()` in the kernel's words) or waits its turn.
   * Resolves once `tryPlace` has returned true. `device` names the caller in the
   * log, as the kernel's dev_warn does.
   */
  admit(
    tryPlace: () => boolean,
    fullError: () => MediatorError,
    device = '',
  ): Promise<void> | undefined {
    const first = this.waiters.isEmpty();
    if (first && tryPlace()) return undefined;
    if (this.policy === 'fail') {
      this.pool.countFailure('full');
      const err = fullError();
      this.warnFull(device, () => err);
      return Promise.reject(err);
    }
    // A newcomer behind other waiters did not try the pool: only a failed try is
    // what the kernel reports as full.
    if (first) this.warnFull(device, fullError);
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
      w.timer = setTimeout(() => this.expire(w), this.waitMs);
      this.waiters.push(w);
    });
  }

  /** Slots were freed: let waiters in, in order, until one does not fit. */
  released(): void {
    for (let w = this.waiters.peek(); w !== undefined; w = this.waiters.peek()) {
      if (w.done) {
        this.waiters.shift();
        continue;
      }
      let placed: boolean;
      try {
        placed = w.tryPlace();
      } catch (err) {
        this.waiters.shift();
        this.settle(w);
        w.reject(err as Error);
        continue;
      }
      if (!placed) return;
      this.waiters.shift();
      this.settle(w);
      w.resolve();
    }
  }

  /** Fails every waiter (shutdown). */
  rejectAll(err: Error): void {
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) {
      if (w.done) continue;
      this.settle(w);
      w.reject(err);
    }
  }

  /**
   * "swiotlb buffer is full" in the kernel's words and figures, once per burst:
   * swiotlb_tbl_map_single() in kernel/dma/swiotlb.c (6.10) warns with
   * dev_warn_ratelimited() unless DMA_ATTR_NO_WARN. Under the `wait` policy it is
   * the moment Linux would have failed the map (and blk-mq requeued the request).
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
      this.policy === 'wait' ? `${e.message}; the request waits for slots` : e.message,
    );
  }

  stats(): BackpressureStats {
    return { ...this.counters };
  }

  private settle(w: Waiter): void {
    w.done = true;
    if (w.timer) clearTimeout(w.timer);
    this.counters.waiting--;
    this.counters.waitSeconds += (performance.now() - w.since) / 1000;
  }

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
    this.released();
  }
}
