/**
 * The logger the trusted side (mediator, copy engine) writes to, and the rate
 * limit that keeps a misbehaving device from flooding it.
 *
 * The interface is pino's shape (a record's fields first, then its message), so
 * a pino logger fits as is; the lower layers never import pino themselves. The
 * service creates one pino logger and hands it down; without one, nothing is
 * logged ({@link NO_LOG}).
 *
 * Field names shared by every record of these layers: `device`, `queue`, `pool`,
 * `worker`, `code` (an error code of src/errors.ts), `suppressed` (see
 * {@link RateLimit}).
 */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  /** A logger that adds `bindings` to each of its records. */
  child(bindings: Record<string, unknown>): Logger;
}

const nothing = (): void => undefined;

/** A logger that drops everything: the default of every `log` option. */
export const NO_LOG: Logger = {
  error: nothing,
  warn: nothing,
  info: nothing,
  debug: nothing,
  child: () => NO_LOG,
};

/**
 * The kernel's default rate-limit interval for its `_ratelimited` messages:
 * DEFAULT_RATELIMIT_INTERVAL (5 * HZ) in include/linux/ratelimit_types.h.
 */
export const DEFAULT_LOG_INTERVAL_MS = 5000;

/**
 * One record per burst of an event: the first event logs; the events of the next
 * `intervalMs` are only counted; the first event after that logs again and says
 * how many were left out (`suppressed`), as the kernel's ___ratelimit() prints
 * "N callbacks suppressed". The kernel lets 10 messages through per interval
 * (DEFAULT_RATELIMIT_BURST); this lets one, so that a device failing on every
 * request writes one line per interval, not ten.
 *
 *   event:   x  x x x   x        (quiet)        x  x
 *   logged:  ^ (suppressed 0)                   ^ (suppressed 4)
 *            |<-- intervalMs -->|
 *
 * Rules: a limit serves one kind of event of one subject (a pool's "buffer is
 * full", a device's faults); it allocates nothing per event.
 */
export class RateLimit {
  private openedAt = Number.NEGATIVE_INFINITY;
  private missed = 0;

  /**
   * @param intervalMs length of a burst window, ms (0 logs every event)
   * @param now the clock, ms (tests pass their own)
   */
  constructor(
    readonly intervalMs: number = DEFAULT_LOG_INTERVAL_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Counts one event. Returns how many events were suppressed since the last
   * record when this one is to be logged, or -1 when it is to be suppressed.
   */
  take(): number {
    const t = this.now();
    if (t - this.openedAt < this.intervalMs) {
      this.missed++;
      return -1;
    }
    this.openedAt = t;
    const missed = this.missed;
    this.missed = 0;
    return missed;
  }
}
