import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { httpError } from '../errors.js';
import type { RouteOptions } from './common.js';

/**
 * The status page (GET /) and its files, shipped in the package's
 * static/status/ (plain HTML, CSS and ES modules: nothing to build, nothing
 * fetched from elsewhere). The page reads the JSON API once a second while it is
 * open: /v1/pools, /v1/pools/:name/slots, /v1/devices, /v1/copy.
 *
 * The files are read once at start-up. When they are missing (a broken
 * install), the rest of the API works and GET / says what is missing.
 */

/** Where the files are: static/status/ at the package root, from src/ and from dist/ alike. */
export const STATUS_DIR = fileURLToPath(new URL('../../../static/status/', import.meta.url));

/** Every file the page is made of, with its type: nothing else is served from there. */
export const STATUS_FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'status.css': 'text/css; charset=utf-8',
  'status.js': 'text/javascript; charset=utf-8',
  'model.js': 'text/javascript; charset=utf-8',
  'slot-map.js': 'text/javascript; charset=utf-8',
};

// The page loads only its own files and talks only to this server.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache',
};

type Loaded = { body: Buffer; type: string } | { missing: string };

function load(name: string, type: string): Loaded {
  try {
    return { body: readFileSync(`${STATUS_DIR}${name}`), type };
  } catch (err) {
    return { missing: `${STATUS_DIR}${name}: ${(err as Error).message}` };
  }
}

export const statusPageRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const files = new Map(
    Object.entries(STATUS_FILES).map(([name, type]) => [name, load(name, type)]),
  );
  const missing = [...files.values()].flatMap((f) => ('missing' in f ? [f.missing] : []));
  if (missing.length > 0) {
    service.logger.warn(
      { missing },
      'the status page (GET /) cannot be served: its files are missing',
    );
  }
  const send = (reply: FastifyReply, name: string) => {
    const f = files.get(name)!;
    if ('missing' in f) {
      throw httpError(
        'HTTP_INTERNAL',
        `the status page's file is missing (${f.missing}); the package ships it in static/status/`,
      );
    }
    return reply.headers(SECURITY_HEADERS).type(f.type).send(f.body);
  };
  app.get('/', async (_request, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/status/:file', async (request, reply) => {
    const name = request.params.file;
    if (name === 'index.html' || !files.has(name)) {
      throw httpError('HTTP_NOT_FOUND', `no file ${JSON.stringify(name)} in the status page`);
    }
    return send(reply, name);
  });
};
