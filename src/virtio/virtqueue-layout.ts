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
 *   align 64            used ring          le16 flags; le16 idx; { le32 id; le32 len }[size]; le16 avail_event
 *   align 64            notification words (Int32, this project's doorbells):
 *                         DOORBELL        guest -> device: bumped after publishing avail entries
 *                                         while DEVICE_SLEEPING is set (and at STOP)
 *                         DEVICE_SLEEPING device sets it before it waits on DOORBELL
 *                         COMPLETION      device -> guest: bumped after publishing used entries
 *                                         while DRIVER_WAITING is set
 *                         STOP            host -> device: finish and exit (clean shutdown)
 *                         DRIVER_WAITING  guest sets it before it waits on COMPLETION; the
 *                                         device notifies COMPLETION only while it is set
 *                                         (the guest polls otherwise)
 *
 * Rules: both indices are free-running 16-bit counters; ring slots are idx mod size.
 * A side that waits reads the counter it waits on and sets its flag (seq_cst),
 * then looks at the ring once more, then waits on the value it read; a side that
 * publishes stores its index (seq_cst), then reads the flag, and bumps the counter
 * and wakes only if it is set. Either the publisher sees the flag (and its bump
 * fails or ends the wait), or the waiter's last look sees the index. While both
 * sides are busy nobody writes these words, so their line stays in both caches.
 * Everything here is device-writable, so the guest reads each field once and
 * validates it, and treats the notification words as hints only (a wrong value
 * can cost a wake-up, never a wrong completion).
 *
 * Against the sources:
 * - Sizes and alignments are the spec's (split-ring.tex, the table of "Virtqueue
 *   Part / Alignment / Size": descriptor table 16 and 16*size, available ring 2
 *   and 6+2*size, used ring 4 and 6+8*size; "Queue Size value is always a power of
 *   2. The maximum Queue Size value is 32768"). Linux 6.12 lays the three parts out
 *   contiguously with vring_init() (include/uapi/linux/virtio_ring.h) and aligns
 *   the used ring to the vring_align its transport passes: SMP_CACHE_BYTES for
 *   virtio-pci modern (drivers/virtio/virtio_pci_modern.c, setup_vq():
 *   vring_create_virtqueue(index, num, SMP_CACHE_BYTES, ...)), 64 on x86, as this
 *   layout does (the spec's minimum is 4): the used ring's index, which the device
 *   stores at each completion, then shares no cache line with the available
 *   ring's tail, which the driver writes.
 * - Notification suppression is not the spec's: used_event and avail_event exist
 *   (VIRTIO_RING_F_EVENT_IDX) but are never written, and avail->flags and
 *   used->flags stay 0. Their work is done by the notification words below:
 *   DEVICE_SLEEPING stands where VRING_USED_F_NO_NOTIFY's inverse would ("kick me"),
 *   DRIVER_WAITING where VRING_AVAIL_F_NO_INTERRUPT's inverse would, both read as
 *   hints, as the spec's ("Neither of these notification suppression methods are
 *   reliable"). QEMU offers EVENT_IDX by default (include/hw/virtio/virtio.h,
 *   DEFINE_VIRTIO_COMMON_FEATURES: "event_idx" true), and Linux then uses
 *   vring_need_event() on used_event/avail_event.
 * - No descriptor is ever VRING_DESC_F_INDIRECT (4): the driver chains descriptors
 *   directly (README, "maps no indirect descriptor table"), and the device does not
 *   look at the flag.
 */
/** include/uapi/linux/virtio_ring.h (6.12): "This marks a buffer as continuing via the next field." */
export const VRING_DESC_F_NEXT = 1;
/** include/uapi/linux/virtio_ring.h (6.12): "This marks a buffer as write-only (otherwise read-only)." */
export const VRING_DESC_F_WRITE = 2;
export const DESC_SIZE = 16;

export const NOTIFY_DOORBELL = 0;
export const NOTIFY_DEVICE_SLEEPING = 1;
export const NOTIFY_COMPLETION = 2;
export const NOTIFY_STOP = 3;
export const NOTIFY_DRIVER_WAITING = 4;
const NOTIFY_WORDS = 16;
/** Linux's vring_align on x86 virtio-pci modern: SMP_CACHE_BYTES (see above). */
const USED_ALIGN = 64;

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
  const used = alignUp(avail + 6 + 2 * size, USED_ALIGN);
  const notify = alignUp(used + 6 + 8 * size, 64);
  const end = notify + NOTIFY_WORDS * 4;
  return { size, desc, avail, used, notify, bytes: end - base };
}
