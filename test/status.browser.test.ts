/**
 * The status page in a real browser: Debian's chromium, driven by playwright-core
 * with the system browser (nothing downloads a browser), on loopback only.
 *
 * - Bounce mode, several pools, in process, under a load loop: the page shows
 *   every pool (its slot map) and every device of the config, the slot map
 *   changes between two refreshes, every value status.js writes has a cell to
 *   show it in (body[data-unshown] stays unset), its numbers are the service's
 *   (below), the high-water reset button posts to the reset route, and a
 *   screenshot goes to .tmp/status-page.png.
 * - Direct mode, as `node dist/cli/main.js serve` in its own process (so the
 *   page's files are found from dist/ too): the page says there is no pool to
 *   draw and still shows the devices; .tmp/status-page-direct.png.
 *
 * The numbers, exactly, on a machine however loaded: the test pauses the page
 * (its Pause button) and has it read twice, once at a time (Resume and Pause in
 * one go), with its own reads of /metrics and /v1/pools before, between and after:
 *
 *   test: r0 ── page: read 1 ── test: r1 … (until the load moved) … r1b ── page: read 2 ── test: r2
 *
 * Every counter only grows, so each total the page shows (read 2) lies between
 * r1b and r2. A rate or a percentile is shown with what the page computed it
 * from (status.js keepFrom: the two reads' counter readings or histogram
 * buckets, and their times): read 1's readings lie between r0 and r1 and read 2's
 * between r1b and r2 (the page read the service's counters, the right ones), read
 * 2's "before" are read 1's "after" (two successive reads, at two times), and the
 * figure shown is the one model.js computes from them (tested on its own against
 * histogram_quantile in status-model.test.ts), to the last bit.
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
import * as M from '../static/status/model.js';

/**
 * The little of the DOM that the callbacks run in the page use: this file
 * compiles without lib "dom" (the project's code runs in Node).
 */
interface El {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  toDataURL(): string;
  click(): void;
  getAttribute(name: string): string | null;
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
  const removeProfile = () => rmSync(profile, { recursive: true, force: true });
  let launched: BrowserContext | undefined;
  let page: Page;
  try {
    launched = await chromium.launchPersistentContext(profile, {
      executablePath: browser.path!,
      headless: true,
      args: FLAGS,
      viewport: { width: 1366, height: 900 },
    });
    page = launched.pages()[0] ?? (await launched.newPage());
  } catch (err) {
    await launched?.close().catch(() => {});
    removeProfile();
    throw err;
  }
  const context = launched;
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
      try {
        await context.close();
      } finally {
        removeProfile();
      }
    },
  };
}

/**
 * Load until stopped (or 300 s, or 5M requests, if a test forgets: the tests wait
 * for the load to move the counters, so these bounds lie far beyond what the
 * tests take on a loaded machine or send on a fast one): synthetic
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
  const until = Date.now() + 300_000;
  let sent = 0;
  const running = () => !stop && Date.now() < until && sent++ < 5_000_000;
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

/** What the page keeps beside a figure of two reads (status.js keepFrom). */
interface From {
  t0: number;
  t1: number;
  before: number[];
  after: number[];
  bounds?: number[];
  q?: number;
}

/** A figure the page shows: data-v (a number where it is one), its text, what it came from. */
interface Figure {
  v: number | string;
  text: string;
  from?: From;
}

/** One look at the page: its read count, state, and every figure by data-k. */
interface Shown {
  reads: number;
  state: string;
  figures: Record<string, Figure>;
}

/** Everything the page shows, taken in one go (so all of it is of one read). */
async function pageShown(page: Page): Promise<Shown> {
  const raw = await page.evaluate(() => {
    const figures: Record<string, { v: string; text: string; from: Record<string, string> }> = {};
    for (const e of document.querySelectorAll('[data-k]')) {
      const { v, t0, t1, before, after, bounds, q } = e.dataset;
      const from: Record<string, string> = {};
      for (const [name, x] of Object.entries({ t0, t1, before, after, bounds, q })) {
        if (x !== undefined) from[name] = x;
      }
      figures[e.dataset.k!] = { v: v ?? '', text: e.textContent ?? '', from };
    }
    const body = document.body.dataset;
    return { reads: Number(body.reads), state: body.state ?? '', figures };
  });
  const list = (x: string | undefined) => (x ? x.split(',').map(Number) : []);
  const figures: Record<string, Figure> = {};
  for (const [k, f] of Object.entries(raw.figures)) {
    const v = f.v !== '' && Number.isFinite(Number(f.v)) ? Number(f.v) : f.v;
    const x = f.from;
    figures[k] = {
      v,
      text: f.text,
      ...(x.t0 === undefined
        ? {}
        : {
            from: {
              t0: Number(x.t0),
              t1: Number(x.t1),
              before: list(x.before),
              after: list(x.after),
              ...(x.bounds === undefined ? {} : { bounds: list(x.bounds) }),
              ...(x.q === undefined ? {} : { q: Number(x.q) }),
            },
          }),
    };
  }
  return { reads: raw.reads, state: raw.state, figures };
}

/** Every value the page shows: data-k -> data-v, parsed as numbers where they are. */
async function pageValues(page: Page): Promise<Record<string, number | string>> {
  const { figures } = await pageShown(page);
  return Object.fromEntries(Object.entries(figures).map(([k, f]) => [k, f.v]));
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

/**
 * Waits, read after read of the page (at most `most`), until `ok` holds of what
 * it shows: under load, one read may show a quiet instant. Returns the last look.
 */
async function waitShown(
  page: Page,
  what: string,
  ok: (v: Record<string, number | string>) => boolean,
  most = 20,
): Promise<Record<string, number | string>> {
  let v = await pageValues(page);
  for (let i = 0; i < most && !ok(v); i++) {
    await waitReads(page, 1);
    v = await pageValues(page);
  }
  if (!ok(v)) throw new Error(`${most} reads of the page and still not ${what}`);
  return v;
}

/** Until the page has no read under way (body[data-reading]). */
async function waitIdle(page: Page): Promise<void> {
  await page.waitForFunction(() => document.body.dataset.reading === 'false', undefined, {
    timeout: 30_000,
  });
}

/**
 * Pauses the page's updates (its Pause button) and waits for a read under way to
 * end: from then on it reads only when told (readOnce), nothing else starts one.
 */
async function pause(page: Page): Promise<void> {
  const pressed = await page.evaluate(() => {
    const button = document.querySelector('#pause')!;
    if (button.getAttribute('aria-pressed') !== 'true') button.click();
    return button.getAttribute('aria-pressed');
  });
  expect(pressed).toBe('true');
  await waitIdle(page);
}

/** Resumes the page's updates once a second (it reads at once). */
async function resume(page: Page): Promise<void> {
  await page.evaluate(() => {
    const button = document.querySelector('#pause')!;
    if (button.getAttribute('aria-pressed') === 'true') button.click();
  });
}

/**
 * One read of a paused page, and what it shows then: Resume starts a read at
 * once, Pause right after it (in the same task) lets no other follow. The read
 * starts after this is called and has ended when it returns.
 */
async function readOnce(page: Page): Promise<Shown> {
  const before = await reads(page);
  const started = await page.evaluate(() => {
    const button = document.querySelector('#pause')!;
    button.click();
    const reading = document.body.dataset.reading;
    button.click();
    return reading === 'true' && button.getAttribute('aria-pressed') === 'true';
  });
  expect(started, 'Resume on a paused, idle page starts a read at once').toBe(true);
  await waitIdle(page);
  const shown = await pageShown(page);
  expect(shown.state, `the page's read failed: ${JSON.stringify(pageErrors.get(page))}`).toBe('ok');
  expect(shown.reads).toBe(before + 1);
  return shown;
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

/**
 * A device's latency histogram in /metrics, summed over `op` as /v1/devices sums
 * it: upper bounds, and the count in each bucket (not cumulative; the last +Inf).
 */
function buckets(r: Reading, device: string): { bounds: number[]; counts: number[] } {
  const byLe = new Map<string, number>();
  for (const [l, v] of r.metrics.get('mediator_request_duration_seconds_bucket') ?? []) {
    if (l.device === device) byLe.set(l.le!, (byLe.get(l.le!) ?? 0) + v);
  }
  const les = [...byLe.keys()].filter((le) => le !== '+Inf').sort((x, y) => Number(x) - Number(y));
  const cumulative = [...les.map((le) => byLe.get(le)!), byLe.get('+Inf')!];
  return {
    bounds: les.map(Number),
    counts: cumulative.map((c, i) => c - (cumulative[i - 1] ?? 0)),
  };
}

/**
 * A figure the page takes from two reads, and how the test checks it:
 * `service` reads, from the test's own reading of the service, the counters the
 * page read for it (in the order of data-before/data-after); `compute` is the
 * figure from the page's readings with the page's own arithmetic (model.js),
 * `text` how the page writes it (status.js); `moving` the counters that the load makes grow,
 * so that the figure shown is a number above 0 (an empty list: may be 0).
 */
interface TwoReadFigure {
  key: string;
  service: (r: Reading) => number[];
  compute: (f: From) => number | undefined;
  text: (v: number | undefined, f: From) => string;
  moving: (r: Reading) => number[];
}

/** A counter's rate, as the page takes it (model.js ratePerSecond). */
function rateFigure(
  key: string,
  service: (r: Reading) => number,
  opts: { wraps?: boolean; bytes?: boolean; moving?: boolean } = {},
): TwoReadFigure {
  return {
    key,
    service: (r) => [service(r)],
    compute: (f) => M.ratePerSecond(f.before[0], f.after[0], f.t1 - f.t0, opts.wraps ?? false),
    text: opts.bytes ? M.formatRate : M.formatCount,
    moving: (r) => (opts.moving === false ? [] : [service(r)]),
  };
}

/** A pool's figures of two reads: maps, waits, lock contention per area. */
function poolFigures(pool: string, areas: number): TwoReadFigure[] {
  const k = (x: string) => `pool:${pool}:${x}`;
  // The allocator's 32-bit counters, which the page lets wrap: maps are the
  // attempts that did not fail (one pool read per scrape: one instant).
  const maps = (r: Reading) =>
    metric(r, 'swiotlb_map_attempts_total', { pool }) -
    metric(r, 'swiotlb_map_failures_total', { pool });
  return [
    rateFigure(k('maps_per_s'), maps, { wraps: true }),
    rateFigure(k('waits_per_s'), (r) => metric(r, 'mediator_backpressure_waits_total', { pool }), {
      moving: false,
    }),
    ...Array.from({ length: areas }, (_, a) =>
      rateFigure(
        k(`area${a}_contended_per_s`),
        (r) => metric(r, 'swiotlb_area_lock_contended_total', { pool, area: String(a) }),
        { wraps: true, moving: false },
      ),
    ),
  ];
}

/** Device threads per device in the configs below (one queue each, the default). */
const DEVICE_THREADS = 1;

/** A device's figures of two reads: requests, bytes read and written, p50, p99, how busy its threads were. */
function deviceFigures(device: string): TwoReadFigure[] {
  const k = (x: string) => `device:${device}:${x}`;
  const counter = (name: string) => (r: Reading) => metric(r, name, { device });
  const percentile = (name: string, q: number): TwoReadFigure => ({
    key: k(name),
    service: (r) => buckets(r, device).counts,
    compute: (f) => {
      expect(f.q, `${k(name)}: the quantile the page took`).toBe(q);
      return M.windowQuantile(f.bounds!, f.before, f.after, q);
    },
    text: M.formatSeconds,
    moving: (r) => [metric(r, 'mediator_request_duration_seconds_count', { device })],
  });
  return [
    rateFigure(k('requests_per_s'), counter('mediator_requests_total')),
    rateFigure(k('read_bytes_per_s'), counter('mediator_device_read_bytes_total'), {
      bytes: true,
    }),
    rateFigure(k('written_bytes_per_s'), counter('mediator_device_written_bytes_total'), {
      bytes: true,
    }),
    percentile('p50', 0.5),
    percentile('p99', 0.99),
    {
      // How busy its threads were: 1 less their idle share, by the counter they add to.
      key: k('device_busy'),
      service: (r) => [metric(r, 'mediator_device_thread_idle_seconds_total', { device })],
      compute: (f) => M.busyShare(f.before[0], f.after[0], f.t1 - f.t0, DEVICE_THREADS),
      text: (v) => (v === undefined ? '–' : M.formatPercent(v, 1)),
      // A busy device may not go idle in a window: 0 is a figure too.
      moving: () => [],
    },
  ];
}

/**
 * The copy engine's figures of two reads: bytes bounced by guest and direction
 * and in all, copies, the share inline, the workers' utilization.
 */
function copyFigures(guests: string[], workers: number): TwoReadFigure[] {
  const bounced = (labels: Record<string, string>) => (r: Reading) =>
    metric(r, 'mediator_bounce_bytes_total', labels);
  const bytes = { bytes: true };
  const out: TwoReadFigure[] = [];
  for (const direction of ['to_device', 'from_device']) {
    for (const guest of guests) {
      out.push(
        rateFigure(`guest:${guest}:${direction}_bytes_per_s`, bounced({ guest, direction }), bytes),
      );
    }
    out.push(rateFigure(`copy:${direction}_bytes_per_s`, bounced({ direction }), bytes));
  }
  out.push(rateFigure('copy:bytes_per_s', bounced({}), bytes));
  const byPath = (r: Reading) => [
    metric(r, 'mediator_bounce_copies_by_path_total', { path: 'inline' }),
    metric(r, 'mediator_bounce_copies_by_path_total'),
  ];
  out.push(rateFigure('copy:copies_per_s', (r) => byPath(r)[1]!));
  out.push({
    key: 'copy:inline_percent',
    service: byPath,
    compute: (f) => {
      const all = M.counterDelta(f.before[1]!, f.after[1]!);
      return all > 0 ? M.counterDelta(f.before[0]!, f.after[0]!) / all : undefined;
    },
    text: (v) => (v === undefined ? '–' : M.formatPercent(v, 1)),
    moving: byPath,
  });
  const busy = (r: Reading) =>
    Array.from({ length: workers }, (_, i) =>
      metric(r, 'mediator_copy_worker_busy_seconds_total', { worker: String(i) }),
    );
  out.push({
    key: 'copy:utilization',
    service: busy,
    compute: (f) => workerRates(f).reduce((a, x) => a + x, 0) / f.after.length,
    // Written per worker: "#0 12.3% · #1 4.5%".
    text: (_v, f) =>
      workerRates(f)
        .map((x, i) => `#${i} ${M.formatPercent(x, 1)}`)
        .join(' · '),
    moving: busy,
  });
  return out;
}

/** Each worker's share of the window spent copying, as the page takes it. */
function workerRates(f: From): number[] {
  return f.after.map((s, i) => M.ratePerSecond(f.before[i], s, f.t1 - f.t0)!);
}

/**
 * Reads the service until every counter in `moving` has grown past `from`'s
 * reading (the load moves them: a condition, however long the machine takes).
 */
async function readUntilMoved(
  url: string,
  from: Reading,
  moving: { what: string; value: (r: Reading) => number[] }[],
): Promise<Reading> {
  let r = await readService(url);
  const still = () => moving.filter(({ value }) => value(r).some((x, i) => !(x > value(from)[i]!)));
  for (let i = 0; i < 1500 && still().length > 0; i++) {
    await new Promise((done) => setTimeout(done, 20));
    r = await readService(url);
  }
  const left = still();
  if (left.length > 0) {
    throw new Error(`the load moved nothing of ${left.map((x) => x.what).join(', ')}`);
  }
  return r;
}

/** Totals: the page's value lies between the service's before and after. */
function expectBetween(what: string, got: number | string | undefined, lo: number, hi: number) {
  expect(typeof got, `${what}: the page shows no number`).toBe('number');
  expect(
    (got as number) >= lo && (got as number) <= hi,
    `${what}: page ${got}, service ${lo} before and ${hi} after`,
  ).toBe(true);
}

/** Each of the page's readings between the service's before and after, counter by counter. */
function expectReadingsBetween(what: string, got: number[], lo: number[], hi: number[]) {
  expect(
    got.length,
    `${what}: the page read ${got.length} counters, the service has ${lo.length}`,
  ).toBe(lo.length);
  got.forEach((x, i) => {
    expectBetween(`${what} [${i}]`, x, lo[i]!, hi[i]!);
  });
}

/**
 * The totals a read of the page shows (pools, devices, copy workers) lie between
 * the service's readings `lo` and `hi`, taken before and after that read.
 */
function expectTotals(
  shown: Shown,
  lo: Reading,
  hi: Reading,
  pools: string[],
  devices: string[],
): void {
  const v = Object.fromEntries(Object.entries(shown.figures).map(([k, f]) => [k, f.v]));
  const m = metric;
  for (const name of pools) {
    const k = (x: string) => `pool:${name}:${x}`;
    const slots = ['in_use', 'padding', 'coherent', 'free'].map(
      (s) => v[k(`slots_${s}`)] as number,
    );
    expect(slots.reduce((a, x) => a + x, 0)).toBe(m(hi, 'swiotlb_pool_slots', { pool: name }));
    expect(v[k('nslabs')]).toBe(m(hi, 'swiotlb_pool_slots', { pool: name }));
    // The virtqueues: drawn as coherent, held for the service's life.
    expect(v[k('slots_coherent')] as number).toBeGreaterThan(0);
    const hiwater = (r: Reading) => r.pools.find((p) => p.name === name)!.used_hiwater;
    expectBetween(`${name} high-water`, v[k('hiwater')], hiwater(lo), hiwater(hi));
    expect(v[k('used')] as number).toBeLessThanOrEqual(hiwater(hi));
    for (const [key, reason] of [
      ['fail_full', 'full'],
      ['fail_too_large', 'too_large'],
      ['fail_invalid', 'invalid'],
      ['fail_kernel_defect', 'kernel_defect'],
    ] as const) {
      const labels = { pool: name, reason };
      expectBetween(
        `${name} map failures ${reason}`,
        v[k(key)],
        m(lo, 'swiotlb_map_failures_total', labels),
        m(hi, 'swiotlb_map_failures_total', labels),
      );
    }
    const waits = (r: Reading) => m(r, 'mediator_backpressure_waits_total', { pool: name });
    expectBetween(`${name} back-pressure waits`, v[k('waits')], waits(lo), waits(hi));
  }
  for (const device of devices) {
    const k = (x: string) => `device:${device}:${x}`;
    const notOk = (r: Reading) =>
      m(r, 'mediator_requests_total', { device }) -
      m(r, 'mediator_requests_total', { device, outcome: 'ok' });
    expectBetween(`${device} failed`, v[k('failed')], notOk(lo), notOk(hi));
    const finished = (r: Reading) => m(r, 'mediator_requests_total', { device });
    expectBetween(`${device} requests`, v[k('requests')], finished(lo), finished(hi));
    for (const [key, name] of [
      ['faults', 'mediator_device_faults_total'],
      ['timeouts', 'mediator_device_timeouts_total'],
      ['resets', 'mediator_device_resets_total'],
    ] as const) {
      expectBetween(
        `${device} ${key}`,
        v[k(key)],
        m(lo, name, { device }),
        m(hi, name, { device }),
      );
    }
  }
  expect(v['copy:workers']).toBe(m(hi, 'mediator_copy_workers'));
  expect(v['copy:live_workers']).toBe(m(hi, 'mediator_copy_workers'));
}

/**
 * The figures of two reads, exactly: `first` and `second` are two successive
 * reads of the page, each between the service's readings `around1` and
 * `around2`. Every figure the page keeps readings for is in `figures`; each was
 * computed over the window from read 1 to read 2, from the service's counters
 * (each reading between the service's readings around its read), and is shown
 * as model.js computes it from those readings, to the bit, and written as the
 * page writes it.
 */
function expectTwoReadFigures(
  figures: TwoReadFigure[],
  first: Shown,
  second: Shown,
  around1: [Reading, Reading],
  around2: [Reading, Reading],
): void {
  const kept = (s: Shown) =>
    Object.keys(s.figures)
      .filter((k) => s.figures[k]!.from !== undefined)
      .sort();
  expect(kept(second)).toEqual(figures.map((f) => f.key).sort());
  expect(kept(first)).toEqual(kept(second));
  // Two successive reads at two times: read 2's window starts at read 1.
  const t1 = first.figures[figures[0]!.key]!.from!.t1;
  for (const f of figures) {
    const a = first.figures[f.key]!.from!;
    const z = second.figures[f.key]!;
    const from = z.from!;
    expect(a.t1, `${f.key}: read 1 is of one time`).toBe(t1);
    expect(from.t0, `${f.key}: read 2's window starts at read 1`).toBe(t1);
    expect(from.t1, `${f.key}: read 2 is later than read 1`).toBeGreaterThan(from.t0);
    expect(from.before, `${f.key}: read 2's "before" is read 1's "after"`).toEqual(a.after);
    // The page read the service's counters, at each read.
    const [lo1, hi1] = around1.map(f.service);
    const [lo2, hi2] = around2.map(f.service);
    expectReadingsBetween(`${f.key} read 1`, a.after, lo1!, hi1!);
    expectReadingsBetween(`${f.key} read 2`, from.after, lo2!, hi2!);
    if (from.bounds !== undefined) {
      expect(from.bounds, `${f.key}: the histogram's buckets`).toEqual(
        buckets(around2[1], f.key.split(':')[1]!).bounds,
      );
    }
    // The figure shown is the one computed from those readings, to the bit.
    const want = f.compute(from);
    if (f.moving(around2[1]).length > 0) {
      expect(want, `${f.key}: the load moved it`).toBeGreaterThan(0);
    }
    expect(z.v, `${f.key}: shown vs computed from its readings`).toBe(want ?? '');
    expect(z.text, `${f.key}: its text`).toBe(f.text(want, from));
  }
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
      const POOLS = ['common', 'disk'];
      const DEVICES = ['blk0', 'null0', 'blk1'];

      beforeAll(async () => {
        server = await startServer(
          parseConfig({
            http: { port: 0 },
            logLevel: 'silent',
            // A copy worker that takes the 64 KiB copies, for the engine's figures.
            copy: { workers: 1, inlineThreshold: '16KiB' },
            // Linux's next-fit search: the picture in docs/monitoring.md shows its cursor.
            placement: 'linux',
            pools: [
              { name: 'common', size: '8MiB', areas: 2 },
              { name: 'disk', size: '4MiB', areas: 1 },
            ],
            // g2 drives no device: the page has no row for its bytes, and writes none.
            guests: [
              { name: 'g0', memory: '128MiB' },
              { name: 'g1', memory: '64MiB' },
              { name: 'g2', memory: '16MiB' },
            ],
            devices: [
              { id: 'blk0', kind: 'ram-blk', capacity: '16MiB', pool: 'common', guest: 'g0' },
              { id: 'null0', kind: 'null', pool: 'common', guest: 'g0' },
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
        // Every value status.js writes has its cell (a key without one is listed here).
        expect(await page.evaluate(() => document.body.dataset.unshown)).toBeUndefined();
        // Each device finishes requests under the load: the page shows their rate.
        const v = await waitShown(page, 'requests/s above 0 on every device', (x) =>
          DEVICES.every((d) => (x[`device:${d}:requests_per_s`] as number) > 0),
        );
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
        const legend = await page.locator('article[data-pool="common"] .legend').textContent();
        for (const word of ['mapped', 'padding', 'virtqueue', 'free', 'cursor']) {
          expect(legend).toContain(word);
        }
      });

      it('the slot map changes between two refreshes, and is drawn anew', async () => {
        const page = b.page;
        const snap = () =>
          page.evaluate(() => {
            const c = document.querySelector('article[data-pool="common"] canvas.map')!;
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
        for (let i = 0; i < 20 && same(); i++) {
          await waitReads(page, 1);
          next = await snap();
        }
        expect(next.reads).not.toBe(first.reads);
        expect(same()).toBe(false);
        expect(next.pixels).not.toBe(first.pixels);
        // Under this load the pool holds bounce buffers besides the virtqueues.
        await waitShown(page, 'bounce buffers in pool common', (v) => {
          return (v['pool:common:slots_in_use'] as number) > 0;
        });
      });

      it('its numbers are those of the service: totals between two of its reads, rates and percentiles exactly from the counters the page read', async () => {
        const page = b.page;
        // Every figure the page takes from two reads (pool common has 2 areas,
        // disk 1; one copy worker).
        const figures = [
          ...poolFigures('common', 2),
          ...poolFigures('disk', 1),
          ...DEVICES.flatMap(deviceFigures),
          ...copyFigures(['g0', 'g1'], 1),
        ];
        // The page reads twice, when told, between the test's own reads (the
        // picture at the head of this file).
        await pause(page);
        let r0: Reading;
        let r1: Reading;
        let r1b: Reading;
        let r2: Reading;
        let first: Shown;
        let second: Shown;
        try {
          r0 = await readService(server.url);
          first = await readOnce(page);
          r1 = await readService(server.url);
          r1b = await readUntilMoved(
            server.url,
            r1,
            figures.map((f) => ({ what: f.key, value: f.moving })),
          );
          second = await readOnce(page);
          r2 = await readService(server.url);
        } finally {
          await resume(page);
        }
        expectTotals(second, r1b, r2, POOLS, DEVICES);
        expectTwoReadFigures(figures, first, second, [r0, r1], [r1b, r2]);
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
        // Reads until maps since the reset have raised the high-water again
        // (debugfs reads 0 until the next map), for the picture.
        const hi = await waitShown(
          page,
          'a high-water above 0 since the reset',
          (x) => (x['pool:disk:hiwater'] as number) > 0,
        );
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
        try {
          await b?.close();
          await stopLoad?.();
          if (child && child.exitCode === null && child.signalCode === null) {
            const exited = new Promise((r) => child!.once('exit', r));
            child.kill('SIGTERM');
            await exited;
          }
        } finally {
          if (dir) rmSync(dir, { recursive: true, force: true });
        }
      });

      it('says there is no pool to draw, and still shows the devices', async () => {
        const page = b.page;
        expect(await page.locator('#mode').textContent()).toBe('direct mode');
        const note = await page.locator('[data-k="direct-note"]').textContent();
        expect(note).toMatch(/no slot map to draw/);
        expect(note).toContain('pool-a, pool-b');
        expect(await page.locator('canvas.map').count()).toBe(0);
        const v = await waitShown(page, 'requests/s above 0 on both devices', (x) =>
          ['blk0', 'null0'].every((d) => (x[`device:${d}:requests_per_s`] as number) > 0),
        );
        for (const d of ['blk0', 'null0']) {
          expect(v[`device:${d}:requests_per_s`] as number).toBeGreaterThan(0);
        }
        expect(v['guest:guest0:to_device_bytes_per_s']).toBe(0);
        expect(await page.evaluate(() => document.body.dataset.unshown)).toBeUndefined();
        await page.screenshot({ path: join(SHOTS, 'status-page-direct.png'), fullPage: true });
        expect(b.errors).toEqual([]);
      });
    });
  },
);
