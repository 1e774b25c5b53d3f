/**
 * End to end with a real Prometheus: the service and Prometheus on loopback, load
 * driven over HTTP, then every PromQL expression of the dashboard evaluated through
 * Prometheus' HTTP API must return data, and every alert expression must evaluate.
 *
 * Runs whenever `prometheus` is on PATH; without it the test skips and says why,
 * except under CI=true, where it fails (.ci/run installs Debian's prometheus).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../src/config/index.js';
import { type RunningServer, startServer } from '../src/server/index.js';
import { OCTET, randomBytes } from './helpers/http.js';

const DIR = fileURLToPath(new URL('../dashboards/', import.meta.url));
const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
const hasPrometheus = probe.error === undefined && probe.status === 0;
const inCI = process.env.CI === 'true';
const why = `prometheus is not on PATH (${probe.error?.message ?? `exit ${probe.status}`}); install Debian's "prometheus" package`;
if (!hasPrometheus && inCI) {
  throw new Error(`${why}. CI=true: the Prometheus end-to-end test must run, not skip.`);
}

interface Target {
  expr: string;
  refId: string;
}
interface Panel {
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as {
  panels: Panel[];
};
const alerts = (
  parseYaml(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
    groups: { rules: { alert?: string; expr: string }[] }[];
  }
).groups.flatMap((g) => g.rules);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

describe.skipIf(!hasPrometheus)(
  `with a real Prometheus${hasPrometheus ? '' : ` (skipped: ${why})`}`,
  () => {
    let server: RunningServer;
    let prometheus: ChildProcess;
    let promUrl: string;
    let instance: string;
    let promLog = '';
    let dir: string | undefined;

    const query = async (
      expr: string,
    ): Promise<{ status: string; data?: { result: unknown[] }; error?: string }> => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as { status: string; data?: { result: unknown[] }; error?: string };
    };

    /** Starts Prometheus (our child process: the only one this test ever stops). */
    const startPrometheus = (configFile: string, dataDir: string, port: number): ChildProcess => {
      const child = spawn(
        'prometheus',
        [
          `--config.file=${configFile}`,
          `--storage.tsdb.path=${dataDir}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout?.on('data', (d) => {
        promLog += String(d);
      });
      child.stderr?.on('data', (d) => {
        promLog += String(d);
      });
      return child;
    };

    /**
     * Waits until the Prometheus at promUrl answers and runs `configFile` (so it is
     * ours, not another one that holds the port); false when ours exited first.
     */
    const ourPrometheusAnswers = async (configFile: string): Promise<boolean> => {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        if (prometheus.exitCode !== null || prometheus.signalCode !== null) return false;
        let flags: { data?: Record<string, string> } | undefined;
        try {
          flags = (await (await fetch(`${promUrl}/api/v1/status/flags`)).json()) as typeof flags;
        } catch {
          // not listening yet
        }
        if (flags !== undefined) {
          if (flags.data?.['config.file'] === configFile) return true;
          // Another Prometheus holds the port: ours cannot bind it; stop ours, try another.
          await stopPrometheus();
          return false;
        }
        await sleep(250);
      }
      throw new Error(`Prometheus did not answer within 60 s:\n${promLog.slice(-3000)}`);
    };

    /** Stops our Prometheus child (SIGTERM, then SIGKILL after 10 s). */
    const stopPrometheus = async (): Promise<void> => {
      if (!prometheus || prometheus.exitCode !== null || prometheus.signalCode !== null) return;
      const exited = new Promise((r) => prometheus.once('exit', r));
      prometheus.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (prometheus.exitCode === null && prometheus.signalCode === null) {
        prometheus.kill('SIGKILL');
        await exited;
      }
    };

    beforeAll(async () => {
      server = await startServer(
        parseConfig({
          http: { port: 0 },
          logLevel: 'silent',
          // A copy worker, for its panels (by default 2 CPUs and two devices leave none).
          copy: { workers: 1 },
          pools: [{ name: 'default', size: '8MiB' }],
          devices: [
            { id: 'blk0', kind: 'ram-blk', capacity: '16MiB' },
            { id: 'null0', kind: 'null' },
          ],
        }),
      );
      await server.service.started;
      instance = new URL(server.url).host;
      dir = mkdtempSync(join(tmpdir(), 'prom-e2e-'));
      const configFile = join(dir, 'prometheus.yml');
      writeFileSync(
        configFile,
        [
          'global:',
          '  scrape_interval: 1s',
          '  evaluation_interval: 1s',
          `rule_files: [${JSON.stringify(join(DIR, 'alerts.yml'))}]`,
          'scrape_configs:',
          '  - job_name: swiotlb-mediator',
          '    static_configs:',
          `      - targets: [${JSON.stringify(instance)}]`,
          '',
        ].join('\n'),
      );
      // Our own Prometheus on a free ephemeral loopback port (never :9090, where a
      // system Prometheus may run). The port is free when chosen but not held: if
      // something takes it first, our Prometheus exits and we try another port.
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        promUrl = `http://127.0.0.1:${port}`;
        promLog = '';
        prometheus = startPrometheus(configFile, join(dir, 'data'), port);
        const started = await ourPrometheusAnswers(configFile);
        if (started) break;
        if (attempt >= 3)
          throw new Error(
            `Prometheus did not start on a port of its own:\n${promLog.slice(-3000)}`,
          );
      }
      // Wait until it has scraped the service.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const up = await query('up{job="swiotlb-mediator"} == 1');
        if (up.status === 'success' && (up.data?.result.length ?? 0) > 0) break;
        if (Date.now() > deadline)
          throw new Error(`Prometheus did not scrape the service:\n${promLog.slice(-3000)}`);
        await sleep(250);
      }
      // Load: real blocks and synthetic I/O on both devices, for a few scrapes.
      const loadUntil = Date.now() + 4000;
      let i = 0;
      while (Date.now() < loadUntil) {
        const data = randomBytes(8192, i);
        await Promise.all([
          fetch(`${server.url}/v1/devices/blk0/blocks/${(i * 16) % 4096}`, {
            method: 'PUT',
            headers: OCTET,
            body: data,
          }),
          fetch(`${server.url}/v1/devices/blk0/blocks/${(i * 16) % 4096}?count=16`),
          fetch(`${server.url}/v1/devices/null0/io`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ op: i % 2 ? 'read' : 'write', size: 65536, lba: 0 }),
          }),
          fetch(`${server.url}/v1/devices/blk0/io`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ op: 'read', size: 262144, lba: 0 }),
          }),
        ]);
        i++;
      }
      await sleep(2500); // two more scrapes after the load
    }, 120_000);

    afterAll(async () => {
      try {
        await stopPrometheus();
        if (server) await server.shutdown();
      } finally {
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    }, 30_000);

    it('every dashboard expression returns data', async () => {
      const vars: Record<string, string> = {
        job: 'swiotlb-mediator',
        instance,
        __rate_interval: '30s',
        __interval: '5s',
        __range: '5m',
      };
      const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
      const exprs = panels.flatMap((p) =>
        (p.targets ?? []).map((t) => ({
          where: `${p.title} / ${t.refId}`,
          expr: t.expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (m, a?: string, b?: string) => {
            const v = vars[(a ?? b)!];
            if (v === undefined) throw new Error(`unknown variable ${m}`);
            return v;
          }),
        })),
      );
      expect(exprs.length).toBeGreaterThan(10);
      const empty: string[] = [];
      for (const e of exprs) {
        const r = await query(e.expr);
        expect(r.status, `${e.where}: ${e.expr}: ${r.error}`).toBe('success');
        if ((r.data?.result.length ?? 0) > 0) continue;
        // A ratio's denominator guarded with `> 0` is empty, by design, while it did
        // not move (no back-pressure wait ended under this load): without the guard,
        // the same expression must evaluate (to NaN or +Inf, what the guard hides).
        const unguarded = e.expr.replaceAll(' > 0)', ')');
        const bare = unguarded === e.expr ? r : await query(unguarded);
        if ((bare.data?.result.length ?? 0) === 0) empty.push(`${e.where}: ${e.expr}`);
      }
      expect(empty).toEqual([]);
    });

    it('every alert expression evaluates, and Prometheus loaded every rule', async () => {
      expect(alerts.length).toBeGreaterThanOrEqual(5);
      for (const a of alerts) {
        const r = await query(a.expr);
        expect(r.status, `${a.alert}: ${r.error}`).toBe('success');
      }
      const rules = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
        data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
      };
      const loaded = rules.data.groups.flatMap((g) => g.rules);
      expect(loaded.map((r) => r.name).sort()).toEqual(alerts.map((a) => a.alert).sort());
      for (const r of loaded) expect(r.health, `${r.name}: ${r.lastError}`).not.toBe('err');
    });
  },
);
