/**
 * Defects found by the audit of the monitoring surface, each pinned by a test:
 *
 * - Dashboard ratios divide by a rate that can be 0 while the numerator's is not:
 *   PromQL gives +Inf, which Grafana draws as a wall (copy bandwidth when no copy
 *   was timed; copy time per request when none completed; mean back-pressure wait,
 *   whose time is added when a wait ends while the wait was counted when it began).
 *   Evaluated here by promtool on the dashboard's own expressions.
 * - The mean back-pressure wait needs the waits that ended:
 *   mediator_backpressure_waits_ended_total (waits less those waiting now).
 * - Device and pool panels summed by device or pool without instance: with several
 *   instances selected, same-named devices (blk0 on each) were added up.
 * - Texts an operator acts on: too_large is a search beyond one 128-slot segment,
 *   not "a mapping above the max mapping size" (the kernel places those, docs/errors.md);
 *   the request latency histogram counts every outcome.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { Mediator } from '../src/mediator/mediator.js';
import type { BackpressureStats } from '../src/mediator/pool-gate.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { registerBackpressureMetrics } from '../src/metrics/pool.js';
import { ScrapeRegistry } from '../src/metrics/registry.js';
import type { PoolStats } from '../src/swiotlb/pool-types.js';

const DIR = fileURLToPath(new URL('../dashboards/', import.meta.url));
const MiB = 2 ** 20;

// --- helpers -----------------------------------------------------------------------

/** metric{labels} -> value, from the text exposition format. */
async function scrape(registry: ScrapeRegistry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function get(m: Map<string, number>, key: string): number {
  const v = m.get(key);
  if (v === undefined) throw new Error(`no series ${key}`);
  return v;
}

const promtoolProbe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const hasPromtool = promtoolProbe.error === undefined && promtoolProbe.status === 0;

/** Skips (saying why) without promtool; under CI=true fails instead, as test/dashboards.test.ts does. */
function needPromtool(ctx: TestContext): void {
  if (hasPromtool) return;
  const why = 'promtool is not on PATH; install the Debian package "prometheus"';
  if (process.env.CI === 'true') throw new Error(`${why}. CI=true: promtool tests must run.`);
  ctx.skip(why);
}

// --- the dashboard's ratios -----------------------------------------------------------

interface Panel {
  title: string;
  type: string;
  description?: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as {
  panels: Panel[];
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);

const JOB = 'swiotlb-mediator';
const INSTANCE = '127.0.0.1:8080';
/** 4 x the 5 s scrape interval of dashboards/prometheus.yml, as $__rate_interval gives at least. */
const RATE_INTERVAL = '20s';

/**
 * The one query of the panel `title`, with the variables as Grafana would fill them
 * (`instance`: the Instance variable's regex; "All" is `.*`).
 */
function panelExpr(title: string, instance = INSTANCE): string {
  const p = panels.find((x) => x.title === title);
  if (!p) throw new Error(`no panel "${title}"`);
  expect(p.targets, title).toHaveLength(1);
  return p
    .targets![0]!.expr.replaceAll('$__rate_interval', RATE_INTERVAL)
    .replaceAll('$job', JOB)
    .replaceAll('$instance', instance);
}

/** A series of the service as Prometheus stores it (with job and instance). */
function series(metric: string, labels: Record<string, string>, values: string) {
  const all = { job: JOB, instance: INSTANCE, ...labels };
  const l = Object.entries(all)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  return { series: `${metric}{${l}}`, values };
}

interface ExprTest {
  expr: string;
  eval_time: string;
  exp_samples: { labels: string; value: number }[];
}

/**
 * `expr` in whole multiples of `unit`: promtool 2.42 compares samples exactly, and
 * rate()'s extrapolation leaves float noise (6.000000000000001). An empty result
 * stays empty, and +Inf stays +Inf.
 */
function inUnits(expr: string, unit: number): string {
  return `round((${expr}) / ${unit})`;
}

/** Runs `promtool test rules` on one test group (5 s samples); the output on failure. */
function promtoolEval(input: ReturnType<typeof series>[], tests: ExprTest[]) {
  const dir = mkdtempSync(join(tmpdir(), 'monitoring-audit-'));
  try {
    const file = join(dir, 'test.yml');
    writeFileSync(
      file,
      stringifyYaml({
        rule_files: [],
        evaluation_interval: '5s',
        tests: [{ interval: '5s', input_series: input, promql_expr_test: tests }],
      }),
    );
    const r = spawnSync('promtool', ['test', 'rules', file], { encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('dashboard ratios: empty, never +Inf, when the denominator did not move', () => {
  it('"Copy bandwidth while copying": no +Inf for a direction whose copies were not timed', (ctx) => {
    needPromtool(ctx);
    const expr = panelExpr('Copy bandwidth while copying');
    const r = promtoolEval(
      [
        // to_device: 4096 B and 1 us of copy time every 5 s.
        series('mediator_bounce_bytes_total', { guest: 'g0', direction: 'to_device' }, '0+4096x60'),
        series(
          'mediator_bounce_copy_seconds_total',
          { guest: 'g0', direction: 'to_device' },
          '0+0.000001x60',
        ),
        // from_device: a write-only load bounces back 1-byte status bytes, never timed
        // (copies of 32 bytes or less), as a live scrape shows.
        series('mediator_bounce_bytes_total', { guest: 'g0', direction: 'from_device' }, '0+1x60'),
        series(
          'mediator_bounce_copy_seconds_total',
          { guest: 'g0', direction: 'from_device' },
          '0x60',
        ),
      ],
      [
        // 4096 MB/s, in MB/s.
        {
          expr: inUnits(expr, 1e6),
          eval_time: '2m',
          exp_samples: [{ labels: '{direction="to_device"}', value: 4096 }],
        },
      ],
    );
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('"Guest-side copy time per request": no +Inf while copies happen and no request completes', (ctx) => {
    needPromtool(ctx);
    const expr = panelExpr('Guest-side copy time per request');
    const ok = { device: 'blk0', op: 'write', outcome: 'ok' };
    const r = promtoolEval(
      [
        series(
          'mediator_bounce_copy_seconds_total',
          { guest: 'g0', direction: 'to_device' },
          '0+0.001x60',
        ),
        // A hung device: requests copied in, then timed out; none completed from 1m on.
        series('mediator_requests_total', ok, '0+10x12 120x48'),
        series('mediator_requests_total', { ...ok, outcome: 'timeout' }, '0x12 0+1x48'),
      ],
      [
        // 100 us per request, in us.
        {
          expr: inUnits(expr, 1e-6),
          eval_time: '50s',
          exp_samples: [{ labels: '{}', value: 100 }],
        },
        { expr: inUnits(expr, 1e-6), eval_time: '3m', exp_samples: [] },
      ],
    );
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('"Back-pressure mean wait time": the wait that ended, over the waits that ended', (ctx) => {
    needPromtool(ctx);
    const expr = panelExpr('Back-pressure mean wait time');
    const pool = { pool: 'default' };
    const r = promtoolEval(
      [
        // One request begins waiting between the 55 s and 60 s scrapes (counted then) and
        // ends between the 60 s and 65 s scrapes (its 6 s added then).
        series('mediator_backpressure_waits_total', pool, '0x11 1x48'),
        series('mediator_backpressure_waits_ended_total', pool, '0x12 1x47'),
        series('mediator_backpressure_wait_seconds_total', pool, '0x12 6x47'),
        series('mediator_backpressure_waiting_requests', pool, '0x11 1 0x47'),
      ],
      [
        // The wait began in this window and has not ended: no mean yet (not 0).
        { expr: inUnits(expr, 1), eval_time: '62s', exp_samples: [] },
        // It ended in this window, which saw no wait begin: 6 s (not +Inf).
        {
          expr: inUnits(expr, 1),
          eval_time: '80s',
          exp_samples: [{ labels: `{instance="${INSTANCE}",pool="default"}`, value: 6 }],
        },
      ],
    );
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });
});

// --- several instances -----------------------------------------------------------------

describe('several instances selected: a device of each is its own series', () => {
  it('"Request rate by device and outcome": blk0 of two instances is two series, not their sum', (ctx) => {
    needPromtool(ctx);
    // Instance "All": both instances run the default devices, blk0 among them.
    const expr = panelExpr('Request rate by device and outcome', '.*');
    const ok = { device: 'blk0', op: 'write', outcome: 'ok' };
    const r = promtoolEval(
      [
        series('mediator_requests_total', { ...ok, instance: 'host-a:8080' }, '0+5x60'),
        series('mediator_requests_total', { ...ok, instance: 'host-b:8080' }, '0+15x60'),
      ],
      [
        {
          expr: inUnits(expr, 1),
          eval_time: '2m',
          exp_samples: [
            { labels: '{instance="host-a:8080",device="blk0",outcome="ok"}', value: 1 },
            { labels: '{instance="host-b:8080",device="blk0",outcome="ok"}', value: 3 },
          ],
        },
      ],
    );
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });
});

// --- mediator_backpressure_waits_ended_total --------------------------------------------

describe('mediator_backpressure_waits_ended_total', () => {
  it('is the waits less those waiting now, from one read of the gate', async () => {
    const registry = new ScrapeRegistry();
    let gate: BackpressureStats = {
      waits: 0,
      requeues: 0,
      waitSeconds: 0,
      timeouts: 0,
      waiting: 0,
    };
    registerBackpressureMetrics(registry, () => [{ name: 'p', s: {} as PoolStats, gate }]);
    const key = 'mediator_backpressure_waits_ended_total{pool="p"}';
    expect(get(await scrape(registry), key)).toBe(0);
    // Three waits began, one is still waiting: two ended, with their 1.5 s.
    gate = { waits: 3, requeues: 1, waitSeconds: 1.5, timeouts: 1, waiting: 1 };
    const m = await scrape(registry);
    expect(get(m, key)).toBe(2);
    expect(get(m, 'mediator_backpressure_waits_total{pool="p"}')).toBe(3);
    expect(get(m, 'mediator_backpressure_wait_seconds_total{pool="p"}')).toBe(1.5);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE mediator_backpressure_waits_ended_total counter');
  });

  describe('on a real pool', () => {
    let med: Mediator;
    let registry: ScrapeRegistry;
    beforeAll(async () => {
      med = new Mediator({
        copy: { workers: 0 },
        pools: [
          {
            name: 'p0',
            slots: 256,
            areas: 1,
            backpressure: { policy: 'requeue-bounded', waitMs: 10_000 },
          },
        ],
        guests: [{ name: 'g0', size: 16 * MiB }],
        devices: [
          {
            id: 'blk0',
            kind: 'ram-blk',
            guest: 'g0',
            pool: 'p0',
            capacity: 4 * MiB,
            maxRequestBytes: 256 * 1024,
            depth: 4,
          },
        ],
      });
      registry = createMetrics(med, { defaultMetrics: false });
      await med.device('blk0')!.ready();
    });
    afterAll(async () => {
      await med.close();
    });

    it('counts a wait once it has ended, with its time', async () => {
      const dev = med.device('blk0')!;
      const before = await scrape(registry);
      // 256 slots, some held by the queue: the second 256 KiB write waits for the first.
      await Promise.all([dev.write(0, 256 * 1024), dev.write(0, 256 * 1024)]);
      const after = await scrape(registry);
      const delta = (k: string) => get(after, k) - get(before, k);
      expect(delta('mediator_backpressure_waits_total{pool="p0"}')).toBe(1);
      expect(delta('mediator_backpressure_waits_ended_total{pool="p0"}')).toBe(1);
      expect(delta('mediator_backpressure_wait_seconds_total{pool="p0"}')).toBeGreaterThan(0);
      expect(get(after, 'mediator_backpressure_waiting_requests{pool="p0"}')).toBe(0);
    });
  });
});

// --- texts an operator acts on -----------------------------------------------------------

describe('help texts and alert annotations say what the numbers are', () => {
  let help: Map<string, string>;
  beforeAll(async () => {
    const med = new Mediator({
      copy: { workers: 0 },
      pools: [{ name: 'p0', slots: 256, areas: 1 }],
      guests: [],
      devices: [],
    });
    try {
      const text = await createMetrics(med, { defaultMetrics: false }).metrics();
      help = new Map(
        [...text.matchAll(/^# HELP (\w+) (.*)$/gm)].map((m) => [m[1]!, m[2]!] as [string, string]),
      );
    } finally {
      await med.close();
    }
  });

  it('too_large is a search beyond one 128-slot segment, not a map above the max mapping size', () => {
    const alerts = (
      parseYaml(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
        groups: { rules: { alert: string; annotations: Record<string, string> }[] }[];
      }
    ).groups.flatMap((g) => g.rules);
    const description = alerts.find((r) => r.alert === 'SwiotlbMapFailures')!.annotations
      .description!;
    const errors = readFileSync(join(DIR, '..', 'docs', 'errors.md'), 'utf8');
    // docs/errors.md: maps above swiotlb_max_mapping_size() that fit a segment are placed.
    expect(errors).toMatch(
      /Maps above swiotlb_max_mapping_size\(\) that fit a segment are not refused/,
    );
    for (const text of [description, help.get('swiotlb_map_failures_total')!]) {
      expect(text).not.toMatch(/max mapping size/);
      expect(text).toMatch(/too_large[^,;]*more than one 128-slot segment/);
    }
  });

  it('the request latency histogram says it counts every outcome', () => {
    expect(help.get('mediator_request_duration_seconds')).toMatch(/every outcome/);
  });

  it('the largest free run says it stops at a segment (at most 128 slots)', () => {
    expect(help.get('swiotlb_pool_largest_free_run_slots')).toMatch(/within one segment.*128/);
  });
});
