import { createReadStream, statSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { isMediatorError, MediatorError } from '../errors.js';
import { formatTraceReport } from '../workload/trace/format.js';
import { chooseProfile } from '../workload/trace/kernel-version.js';
import { summarize } from '../workload/trace/report-types.js';
import {
  type PoolFlags,
  runTraceReplay,
  type TraceProgress,
  type TraceRunOptions,
} from '../workload/trace/run.js';
import { intFlag, noOperands, parseCommand, sizeFlag } from './args.js';

export const REPLAY_TRACE_HELP = `Usage: swiotlb-mediator replay --trace FILE|- [--dmesg FILE] [options]

Replays a kernel DMA trace against the Linux-faithful pool (placement only),
built with the traced kernel's geometry and searched by its line's rules, and
checks it against the kernel's own placements: for every mapping the kernel
bounced (its dma_addr lies in the pool) the pool places the same buffer, in
trace order, starting in area "cpu & (nareas - 1)", and the two addresses are
compared. Reports agreements, disagreements (with their trace lines), the
kernel's failures, and what the pool went through: use and high water over
time, per area, per device, the largest mapping.

The trace: the text of /sys/kernel/tracing/trace (or trace_pipe), or the output
of "trace-cmd report", with the dma events (Linux 6.12 or later) and, better,
swiotlb:swiotlb_bounced: trace-cmd record -e dma -e swiotlb -- <workload>.
The pool comes from the traced guest's boot log (--dmesg), or from flags.
"size --trace" sizes the pool from a trace, "bench --trace" runs its workload.

Options:
  --trace FILE         the trace text; - reads stdin
  --dmesg FILE         the traced boot's log (dmesg, journalctl -k -b): the pool's
                       base, size and area count, and its "swiotlb buffer is full" warnings
  --base ADDR          the pool's physical address (overrides the boot log's)
  --slots N            the pool's size in 2 KiB slots, as the kernel reports it
                       (io_tlb_nslabs; default 32768 without --dmesg)
  --areas N            the pool's area count (the log's "area num N.")
  --restricted SIZE    replay a restricted-dma-pool of SIZE bytes (one area) at --base,
                       or at the boot log's restricted pool; --restricted log: the
                       boot log's restricted pool (its exact size from the "OF:
                       reserved mem" line, else its whole MiB); not with --slots
                       or --areas
  --device NAME        replay only this device, by its dev_name (repeat for more)
  --min-align-mask M   a device's min_align_mask, NAME=MASK, or MASK for every
                       device (repeat; NVMe sets 0xfff)
  --kernel V           the traced kernel's version (default: the boot log's "Linux
                       version" line, else 6.10): 6.1.y follows the 6.1 profile,
                       6.6.y the 6.6 one, 6.10 and later the 6.10 one (docs/kernels.md);
                       6.2-6.5 and 6.7-6.9 have none and are refused
  --dynamic            CONFIG_SWIOTLB_DYNAMIC (6.6 and later): the model's default pool
                       grows; maps the kernel bounced outside it are compared by pool kind
  --window N           events held back to replay out of trace order (default 4096)
  --json               print the report as one JSON line, then a summary JSON line last:
                       {"events":N,"replayed":M,"placements":{"agree":A,"disagree":D},
                        "full":F,"used_hiwater":H,"nslabs":S,...}
  --quiet              no progress on stderr
  -h, --help           this help

Exit status: 0 when the trace was replayed (disagreements included), 1 when the
trace or boot log cannot be used (TRACE_* errors), 2 on bad flags.`;

export interface ReplayTraceIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
}

/** True when a `replay` command line asks for a trace replay (--trace before any "--"). */
export function isTraceReplay(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  const flags = end < 0 ? argv : argv.slice(0, end);
  return flags.some((a) => a === '--trace' || a.startsWith('--trace='));
}

/** `MASK` or `NAME=MASK`: a min_align_mask is 2^k - 1 below 2^32. */
export function parseMaskFlags(values: readonly string[]): {
  all: number;
  byDevice: Map<string, number>;
} {
  const byDevice = new Map<string, number>();
  let all = 0;
  for (const v of values) {
    const at = v.lastIndexOf('=');
    const name = at < 0 ? undefined : v.slice(0, at);
    const mask = intFlag('min-align-mask', at < 0 ? v : v.slice(at + 1));
    if (mask >= 2 ** 32 || ((mask + 1) & mask) !== 0) {
      throw new MediatorError(
        'CLI_USAGE',
        `--min-align-mask: "${v}" must be 2^k - 1 below 2^32 (e.g. 0xfff), optionally after NAME=`,
      );
    }
    if (name === undefined) all = mask;
    else if (name === '')
      throw new MediatorError('CLI_USAGE', `--min-align-mask: "${v}" has an empty device name`);
    else byDevice.set(name, mask);
  }
  return { all, byDevice };
}

export function openInput(path: string, flag: string, stdin: Readable): Readable {
  if (path === '-') return stdin;
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new MediatorError('CLI_USAGE', `${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
  return createReadStream(path);
}

function progressLine(command: string, p: TraceProgress): string {
  const mib = (p.bytes / 2 ** 20).toFixed(1);
  return `${command}: ${mib} MiB read, ${p.lines} lines, ${p.events} dma events, ${(p.elapsedMs / 1000).toFixed(0)} s`;
}

/** The flags every trace command takes (parseArgs options): the trace, the boot log, the pool. */
export const TRACE_FLAGS = {
  trace: { type: 'string' },
  dmesg: { type: 'string' },
  base: { type: 'string' },
  slots: { type: 'string' },
  areas: { type: 'string' },
  restricted: { type: 'string' },
  device: { type: 'string', multiple: true },
  'min-align-mask': { type: 'string', multiple: true },
  kernel: { type: 'string' },
  dynamic: { type: 'boolean' },
  window: { type: 'string' },
  quiet: { type: 'boolean' },
} as const;

/** The values of {@link TRACE_FLAGS} as parseArgs returns them. */
export interface TraceFlagValues {
  trace?: string | undefined;
  dmesg?: string | undefined;
  base?: string | undefined;
  slots?: string | undefined;
  areas?: string | undefined;
  restricted?: string | undefined;
  device?: string[] | undefined;
  'min-align-mask'?: string[] | undefined;
  kernel?: string | undefined;
  dynamic?: boolean | undefined;
  window?: string | undefined;
  quiet?: boolean | undefined;
}

/**
 * The run options of a trace command from its flags: files opened, the pool's
 * flags read, the --kernel checked before any file is read, progress on stderr.
 * `areasFlag` names the flag that gives the traced pool's areas (`size --trace`
 * keeps --areas for the areas to recommend for). `finishProgress` clears a drawn bar.
 * @throws CLI_USAGE
 */
export function traceRunFlags(
  values: TraceFlagValues,
  io: ReplayTraceIo,
  command: string,
  areasFlag: { name: string; value: string | undefined } = { name: 'areas', value: values.areas },
): { run: TraceRunOptions; finishProgress: () => void } {
  const trace = values.trace;
  if (!trace) throw new MediatorError('CLI_USAGE', '--trace needs a file (or - for stdin)');
  if (values.dmesg === '-' && trace === '-') {
    throw new MediatorError('CLI_USAGE', '--dmesg and --trace cannot both read stdin');
  }
  if (values.kernel !== undefined) chooseProfile(values.kernel, { kind: 'flag' });
  restrictedAlone(values, areasFlag);
  const pool: PoolFlags = {};
  const base = intFlag('base', values.base);
  const slots = intFlag('slots', values.slots, 1);
  const areas = intFlag(areasFlag.name, areasFlag.value, 1);
  if (values.restricted === 'log') pool.restrictedFromLog = true;
  else {
    const restricted = sizeFlag('restricted', values.restricted);
    if (restricted !== undefined) pool.restrictedBytes = restricted;
  }
  if (base !== undefined) pool.base = base;
  if (slots !== undefined) pool.slots = slots;
  if (areas !== undefined) pool.areas = areas;
  if (areasFlag.name !== 'areas') pool.areasFlag = `--${areasFlag.name}`;
  const window = intFlag('window', values.window, 1);
  let drew = false;
  const run: TraceRunOptions = {
    trace: openInput(trace, '--trace', io.stdin),
    traceName: trace,
    pool,
  };
  if (values.dmesg) {
    run.bootLog = { input: openInput(values.dmesg, '--dmesg', io.stdin), name: values.dmesg };
  }
  if (values.kernel !== undefined) run.kernel = values.kernel;
  if (values.dynamic) run.dynamic = true;
  // An empty name matches no device: the replay would run and report nothing.
  if (values.device?.includes('')) throw new MediatorError('CLI_USAGE', '--device: "" is empty');
  if (values.device) run.devices = values.device;
  if (values['min-align-mask']) run.minAlignMask = parseMaskFlags(values['min-align-mask']);
  if (window !== undefined) run.window = window;
  if (!values.quiet) {
    run.onProgress = (p: TraceProgress) => {
      if (io.stderr.isTTY) {
        io.stderr.write(`\r\x1b[K${progressLine(command, p)}`);
        drew = true;
      } else io.stderr.write(`${progressLine(command, p)}\n`);
    };
  }
  return {
    run,
    finishProgress: () => {
      if (drew) io.stderr.write('\r\x1b[K');
    },
  };
}

/**
 * Runs a trace command's replay, with a pool the flags could not form (a --base
 * not 2 KiB aligned, more than 1 GiB of --slots or --restricted, areas that round
 * past it) as CLI_USAGE, exit 2, as `replay` has it: the geometry is built before
 * the trace is read, and without this it would end as SWIOTLB_INVALID_GEOMETRY,
 * exit 1, which the help keeps for a trace or boot log that cannot be used.
 * A boot log's own pool that cannot be formed stays an exit 1.
 */
export async function withPoolFlags<T>(
  run: () => Promise<T>,
  values: TraceFlagValues,
  areasFlag: { name: string; value: string | undefined } = { name: 'areas', value: values.areas },
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const given = [
      ['base', values.base],
      ['slots', values.slots],
      [areasFlag.name, areasFlag.value],
      ['restricted', values.restricted === 'log' ? undefined : values.restricted],
    ].filter(([, v]) => v !== undefined);
    if (!isMediatorError(err, 'SWIOTLB_INVALID_GEOMETRY') || given.length === 0) throw err;
    throw new MediatorError(
      'CLI_USAGE',
      `the pool of the flags (${given.map(([f]) => `--${f}`).join(', ')}): ${err.message}`,
    );
  }
}

/**
 * CLI_USAGE for --slots or --areas beside --restricted: a restricted pool's size and
 * single area come from --restricted (or the boot log), and the pool resolver
 * would drop the other flags without a word.
 */
function restrictedAlone(
  values: TraceFlagValues,
  areasFlag: { name: string; value: string | undefined },
): void {
  if (values.restricted === undefined) return;
  for (const [name, value] of [
    ['slots', values.slots],
    [areasFlag.name, areasFlag.value],
  ] as const) {
    if (value !== undefined) {
      throw new MediatorError(
        'CLI_USAGE',
        `--restricted ${values.restricted === 'log' ? 'log' : 'SIZE'} replays a restricted-dma-pool: --${name} does not apply to it`,
      );
    }
  }
}

export async function replayTraceCommand(argv: string[], io: ReplayTraceIo): Promise<number> {
  const parsed = parseCommand('replay', REPLAY_TRACE_HELP, {
    args: argv,
    allowPositionals: true,
    options: { ...TRACE_FLAGS, json: { type: 'boolean' } },
  });
  if (parsed === undefined) {
    io.stdout.write(`${REPLAY_TRACE_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  noOperands(positionals);
  const { run, finishProgress } = traceRunFlags(values, io, 'replay');
  const report = await withPoolFlags(() => runTraceReplay(run), values);
  finishProgress();
  if (values.json) {
    io.stdout.write(`${JSON.stringify(report)}\n`);
    io.stdout.write(`${JSON.stringify(summarize(report))}\n`);
  } else {
    io.stdout.write(formatTraceReport(report));
  }
  return 0;
}
