/**
 * What an open status page costs the I/O path: the pipeline under load with a
 * page open (a separate process doing the page's reads once a second: the
 * pools, devices, copy engine and every pool's slot map, over loopback HTTP)
 * and closed, alternated round by round so that the machine's noise hits both
 * alike; the medians of each side and of the per-round ratios. Like
 * bench:metrics does for scrapes. The page's own drawing is the browser's
 * work, on whatever machine it runs on, and is not counted.
 *
 * Options: `npm run bench:status -- --help`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/index.js';
import { buildServer, Service } from '../src/server/index.js';
import type { DeviceKind } from '../src/virtio/device-spec.js';
import { benchArgs, intFlag, positiveFlag } from './cli.js';
import { median } from './median.js';
import type { PollerCommand, PollerReport } from './status-poller.js';

const USAGE = `Usage: npm run bench:status -- [options]
The pipeline under load with the status page open and closed, alternated; prints
what an open page costs.

  --rounds N       open/closed pairs per workload (default 10)
  --duration S     seconds per window (default 3: three page reads a window)
  --interval MS    how often the page reads (default 1000, as the page does;
                   100 is ten pages open)
  --json           print {"results":[...]} as the last line
  -h, --help       this help`;

const { rounds, duration, interval, json } = benchArgs(
  'bench:status',
  USAGE,
  {
    options: {
      rounds: { type: 'string', default: '10' },
      duration: { type: 'string', default: '3' },
      interval: { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
    },
  },
  (values) => ({
    rounds: intFlag('rounds', values.rounds, 1),
    duration: positiveFlag('duration', values.duration) * 1000,
    interval: intFlag('interval', values.interval, 10),
    json: values.json,
  }),
);

/** The page's process: started once, opened and closed per window. */
async function startPoller(): Promise<{
  child: ChildProcess;
  send(c: PollerCommand): void;
  closed(): Promise<PollerReport>;
}> {
  // Built (dist-bench/*.js) or under tsx (bench/*.ts, whose --import the child inherits).
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const child = fork(fileURLToPath(new URL(`./status-poller.${ext}`, import.meta.url)), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  return {
    child,
    send: (c) => child.send(c),
    closed: () =>
      new Promise((resolve) => child.once('message', (r) => resolve(r as PollerReport))),
  };
}

/** IOPS of `depth` writers of `size` bytes on the service's device for one window. */
async function window(service: Service, size: number, depth = 32): Promise<number> {
  const dev = service.device('dev')!;
  let count = 0;
  let stop = false;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: depth }, async (_, i) => {
      let lba = i * 128;
      while (!stop) {
        lba = (lba + 4099 * (size / 512)) % 100_000;
        await dev.write(lba, size);
        count++;
        if (performance.now() - t0 > duration) stop = true;
      }
    }),
  );
  return count / ((performance.now() - t0) / 1000);
}

const results: {
  device: DeviceKind;
  size: number;
  open_iops: number;
  closed_iops: number;
  open_over_closed: number;
  median_round_ratio: number;
  page_reads: number;
  page_read_ms_p50: number;
  page_bytes_per_read: number;
}[] = [];

const poller = await startPoller();
try {
  for (const [kind, size] of [
    ['null', 4096],
    ['ram-blk', 65536],
  ] as const) {
    const service = new Service(
      parseConfig({
        logLevel: 'silent',
        pools: [{ name: 'pool', size: '64MiB' }],
        devices: [{ id: 'dev', kind, pool: 'pool', capacity: '64MiB', maxRequestBytes: '64KiB' }],
      }),
    );
    const app = buildServer(service);
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      await service.started;
      const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const open = async () => {
        poller.send({ cmd: 'open', url, pools: ['pool'], intervalMs: interval });
        const iops = await window(service, size);
        const done = poller.closed();
        poller.send({ cmd: 'close' });
        return { iops, report: await done };
      };
      await window(service, size); // warm up
      const openIops: number[] = [];
      const closedIops: number[] = [];
      const ratios: number[] = [];
      const readMs: number[] = [];
      let reads = 0;
      let bytes = 0;
      for (let r = 0; r < rounds; r++) {
        // Alternate which goes first so that drift favours neither.
        let o: Awaited<ReturnType<typeof open>>;
        let c: number;
        if (r % 2 === 0) {
          o = await open();
          c = await window(service, size);
        } else {
          c = await window(service, size);
          o = await open();
        }
        openIops.push(o.iops);
        closedIops.push(c);
        ratios.push(o.iops / c);
        readMs.push(...o.report.readMs);
        reads += o.report.reads;
        bytes += o.report.bytes;
      }
      const result = {
        device: kind,
        size,
        open_iops: Math.round(median(openIops)),
        closed_iops: Math.round(median(closedIops)),
        open_over_closed: median(openIops) / median(closedIops),
        median_round_ratio: median(ratios),
        page_reads: reads,
        page_read_ms_p50: median(readMs),
        page_bytes_per_read: Math.round(bytes / Math.max(1, reads)),
      };
      results.push(result);
      if (!json) {
        console.log(
          `${kind.padEnd(8)} ${String(size).padStart(6)} B  page open ${result.open_iops} IOPS, closed ${result.closed_iops} IOPS (medians of ${rounds}): open/closed = ${result.open_over_closed.toFixed(3)}, median of round ratios ${result.median_round_ratio.toFixed(3)}; ${reads} page reads every ${interval} ms, ${(result.page_bytes_per_read / 1024).toFixed(1)} KiB each, answered in ${result.page_read_ms_p50.toFixed(2)} ms (median)`,
        );
      }
    } finally {
      await app.close();
      await service.close();
    }
  }
} finally {
  poller.send({ cmd: 'exit' });
}
if (json) console.log(JSON.stringify({ results }));
