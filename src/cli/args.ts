import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MediatorError } from '../errors.js';
import {
  hasDynamicPools,
  isKernelVersion,
  KERNEL_VERSIONS,
  type KernelVersion,
} from '../swiotlb/kernel.js';
import { parseSize } from '../util/size.js';

/** One token of parseArgs' `tokens` (node:util exports no name for it). */
type ParseToken = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number];

/**
 * A usage error as one line, `<command>: <what is wrong> (--help lists the options)`:
 * the parsers below throw CLI_USAGE with only the second part, since the flag
 * parsers do not know their command; the command's caller adds the rest here.
 */
export function usageLine(command: string, err: Error): string {
  return `${command}: ${err.message} (--help lists the options)`;
}

/**
 * Parses a command's arguments strictly (an unknown flag, a missing value, a value
 * given to a boolean flag, or one flag given two different values is an error).
 * Returns undefined when they ask for help (`--help` or `-h` before any `--`):
 * the caller prints its usage. Every flag in `config.options` must appear in
 * `usage`, which is the command's only list of them.
 * @throws CLI_USAGE naming the flag (see {@link usageLine})
 */
export function parseCommand<T extends ParseArgsConfig>(
  command: string,
  usage: string,
  config: T,
): ReturnType<typeof parseArgs<T>> | undefined {
  for (const flag of Object.keys(config.options ?? {})) {
    if (!usage.includes(`--${flag}`)) throw new Error(`${command}: the usage text omits --${flag}`);
  }
  const args = config.args ?? process.argv.slice(2);
  const end = args.indexOf('--');
  const flags = end < 0 ? args : args.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h')) return undefined;
  let parsed: ReturnType<typeof parseArgs<T & { tokens: true }>>;
  try {
    // strict unless the config says otherwise (parseArgs' own default).
    parsed = parseArgs({ ...config, tokens: true });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (!code?.startsWith('ERR_PARSE_ARGS')) throw err;
    throw new MediatorError('CLI_USAGE', parseErrorText(code, (err as Error).message));
  }
  refuseRepeats(config, parsed.tokens ?? []);
  const { tokens: _, ...result } = parsed;
  return result as ReturnType<typeof parseArgs<T>>;
}

/**
 * CLI_USAGE for a flag of one value given twice with different values: parseArgs
 * keeps the last without a word, so `--job a.fio --job b.fio` would run b.fio
 * alone, and a wrapper's `--port 80` lose to a later `--port 81` unseen.
 */
function refuseRepeats(config: ParseArgsConfig, tokens: readonly ParseToken[]): void {
  const seen = new Map<string, string>();
  for (const t of tokens) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    const option = config.options?.[t.name];
    if (option === undefined || option.multiple === true) continue;
    const first = seen.get(t.name);
    // The same value twice says one thing: only a second, different one is refused.
    if (first !== undefined && first !== t.value) {
      throw new MediatorError(
        'CLI_USAGE',
        `--${t.name} given twice ("${first}", then "${t.value}"): give it once`,
      );
    }
    seen.set(t.name, t.value);
  }
}

/**
 * node:util's parse errors in this CLI's words. Its texts are not an API: a text
 * that no longer matches is passed on as its first sentence.
 */
function parseErrorText(code: string, message: string): string {
  const flag = /'(-[^' ]+)/.exec(message)?.[1];
  if (flag !== undefined) {
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${flag}`;
    if (message.includes('argument missing')) return `${flag} needs a value`;
    if (message.includes('does not take an argument')) return `${flag} takes no value`;
    // "--port -1": node reads -1 as a flag; a value with a leading dash needs "=".
    if (message.includes('argument is ambiguous')) {
      return `${flag} needs a value (one that starts with a dash is written ${flag}=-N)`;
    }
  }
  const positional = /^Unexpected argument '(.*)'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && positional !== undefined) {
    return `takes no arguments, got "${positional}"`;
  }
  return message.split(/\.\s/)[0]!;
}

/** CLI_USAGE unless the command was given no positional arguments. */
export function noOperands(positionals: string[]): void {
  if (positionals.length > 0) {
    throw new MediatorError('CLI_USAGE', `takes no arguments, got "${positionals.join(' ')}"`);
  }
}

/** Parsers for flag values; each throws CLI_USAGE naming the flag and the value. */

/**
 * The largest `--seed`: the simulations' PRNG (mulberry32) keeps 32 bits of its
 * seed, so 2^32 + 1 would run as 1 while the report said 4294967297.
 */
export const MAX_SEED = 2 ** 32 - 1;

export function sizeFlag(flag: string, value: string): number;
export function sizeFlag(flag: string, value: string | undefined): number | undefined;
export function sizeFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const bytes = parseSize(value);
  if (bytes === undefined || bytes <= 0) {
    throw new MediatorError(
      'CLI_USAGE',
      `--${flag}: "${value}" is not a size (examples: 64MiB, 4M, 262144)`,
    );
  }
  return bytes;
}

export function intFlag(flag: string, value: string, min?: number, max?: number): number;
export function intFlag(
  flag: string,
  value: string | undefined,
  min?: number,
  max?: number,
): number | undefined;
export function intFlag(
  flag: string,
  value: string | undefined,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const digits = /^(0x[0-9a-f]+|\d+)$/i.test(value.trim());
  const n = digits ? Number(value.trim()) : Number.NaN;
  // An integer past the bound (or past 2^53, where a number is no longer exact)
  // is too large, not "not an integer >= 0".
  if (digits && (n > max || !Number.isSafeInteger(n))) {
    throw new MediatorError('CLI_USAGE', `--${flag}: "${value}" is too large: at most ${max}`);
  }
  if (!Number.isSafeInteger(n) || n < min) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new MediatorError('CLI_USAGE', `--${flag}: "${value}" must be an integer ${range}`);
  }
  return n;
}

/**
 * `--kernel V`: one of the kernel profiles (undefined when not given); with
 * `--dynamic`, one that has CONFIG_SWIOTLB_DYNAMIC (6.6 and later).
 */
export function kernelFlag(value: string | undefined, dynamic = false): KernelVersion | undefined {
  if (value !== undefined && !isKernelVersion(value)) {
    throw new MediatorError(
      'CLI_USAGE',
      `--kernel: "${value}" is not ${KERNEL_VERSIONS.join(', ').replace(/, ([^,]*)$/, ' or $1')}`,
    );
  }
  if (dynamic && value !== undefined && !hasDynamicPools(value)) {
    throw new MediatorError(
      'CLI_USAGE',
      `--dynamic: ${value} has no CONFIG_SWIOTLB_DYNAMIC (6.6 on)`,
    );
  }
  return value;
}

/**
 * The operands of a command that reads one fio job and nothing else (`bench`,
 * `size`): no positional arguments, and `--job FILE`, which it returns.
 */
export function jobOperand(positionals: string[], job: string | undefined): string {
  noOperands(positionals);
  if (!job) throw new MediatorError('CLI_USAGE', '--job FILE is required');
  return job;
}

/**
 * Refuses, before any work, an output file the command could not write at the
 * end (`bench --html`, `--save-job`): a directory, or a path whose folder does
 * not exist or is not writable, would lose a long run's report.
 * @throws CLI_USAGE naming the flag
 */
export function outputFileFlag(flag: string, path: string | undefined): void {
  if (path === undefined) return;
  const why = (() => {
    if (path === '') return 'is empty';
    try {
      if (statSync(path).isDirectory()) return 'is a directory';
    } catch {
      // A file that does not exist yet: its folder decides.
    }
    const dir = dirname(resolve(path));
    try {
      if (!statSync(dir).isDirectory()) return `is in ${dir}, which is not a directory`;
      accessSync(dir, constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT'
        ? `is in ${dir}, which does not exist`
        : `cannot be written in ${dir} (${code})`;
    }
    return undefined;
  })();
  if (why) throw new MediatorError('CLI_USAGE', `--${flag}: "${path}" ${why}`);
}
