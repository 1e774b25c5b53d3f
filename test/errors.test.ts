import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_SPECS, MediatorError } from '../src/errors.js';

/** The table of docs/errors.md (written by `npm run docs:errors`), row by row: | `CODE` | meaning | fix | */
function docErrorTable(): Map<string, { meaning: string; fix: string }> {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, { meaning: string; fix: string }>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (m) {
      if (rows.has(m[1]!)) throw new Error(`docs/errors.md lists ${m[1]} twice`);
      rows.set(m[1]!, { meaning: m[2]!.trim(), fix: m[3]!.trim() });
    }
  }
  return rows;
}

describe('error codes', () => {
  it('docs/errors.md lists exactly the codes of src/errors.ts, with the same meaning and fix (npm run docs:errors)', () => {
    const table = docErrorTable();
    expect([...table.keys()].sort()).toEqual(Object.keys(ERROR_SPECS).sort());
    for (const [code, spec] of Object.entries(ERROR_SPECS)) {
      expect(table.get(code), code).toEqual({ meaning: spec.meaning, fix: spec.fix });
    }
  });

  it('MediatorError carries its code and the HTTP status of its spec', () => {
    const err = new MediatorError('SWIOTLB_POOL_FULL', 'full', { size: 1 });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('SWIOTLB_POOL_FULL');
    expect(err.status).toBe(503);
    expect(err.details).toEqual({ size: 1 });
  });
});
