import { availableParallelism } from 'node:os';
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from '../swiotlb/constants.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import { SECTOR_SIZE } from '../virtio/blk-format.js';
import type { ChaosOptions, DeviceKind } from '../virtio/device-spec.js';
import { virtqueueBytes } from '../virtio/virtqueue-layout.js';
import type { CopyEngine } from '../workers/copy-engine.js';
import type { GuestMemory } from './guest-memory.js';
import type { PoolGate } from './pool-gate.js';

/**
 * What a block device is asked to be (options, the context it runs in) and the
 * shape it takes in guest memory; the driver itself is in blk-driver.ts.
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
   * 0 never polls. Polling a while beats sleeping at once (a wake-up costs more
   * than a small request); an idle queue costs nothing. Measured: docs/performance.md.
   * @default 200
   */
  pollMicros?: number;
  /**
   * How long a device thread polls its queue before sleeping, in microseconds.
   * @default {@link defaultDeviceSpinMicros} of the device's queues (a Mediator
   * counts the queues of all its devices)
   */
  spinMicros?: number;
}

/**
 * How long a device thread polls its queue before it sleeps, by default: 200 us
 * when the process's device threads and its main thread have a CPU each, else
 * 50 us. A sleeping device thread must be woken by the driver (a futex wake, paid
 * on the main thread); with a core of its own it can afford to wait for the next
 * batch instead. With more threads than CPUs, polling takes the core the main
 * thread needs: there the service's earlier default, 50 us, stays. The runs behind
 * both values: docs/performance.md ("Device threads poll 200 µs...").
 */
export function defaultDeviceSpinMicros(
  deviceThreads: number,
  cpus: number = availableParallelism(),
): number {
  return deviceThreads + 1 <= cpus ? 200 : 50;
}

/**
 * {@link defaultDeviceSpinMicros} for a process that runs `devices`: one device
 * thread per queue, all devices together (the config, to show the value, and the
 * Mediator, which runs them, both ask).
 */
export function defaultSpinMicrosFor(devices: readonly { queues?: number | undefined }[]): number {
  return defaultDeviceSpinMicros(deviceThreadCount(devices));
}

/** Device threads a process runs for `devices`: one per queue. */
function deviceThreadCount(devices: readonly { queues?: number | undefined }[]): number {
  return devices.reduce((n, d) => n + (d.queues ?? 1), 0);
}

/**
 * Copy workers by default for a process that runs `devices`: the CPUs left once
 * the main thread and every device thread (one per queue) have one, at most 4; 0,
 * every copy inline, when none is left. A copy worker without a core of its own
 * takes it from a device thread or the main thread, and the hand-off then costs
 * more than the copy (measured on 2 CPUs: docs/performance.md, "No copy worker on
 * 2 CPUs").
 */
export function defaultCopyWorkersFor(
  devices: readonly { queues?: number | undefined }[],
  cpus: number = availableParallelism(),
): number {
  return Math.max(0, Math.min(4, cpus - 1 - deviceThreadCount(devices)));
}

/** Where the device's buffers go: the bounce path or direct. */
export interface DeviceContext {
  mode: 'bounce' | 'direct';
  guest: GuestMemory;
  /** bounce: the pool the device sees, its gate, and the copy engine with both registered. */
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

export interface DeviceShape {
  queues: number;
  queueSize: number;
  /** Requested queue depth (before the cap). */
  depth: number;
  maxRequestBytes: number;
  minAlignMask: number;
}

/**
 * How a device uses guest memory, worked out before it exists (the config checks
 * guest memory sizes with it, and the device lays itself out with it):
 * - data is split in segments of at most the max mapping size (bounce mode), in
 *   whole sectors; a request's chain is header + segments + status;
 * - queue depth is capped so that every chain fits in the queue;
 * - per queue, guest memory holds 64 bytes of header and status per request
 *   slot, one data buffer of maxRequestBytes per slot, and (direct mode) the
 *   virtqueue itself, each reservation 4 KiB aligned.
 */
export function deviceGuestLayout(
  d: DeviceShape,
  mode: 'bounce' | 'direct',
): { segmentBytes: number; maxDescs: number; depth: number; bytesPerQueue: number; bytes: number } {
  const maxMap =
    mode === 'bounce'
      ? IO_TLB_SIZE * IO_TLB_SEGSIZE -
        (d.minAlignMask ? Math.ceil(d.minAlignMask / IO_TLB_SIZE) * IO_TLB_SIZE : 0)
      : d.maxRequestBytes;
  const segmentBytes = Math.floor(maxMap / SECTOR_SIZE) * SECTOR_SIZE;
  const maxDescs = 2 + Math.ceil(d.maxRequestBytes / segmentBytes);
  const depth = Math.max(1, Math.min(d.depth, Math.floor(d.queueSize / maxDescs)));
  const page = (n: number) => Math.ceil(n / 4096) * 4096;
  const bytesPerQueue =
    page(depth * 64) +
    page(depth * d.maxRequestBytes) +
    (mode === 'direct' ? page(virtqueueBytes(d.queueSize)) : 0);
  return { segmentBytes, maxDescs, depth, bytesPerQueue, bytes: bytesPerQueue * d.queues };
}
