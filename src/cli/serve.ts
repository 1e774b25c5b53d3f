import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import { type ConfigOverride, loadConfig } from '../config/load.js';
import { isMediatorError, MediatorError } from '../errors.js';
import { createLogger } from '../server/logger.js';
import { startServer } from '../server/run.js';
import { noOperands, parseCommand } from './args.js';

export const SERVE_HELP = `Usage: swiotlb-mediator serve [options]

Runs the mediator as an HTTP service. Without --config it runs the embedded
default: one guest, a ram-blk device "blk0" (256 MiB) and a null device
"null0", each behind a 64 MiB pool of its own, bounce mode, on 127.0.0.1:8080.
Flags override the config file.

Options:
  --config FILE           JSON config file (see docs/configuration.md)
  --host ADDR             address to listen on (http.host)
  --port N                TCP port, 0 for any free one (http.port)
  --mode MODE             bounce isolates devices behind their pool and copies;
                          direct hands them guest memory; shared allocates each
                          request's buffers in the pool, no copies (mode)
  --from-device-bounce B  bounce mode, reads: linux (the map copies the buffer in,
                          the unmap copies all back) or used-length (nothing in,
                          the used length back) (fromDeviceBounce)
  --log-level LEVEL       fatal, error, warn, info, debug, trace or silent (logLevel)
  --body-limit SIZE       largest request body, e.g. 4MiB (http.bodyLimit)
  --shutdown-timeout MS   longest graceful shutdown (http.shutdownTimeoutMs)
  --copy-workers N        copy worker threads, 0 for inline copies (copy.workers)
  --kernel V              whose swiotlb rules the pools follow: 6.1, 6.6 or 6.10 (kernel)
  --placement P           which free slots a map takes, in the pools that set none:
                          linux (the kernel's next-fit search) or warm (recently
                          freed slots first; not the kernel's) (placement)
  --swiotlb N[,A]         the first pool as the kernel parameter swiotlb=N,A builds it
                          (pools[0].swiotlb; replaces its size, slots, areas, restricted)
  --restricted SIZE       the first pool as a device-tree restricted-dma-pool of SIZE
                          bytes: exact slots, one area (pools[0].restricted)
  --print-config          print the resolved configuration as JSON and exit
  -h, --help              this help

Logs are pino JSON lines on stdout: at start-up the kernel's lines for each
pool ("software IO TLB: area num 2." ...), then one saying where it listens and
what it runs, nothing per request at the default level (info). Warnings: device
resets, request timeouts, device faults, "swiotlb buffer is full", back-pressure
timeouts (the last three once per 5 s burst); errors: copy-worker crashes. Every
record with its fields: docs/logging.md.
SIGTERM or SIGINT shuts it down gracefully (in-flight I/O finishes, file-backed
devices are flushed; exit status 0); a second signal exits at once (one sent
within 300 ms of the first counts as the same: Ctrl+C under npm arrives twice).
Exit status: 0 after a clean shutdown, 1 when it cannot start or the shutdown
ran out of time or failed (a flush of a file-backed device included), 2 on bad
flags.`;

export interface ServeIo {
  stdout: Writable;
  stderr: Writable;
}

/** Signals this close after the first are the same one delivered twice. */
const DUPLICATE_SIGNAL_MS = 300;

/**
 * A numeric flag as a number when it is an exact one (decimal or 0x, as every
 * integer flag), else as given, for the config's validation to name as the user
 * wrote it (99999999999999999999 would otherwise be shown as 100000000000000000000).
 */
function numeric(value: string): number | string {
  const n = Number(value.trim());
  return /^\s*(0x[0-9a-f]+|\d+)\s*$/i.test(value) && Number.isSafeInteger(n) ? n : value;
}

/** The flags that override the config file, each naming its flag for error messages. */
function flagOverrides(values: Record<string, string | boolean | undefined>): ConfigOverride[] {
  const str = (k: string) => values[k] as string | undefined;
  const overrides: ConfigOverride[] = [];
  const flag = (
    name: string,
    path: (string | number)[],
    value: unknown,
    replaces?: readonly string[],
  ) => {
    if (value !== undefined) {
      overrides.push({ path, value, flag: `--${name}`, ...(replaces ? { replaces } : {}) });
    }
  };
  flag('host', ['http', 'host'], str('host'));
  flag('port', ['http', 'port'], str('port') === undefined ? undefined : numeric(str('port')!));
  flag('mode', ['mode'], str('mode'));
  flag('from-device-bounce', ['fromDeviceBounce'], str('from-device-bounce'));
  flag('log-level', ['logLevel'], str('log-level'));
  flag('body-limit', ['http', 'bodyLimit'], str('body-limit'));
  flag(
    'shutdown-timeout',
    ['http', 'shutdownTimeoutMs'],
    str('shutdown-timeout') === undefined ? undefined : numeric(str('shutdown-timeout')!),
  );
  flag(
    'copy-workers',
    ['copy', 'workers'],
    str('copy-workers') === undefined ? undefined : numeric(str('copy-workers')!),
  );

  flag('kernel', ['kernel'], str('kernel'));
  flag('placement', ['placement'], str('placement'));
  if (str('swiotlb') !== undefined && str('restricted') !== undefined) {
    throw new MediatorError(
      'CLI_USAGE',
      '--swiotlb and --restricted both declare the first pool: give one',
    );
  }
  // A pool declared on the command line replaces the file's declaration of it.
  const declaration = ['swiotlb', 'restricted', 'size', 'slots', 'areas'];
  flag('swiotlb', ['pools', 0, 'swiotlb'], str('swiotlb'), declaration);
  flag('restricted', ['pools', 0, 'restricted'], str('restricted'), declaration);

  return overrides;
}

/**
 * `serve`: loads the config, starts the service, and runs until SIGTERM/SIGINT;
 * resolves the exit status once it has shut down.
 */
export async function serveCommand(argv: string[], io: ServeIo): Promise<number> {
  const parsed = parseCommand('serve', SERVE_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      mode: { type: 'string' },
      'from-device-bounce': { type: 'string' },
      'log-level': { type: 'string' },
      'body-limit': { type: 'string' },
      'shutdown-timeout': { type: 'string' },
      'copy-workers': { type: 'string' },
      kernel: { type: 'string' },
      placement: { type: 'string' },
      swiotlb: { type: 'string' },
      restricted: { type: 'string' },
      'print-config': { type: 'boolean' },
    },
  });
  if (parsed === undefined) {
    io.stdout.write(`${SERVE_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  noOperands(positionals);
  // "--config $UNSET_VAR": a command-line mistake, not a file that cannot be read.
  if (values.config === '') throw new MediatorError('CLI_USAGE', '--config: "" is empty');
  const overrides = flagOverrides(values);

  // A wrong config throws MEDIATOR_BAD_CONFIG with one message; main prints it.
  const config = loadConfig({ file: values.config, overrides });
  if (values['print-config']) {
    io.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    return 0;
  }

  // The one logger of the process: Fastify, the mediator and this command write to it.
  const log = createLogger({ level: config.logLevel });
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, { logger: log });
  } catch (err) {
    if (isMediatorError(err)) throw err;
    throw new MediatorError(
      'SERVE_CANNOT_LISTEN',
      `cannot listen on ${config.http.host}:${config.http.port}: ${(err as Error).message}`,
      { cause: (err as { code?: string }).code ?? (err as Error).name },
    );
  }

  return await new Promise<number>((resolve) => {
    let firstAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (firstAt !== undefined) {
        // One Ctrl+C under `npm start` arrives twice (from the terminal and
        // forwarded by npm): only a signal sent later counts as the second.
        if (performance.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
        log.warn({ signal }, `${signal} again: exiting at once`);
        process.exit(128 + (constants.signals[signal] ?? 1));
      }
      firstAt = performance.now();
      log.info(
        { signal, inFlight: server.service.inFlightRequests },
        `${signal}: shutting down (in-flight I/O finishes, file-backed devices are flushed; at most ${config.http.shutdownTimeoutMs} ms)`,
      );
      void server.shutdown().then((clean) => {
        // Why it was not clean (out of time, a failed flush or close) is logged already.
        if (clean) log.info('stopped');
        else log.error('stopped, not cleanly: exit status 1');
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        // Exit even if some handle lingers; normally the loop is already empty.
        setTimeout(() => process.exit(clean ? 0 : 1), 2000).unref();
        resolve(clean ? 0 : 1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
