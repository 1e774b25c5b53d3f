import type { FastifyPluginAsync } from 'fastify';
import type { DirectionTotals } from '../../workers/copy-stats.js';
import type { RouteOptions } from './common.js';

const ZERO: DirectionTotals = { bytes: 0, copies: 0, seconds: 0 };

/**
 * GET /v1/copy: the copy engine as JSON, the numbers behind /metrics'
 * mediator_bounce_* and mediator_copy_* series: bytes, copies and copy time by
 * guest and direction (counters since start), copies inline and on workers, each
 * worker's busy time, the workers running. Read from the engine's shared
 * counters at request time.
 */
export const copyRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const mediator = service.mediator;
  const engine = mediator.engine;
  const guests = [...mediator.guests.values()];
  app.get('/v1/copy', async () => {
    const s = engine.stats();
    const inline = s.byWriter[0] ?? { ...ZERO };
    const workers = Array.from({ length: engine.workers }, (_, i) => s.byWriter[i + 1] ?? ZERO);
    return {
      workers: engine.workers,
      liveWorkers: engine.liveWorkers,
      pending: engine.pendingCopies,
      crashes: engine.workerCrashes,
      inlineThreshold: engine.inlineThreshold,
      totals: s.totals,
      guests: guests.map((g) => {
        const r = s.byRegion.get(g.region);
        return {
          name: g.name,
          to_device: r?.to_device ?? ZERO,
          from_device: r?.from_device ?? ZERO,
        };
      }),
      inline: { bytes: inline.bytes, copies: inline.copies },
      worker: {
        bytes: workers.reduce((a, w) => a + w.bytes, 0),
        copies: workers.reduce((a, w) => a + w.copies, 0),
      },
      workerBusySeconds: workers.map((w) => w.seconds),
    };
  });
};
