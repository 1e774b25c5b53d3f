import { toMediatorSpec } from '../config/load.js';
import type { DeviceConfig, ServiceConfig } from '../config/schema.js';
import { isMediatorError, MediatorError } from '../errors.js';
import type { BlkDriver } from '../mediator/blk-driver.js';
import { Mediator } from '../mediator/mediator.js';
import type { PoolRange } from '../swiotlb/slot-map.js';
import { type ServerLogger, silentLogger } from './logger.js';

/**
 * `starting`: device threads are coming up (I/O is queued, /readyz says 503);
 * `ready`: serving; `draining`: shutting down, no new I/O; `closed`.
 */
export type ServiceState = 'starting' | 'ready' | 'draining' | 'closed';

export interface ServiceOptions {
  /**
   * The service's one logger: Fastify logs through it (loggerInstance) and so
   * does the mediator (device resets, timeouts, faults, full pools, copy-worker
   * crashes, device threads).
   * @default a logger that writes nothing
   */
  logger?: ServerLogger;
}

/**
 * The running mediator as the HTTP layer sees it: its devices and pools, whether
 * it takes I/O, and the I/O in flight (so that shutdown can let it finish).
 */
export class Service {
  readonly config: ServiceConfig;
  readonly mediator: Mediator;
  readonly logger: ServerLogger;
  /** Resolves once every device thread serves; the state is then `ready`. */
  readonly started: Promise<void>;
  private current: ServiceState = 'starting';
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private readonly deviceConfigs: Map<string, DeviceConfig>;
  private readonly unflushed: string[] = [];

  /**
   * Builds the mediator a configuration describes (pools, guests, copy workers,
   * devices and their threads).
   * @throws MEDIATOR_BAD_CONFIG when the mediator refuses the configuration
   */
  constructor(config: ServiceConfig, opts: ServiceOptions = {}) {
    this.config = config;
    this.logger = opts.logger ?? silentLogger();
    this.deviceConfigs = new Map(config.devices.map((d) => [d.id, d]));
    try {
      this.mediator = new Mediator({ ...toMediatorSpec(config), log: this.logger });
    } catch (err) {
      const message = (err as Error).message;
      if (isMediatorError(err, 'MEDIATOR_BAD_CONFIG')) {
        throw new MediatorError(
          'MEDIATOR_BAD_CONFIG',
          `config: ${message}`,
          err.details ? { ...err.details } : undefined,
        );
      }
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `config: the mediator cannot be built: ${message}`,
        { cause: (err as { code?: string }).code ?? (err as Error).name },
      );
    }
    this.refuseWhatNeverFits(config);
    this.started = Promise.all([...this.mediator.devices.values()].map((d) => d.ready())).then(
      () => {
        if (this.current === 'starting') this.current = 'ready';
      },
    );
  }

  get state(): ServiceState {
    return this.current;
  }

  /** I/O requests running now. */
  get inFlightRequests(): number {
    return this.inFlight;
  }

  device(id: string): BlkDriver | undefined {
    return this.mediator.devices.get(id);
  }

  deviceConfig(id: string): DeviceConfig | undefined {
    return this.deviceConfigs.get(id);
  }

  /**
   * The file-backed devices whose flush failed in {@link close}: writes they
   * acknowledged under `sync: "none"` may not be on stable storage. A shutdown
   * with any is not clean (`serve` exits 1).
   */
  get failedFlushes(): readonly string[] {
    return this.unflushed;
  }

  /** Whether new I/O is refused (draining or closed). */
  get refusing(): boolean {
    return this.current === 'draining' || this.current === 'closed';
  }

  /**
   * Has each device refuse at once (413) a request its pool could never hold
   * beside the virtqueues of every device in it (BlkDriver.refuseWhatNeverFits),
   * where Linux, and the Mediator API, would requeue it for ever.
   */
  private refuseWhatNeverFits(config: ServiceConfig): void {
    for (const [name, { pool }] of this.mediator.pools) {
      const coherent = this.queueMemoryOf(name).reduce((n, q) => n + pool.allocSlots(q.bytes), 0);
      for (const d of config.devices) {
        if (d.pool === name)
          this.device(d.id)!.refuseWhatNeverFits(pool.geometry.nslabs - coherent);
      }
    }
  }

  /** The virtqueues the devices of pool `name` have in it: its coherent allocations. */
  queueMemoryOf(name: string): PoolRange[] {
    const ranges: PoolRange[] = [];
    for (const d of this.config.devices) {
      if (d.pool !== name) continue;
      const device = this.device(d.id);
      if (device) ranges.push(...device.queueMemory());
    }
    return ranges;
  }

  /**
   * Runs one I/O, counted as in flight until it settles.
   * @throws MEDIATOR_CLOSED while draining or closed
   */
  async run<T>(io: () => Promise<T>): Promise<T> {
    if (this.refusing) {
      throw new MediatorError(
        'MEDIATOR_CLOSED',
        'the service is shutting down and takes no new I/O',
      );
    }
    this.inFlight++;
    try {
      return await io();
    } finally {
      if (--this.inFlight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  /**
   * Stops taking new I/O, and fails the requests waiting for pool slots
   * (MEDIATOR_CLOSED, 503): only what the devices hold goes on.
   */
  drain(): void {
    if (this.current === 'starting' || this.current === 'ready') this.current = 'draining';
    this.mediator.failWaiting('the service is shutting down');
  }

  /** Resolves when no I/O is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Drains, waits for the I/O in flight, flushes every file-backed device (so
   * writes acknowledged under `sync: "none"` reach stable storage too), then
   * closes the mediator (device threads, backing files, copy workers).
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.drain();
    await this.idle();
    for (const device of this.mediator.devices.values()) {
      if (device.kind !== 'file-blk') continue;
      try {
        await device.flush();
      } catch (err) {
        this.unflushed.push(device.id);
        this.logger.error(
          { device: device.id, code: (err as { code?: string }).code, err },
          `flush of ${device.id} failed at shutdown: writes it acknowledged may not be on stable storage`,
        );
      }
    }
    await this.mediator.close();
    this.current = 'closed';
  }
}
