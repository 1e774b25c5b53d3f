import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { MediatorError } from '../errors.js';
import type { MediatorSpec } from '../mediator/mediator.js';
import {
  embeddedDefault,
  followFirstPool,
  poolGeometryOptions,
  type ServiceConfig,
  serviceConfigSchema,
} from './schema.js';

/** A value set on the command line, which wins over the file. */
export interface ConfigOverride {
  /** Where it goes in the config, e.g. ["http", "port"] or ["pools", 0, "swiotlb"]. */
  path: readonly (string | number)[];
  value: unknown;
  /** The flag it came from, named in an error message, e.g. "--port". */
  flag: string;
  /**
   * Fields of the same object that the value replaces, removed first (a pool
   * declared on the command line replaces the file's declaration of it).
   * @default none
   */
  replaces?: readonly string[];
}

export interface LoadConfigOptions {
  /** Path of a JSON config file; without it, the embedded default (`{}`). */
  file?: string | undefined;
  /** Command-line values, applied over the file. */
  overrides?: readonly ConfigOverride[];
  /**
   * Folder that relative `file` paths of file-blk devices are resolved against.
   * @default the config file's folder, else the working folder
   */
  baseDir?: string;
}

function badConfig(message: string, details?: Record<string, unknown>): MediatorError {
  return new MediatorError('MEDIATOR_BAD_CONFIG', message, details);
}

/** `devices[0].queueSize`, `http.port`; "config" for the root. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function showValue(value: unknown): string {
  if (value === undefined) return 'a missing value';
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * One issue as a sentence: the field (its path), the value, and what is allowed.
 * `root` names the whole object validated ("the config", "the request").
 */
export function formatIssue(
  issue: z.core.$ZodIssue,
  flagOf: (path: string) => string | undefined = () => undefined,
  root = 'the config',
): string {
  if (issue.code === 'unrecognized_keys') {
    const where = formatPath(issue.path);
    const keys = issue.keys.map((k) => (where ? `${where}.${k}` : k));
    return `${keys.join(', ')}: unknown field${keys.length > 1 ? 's' : ''}; the fields of ${where || root} are ${issue.message}`;
  }
  const path = formatPath(issue.path);
  const flag = flagOf(path);
  const field = path === '' ? '' : flag ? `${path} (${flag}): ` : `${path}: `;
  return `${field}${showValue(issue.input)} is not allowed; expected ${issue.message}`;
}

/**
 * Validates a config object (a parsed file, with the overrides applied) and
 * fills in every default. A wrong config throws MEDIATOR_BAD_CONFIG with one
 * message naming the field, its value and what is allowed.
 */
export function parseConfig(
  raw: unknown,
  opts: { overrides?: readonly ConfigOverride[]; baseDir?: string; source?: string } = {},
): ServiceConfig {
  const source = opts.source ?? 'config';
  const overrides = opts.overrides ?? [];
  let input = raw;
  if (overrides.length > 0 && isPlainObject(raw)) {
    const copy = structuredClone(raw) as Record<string, unknown>;
    // A config that names neither pools nor devices runs the embedded default, a
    // pool per device; a flag that redeclares the first pool keeps it so.
    const embedded = copy.pools === undefined && copy.devices === undefined;
    if (embedded) Object.assign(copy, embeddedDefault());
    for (const o of overrides) setPath(copy, o.path, o.value, o.replaces ?? []);
    if (embedded) followFirstPool(copy.pools as Record<string, unknown>[]);
    input = copy;
  }
  const result = serviceConfigSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    const flags = new Map(overrides.map((o) => [formatPath(o.path), o.flag]));
    const issues = distinctIssues(result.error.issues);
    const first = formatIssue(issues[0]!, (p) => flags.get(p));
    const more =
      issues.length > 1
        ? ` (and ${issues.length - 1} more: ${issues
            .slice(1, 4)
            .map((i) => formatPath(i.path) || 'config')
            .join(', ')}${issues.length > 4 ? ', ...' : ''})`
        : '';
    const details = {
      issues: issues.map((i) => ({ path: formatPath(i.path), message: formatIssue(i) })),
    };
    // A value a flag set is the command line's mistake: a usage error (exit 2), so
    // that a process manager does not restart a command that cannot start.
    if (flags.has(formatPath(issues[0]!.path))) {
      throw new MediatorError('CLI_USAGE', `${source}: ${first}${more}`, details);
    }
    throw badConfig(`${source}: ${first}${more}`, details);
  }
  const config = result.data;
  const baseDir = opts.baseDir ?? process.cwd();
  for (const d of config.devices) if (d.file !== undefined) d.file = resolve(baseDir, d.file);
  checkOwnFiles(config, source);
  return config;
}

/**
 * The issues less repeats: one value can break two checks that say the same
 * thing (a port of 1e20 is neither an exact integer nor at most 65535, both
 * "an integer from 0 to 65535"), which would read "(and 1 more: http.port)"
 * about the field just named.
 */
function distinctIssues(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${formatPath(i.path)}\n${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Each file-blk device has a backing file of its own (paths compared once
 * resolved): two devices on one file would each write it as their own disk and
 * overwrite each other's data without a word.
 */
function checkOwnFiles(config: ServiceConfig, source: string): void {
  const owners = new Map<string, string>();
  config.devices.forEach((d, i) => {
    if (d.file === undefined) return;
    const owner = owners.get(d.file);
    if (owner !== undefined) {
      const path = `devices[${i}].file`;
      const message = `${path}: ${showValue(d.file)} is not allowed; expected a file of its own (it is the backing file of device ${owner})`;
      throw badConfig(`${source}: ${message}`, { issues: [{ path, message }] });
    }
    owners.set(d.file, d.id);
  });
}

/** Reads, validates and resolves the configuration (file, then overrides, then defaults). */
export function loadConfig(opts: LoadConfigOptions = {}): ServiceConfig {
  let raw: unknown = {};
  let source = 'config';
  if (opts.file !== undefined) {
    source = `config file ${opts.file}`;
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw badConfig(`${source}: cannot be read: ${(err as Error).message}`);
    }
    raw = parseJson(text, source);
  }
  return parseConfig(raw, {
    overrides: opts.overrides ?? [],
    baseDir:
      opts.baseDir ?? (opts.file !== undefined ? dirname(resolve(opts.file)) : process.cwd()),
    source,
  });
}

function parseJson(text: string, source: string): unknown {
  // A byte-order mark (Windows editors write one) is invisible in the file and in
  // JSON.parse's message about it; RFC 8259 lets a parser skip it.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (err) {
    const message = (err as Error).message;
    const at = /position (\d+)/.exec(message);
    let where = '';
    if (at) {
      const pos = Number(at[1]);
      const before = body.slice(0, pos).split('\n');
      where = ` (line ${before.length}, column ${before.at(-1)!.length + 1})`;
    }
    throw badConfig(`${source}: is not valid JSON${where}: ${message}`);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Sets `value` at `path` (a number indexes a list, created when missing), after
 * removing the `replaces` fields of the object that receives it.
 */
function setPath(
  target: Record<string, unknown>,
  path: readonly (string | number)[],
  value: unknown,
  replaces: readonly string[],
): void {
  let node: Record<string | number, unknown> = target;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    const next = node[key];
    const wantList = typeof path[i + 1] === 'number';
    if (wantList ? !Array.isArray(next) : !isPlainObject(next)) node[key] = wantList ? [] : {};
    node = node[key] as Record<string | number, unknown>;
  }
  for (const field of replaces) delete node[field];
  node[path.at(-1)!] = value;
}

/** The mediator a resolved configuration describes. */
export function toMediatorSpec(config: ServiceConfig): MediatorSpec {
  return {
    mode: config.mode,
    copy: {
      workers: config.copy.workers,
      inlineThreshold: config.copy.inlineThreshold,
      splitThreshold: config.copy.splitThreshold,
      ringCapacity: config.copy.ringCapacity,
      spinMicros: config.copy.spinMicros,
      // One region per pool and per guest.
      maxRegions: Math.max(64, config.pools.length + config.guests.length),
    },
    pools: config.pools.map((p) => ({
      name: p.name,
      kernel: config.kernel,
      placement: p.placement,
      ...poolGeometryOptions(p),
      backpressure: {
        policy: p.backpressure.policy,
        ...(p.backpressure.waitMs !== undefined ? { waitMs: p.backpressure.waitMs } : {}),
      },
    })),
    guests: config.guests.map((g) => ({ name: g.name, size: g.memory, base: g.base })),
    // A resolved DeviceConfig is a DeviceSpec field for field (the chaos rates copied).
    devices: config.devices.map((d) => ({
      ...d,
      ...(d.chaos !== undefined ? { chaos: { ...d.chaos } } : {}),
    })),
  };
}
