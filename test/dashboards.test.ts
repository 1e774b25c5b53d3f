/**
 * dashboards/: the Grafana dashboard, the Prometheus scrape config and the alert rules.
 *
 * - Every PromQL expression (dashboard targets and variables, alert rules) parses, and
 *   every metric and label it names exists in a real scrape of createMetrics(): renaming
 *   a metric or a label breaks this test.
 * - Every panel has a title, a description, a unit and the datasource variable, and every
 *   selector filters on the job and instance variables.
 * - promtool (Prometheus 2.42, Debian package `prometheus`) checks the rules, runs their
 *   unit tests, checks the config, parses the dashboard expressions, and lints a live
 *   scrape. Without promtool on PATH those tests skip and say why, except in CI
 *   (CI=true), where they fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import { beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Mediator } from '../src/mediator/mediator.js';
import { createMetrics } from '../src/metrics/metrics.js';

const DIR = fileURLToPath(new URL('../dashboards/', import.meta.url));
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template.
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** Concrete values for the dashboard's variables, as Grafana would interpolate them. */
const VARS: Record<string, string> = {
  __rate_interval: '1m',
  __interval: '15s',
  __range: '1h',
  job: 'swiotlb-mediator',
  instance: '127.0.0.1:8080',
};

/** Series that Prometheus makes itself for every target, not the service. */
const PROMETHEUS_SERIES = new Set(['up']);
/** Labels that Prometheus attaches to every scraped series. */
const TARGET_LABELS = ['job', 'instance'];

/** The three prom-client default gauges that `promtool check metrics` flags, verbatim. */
const KNOWN_LINT = new Set([
  'nodejs_active_handles_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_requests_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_resources_total non-counter metrics should not have "_total" suffix',
]);

// --- the files --------------------------------------------------------------------

interface Target {
  expr: string;
  refId: string;
  legendFormat?: string;
  datasource?: unknown;
}
interface Panel {
  id: number;
  type: string;
  title?: string;
  description?: string;
  datasource?: unknown;
  gridPos: { x: number; y: number; w: number; h: number };
  fieldConfig?: { defaults?: { unit?: string } };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  definition?: string;
  datasource?: unknown;
  allValue?: string;
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string> }[];
}

const dashboardText = readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8');
const dashboard = JSON.parse(dashboardText) as Dashboard;
const rules = (
  parseYaml(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);
const ruleTests = parseYaml(readFileSync(join(DIR, 'alerts.test.yml'), 'utf8')) as {
  rule_files: string[];
  tests: { name: string; alert_rule_test?: RuleTest[] }[];
};
const promConfig = parseYaml(readFileSync(join(DIR, 'prometheus.yml'), 'utf8')) as {
  global?: { scrape_interval?: string };
  rule_files: string[];
  scrape_configs: {
    job_name: string;
    scrape_interval?: string;
    metrics_path?: string;
    static_configs: { targets: string[] }[];
  }[];
};

/** Every panel, with the panels nested in collapsed rows. */
const allPanels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const dataPanels = allPanels.filter((p) => p.type !== 'row');

/** Replaces $var and ${var} with VARS; an unknown variable is an error. */
function substitute(expr: string): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (m, braced?: string, bare?: string) => {
    const v = VARS[(braced ?? bare)!];
    if (v === undefined) throw new Error(`unknown variable ${m} in ${expr}`);
    return v;
  });
}

/** The selector of a label_values(selector, label) variable query. */
function labelValuesQuery(v: Variable): { selector: string; label: string } {
  const q = typeof v.query === 'string' ? v.query : v.query.query;
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
  if (!m) throw new Error(`variable ${v.name}: not label_values(selector, label): ${q}`);
  return { selector: m[1]!, label: m[2]! };
}

interface Expression {
  where: string;
  expr: string;
  /** Labels the result should carry (legendFormat, annotations), checked to exist. */
  usedLabels: string[];
}

const dashboardExpressions: Expression[] = [
  ...dataPanels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      where: `panel "${p.title}" target ${t.refId}`,
      expr: substitute(t.expr),
      usedLabels: [...(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!),
    })),
  ),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const { selector, label } = labelValuesQuery(v);
      return { where: `variable ${v.name}`, expr: substitute(selector), usedLabels: [label] };
    }),
];

const alertExpressions: Expression[] = rules.map((r) => ({
  where: `alert ${r.alert ?? r.record}`,
  expr: r.expr,
  usedLabels: [
    ...Object.values(r.annotations ?? {})
      .join(' ')
      .matchAll(/\$labels\.(\w+)/g),
  ].map((m) => m[1]!),
}));

// --- PromQL -------------------------------------------------------------------------

interface Selector {
  metric: string | undefined;
  matchers: { label: string; op: string; value: string }[];
}
interface Analysis {
  errors: string[];
  selectors: Selector[];
  /** Label names in by/without/on/ignoring clauses. */
  groupingLabels: string[];
  /** The label names of each by/without/on/ignoring clause. */
  groupings: string[][];
}

function unquote(s: string): string {
  return JSON.parse(s.startsWith("'") ? `"${s.slice(1, -1).replace(/"/g, '\\"')}"` : s) as string;
}

/** Parses `expr` with the Prometheus project's own lezer grammar. */
function analyse(expr: string): Analysis {
  const out: Analysis = { errors: [], selectors: [], groupingLabels: [], groupings: [] };
  if (expr.trim() === '') out.errors.push('empty expression');
  const tree = parser.parse(expr);
  tree.iterate({
    enter: (ref) => {
      if (ref.type.isError) {
        out.errors.push(`syntax error at ${ref.from}: "${expr.slice(ref.from, ref.from + 20)}"`);
        return;
      }
      const node = ref.node;
      if (ref.name === 'VectorSelector') {
        const id = node.getChild('Identifier');
        const sel: Selector = {
          metric: id ? expr.slice(id.from, id.to) : undefined,
          matchers: [],
        };
        const list = node.getChild('LabelMatchers');
        for (const m of list?.getChildren('UnquotedLabelMatcher') ?? []) {
          const name = m.getChild('LabelName');
          const op = m.getChild('MatchOp');
          const value = m.getChild('StringLiteral');
          if (!name || !op || !value) continue;
          sel.matchers.push({
            label: expr.slice(name.from, name.to),
            op: expr.slice(op.from, op.to),
            value: unquote(expr.slice(value.from, value.to)),
          });
        }
        const byName = sel.matchers.find((m) => m.label === '__name__' && m.op === '=');
        if (sel.metric === undefined && byName) sel.metric = byName.value;
        out.selectors.push(sel);
      } else if (ref.name === 'GroupingLabels') {
        const names = node.getChildren('LabelName').map((l) => expr.slice(l.from, l.to));
        out.groupingLabels.push(...names);
        out.groupings.push(names);
      }
    },
  });
  return out;
}

// --- a real scrape ----------------------------------------------------------------------

/** The text of one scrape of createMetrics() with default metrics, after some I/O. */
async function liveScrape(): Promise<string> {
  const med = new Mediator({
    // A copy worker, for its metrics (2 CPUs and two devices leave none by default).
    copy: { workers: 1 },
    pools: [{ name: 'default', size: 8 << 20 }],
    guests: [{ name: 'guest0', size: 64 << 20 }],
    devices: [
      {
        id: 'blk0',
        kind: 'ram-blk',
        guest: 'guest0',
        pool: 'default',
        capacity: 8 << 20,
        maxRequestBytes: 65536,
      },
      { id: 'null0', kind: 'null', guest: 'guest0', pool: 'default', maxRequestBytes: 65536 },
    ],
  });
  try {
    const registry = createMetrics(med);
    await med.device('blk0')!.write(0, 65536);
    await med.device('blk0')!.read(0, 4096);
    return await registry.metrics();
  } finally {
    await med.close();
  }
}

/** Sample name (with _bucket/_sum/_count) -> the label names it carries. */
function seriesLabels(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s/.exec(line);
    if (!m) throw new Error(`unparsed exposition line: ${line}`);
    const labels = out.get(m[1]!) ?? new Set<string>();
    for (const l of (m[2] ?? '').matchAll(/(\w+)="(?:[^"\\]|\\.)*"/g)) labels.add(l[1]!);
    out.set(m[1]!, labels);
  }
  return out;
}

// --- promtool ---------------------------------------------------------------------------

const promtoolProbe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const hasPromtool = promtoolProbe.error === undefined && promtoolProbe.status === 0;
const inCI = process.env.CI === 'true';

/** Skips (saying why) when promtool is missing; in CI, fails instead. */
function needPromtool(ctx: TestContext): void {
  if (hasPromtool) return;
  const why = `promtool is not on PATH (${promtoolProbe.error?.message ?? `exit ${promtoolProbe.status}`}); install the Debian package "prometheus"`;
  if (inCI) throw new Error(`${why}. CI=true: promtool tests must run, not skip.`);
  ctx.skip(why);
}

function promtool(args: string[], opts: { cwd?: string; input?: string } = {}) {
  const r = spawnSync('promtool', args, {
    cwd: opts.cwd ?? DIR,
    input: opts.input,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

// --- the tests --------------------------------------------------------------------------

let scrapeText = '';
let scraped = new Map<string, Set<string>>();
beforeAll(async () => {
  scrapeText = await liveScrape();
  scraped = seriesLabels(scrapeText);
});

describe('grafana dashboard', () => {
  it('is a Grafana 10/11 dashboard model with unique panel ids and no overlapping panels', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.title).not.toBe('');
    const ids = allPanels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const top = dashboard.panels;
    for (const [i, a] of top.entries()) {
      expect(
        a.gridPos.x + a.gridPos.w,
        `panel "${a.title}" is wider than the grid`,
      ).toBeLessThanOrEqual(24);
      for (const b of top.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `panels "${a.title}" and "${b.title}" overlap`).toBe(false);
      }
    }
  });

  it('has the datasource, job and instance variables', () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const job = vars.get('job')!;
    expect(job).toMatchObject({ type: 'query', datasource: DATASOURCE });
    expect(labelValuesQuery(job)).toEqual({ selector: 'swiotlb_pool_slots', label: 'job' });
    const instance = vars.get('instance')!;
    expect(instance).toMatchObject({ type: 'query', datasource: DATASOURCE });
    expect(labelValuesQuery(instance)).toEqual({
      selector: 'swiotlb_pool_slots{job="$job"}',
      label: 'instance',
    });
    // "All" must be a regex that matches every instance, since panels use instance=~.
    expect(instance.allValue).toBe('.*');
    // The export-for-sharing placeholder would break a provisioned import.
    expect(dashboardText).not.toContain('DS_PROMETHEUS');
    expect(dashboardText).not.toContain('__inputs');
  });

  it('every panel has a title, a description, a unit and the datasource variable', () => {
    expect(dataPanels.length).toBeGreaterThanOrEqual(12);
    for (const p of allPanels) {
      expect(p.title?.trim(), `panel ${p.id} has no title`).toBeTruthy();
      if (p.type === 'row') {
        expect(p.targets ?? [], `row "${p.title}" has queries`).toEqual([]);
        continue;
      }
      expect(p.description?.trim(), `panel "${p.title}" has no description`).toBeTruthy();
      expect(p.fieldConfig?.defaults?.unit?.trim(), `panel "${p.title}" has no unit`).toBeTruthy();
      expect(p.datasource, `panel "${p.title}" datasource`).toEqual(DATASOURCE);
      expect(p.targets?.length, `panel "${p.title}" has no queries`).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `panel "${p.title}" repeats a refId`).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.datasource, `panel "${p.title}" target ${t.refId}`).toEqual(DATASOURCE);
      }
    }
  });

  it('shows the panels the issue asks for', () => {
    const exprs = dataPanels.map((p) => (p.targets ?? []).map((t) => t.expr).join('\n'));
    const shown = (re: RegExp) => exprs.some((e) => re.test(e));
    expect(shown(/rate\(mediator_bounce_bytes_total\b/)).toBe(true);
    expect(shown(/swiotlb_pool_used_slots/)).toBe(true);
    expect(shown(/swiotlb_pool_used_hiwater_slots/)).toBe(true);
    expect(shown(/swiotlb_pool_largest_free_run_slots/)).toBe(true);
    expect(shown(/swiotlb_map_failures_total/)).toBe(true);
    expect(shown(/mediator_backpressure_waits_total/)).toBe(true);
    expect(shown(/mediator_backpressure_wait_seconds_total/)).toBe(true);
    expect(shown(/mediator_backpressure_waiting_requests/)).toBe(true);
    expect(shown(/mediator_backpressure_timeouts_total/)).toBe(true);
    expect(shown(/sum by \(instance, device, outcome\) \(rate\(mediator_requests_total/)).toBe(
      true,
    );
    expect(shown(/histogram_quantile\(0\.5, .*mediator_request_duration_seconds_bucket/)).toBe(
      true,
    );
    expect(shown(/histogram_quantile\(0\.99, .*mediator_request_duration_seconds_bucket/)).toBe(
      true,
    );
    expect(shown(/mediator_device_faults_total/)).toBe(true);
    expect(shown(/rate\(mediator_copy_worker_busy_seconds_total/)).toBe(true);
    expect(shown(/1 - rate\(mediator_device_thread_idle_seconds_total/)).toBe(true);
    expect(shown(/nodejs_eventloop_lag_p99_seconds/)).toBe(true);
    expect(shown(/^swiotlb_mediator_build_info\{/)).toBe(true);
  });

  it('keeps the instance apart wherever it shows a device or a pool', () => {
    // Device and pool names come from each instance's configuration: the defaults
    // (blk0, null0, pool0, pool1) are the same on every instance, so an aggregation
    // by device or pool without instance adds up the instances selected.
    const entity = ['device', 'pool'];
    for (const p of dataPanels) {
      for (const t of p.targets ?? []) {
        const where = `panel "${p.title}" target ${t.refId}`;
        for (const by of analyse(t.expr).groupings) {
          if (by.some((l) => entity.includes(l)))
            expect(by, `${where}: ${t.expr}`).toContain('instance');
        }
        const legend = t.legendFormat ?? '';
        if (entity.some((l) => legend.includes(`{{${l}}}`))) {
          expect(legend, `${where}: legend`).toMatch(/^\{\{instance\}\} /);
        }
      }
    }
  });

  it('shows what each instance runs, from swiotlb_mediator_build_info, on top', () => {
    const top = dashboard.panels.find((p) => p.gridPos.y === 0)!;
    expect(top.type).toBe('stat');
    const [target] = top.targets!;
    expect(target!.expr).toBe('swiotlb_mediator_build_info{job="$job",instance=~"$instance"}');
    for (const label of [
      'instance',
      'version',
      'mode',
      'kernel',
      'placement',
      'from_device_bounce',
      'node_version',
    ]) {
      expect(target!.legendFormat).toContain(`{{${label}}}`);
    }
  });

  it('every expression parses', () => {
    expect(dashboardExpressions.length).toBeGreaterThan(dataPanels.length);
    for (const e of dashboardExpressions) {
      expect(analyse(e.expr).errors, `${e.where}: ${e.expr}`).toEqual([]);
    }
  });

  it('every panel selector filters on job="$job" and instance=~"$instance"', () => {
    for (const e of dashboardExpressions.filter((x) => x.where.startsWith('panel'))) {
      const { selectors } = analyse(e.expr);
      expect(selectors.length, e.where).toBeGreaterThan(0);
      for (const s of selectors) {
        const m = s.matchers.map((x) => `${x.label}${x.op}${x.value}`);
        expect(m, `${e.where}: ${s.metric}`).toContain(`job=${VARS.job}`);
        expect(m, `${e.where}: ${s.metric}`).toContain(`instance=~${VARS.instance}`);
      }
    }
  });

  it('every metric and label it uses exists in a real scrape', () => {
    checkNames(dashboardExpressions);
  });
});

/** Every metric an expression selects, and every label it names, is in the scrape. */
function checkNames(expressions: Expression[]): void {
  expect(scraped.size).toBeGreaterThan(50);
  for (const e of expressions) {
    const a = analyse(e.expr);
    const available = new Set(TARGET_LABELS);
    for (const s of a.selectors) {
      expect(s.metric, `${e.where}: a selector without a metric name`).toBeDefined();
      const metric = s.metric!;
      if (PROMETHEUS_SERIES.has(metric)) continue;
      const labels = scraped.get(metric);
      expect(labels, `${e.where}: metric ${metric} is not in the scrape`).toBeDefined();
      for (const l of labels!) available.add(l);
    }
    for (const s of a.selectors) {
      for (const m of s.matchers) {
        if (m.label === '__name__') continue;
        expect([...available], `${e.where}: label ${m.label} of ${s.metric}`).toContain(m.label);
      }
    }
    for (const l of [...a.groupingLabels, ...e.usedLabels]) {
      expect([...available], `${e.where}: label ${l}`).toContain(l);
    }
  }
}

describe('alert rules', () => {
  it('cover the alerts the issue asks for, with severity, summary and description', () => {
    const byName = new Map(rules.map((r) => [r.alert, r]));
    for (const name of [
      'SwiotlbPoolNearlyFull',
      'SwiotlbMapFailures',
      'MediatorBackpressureTimeouts',
      'MediatorDeviceFaults',
      'MediatorHighRequestLatencyP99',
    ]) {
      expect(byName.has(name), name).toBe(true);
    }
    expect(byName.get('SwiotlbPoolNearlyFull')!.for).toBe('5m');
    expect(byName.get('MediatorHighRequestLatencyP99')!.expr).toContain('histogram_quantile(0.99');
    for (const r of rules) {
      expect(r.alert, 'only alerting rules here').toBeTruthy();
      expect(['warning', 'critical'], `${r.alert} severity`).toContain(r.labels?.severity);
      expect(r.annotations?.summary, `${r.alert} summary`).toMatch(/\{\{ \$labels\.\w+ \}\}/);
      expect(r.annotations?.description, `${r.alert} description`).toMatch(
        /\{\{ \$labels\.\w+ \}\}/,
      );
    }
  });

  it('every expression parses', () => {
    for (const e of alertExpressions) {
      expect(analyse(e.expr).errors, `${e.where}: ${e.expr}`).toEqual([]);
    }
  });

  it('every metric and label it uses exists in a real scrape', () => {
    checkNames(alertExpressions);
  });

  it('select the job that prometheus.yml scrapes', () => {
    const jobs = promConfig.scrape_configs.map((c) => c.job_name);
    for (const e of alertExpressions) {
      for (const s of analyse(e.expr).selectors) {
        for (const m of s.matchers.filter((x) => x.label === 'job' && x.op === '=')) {
          expect(jobs, e.where).toContain(m.value);
        }
      }
    }
  });

  it('each alert has a promtool case that shows it firing, and one shows none firing', () => {
    expect(ruleTests.rule_files).toEqual(['alerts.yml']);
    const cases = ruleTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const r of rules) {
      const firing = cases.some((c) => c.alertname === r.alert && (c.exp_alerts?.length ?? 0) > 0);
      expect(firing, `no promtool test case shows ${r.alert} firing`).toBe(true);
    }
    const healthy = ruleTests.tests.find((t) =>
      rules.every((r) =>
        t.alert_rule_test?.some(
          (c) => c.alertname === r.alert && (c.exp_alerts ?? []).length === 0,
        ),
      ),
    );
    expect(healthy, 'a test case in which no alert fires').toBeDefined();
  });
});

describe('docs/monitoring.md', () => {
  it('lists every metric of the service in its metrics table', () => {
    const readme = readFileSync(join(DIR, '..', 'docs', 'monitoring.md'), 'utf8');
    const families = [...scrapeText.matchAll(/^# TYPE ((?:swiotlb|mediator)_\w+) /gm)].map(
      (m) => m[1]!,
    );
    expect(families.length).toBeGreaterThan(20);
    for (const name of families) {
      expect(readme, `docs/monitoring.md has no row for ${name}`).toContain(`| \`${name}\` |`);
    }
  });
});

describe('prometheus.yml', () => {
  it('scrapes the service on 127.0.0.1:8080 every 5s and loads alerts.yml', () => {
    expect(promConfig.rule_files).toEqual(['alerts.yml']);
    const job = promConfig.scrape_configs.find((c) => c.job_name === 'swiotlb-mediator');
    expect(job).toBeDefined();
    expect(job!.scrape_interval ?? promConfig.global?.scrape_interval).toBe('5s');
    expect(job!.metrics_path ?? '/metrics').toBe('/metrics');
    expect(job!.static_configs.flatMap((s) => s.targets)).toEqual(['127.0.0.1:8080']);
  });
});

describe('promtool', () => {
  it('check rules alerts.yml', (ctx) => {
    needPromtool(ctx);
    const r = promtool(['check', 'rules', 'alerts.yml']);
    expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status, r.output).toBe(0);
  });

  it('test rules alerts.test.yml', (ctx) => {
    needPromtool(ctx);
    const r = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('check config prometheus.yml (from dashboards/ and from the repository root)', (ctx) => {
    needPromtool(ctx);
    const here = promtool(['check', 'config', 'prometheus.yml']);
    expect(here.output).toContain('SUCCESS: 1 rule files found');
    expect(here.status, here.output).toBe(0);
    // rule_files resolves relative to the config file, as docs/monitoring.md's command relies on.
    const root = promtool(['check', 'config', 'dashboards/prometheus.yml'], {
      cwd: join(DIR, '..'),
    });
    expect(root.status, root.output).toBe(0);
  });

  it("Prometheus 2.42's own parser accepts every dashboard expression", (ctx) => {
    needPromtool(ctx);
    // The lezer grammar follows the newest Prometheus; promtool is the version installed.
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-exprs-'));
    try {
      const file = join(dir, 'exprs.yml');
      const recording = dashboardExpressions.map((e, i) => ({
        record: `dashboard_expression_${i}`,
        expr: e.expr,
      }));
      writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: recording }] }));
      const r = promtool(['check', 'rules', file]);
      expect(r.status, r.output).toBe(0);
      expect(r.output).toContain(`SUCCESS: ${recording.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('check metrics on a live scrape: only the three known prom-client gauges are flagged', (ctx) => {
    needPromtool(ctx);
    const r = promtool(['check', 'metrics'], { input: scrapeText });
    const problems = r.output
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !KNOWN_LINT.has(l));
    expect(problems).toEqual([]);
    // 0: clean; 3: lint problems (only the known ones, as checked above). 1 is an error.
    expect([0, 3], r.output).toContain(r.status);
  });
});
