/**
 * The two HTTP servers `npm run loadtest` drives, each in a process of its own
 * (forked by bench/loadtest.ts with the server's spec in LOADTEST_SERVER; it
 * answers `{url}` over IPC and runs until the parent disconnects):
 *
 * - `service`: the service on its embedded default configuration (or the
 *   config file given), port 0, in the mode asked for;
 * - `baseline`: a bare Fastify server doing the same socket work and nothing
 *   else: the same routes, the same Fastify options (no request logging, the
 *   same body limit, octet-stream bodies read into a Buffer), a PUT's body copied
 *   into a RAM "disk" at its lba and a GET answered from a fresh copy of the
 *   disk's bytes, a synthetic I/O answered after parsing its JSON. What the
 *   service takes on top of it is the mediation and its own request path.
 *
 * Asked `'cpu'` over IPC, a server answers `{cpuMicros}`: its CPU time so far.
 */
import Fastify, { LogController } from 'fastify';
import { loadConfig } from '../src/config/load.js';
import type { Mode } from '../src/mediator/defaults.js';
import { startServer } from '../src/server/run.js';

export interface ServerSpec {
  kind: 'service' | 'baseline';
  mode: Mode;
  /** The service's config file (the embedded default without it). */
  config?: string | undefined;
}

export const SERVER_ENV = 'LOADTEST_SERVER';

/** The embedded default's body limit and disk size, which the baseline copies. */
const DISK_BYTES = 256 * 2 ** 20;

async function baseline(bodyLimit: number): Promise<{ url: string; close: () => Promise<void> }> {
  const disk = Buffer.alloc(DISK_BYTES);
  const app = Fastify({
    logger: false,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
  });
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer' },
    (_request, body, done) => {
      done(null, body);
    },
  );
  type Params = { id: string; lba: string };
  app.put<{ Params: Params; Body: Buffer }>('/v1/devices/:id/blocks/:lba', async (request) => {
    const lba = Number(request.params.lba);
    const body = request.body;
    body.copy(disk, lba * 512);
    return { lba, bytes: body.length };
  });
  app.get<{ Params: Params; Querystring: { count?: string } }>(
    '/v1/devices/:id/blocks/:lba',
    async (request, reply) => {
      const at = Number(request.params.lba) * 512;
      const bytes = Number(request.query.count ?? 1) * 512;
      const out = Buffer.allocUnsafe(bytes);
      disk.copy(out, 0, at, at + bytes);
      return reply.type('application/octet-stream').send(out);
    },
  );
  app.post<{ Params: { id: string }; Body: { op: string; size: number; lba: number } }>(
    '/v1/devices/:id/io',
    async (request) => {
      const { op, size, lba } = request.body;
      return { op, lba, bytes: size };
    },
  );
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url, close: () => app.close() };
}

async function service(
  mode: Mode,
  file: string | undefined,
): Promise<{ url: string; close: () => Promise<void> }> {
  const config = loadConfig({
    file,
    overrides: [
      { path: ['http', 'port'], value: 0, flag: '--port' },
      { path: ['http', 'host'], value: '127.0.0.1', flag: '--host' },
      { path: ['mode'], value: mode, flag: '--mode' },
      { path: ['logLevel'], value: 'silent', flag: '--log-level' },
    ],
  });
  const server = await startServer(config, { logger: false });
  await server.service.started;
  return {
    url: server.url,
    close: async () => {
      await server.shutdown();
    },
  };
}

/** User and system CPU time of this process, all its threads, in microseconds. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

const raw = process.env[SERVER_ENV];
if (raw !== undefined && process.send) {
  const spec = JSON.parse(raw) as ServerSpec;
  const bodyLimit = loadConfig().http.bodyLimit;
  const started = spec.kind === 'service' ? service(spec.mode, spec.config) : baseline(bodyLimit);
  started.then(
    ({ url, close }) => {
      // The parent asks for this process's CPU time (every thread's) around each
      // window: what a request costs the server, whatever the machine's speed.
      process.on('message', (msg) => {
        if (msg === 'cpu') process.send!({ cpuMicros: cpuMicros() });
      });
      process.send!({ url });
      process.once('disconnect', () => {
        void close().finally(() => process.exit(0));
      });
    },
    (err: Error) => {
      process.send!({ error: err.stack ?? err.message }, () => process.exit(1));
    },
  );
}
