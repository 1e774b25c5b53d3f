/**
 * The status page in a real browser: Debian's chromium, driven by playwright-core
 * with the system browser (nothing downloads a browser), on loopback only.
 *
 * - Bounce mode, several pools, in process, under a load loop: the page shows
 *   every pool (its slot map) and every device of the config, the slot map
 *   changes between two refreshes, its numbers agree with /v1/pools and
 *   /metrics read around it (totals bracketed by the reads before and after;
 *   rates and percentiles over nearly the same window, within a relative
 *   tolerance for the few ms between the page's reads and the test's), the high-water reset button posts
 *   to the reset route, and a screenshot goes to .tmp/status-page.png.
 * - Direct mode, as `node dist/cli/main.js serve` in its own process (so the
 *   page's files are found from dist/ too): the page says there is no pool to
 *   draw and still shows the devices; .tmp/status-page-direct.png.
 *
 * Runs when chromium is installed ($CHROMIUM if set, else /usr/bin/chromium or
 * chromium on PATH); without it the test skips and says why, except under CI=true, where
 * it fails (.ci/run installs Debian's chromium). The direct-mode case needs
 * `npm run build` first, as the other process tests do.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { type RunningServer, startServer } from '../src/server/index.js';
import { windowQuantile } from '../static/status/model.js';

/**
 * The little of the DOM that the callbacks run in the page use: this file
 * compiles without lib "dom" (the project's code runs in Node).
 */
interface El {
  dataset: Record<string, string | undefined>;
  toDataURL(): string;
}
declare const document: {
  body: El;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El>;
};

process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHOTS = join(ROOT, '.tmp');

/** The browser: $CHROMIUM if set, else Debian's /usr/bin/chromium, else chromium on PATH. */
function findChromium(): { path: string | undefined; why: string } {
  // $CHROMIUM, when set, is the only one tried.
  const candidates = process.env.CHROMIUM
    ? [process.env.CHROMIUM]
    : ['/usr/bin/chromium', 'chromium'];
  const tried: string[] = [];
  for (const c of candidates) {
    const probe = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 30_000 });
    if (probe.error === undefined && probe.status === 0) return { path: c, why: '' };
    tried.push(`${c}: ${probe.error?.message ?? `exit ${probe.status}`}`);
  }
  return {
    path: undefined,
    why: `chromium is not installed (${tried.join('; ')}); install Debian's "chromium" package`,
  };
}

const browser = findChromium();
if (!browser.path && process.env.CI === 'true') {
  throw new Error(`${browser.why}. CI=true: the browser test must run, not skip.`);
}

/** The flags the project runs chromium with: headless, no sandbox (root), nothing phoning home. */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

interface Browser {
  context: BrowserContext;
  page: Page;
  /** Errors the page threw or logged. */
  errors: string[];
  close(): Promise<void>;
}

/** Chromium with a fresh profile (--user-data-dir) of its own, removed at close. */
async function openBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'status-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: browser.path!,
    headless: true,
    args: FLAGS,
    viewport: { width: 1366, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  pageErrors.set(page, errors);
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Load until stopped (or 90 s, or 200k requests, if a test forgets): synthetic
 * I/O through the HTTP API on every device, and, when `deep` gives devices of an
 * in-process service, many requests in flight on each, straight on the driver,
 * so that the pool holds bounce buffers at any instant the page reads it.
 */
function loadLoop(
  url: string,
  devices: string[],
  deep: { write(sector: number, length: number): Promise<void> }[] = [],
): () => Promise<void> {
  let stop = false;
  const until = Date.now() + 90_000;
  let sent = 0;
  const running = () => !stop && Date.now() < until && sent++ < 200_000;
  const http = Array.from({ length: 6 }, async (_, i) => {
    const device = devices[i % devices.length]!;
    for (let n = 0; running(); n++) {
      const size = (n + i) % 3 === 0 ? 65536 : 4096;
      const op = (n + i) % 4 === 0 ? 'read' : 'write';
      const res = await fetch(`${url}/v1/devices/${device}/io`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ op, size, lba: ((n * 131 + i * 4099) % 2000) * 8 }),
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`load: ${device} answered ${res.status}`);
    }
  });
  const direct = deep.flatMap((d) =>
    Array.from({ length: 16 }, async (_, i) => {
      for (let n = 0; running(); n++) await d.write(((n * 37 + i * 257) % 256) * 128, 65536);
    }),
  );
  return async () => {
    stop = true;
    await Promise.all([...http, ...direct]);
  };
}

/** Every value the page shows: data-k -> data-v, parsed as numbers where they are. */
async function pageValues(page: Page): Promise<Record<string, number | string>> {
  return page.evaluate(() => {
    const out: Record<string, number | string> = {};
    for (const e of document.querySelectorAll('[data-k]')) {
      const v = e.dataset.v ?? '';
      out[e.dataset.k!] = v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
    }
    return out;
  });
}

const reads = (page: Page) => page.evaluate(() => Number(document.body.dataset.reads));

/** Page errors by page, for the message of a wait that times out. */
const pageErrors = new WeakMap<Page, string[]>();

/**
 * Waits until the page has shown `n` more reads than now; on a timeout, says
 * what the page showed and threw (a page that throws never reads).
 */
async function waitReads(page: Page, n: number): Promise<void> {
  const target = (await reads(page)) + n;
  try {
    await page.waitForFunction((t) => Number(document.body.dataset.reads) >= t, target, {
      timeout: 30_000,
    });
  } catch (err) {
    const shown = await page
      .evaluate(() => `state ${document.body.dataset.state}, ${document.body.dataset.reads} reads`)
      .catch(() => 'nothing');
    throw new Error(
      `the page did not read ${n} more time(s) (${shown}; errors: ${JSON.stringify(pageErrors.get(page) ?? [])}): ${(err as Error).message}`,
    );
  }
}

/** Prometheus text to samples: name -> [labels, value][]. */
function parseMetrics(text: string): Map<string, [Record<string, string>, number][]> {
  const out = new Map<string, [Record<string, string>, number][]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const list = out.get(m[1]!) ?? [];
    list.push([labels, Number(m[3])]);
    out.set(m[1]!, list);
  }
  return out;
}

interface Reading {
  t: number;
  metrics: Map<string, [Record<string, string>, number][]>;
  pools: { name: string; used_hiwater: number; map_failures: Record<string, number> }[];
}

async function readService(url: string): Promise<Reading> {
  const t0 = performance.now();
  const [metrics, pools] = await Promise.all([
    fetch(`${url}/metrics`).then((r) => r.text()),
    fetch(`${url}/v1/pools`).then((r) => r.json() as Promise<{ pools: Reading['pools'] }>),
  ]);
  return { t: (t0 + performance.now()) / 2000, metrics: parseMetrics(metrics), pools: pools.pools };
}

/** Sum of a metric's samples whose labels include `labels`. */
function metric(r: Reading, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [l, v] of r.metrics.get(name) ?? []) {
    if (Object.entries(labels).every(([k, x]) => l[k] === x)) sum += v;
  }
  return sum;
}

/** The rate of a counter between two readings. */
function rate(a: Reading, b: Reading, name: string, labels: Record<string, string> = {}): number {
  return (metric(b, name, labels) - metric(a, name, labels)) / (b.t - a.t);
}

/** A device's latency quantile between two readings, from /metrics' histogram. */
function metricsQuantile(a: Reading, b: Reading, device: string, q: number): number | undefined {
  const buckets = (r: Reading) => {
    const byLe = new Map<string, number>();
    for (const [l, v] of r.metrics.get('mediator_request_duration_seconds_bucket') ?? []) {
      if (l.device === device) byLe.set(l.le!, (byLe.get(l.le!) ?? 0) + v);
    }
    const les = [...byLe.keys()]
      .filter((le) => le !== '+Inf')
      .sort((x, y) => Number(x) - Number(y));
    const cumulative = [...les.map((le) => byLe.get(le)!), byLe.get('+Inf')!];
    return {
      bounds: les.map(Number),
      counts: cumulative.map((c, i) => c - (cumulative[i - 1] ?? 0)),
    };
  };
  const before = buckets(a);
  const after = buckets(b);
  return windowQuantile(after.bounds, before.counts, after.counts, q);
}

/** `got` within a factor `factor` of `want` (both positive), with a message naming both. */
function expectNear(what: string, got: number | string | undefined, want: number, factor: number) {
  expect(typeof got, `${what}: the page shows no number`).toBe('number');
  const ratio = (got as number) / want;
  expect(
    ratio >= 1 / factor && ratio <= factor,
    `${what}: page ${got}, service ${want} (ratio ${ratio.toFixed(3)}, allowed 1/${factor}..${factor})`,
  ).toBe(true);
}

/** Totals: the page's value lies between the service's before and after. */
function expectBetween(what: string, got: number | string | undefined, lo: number, hi: number) {
  expect(typeof got, `${what}: the page shows no number`).toBe('number');
  expect(
    (got as number) >= lo && (got as number) <= hi,
    `${what}: page ${got}, service ${lo} before and ${hi} after`,
  ).toBe(true);
}

describe.skipIf(!browser.path)(
  `the status page in chromium${browser.path ? '' : ` (skipped: ${browser.why})`}`,
  () => {
    beforeAll(() => {
      mkdirSync(SHOTS, { recursive: true });
    });

    describe('bounce mode, several pools, under load', () => {
      let server: RunningServer;
      let b: Browser;
      let stopLoad: () => Promise<void>;
      const POOLS = ['shared', 'disk'];
      const DEVICES = ['blk0', 'null0', 'blk1'];

      beforeAll(async () => {
        server = await startServer(
          parseConfig({
            http: { port: 0 },
            logLevel: 'silent',
            // A copy worker that takes the 64 KiB copies, for the engine's figures.
            copy: { workers: 1, inlineThreshold: '16KiB' },
            pools: [
              { name: 'shared', size: '8MiB', areas: 2 },
              { name: 'disk', size: '4MiB', areas: 1 },
            ],
            guests: [
              { name: 'g0', memory: '128MiB' },
              { name: 'g1', memory: '64MiB' },
            ],
            devices: [
              { id: 'blk0', kind: 'ram-blk', capacity: '16MiB', pool: 'shared', guest: 'g0' },
              { id: 'null0', kind: 'null', pool: 'shared', guest: 'g0' },
              { id: 'blk1', kind: 'ram-blk', capacity: '16MiB', pool: 'disk', guest: 'g1' },
            ],
          }),
          { logger: false },
        );
        await server.service.started;
        const mediator = server.service.mediator;
        stopLoad = loadLoop(server.url, DEVICES, [
          mediator.device('blk0')!,
          mediator.device('blk1')!,
        ]);
        b = await openBrowser();
        await b.page.goto(server.url);
        await waitReads(b.page, 3);
      });

      afterAll(async () => {
        await b?.close();
        await stopLoad?.();
        await server?.shutdown();
      });

      it('shows every pool with its slot map and every device of the config', async () => {
        const page = b.page;
        expect(await page.evaluate(() => document.body.dataset.state)).toBe('ok');
        expect(await page.locator('#mode').textContent()).toBe('bounce mode');
        const pools = await page
          .locator('article.pool')
          .evaluateAll((es) => es.map((e) => (e as unknown as El).dataset.pool));
        expect(pools).toEqual(POOLS);
        for (const name of POOLS) {
          const canvas = page.locator(`article[data-pool="${name}"] canvas.map`);
          const box = await canvas.boundingBox();
          expect(box!.width).toBeGreaterThan(300);
          expect(await canvas.getAttribute('aria-label')).toMatch(
            /slots mapped, \d+ padding, \d+ virtqueue, \d+ free/,
          );
        }
        const devices = await page
          .locator('#device-table tbody tr')
          .evaluateAll((es) => es.map((e) => (e as unknown as El).dataset.device));
        expect(devices).toEqual(DEVICES);
        const v = await pageValues(page);
        for (const d of DEVICES)
          expect(v[`device:${d}:requests_per_s`] as number).toBeGreaterThan(0);
        // Pointing at a slot says what it is, in words.
        const map = page.locator('article[data-pool="disk"] canvas.map');
        const box = (await map.boundingBox())!;
        await page.mouse.move(box.x + box.width / 2, box.y + 12);
        expect(await page.locator('article[data-pool="disk"] .readout').textContent()).toMatch(
          /^slot [\d,]+ · area 0 · segment \d+ · pool offset 0x[0-9a-f]+ · (free|mapped|padding|virtqueue)/,
        );
        // The legend names each state in words, not colour alone.
        const legend = await page.locator('article[data-pool="shared"] .legend').textContent();
        for (const word of ['mapped', 'padding', 'virtqueue', 'free', 'cursor']) {
          expect(legend).toContain(word);
        }
      });

      it('the slot map changes between two refreshes, and is drawn anew', async () => {
        const page = b.page;
        const snap = () =>
          page.evaluate(() => {
            const c = document.querySelector('article[data-pool="shared"] canvas.map')!;
            return {
              map: c.dataset.v ?? '',
              cursors: c.dataset.cursors ?? '',
              pixels: c.toDataURL(),
              reads: document.body.dataset.reads,
            };
          });
        const first = await snap();
        let next = first;
        // Under load one refresh nearly always differs; a few are allowed for a quiet instant.
        const same = () => next.map === first.map && next.cursors === first.cursors;
        for (let i = 0; i < 5 && same(); i++) {
          await waitReads(page, 1);
          next = await snap();
        }
        expect(next.reads).not.toBe(first.reads);
        expect(same()).toBe(false);
        expect(next.pixels).not.toBe(first.pixels);
        // Under this load the pool holds bounce buffers besides the virtqueues.
        const v = await pageValues(page);
        expect(v['pool:shared:slots_in_use'] as number).toBeGreaterThan(0);
      });

      it('its numbers agree with /v1/pools and /metrics read around it', async () => {
        const page = b.page;
        // The service read right after one of the page's reads (n) and right after
        // the next (n + 1): both windows cover nearly the same second, and each
        // total the page shows was read between the two. On a machine so loaded
        // that the page read again before the test's read was answered, the order
        // does not hold: that pair of reads is taken again (the values are not
        // looked at before the order is right).
        let before: Reading | undefined;
        let after: Reading | undefined;
        let v: Record<string, number | string> = {};
        for (let attempt = 0; attempt < 5 && after === undefined; attempt++) {
          await waitReads(page, 1);
          const n = await reads(page);
          const a = await readService(server.url);
          if ((await reads(page)) !== n) continue;
          await waitReads(page, 1);
          const shown = await pageValues(page);
          const shownReads = await reads(page);
          const z = await readService(server.url);
          if (shownReads !== n + 1) continue;
          [before, after, v] = [a, z, shown];
        }
        if (before === undefined || after === undefined) {
          throw new Error('the page and the service were never read in order in 5 tries');
        }
        const m = (r: Reading, name: string, labels: Record<string, string> = {}) =>
          metric(r, name, labels);

        for (const name of POOLS) {
          const k = (x: string) => `pool:${name}:${x}`;
          const slots = ['in_use', 'padding', 'coherent', 'free'].map(
            (s) => v[k(`slots_${s}`)] as number,
          );
          expect(slots.reduce((a, x) => a + x, 0)).toBe(
            m(after, 'swiotlb_pool_slots', { pool: name }),
          );
          // The virtqueues: drawn as coherent, held for the service's life.
          expect(v[k('slots_coherent')] as number).toBeGreaterThan(0);
          const hi = (r: Reading) => r.pools.find((p) => p.name === name)!.used_hiwater;
          expectBetween(`${name} high-water`, v[k('hiwater')], hi(before), hi(after));
          expect(v[k('used')] as number).toBeLessThanOrEqual(hi(after));
          for (const [key, reason] of [
            ['fail_full', 'full'],
            ['fail_too_large', 'too_large'],
            ['fail_invalid', 'invalid'],
          ] as const) {
            expectBetween(
              `${name} map failures ${reason}`,
              v[k(key)],
              m(before, 'swiotlb_map_failures_total', { pool: name, reason }),
              m(after, 'swiotlb_map_failures_total', { pool: name, reason }),
            );
          }
          expectBetween(
            `${name} back-pressure waits`,
            v[k('waits')],
            m(before, 'mediator_backpressure_waits_total', { pool: name }),
            m(after, 'mediator_backpressure_waits_total', { pool: name }),
          );
        }

        // Rates: the page's last interval against the test's window, which starts
        // and ends a few ms after it (the test reads after the page's read shows):
        // within a factor 1.5.
        for (const d of DEVICES) {
          const k = (x: string) => `device:${d}:${x}`;
          expectNear(
            `${d} requests/s`,
            v[k('requests_per_s')],
            rate(before, after, 'mediator_requests_total', { device: d }),
            1.5,
          );
          expectNear(
            `${d} written/s`,
            v[k('written_bytes_per_s')],
            rate(before, after, 'mediator_device_written_bytes_total', { device: d }),
            1.5,
          );
          for (const [key, name] of [
            ['faults', 'mediator_device_faults_total'],
            ['timeouts', 'mediator_device_timeouts_total'],
            ['resets', 'mediator_device_resets_total'],
          ] as const) {
            expectBetween(
              `${d} ${key}`,
              v[k(key)],
              m(before, name, { device: d }),
              m(after, name, { device: d }),
            );
          }
          // Percentiles from the same histogram over nearly the same window: within
          // a bucket's width (buckets go 1, 2.5, 5, 10...) for p50; the tail moves
          // more with the few requests at the windows' edges: two widths for p99
          // (still far from p50, and from a unit slip).
          expectNear(`${d} p50`, v[k('p50')], metricsQuantile(before, after, d, 0.5)!, 2.5);
          expectNear(`${d} p99`, v[k('p99')], metricsQuantile(before, after, d, 0.99)!, 6.25);
        }
        for (const g of ['g0', 'g1']) {
          for (const direction of ['to_device', 'from_device']) {
            expectNear(
              `guest ${g} bounced ${direction}/s`,
              v[`guest:${g}:${direction}_bytes_per_s`],
              rate(before, after, 'mediator_bounce_bytes_total', { guest: g, direction }),
              // Only the reads' data comes back, a few per window: a burstier figure.
              direction === 'from_device' ? 2 : 1.5,
            );
          }
        }
        expectNear(
          'copy engine bytes/s',
          v['copy:bytes_per_s'],
          rate(before, after, 'mediator_bounce_bytes_total'),
          1.5,
        );
        expect(v['copy:workers']).toBe(m(after, 'mediator_copy_workers'));
        expect(v['copy:live_workers']).toBe(m(after, 'mediator_copy_workers'));
      });

      it('the reset button posts to the high-water reset route; a screenshot goes to .tmp/', async () => {
        const page = b.page;
        const posted = page.waitForResponse(
          (r) =>
            r.url().endsWith('/v1/pools/disk/hiwater/reset') && r.request().method() === 'POST',
        );
        const seen = await reads(page);
        await page.locator('article[data-pool="disk"] button', { hasText: 'Reset' }).click();
        expect((await posted).status()).toBe(200);
        // The page reads again at once after a reset.
        await page.waitForFunction((n) => Number(document.body.dataset.reads) > n, seen);
        // One more read: maps since the reset have raised the high-water again
        // (debugfs reads 0 until the next map), for the picture.
        await waitReads(page, 1);
        const hi = await pageValues(page);
        expect(hi['pool:disk:hiwater'] as number).toBeGreaterThan(0);
        await page.screenshot({ path: join(SHOTS, 'status-page.png'), fullPage: true });
        expect(existsSync(join(SHOTS, 'status-page.png'))).toBe(true);
        expect(b.errors).toEqual([]);
      });
    });

    describe('direct mode, `node dist/cli/main.js serve` in its own process', () => {
      const MAIN = resolve(ROOT, 'dist/cli/main.js');
      let child: ChildProcess | undefined;
      let url: string;
      let b: Browser;
      let stopLoad: () => Promise<void>;
      let dir: string;

      beforeAll(async () => {
        if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
        dir = mkdtempSync(join(tmpdir(), 'status-direct-'));
        const config = join(dir, 'config.json');
        writeFileSync(
          config,
          JSON.stringify({
            pools: [
              { name: 'pool-a', size: '4MiB' },
              { name: 'pool-b', size: '4MiB' },
            ],
            devices: [
              { id: 'blk0', kind: 'ram-blk', capacity: '16MiB', pool: 'pool-a' },
              { id: 'null0', kind: 'null', pool: 'pool-b' },
            ],
          }),
        );
        const proc = spawn(
          process.execPath,
          [
            MAIN,
            'serve',
            '--config',
            config,
            '--mode',
            'direct',
            '--port',
            '0',
            '--log-level',
            'info',
          ],
          { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        child = proc;
        let stderr = '';
        proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
          stderr += s;
        });
        url = await new Promise<string>((resolveUrl, reject) => {
          createInterface({ input: proc.stdout! }).on('line', (line) => {
            const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
            if (m) resolveUrl(m[1]!);
          });
          proc.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
        });
        for (let i = 0; i < 200; i++) {
          const res = await fetch(`${url}/readyz`).catch(() => undefined);
          if (res?.status === 200) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        stopLoad = loadLoop(url, ['blk0', 'null0']);
        b = await openBrowser();
        await b.page.goto(url);
        await waitReads(b.page, 3);
      });

      afterAll(async () => {
        await b?.close();
        await stopLoad?.();
        if (child && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child!.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      it('says there is no pool to draw, and still shows the devices', async () => {
        const page = b.page;
        expect(await page.locator('#mode').textContent()).toBe('direct mode');
        const note = await page.locator('[data-k="direct-note"]').textContent();
        expect(note).toMatch(/no slot map to draw/);
        expect(note).toContain('pool-a, pool-b');
        expect(await page.locator('canvas.map').count()).toBe(0);
        const v = await pageValues(page);
        for (const d of ['blk0', 'null0']) {
          expect(v[`device:${d}:requests_per_s`] as number).toBeGreaterThan(0);
        }
        expect(v['guest:guest0:to_device_bytes_per_s']).toBe(0);
        await page.screenshot({ path: join(SHOTS, 'status-page-direct.png'), fullPage: true });
        expect(b.errors).toEqual([]);
      });
    });
  },
);
