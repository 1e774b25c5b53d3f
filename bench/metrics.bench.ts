/**
 * What the metrics cost on the request path: the pipeline run with metrics on
 * (per-request latency histograms, inline copy accounting, a Prometheus registry
 * scraped every second, five times as often as dashboards/prometheus.yml does) and off (none of these), alternated in one run so that
 * the machine's noise hits both alike. Target: the two differ by less than 5%.
 *
 * Options: `npm run bench:metrics -- --help`.
 */

import { Mediator } from '../src/mediator/mediator.js';
import { createMetrics } from '../src/metrics/metrics.js';
import type { DeviceKind } from '../src/virtio/device-spec.js';
import { benchArgs, intFlag, positiveFlag } from './cli.js';

const USAGE = `Usage: npm run bench:metrics -- [options]
The pipeline with metrics on and off, alternated; prints what the metrics cost.

  --rounds N       on/off pairs per workload (default 30: 10-round runs swing
                   by +-8% on the shared 2-core machines)
  --duration S     seconds per window (default 0.4)
  --json           print {"results":[...]} as the last line
  -h, --help       this help`;

const { rounds, duration, json } = benchArgs(
  'bench:metrics',
  USAGE,
  {
    options: {
      rounds: { type: 'string', default: '30' },
      duration: { type: 'string', default: '0.4' },
      json: { type: 'boolean', default: false },
    },
  },
  (values) => ({
    rounds: intFlag('rounds', values.rounds, 1),
    duration: positiveFlag('duration', values.duration) * 1000,
    json: values.json,
  }),
);

function mediator(metrics: boolean, kind: DeviceKind): Mediator {
  return new Mediator({
    copy: { accounting: metrics },
    pools: [{ name: 'pool', size: 64 * 2 ** 20 }],
    guests: [{ name: 'guest', size: 128 * 2 ** 20 }],
    devices: [
      {
        id: 'dev',
        kind,
        guest: 'guest',
        pool: 'pool',
        capacity: 64 * 2 ** 20,
        depth: 32,
        maxRequestBytes: 64 * 1024,
        recordLatency: metrics,
      },
    ],
  });
}

async function run(
  m: Mediator,
  size: number,
  scrape: (() => Promise<string>) | undefined,
): Promise<number> {
  const dev = m.device('dev')!;
  let count = 0;
  let stop = false;
  const timer = scrape ? setInterval(() => void scrape(), 1000) : undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 32 }, async (_, i) => {
      let lba = i * 128;
      while (!stop) {
        lba = (lba + 4099 * (size / 512)) % 100_000;
        await dev.write(lba, size);
        count++;
        if (performance.now() - t0 > duration) stop = true;
      }
    }),
  );
  if (timer) clearInterval(timer);
  return count / ((performance.now() - t0) / 1000);
}

const results: {
  device: DeviceKind;
  size: number;
  on_iops: number;
  off_iops: number;
  difference: number;
}[] = [];
for (const [kind, size] of [
  ['null', 4096],
  ['ram-blk', 65536],
] as const) {
  const on = mediator(true, kind);
  const off = mediator(false, kind);
  const registry = createMetrics(on);
  try {
    await Promise.all([on.device('dev')!.ready(), off.device('dev')!.ready()]);
    await run(on, size, undefined); // warm both
    await run(off, size, undefined);
    let onTotal = 0;
    let offTotal = 0;
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first so that drift favours neither.
      if (r % 2 === 0) {
        onTotal += await run(on, size, () => registry.metrics());
        offTotal += await run(off, size, undefined);
      } else {
        offTotal += await run(off, size, undefined);
        onTotal += await run(on, size, () => registry.metrics());
      }
    }
    const onIops = onTotal / rounds;
    const offIops = offTotal / rounds;
    const difference = 1 - onIops / offIops;
    results.push({
      device: kind,
      size,
      on_iops: Math.round(onIops),
      off_iops: Math.round(offIops),
      difference,
    });
    if (!json) {
      console.log(
        `${kind.padEnd(8)} ${String(size).padStart(6)} B  metrics on ${Math.round(onIops)} IOPS, off ${Math.round(offIops)} IOPS: on/off = ${(onIops / offIops).toFixed(3)} (${(difference * 100).toFixed(1)}% cost; target < 5%: ${Math.abs(difference) < 0.05 ? 'met' : 'not met'})`,
      );
    }
  } finally {
    await Promise.all([on.close(), off.close()]);
  }
}
if (json) console.log(JSON.stringify({ results }));
