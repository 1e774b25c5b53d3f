import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../errors.js';
import type { RouteOptions } from './common.js';

/**
 * GET /healthz (alive: 200 with the state) and GET /readyz (200 once every device
 * thread serves; 503 HTTP_NOT_READY with Retry-After while starting or draining).
 */
export const healthRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  app.get('/healthz', async () => ({ status: 'ok', state: service.state }));
  app.get('/readyz', async (_request, reply) => {
    const state = service.state;
    if (state === 'ready') return { status: 'ready' };
    const why =
      state === 'starting'
        ? 'the service is starting: device threads are not serving yet'
        : 'the service is draining for shutdown';
    return reply
      .code(503)
      .header('retry-after', String(service.config.http.retryAfterSeconds))
      .send(errorBody(503, 'HTTP_NOT_READY', why));
  });
};
