import { PAGE_SIZE } from '../swiotlb/constants.js';
import { maxMappingSize } from '../swiotlb/dma-rules.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import type { Logger } from '../util/logger.js';
import { SECTOR_SIZE } from '../virtio/blk-format.js';
import type { ChaosOptions, DeviceKind } from '../virtio/device-spec.js';
import { virtqueueBytes } from '../virtio/virtqueue-layout.js';
import type { CopyEngine } from '../workers/copy-engine.js';
import type { FromDeviceBounce, Mode } from './defaults.js';
import type { GuestMemory } from './guest-memory.js';
import type { PoolGate } from './pool-gate.js';

/**
 * What a block device is asked to be (options, the context it runs in) and the
 * shape it takes in guest memory; the device itself is in blk-driver.ts, the
 * defaults in defaults.ts. Light: parsing a config uses deviceGuestLayout.
 */

export interface BlkDriverOptions {
  /** Device name, e.g. "blk0". */
  id: string;
  kind: DeviceKind;
  /**
   * Disk size in bytes (ram-blk, file-blk, chaos; the null device reports it too).
   * @default 268435456 (256 MiB)
   */
  capacity?: number;
  /**
   * Virtqueues; each has its own device thread and starts its maps in its own pool area.
   * @default 1
   */
  queues?: number;
  /**
   * Descriptors per virtqueue (a power of two).
   * @default 256
   */
  queueSize?: number;
  /**
   * Requests in flight per queue (queue depth). Capped so that every request's
   * descriptor chain fits in the queue.
   * @default 32
   */
  depth?: number;
  /**
   * Largest data transfer of one request, in bytes (a multiple of 512).
   * @default 1048576
   */
  maxRequestBytes?: number;
  /**
   * A request the device has not completed after this long fails with
   * MEDIATOR_DEVICE_TIMEOUT and the device is reset.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * A device thread that has not started serving this long after it was started
   * (its first 'ready') fails the requests waiting for it with
   * MEDIATOR_DEVICE_TIMEOUT, and the device is reset: a backend that hangs while
   * it sets up must not hold requests, and close(), for ever. Long, since a
   * thread's start can take seconds on a loaded machine; at least `timeoutMs`.
   * @default 10000
   */
  readyTimeoutMs?: number;
  /** file-blk: path of the backing file (created when missing, grown to `capacity`). */
  file?: string;
  /**
   * file-blk: `durable` syncs every write before it completes; `none` only on FLUSH.
   * @default 'durable'
   */
  sync?: 'durable' | 'none';
  /** chaos: seed and fault rates. */
  chaos?: ChaosOptions;
  /**
   * GET_ID answer (20 bytes at most).
   * @default the device id
   */
  serial?: string;
  /**
   * Record each request's latency in {@link BlkDriver.latency} (for the metrics).
   * Off only to measure what that costs (bench:metrics).
   * @default true
   */
  recordLatency?: boolean;
  /**
   * After a completion, how long the driver keeps looking for the next one on each
   * event-loop turn before it sleeps until the device notifies, in microseconds.
   * 0 never polls. Polling costs less than a wake-up while completions keep
   * coming, and nothing on an idle queue. While it polls, each publish of new
   * requests also completes what the device finished meanwhile, up to
   * REAP_BUDGET (64) completions per turn (blk-driver.ts).
   * @default 200
   */
  pollMicros?: number;
  /**
   * How long a device thread polls its queue before sleeping, in microseconds.
   * @default {@link defaultDeviceSpinMicros} of the device's queues (a Mediator
   * counts the queues of all its devices)
   */
  spinMicros?: number;
  /**
   * Bounce mode: what the map and unmap of a DMA_FROM_DEVICE buffer (a read's
   * data) copy. `linux`: the map copies the guest buffer in, the unmap copies the
   * whole buffer back (swiotlb_tbl_map_single()); `used-length`: nothing is copied
   * in and only the bytes the device's used length says it wrote come back (see
   * BounceDma in dma.ts). Other modes do not bounce and ignore it.
   * @default 'linux'
   */
  fromDeviceBounce?: FromDeviceBounce;
}

/** Where the device's buffers go: bounced, direct, or allocated in the pool (shared). */
export interface DeviceContext {
  mode: Mode;
  guest: GuestMemory;
  /**
   * bounce and shared: the pool the device sees and its gate; bounce: the copy
   * engine with the pool and the guest registered.
   */
  pool?: SwiotlbPool;
  gate?: PoolGate;
  engine?: CopyEngine;
  guestRegion?: number;
  poolRegion?: number;
  /**
   * The device's min_align_mask (NVMe-like devices: 4095).
   * @default 0
   */
  minAlignMask?: number;
  /**
   * Where the device logs its resets, timeouts, faults and threads.
   * @default NO_LOG (nothing)
   */
  log?: Logger;
  /**
   * One fault or reset warning per burst of this length (RateLimit in ../util/logger.ts).
   * @default 5000
   */
  logIntervalMs?: number;
}

export type BlkOp = 'read' | 'write' | 'flush' | 'get_id';
export const BLK_OPS: readonly BlkOp[] = ['read', 'write', 'flush', 'get_id'];
export type Outcome = 'ok' | 'ioerr' | 'unsupp' | 'fault' | 'timeout' | 'reset' | 'full' | 'error';
export const OUTCOMES: readonly Outcome[] = [
  'ok',
  'ioerr',
  'unsupp',
  'fault',
  'timeout',
  'reset',
  'full',
  'error',
];

/**
 * Guest memory per request slot for its virtio-blk header (16 bytes) and status
 * byte, at slot * REQUEST_CTL_BYTES of a page-aligned block.
 */
export const REQUEST_CTL_BYTES = 64;

export interface DeviceShape {
  queues: number;
  queueSize: number;
  /** Requested queue depth (before the cap). */
  depth: number;
  maxRequestBytes: number;
  minAlignMask: number;
}

/**
 * The descriptor chain of the device's largest request: its data is split in
 * segments of at most the max mapping size (bounce and shared mode: maxMappingSize()
 * of the device's min_align_mask, in whole sectors; direct mode: one segment), and
 * the chain is header + segments + status.
 */
export function requestChain(
  d: Pick<DeviceShape, 'maxRequestBytes' | 'minAlignMask'>,
  mode: Mode,
): { segmentBytes: number; maxDescs: number } {
  const maxMap = mode === 'direct' ? d.maxRequestBytes : maxMappingSize(d.minAlignMask);
  const segmentBytes = Math.floor(maxMap / SECTOR_SIZE) * SECTOR_SIZE;
  return { segmentBytes, maxDescs: 2 + Math.ceil(d.maxRequestBytes / segmentBytes) };
}

/**
 * How a device uses guest memory, worked out before it exists (the config checks
 * guest memory sizes with it, and the device lays itself out with it):
 * - a request's chain is {@link requestChain}: header + data segments + status;
 * - queue depth is capped so that every chain fits in the queue;
 * - per queue, guest memory holds REQUEST_CTL_BYTES of header and status per request
 *   slot, one data buffer of maxRequestBytes per slot, and (direct mode) the
 *   virtqueue itself, each reservation 4 KiB aligned; in shared mode, nothing
 *   (headers, data and queue are in the pool).
 */
export function deviceGuestLayout(
  d: DeviceShape,
  mode: Mode,
): { segmentBytes: number; maxDescs: number; depth: number; bytesPerQueue: number; bytes: number } {
  const { segmentBytes, maxDescs } = requestChain(d, mode);
  const depth = Math.max(1, Math.min(d.depth, Math.floor(d.queueSize / maxDescs)));
  const page = (n: number) => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
  const bytesPerQueue =
    mode === 'shared'
      ? 0
      : page(depth * REQUEST_CTL_BYTES) +
        page(depth * d.maxRequestBytes) +
        (mode === 'direct' ? page(virtqueueBytes(d.queueSize)) : 0);
  return { segmentBytes, maxDescs, depth, bytesPerQueue, bytes: bytesPerQueue * d.queues };
}
