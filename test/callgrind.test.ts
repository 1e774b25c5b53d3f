/** bench/callgrind.ts: the main thread's total from a callgrind output file. */
import { describe, expect, it } from 'vitest';
import { mainThreadInstructions } from '../bench/callgrind.js';

const HEAD = `# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  node bench/instructions-case.js
part: 1
thread: 1

positions: line
events: Ir
`;

describe('callgrind output', () => {
  it('reads the totals line, else the summary line', () => {
    const body = 'fn=(1) main\n16 100\ncalls=2 0\n16 400\nfn=(2) other\n3 7\n';
    expect(mainThreadInstructions(`${HEAD}summary: 507\n\n${body}totals: 1234567890\n`)).toBe(
      1234567890,
    );
    expect(mainThreadInstructions(`${HEAD}summary: 507\n\n${body}`)).toBe(507);
  });

  it('refuses a file that carries neither', () => {
    expect(() => mainThreadInstructions(`${HEAD}fn=(1) main\n16 100\n`)).toThrow(
      /without a totals or summary line/,
    );
  });
});
