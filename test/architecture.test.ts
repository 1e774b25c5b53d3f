import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layout rules of docs/internals.md ("Layout"), checked on the import graph of
 * src/: which folder may import which, and no cycle between folders. The trust
 * boundary is the point: src/devices (the untrusted side) reaches nothing of the
 * guest side, and the guest side reaches the devices only through what both share
 * (src/virtio) and a worker script's path.
 */

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Each folder (a "unit": `errors` is src/errors.ts, `index` is src/index.ts) and what it may import. */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  util: ['errors'],
  swiotlb: ['util', 'errors'],
  virtio: ['util', 'errors'],
  workers: ['swiotlb', 'util', 'errors'],
  mediator: ['swiotlb', 'virtio', 'workers', 'util', 'errors'],
  devices: ['virtio', 'util', 'errors'],
  metrics: ['mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  config: ['mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  workload: ['config', 'metrics', 'mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  server: ['config', 'metrics', 'mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  cli: [
    'server',
    'workload',
    'config',
    'metrics',
    'mediator',
    'swiotlb',
    'virtio',
    'workers',
    'util',
    'errors',
  ],
  index: [
    'server',
    'workload',
    'config',
    'metrics',
    'mediator',
    'swiotlb',
    'virtio',
    'workers',
    'devices',
    'util',
    'errors',
  ],
};

/** Relative import specifiers of a module: static, `export ... from`, and dynamic import(). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (let m = re.exec(source); m !== null; m = re.exec(source)) out.push(m[1]!);
  return out;
}

function unitOf(file: string): string {
  const rel = relative(SRC, file).split(/[\\/]/);
  if (rel.length === 1) return rel[0]!.replace(/\.(ts|js)$/, '');
  return rel[0]!;
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

export interface Edge {
  from: string;
  to: string;
  file: string;
  spec: string;
}

/** Every import between units of src/, given each file's text (overridable, for the planted-violation check). */
export function unitEdges(read: (file: string) => string = (f) => readFileSync(f, 'utf8')): Edge[] {
  const edges: Edge[] = [];
  for (const file of listTs(SRC)) {
    for (const spec of importsOf(read(file))) {
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SRC)) continue;
      const from = unitOf(file);
      const to = unitOf(target);
      if (from !== to) edges.push({ from, to, file: relative(SRC, file), spec });
    }
  }
  return edges;
}

export function forbidden(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => !(ALLOWED[e.from] ?? []).includes(e.to))
    .map((e) => `src/${e.file} imports ${e.spec} (${e.from} -> ${e.to} is not allowed)`);
}

/** Cycles between units (Tarjan's strongly connected components of size > 1). */
export function unitCycles(edges: readonly Edge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!graph.has(e.from)) graph.set(e.from, new Set());
    if (!graph.has(e.to)) graph.set(e.to, new Set());
    graph.get(e.from)!.add(e.to);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('architecture: the import graph of src/', () => {
  const edges = unitEdges();

  it('finds the imports it checks (the walk is not empty)', () => {
    expect(edges.length).toBeGreaterThan(20);
    expect(edges.some((e) => e.from === 'mediator' && e.to === 'virtio')).toBe(true);
    expect(edges.some((e) => e.from === 'devices' && e.to === 'virtio')).toBe(true);
  });

  it('every folder imports only what the layout table allows', () => {
    expect(forbidden(edges)).toEqual([]);
  });

  it('no cycle between folders', () => {
    expect(unitCycles(edges)).toEqual([]);
  });

  it('every folder of src/ is in the table', () => {
    const units = new Set(listTs(SRC).map(unitOf));
    expect([...units].filter((u) => !(u in ALLOWED))).toEqual([]);
  });

  it('fails on a planted violation: a device file importing guest memory', () => {
    const planted = join(SRC, 'devices', 'device-worker.ts');
    const withPlant = (f: string) =>
      readFileSync(f, 'utf8') +
      (f === planted ? "\nimport { GuestMemory } from '../mediator/guest-memory.js';\n" : '');
    const bad = forbidden(unitEdges(withPlant));
    expect(bad).toEqual([
      'src/devices/device-worker.ts imports ../mediator/guest-memory.js (devices -> mediator is not allowed)',
    ]);
  });

  it('fails on a planted cycle between folders', () => {
    const planted = join(SRC, 'swiotlb', 'pool.ts');
    const withPlant = (f: string) =>
      readFileSync(f, 'utf8') +
      (f === planted ? "\nexport * from '../workers/copy-ring.js';\n" : '');
    expect(unitCycles(unitEdges(withPlant))).toEqual([['swiotlb', 'workers']]);
  });

  it('reads every form of import', () => {
    expect(
      importsOf(
        "import { a } from './a.js';\nimport type {\n  B,\n} from '../b.js';\nexport * from './c.js';\nconst d = await import('./d.js');\nimport './e.js';\nimport x from 'node:fs';",
      ),
    ).toEqual(['./a.js', '../b.js', './c.js', './d.js', './e.js']);
  });
});
