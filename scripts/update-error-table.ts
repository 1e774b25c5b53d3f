// Rewrites the table under "## Error codes" in README.md from src/errors.ts.
// Run: npm run docs:errors  (test/errors.test.ts fails when the two disagree)
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_SPECS } from '../src/errors.js';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const rows = Object.entries(ERROR_SPECS).map(
  ([code, spec]) => `| \`${code}\` | ${spec.meaning} | ${spec.fix} |`,
);
const table = ['| code | meaning | fix |', '| --- | --- | --- |', ...rows].join('\n');
const re = /(## Error codes\n[\s\S]*?\n)(\|\s*code\s*\|[^\n]*\n(?:\|.*\|\n)*)/;
if (!re.test(readme)) throw new Error('README.md has no error table under "## Error codes"');
writeFileSync(
  path,
  readme.replace(re, (_m, head: string) => `${head}${table}\n`),
);
console.log(`README.md: ${rows.length} error codes`);
