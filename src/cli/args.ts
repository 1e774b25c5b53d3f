import { MediatorError } from '../errors.js';
import { parseSize } from '../util/size.js';

/** Parsers for flag values; each throws CLI_USAGE naming the flag and the value. */

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

export function intFlag(flag: string, value: string, min?: number): number;
export function intFlag(flag: string, value: string | undefined, min?: number): number | undefined;
export function intFlag(flag: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new MediatorError('CLI_USAGE', `--${flag}: "${value}" must be an integer >= ${min}`);
  }
  return n;
}

/**
 * The operands of a command that reads one fio job and nothing else (`bench`,
 * `size`): no positional arguments, and `--job FILE`, which it returns.
 */
export function jobOperand(
  command: string,
  positionals: string[],
  job: string | undefined,
): string {
  if (positionals.length > 0) {
    throw new MediatorError(
      'CLI_USAGE',
      `${command}: takes no arguments, got "${positionals.join(' ')}"`,
    );
  }
  if (!job) throw new MediatorError('CLI_USAGE', `${command}: --job FILE is required`);
  return job;
}
