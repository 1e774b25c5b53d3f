/**
 * How long a device thread had nothing to do: the time it spent polling its
 * queue for a request and sleeping on the doorbell, added up by the thread in
 * a small SharedArrayBuffer of the host's (never in guest or pool memory), when
 * each idle stretch ends and at least every {@link IDLE_TICK_MS} of sleep.
 * Whatever is not idle is the thread's work (walking chains, its store's copies,
 * completing), or time the host's scheduler took it off its CPU while it worked.
 *
 *   word 0 (Float64): idle milliseconds since the thread's queue was set up
 *
 * Rules: the device thread is its one writer, and it only ever adds; a thread
 * started after a reset goes on adding to the same word. The host reads it as
 * what it is, the untrusted side's own word: a figure to measure with
 * ({@link idleMs} hands back NaN for anything but a finite, non-negative number),
 * never something a decision of the guest side rests on.
 */

/** Bytes of a thread clock. */
export const THREAD_CLOCK_BYTES = 8;

/**
 * The longest a device thread sleeps before it adds the idle time so far (and
 * sleeps again): a stretch is added when it ends, so without this a thread asleep
 * for minutes would add nothing until a request came, and an idle device would
 * read as fully busy. A reading is thus off by at most this much at each end of
 * an interval (less while requests flow). What the wake-ups cost an idle thread
 * is measured in docs/performance.md ("An idle device thread wakes every 50 ms").
 */
export const IDLE_TICK_MS = 50;

/** A new clock, at zero. */
export function threadClock(): SharedArrayBuffer {
  return new SharedArrayBuffer(THREAD_CLOCK_BYTES);
}

/** The device thread's side: adds the idle time since `since` (a performance.now() reading). */
export class IdleClock {
  private readonly word: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.word = new Float64Array(buffer, 0, 1);
  }

  addSince(since: number, now: number): void {
    this.word[0]! += now - since;
  }
}

/**
 * The host's side: the idle milliseconds the thread reported so far, read once;
 * NaN when the word does not hold a finite, non-negative number.
 */
export function idleMs(buffer: SharedArrayBuffer): number {
  const v = new Float64Array(buffer, 0, 1)[0]!;
  return Number.isFinite(v) && v >= 0 ? v : Number.NaN;
}
