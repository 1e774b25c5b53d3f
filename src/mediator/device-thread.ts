import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { workerScript } from '../util/worker-script.js';
import { VIRTIO_BLK_ID_BYTES } from '../virtio/blk-format.js';
import {
  type ChaosOptions,
  DEFAULT_CHAOS_SEED,
  type DeviceKind,
  type DeviceWorkerData,
} from '../virtio/device-spec.js';
import { NOTIFY_COMPLETION, NOTIFY_STOP } from '../virtio/virtqueue-layout.js';
import type { BlkQueue } from './blk-queue.js';

/**
 * The untrusted side of a queue: one device backend thread per virtqueue. What it
 * is given at start-up (workerData) is all it ever holds: the memory it may see
 * (the pool in bounce mode), where its queue lies in it, and its own backing store
 * (a SharedArrayBuffer for ram-blk and chaos, a file descriptor for file-blk).
 * Never guest memory in bounce mode, never a function of the guest side.
 */

/** What a device hands each of its queue threads besides the queue itself. */
export interface DeviceThreadSpec {
  kind: DeviceKind;
  serial: string;
  spinMicros: number;
  /** The disk's size in bytes: every kind checks sectors against it, the null device included. */
  capacity: number;
  backing: SharedArrayBuffer | undefined;
  file: DeviceWorkerData['file'];
  /** chaos: the device's options; each thread gets its own seed from them. */
  chaos: ChaosOptions | undefined;
  /** Resets so far: a thread started after a reset draws a new chaos stream. */
  resets: number;
}

export function deviceWorkerData(q: BlkQueue, spec: DeviceThreadSpec): DeviceWorkerData {
  const l = q.vq.layout;
  const data: DeviceWorkerData = {
    kind: spec.kind,
    memory: q.memory,
    memBase: q.memBase,
    queue: { size: l.size, desc: l.desc, avail: l.avail, used: l.used, notify: l.notify },
    serial: spec.serial.slice(0, VIRTIO_BLK_ID_BYTES),
    spinMicros: spec.spinMicros,
    clock: q.threadClock,
    capacity: spec.capacity,
  };
  if (spec.backing) data.backing = spec.backing;
  if (spec.file) data.file = spec.file;
  if (spec.kind === 'chaos') {
    // Each queue thread, and each thread after a reset, gets its own reproducible stream.
    const seed = (spec.chaos?.seed ?? DEFAULT_CHAOS_SEED) + q.index * 7919 + spec.resets * 104729;
    data.chaos = { ...spec.chaos, seed };
  }
  return data;
}

/** How a device thread ended: an uncaught error (an exit follows), or its exit. */
export type ThreadDeath = { how: 'error'; error: Error } | { how: 'exit'; exitCode: number };

/** What a device thread tells the device that started it. */
export interface DeviceThreadEvents {
  /** An error or an exit of the thread; the device decides whether to reset. */
  death(worker: Worker, death: ThreadDeath): void;
  /**
   * Its backing store threw (EIO, ENOSPC...): the request completed with
   * VIRTIO_BLK_S_IOERR, and this says why. `message` is the thread's word, cut
   * to {@link IO_ERROR_MESSAGE_MAX} characters.
   */
  ioError(message: string): void;
}

/**
 * The longest store error message passed on: the thread is the untrusted side,
 * and a message goes into the log as is.
 */
export const IO_ERROR_MESSAGE_MAX = 200;

/**
 * The message of an `io-error` post, or undefined for any other post. Read once,
 * as anything the device side hands over: a post that is not an object of that
 * shape is no io-error; a message that is not a string is "(no message)".
 */
function ioErrorMessage(msg: unknown): string | undefined {
  if (typeof msg !== 'object' || msg === null) return undefined;
  const { type, message } = msg as { type?: unknown; message?: unknown };
  if (type !== 'io-error') return undefined;
  return typeof message === 'string' ? message.slice(0, IO_ERROR_MESSAGE_MAX) : '(no message)';
}

/**
 * What a thread's uncaught throw is to the guest side: an Error, whatever it
 * threw. The 'error' event hands over the thrown value as the thread's code
 * threw it (`throw null` arrives as null), and the thread is the untrusted side:
 * read as an Error, such a value made the death handler throw in turn, out of
 * the event, and took the whole process down.
 */
function threadError(thrown: unknown): Error {
  if (thrown instanceof Error) {
    // Its message and stack are the thread's words too: a longer one is cut, so
    // that a thread cannot write megabytes into the log (its stack then goes).
    if (thrown.message.length <= IO_ERROR_MESSAGE_MAX && (thrown.stack?.length ?? 0) <= 8192) {
      return thrown;
    }
    return new Error(
      `the device thread threw: ${thrown.message.slice(0, IO_ERROR_MESSAGE_MAX)} (cut to ${IO_ERROR_MESSAGE_MAX} characters)`,
    );
  }
  const what = thrown !== null && typeof thrown === 'object' ? 'an object' : String(thrown);
  return new Error(
    `the device thread threw ${what.slice(0, IO_ERROR_MESSAGE_MAX)}, which is no Error`,
  );
}

/**
 * Starts the queue's device thread and sets `q.ready`, which resolves once it
 * serves (or exits). Requests already queued are timed from then. `events`
 * hears of the thread's store errors, errors and exit.
 */
export function startDeviceThread(
  q: BlkQueue,
  data: DeviceWorkerData,
  events: DeviceThreadEvents,
): Worker {
  const script = workerScript('devices/device-worker');
  const worker = new Worker(script.filename, {
    workerData: data,
    ...(script.env ? { env: script.env } : {}),
  });
  worker.unref();
  q.isReady = false;
  q.startedAt = performance.now();
  q.ready = new Promise<void>((resolve) => {
    // The thread's first 'ready' only: it restarts the clock of every request in
    // flight, and the thread is the untrusted side. Heard again, a thread that
    // drops a request and says 'ready' within each timeout would keep that request
    // (and close(), which waits for it) from ever timing out.
    const onReady = (msg: { type?: unknown } | null) => {
      if (msg?.type !== 'ready') return;
      worker.off('message', onReady);
      q.isReady = true;
      const now = performance.now();
      for (const req of q.byHead) if (req) req.submittedAt = Math.max(req.submittedAt, now);
      resolve();
    };
    worker.on('message', onReady);
    worker.once('exit', () => resolve());
  });
  worker.on('message', (msg: unknown) => {
    const message = ioErrorMessage(msg);
    if (message !== undefined) events.ioError(message);
  });
  worker.on('error', (thrown: unknown) =>
    events.death(worker, { how: 'error', error: threadError(thrown) }),
  );
  worker.on('exit', (exitCode) => events.death(worker, { how: 'exit', exitCode }));
  return worker;
}

/**
 * Stops the queue's device thread: `clean` asks it to finish (NOTIFY_STOP and a
 * doorbell; terminated after 2 s if it does not), otherwise it is terminated.
 * Then wakes a waitAsync on the completion word, so nothing waits on a dead thread.
 */
export async function stopDeviceThread(q: BlkQueue, clean: boolean): Promise<void> {
  const worker = q.worker;
  q.worker = undefined;
  if (!worker) return;
  const words = new Int32Array(q.memory);
  const notify = (q.vq.layout.notify - q.memBase) >>> 2;
  if (clean) {
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    Atomics.store(words, notify + NOTIFY_STOP, 1);
    Atomics.add(words, notify, 1);
    Atomics.notify(words, notify, 1);
    const timer = setTimeout(() => void worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
  } else {
    await worker.terminate();
  }
  Atomics.store(words, notify + NOTIFY_STOP, 0);
  Atomics.notify(words, notify + NOTIFY_COMPLETION);
  q.armed = false;
}
