import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_SPECS, MediatorError } from '../src/errors.js';

/** The README's error table, row by row: | `CODE` | meaning | fix | */
function readmeErrorTable(): Map<string, { meaning: string; fix: string }> {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.split(/^## Error codes$/m)[1]?.split(/^## /m)[0];
  if (section === undefined) throw new Error('README.md has no "## Error codes" section');
  const rows = new Map<string, { meaning: string; fix: string }>();
  for (const line of section.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (m) rows.set(m[1]!, { meaning: m[2]!.trim(), fix: m[3]!.trim() });
  }
  return rows;
}

describe('error codes', () => {
  it('README lists exactly the codes of src/errors.ts, with the same meaning and fix', () => {
    const table = readmeErrorTable();
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
