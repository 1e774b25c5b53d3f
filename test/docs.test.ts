/**
 * The user docs stay true to the repository: every link in README.md and docs/*.md
 * points to a file of the repository (and, with a #fragment, to a heading of it),
 * none points outside; the README opens with the quick start and stays short; the
 * tables and examples the docs copy from the code say what the code does; the
 * example files ship with the package.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BENCH_HELP } from '../src/cli/bench.js';
import { REPLAY_HELP } from '../src/cli/replay-command.js';
import { SERVE_HELP } from '../src/cli/serve.js';
import { SIZE_HELP } from '../src/cli/size.js';
import { parseConfig } from '../src/config/index.js';
import { IGNORED_OPTIONS, parseJobFile } from '../src/workload/fio-job.js';
import { ALLOWED } from './helpers/layout.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** README.md and docs/*.md, repository-relative. */
const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/**
 * Files of the repository: tracked, or new and not ignored (so dist/ and
 * node_modules/, which a clone does not have, never count).
 */
function repositoryFiles(): Set<string> {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return new Set(out.split('\n').filter((f) => f !== ''));
}

/** Markdown without fenced code blocks and inline code spans (links there are not links). */
function prose(markdown: string): string {
  return markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, '')
    .replace(/(`+)[\s\S]*?\1/g, '');
}

/** Link targets: inline `[text](target)`, images, reference definitions and autolinks. */
function linkTargets(markdown: string): string[] {
  const text = prose(markdown);
  const targets: string[] = [];
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  for (const m of text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm))
    targets.push(m[1]!);
  for (const m of text.matchAll(/<((?:https?|ftp|mailto):[^>\s]+)>/g)) targets.push(m[1]!);
  return targets;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .trim()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a markdown file's headings, with GitHub's -1, -2... for repeats. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, '');
  for (const m of withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/**
 * What is wrong with each link of the markdown file `from` (repository-relative):
 * a link out of the repository, a missing file, a missing heading.
 */
function brokenLinks(
  from: string,
  markdown: string,
  files: ReadonlySet<string>,
  readFile: (path: string) => string,
): string[] {
  const problems: string[] = [];
  for (const target of linkTargets(markdown)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) {
      problems.push(`${from}: ${target}: links must point inside the repository`);
      continue;
    }
    const hash = target.indexOf('#');
    const pathPart = decodeURI(hash < 0 ? target : target.slice(0, hash));
    const fragment = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
    if (pathPart.startsWith('/')) {
      problems.push(`${from}: ${target}: use a relative path, not an absolute one`);
      continue;
    }
    const file = pathPart === '' ? from : normalize(join(dirname(from), pathPart));
    const path = file.split(sep).join('/').replace(/\/$/, '');
    if (path === '..' || path.startsWith('../')) {
      problems.push(`${from}: ${target}: leaves the repository`);
      continue;
    }
    const isFile = files.has(path);
    const isDir = !isFile && [...files].some((f) => f.startsWith(`${path}/`));
    if (!isFile && !isDir) {
      problems.push(`${from}: ${target}: no such file in the repository (${path})`);
      continue;
    }
    if (fragment === undefined) continue;
    if (!isFile || !path.endsWith('.md')) {
      problems.push(`${from}: ${target}: a #fragment needs a markdown file`);
    } else if (!anchors(readFile(path)).has(fragment)) {
      problems.push(`${from}: ${target}: ${path} has no heading #${fragment}`);
    }
  }
  return problems;
}

describe('links in README.md and docs/*.md', () => {
  const files = repositoryFiles();

  it('finds the docs and their links (the check is not empty)', () => {
    expect(DOCS).toEqual(
      expect.arrayContaining([
        'README.md',
        'docs/cli.md',
        'docs/configuration.md',
        'docs/errors.md',
        'docs/http-api.md',
        'docs/internals.md',
        'docs/monitoring.md',
        'docs/performance.md',
      ]),
    );
    const count = DOCS.reduce((n, d) => n + linkTargets(read(d)).length, 0);
    expect(count).toBeGreaterThan(40);
  });

  it.each(DOCS)('%s: every link points to a file (and heading) inside the repository', (doc) => {
    expect(brokenLinks(doc, read(doc), files, read)).toEqual([]);
  });

  it('the checker reports each kind of bad link (hand-made cases)', () => {
    const fake = new Set([
      'README.md',
      'docs/a.md',
      'docs/b.md',
      'src/x.ts',
      'examples/jobs/j.fio',
    ]);
    const texts: Record<string, string> = {
      'docs/a.md': '# Title\n\n## Run `serve` — the service (1)\n\n## Twice\n\n## Twice\n',
      'docs/b.md': '# B\n',
    };
    const md = [
      '[ok](a.md) [ok](a.md#title) [ok](a.md#run-serve--the-service-1) [ok](a.md#twice-1)',
      '[ok](../src/x.ts) [ok](../examples/jobs/) [ok](#b) ![img](b.md)',
      '[out](https://example.com) [out](mailto:x@example.com) <https://example.org>',
      '[abs](/etc/passwd) [up](../../outside.md) [gone](c.md) [gone](a.md#nope)',
      '[frag](../src/x.ts#L3)',
      '[ref]: missing.md',
      '`[code](ignored.md)`',
      '```\n[fenced](ignored.md)\n```',
    ].join('\n');
    const problems = brokenLinks('docs/b.md', `# B\n${md}`, fake, (p) => texts[p] ?? '');
    expect(problems).toEqual([
      'docs/b.md: https://example.com: links must point inside the repository',
      'docs/b.md: mailto:x@example.com: links must point inside the repository',
      'docs/b.md: /etc/passwd: use a relative path, not an absolute one',
      'docs/b.md: ../../outside.md: leaves the repository',
      'docs/b.md: c.md: no such file in the repository (docs/c.md)',
      'docs/b.md: a.md#nope: docs/a.md has no heading #nope',
      'docs/b.md: ../src/x.ts#L3: a #fragment needs a markdown file',
      'docs/b.md: missing.md: no such file in the repository (docs/missing.md)',
      'docs/b.md: https://example.org: links must point inside the repository',
    ]);
  });
});

describe('README.md', () => {
  const readme = read('README.md');
  const lines = readme.split('\n');

  it('is under 300 lines', () => {
    expect(lines.length).toBeLessThan(300);
  });

  it('has the quick start, with both commands, in its first 40 lines', () => {
    const head = lines.slice(0, 40);
    expect(head).toContain('## Quick start');
    expect(head.some((l) => /^npm install && npm start\b/.test(l))).toBe(true);
    expect(head.some((l) => /^npm install && npm test\b/.test(l))).toBe(true);
  });

  it('its minimal config is valid', () => {
    const section = readme.split(/^## A minimal config$/m)[1]!.split(/^## /m)[0]!;
    const json = /```json\n([\s\S]*?)```/.exec(section)![1]!;
    const c = parseConfig(JSON.parse(json));
    expect(c.pools.map((p) => p.name)).toEqual(['disk-pool']);
    expect(c.devices.map((d) => [d.id, d.pool])).toEqual([['disk0', 'disk-pool']]);
  });
});

describe('docs/internals.md', () => {
  it('its layout table says what test/architecture.test.ts enforces', () => {
    const doc = read('docs/internals.md');
    const section = doc.split(/^## Layout$/m)[1]!.split(/^## /m)[0]!;
    const table: Record<string, string[]> = {};
    for (const line of section.split('\n')) {
      const m = /^\|\s*`src\/([a-z-]+)(?:\.ts)?`\s*\|[^|]*\|([^|]*)\|\s*$/.exec(line);
      if (!m) continue;
      const imports = [...m[2]!.matchAll(/`([a-z-]+)`/g)].map((x) => x[1]!);
      table[m[1]!] = imports.sort();
    }
    const allowed = Object.fromEntries(
      Object.entries(ALLOWED).map(([unit, deps]) => [unit, [...deps].sort()]),
    );
    expect(table).toEqual(allowed);
  });
});

describe('docs/cli.md', () => {
  const doc = read('docs/cli.md');

  it.each([
    ['serve', SERVE_HELP],
    ['replay', REPLAY_HELP],
    ['bench', BENCH_HELP],
    ['size', SIZE_HELP],
  ])('names every flag of %s --help', (_command, help) => {
    const flags = [...new Set([...help.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]))];
    expect(flags.length).toBeGreaterThan(0);
    expect(flags.filter((f) => f !== '--help' && !doc.includes(f))).toEqual([]);
  });

  it('names every fio option the job runner ignores', () => {
    expect(Object.keys(IGNORED_OPTIONS).filter((o) => !doc.includes(`\`${o}\``))).toEqual([]);
  });
});

describe('pointers from the code into docs/', () => {
  /** .ts files under a folder of the repository. */
  const sources = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? sources(`${dir}/${e.name}`)
        : e.name.endsWith('.ts')
          ? [`${dir}/${e.name}`]
          : [],
    );
  const files = [...sources('src'), ...sources('bench'), ...sources('scripts')];

  it('every docs/*.md a source names exists, and every heading it quotes is there', () => {
    const problems: string[] = [];
    let named = 0;
    for (const file of files) {
      // Comments wrap: join the lines of a comment before looking for the quoted heading.
      const text = read(file).replace(/\n\s*(?:\*(?!\/)|\/\/)\s*/g, ' ');
      for (const m of text.matchAll(/docs\/([\w-]+\.md)(?:[,:]?\s*\(?"([^"]+)")?/g)) {
        named++;
        const doc = `docs/${m[1]!}`;
        if (!DOCS.includes(doc)) {
          problems.push(`${file}: ${doc} does not exist`);
          continue;
        }
        if (m[2] === undefined) continue;
        const quoted = m[2].replace(/\.\.\.$/, '').trim();
        const headings = [...read(doc).matchAll(/^#{1,6}[ \t]+(.+)$/gm)].map((h) =>
          h[1]!.replace(/`/g, ''),
        );
        if (!headings.some((h) => h.startsWith(quoted)))
          problems.push(`${file}: ${doc} has no heading "${quoted}"`);
      }
    }
    expect(named).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });
});

describe('examples', () => {
  const jobs = readdirSync(join(ROOT, 'examples/jobs')).filter((f) => f.endsWith('.fio'));

  it.each(jobs)('examples/jobs/%s is a job file the runner accepts', (job) => {
    const parsed = parseJobFile(read(`examples/jobs/${job}`), job);
    expect(parsed.jobs.length).toBeGreaterThan(0);
  });

  it('the systemd unit runs the bin or node dist/cli/main.js, stops with SIGTERM and waits long enough', () => {
    const unit = read('examples/systemd/swiotlb-mediator.service');
    const setting = (key: string) =>
      [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
    const [exec] = setting('ExecStart');
    expect(setting('ExecStart')).toHaveLength(1);
    // npm exec (npx) exits on SIGTERM without passing it on: never under a process manager.
    expect(exec).not.toMatch(/\bnpx\b|\bnpm\b/);
    expect(exec).toMatch(/(\/swiotlb-mediator|\bnode \S*dist\/cli\/main\.js) serve --config \S+/);
    expect(setting('KillSignal')).toEqual(['SIGTERM']);
    expect(setting('Restart')).toEqual(['on-failure']);
    // A shutdown takes at most shutdownTimeoutMs + 1 s (cutting connections) + 2 s (forced exit).
    const stopSeconds = Number(/^(\d+)s?$/.exec(setting('TimeoutStopSec')[0] ?? '')?.[1]);
    const shutdownMs = parseConfig({}).http.shutdownTimeoutMs;
    expect(stopSeconds).toBeGreaterThanOrEqual(shutdownMs / 1000 + 3);
  });

  it('the package ships the examples, the docs and the dashboards (npm pack)', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const packed = new Set(
      (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path),
    );
    const wanted = [
      ...jobs.map((j) => `examples/jobs/${j}`),
      'examples/systemd/swiotlb-mediator.service',
      ...DOCS,
      'dashboards/prometheus.yml',
      'dashboards/alerts.yml',
      'dashboards/grafana-dashboard.json',
    ];
    expect(wanted.filter((f) => !packed.has(f))).toEqual([]);
    expect([...packed].filter((f) => f.startsWith('test/') || f.startsWith('bench/'))).toEqual([]);
  });
});
