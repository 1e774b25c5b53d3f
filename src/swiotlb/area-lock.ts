/**
 * A mutex in one Int32 of a SharedArrayBuffer: the three-state futex lock of
 * Drepper's "Futexes Are Tricky" (mutex2), with a short spin before sleeping.
 *
 *   0 = unlocked
 *   1 = locked, nobody waiting
 *   2 = locked, maybe somebody waiting (unlock must notify)
 *
 * Critical sections here are one slot search (microseconds), so a brief spin
 * usually wins; a thread that loses the spin sleeps in Atomics.wait and costs no CPU.
 * Node allows Atomics.wait on the main thread, so every thread can take the lock.
 */

const UNLOCKED = 0;
const LOCKED = 1;
const CONTENDED = 2;
const SPIN_TRIES = 64;

/**
 * Takes the lock at `state[index]`. Returns true when the lock was contended
 * (the caller counts that, like lock_stat would), false when it was free.
 */
export function acquire(state: Int32Array, index: number): boolean {
  let c = Atomics.compareExchange(state, index, UNLOCKED, LOCKED);
  if (c === UNLOCKED) return false;
  for (let i = 0; i < SPIN_TRIES; i++) {
    c = Atomics.compareExchange(state, index, UNLOCKED, LOCKED);
    if (c === UNLOCKED) return true;
  }
  if (c !== CONTENDED) c = Atomics.exchange(state, index, CONTENDED);
  while (c !== UNLOCKED) {
    Atomics.wait(state, index, CONTENDED);
    c = Atomics.exchange(state, index, CONTENDED);
  }
  return true;
}

export function release(state: Int32Array, index: number): void {
  if (Atomics.sub(state, index, 1) !== LOCKED) {
    Atomics.store(state, index, UNLOCKED);
    Atomics.notify(state, index, 1);
  }
}
