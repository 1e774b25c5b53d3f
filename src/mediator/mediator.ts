import { MediatorError } from '../errors.js';
import type { GeometryOptions } from '../swiotlb/geometry.js';
import type { KernelVersion } from '../swiotlb/kernel.js';
import { SwiotlbPool } from '../swiotlb/pool.js';
import type { Placement } from '../swiotlb/warm.js';
import { DEFAULT_LOG_INTERVAL_MS, type Logger, NO_LOG } from '../util/logger.js';
import { CopyEngine, type CopyEngineOptions } from '../workers/copy-engine.js';
import { BlkDriver, type BlkDriverOptions } from './blk-driver.js';
import {
  DEFAULT_MODE,
  DEVICE_DEFAULTS,
  defaultCopyWorkersFor,
  defaultSpinMicrosFor,
  type Mode,
} from './defaults.js';
import { GuestMemory, type GuestMemoryOptions } from './guest-memory.js';
import { type BackpressureOptions, PoolGate } from './pool-gate.js';

export interface PoolSpec extends GeometryOptions {
  name: string;
  /**
   * Whose swiotlb rules the pool follows (src/swiotlb/kernel.ts).
   * @default '6.10'
   */
  kernel?: KernelVersion;
  /**
   * Which free slots a map takes: `linux` (the kernel's search) or `warm`
   * (recently freed runs first; src/swiotlb/warm.ts).
   * @default 'linux'
   */
  placement?: Placement;
  backpressure?: BackpressureOptions;
}

export interface GuestSpec extends GuestMemoryOptions {
  name: string;
}

export interface DeviceSpec extends BlkDriverOptions {
  /** The guest that drives the device. */
  guest: string;
  /** The pool the device sees (bounce mode). */
  pool: string;
  /**
   * The device's min_align_mask (NVMe-like: 4095).
   * @default 0
   */
  minAlignMask?: number;
}

export interface MediatorSpec {
  /**
   * `bounce` isolates (devices see only the pool; buffers are bounced through it);
   * `direct` hands devices guest memory; `shared` allocates each request's
   * buffers in the pool (no copies; the device sees them while in flight).
   * @default 'bounce'
   */
  mode?: Mode;
  /**
   * The copy engine's options.
   * @default the engine's defaults, but for workers: {@link defaultCopyWorkersFor}
   * the devices (the CPUs their threads and the main thread leave, at most 4)
   */
  copy?: CopyEngineOptions;
  pools: PoolSpec[];
  guests: GuestSpec[];
  devices: DeviceSpec[];
  /**
   * Where the mediator logs (a pino logger fits): device resets, request
   * timeouts, device faults and full pools (warn), copy-worker crashes (error),
   * device threads starting and stopping (debug). Fields and messages: ../util/logger.ts
   * and the records' sites.
   * @default NO_LOG: nothing is logged
   */
  log?: Logger;
  /**
   * Repeated warnings of one kind (a device's faults, a pool's "swiotlb buffer is
   * full", its back-pressure timeouts) are logged once per burst of this length;
   * the next record counts those left out (`suppressed`).
   * @default 5000 (the kernel's DEFAULT_RATELIMIT_INTERVAL)
   */
  logIntervalMs?: number;
}

export interface PoolEntry {
  name: string;
  pool: SwiotlbPool;
  gate: PoolGate;
  region: number;
}

export interface GuestEntry {
  name: string;
  memory: GuestMemory;
  region: number;
}

/**
 * Guests, pools and devices wired together with one copy engine. Everything the
 * service, the benchmarks and the tests run is one of these.
 */
export class Mediator {
  readonly mode: Mode;
  readonly engine: CopyEngine;
  readonly pools = new Map<string, PoolEntry>();
  readonly guests = new Map<string, GuestEntry>();
  readonly devices = new Map<string, BlkDriver>();
  private closed = false;

  constructor(spec: MediatorSpec) {
    this.mode = spec.mode ?? DEFAULT_MODE;
    const log = spec.log ?? NO_LOG;
    const logIntervalMs = spec.logIntervalMs ?? DEFAULT_LOG_INTERVAL_MS;
    this.engine = new CopyEngine({
      log,
      ...spec.copy,
      workers: spec.copy?.workers ?? defaultCopyWorkersFor(spec.devices),
    });
    try {
      for (const p of spec.pools) {
        if (this.pools.has(p.name)) throw badConfig(`pool "${p.name}" is defined twice`);
        // Exclusive: only this thread maps (the copy workers and devices get the
        // data buffer alone), so maps and unmaps take no lock.
        const pool = SwiotlbPool.create({ ...p, area: 0, exclusive: true });
        this.pools.set(p.name, {
          name: p.name,
          pool,
          gate: new PoolGate(pool, p.backpressure, {
            log,
            pool: p.name,
            intervalMs: logIntervalMs,
          }),
          region: this.engine.registerRegion(pool.share().data),
        });
      }
      for (const g of spec.guests) {
        if (this.guests.has(g.name)) throw badConfig(`guest "${g.name}" is defined twice`);
        const memory = new GuestMemory(g);
        this.guests.set(g.name, {
          name: g.name,
          memory,
          region: this.engine.registerRegion(memory.buffer),
        });
      }
      const defaultSpin = defaultSpinMicrosFor(spec.devices);
      for (const d of spec.devices) {
        if (this.devices.has(d.id)) throw badConfig(`device "${d.id}" is defined twice`);
        const guest = this.guests.get(d.guest);
        if (!guest) throw badConfig(`device "${d.id}": no guest named "${d.guest}"`);
        const pool = this.pools.get(d.pool);
        if (!pool) throw badConfig(`device "${d.id}": no pool named "${d.pool}"`);
        const spinMicros = d.spinMicros ?? defaultSpin;
        const device = new BlkDriver(
          {
            mode: this.mode,
            guest: guest.memory,
            guestRegion: guest.region,
            pool: pool.pool,
            poolRegion: pool.region,
            gate: pool.gate,
            engine: this.engine,
            minAlignMask: d.minAlignMask ?? DEVICE_DEFAULTS.minAlignMask,
            log,
            logIntervalMs,
          },
          { ...d, spinMicros },
        );
        this.devices.set(d.id, device);
      }
    } catch (err) {
      // What was built is closed (the error thrown is the one that matters).
      this.close().catch(() => undefined);
      throw err;
    }
  }

  device(id: string): BlkDriver | undefined {
    return this.devices.get(id);
  }

  /**
   * Fails every request waiting for pool slots with MEDIATOR_CLOSED (`why`
   * says why), at once; the requests the devices hold go on. A service that
   * shuts down calls it first, so that a request that can never fit does not
   * hold the shutdown until its timeout.
   */
  failWaiting(why: string): void {
    for (const p of this.pools.values())
      p.gate.rejectAll(new MediatorError('MEDIATOR_CLOSED', why));
  }

  /**
   * Fails the requests still waiting for pool slots (MEDIATOR_CLOSED), closes every
   * device (finishing the I/O it holds), then the copy engine.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Requests still waiting for pool slots fail first: the devices then finish what
    // they hold. Under the requeue policy a request that can never fit would wait
    // for ever (as the kernel retries it), and a device's close waits for every
    // request it was given.
    this.failWaiting('the mediator is closing');
    // Every device, then the engine, whatever one of them throws: a device whose
    // close failed (its backing file) must not leave the others or the copy
    // workers running. The first failure is thrown afterwards.
    const closed = await Promise.allSettled([...this.devices.values()].map((d) => d.close()));
    await this.engine.close();
    const failed = closed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

function badConfig(message: string): MediatorError {
  return new MediatorError('MEDIATOR_BAD_CONFIG', message);
}
