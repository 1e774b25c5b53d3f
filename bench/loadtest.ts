/**
 * Load test of the HTTP service over loopback with autocannon.
 *
 * Options: `npm run loadtest -- --help`.
 *
 * Starts the service (embedded default configuration, port 0 on 127.0.0.1) in a
 * process of its own, and with `--baseline` a bare Fastify server doing the same
 * socket work in another (bench/loadtest-server.ts), then runs four phases of
 * `--duration` seconds each against them from this process: synthetic writes and
 * reads (POST /v1/devices/blk0/io) and block writes and reads (PUT / GET
 * /v1/devices/blk0/blocks/:lba). With `--baseline` each phase runs against the
 * service and the baseline in alternated windows (`--rounds` of each, the order
 * swapped every round), and prints service ÷ baseline: what the service costs
 * over the socket work any HTTP server does. For each phase it prints the
 * client's view (req/s, latency percentiles, non-2xx answers, errors) beside the
 * service's, scraped from /metrics before and after (requests by outcome, bytes
 * bounced, pool high-water, back-pressure waits), and the CPU time a request
 * costs the server (its process, every thread) and the load generator (this
 * process): on a machine whose CPUs the two fill, the baseline's CPU per request
 * over the service's is the ratio the CPU allows, a figure that holds stiller
 * than requests per second. Bounded in time; loopback only.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { loadConfig } from '../src/config/load.js';
import { isMediatorError } from '../src/errors.js';
import { DEFAULT_MODE, MODES, type Mode } from '../src/mediator/defaults.js';
import { benchArgs, choiceFlag, intFlag, positiveFlag, usageError } from './cli.js';
import { SERVER_ENV, type ServerSpec } from './loadtest-server.js';
import { median } from './median.js';

const USAGE = `Usage: npm run loadtest -- [options]
HTTP load test of the service over loopback (autocannon), four phases.

  --duration S        seconds per window, at most 600 (default 5)
  --connections N     concurrent connections (default 32)
  --size B            bytes per request, a multiple of 512 (default 4096)
  --mode MODE         bounce, direct or shared (default: the config file's mode,
                      else bounce)
  --config FILE       the service's config file (default: the embedded default);
                      its blk0 device is the one loaded
  --baseline          also run every phase against a bare Fastify server doing
                      the same socket work, alternated, and print service / baseline
  --rounds N          with --baseline: windows of each server per phase; the
                      figures are medians (default 1)
  --json              print {"phases":[{"name","rps","baseline_rps","ratio",
                      "cpu_us_per_request","baseline_cpu_us_per_request",
                      "cpu_bound_ratio",...}],"targets":[...]} as the last line
                      (targets: 4 KiB PUT and GET >= 0.8 of the baseline, in
                      the default mode and configuration)
  -h, --help          this help`;

/** The device every phase loads. */
const LOADED = 'blk0';

/**
 * The mode a config file runs the service in. A file that does not load, or
 * that has no device `blk0` to load (every request would answer 404), is a
 * usage error.
 */
function configMode(file: string): Mode {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ file });
  } catch (err) {
    if (isMediatorError(err)) throw usageError(`--config: ${err.message}`);
    throw err;
  }
  if (!config.devices.some((d) => d.id === LOADED)) {
    throw usageError(
      `--config: ${file} has no device "${LOADED}", the device every phase loads (its devices: ${config.devices.map((d) => `${d.id} (${d.kind})`).join(', ') || 'none'})`,
    );
  }
  return config.mode;
}

const { duration, connections, size, mode, json, withBaseline, rounds, configFile } = benchArgs(
  'loadtest',
  USAGE,
  {
    options: {
      duration: { type: 'string', default: '5' },
      connections: { type: 'string', default: '32' },
      size: { type: 'string', default: '4096' },
      mode: { type: 'string' },
      config: { type: 'string' },
      baseline: { type: 'boolean', default: false },
      rounds: { type: 'string', default: '1' },
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
      // Unset: the mode the service runs, the config file's if it names one.
      mode:
        values.mode !== undefined
          ? (choiceFlag('mode', values.mode, MODES) as Mode)
          : values.config !== undefined
            ? configMode(values.config)
            : DEFAULT_MODE,
      withBaseline: values.baseline,
      configFile: values.config,
      rounds: intFlag('rounds', values.rounds, 1),
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

interface Server {
  url: string;
  child: ChildProcess;
}

/** Starts one server in a process of its own; resolves with its URL. */
function startChild(spec: ServerSpec): Promise<Server> {
  const here = fileURLToPath(import.meta.url);
  const script = here.replace(/loadtest\.(ts|js)$/, 'loadtest-server.$1');
  return new Promise<Server>((resolve, reject) => {
    const child = fork(script, [], {
      env: { ...process.env, [SERVER_ENV]: JSON.stringify(spec) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (msg: { url?: string; error?: string }) => {
      if (msg.url) resolve({ url: msg.url, child });
      else reject(new Error(`${spec.kind} server failed to start: ${msg.error}`));
    });
    child.once('exit', (code) => reject(new Error(`${spec.kind} server exited with ${code}`)));
  });
}

/** The server process's CPU time so far (all its threads), in microseconds. */
function cpuOf(s: Server): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const onMessage = (msg: { cpuMicros?: unknown }) => {
      if (typeof msg?.cpuMicros !== 'number') return;
      s.child.off('message', onMessage);
      resolve(msg.cpuMicros);
    };
    s.child.on('message', onMessage);
    s.child.send('cpu', (err) => {
      if (!err) return;
      s.child.off('message', onMessage);
      reject(err);
    });
  });
}

function stopChild(s: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (s.child.exitCode !== null) return resolve();
    s.child.once('exit', () => resolve());
    s.child.disconnect();
    setTimeout(() => s.child.kill('SIGKILL'), 15_000).unref();
  });
}

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
    path: `/v1/devices/${LOADED}/io`,
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
        path: `/v1/devices/${LOADED}/blocks/${nextLba()}`,
      }),
    },
  },
  {
    name: 'block read (GET /blocks)',
    request: {
      method: 'GET',
      setupRequest: (req) => ({
        ...req,
        path: `/v1/devices/${LOADED}/blocks/${nextLba()}?count=${size / 512}`,
      }),
    },
  },
];

async function scrape(base: string) {
  const text = await (await fetch(`${base}/metrics`)).text();
  return {
    requests: metric(text, 'mediator_requests_total', 'outcome'),
    bounced: metric(text, 'mediator_bounce_bytes_total', 'direction'),
    hiwater: metric(text, 'swiotlb_pool_used_hiwater_slots', 'pool'),
    slots: metric(text, 'swiotlb_pool_slots', 'pool'),
    waits: metric(text, 'mediator_backpressure_waits_total').all ?? 0,
    failures: metric(text, 'swiotlb_map_failures_total', 'reason'),
  };
}

interface ClientView {
  requests_per_sec: number;
  total: number;
  latency_ms: { p50: number; p90: number; p99: number; max: number };
  non_2xx: number;
  errors: number;
  timeouts: number;
  /** CPU time per request of the server process, every thread (µs). */
  server_cpu_us: number;
  /** CPU time per request of this process, the load generator (µs). */
  client_cpu_us: number;
  /** CPU time of both over the window's CPU capacity (every CPU of the machine). */
  cpu_busy: number;
}

async function window(server: Server, phase: Phase): Promise<ClientView> {
  const serverCpu0 = await cpuOf(server);
  const clientCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await autocannon({ url: server.url, connections, duration, requests: [phase.request] });
  const elapsedMicros = (performance.now() - t0) * 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  const serverMicros = (await cpuOf(server)) - serverCpu0;
  const clientMicros = clientCpu.user + clientCpu.system;
  const n = Math.max(1, r.requests.total);
  return {
    requests_per_sec: r.requests.average,
    total: r.requests.total,
    latency_ms: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    non_2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    server_cpu_us: round2(serverMicros / n),
    client_cpu_us: round2(clientMicros / n),
    cpu_busy: round2((serverMicros + clientMicros) / (elapsedMicros * availableParallelism())),
  };
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** Medians over a phase's windows of {@link ClientView}'s CPU figures. */
function cpuPerRequest(views: ClientView[]): { server: number; client: number; busy: number } {
  return {
    server: round2(median(views.map((v) => v.server_cpu_us))),
    client: round2(median(views.map((v) => v.client_cpu_us))),
    busy: round2(median(views.map((v) => v.cpu_busy))),
  };
}

const log = (s: string) => {
  if (!json) console.log(s);
};

const service = await startChild({ kind: 'service', mode, config: configFile });
const baseline = withBaseline ? await startChild({ kind: 'baseline', mode }) : undefined;
const rows: Record<string, unknown>[] = [];
/** What the targets read of each phase with a baseline. */
const judged: { name: string; ratio: number | null; bound: string }[] = [];
log(
  `loadtest: the service at ${service.url} (${mode} mode)${baseline ? `, the bare Fastify baseline at ${baseline.url}` : ''}, ${connections} connections, ${size}-byte I/O, ${duration} s per window${baseline ? `, ${rounds} round${rounds > 1 ? 's' : ''}` : ''}`,
);
try {
  for (const phase of phases) {
    await fetch(`${service.url}/v1/pool/hiwater/reset`, { method: 'POST' });
    const before = await scrape(service.url);
    const mine: ClientView[] = [];
    const theirs: ClientView[] = [];
    for (let k = 0; k < (baseline ? rounds : 1); k++) {
      // Alternated, the order swapped every round: a slow stretch of the machine
      // hits both servers alike.
      if (baseline && k % 2 === 1) theirs.push(await window(baseline, phase));
      mine.push(await window(service, phase));
      if (baseline && k % 2 === 0) theirs.push(await window(baseline, phase));
    }
    const after = await scrape(service.url);
    const rps = median(mine.map((c) => c.requests_per_sec));
    const baselineRps = baseline ? median(theirs.map((c) => c.requests_per_sec)) : undefined;
    const cpu = cpuPerRequest(mine);
    const baselineCpu = baseline ? cpuPerRequest(theirs) : undefined;
    const row = {
      name: phase.name,
      rps,
      ...(baselineRps !== undefined
        ? {
            baseline_rps: baselineRps,
            ratio: baselineRps > 0 ? +(rps / baselineRps).toFixed(3) : null,
          }
        : {}),
      cpu_us_per_request: cpu,
      ...(baselineCpu !== undefined
        ? {
            baseline_cpu_us_per_request: baselineCpu,
            cpu_bound_ratio: +(
              (baselineCpu.server + baselineCpu.client) /
              (cpu.server + cpu.client)
            ).toFixed(3),
          }
        : {}),
      client: mine.length === 1 ? mine[0]! : mine,
      ...(baseline ? { baseline: theirs.length === 1 ? theirs[0]! : theirs } : {}),
      server: {
        requests_by_outcome: diff(before.requests, after.requests),
        bounced_bytes: diff(before.bounced, after.bounced),
        pool_hiwater_slots: after.hiwater,
        pool_hiwater_percent: Object.fromEntries(
          Object.entries(after.hiwater).map(([p, h]) => [
            p,
            after.slots[p] ? Math.round((h / after.slots[p]!) * 10000) / 100 : 0,
          ]),
        ),
        backpressure_waits: after.waits - before.waits,
        map_failures: diff(before.failures, after.failures),
      },
    };
    rows.push(row);
    if (baselineCpu && row.ratio !== undefined) {
      judged.push({
        name: phase.name,
        ratio: row.ratio,
        bound: `the CPU allows ${row.cpu_bound_ratio}: a request cost the service ${cpu.server} µs and the load generator ${cpu.client} µs, the baseline ${baselineCpu.server} µs and ${baselineCpu.client} µs`,
      });
    }
    const c = mine[mine.length - 1]!;
    const s = row.server;
    log('');
    log(`== ${phase.name}`);
    log(
      `  client: ${Math.round(rps)} req/s${mine.length > 1 ? ' (median)' : ''} (${c.total} requests in the last window), latency p50 ${c.latency_ms.p50} ms, p90 ${c.latency_ms.p90} ms, p99 ${c.latency_ms.p99} ms, max ${c.latency_ms.max} ms; non-2xx ${c.non_2xx}, errors ${c.errors}, timeouts ${c.timeouts}`,
    );
    if (baselineRps !== undefined) {
      const b = theirs[theirs.length - 1]!;
      log(
        `  baseline: ${Math.round(baselineRps)} req/s, latency p50 ${b.latency_ms.p50} ms, p99 ${b.latency_ms.p99} ms; non-2xx ${b.non_2xx}, errors ${b.errors}`,
      );
      log(`  service / baseline: ${row.ratio}`);
    }
    log(
      `  CPU per request: the server ${cpu.server} µs, the load generator ${cpu.client} µs (CPUs ${Math.round(cpu.busy * 100)}% busy)${baselineCpu ? `; baseline ${baselineCpu.server} µs and ${baselineCpu.client} µs (${Math.round(baselineCpu.busy * 100)}% busy)` : ''}`,
    );
    if (baselineCpu) {
      log(
        `  what the CPU allows with every CPU busy: service / baseline ≈ ${row.cpu_bound_ratio} (the baseline's CPU per request over the service's, the load generator's included)`,
      );
    }
    log(
      `  server: requests ${JSON.stringify(s.requests_by_outcome)}, bounced ${JSON.stringify(s.bounced_bytes)}, pool high-water ${JSON.stringify(s.pool_hiwater_slots)} slots (${JSON.stringify(s.pool_hiwater_percent)}%), back-pressure waits ${s.backpressure_waits}, map failures ${JSON.stringify(s.map_failures)}`,
    );
  }
} finally {
  await Promise.all([stopChild(service), ...(baseline ? [stopChild(baseline)] : [])]);
}
/**
 * Issue 17's targets for the HTTP path: 4 KiB PUT and GET at 0.8 of the baseline
 * or more, with the service in its default mode and configuration.
 */
const HTTP_TARGET = 0.8;
const targets =
  withBaseline && size === 4096 && mode === DEFAULT_MODE && configFile === undefined
    ? judged
        .filter((j) => j.name.startsWith('block '))
        .map((j) => {
          const met = j.ratio === null ? null : j.ratio >= HTTP_TARGET;
          return {
            name: `${j.name}, service ÷ baseline`,
            measured: j.ratio,
            target: HTTP_TARGET,
            met,
            bounds: met === false ? [j.bound] : [],
          };
        })
    : undefined;
if (targets) {
  log('');
  log("targets (4 KiB, the service's default configuration):");
  for (const t of targets) {
    log(`  ${t.name} >= ${t.target}: ${t.measured} (${t.met ? 'met' : 'not met'})`);
    for (const b of t.bounds) log(`    bound: ${b}`);
  }
}
if (json) {
  console.log(
    JSON.stringify({
      mode,
      connections,
      size,
      duration,
      rounds,
      phases: rows,
      ...(targets ? { targets } : {}),
    }),
  );
}
