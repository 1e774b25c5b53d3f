import type { FastifyPluginAsync } from 'fastify';
import type { PoolEntry } from '../../mediator/mediator.js';
import type { Service } from '../service.js';
import { defaultPoolOf, type PoolParams, poolOf, type RouteOptions } from './common.js';

/** A pool's geometry, debugfs-like counters, back-pressure and devices. */
function poolView(service: Service, entry: PoolEntry) {
  const g = entry.pool.geometry;
  return {
    name: entry.name,
    base: `0x${g.base.toString(16)}`,
    bytes: g.bytes,
    ...entry.pool.stats(),
    backpressure: {
      policy: entry.gate.policy,
      waitMs: entry.gate.waitMs,
      ...entry.gate.stats(),
    },
    devices: service.config.devices.filter((d) => d.pool === entry.name).map((d) => d.id),
  };
}

/**
 * The pools (debugfs: io_tlb_nslabs, io_tlb_used, io_tlb_used_hiwater...):
 * GET /v1/pools, /v1/pools/:name, /v1/pool (the first pool), and the resettable
 * high-water mark (POST .../hiwater/reset, as writing 0 to io_tlb_used_hiwater).
 */
export const poolRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const pools = service.mediator.pools;
  const defaultPool = defaultPoolOf(service);
  const resetHiwater = (entry: PoolEntry) => {
    entry.pool.resetHiwater();
    return poolView(service, entry);
  };
  app.get('/v1/pools', async () => ({
    mode: service.mediator.mode,
    pools: [...pools.values()].map((p) => poolView(service, p)),
  }));
  app.get('/v1/pool', async () => poolView(service, defaultPool));
  app.get<{ Params: PoolParams }>('/v1/pools/:name', async (request) =>
    poolView(service, poolOf(service, request.params.name)),
  );
  app.post('/v1/pool/hiwater/reset', async () => resetHiwater(defaultPool));
  app.post<{ Params: PoolParams }>('/v1/pools/:name/hiwater/reset', async (request) =>
    resetHiwater(poolOf(service, request.params.name)),
  );
};
