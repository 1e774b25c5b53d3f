import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { AllowTable } from './allow.js';
import { clientErrorHandler } from './client-error.js';
import { errorBody, sendProblem } from './errors.js';
import { blockRoutes } from './routes/blocks.js';
import { copyRoutes } from './routes/copy.js';
import { deviceRoutes } from './routes/devices.js';
import { healthRoutes } from './routes/health.js';
import { ioRoutes } from './routes/io.js';
import { metricsRoutes } from './routes/metrics.js';
import { poolRoutes } from './routes/pools.js';
import { slotRoutes } from './routes/slots.js';
import { statusPageRoutes } from './routes/status-page.js';
import type { Service } from './service.js';

export interface BuildServerOptions {
  /**
   * Adds routes of other modules to the app, after the API's own; they share its
   * error format and draining behaviour.
   * @default none
   */
  extend?: (app: FastifyInstance, service: Service) => void;
  /**
   * Serve the Prometheus metrics of src/metrics at GET /metrics.
   * @default true
   */
  metrics?: boolean;
  /**
   * Serve the status page at GET / (its files under /status/).
   * @default true
   */
  statusPage?: boolean;
}

/**
 * The HTTP API over a {@link Service}: block I/O through the guest's DMA path,
 * synthetic I/O, pool, slot-map, device and copy-engine statistics, health and
 * readiness, metrics, the status page; one
 * Fastify plugin per route group (./routes). Errors are JSON
 * `{statusCode, code, error, message}` with the codes of src/errors.ts. It logs
 * through the service's logger, nothing per request.
 */
export function buildServer(service: Service, opts: BuildServerOptions = {}): FastifyInstance {
  const http = service.config.http;
  const problemContext = { retryAfterSeconds: http.retryAfterSeconds, bodyLimit: http.bodyLimit };
  const app = Fastify({
    loggerInstance: service.logger,
    // Nothing logged per request.
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is the service's logger itself: Fastify would otherwise make a
    // pino child (bound to a request id) for every request, for records that are
    // rare (errors) and name the method and URL anyway.
    childLoggerFactory: (logger) => logger,
    bodyLimit: http.bodyLimit,
    // Draining is ours to answer (503 MEDIATOR_CLOSED in the error format).
    return503OnClosing: false,
    frameworkErrors: (err, request, reply) => {
      sendProblem(err, request, reply, problemContext);
    },
    // What Node's HTTP parser refuses before any route runs (a bad Content-Length,
    // oversized headers): answered raw on the socket, in the same error format.
    clientErrorHandler: clientErrorHandler(service.logger),
  }) as unknown as FastifyInstance;

  // What the routes inherit: set before they are registered.
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer' },
    (_request, body, done) => {
      done(null, body);
    },
  );
  app.setErrorHandler((err, request, reply) => {
    sendProblem(err, request, reply, problemContext);
  });
  // Every route's path and methods, for the Allow header of a 405 (allow.ts).
  const allowTable = new AllowTable();
  app.addHook('onRoute', (route) => {
    allowTable.add(route.url ?? route.path, route.method);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allow = allowTable.allowed(path);
    if (allow.length > 0) {
      // The path exists, not with this method: 405 with Allow (RFC 9110 §15.5.6).
      request.log.debug({ code: 'HTTP_METHOD_NOT_ALLOWED', status: 405 }, 'method not allowed');
      reply
        .code(405)
        .header('allow', allow.join(', '))
        .send(
          errorBody(
            405,
            'HTTP_METHOD_NOT_ALLOWED',
            `${request.method} is not allowed on ${path}; it takes ${allow.join(', ')} (see docs/http-api.md)`,
          ),
        );
      return;
    }
    request.log.debug({ code: 'HTTP_NOT_FOUND', status: 404 }, 'no such route');
    reply
      .code(404)
      .send(
        errorBody(
          404,
          'HTTP_NOT_FOUND',
          `no route ${request.method} ${path} (see docs/http-api.md)`,
        ),
      );
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    // Every answer is live state (counters, device data, errors of the moment):
    // no cache may store it, unless the route says otherwise (the status page's
    // files: no-cache).
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    // While draining, every answer closes its connection so that shutdown is not
    // held up by idle keep-alive sockets.
    if (service.refusing) reply.header('connection', 'close');
    done(null, payload);
  });

  const routes = { service };
  app.register(blockRoutes, routes);
  app.register(ioRoutes, routes);
  app.register(deviceRoutes, routes);
  app.register(poolRoutes, routes);
  app.register(slotRoutes, routes);
  app.register(copyRoutes, routes);
  if (opts.metrics ?? true) app.register(metricsRoutes, routes);
  app.register(healthRoutes, routes);
  if (opts.statusPage ?? true) app.register(statusPageRoutes, routes);

  opts.extend?.(app, service);
  return app;
}

export type { FastifyBaseLogger, FastifyInstance };
