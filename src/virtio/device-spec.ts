/**
 * What the host tells a device thread when it starts it: the contract between the
 * trusted side (src/mediator/device-thread.ts builds it) and the untrusted side
 * (src/devices/device-worker.ts receives it as workerData). Plain data only: a
 * device thread holds nothing of the guest side but what is listed here.
 */

export type DeviceKind = 'null' | 'ram-blk' | 'file-blk' | 'chaos';
export const DEVICE_KINDS: readonly DeviceKind[] = ['null', 'ram-blk', 'file-blk', 'chaos'];

/**
 * The hostile device's choices: what a compromised host-side backend can do to the
 * memory it sees. Seeded and reproducible: the same seed and the same requests give
 * the same sabotage.
 */
export interface ChaosRates {
  /**
   * Probability that a request is never completed.
   * @default 0.02
   */
  drop?: number;
  /**
   * Probability that a request is completed twice.
   * @default 0.03
   */
  double?: number;
  /**
   * Probability that the used id names another (random) chain.
   * @default 0.03
   */
  badId?: number;
  /**
   * Probability that the used length exceeds the chain's writable bytes.
   * @default 0.03
   */
  badLen?: number;
  /**
   * Probability, per request, of writing random bytes at random places anywhere
   * in the device-visible memory (other requests' buffers, rings, doorbells).
   * @default 0.05
   */
  scribble?: number;
  /**
   * Probability that the chain's descriptors are overwritten after reading.
   * @default 0.05
   */
  corruptDesc?: number;
  /**
   * Probability that used->idx jumps by a random amount.
   * @default 0.01
   */
  jumpIdx?: number;
}

export interface ChaosOptions extends ChaosRates {
  /** @default {@link DEFAULT_CHAOS_SEED} */
  seed?: number;
  /**
   * A backend that hangs while it sets up: the thread never says it serves and
   * takes no request (the driver's readyTimeoutMs ends the wait).
   * @default false
   */
  silent?: boolean;
}

/** The chaos device's seed when none is given. */
export const DEFAULT_CHAOS_SEED = 1;

export const DEFAULT_CHAOS: Required<ChaosRates> = {
  drop: 0.02,
  double: 0.03,
  badId: 0.03,
  badLen: 0.03,
  scribble: 0.05,
  corruptDesc: 0.05,
  jumpIdx: 0.01,
};

/**
 * A device backend thread serving one virtqueue: the untrusted side. Its
 * workerData is everything it has: the device-visible memory (the shared pool in
 * bounce mode), where the queue lies in it, and its own backing store. It never
 * receives guest memory in bounce mode, nor any function of the guest side.
 */
export interface DeviceWorkerData {
  kind: DeviceKind;
  /** The only guest-visible memory the device gets. */
  memory: SharedArrayBuffer;
  /** Address of memory[0] (the pool base, or the guest base in direct mode). */
  memBase: number;
  queue: { size: number; desc: number; avail: number; used: number; notify: number };
  /**
   * The disk's size in bytes (the configured `capacity`, a multiple of 512), for
   * every kind: what the device checks a request's sectors against. The null
   * device has no store, so this is its only bound (QEMU's null-co has its `size`).
   */
  capacity: number;
  /** ram-blk and chaos: the disk. */
  backing?: SharedArrayBuffer;
  /** file-blk: the disk, a descriptor the host opened (and closes). */
  /**
   * file-blk: the backing file's descriptor (the host's) and `syncFailed`, one
   * Int32 every queue's thread shares: the errno of the first failed fdatasync().
   */
  file?: { fd: number; capacity: number; durable: boolean; syncFailed: SharedArrayBuffer };
  /** GET_ID answer. */
  serial: string;
  chaos?: ChaosOptions;
  /** Polling before sleeping on the doorbell, in microseconds. */
  spinMicros: number;
  /**
   * Where the thread adds up its idle time (thread-clock.ts): host memory of the
   * queue's, seen by no guest.
   */
  clock: SharedArrayBuffer;
}
