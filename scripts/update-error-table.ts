// Rewrites the table of docs/errors.md from src/errors.ts (the text around it stays).
// Run: npm run docs:errors  (test/errors.test.ts fails when the two disagree)
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_SPECS } from '../src/errors.js';

const path = new URL('../docs/errors.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const rows = Object.entries(ERROR_SPECS).map(
  ([code, spec]) => `| \`${code}\` | ${spec.meaning} | ${spec.fix} |`,
);
const table = ['| code | meaning | fix |', '| --- | --- | --- |', ...rows].join('\n');
// The first table whose header starts with "| code |", and every row after it.
const re = /^\|\s*code\s*\|[^\n]*\n(?:\|[^\n]*\|\n?)*/m;
if (!re.test(doc)) throw new Error('docs/errors.md has no table headed "| code | meaning | fix |"');
writeFileSync(
  path,
  doc.replace(re, () => `${table}\n`),
);
console.log(`docs/errors.md: ${rows.length} error codes`);
