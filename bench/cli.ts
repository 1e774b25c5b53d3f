/**
 * Command-line handling shared by the benchmarks. Every bench answers `--help`
 * (`-h`) with its usage on stdout and exit code 0; an unknown flag or a value it
 * cannot use prints one line naming the flag, and exit code 2, never a stack trace.
 * Value checks throw CLI_USAGE, as the `swiotlb-mediator` commands do; sizes and
 * integers are read by those commands' own parsers (src/cli/args.ts, re-exported
 * here), so both kinds of command word their errors alike.
 */
import type { ParseArgsConfig, parseArgs } from 'node:util';
import { parseCommand, usageLine } from '../src/cli/args.js';
import { isMediatorError, MediatorError } from '../src/errors.js';

export { intFlag, sizeFlag } from '../src/cli/args.js';

type Values<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>['values'];

/**
 * Parses the process's arguments with `config`, then hands the values to `read`,
 * which checks them and returns what the bench runs with. `--help` prints `usage`
 * and exits 0; a usage error in either step prints `<name>: <what is wrong>` and
 * exits 2.
 */
export function benchArgs<T extends ParseArgsConfig, R>(
  name: string,
  usage: string,
  config: T,
  read: (values: Values<T>) => R,
): R {
  try {
    const parsed = parseCommand(name, usage, config);
    if (parsed === undefined) {
      process.stdout.write(`${usage.trim()}\n`);
      process.exit(0);
    }
    return read(parsed.values as Values<T>);
  } catch (err) {
    if (!(isMediatorError(err) && err.code === 'CLI_USAGE')) throw err;
    process.stderr.write(`${usageLine(name, err)}\n`);
    process.exit(2);
  }
}

/** A usage error for a check the helpers below do not cover; {@link benchArgs} reports it. */
export function usageError(message: string): MediatorError {
  return new MediatorError('CLI_USAGE', message);
}

/** A number > 0 (seconds, MiB, rounds). */
export function positiveFlag(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw usageError(`--${flag}: "${value}" must be a number > 0`);
  }
  return n;
}

/** A comma-separated list; `parse` returns undefined for an entry it refuses. */
export function listFlag<V>(
  flag: string,
  value: string,
  parse: (entry: string) => V | undefined,
  expected: string,
): V[] {
  const entries = value.split(',').map((s) => s.trim());
  return entries.map((entry) => {
    const v = entry === '' ? undefined : parse(entry);
    if (v === undefined) throw usageError(`--${flag}: "${entry}" is not ${expected}`);
    return v;
  });
}

/** A comma-separated list of words from `allowed`. */
export function choicesFlag<C extends string>(
  flag: string,
  value: string,
  allowed: readonly C[],
): C[] {
  return listFlag(
    flag,
    value,
    (s) => (allowed.includes(s as C) ? (s as C) : undefined),
    `one of ${allowed.join(', ')}`,
  );
}

/** One word from `allowed`. */
export function choiceFlag<C extends string>(
  flag: string,
  value: string,
  allowed: readonly C[],
): C {
  if (!allowed.includes(value as C)) {
    throw usageError(`--${flag}: "${value}" is not one of ${allowed.join(', ')}`);
  }
  return value as C;
}
