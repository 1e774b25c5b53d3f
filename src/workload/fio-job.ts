/**
 * fio job files, as far as this runner can honour them, read as fio 3.42 reads
 * them (the rules below quote fio's source: file and function).
 *
 * Syntax (fio's init.c __parse_jobs_ini()): an INI file of sections. `[global]`
 * sets defaults for the job sections that follow it (a later `[global]` changes
 * the defaults of later jobs only, as in fio); every other section is a job,
 * cloned `numjobs` times. A line is cut at its first `;` or `#` wherever it is
 * (parse.c strip_blank_end()), so `bs=4k;x` is `bs=4k`. `key=value` or a bare
 * `key` (a flag: `time_based`). An option's aliases (options.c `.alias`:
 * `readwrite` for `rw`, `blocksize` for `bs`, `timeout` for `runtime`...) are the
 * same option: the later line wins whichever spelling it uses.
 * Sizes are fio's with its default kb_base=1024 (parse.c __get_mult_bytes()):
 * `4k` = 4096, `1m` = 2^20, `kb`/`KB` like `k`, `b` bytes, and the IEC suffixes
 * `KiB`/`MiB`/`GiB` powers of 10 (`4KiB` = 4000): see {@link parseFioSize}.
 * Times are seconds unless suffixed (`us`, `ms`, `s`, `m`, `h`).
 *
 * Unknown and unsupported options are never ignored silently:
 * - options that change nothing here (where fio would do I/O, how fio reports)
 *   are WARNINGS ({@link IGNORED_OPTIONS}): `filename`, `thread`...;
 *   `ioengine`, `direct`, `name`, `randrepeat` and the `iodepth_batch` options are
 *   read for what they change (see their functions);
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
import { SECTOR_SIZE } from '../virtio/blk-format.js';
import { engineName, FIO_DEFAULT_ENGINE, FIO_ENGINES, FIO_SYNC_DEPTH_NOTE } from './fio-engines.js';
import { isIecSize, parseFioSize, parseFioTime } from './fio-units.js';

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
  /** `group_reporting`: one merged report entry per group (results.ts). @default false */
  groupReporting: boolean;
  /** `norandommap`: random offsets drawn without fio's random map (setup.ts). @default false */
  norandommap: boolean;
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
  filename: 'I/O goes to the in-process device chosen by "device"',
  directory: 'I/O goes to the in-process device chosen by "device"',
  description: 'descriptive only',
  thread: 'clones are async submitters on one thread (one queue each)',
  invalidate: 'there is no page cache to invalidate',
  output: 'use --json / --html',
  'output-format': 'use --json',
};

/**
 * fio's second spellings of one option (options.c, each option's `.alias`), all
 * of them, so that a line in either spelling replaces the other as in fio; and
 * `buffered`, which is not an alias but sets the same variable as `direct`,
 * negated (options.c "buffered": `.off1 = odirect`, `.neg = 1`).
 */
const FIO_ALIASES: Readonly<Record<string, string>> = {
  readwrite: 'rw',
  iodepth_batch_submit: 'iodepth_batch',
  iodepth_batch_complete: 'iodepth_batch_complete_min',
  io_limit: 'io_size',
  fill_fs: 'fill_device',
  fileoffset: 'offset',
  blocksize: 'bs',
  blockalign: 'ba',
  blocksize_range: 'bsrange',
  blocksize_unaligned: 'bs_unaligned',
  allrandrepeat: 'randrepeat',
  nr_files: 'nrfiles',
  timeout: 'runtime',
  iomem: 'mem',
  mem_align: 'iomem_align',
  data_placement: 'dataplacement',
  fdp_pli_select: 'plid_select',
  fdp_pli: 'plids',
  ratemin: 'rate_min',
  ratecycle: 'rate_cycle',
  wait_for_previous: 'stonewall',
  log_max_value: 'log_window_value',
  log_unix_epoch: 'log_alternate_epoch',
  disable_bw: 'disable_bw_measurement',
  ss: 'steadystate',
  ss_dur: 'steadystate_duration',
  ss_ramp: 'steadystate_ramp_time',
  ss_interval: 'steadystate_check_interval',
  buffered: 'direct',
};

/** The option a key names: its own, or the one it is an alias of. */
function canonicalOption(key: string): string {
  return FIO_ALIASES[key] ?? key;
}

const KNOWN_OPTIONS = new Set([
  // FioJob.groupReporting and .norandommap (results.ts, setup.ts)
  'group_reporting',
  'norandommap',
  'rw',
  'bs',
  'bssplit',
  'rwmixread',
  'rwmixwrite',
  'iodepth',
  'numjobs',
  'size',
  'io_size',
  'runtime',
  'time_based',
  'ramp_time',
  'number_ios',
  'randseed',
  'scramble_buffers',
  'zero_buffers',
  'refill_buffers',
  // read for what they change here (engineDepth(), ignoredValues(), jobName())
  'ioengine',
  'direct',
  'name',
  'randrepeat',
  'iodepth_batch',
  'iodepth_batch_complete_min',
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
  /** The key as written (an alias stays an alias here, for messages). */
  key: string;
  value: string;
  line: number;
  /**
   * The value this line replaced (same option, any spelling; inherited from
   * `[global]` included): `bs=` and `bssplit=` apply on top of it, direction by
   * direction, as fio applies each line to the job in turn.
   */
  prev?: RawOption;
}

interface RawSection {
  name: string;
  line: number;
  /** By option (aliases canonicalised: {@link canonicalOption}). */
  options: Map<string, RawOption>;
}

/**
 * A line without its comment: fio cuts it at its first `;` and then at its first
 * `#`, wherever they are (parse.c strip_blank_end(): `s = strchr(p, ';'); if (s)
 * *s = '\0'; s = strchr(p, '#'); if (s) *s = '\0';`), before it looks at the line
 * (init.c __parse_jobs_ini() calls it on every line, sections included).
 */
function stripComment(line: string): string {
  return line.replace(/[;#].*$/, '').trim();
}

/** Splits the file into sections; each job section gets the global options in force where it starts. */
function parseIni(text: string, source: string): { jobs: RawSection[]; global: RawSection } {
  let global: RawSection = { name: 'global', line: 0, options: new Map() };
  const jobs: RawSection[] = [];
  let current: RawSection | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = stripComment(lines[i]!);
    if (line === '') continue;
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
    const option = canonicalOption(key);
    const prev = current.options.get(option);
    current.options.set(option, { key, value, line: lineNo, ...(prev ? { prev } : {}) });
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

function where(ctx: Ctx, o: RawOption): string {
  return `${ctx.source}:${o.line}: [${ctx.job}] ${o.key}=${o.value}`;
}

/** Collects the warnings of a file, each once. */
type Warn = (message: string) => void;

/**
 * A size of fio's options (size, io_size, bs, bssplit), as fio reads it; one
 * with an IEC suffix warns of fio's reading (powers of 10).
 */
function fioSize(ctx: Ctx, o: RawOption, text: string, warn: Warn): number | undefined {
  const n = parseFioSize(text);
  if (n !== undefined && isIecSize(text)) {
    warn(
      `${ctx.source}:${o.line}: ${o.key}: "${text.trim()}" is ${n} bytes, as fio reads it: with its default kb_base=1024, KiB/MiB/GiB are powers of 10 (parse.c __get_mult_bytes()); write "${text.trim().replace(/ib$/i, '')}" for powers of 2`,
    );
  }
  return n;
}

/**
 * A size of this project's options (pool_size, restricted): fio's sizes, but an
 * IEC suffix is refused rather than read as fio reads it (a power of 10), which
 * no one sizing a swiotlb pool means.
 */
function projectSize(ctx: Ctx, o: RawOption): number {
  if (isIecSize(o.value)) {
    throw bad(
      `${where(ctx, o)}: in a job file sizes are read as fio reads them, where KiB/MiB/GiB are powers of 10 (parse.c __get_mult_bytes(), kb_base=1024); write "${o.value.trim().replace(/ib$/i, '')}" (powers of 2) or bytes`,
    );
  }
  const n = parseFioSize(o.value);
  if (n === undefined || n <= 0) throw bad(`${where(ctx, o)}: not a size`);
  return n;
}

function intValue(ctx: Ctx, o: RawOption, min: number, max: number): number {
  const v = o.value.trim();
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw bad(`${where(ctx, o)}: must be an integer from ${min} to ${max}`);
  }
  return n;
}

function boolValue(ctx: Ctx, o: RawOption): boolean {
  const v = o.value.trim().toLowerCase();
  if (v === '' || v === '1' || v === 'true' || v === 'yes' || v === 'on') return true;
  if (v === '0' || v === 'false' || v === 'no' || v === 'off') return false;
  throw bad(`${where(ctx, o)}: must be 0 or 1 (or the bare flag)`);
}

function blockSize(ctx: Ctx, o: RawOption, text: string, warn: Warn): number {
  const n = fioSize(ctx, o, text, warn);
  if (n === undefined || n <= 0) throw bad(`${where(ctx, o)}: "${text}" is not a size`);
  const iec = isIecSize(text) ? ` (fio reads "${text.trim()}" as ${n} bytes: KiB is 1000)` : '';
  if (n % SECTOR_SIZE !== 0) {
    throw bad(
      `${where(ctx, o)}: ${n} bytes${iec} is not a multiple of ${SECTOR_SIZE} (virtio-blk sectors)`,
    );
  }
  if (n > MAX_BS) throw bad(`${where(ctx, o)}: ${n} bytes is larger than 16 MiB`);
  return n;
}

/** fio's most entries in one direction's split (thread_options.h BSSPLIT_MAX). */
const BSSPLIT_MAX = 64;

/**
 * One direction's `bssplit` ("4k/50:64k/50"), as fio reads it (options.c):
 * - split_parse_ddir(): entries split at `:`; a percentage is read with atoi(),
 *   so `33.3` is 33 (a warning says so); `/0` or no percentage is a blank share;
 * - bssplit_ddir(): the blanks share what is left, in whole percents (`(100 -
 *   perc) / perc_missing`); then the entries are sorted by share (qsort(),
 *   bs_cmp()), and io_u.c get_next_buflen() gives what the shares leave below
 *   100 (the blanks' rounding, or shares that add up to less) to the last entry
 *   it walks: the largest share (of equal ones, the later in the file, as a
 *   stable sort leaves them). `4k/50:64k/40` is 60% 4k.
 * Refused where fio would silently do something else than written: shares over
 * 100 in total (fio errors out only with two blanks or more, bssplit_ddir(), and
 * HOWTO "bssplit" says it "will error out"), a share over 100 or not a number
 * (atoi() reads `x` as 0: a blank), an empty entry before others (fio stops at
 * it), more than 64 entries (fio drops the rest).
 */
function parseSplit(ctx: Ctx, o: RawOption, text: string, warn: Warn): BsSplitEntry[] {
  const parts = text.split(':').map((p) => p.trim());
  while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (parts.some((p) => p === '')) {
    throw bad(`${where(ctx, o)}: an empty entry in "${text}" (fio would stop reading at it)`);
  }
  if (parts.length > BSSPLIT_MAX) throw bad(`${where(ctx, o)}: more than ${BSSPLIT_MAX} entries`);
  const entries = parts.map((p) => {
    const [s, pct, ...rest] = p.split('/');
    if (rest.length > 0) throw bad(`${where(ctx, o)}: "${p}" is not size/percentage`);
    const size = blockSize(ctx, o, s!.trim(), warn);
    const t = (pct ?? '').trim();
    if (t === '') return { size, percent: 0 };
    const m = /^(\d+)(\.\d*)?$/.exec(t);
    const percent = m ? Number(m[1]) : Number.NaN;
    if (!(percent <= 100)) {
      throw bad(`${where(ctx, o)}: "${t}" is not a percentage from 0 to 100`);
    }
    if (m![2] !== undefined) {
      warn(
        `${ctx.source}:${o.line}: ${o.key}: "${t}%" is ${percent}%, as fio reads it (atoi() in options.c split_parse_ddir())`,
      );
    }
    return { size, percent };
  });
  const given = entries.reduce((sum, e) => sum + e.percent, 0);
  if (given > 100) throw bad(`${where(ctx, o)}: percentages add up to ${given}`);
  const blanks = entries.filter((e) => e.percent === 0);
  if (entries.length === 1) return [{ size: entries[0]!.size, percent: 100 }];
  for (const e of blanks) e.percent = Math.floor((100 - given) / blanks.length);
  // The largest share, the later entry of equal ones (a stable ascending sort's last).
  const largest = entries.reduce((best, e) => (e.percent >= best.percent ? e : best));
  largest.percent += 100 - entries.reduce((sum, e) => sum + e.percent, 0);
  return entries.filter((e) => e.percent > 0);
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
  const warnings: string[] = [];
  const warn: Warn = (message) => {
    if (!warnings.includes(message)) warnings.push(message);
  };
  checkOptions([global, ...rawJobs], source, warn);

  const jobs = rawJobs.map((s, index) => parseJob(s, index, source, warn));
  const settings = runSettings(rawJobs, source);
  return {
    settings,
    jobs,
    warnings,
    globalOptions: optionRecord(global.options),
  };
}

/**
 * The options as the report lists them: by fio's name for each (an alias under
 * the option's own name, as fio's "job options" do: parse.c add_to_dump_list()
 * takes `o->name`); `buffered` keeps its name (its value means the opposite of
 * direct's).
 */
function optionRecord(options: Map<string, RawOption>): Record<string, string> {
  return Object.fromEntries(
    [...options].map(([k, o]) => [o.key === 'buffered' ? o.key : k, o.value]),
  );
}

/**
 * Every option of every section is either known, ignored (warned) or reported
 * (JOB_UNSUPPORTED_OPTION, all of them at once).
 */
function checkOptions(sections: RawSection[], source: string, warn: Warn): void {
  const unsupported = new Map<string, number[]>();
  for (const section of sections) {
    for (const [key, o] of section.options) {
      if (KNOWN_OPTIONS.has(key)) continue;
      const why = IGNORED_OPTIONS[key];
      if (why !== undefined) {
        warn(`${source}:${o.line}: "${o.key}" ignored: ${why}`);
        continue;
      }
      const lines = unsupported.get(o.key) ?? [];
      if (!lines.includes(o.line)) lines.push(o.line);
      unsupported.set(o.key, lines);
    }
  }
  // A "[global] name=" is overwritten by each job's section name in fio (init.c
  // get_new_job(): `td->o.name = strdup(jobname)` after the copy of [global]).
  const globalName = sections[0]!.options.get('name');
  if (globalName && sections[0]!.name === 'global') {
    warn(
      `${source}:${globalName.line}: "name" in [global] ignored: fio names each job after its section unless the section sets name= (init.c get_new_job())`,
    );
  }
  if (unsupported.size > 0) {
    const list = [...unsupported].map(([k, lines]) => `${k} (line ${lines.join(', ')})`);
    throw new MediatorError(
      'JOB_UNSUPPORTED_OPTION',
      `${source}: fio option${unsupported.size > 1 ? 's' : ''} this runner cannot honour: ${list.join('; ')}`,
      { options: [...unsupported.keys()] },
    );
  }
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
      throw bad(`${where(ctx, mode)}: must be ${RUN_MODES.join(', ')}`);
    }
    settings.mode = mode.value as RunMode;
  }
  const fdb = get('from_device_bounce');
  if (fdb) {
    if (!FROM_DEVICE_BOUNCES.includes(fdb.value as FromDeviceBounce)) {
      throw bad(`${where(ctx, fdb)}: must be ${FROM_DEVICE_BOUNCES.join(' or ')}`);
    }
    settings.fromDeviceBounce = fdb.value as FromDeviceBounce;
  }
  const placement = get('placement');
  if (placement) {
    if (!isPlacement(placement.value)) {
      throw bad(`${where(ctx, placement)}: must be ${PLACEMENTS.join(' or ')}`);
    }
    settings.placement = placement.value;
  }
  poolSettings(ctx, get, settings);
  const cw = get('copy_workers');
  if (cw) settings.copyWorkers = intValue(ctx, cw, ...LIMITS.copyWorkers);
  const bp = get('backpressure');
  if (bp) {
    const policy = backpressurePolicy(bp.value);
    if (policy === undefined) {
      throw bad(
        `${where(ctx, bp)}: must be requeue (Linux's virtio-blk), requeue-bounded (the service's; "wait" is its old name) or fail (the DMA API's)`,
      );
    }
    settings.backpressure = policy;
  }
  const kernel = get('kernel');
  if (kernel) {
    if (!isKernelVersion(kernel.value)) {
      throw bad(`${where(ctx, kernel)}: must be ${KERNEL_VERSIONS.join(', ')}`);
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
    settings.poolSize = projectSize(ctx, pool);
  }
  const areas = get('areas');
  if (areas) settings.areas = intValue(ctx, areas, ...LIMITS.areas);
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
        `${where(ctx, sw)}: must be <nslabs>[,<nareas>] as the kernel parameter takes it (e.g. swiotlb=8192,2), without force/noforce`,
      );
    }
    if (areas && p.areas !== undefined) {
      throw bad(`${where(ctx, sw)}: gives the areas, and so does areas=: give one`);
    }
    if (pool && p.slots !== undefined) {
      throw bad(
        `${where(ctx, sw)}: gives the slots, and pool_size= the size: the kernel ignores the size (swiotlb_adjust_size()) once swiotlb=<nslabs> is given; give one`,
      );
    }
    settings.slots = p.slots;
    if (p.areas !== undefined) settings.areas = p.areas;
  }
  const restricted = get('restricted');
  if (restricted) {
    const n = projectSize(ctx, restricted);
    const other = ['pool_size', 'areas', 'swiotlb'].find((k) => get(k) !== undefined);
    if (other !== undefined) {
      throw bad(
        `${where(ctx, restricted)}: a restricted-dma-pool is given by its size alone (exact slots, one area): no ${other}=`,
      );
    }
    settings.restricted = n;
  }
}

/** Reads one option of a job section (`[global]` merged in). */
type Get = (key: string) => RawOption | undefined;

function parseJob(s: RawSection, index: number, source: string, warn: Warn): FioJob {
  const ctx: Ctx = { source, job: s.name };
  const get: Get = (k) => s.options.get(k);
  const pattern = ioPattern(ctx, get, warn);
  const maxBs = Math.max(
    ...pattern.bs.read.map((e) => e.size),
    ...pattern.bs.write.map((e) => e.size),
  );
  const { iodepth, numjobs } = concurrency(ctx, get);
  ignoredValues(ctx, get, warn);
  const flag = (key: string): boolean => {
    const o = get(key);
    return o ? boolValue(ctx, o) : false;
  };
  return {
    name: jobName(ctx, s),
    index,
    ...pattern,
    iodepth: engineDepth(ctx, get, iodepth, warn),
    numjobs,
    ...extent(ctx, get, maxBs, warn),
    ...timing(ctx, get),
    ...target(ctx, get),
    writeFill: bufferFill(ctx, get),
    groupReporting: flag('group_reporting'),
    norandommap: flag('norandommap'),
    options: optionRecord(s.options),
  };
}

/**
 * The job's name: the section's, or its own `name=` line's (HOWTO "name": "may
 * be used to override the name printed by fio for this job"). A `name=` from
 * `[global]` does not count: fio sets each job's name from its section after
 * copying `[global]` (init.c get_new_job()); checkOptions() warns of it.
 */
function jobName(ctx: Ctx, s: RawSection): string {
  const o = s.options.get('name');
  if (!o || o.line < s.line) return s.name;
  // options.c "name" is FIO_OPT_STR_STORE: parse.c refuses an empty one.
  if (o.value === '') throw bad(`${where(ctx, o)}: an empty job name`);
  return o.value;
}

/** rw, bs / bssplit and rwmixread: what each I/O is. */
function ioPattern(ctx: Ctx, get: Get, warn: Warn): Pick<FioJob, 'rw' | 'bs' | 'rwmixread'> {
  let rw: RwMode = 'read';
  const rwOpt = get('rw');
  if (rwOpt) {
    const v = RW_VALUES[rwOpt.value.trim().toLowerCase()];
    if (!v) {
      throw bad(
        `${where(ctx, rwOpt)}: must be read, write, randread, randwrite, randrw or rw (trim and ":N" offsets are not supported)`,
      );
    }
    rw = v;
  }

  let rwmixread = 50;
  const mixR = get('rwmixread');
  const mixW = get('rwmixwrite');
  // fio's HOWTO (rwmixwrite): when both are given and do not add up to 100%, the
  // second one overrides the first: here, the one on the later line.
  if (mixR && (!mixW || mixR.line > mixW.line)) {
    rwmixread = intValue(ctx, mixR, 0, 100);
    if (mixW) intValue(ctx, mixW, 0, 100); // still a valid value
  } else if (mixW) {
    rwmixread = 100 - intValue(ctx, mixW, 0, 100);
    if (mixR) intValue(ctx, mixR, 0, 100);
  }
  return { rw, bs: blockSizes(ctx, get, warn), rwmixread };
}

/** Reads, writes, trims: fio's order of the comma-separated values. */
type ByDirection<T> = [T | undefined, T | undefined, T | undefined];

/**
 * Which direction each part of a `bs=` / `bssplit=` value sets, as fio applies
 * them (parse.c handle_option() and __handle_option() for `bs`, options.c
 * str_split_parse() for `bssplit`): `a,b,c` sets reads, writes and trims; an
 * empty part sets nothing (that direction keeps what it had); the last part, when
 * it is not empty, also sets the directions after it (HOWTO "blocksize": "A
 * value not terminated in a comma applies to subsequent types"): `8k` all three,
 * `8k,` reads only, `,8k` writes and trims, `4k,8k` reads 4k, writes and trims 8k.
 */
function byDirection(ctx: Ctx, o: RawOption): ByDirection<string> {
  const parts = o.value.split(',').map((p) => p.trim());
  if (parts.length > 3) throw bad(`${where(ctx, o)}: at most "reads,writes,trims"`);
  const out: ByDirection<string> = [undefined, undefined, undefined];
  parts.forEach((p, i) => {
    if (p !== '') out[i] = p;
  });
  // Every part empty: nothing parsed, an error in fio (handle_option() returns
  // the error of the parts when none of them parses).
  if (out.every((v) => v === undefined)) throw bad(`${where(ctx, o)}: no size given`);
  const last = parts[parts.length - 1]!;
  if (last !== '') for (let i = parts.length; i < 3; i++) out[i] = last;
  return out;
}

/**
 * The block sizes of reads and writes, by fio's rules: each `bs=` and `bssplit=`
 * line, `[global]`'s first, sets the directions it names on top of the lines
 * before it ({@link byDirection}); a direction with a `bssplit` uses it whatever
 * `bs` says (init.c fixup_options(): `min_bs` from `bs` only when bssplit_ddir()
 * left it unset), else its `bs` (default 4096, options.c "bs" `.def`). Trims are
 * read (and checked) and ignored: rw= takes no trims here.
 */
function blockSizes(ctx: Ctx, get: Get, warn: Warn): FioJob['bs'] {
  const history = (o: RawOption | undefined): RawOption[] => {
    const lines: RawOption[] = [];
    for (let x = o; x; x = x.prev) lines.unshift(x);
    return lines;
  };
  const bs: ByDirection<BsSplitEntry[]> = [undefined, undefined, undefined];
  const split: ByDirection<BsSplitEntry[]> = [undefined, undefined, undefined];
  for (const o of history(get('bs'))) {
    if (/[:-]/.test(o.value)) {
      throw bad(
        `${where(ctx, o)}: fio reads ":" and "-" in bs= as it reads "," (parse.c handle_option()): write reads,writes[,trims] with commas`,
      );
    }
    byDirection(ctx, o).forEach((v, d) => {
      if (v !== undefined) bs[d] = [{ size: blockSize(ctx, o, v, warn), percent: 100 }];
    });
  }
  for (const o of history(get('bssplit'))) {
    byDirection(ctx, o).forEach((v, d) => {
      if (v !== undefined) split[d] = parseSplit(ctx, o, v, warn);
    });
  }
  const trimmed = [get('bs'), get('bssplit')].find((o) => o?.value.split(',')[2]?.trim());
  if (trimmed) {
    warn(
      `${ctx.source}:${trimmed.line}: ${trimmed.key}=${trimmed.value}: the trim size (third value) is ignored: rw= takes no trims here`,
    );
  }
  const fallback: BsSplitEntry[] = [{ size: 4096, percent: 100 }];
  return { read: split[0] ?? bs[0] ?? fallback, write: split[1] ?? bs[1] ?? fallback };
}

/** iodepth and numjobs, within what a device takes (its depth and queues). */
function concurrency(ctx: Ctx, get: Get): Pick<FioJob, 'iodepth' | 'numjobs'> {
  const iodepthOpt = get('iodepth');
  const iodepth = iodepthOpt ? intValue(ctx, iodepthOpt, ...LIMITS.depth) : 1;
  const numjobsOpt = get('numjobs');
  const numjobs = numjobsOpt ? intValue(ctx, numjobsOpt, ...LIMITS.queues) : 1;
  return { iodepth, numjobs };
}

/** size (whole sectors, at least the largest block) and io_size / io_limit. */
function extent(ctx: Ctx, get: Get, maxBs: number, warn: Warn): Pick<FioJob, 'size' | 'ioSize'> {
  const bytes = (o: RawOption): number => {
    const n = fioSize(ctx, o, o.value, warn);
    if (n === undefined || n <= 0) throw bad(`${where(ctx, o)}: not a size`);
    return n;
  };
  const sizeOpt = get('size');
  let size = sizeOpt ? bytes(sizeOpt) : DEFAULT_SIZE;
  size = Math.floor(size / SECTOR_SIZE) * SECTOR_SIZE;
  if (size < maxBs) {
    throw bad(`${ctx.source}: [${ctx.job}] size ${size} is smaller than the block size ${maxBs}`);
  }
  const ioOpt = get('io_size');
  return { size, ioSize: ioOpt ? bytes(ioOpt) : size };
}

/**
 * runtime / timeout, ramp_time, time_based and number_ios: when a clone stops.
 * `runtime=0` is no limit, as in fio (backend.c runtime_exceeded(): `if
 * (!td->o.timeout) return false;`), so time_based then has no runtime: refused
 * (fio logs "time_based requires a runtime/timeout setting" and drops time_based,
 * init.c fixup_options(); here it is refused as a job that would run forever).
 */
function timing(
  ctx: Ctx,
  get: Get,
): Pick<FioJob, 'runtime' | 'timeBased' | 'rampTime' | 'numberIos'> {
  const time = (key: string): number | undefined => {
    const o = get(key);
    if (!o) return undefined;
    const t = parseFioTime(o.value);
    if (t === undefined) {
      throw bad(
        `${where(ctx, o)}: not a time as fio reads it (parse.c get_mult_time()): a whole number, seconds unless suffixed us, ms, s, m, h or d (examples: 10, 30s, 2m); fio drops a fraction (0.5 is 0) and reads "sec" and "min" as microseconds`,
      );
    }
    return t;
  };
  const runtime = time('runtime') || undefined;
  const rampTime = time('ramp_time') ?? 0;
  const tb = get('time_based');
  const timeBased = tb ? boolValue(ctx, tb) : false;
  if (timeBased && runtime === undefined) {
    throw bad(`${ctx.source}: [${ctx.job}] time_based needs a runtime (it would run forever)`);
  }
  const nio = get('number_ios');
  const numberIos = nio ? intValue(ctx, nio, 1, Number.MAX_SAFE_INTEGER) : undefined;
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
  if (refill && boolValue(ctx, refill)) return WriteFill.REFILL;
  const scr = get('scramble_buffers');
  const zero = get('zero_buffers');
  const scramble = scr ? boolValue(ctx, scr) : true;
  const zeroed = zero ? boolValue(ctx, zero) : false;
  return scramble && (scr !== undefined || !zeroed) ? WriteFill.SCRAMBLE : WriteFill.NONE;
}

/** randseed, device and min_align_mask: what the I/O goes to. */
function target(ctx: Ctx, get: Get): Pick<FioJob, 'randseed' | 'device' | 'minAlignMask'> {
  const seedOpt = get('randseed');
  const randseed = seedOpt ? intValue(ctx, seedOpt, 0, 2 ** 32 - 1) : 0x5eed;
  let device: JobDevice = 'ram-blk';
  const dev = get('device');
  if (dev) {
    if (dev.value !== 'null' && dev.value !== 'ram-blk' && dev.value !== 'file-blk') {
      throw bad(`${where(ctx, dev)}: must be null, ram-blk or file-blk`);
    }
    device = dev.value;
  }
  let minAlignMask = 0;
  const mam = get('min_align_mask');
  if (mam) {
    minAlignMask = intValue(ctx, mam, 0, MAX_MIN_ALIGN_MASK);
    if (!isMinAlignMask(minAlignMask)) {
      throw bad(`${where(ctx, mam)}: must be 0 or 2^k - 1 (NVMe: 4095)`);
    }
  }
  return { randseed, device, minAlignMask };
}

// ---------------------------------------------------------------------------
// ioengine, direct and the options read for what they change (fio-engines.ts)
// ---------------------------------------------------------------------------

/**
 * The job's iodepth as its engine lets it be: 1 for a synchronous engine,
 * `ioengine=` unset included (fio's default, psync), with fio's note as a
 * warning; kept for an asynchronous one. An engine fio does not have is refused,
 * as fio fails such a job ("fio: engine %s not loadable", ioengines.c
 * load_ioengine(), once dlopen() of the name as a path has failed too); so is an
 * external engine (how it queues is unknown here), an engine that does no I/O,
 * and one whose depth is neither 1 nor iodepth (`batching`) above iodepth 1.
 */
function engineDepth(ctx: Ctx, get: Get, iodepth: number, warn: Warn): number {
  const o = get('ioengine');
  const name = o ? engineName(o.value) : FIO_DEFAULT_ENGINE;
  const kind = FIO_ENGINES[name];
  if (o && kind === undefined) {
    throw bad(
      `${where(ctx, o)}: ${name === 'external' ? 'an external engine: how it queues is unknown here' : `fio has no engine "${name}": fio fails the job ("fio: engine ${name} not loadable", ioengines.c load_ioengine())`}; use libaio or io_uring (iodepth kept) or psync (depth 1)`,
    );
  }
  if (o && kind === 'no-io') {
    throw bad(`${where(ctx, o)}: fio does no data I/O with this engine (FIO_NOIO/FIO_FAKEIO)`);
  }
  if (o && kind === 'batching' && iodepth > 1) {
    throw bad(
      `${where(ctx, o)}: a synchronous engine (FIO_SYNCIO) that can still hold several I/Os (${o.value}: see its ->queue in fio's engines/), so neither depth 1 nor iodepth=${iodepth}: not modelled; use libaio or io_uring (iodepth kept) or psync (depth 1)`,
    );
  }
  // The engine's own I/O path is not used (the I/O goes through the in-process
  // mediator), but that is true of the whole runner: only what differs from what
  // fio would do is warned of, here the cap.
  const sync = kind !== 'async';
  if (!sync || iodepth <= 1) return iodepth;
  const depth = get('iodepth')!;
  warn(
    `${ctx.source}:${depth.line}: [${ctx.job}] iodepth=${iodepth} runs at depth 1: ${o ? `ioengine=${o.value} is` : `no ioengine: fio's default, ${FIO_DEFAULT_ENGINE} (os/os.h FIO_PREFERRED_ENGINE), is`} synchronous, and fio says "${FIO_SYNC_DEPTH_NOTE}" (backend.c thread_main()); set ioengine=libaio or io_uring (with direct=1) to keep the depth`,
  );
  return 1;
}

/**
 * Options read and ignored whose value decides whether the run differs from
 * fio's: warned of only when it does.
 * - `direct` (and `buffered`, its negation): fio's default is 0 (options.c
 *   "direct" `.def = "0"`), buffered I/O through the page cache; the runner has
 *   none: every I/O reaches the device, as with direct=1.
 * - `iodepth_batch` (`iodepth_batch_submit`) and `iodepth_batch_complete_min`
 *   (`iodepth_batch_complete`): fio's default 1 is what the runner does (submit
 *   each I/O at once, reap completions one at a time); other values batch fio's
 *   submissions or reaps (HOWTO "iodepth_batch_submit"), which changes the depth
 *   the device sees.
 * - `randrepeat` (`allrandrepeat`): fio's default 1 repeats the offsets as the
 *   runner always does; 0 without `randseed` seeds fio from the system's RNG
 *   (init.c setup_random_seeds()), so each fio run differs.
 */
function ignoredValues(ctx: Ctx, get: Get, warn: Warn): void {
  const direct = get('direct');
  const odirect = direct ? boolValue(ctx, direct) !== (direct.key === 'buffered') : false;
  if (!odirect) {
    const libaio = engineName(get('ioengine')?.value ?? '') === 'libaio';
    warn(
      `${direct ? `${ctx.source}:${direct.line}: ${direct.key}=${direct.value}` : `${ctx.source}: direct unset (fio's default, direct=0)`} ignored: fio does buffered I/O through the page cache (reads may be served from memory, writes complete once copied to it); here every I/O reaches the device, as with direct=1${libaio ? ' (and fio with libaio and buffered I/O does not reach iodepth on Linux: HOWTO "iodepth")' : ''}`,
    );
  }
  const batches: [string, string][] = [
    [
      'iodepth_batch',
      'fio submits I/Os in batches of that many (0: iodepth), here each as soon as a slot is free (as with 1)',
    ],
    [
      'iodepth_batch_complete_min',
      'fio waits for that many completions at least (0: polls without waiting), here they are reaped one by one (as with 1)',
    ],
  ];
  for (const [key, why] of batches) {
    const o = get(key);
    if (o && intValue(ctx, o, 0, Number.MAX_SAFE_INTEGER) !== 1) {
      warn(
        `${ctx.source}:${o.line}: ${o.key}=${o.value} ignored: ${why}; batching changes the depth the device sees`,
      );
    }
  }
  const rr = get('randrepeat');
  if (rr && !boolValue(ctx, rr) && !get('randseed')) {
    warn(
      `${ctx.source}:${rr.line}: ${rr.key}=${rr.value} ignored: fio would seed from the system's RNG (init.c setup_random_seeds()), each run different; here offsets repeat (seeded by randseed's default)`,
    );
  }
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

export { parseFioSize, parseFioTime } from './fio-units.js';
