import { describe, expect, it } from 'vitest';
import { intFlag, jobOperand, parseCommand, usageLine } from '../src/cli/args.js';
import { isMediatorError } from '../src/errors.js';
import { runCli } from './helpers/run-cli.js';

const USAGE = 'Usage: x [--job FILE] [--json] [--count N]';
const OPTIONS = {
  job: { type: 'string' },
  json: { type: 'boolean' },
  count: { type: 'string' },
} as const;

/** The CLI_USAGE message `fn` throws, or a failure when it throws something else or nothing. */
function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err) && err.code === 'CLI_USAGE') return err.message;
    throw err;
  }
  throw new Error('expected a CLI_USAGE error');
}

describe('parseCommand', () => {
  const parse = (args: string[]) =>
    parseCommand('x', USAGE, { args, allowPositionals: true, options: OPTIONS });

  it('returns the values and operands', () => {
    const r = parse(['--job', 'a.fio', '--json', 'extra']);
    expect(r?.values).toEqual({ job: 'a.fio', json: true });
    expect(r?.positionals).toEqual(['extra']);
  });

  it('returns undefined for --help or -h anywhere before --, even beside a bad flag', () => {
    expect(parse(['--help'])).toBeUndefined();
    expect(parse(['--bogus', '-h'])).toBeUndefined();
    expect(parse(['--', '--help'])?.positionals).toEqual(['--help']);
  });

  it("words node:util's parse errors as one short sentence naming the flag", () => {
    expect(usageError(() => parse(['--iodepth', '4']))).toBe('unknown option --iodepth');
    expect(usageError(() => parse(['-z']))).toBe('unknown option -z');
    expect(usageError(() => parse(['--job']))).toBe('--job needs a value');
    expect(usageError(() => parse(['--json=yes']))).toBe('--json takes no value');
    // A value with a leading dash reads as a flag: node's three lines, in one.
    expect(usageError(() => parse(['--job', '-1']))).toBe(
      '--job needs a value (one that starts with a dash is written --job=-N)',
    );
    const noOperands = () => parseCommand('x', USAGE, { args: ['stray'], options: OPTIONS });
    expect(usageError(noOperands)).toBe('takes no arguments, got "stray"');
  });

  it('refuses a usage text that omits one of its flags (a programming error, not CLI_USAGE)', () => {
    expect(() =>
      parseCommand('x', 'Usage: x [--job FILE]', { args: [], options: OPTIONS }),
    ).toThrow('x: the usage text omits --json');
  });

  it('usageLine puts the command and the pointer to --help around the message', () => {
    const message = usageError(() => intFlag('count', 'many', 1));
    expect(usageLine('size', new Error(message))).toBe(
      'size: --count: "many" must be an integer >= 1 (--help lists the options)',
    );
    expect(usageError(() => jobOperand([], undefined))).toBe('--job FILE is required');
    expect(usageError(() => jobOperand(['a', 'b'], 'j.fio'))).toBe('takes no arguments, got "a b"');
  });
});

describe('swiotlb-mediator usage errors (process)', () => {
  it.each([
    [['size', '--iodepth', '0'], 'swiotlb-mediator size: unknown option --iodepth'],
    [['bench', '--job'], 'swiotlb-mediator bench: --job needs a value'],
    [['serve', 'stray'], 'swiotlb-mediator serve: takes no arguments, got "stray"'],
    [['replay', 'a', 'b'], 'swiotlb-mediator replay: takes one input file, got 2: "a b"'],
    [['replay', '--slots', '0'], 'swiotlb-mediator replay: --slots: "0" must be an integer >= 1'],
  ])(
    '%j: one line on stderr, exit 2',
    async (args, line) => {
      const { code, stdout, stderr } = await runCli(args);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toEqual([`${line} (--help lists the options)`]);
      expect(code).toBe(2);
    },
    30_000,
  );
});
