/**
 * fio job files, as far as this runner can honour them.
 *
 * Syntax (fio's): an INI file of sections. `[global]` sets defaults for the job
 * sections that follow it (a later `[global]` changes the defaults of later jobs
 * only, as in fio); every other section is a job, cloned `numjobs` times. Lines
 * starting with `;` or `#` are comments, and so is the rest of a line after
 * whitespace and `;` or `#`. `key=value` or a bare `key` (a flag: `time_based`).
 * Sizes take fio's suffixes with k = 1024 (`4k`, `1m`, `1g`, `64KiB`); times
 * are seconds unless suffixed (`us`, `ms`, `s`, `m`, `h`).
 *
 * Unknown and unsupported options are never ignored silently:
 * - options that change nothing here (where fio would do I/O, how fio reports)
 *   are WARNINGS ({@link IGNORED_OPTIONS}): `ioengine`, `direct`, `filename`...;
 * - every other option this runner does not implement is an ERROR
 *   (JOB_UNSUPPORTED_OPTION) that lists each one by name and line.
 */

import { MediatorError } from '../errors.js';
import {
  BACKPRESSURE_DEFAULTS,
  type BackpressurePolicy,
  backpressurePolicy,
  FROM_DEVICE_BOUNCES,
  type FromDeviceBounce,
} from '../mediator/defaults.js';
import { isMinAlignMask, LIMITS, MAX_MIN_ALIGN_MASK } from '../mediator/limits.js';
import { WriteFill } from '../mediator/write-fill.js';
import { parseSwiotlbParameter } from '../swiotlb/geometry.js';
import {
  DEFAULT_KERNEL,
  isKernelVersion,
  KERNEL_VERSIONS,
  type KernelVersion,
} from '../swiotlb/kernel.js';
import { DEFAULT_PLACEMENT, isPlacement, PLACEMENTS, type Placement } from '../swiotlb/warm.js';
import { mulberry32 } from '../util/prng.js';
import { parseSize } from '../util/size.js';
import { SECTOR_SIZE } from '../virtio/blk-format.js';

export type RwMode = 'read' | 'write' | 'randread' | 'randwrite' | 'randrw' | 'rw';

/**
 * The modes a job runs in, each on a Mediator of its own:
 * - `bounce`: Linux's swiotlb (reads bounced as `from_device_bounce` says, `linux`
 *   by default);
 * - `bounce-tuned`: bounce with this project's options that cost less and keep
 *   the isolation: warm placement (`placement=warm`) and reads without the
 *   copy-in (`used-length`);
 * - `direct`: no isolation (the baseline);
 * - `shared`: request buffers allocated in the pool, no copies (on warm placement
 *   unless the job sets `placement=`: {@link jobPlacement}).
 */
export const JOB_MODES = ['bounce', 'bounce-tuned', 'shared', 'direct'] as const;
export type JobMode = (typeof JOB_MODES)[number];
/** A job's `mode=`: one mode, `both` (bounce then direct) or `all` (every mode, direct last). */
export type RunMode = JobMode | 'both' | 'all';
export const RUN_MODES: readonly RunMode[] = [...JOB_MODES, 'both', 'all'];

/**
 * The mode of a job that sets no `mode=`: the service's own (bounce with warm
 * placement and reads without the copy-in), which measures best of the modes
 * that keep the guest's data private (docs/performance.md, "The service's
 * defaults"). `bounce` stays Linux's, to be asked for by name.
 */
export const DEFAULT_RUN_MODE: RunMode = 'bounce-tuned';

/** The modes `mode=` runs, in order. */
export function modesOf(mode: RunMode): JobMode[] {
  if (mode === 'both') return ['bounce', 'direct'];
  if (mode === 'all') return [...JOB_MODES];
  return [mode];
}
export type JobDevice = 'null' | 'ram-blk' | 'file-blk';

/** One entry of a block size split: `size` bytes for `percent` % of the I/Os. */
export interface BsSplitEntry {
  size: number;
  percent: number;
}

/** A job section, with `[global]` merged in and every default filled. */
export interface FioJob {
  name: string;
  /** Index of the section among the job sections (0-based). */
  index: number;
  rw: RwMode;
  /** Block sizes (with their share) for reads and for writes. */
  bs: { read: BsSplitEntry[]; write: BsSplitEntry[] };
  /** Percentage of reads in a mixed workload (randrw, rw). */
  rwmixread: number;
  iodepth: number;
  numjobs: number;
  /** Region each clone does I/O in, bytes. */
  size: number;
  /** Bytes each clone transfers before it stops (unless time_based or number_ios). */
  ioSize: number;
  /** Seconds; undefined when not given. */
  runtime: number | undefined;
  timeBased: boolean;
  /** Seconds run before measuring. */
  rampTime: number;
  numberIos: number | undefined;
  randseed: number;
  device: JobDevice;
  minAlignMask: number;
  /**
   * What each write does to its buffer before it is mapped, as fio does
   * (`refill_buffers`, `scramble_buffers`, `zero_buffers`: write-fill.ts).
   * @default WriteFill.SCRAMBLE, fio's default
   */
  writeFill: WriteFill;
  /** The options as written (merged with global), for the report's "job options". */
  options: Record<string, string>;
}

/** Settings that apply to the whole run (one mediator); must agree across jobs. */
export interface RunSettings {
  mode: RunMode;
  /** Whose swiotlb rules the pool follows (`kernel=`). */
  kernel: KernelVersion;
  /** What mode `bounce` copies for reads; `bounce-tuned` always uses `used-length`. */
  fromDeviceBounce: FromDeviceBounce;
  /**
   * `placement=`: which free slots the pool hands out; undefined when the job does
   * not say (then {@link jobPlacement}: `linux`, but `warm` in modes `bounce-tuned`,
   * always, and `shared`, as the service runs it).
   */
  placement: Placement | undefined;
  /**
   * `pool_size=`: the bytes an architecture asks for (swiotlb_adjust_size());
   * undefined = Linux's default pool (64 MiB) unless `swiotlb=` or `restricted=`.
   */
  poolSize: number | undefined;
  /** `swiotlb=N`: the kernel parameter's nslabs, before the kernel's rounding. */
  slots: number | undefined;
  /** `areas=` or `swiotlb=N,A`; undefined = the largest numjobs, rounded up to a power of two. */
  areas: number | undefined;
  /** `restricted=SIZE`: a restricted-dma-pool of SIZE bytes (exact slots, one area). */
  restricted: number | undefined;
  copyWorkers: number | undefined;
  backpressure: BackpressurePolicy;
}

export interface JobFile {
  settings: RunSettings;
  jobs: FioJob[];
  /** Options that were read and ignored, each with why (print them). */
  warnings: string[];
  /** `[global]` options as written (the last global section). */
  globalOptions: Record<string, string>;
}

/** fio options read and ignored, with why: they do not change the I/O pattern here. */
export const IGNORED_OPTIONS: Readonly<Record<string, string>> = {
  ioengine: 'I/O goes through the in-process mediator, not an fio engine',
  direct: 'there is no page cache between the runner and the device',
  buffered: 'there is no page cache between the runner and the device',
  filename: 'I/O goes to the in-process device chosen by "device"',
  directory: 'I/O goes to the in-process device chosen by "device"',
  name: 'the section name is the job name',
  description: 'descriptive only',
  group_reporting: 'the report always has per-clone entries and a total',
  thread: 'clones are async submitters on one thread (one queue each)',
  invalidate: 'there is no page cache to invalidate',
  randrepeat: 'random offsets always repeat (seeded by randseed)',
  norandommap: 'random offsets are drawn without a map',
  iodepth_batch_submit: 'each request is submitted as soon as a slot is free',
  iodepth_batch_complete_min: 'completions are reaped one by one',
  output: 'use --json / --html',
  'output-format': 'use --json',
};

const KNOWN_OPTIONS = new Set([
  'rw',
  'readwrite',
  'bs',
  'blocksize',
  'bssplit',
  'rwmixread',
  'rwmixwrite',
  'iodepth',
  'numjobs',
  'size',
  'io_size',
  'io_limit',
  'runtime',
  'timeout',
  'time_based',
  'ramp_time',
  'number_ios',
  'randseed',
  'scramble_buffers',
  'zero_buffers',
  'refill_buffers',
  // this project's options
  'mode',
  'from_device_bounce',
  'placement',
  'device',
  'pool_size',
  'areas',
  'min_align_mask',
  'copy_workers',
  'backpressure',
  'kernel',
  'swiotlb',
  'restricted',
]);

/** Options that configure the one mediator: the same in every job. */
const RUN_OPTIONS = [
  'mode',
  'from_device_bounce',
  'placement',
  'pool_size',
  'areas',
  'copy_workers',
  'backpressure',
  'kernel',
  'swiotlb',
  'restricted',
] as const;

const MAX_BS = 16 * 2 ** 20;
const DEFAULT_SIZE = 64 * 2 ** 20;

function bad(message: string, details?: Record<string, unknown>): MediatorError {
  return new MediatorError('JOB_BAD_FILE', message, details);
}

interface RawOption {
  value: string;
  line: number;
}

interface RawSection {
  name: string;
  line: number;
  options: Map<string, RawOption>;
}

/** Splits the file into sections; each job section gets the global options in force where it starts. */
function parseIni(text: string, source: string): { jobs: RawSection[]; global: RawSection } {
  let global: RawSection = { name: 'global', line: 0, options: new Map() };
  const jobs: RawSection[] = [];
  let current: RawSection | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    line = line.replace(/\s+[;#].*$/, '').trim();
    const header = /^\[([^\]]*)\]$/.exec(line);
    if (header) {
      const name = header[1]!.trim();
      if (name === '') throw bad(`${source}:${lineNo}: empty section name "[]"`);
      if (name === 'global') {
        // A later [global] changes the defaults of the jobs after it only.
        global = { name, line: lineNo, options: new Map(global.options) };
        current = global;
      } else {
        if (jobs.some((j) => j.name === name)) {
          throw bad(`${source}:${lineNo}: job section [${name}] is defined twice`);
        }
        current = { name, line: lineNo, options: new Map(global.options) };
        jobs.push(current);
      }
      continue;
    }
    if (line.startsWith('[')) throw bad(`${source}:${lineNo}: "${line}" is not a [section] line`);
    if (!current) {
      throw bad(`${source}:${lineNo}: option "${line}" comes before any [section]`);
    }
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? '' : line.slice(eq + 1).trim();
    if (!/^[a-z_][a-z0-9_-]*$/.test(key)) {
      throw bad(`${source}:${lineNo}: "${line}" is not "option=value" nor a flag`);
    }
    current.options.set(key, { value, line: lineNo });
  }
  return { jobs, global };
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

interface Ctx {
  source: string;
  job: string;
}

function where(ctx: Ctx, key: string, o: RawOption): string {
  return `${ctx.source}:${o.line}: [${ctx.job}] ${key}=${o.value}`;
}

/** A fio size: 4k, 1m, 1g, 64KiB, 4096 (k = 1024). */
export function parseFioSize(value: string): number | undefined {
  const bytes = parseSize(value);
  return bytes !== undefined && Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** A fio time in seconds: "10" (seconds), "500ms", "30s", "2m", "1h", "100us". */
export function parseFioTime(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|usec|ms|msec|s|sec|m|min|h|d)?\s*$/i.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? 's').toLowerCase();
  const scale: Record<string, number> = {
    us: 1e-6,
    usec: 1e-6,
    ms: 1e-3,
    msec: 1e-3,
    s: 1,
    sec: 1,
    m: 60,
    min: 60,
    h: 3600,
    d: 86400,
  };
  return n * scale[unit]!;
}

function intValue(ctx: Ctx, key: string, o: RawOption, min: number, max: number): number {
  const v = o.value.trim();
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw bad(`${where(ctx, key, o)}: must be an integer from ${min} to ${max}`);
  }
  return n;
}

function boolValue(ctx: Ctx, key: string, o: RawOption): boolean {
  const v = o.value.trim().toLowerCase();
  if (v === '' || v === '1' || v === 'true' || v === 'yes' || v === 'on') return true;
  if (v === '0' || v === 'false' || v === 'no' || v === 'off') return false;
  throw bad(`${where(ctx, key, o)}: must be 0 or 1 (or the bare flag)`);
}

function blockSize(ctx: Ctx, key: string, o: RawOption, text: string): number {
  const n = parseFioSize(text);
  if (n === undefined || n <= 0) throw bad(`${where(ctx, key, o)}: "${text}" is not a size`);
  if (n % SECTOR_SIZE !== 0) {
    throw bad(
      `${where(ctx, key, o)}: ${n} bytes is not a multiple of ${SECTOR_SIZE} (virtio-blk sectors)`,
    );
  }
  if (n > MAX_BS) throw bad(`${where(ctx, key, o)}: ${n} bytes is larger than 16 MiB`);
  return n;
}

/** "4k/50:64k/50" (entries without a percentage share what is left equally). */
function parseSplit(ctx: Ctx, key: string, o: RawOption, text: string): BsSplitEntry[] {
  const parts = text.split(':').filter((p) => p.trim() !== '');
  if (parts.length === 0) throw bad(`${where(ctx, key, o)}: empty block size split`);
  const entries: { size: number; percent: number | undefined }[] = parts.map((p) => {
    const [s, pct, ...rest] = p.split('/');
    if (rest.length > 0) throw bad(`${where(ctx, key, o)}: "${p}" is not size/percentage`);
    const size = blockSize(ctx, key, o, s!.trim());
    if (pct === undefined || pct.trim() === '') return { size, percent: undefined };
    const percent = Number(pct.trim());
    if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw bad(`${where(ctx, key, o)}: "${pct}" is not a percentage from 0 to 100`);
    }
    return { size, percent };
  });
  const given = entries.reduce((s, e) => s + (e.percent ?? 0), 0);
  const open = entries.filter((e) => e.percent === undefined).length;
  if (given > 100 + 1e-9) throw bad(`${where(ctx, key, o)}: percentages add up to ${given}`);
  const share = open > 0 ? (100 - given) / open : 0;
  const out = entries.map((e) => ({ size: e.size, percent: e.percent ?? share }));
  const total = out.reduce((s, e) => s + e.percent, 0);
  if (Math.abs(total - 100) > 1e-6) {
    throw bad(`${where(ctx, key, o)}: percentages add up to ${total}, not 100`);
  }
  return out.filter((e) => e.percent > 0);
}

const RW_VALUES: Record<string, RwMode> = {
  read: 'read',
  write: 'write',
  randread: 'randread',
  randwrite: 'randwrite',
  randrw: 'randrw',
  rw: 'rw',
  readwrite: 'rw',
};

// ---------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------

/**
 * Parses a fio job file.
 * @throws JOB_BAD_FILE (syntax, a value that does not parse, nothing to run),
 *   JOB_UNSUPPORTED_OPTION (options this runner cannot honour, all listed)
 */
export function parseJobFile(text: string, source = 'job file'): JobFile {
  const { jobs: rawJobs, global } = parseIni(text, source);
  if (rawJobs.length === 0) {
    throw bad(`${source}: no job section (a [name] section other than [global])`);
  }

  // Every option of every section is either known, ignored (warned) or reported.
  const unsupported = new Map<string, number[]>();
  const warnings: string[] = [];
  const warned = new Set<string>();
  for (const section of [global, ...rawJobs]) {
    for (const [key, o] of section.options) {
      if (KNOWN_OPTIONS.has(key)) continue;
      const why = IGNORED_OPTIONS[key];
      if (why !== undefined) {
        if (!warned.has(key)) {
          warned.add(key);
          warnings.push(`${source}:${o.line}: "${key}" ignored: ${why}`);
        }
        continue;
      }
      const lines = unsupported.get(key) ?? [];
      if (!lines.includes(o.line)) lines.push(o.line);
      unsupported.set(key, lines);
    }
  }
  if (unsupported.size > 0) {
    const list = [...unsupported].map(([k, lines]) => `${k} (line ${lines.join(', ')})`);
    throw new MediatorError(
      'JOB_UNSUPPORTED_OPTION',
      `${source}: fio option${unsupported.size > 1 ? 's' : ''} this runner cannot honour: ${list.join('; ')}`,
      { options: [...unsupported.keys()] },
    );
  }

  const jobs = rawJobs.map((s, index) => parseJob(s, index, source));
  const settings = runSettings(rawJobs, source);
  return {
    settings,
    jobs,
    warnings,
    globalOptions: Object.fromEntries([...global.options].map(([k, o]) => [k, o.value])),
  };
}

function runSettings(sections: RawSection[], source: string): RunSettings {
  for (const key of RUN_OPTIONS) {
    const values = new Set(sections.map((s) => s.options.get(key)?.value));
    if (values.size > 1) {
      throw bad(
        `${source}: "${key}" differs between jobs (${[...values].map((v) => v ?? 'unset').join(' vs ')}); all jobs share one mediator: set it in [global]`,
      );
    }
  }
  const first = sections[0]!;
  const ctx: Ctx = { source, job: first.name };
  const get = (k: string) => first.options.get(k);
  const settings: RunSettings = {
    mode: DEFAULT_RUN_MODE,
    kernel: DEFAULT_KERNEL,
    fromDeviceBounce: 'linux',
    placement: undefined,
    poolSize: undefined,
    slots: undefined,
    areas: undefined,
    restricted: undefined,
    copyWorkers: undefined,
    backpressure: BACKPRESSURE_DEFAULTS.policy,
  };
  const mode = get('mode');
  if (mode) {
    if (!RUN_MODES.includes(mode.value as RunMode)) {
      throw bad(`${where(ctx, 'mode', mode)}: must be ${RUN_MODES.join(', ')}`);
    }
    settings.mode = mode.value as RunMode;
  }
  const fdb = get('from_device_bounce');
  if (fdb) {
    if (!FROM_DEVICE_BOUNCES.includes(fdb.value as FromDeviceBounce)) {
      throw bad(
        `${where(ctx, 'from_device_bounce', fdb)}: must be ${FROM_DEVICE_BOUNCES.join(' or ')}`,
      );
    }
    settings.fromDeviceBounce = fdb.value as FromDeviceBounce;
  }
  const placement = get('placement');
  if (placement) {
    if (!isPlacement(placement.value)) {
      throw bad(`${where(ctx, 'placement', placement)}: must be ${PLACEMENTS.join(' or ')}`);
    }
    settings.placement = placement.value;
  }
  poolSettings(ctx, get, settings);
  const cw = get('copy_workers');
  if (cw) settings.copyWorkers = intValue(ctx, 'copy_workers', cw, ...LIMITS.copyWorkers);
  const bp = get('backpressure');
  if (bp) {
    const policy = backpressurePolicy(bp.value);
    if (policy === undefined) {
      throw bad(
        `${where(ctx, 'backpressure', bp)}: must be requeue (Linux's virtio-blk), requeue-bounded (the service's; "wait" is its old name) or fail (the DMA API's)`,
      );
    }
    settings.backpressure = policy;
  }
  const kernel = get('kernel');
  if (kernel) {
    if (!isKernelVersion(kernel.value)) {
      throw bad(`${where(ctx, 'kernel', kernel)}: must be ${KERNEL_VERSIONS.join(', ')}`);
    }
    settings.kernel = kernel.value;
  }
  return settings;
}

/**
 * The pool, in the kernel's terms: `swiotlb=N[,A]` (the kernel parameter),
 * `pool_size=` (swiotlb_adjust_size()) and `areas=`, or `restricted=SIZE` (a
 * restricted-dma-pool) alone. Combinations the kernel has no words for are errors.
 */
function poolSettings(ctx: Ctx, get: Get, settings: RunSettings): void {
  const pool = get('pool_size');
  if (pool) {
    const n = parseFioSize(pool.value);
    if (n === undefined || n <= 0) throw bad(`${where(ctx, 'pool_size', pool)}: not a size`);
    settings.poolSize = n;
  }
  const areas = get('areas');
  if (areas) settings.areas = intValue(ctx, 'areas', areas, ...LIMITS.areas);
  const sw = get('swiotlb');
  if (sw) {
    const p = parseSwiotlbParameter(sw.value);
    if (
      p === undefined ||
      p.force ||
      p.noforce ||
      (p.slots === undefined && p.areas === undefined)
    ) {
      throw bad(
        `${where(ctx, 'swiotlb', sw)}: must be <nslabs>[,<nareas>] as the kernel parameter takes it (e.g. swiotlb=8192,2), without force/noforce`,
      );
    }
    if (areas && p.areas !== undefined) {
      throw bad(`${where(ctx, 'swiotlb', sw)}: gives the areas, and so does areas=: give one`);
    }
    if (pool && p.slots !== undefined) {
      throw bad(
        `${where(ctx, 'swiotlb', sw)}: gives the slots, and pool_size= the size: the kernel ignores the size (swiotlb_adjust_size()) once swiotlb=<nslabs> is given; give one`,
      );
    }
    settings.slots = p.slots;
    if (p.areas !== undefined) settings.areas = p.areas;
  }
  const restricted = get('restricted');
  if (restricted) {
    const n = parseFioSize(restricted.value);
    if (n === undefined || n <= 0) {
      throw bad(`${where(ctx, 'restricted', restricted)}: not a size`);
    }
    const other = ['pool_size', 'areas', 'swiotlb'].find((k) => get(k) !== undefined);
    if (other !== undefined) {
      throw bad(
        `${where(ctx, 'restricted', restricted)}: a restricted-dma-pool is given by its size alone (exact slots, one area): no ${other}=`,
      );
    }
    settings.restricted = n;
  }
}

/** Reads one option of a job section (`[global]` merged in). */
type Get = (key: string) => RawOption | undefined;

function parseJob(s: RawSection, index: number, source: string): FioJob {
  const ctx: Ctx = { source, job: s.name };
  const get: Get = (k) => s.options.get(k);
  const pattern = ioPattern(ctx, get);
  const maxBs = Math.max(
    ...pattern.bs.read.map((e) => e.size),
    ...pattern.bs.write.map((e) => e.size),
  );
  return {
    name: s.name,
    index,
    ...pattern,
    ...concurrency(ctx, get),
    ...extent(ctx, get, maxBs),
    ...timing(ctx, get),
    ...target(ctx, get),
    writeFill: bufferFill(ctx, get),
    options: Object.fromEntries([...s.options].map(([k, o]) => [k, o.value])),
  };
}

/** rw, bs / bssplit and rwmixread: what each I/O is. */
function ioPattern(ctx: Ctx, get: Get): Pick<FioJob, 'rw' | 'bs' | 'rwmixread'> {
  let rw: RwMode = 'read';
  const rwOpt = get('rw') ?? get('readwrite');
  if (rwOpt) {
    const v = RW_VALUES[rwOpt.value.trim().toLowerCase()];
    if (!v) {
      throw bad(
        `${where(ctx, 'rw', rwOpt)}: must be read, write, randread, randwrite, randrw or rw (trim and ":N" offsets are not supported)`,
      );
    }
    rw = v;
  }

  let read: BsSplitEntry[] = [{ size: 4096, percent: 100 }];
  let write = read;
  const bssplit = get('bssplit');
  const bsOpt = get('bs') ?? get('blocksize');
  if (bssplit) {
    const [r, w, ...rest] = bssplit.value.split(',');
    if (rest.length > 0) throw bad(`${where(ctx, 'bssplit', bssplit)}: at most "reads,writes"`);
    read = parseSplit(ctx, 'bssplit', bssplit, r!);
    write = w !== undefined && w.trim() !== '' ? parseSplit(ctx, 'bssplit', bssplit, w) : read;
  } else if (bsOpt) {
    const [r, w, ...rest] = bsOpt.value.split(',');
    if (rest.length > 0) throw bad(`${where(ctx, 'bs', bsOpt)}: at most "read,write" sizes`);
    read = [{ size: blockSize(ctx, 'bs', bsOpt, r!.trim()), percent: 100 }];
    write =
      w !== undefined && w.trim() !== ''
        ? [{ size: blockSize(ctx, 'bs', bsOpt, w.trim()), percent: 100 }]
        : read;
  }

  let rwmixread = 50;
  const mixR = get('rwmixread');
  const mixW = get('rwmixwrite');
  // fio's HOWTO (rwmixwrite): when both are given and do not add up to 100%, the
  // second one overrides the first: here, the one on the later line.
  if (mixR && (!mixW || mixR.line > mixW.line)) {
    rwmixread = intValue(ctx, 'rwmixread', mixR, 0, 100);
    if (mixW) intValue(ctx, 'rwmixwrite', mixW, 0, 100); // still a valid value
  } else if (mixW) {
    rwmixread = 100 - intValue(ctx, 'rwmixwrite', mixW, 0, 100);
    if (mixR) intValue(ctx, 'rwmixread', mixR, 0, 100);
  }
  return { rw, bs: { read, write }, rwmixread };
}

/** iodepth and numjobs, within what a device takes (its depth and queues). */
function concurrency(ctx: Ctx, get: Get): Pick<FioJob, 'iodepth' | 'numjobs'> {
  const iodepthOpt = get('iodepth');
  const iodepth = iodepthOpt ? intValue(ctx, 'iodepth', iodepthOpt, ...LIMITS.depth) : 1;
  const numjobsOpt = get('numjobs');
  const numjobs = numjobsOpt ? intValue(ctx, 'numjobs', numjobsOpt, ...LIMITS.queues) : 1;
  return { iodepth, numjobs };
}

/** size (whole sectors, at least the largest block) and io_size / io_limit. */
function extent(ctx: Ctx, get: Get, maxBs: number): Pick<FioJob, 'size' | 'ioSize'> {
  let size = DEFAULT_SIZE;
  const sizeOpt = get('size');
  if (sizeOpt) {
    const n = parseFioSize(sizeOpt.value);
    if (n === undefined || n <= 0) throw bad(`${where(ctx, 'size', sizeOpt)}: not a size`);
    size = n;
  }
  size = Math.floor(size / SECTOR_SIZE) * SECTOR_SIZE;
  if (size < maxBs) {
    throw bad(`${ctx.source}: [${ctx.job}] size ${size} is smaller than the block size ${maxBs}`);
  }
  let ioSize = size;
  const ioOpt = get('io_size') ?? get('io_limit');
  if (ioOpt) {
    const n = parseFioSize(ioOpt.value);
    if (n === undefined || n <= 0) throw bad(`${where(ctx, 'io_size', ioOpt)}: not a size`);
    ioSize = n;
  }
  return { size, ioSize };
}

/** runtime / timeout, ramp_time, time_based and number_ios: when a clone stops. */
function timing(
  ctx: Ctx,
  get: Get,
): Pick<FioJob, 'runtime' | 'timeBased' | 'rampTime' | 'numberIos'> {
  const time = (key: string): number | undefined => {
    const o = get(key);
    if (!o) return undefined;
    const t = parseFioTime(o.value);
    if (t === undefined) throw bad(`${where(ctx, key, o)}: not a time (examples: 10, 30s, 2m)`);
    return t;
  };
  const runtime = time('runtime') ?? time('timeout');
  const rampTime = time('ramp_time') ?? 0;
  const tb = get('time_based');
  const timeBased = tb ? boolValue(ctx, 'time_based', tb) : false;
  if (timeBased && (runtime === undefined || runtime <= 0)) {
    throw bad(`${ctx.source}: [${ctx.job}] time_based needs a runtime (it would run forever)`);
  }
  const nio = get('number_ios');
  const numberIos = nio ? intValue(ctx, 'number_ios', nio, 1, Number.MAX_SAFE_INTEGER) : undefined;
  return { runtime, timeBased, rampTime, numberIos };
}

/**
 * refill_buffers, scramble_buffers, zero_buffers: what a write does to its buffer,
 * by fio's rules (io_u.c get_io_u(): refill first; init.c init_flags(): scramble
 * when `scramble_buffers` is set explicitly, or by its default 1 unless
 * `zero_buffers` is set). fio also skips the scramble under compression or
 * verify, options this runner does not take.
 */
function bufferFill(ctx: Ctx, get: Get): WriteFill {
  const refill = get('refill_buffers');
  if (refill && boolValue(ctx, 'refill_buffers', refill)) return WriteFill.REFILL;
  const scr = get('scramble_buffers');
  const zero = get('zero_buffers');
  const scramble = scr ? boolValue(ctx, 'scramble_buffers', scr) : true;
  const zeroed = zero ? boolValue(ctx, 'zero_buffers', zero) : false;
  return scramble && (scr !== undefined || !zeroed) ? WriteFill.SCRAMBLE : WriteFill.NONE;
}

/** randseed, device and min_align_mask: what the I/O goes to. */
function target(ctx: Ctx, get: Get): Pick<FioJob, 'randseed' | 'device' | 'minAlignMask'> {
  const seedOpt = get('randseed');
  const randseed = seedOpt ? intValue(ctx, 'randseed', seedOpt, 0, 2 ** 32 - 1) : 0x5eed;
  let device: JobDevice = 'ram-blk';
  const dev = get('device');
  if (dev) {
    if (dev.value !== 'null' && dev.value !== 'ram-blk' && dev.value !== 'file-blk') {
      throw bad(`${where(ctx, 'device', dev)}: must be null, ram-blk or file-blk`);
    }
    device = dev.value;
  }
  let minAlignMask = 0;
  const mam = get('min_align_mask');
  if (mam) {
    minAlignMask = intValue(ctx, 'min_align_mask', mam, 0, MAX_MIN_ALIGN_MASK);
    if (!isMinAlignMask(minAlignMask)) {
      throw bad(`${where(ctx, 'min_align_mask', mam)}: must be 0 or 2^k - 1 (NVMe: 4095)`);
    }
  }
  return { randseed, device, minAlignMask };
}

/** Which directions a job does. */
export function jobDirections(rw: RwMode): { read: boolean; write: boolean } {
  return {
    read: rw === 'read' || rw === 'randread' || rw === 'randrw' || rw === 'rw',
    write: rw === 'write' || rw === 'randwrite' || rw === 'randrw' || rw === 'rw',
  };
}

/** Largest block size the job uses. */
export function maxBlockSize(job: FioJob): number {
  const d = jobDirections(job.rw);
  const sizes = [...(d.read ? job.bs.read : []), ...(d.write ? job.bs.write : [])].map(
    (e) => e.size,
  );
  return Math.max(512, ...sizes);
}

/** A small deterministic PRNG (mulberry32): same seed, same sequence. */
export const prng = mulberry32;

/** Picks a block size from a split with a uniform random number in [0, 1). */
export function pickSize(split: readonly BsSplitEntry[], r: number): number {
  let acc = 0;
  const x = r * 100;
  for (const e of split) {
    acc += e.percent;
    if (x < acc) return e.size;
  }
  return split[split.length - 1]!.size;
}

/**
 * The placement a job's pool runs in `mode`: `warm` in `bounce-tuned` whatever the
 * job says; the job's `placement=` otherwise; without one, `warm` for `shared` (as
 * the service runs shared mode, whose buffers are not bounced) and the kernel's
 * (`linux`) for `bounce`.
 */
export function jobPlacement(settings: RunSettings, mode: JobMode): Placement {
  if (mode === 'bounce-tuned') return 'warm';
  return settings.placement ?? (mode === 'shared' ? 'warm' : DEFAULT_PLACEMENT);
}
