import type { FastifyInstance } from 'fastify';
import { poolGeometryOptions, type ServiceConfig } from '../config/schema.js';
import { computeGeometry } from '../swiotlb/geometry.js';
import { packageVersion } from '../util/package-version.js';
import { formatSize } from '../util/size.js';
import { type BuildServerOptions, buildServer } from './app.js';
import { createLogger, type LoggerOptions, type ServerLogger, silentLogger } from './logger.js';
import { Service } from './service.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly service: Service;
  /** Where it listens, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  /**
   * Graceful shutdown: stop accepting, let in-flight I/O finish, flush
   * file-backed devices, close the mediator. Resolves `true` when all of it
   * finished within `http.shutdownTimeoutMs`, `false` when the time ran out
   * (connections were then cut), a flush failed ({@link Service.failedFlushes})
   * or closing the mediator failed; each is logged at error. Calling it again
   * returns the same promise.
   */
  shutdown(): Promise<boolean>;
}

export interface StartServerOptions {
  /**
   * The service's logger (shared by the HTTP layer and the mediator): a pino
   * logger made by the caller (`serve` makes one), options to make one
   * (`{ level, stream }`, the level defaulting to the config's `logLevel`), or
   * `false` for none.
   * @default pino JSON lines on stdout at the config's `logLevel`
   */
  logger?: ServerLogger | LoggerOptions | false;
  /**
   * Extra routes (see BuildServerOptions.extend).
   * @default none
   */
  extend?: BuildServerOptions['extend'];
}

/** The one logger of a service started with `opts`. */
function resolveLogger(config: ServiceConfig, logger: StartServerOptions['logger']): ServerLogger {
  if (logger === false) return silentLogger();
  if (logger !== undefined && 'child' in logger && typeof logger.child === 'function') {
    return logger as ServerLogger;
  }
  const opts = (logger ?? {}) as LoggerOptions;
  return createLogger({ ...opts, level: opts.level ?? config.logLevel });
}

/** A pool's policy when full, in a few words. */
function policyText(b: ServiceConfig['pools'][number]['backpressure']): string {
  if (b.policy === 'requeue') return 'requeue, no time limit (Linux)';
  if (b.policy === 'requeue-bounded') return `requeue-bounded, at most ${b.waitMs} ms`;
  return 'fail (DMA API)';
}

/** What runs, in one line: mode, kernel rules, pools, guests, devices, copy workers. */
export function describeService(config: ServiceConfig, service?: Service): string {
  const pools = config.pools.map((p) => {
    const g =
      service?.mediator.pools.get(p.name)?.pool.geometry ?? computeGeometry(poolGeometryOptions(p));
    const kind = g.kind === 'restricted' ? 'restricted-dma-pool, ' : '';
    // Said only when it is not the kernel's: warm placement is this project's option.
    const placement =
      p.placement === 'warm' && config.mode !== 'direct'
        ? "; warm placement, not the kernel's"
        : '';
    return `${p.name} ${formatSize(g.bytes)} (${kind}${g.nslabs} slots, ${g.nareas} area${g.nareas > 1 ? 's' : ''}; ${policyText(p.backpressure)}${placement})`;
  });
  const guests = config.guests.map((g) => `${g.name} ${formatSize(g.memory)}`);
  const devices = config.devices.map((d) => {
    const what = [d.kind, formatSize(d.capacity)];
    if (d.queues > 1) what.push(`${d.queues} queues`);
    if (d.kind === 'file-blk') what.push(`${d.file}, sync ${d.sync}`);
    if (config.mode === 'bounce' && d.fromDeviceBounce !== 'linux') {
      what.push(`fromDeviceBounce ${d.fromDeviceBounce}`);
    }
    return `${d.id} (${what.join(', ')})`;
  });
  const rules = config.mode === 'bounce' ? `, Linux ${config.kernel} swiotlb rules` : '';
  return `${config.mode} mode${rules}; pools: ${pools.join(', ')}; guests: ${guests.join(', ')}; devices: ${devices.join(', ')}; copy workers: ${config.copy.workers}`;
}

/**
 * The lines the kernel logs while it builds each pool ("software IO TLB: area num
 * 2.", "... mapped [mem 0x...-0x...] (64MB)", or "Reserved memory: created
 * restricted DMA pool at ..."), in its words (src/swiotlb/geometry.ts), one info
 * record each, with the pool's name: the start-up log shows what the kernel would
 * have printed at boot for this pool.
 */
function logPoolGeometries(config: ServiceConfig, service: Service, logger: ServerLogger): void {
  if (config.mode !== 'bounce') return;
  for (const p of config.pools) {
    const g = service.mediator.pools.get(p.name)?.pool.geometry;
    for (const line of g?.log ?? []) logger.info({ pool: p.name, kernel: config.kernel }, line);
  }
}

/**
 * Pools that several devices share, in bounce and shared mode: each of those
 * devices can read and alter the others' requests while they are in the pool
 * (their buffers and virtqueues), as every device can with Linux's one default
 * swiotlb.
 */
export function sharedPools(config: ServiceConfig): { pool: string; devices: string[] }[] {
  if (config.mode === 'direct') return [];
  return config.pools
    .map((p) => ({
      pool: p.name,
      devices: config.devices.filter((d) => d.pool === p.name).map((d) => d.id),
    }))
    .filter((s) => s.devices.length > 1);
}

function within<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    promise.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

/**
 * Builds the mediator and the HTTP API, and listens. Logs one line (pino,
 * info) saying where it listens and what it runs. The service turns ready
 * (GET /readyz 200) once every device thread serves: `service.started`.
 * @throws MEDIATOR_BAD_CONFIG when the mediator refuses the configuration;
 *   the listen error (EADDRINUSE...) when it cannot listen
 */
export async function startServer(
  config: ServiceConfig,
  opts: StartServerOptions = {},
): Promise<RunningServer> {
  const logger = resolveLogger(config, opts.logger);
  const service = new Service(config, { logger });
  let app: FastifyInstance;
  try {
    logPoolGeometries(config, service, logger);
    app = buildServer(service, opts.extend ? { extend: opts.extend } : {});
  } catch (err) {
    // An `extend` that throws: the service's threads would outlive the failed
    // start (and keep the process alive), with no handle left to close them.
    await service.close().catch(() => undefined);
    throw err;
  }
  let url: string;
  try {
    url = await app.listen({
      host: config.http.host,
      port: config.http.port,
      listenTextResolver: (address) =>
        `swiotlb-mediator ${packageVersion()} listening on ${address}: ${describeService(config, service)}`,
    });
  } catch (err) {
    await app.close().catch(() => undefined);
    await service.close();
    throw err;
  }
  for (const { pool, devices } of sharedPools(config)) {
    logger.info(
      { pool, devices },
      `pool ${pool} is shared by devices ${devices.join(', ')}: each of them can read and alter the others' I/O while it is in the pool; give an untrusted device a pool of its own`,
    );
  }
  let shuttingDown: Promise<boolean> | undefined;
  const shutdown = (): Promise<boolean> => {
    shuttingDown ??= (async () => {
      const deadline = performance.now() + config.http.shutdownTimeoutMs;
      const left = () => deadline - performance.now();
      service.drain();
      // Stops accepting connections; idle keep-alive ones are closed, busy ones
      // close after their answer (Connection: close while draining).
      const httpClosed = app.close();
      let inTime = await within(service.idle(), left());
      if (!(await within(httpClosed, left()))) {
        inTime = false;
        app.server.closeAllConnections();
        await within(httpClosed, 1000);
      }
      // A close that throws (a backing file that cannot be closed...) is no clean
      // shutdown either: within() alone would count it as finished.
      const failure: { err?: unknown } = {};
      const closing = service.close().catch((err: unknown) => {
        failure.err = err ?? new Error('close failed');
      });
      if (!(await within(closing, left()))) inTime = false;
      if (!inTime) {
        logger.error(`shutdown did not finish within ${config.http.shutdownTimeoutMs} ms`);
      } else if (failure.err !== undefined) {
        const err = failure.err as { code?: string; message?: string };
        logger.error(
          { code: err.code, err: failure.err },
          `shutdown: closing the service failed: ${err.message ?? String(failure.err)}`,
        );
      }
      // A flush that failed was logged by the service: not clean either.
      return inTime && failure.err === undefined && service.failedFlushes.length === 0;
    })();
    return shuttingDown;
  };
  return { app, service, url, shutdown };
}
