/**
 * The status page's routes, in process (the page in a real browser is
 * status.browser.test.ts): GET / and its files, the slot-map endpoint against the
 * pool's counters, /v1/copy against /metrics, the latency histogram in
 * /v1/devices, and the page's files in the package (npm pack).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { buildServer, Service } from '../src/server/index.js';
import { STATUS_DIR, STATUS_FILES } from '../src/server/routes/status-page.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { SLOT_STATE_NAMES, type SlotState, slotStateAt } from '../src/swiotlb/slot-map.js';
import { expectErrorBody, OCTET, randomBytes } from './helpers/http.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface SlotsBody {
  name: string;
  mode: string;
  nslabs: number;
  nareas: number;
  area_nslabs: number;
  segment_slots: number;
  slot_bytes: number;
  bits_per_slot: number;
  states: string[];
  counts: { free: number; in_use: number; padding: number; coherent: number };
  cursors: number[];
  map: string;
}

function config(mode: 'bounce' | 'direct') {
  return parseConfig({
    mode,
    logLevel: 'silent',
    http: { port: 0 },
    pools: [
      { name: 'main', size: '2MiB', areas: 2 },
      { name: 'side', size: '1MiB', areas: 1 },
    ],
    devices: [
      { id: 'ram', kind: 'ram-blk', capacity: '4MiB', queues: 2, pool: 'main' },
      { id: 'nul', kind: 'null', pool: 'side' },
    ],
  });
}

/** Slot states of a map, counted. */
function countStates(body: SlotsBody): Record<string, number> {
  const bits = Buffer.from(body.map, 'base64');
  expect(bits.length).toBe(Math.ceil(body.nslabs / 4));
  const counts = Object.fromEntries(SLOT_STATE_NAMES.map((n) => [n, 0]));
  for (let s = 0; s < body.nslabs; s++) {
    counts[SLOT_STATE_NAMES[slotStateAt(bits, s) as SlotState]]!++;
  }
  return counts;
}

/** The sum of a metric's samples whose labels include `labels`, from Prometheus text. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).some(([k, v]) => !line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe.each(['bounce', 'direct'] as const)('status routes, %s mode', (mode) => {
  let service: Service;
  let app: ReturnType<typeof buildServer>;
  const inject = (opts: InjectOptions) => app.inject(opts);

  beforeAll(async () => {
    service = new Service(config(mode));
    app = buildServer(service);
    await app.ready();
    await service.started;
  });

  afterAll(async () => {
    await app.close();
    await service.close();
  });

  it('GET / serves the page, with its files under /status/ and nothing else from there', async () => {
    const page = await inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toBe(readFileSync(join(STATUS_DIR, 'index.html'), 'utf8'));
    // Every file the page names (links, scripts, module imports) is served.
    const html = page.body;
    const named = new Set<string>();
    for (const m of html.matchAll(/(?:src|href)="\/status\/([^"]+)"/g)) named.add(m[1]!);
    for (const name of [...named]) {
      if (!name.endsWith('.js')) continue;
      const js = readFileSync(join(STATUS_DIR, name), 'utf8');
      for (const m of js.matchAll(/from '\.\/([^']+)'/g)) named.add(m[1]!);
    }
    for (const name of ['model.js', 'slot-map.js']) {
      for (const m of readFileSync(join(STATUS_DIR, name), 'utf8').matchAll(/from '\.\/([^']+)'/g))
        named.add(m[1]!);
    }
    expect([...named].sort()).toEqual(
      Object.keys(STATUS_FILES)
        .filter((f) => f !== 'index.html')
        .sort(),
    );
    for (const name of named) {
      const res = await inject({ method: 'GET', url: `/status/${name}` });
      expect(res.statusCode, name).toBe(200);
      expect(res.headers['content-type']).toBe(STATUS_FILES[name]);
    }
    for (const url of [
      '/status/model.d.ts',
      '/status/index.html',
      '/status/..%2Fpackage.json',
      '/status/nope.js',
    ]) {
      const res = await inject({ method: 'GET', url });
      expectErrorBody(404, res.json(), 'HTTP_NOT_FOUND');
    }
  });

  it('GET /v1/pools says the mode; /v1/devices carries each device latency histogram', async () => {
    const pools = (await inject({ method: 'GET', url: '/v1/pools' })).json();
    expect(pools.mode).toBe(mode);
    expect(pools.pools.map((p: { name: string }) => p.name)).toEqual(['main', 'side']);
    for (let i = 0; i < 5; i++) {
      const res = await inject({
        method: 'PUT',
        url: `/v1/devices/ram/blocks/${i * 8}`,
        headers: OCTET,
        payload: randomBytes(4096, i),
      });
      expect(res.statusCode).toBe(200);
    }
    const ram = (await inject({ method: 'GET', url: '/v1/devices/ram' })).json();
    const finished = Object.values(ram.requests as Record<string, Record<string, number>>)
      .flatMap((o) => Object.values(o))
      .reduce((a, b) => a + b, 0);
    expect(finished).toBeGreaterThanOrEqual(5);
    const lat = ram.latency as { bounds: number[]; counts: number[]; count: number; sum: number };
    expect(lat.counts).toHaveLength(lat.bounds.length + 1);
    expect(lat.counts.reduce((a, b) => a + b, 0)).toBe(lat.count);
    expect(lat.count).toBe(finished);
    // The same histogram as /metrics, summed over op.
    const metrics = (await inject({ method: 'GET', url: '/metrics' })).body;
    expect(metricSum(metrics, 'mediator_request_duration_seconds_count', { device: 'ram' })).toBe(
      lat.count,
    );
    const le = lat.bounds[6]!;
    expect(
      metricSum(metrics, 'mediator_request_duration_seconds_bucket', {
        device: 'ram',
        le: String(le),
      }),
    ).toBe(lat.counts.slice(0, 7).reduce((a, b) => a + b, 0));
  });

  it('GET /v1/pools/:name/slots: the map, its counts and cursors agree with the pool', async () => {
    const entry = service.mediator.pools.get('main')!;
    const body = (await inject({ method: 'GET', url: '/v1/pools/main/slots' })).json() as SlotsBody;
    const stats = (await inject({ method: 'GET', url: '/v1/pools/main' })).json();
    expect(body).toMatchObject({
      name: 'main',
      mode,
      nslabs: stats.nslabs,
      nareas: stats.nareas,
      area_nslabs: stats.area_nslabs,
      segment_slots: 128,
      slot_bytes: 2048,
      bits_per_slot: 2,
      states: ['free', 'in_use', 'padding', 'coherent'],
    });
    expect(countStates(body)).toEqual(body.counts);
    expect(body.cursors).toEqual(
      stats.areas.map((a: { index: number }, i: number) => i * stats.area_nslabs + a.index),
    );
    // Idle: what is in use is the two virtqueues (bounce mode), drawn as coherent.
    expect(body.counts.in_use + body.counts.padding + body.counts.coherent).toBe(stats.used);
    expect(body.counts.coherent).toBe(mode === 'bounce' ? stats.used : 0);
    if (mode === 'bounce') expect(stats.used).toBeGreaterThan(0);
    // A mapping of the pool's own shows in use, beside the queues.
    const tlb = entry.pool.map(0x1800, 6000, DmaDirection.TO_DEVICE, {
      minAlignMask: 4095,
      allocAlignMask: 4095,
    });
    try {
      const mapped = (
        await inject({ method: 'GET', url: '/v1/pools/main/slots' })
      ).json() as SlotsBody;
      expect(mapped.counts.padding).toBe(1);
      expect(mapped.counts.in_use).toBe(3);
      expect(mapped.counts.coherent).toBe(body.counts.coherent);
      const bits = Buffer.from(mapped.map, 'base64');
      const head = (tlb - entry.pool.geometry.base) >> 11;
      expect([head - 1, head, head + 1, head + 2].map((s) => slotStateAt(bits, s))).toEqual([
        2, 1, 1, 1,
      ]);
    } finally {
      entry.pool.unmap(tlb, 6000, DmaDirection.TO_DEVICE);
    }
    // /v1/pool/slots is the first pool's; an unknown pool is a 404.
    const first = (await inject({ method: 'GET', url: '/v1/pool/slots' })).json() as SlotsBody;
    expect(first.name).toBe('main');
    const nope = await inject({ method: 'GET', url: '/v1/pools/nope/slots' });
    expectErrorBody(404, nope.json(), 'HTTP_UNKNOWN_POOL', /no pool "nope" \(pools: main, side\)/);
  });

  it('GET /v1/copy: the copy engine counters /metrics exports, by guest and direction', async () => {
    await inject({
      method: 'PUT',
      url: '/v1/devices/ram/blocks/64',
      headers: OCTET,
      payload: randomBytes(65536, 3),
    });
    await inject({ method: 'GET', url: '/v1/devices/ram/blocks/64?count=128' });
    const copy = (await inject({ method: 'GET', url: '/v1/copy' })).json();
    const metrics = (await inject({ method: 'GET', url: '/metrics' })).body;
    expect(copy.workers).toBe(metricSum(metrics, 'mediator_copy_workers'));
    expect(copy.liveWorkers).toBe(copy.workers);
    expect(copy.guests.map((g: { name: string }) => g.name)).toEqual(['guest0']);
    for (const dir of ['to_device', 'from_device']) {
      const bytes = metricSum(metrics, 'mediator_bounce_bytes_total', { direction: dir });
      expect(copy.totals[dir].bytes).toBe(bytes);
      expect(copy.guests[0][dir].bytes).toBe(bytes);
    }
    if (mode === 'bounce') {
      // 64 KiB went each way at least (the service's default bounces a read's
      // buffer back only, not in: fromDeviceBounce used-length).
      expect(copy.totals.to_device.bytes).toBeGreaterThanOrEqual(65536);
      expect(copy.totals.from_device.bytes).toBeGreaterThanOrEqual(65536);
    } else {
      expect(copy.totals.to_device.bytes + copy.totals.from_device.bytes).toBe(0);
    }
    expect(copy.inline.copies + copy.worker.copies).toBe(
      metricSum(metrics, 'mediator_bounce_copies_by_path_total'),
    );
    expect(copy.workerBusySeconds).toHaveLength(copy.workers);
  });
});

describe('the page in the package', () => {
  it.each(Object.keys(STATUS_FILES).filter((f) => f.endsWith('.js')))(
    'static/status/%s parses as an ES module (without a browser, a syntax error shows here)',
    (name) => {
      const r = spawnSync(process.execPath, ['--check', join(STATUS_DIR, name)], {
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
    },
  );

  it('package.json ships static/, and npm pack packs every file of the page', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('static');
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const packed = new Set(
      (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path),
    );
    const wanted = Object.keys(STATUS_FILES).map((f) => `static/status/${f}`);
    expect(wanted.filter((f) => !packed.has(f))).toEqual([]);
  });
});
