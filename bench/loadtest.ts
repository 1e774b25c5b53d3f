/**
 * Load test of the HTTP service over loopback with autocannon.
 *
 * Options: `npm run loadtest -- --help`.
 *
 * Starts the service in-process (embedded default configuration, port 0 on
 * 127.0.0.1), then runs four phases of `--duration` seconds each: synthetic
 * writes and reads (POST /v1/devices/blk0/io) and real block writes and reads
 * (PUT / GET /v1/devices/blk0/blocks/:lba). For each phase it prints the client's
 * view (req/s, latency percentiles, non-2xx answers, errors) beside the server's,
 * scraped from /metrics before and after (requests by outcome, bytes bounced,
 * pool high-water, back-pressure waits). Bounded in time; loopback only.
 */
import autocannon from 'autocannon';
import { loadConfig } from '../src/config/load.js';
import { startServer } from '../src/server/run.js';
import { benchArgs, choiceFlag, intFlag, positiveFlag, usageError } from './cli.js';

const USAGE = `Usage: npm run loadtest -- [options]
HTTP load test of the service over loopback (autocannon), four phases.

  --duration S        seconds per phase, at most 600 (default 5)
  --connections N     concurrent connections (default 32)
  --size B            bytes per request, a multiple of 512 (default 4096)
  --mode MODE         bounce or direct (default bounce)
  --json              print the phases as JSON on the last line
  -h, --help          this help`;

const { duration, connections, size, mode, json } = benchArgs(
  'loadtest',
  USAGE,
  {
    options: {
      duration: { type: 'string', default: '5' },
      connections: { type: 'string', default: '32' },
      size: { type: 'string', default: '4096' },
      mode: { type: 'string', default: 'bounce' },
      json: { type: 'boolean', default: false },
    },
  },
  (values) => {
    const seconds = positiveFlag('duration', values.duration);
    if (seconds > 600) throw usageError(`--duration: "${values.duration}" is more than 600 s`);
    const bytes = intFlag('size', values.size, 512);
    if (bytes % 512 !== 0) throw usageError(`--size: "${values.size}" is not a multiple of 512`);
    return {
      duration: seconds,
      connections: intFlag('connections', values.connections, 1),
      size: bytes,
      mode: choiceFlag('mode', values.mode, ['bounce', 'direct'] as const),
      json: values.json,
    };
  },
);

/** Prometheus text exposition: sum of a metric's samples, optionally grouped by a label. */
function metric(text: string, name: string, by?: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    let key = 'all';
    if (by) {
      const l = new RegExp(`${by}="([^"]*)"`).exec(m[2] ?? '');
      key = l?.[1] ?? '';
    }
    out[key] = (out[key] ?? 0) + Number(m[3]);
  }
  return out;
}

function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

const config = loadConfig({
  overrides: [
    { path: ['http', 'port'], value: 0, flag: '--port' },
    { path: ['http', 'host'], value: '127.0.0.1', flag: '--host' },
    { path: ['mode'], value: mode, flag: '--mode' },
  ],
});
const server = await startServer(config, { logger: false });
await server.service.started;
const base = server.url;
const sectors = Math.floor((256 * 2 ** 20 - size) / 512);
const block = Buffer.alloc(size, 0xa5);
const blocks = Math.floor(sectors / (size / 512));
let counter = 0;
/** Spread over the disk, block aligned. */
const nextLba = () => ((counter++ * 7919) % blocks) * (size / 512);

interface Phase {
  name: string;
  request: autocannon.Request;
}
/** A synthetic I/O phase: POST /io, no body transfer, the mediation alone. */
const synthetic = (op: 'read' | 'write'): Phase => ({
  name: `synthetic ${op} (POST /io)`,
  request: {
    method: 'POST',
    path: '/v1/devices/blk0/io',
    headers: { 'content-type': 'application/json' },
    setupRequest: (req) => ({ ...req, body: JSON.stringify({ op, size, lba: nextLba() }) }),
  },
});
const phases: Phase[] = [
  synthetic('write'),
  synthetic('read'),
  {
    name: 'block write (PUT /blocks)',
    request: {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: block,
      setupRequest: (req) => ({
        ...req,
        path: `/v1/devices/blk0/blocks/${nextLba()}`,
      }),
    },
  },
  {
    name: 'block read (GET /blocks)',
    request: {
      method: 'GET',
      setupRequest: (req) => ({
        ...req,
        path: `/v1/devices/blk0/blocks/${nextLba()}?count=${size / 512}`,
      }),
    },
  },
];

async function scrape() {
  const text = await (await fetch(`${base}/metrics`)).text();
  return {
    requests: metric(text, 'mediator_requests_total', 'outcome'),
    bounced: metric(text, 'mediator_bounce_bytes_total', 'direction'),
    hiwater: metric(text, 'swiotlb_pool_used_hiwater_slots').all ?? 0,
    slots: metric(text, 'swiotlb_pool_slots').all ?? 0,
    waits: metric(text, 'mediator_backpressure_waits_total').all ?? 0,
    failures: metric(text, 'swiotlb_map_failures_total', 'reason'),
  };
}

const results: Record<string, unknown>[] = [];
const log = (s: string) => {
  if (!json) console.log(s);
};
log(
  `loadtest: ${base} (${config.mode} mode), ${connections} connections, ${size}-byte I/O, ${duration} s per phase`,
);
try {
  for (const phase of phases) {
    await fetch(`${base}/v1/pool/hiwater/reset`, { method: 'POST' });
    const before = await scrape();
    const r = await autocannon({
      url: base,
      connections,
      duration,
      requests: [phase.request],
    });
    const after = await scrape();
    const row = {
      phase: phase.name,
      client: {
        requests_per_sec: r.requests.average,
        total: r.requests.total,
        latency_ms: {
          p50: r.latency.p50,
          p90: r.latency.p90,
          p99: r.latency.p99,
          max: r.latency.max,
        },
        non_2xx: r.non2xx,
        errors: r.errors,
        timeouts: r.timeouts,
      },
      server: {
        requests_by_outcome: diff(before.requests, after.requests),
        bounced_bytes: diff(before.bounced, after.bounced),
        pool_hiwater_slots: after.hiwater,
        pool_hiwater_percent: after.slots
          ? Math.round((after.hiwater / after.slots) * 10000) / 100
          : 0,
        backpressure_waits: after.waits - before.waits,
        map_failures: diff(before.failures, after.failures),
      },
    };
    results.push(row);
    const c = row.client;
    const s = row.server;
    log('');
    log(`== ${phase.name}`);
    log(
      `  client: ${Math.round(c.requests_per_sec)} req/s (${c.total} requests), latency p50 ${c.latency_ms.p50} ms, p90 ${c.latency_ms.p90} ms, p99 ${c.latency_ms.p99} ms, max ${c.latency_ms.max} ms; non-2xx ${c.non_2xx}, errors ${c.errors}, timeouts ${c.timeouts}`,
    );
    log(
      `  server: requests ${JSON.stringify(s.requests_by_outcome)}, bounced ${JSON.stringify(s.bounced_bytes)}, pool high-water ${s.pool_hiwater_slots} slots (${s.pool_hiwater_percent}%), back-pressure waits ${s.backpressure_waits}, map failures ${JSON.stringify(s.map_failures)}`,
    );
  }
} finally {
  await server.shutdown();
}
if (json)
  console.log(
    JSON.stringify(
      { url: base, mode: config.mode, connections, size, duration, phases: results },
      null,
      2,
    ),
  );
