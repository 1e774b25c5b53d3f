import { MediatorError } from '../errors.js';

/**
 * Where one split virtqueue (VIRTIO 1.2, section 2.7) lies in the memory a device
 * can see: the shared pool in bounce mode, guest memory in direct mode. The host
 * side (the mediator) places it there when it sets the device up, so the guest
 * never chooses where a device looks (options 3/4 of the seed post).
 *
 *   base (4 KiB aligned)
 *   +0                  descriptor table   size x 16 B  { le64 addr; le32 len; le16 flags; le16 next }
 *   +16*size            available ring     le16 flags; le16 idx; le16 ring[size]; le16 used_event
 *   align 4             used ring          le16 flags; le16 idx; { le32 id; le32 len }[size]; le16 avail_event
 *   align 64            notification words (Int32, this project's doorbells):
 *                         DOORBELL        guest -> device: bumped after publishing avail entries
 *                         DEVICE_SLEEPING device sets it before it waits on DOORBELL
 *                         COMPLETION      device -> guest: bumped after publishing used entries
 *                         STOP            host -> device: finish and exit (clean shutdown)
 *                         DRIVER_WAITING  guest sets it before it waits on COMPLETION; the
 *                                         device notifies COMPLETION only while it is set
 *                                         (the guest polls otherwise)
 *
 * Rules: both indices are free-running 16-bit counters; ring slots are idx mod size.
 * Everything here is device-writable, so the guest reads each field once and
 * validates it, and treats the notification words as hints only (a wrong value
 * can cost a wake-up, never a wrong completion).
 */
export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const DESC_SIZE = 16;

export const NOTIFY_DOORBELL = 0;
export const NOTIFY_DEVICE_SLEEPING = 1;
export const NOTIFY_COMPLETION = 2;
export const NOTIFY_STOP = 3;
export const NOTIFY_DRIVER_WAITING = 4;
const NOTIFY_WORDS = 16;

export const MAX_QUEUE_SIZE = 32768;

export interface VirtqueueLayout {
  /** Queue size (number of descriptors): a power of two. */
  readonly size: number;
  /** Address (in the device-visible space) of the descriptor table. */
  readonly desc: number;
  /** Address of the available ring (its flags field). */
  readonly avail: number;
  /** Address of the used ring (its flags field). */
  readonly used: number;
  /** Address of the notification words. */
  readonly notify: number;
  /** Bytes from desc to the end of the notification words. */
  readonly bytes: number;
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

export function checkQueueSize(size: number): void {
  if (!Number.isInteger(size) || size < 2 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `queue size ${String(size)} must be a power of two from 2 to ${MAX_QUEUE_SIZE}`,
      { size },
    );
  }
}

/** Bytes one queue of `size` descriptors needs. */
export function virtqueueBytes(size: number): number {
  return layoutAt(0, size).bytes;
}

/** The layout of a queue of `size` descriptors placed at `base` (4 KiB aligned). */
export function layoutAt(base: number, size: number): VirtqueueLayout {
  checkQueueSize(size);
  const desc = base;
  const avail = desc + DESC_SIZE * size;
  const used = alignUp(avail + 6 + 2 * size, 4);
  const notify = alignUp(used + 6 + 8 * size, 64);
  const end = notify + NOTIFY_WORDS * 4;
  return { size, desc, avail, used, notify, bytes: end - base };
}
