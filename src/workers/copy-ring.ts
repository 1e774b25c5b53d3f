/**
 * The descriptor ring between the main thread (the only producer) and one copy
 * worker (the only consumer). It lives in a trusted SharedArrayBuffer that device
 * backends never see.
 *
 *   Int32 words:
 *   [0] HEAD      descriptors written by the producer (free-running, wraps at 2^31)
 *   [1] TAIL      descriptors finished by the consumer (free-running)
 *   [2] SLEEPING  1 while the consumer is (about to be) in Atomics.wait on HEAD
 *   [3] STOP      1: the consumer returns once HEAD == TAIL
 *   [4] THREAD    threadId of the consumer serving this ring
 *   [5] NOTIFY_AT the TAIL value whose publication the consumer notifies (the
 *                 producer's wish, as virtio's used_event: one wake-up per batch)
 *   [16 + i * DESC_WORDS ...] descriptor i & (capacity - 1):
 *       [DIR] [GUEST region] [GUEST offset] [POOL region] [POOL offset] [LENGTH] [-] [-]
 *       (offsets and LENGTH are unsigned 32-bit values in int32 words: the engine
 *       keeps every region below 4 GiB, so none is cut, and a LENGTH is never 0)
 *
 *        TAIL            HEAD
 *         v               v
 *   [ done | copying ... | free ............ ]   (mod capacity)
 *
 * Rules:
 * - 0 <= HEAD - TAIL <= capacity; the producer writes descriptor HEAD and then
 *   publishes it with Atomics.store(HEAD + 1); the consumer reads descriptors
 *   TAIL..HEAD-1 only after Atomics.load(HEAD), and publishes with
 *   Atomics.store(TAIL); when the TAIL it stored equals NOTIFY_AT it then calls
 *   Atomics.notify(TAIL).
 * - Before it waits on TAIL, the producer stores NOTIFY_AT (a TAIL value not yet
 *   reached, at most HEAD) and then re-reads TAIL; it waits only when TAIL has not
 *   reached NOTIFY_AT. The consumer stores TAIL and then reads NOTIFY_AT. With
 *   sequentially consistent atomics one of the two sees the other's store: either
 *   the producer sees the TAIL it wanted and does not wait, or the consumer sees
 *   the wish and notifies. TAIL grows by one per copy, so equality fires once.
 * - Descriptors are finished in order, so TAIL alone says which are done.
 * - The consumer sets SLEEPING, re-reads HEAD, and only then waits; the producer
 *   notifies HEAD when it sees SLEEPING set. With sequentially consistent atomics
 *   one of the two always sees the other's store, so no wake-up is lost.
 * - STOP is not covered by that: the consumer's wait compares HEAD, which stopping
 *   leaves alone, so a consumer that read STOP as 0 and then waits misses a notify
 *   sent in between. The producer therefore notifies HEAD again and again after
 *   storing STOP, until the consumer has returned (CopyEngine.close()).
 */
import type { MessagePort } from 'node:worker_threads';

export const RING_HEAD = 0;
export const RING_TAIL = 1;
export const RING_SLEEPING = 2;
export const RING_STOP = 3;
export const RING_THREAD = 4;
export const RING_NOTIFY_AT = 5;
const HEADER_WORDS = 16;

export const DESC_WORDS = 8;
export const D_DIR = 0;
export const D_GUEST_REGION = 1;
export const D_GUEST_OFFSET = 2;
export const D_POOL_REGION = 3;
export const D_POOL_OFFSET = 4;
export const D_LENGTH = 5;

export function ringBytes(capacity: number): number {
  return (HEADER_WORDS + capacity * DESC_WORDS) * 4;
}

export function descriptorIndex(seq: number, capacity: number): number {
  return HEADER_WORDS + (seq & (capacity - 1)) * DESC_WORDS;
}

/** The task a copy worker runs for as long as its ring lives. */
export interface ServeTask {
  ring: SharedArrayBuffer;
  capacity: number;
  /** The copy statistics buffer, its number of blocks, and this worker's block. */
  stats: SharedArrayBuffer;
  blocks: number;
  block: number;
  maxRegions: number;
  /** Regions known when the task starts; later ones arrive on `port`. */
  regions: { id: number; buffer: SharedArrayBuffer }[];
  port: MessagePort;
  /** How long an idle worker polls HEAD before it sleeps, in microseconds. */
  spinMicros: number;
}

/** A region registration sent to a worker's port. */
export interface RegionMessage {
  id: number;
  buffer: SharedArrayBuffer;
}
