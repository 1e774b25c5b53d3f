import type { FastifyPluginAsync } from 'fastify';
import { createMetrics } from '../../metrics/metrics.js';
import type { RouteOptions } from './common.js';

/** GET /metrics: the Prometheus text of src/metrics (each source read once per scrape). */
export const metricsRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const registry = createMetrics(service.mediator);
  app.get('/metrics', async (_request, reply) => {
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });
};
