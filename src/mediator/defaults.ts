import { availableParallelism } from 'node:os';
import { IO_TLB_DEFAULT_SIZE } from '../swiotlb/constants.js';
import { defaultAreaCount } from '../swiotlb/geometry.js';
import type { Placement } from '../swiotlb/warm.js';

/**
 * Every default that both the runtime (Mediator, BlkDriver, PoolGate, GuestMemory,
 * CopyEngine) and the service config state, stated once here: the runtime falls
 * back to these when an option is left out, and the config's schema fills them in
 * (so what the config shows is what runs). A light module: node:os and pure
 * swiotlb/worker helpers only, so that parsing a config loads no thread, no
 * piscina and no device code (test/config.test.ts checks it in a child process).
 *
 * The copy engine's own defaults live in src/workers/copy-defaults.ts (the engine
 * may not import src/mediator) and are re-exported here.
 */

export {
  COPY_DEFAULTS,
  callerHasCore,
  defaultCopyWorkers,
  defaultEnginePollMicros,
  defaultInlineThreshold,
  defaultSplitInline,
  defaultSplitThreshold,
} from '../workers/copy-defaults.js';

/**
 * How the guest hands its I/O buffers to devices:
 * - `bounce` isolates: buffers stay in guest memory and are bounced through the
 *   pool (Linux's swiotlb);
 * - `direct` is the baseline without isolation: devices are handed guest memory;
 * - `shared` allocates each request's buffers in the pool itself (a driver
 *   allocating from a restricted DMA pool): no bounce copies, but the device sees
 *   those buffers, and can change them, while the request is in flight.
 */
export const MODES = ['bounce', 'direct', 'shared'] as const;
export type Mode = (typeof MODES)[number];

/** `bounce` isolates; `direct` is the baseline without isolation. */
export const DEFAULT_MODE = 'bounce' as const satisfies Mode;

/**
 * What a bounce-mode map and unmap copy for a DMA_FROM_DEVICE buffer (a read):
 * - `linux`: as swiotlb_tbl_map_single() (kernel/dma/swiotlb.c, 6.10): the
 *   map copies the guest buffer into the slots for every direction, and the unmap
 *   copies the whole buffer back;
 * - `used-length`: the map copies nothing in (no guest byte reaches the device),
 *   and the unmap copies back only the bytes the device's used length says it
 *   wrote (VIRTIO 1.2 §2.7.8.2), as virtio-net's premapped receive path syncs
 *   only the received length. Rules and reasoning: BounceDma in dma.ts.
 */
export const FROM_DEVICE_BOUNCES = ['linux', 'used-length'] as const;
export type FromDeviceBounce = (typeof FROM_DEVICE_BOUNCES)[number];

/**
 * Where the service's config departs from Linux's behaviour by default: the
 * service takes what costs less while it keeps the isolation (issue 17; the
 * figures: docs/performance.md, "Tuned defaults"). Warm placement (recently freed
 * slots first) and reads without the copy-in. Everything that models a kernel
 * keeps Linux's behaviour: `replay`, `size`, the pool and Mediator APIs, and
 * mode `bounce` of `bench` (its `bounce-tuned` mode is these two).
 */
export const SERVICE_DEFAULTS = {
  placement: 'warm',
  fromDeviceBounce: 'used-length',
} as const satisfies { placement: Placement; fromDeviceBounce: FromDeviceBounce };

/** A pool: Linux's default size (IO_TLB_DEFAULT_SIZE, 64 MiB) at guest-physical 0. */
export const POOL_DEFAULTS = {
  size: IO_TLB_DEFAULT_SIZE,
  base: 0,
} as const;

/** Areas of a pool by default: the CPUs rounded up to a power of two, as the kernel. */
export const defaultPoolAreas = defaultAreaCount;

/**
 * What a virtio-blk request does when its pool has no room for its buffers.
 *
 * - `requeue`: what Linux does. virtio_queue_rq() (drivers/block/virtio_blk.c,
 *   6.1 to 7.2) gets -ENOMEM from virtblk_add_req() (the DMA map of a buffer
 *   failed: "swiotlb buffer is full") and returns BLK_STS_RESOURCE ("Don't stop
 *   the queue if -ENOMEM: we may have failed to bounce the buffer due to global
 *   resource outage"); blk_mq_dispatch_rq_list() (block/blk-mq.c) puts the request
 *   back on its hardware queue's dispatch list, ahead of the requests it had not
 *   tried yet, and runs the queue again: when a request of that queue completes
 *   (blk_mq_sched_restart() from __blk_mq_free_request()), when a new request
 *   comes to that queue (blk_mq_submit_bio() runs it at once), and
 *   BLK_MQ_RESOURCE_DELAY (3 ms) after each failed run. No time limit.
 * - `requeue-bounded`: the service's default. The request is requeued until slots
 *   come back, as above, but waiters are served first come first served across
 *   the whole pool (retried whenever any request of the pool frees slots, so a
 *   large request is never starved by small ones of other queues), and a request
 *   gives up after `waitMs` (503 MEDIATOR_BACKPRESSURE_TIMEOUT).
 * - `fail`: the DMA API's answer, not virtio-blk's: the map fails at once with
 *   "swiotlb buffer is full" and so does the request. Drivers that do not requeue
 *   (a network driver dropping a packet) see this.
 */
export const BACKPRESSURE_POLICIES = ['requeue', 'requeue-bounded', 'fail'] as const;
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

/** Names earlier releases took, and the policy each means now. */
export const BACKPRESSURE_ALIASES: Readonly<Record<string, BackpressurePolicy>> = {
  wait: 'requeue-bounded',
};

/** A policy name (or an old alias) as the policy it means; undefined when unknown. */
export function backpressurePolicy(name: string): BackpressurePolicy | undefined {
  if ((BACKPRESSURE_POLICIES as readonly string[]).includes(name)) {
    return name as BackpressurePolicy;
  }
  return BACKPRESSURE_ALIASES[name];
}

/**
 * blk-mq's BLK_MQ_RESOURCE_DELAY (block/blk-mq.c, 6.1 to 7.2): after a
 * BLK_STS_RESOURCE, the hardware queue runs again after this many ms.
 */
export const BLK_MQ_RESOURCE_DELAY_MS = 3;

/** What a request does when its pool is full: requeued, for up to 5 s. */
export const BACKPRESSURE_DEFAULTS = {
  policy: 'requeue-bounded',
  waitMs: 5000,
} as const satisfies { policy: BackpressurePolicy; waitMs: number };

/**
 * A guest's private memory when nothing sizes it (the config's "auto" sizes it
 * to its devices instead), and where it starts: 4 GiB, above a pool at 0.
 */
export const GUEST_DEFAULTS = {
  size: 256 * 2 ** 20,
  base: 2 ** 32,
} as const;

/** A virtio-blk device's options (BlkDriverOptions) when left out. */
export const DEVICE_DEFAULTS = {
  /** Disk size in bytes. */
  capacity: 256 * 2 ** 20,
  /** Virtqueues, each with its own device thread. */
  queues: 1,
  /** Descriptors per virtqueue. */
  queueSize: 256,
  /** Requests in flight per queue (before the cap that makes chains fit). */
  depth: 32,
  /** Largest data transfer of one request. */
  maxRequestBytes: 2 ** 20,
  /** A request not completed after this long fails and the device is reset. */
  timeoutMs: 5000,
  /** A device thread not serving this long after its start fails its waiting requests and the device is reset. */
  readyTimeoutMs: 10_000,
  /** file-blk: sync every write before it completes. */
  sync: 'durable',
  /** The device's DMA min_align_mask. */
  minAlignMask: 0,
  /**
   * How long the driver polls for the next completion after one, in
   * microseconds, before it sleeps until the device notifies (blk-mq's hybrid
   * polling): cheaper than a wake-up while completions keep coming, free when
   * the queue is idle.
   */
  pollMicros: 200,
  /** Record each request's latency for the metrics. */
  recordLatency: true,
  /** Bounce mode: Linux's copies for DMA_FROM_DEVICE buffers (map copies in, unmap copies all back). */
  fromDeviceBounce: 'linux',
} as const satisfies {
  capacity: number;
  queues: number;
  queueSize: number;
  depth: number;
  maxRequestBytes: number;
  timeoutMs: number;
  readyTimeoutMs: number;
  sync: 'durable' | 'none';
  minAlignMask: number;
  pollMicros: number;
  recordLatency: boolean;
  fromDeviceBounce: FromDeviceBounce;
};

/** Device threads a process runs for `devices`: one per queue, all devices together. */
export function deviceThreadCount(devices: readonly { queues?: number | undefined }[]): number {
  return devices.reduce((n, d) => n + (d.queues ?? DEVICE_DEFAULTS.queues), 0);
}

/**
 * How long a device thread polls its queue before it sleeps, by default: 200 us
 * when the process's device threads and its main thread have a CPU each, else
 * 50 us. A sleeping device thread must be woken by the driver (a futex wake on the
 * main thread's time); with a core of its own it can afford to wait for the next
 * batch instead. With more threads than CPUs, polling takes the core the main
 * thread needs: there the shorter poll stays. The service has a rule of its own
 * ({@link serviceDeviceSpinMicros}).
 */
export function defaultDeviceSpinMicros(
  deviceThreads: number,
  cpus: number = availableParallelism(),
): number {
  return deviceThreads + 1 <= cpus ? 200 : 50;
}

/**
 * {@link defaultDeviceSpinMicros} for a process that runs `devices` (the Mediator
 * asks it for devices that set no spinMicros).
 */
export function defaultSpinMicrosFor(
  devices: readonly { queues?: number | undefined }[],
  cpus: number = availableParallelism(),
): number {
  return defaultDeviceSpinMicros(deviceThreadCount(devices), cpus);
}

/**
 * The service's device threads poll 200 us only when they, its HTTP thread and
 * one CPU more (the kernel's socket work and whatever sends the requests) have a
 * CPU each, else not at all: they sleep as soon as their queue is empty. An HTTP
 * thread publishes requests as it reads them from its sockets and wakes a
 * sleeping device once, when its event-loop turn ends (BlkDriver.ring), so a
 * device that polls between requests saves few wake-ups and burns the CPU the
 * HTTP thread and the network stack need (docs/performance.md, "The service's
 * device threads sleep at once on 2 CPUs"). A closed loop of I/O in one process
 * (`bench`, `bench:pipeline`, the library) keeps {@link defaultSpinMicrosFor}.
 */
export function serviceDeviceSpinMicros(
  devices: readonly { queues?: number | undefined }[],
  cpus: number = availableParallelism(),
): number {
  return deviceThreadCount(devices) + 2 <= cpus ? 200 : 0;
}

/**
 * Copy workers by default for a process that runs `devices`: the CPUs left once
 * the main thread and every device thread (one per queue) have one, at most 4; 0,
 * every copy inline, when none is left. A copy worker without a core of its own
 * takes it from a device thread or the main thread, and the hand-off then costs
 * more than the copy.
 */
export function defaultCopyWorkersFor(
  devices: readonly { queues?: number | undefined }[],
  cpus: number = availableParallelism(),
): number {
  return Math.max(0, Math.min(4, cpus - 1 - deviceThreadCount(devices)));
}
