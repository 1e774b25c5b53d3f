import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { MediatorError } from '../../errors.js';
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SHIFT, IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../../swiotlb/kernel.js';
import { type BootLog, BootLogReader } from './boot-log.js';
import { poolFromBootLog, type RestrictedWanted, restrictedFromBootLog } from './boot-pool.js';
import { chooseProfile } from './kernel-version.js';
import { kernelPlacement, type PlacementSetup, type PlacementSpec } from './placement.js';
import { TraceReader } from './reader.js';
import { type ReplayObserver, TraceReplay } from './replay.js';
import type { BootLogReport, PoolReport, TraceReport } from './report-types.js';

/**
 * `replay --trace` without the command line: reads the boot log (or takes the
 * pool from flags), builds the placement, streams the trace through the replay
 * and assembles the report. `size --trace` and `bench --trace` start from here
 * (through the observer, see profile.ts).
 */

export interface PoolFlags {
  /** Guest-physical address of the pool (--base). */
  base?: number;
  /** Slots, as the kernel reports them (--slots). */
  slots?: number;
  /** Areas (--areas). */
  areas?: number;
  /**
   * The flag the areas came from, for messages: `--areas` (replay, bench --trace),
   * `--pool-areas` (size --trace, whose --areas is the count to recommend for).
   * @default '--areas'
   */
  areasFlag?: string;
  /** A restricted-dma-pool of this many bytes (--restricted SIZE), at `base` or the boot log's. */
  restrictedBytes?: number;
  /** The boot log's restricted-dma-pool (--restricted log), picked by `base` when several. */
  restrictedFromLog?: boolean;
}

export interface TraceRunOptions {
  trace: Readable;
  /** The trace's name in messages ("-" reads as "stdin"). */
  traceName: string;
  /** The boot log, when given (--dmesg). */
  bootLog?: { input: Readable; name: string };
  pool?: PoolFlags;
  /** The traced kernel's version (--kernel); else the boot log's banner; else 6.10. */
  kernel?: string;
  /** CONFIG_SWIOTLB_DYNAMIC: the default pool grows (--dynamic; 6.6 and later). */
  dynamic?: boolean;
  devices?: readonly string[];
  minAlignMask?: { all: number; byDevice: ReadonlyMap<string, number> };
  /** @default 4096 */
  window?: number;
  /** Builds the allocator model. @default kernelPlacement (the project's SwiotlbPool with the kernel's profile) */
  placement?: (spec: PlacementSpec) => PlacementSetup;
  observer?: ReplayObserver;
  /** Called at most every `progressEveryMs` while reading. */
  onProgress?: (p: TraceProgress) => void;
  /** @default 2000 */
  progressEveryMs?: number;
}

export interface TraceProgress {
  bytes: number;
  lines: number;
  events: number;
  elapsedMs: number;
}

/** Reads every line of a stream (CR LF or LF), awaiting each. */
async function eachLine(input: Readable, fn: (line: string) => void): Promise<void> {
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) fn(line);
}

export async function readBootLog(input: Readable): Promise<BootLog> {
  const r = new BootLogReader();
  await eachLine(input, (line) => r.line(line));
  return r.result();
}

export interface ResolvedPool {
  spec: PlacementSpec & { profile: KernelVersion };
  source: string;
  notes: string[];
}

type NamedLog = { log: BootLog; name: string };

/** The traced kernel and its profile: --kernel, else the boot log's banner, else 6.10. */
export interface ResolvedKernel {
  profile: KernelVersion;
  /** The version as given or logged; undefined when neither told it. */
  text: string | undefined;
  notes: string[];
}

/**
 * Which profile applies: the flag's, else the boot log banner's, else 6.10.
 * @throws CLI_USAGE, TRACE_UNSUPPORTED_KERNEL
 */
export function resolveKernel(flag: string | undefined, log: NamedLog | undefined): ResolvedKernel {
  const logged = log?.log.kernel;
  if (flag !== undefined) {
    const choice = chooseProfile(flag, { kind: 'flag' });
    const notes = [...choice.notes];
    if (logged && logged.text !== flag) {
      notes.push(
        `${log!.name}:${logged.line} says Linux ${logged.text}; --kernel ${flag} overrides it`,
      );
    }
    return { profile: choice.profile, text: flag, notes };
  }
  if (logged) {
    const choice = chooseProfile(logged.text, {
      kind: 'boot-log',
      name: log!.name,
      line: logged.line,
    });
    return {
      profile: choice.profile,
      text: logged.text,
      notes: [`Linux ${logged.text}, from ${log!.name}:${logged.line}`, ...choice.notes],
    };
  }
  return {
    profile: DEFAULT_KERNEL,
    text: undefined,
    notes: [
      `no --kernel and no "Linux version" line in a boot log: the ${DEFAULT_KERNEL} rules (the dma trace events need 6.12 or later); give --kernel V for a vendor kernel of another line`,
    ],
  };
}

/**
 * The kernel's pool: from the boot log, flags overriding it field by field; or
 * from the flags alone. The slots and areas are the kernel's own (already
 * rounded): the model builds exactly them (placement.ts exactGeometry()).
 * @throws TRACE_BAD_BOOT_LOG, CLI_USAGE
 */
export function resolvePool(
  log: NamedLog | undefined,
  flags: PoolFlags,
  kernel: Pick<ResolvedKernel, 'profile' | 'text'> = { profile: DEFAULT_KERNEL, text: undefined },
  dynamic = false,
): ResolvedPool {
  const notes: string[] = [];
  const spec = (s: { base: number; nslabs: number; nareas: number; restricted?: boolean }) => {
    const out: ResolvedPool['spec'] = { ...s, profile: kernel.profile };
    if (kernel.text !== undefined) out.kernel = kernel.text;
    if (dynamic) out.dynamic = true;
    return out;
  };
  if (flags.restrictedBytes !== undefined || flags.restrictedFromLog) {
    if (dynamic) {
      throw new MediatorError('CLI_USAGE', '--dynamic: a restricted-dma-pool never grows');
    }
    const bytes = flags.restrictedBytes;
    if (bytes !== undefined && bytes % IO_TLB_SIZE !== 0) {
      notes.push(
        `--restricted ${bytes}: not a multiple of 2 KiB; Linux takes size >> ${IO_TLB_SHIFT} slots`,
      );
    }
    if (log !== undefined) {
      const want: RestrictedWanted = {};
      if (bytes !== undefined) want.bytes = bytes;
      if (flags.base !== undefined) want.base = flags.base;
      const fromLog = restrictedFromBootLog(log.log, log.name, want);
      notes.push(...fromLog.notes);
      return {
        spec: spec({ base: fromLog.base, nslabs: fromLog.nslabs, nareas: 1, restricted: true }),
        source: `boot log ${log.name}${bytes === undefined ? '' : ' and --restricted'}`,
        notes,
      };
    }
    if (flags.base === undefined || bytes === undefined) {
      throw new MediatorError(
        'CLI_USAGE',
        bytes === undefined
          ? "--restricted log needs --dmesg FILE (the boot log with the pool's line)"
          : '--restricted SIZE needs --base ADDR (the pool\'s "reg" address), or --dmesg FILE with its line',
      );
    }
    return {
      spec: spec({
        base: flags.base,
        nslabs: Math.floor(bytes / IO_TLB_SIZE),
        nareas: 1,
        restricted: true,
      }),
      source: 'flags (--restricted, --base)',
      notes,
    };
  }
  if (log !== undefined) {
    const fromLog = poolFromBootLog(log.log, log.name, kernel.profile);
    notes.push(...fromLog.notes);
    if (dynamic && fromLog.restricted) {
      throw new MediatorError(
        'CLI_USAGE',
        `--dynamic: ${log.name} has only a restricted-dma-pool, which never grows`,
      );
    }
    const base = flags.base ?? fromLog.base;
    const nslabs = flags.slots ?? fromLog.nslabs;
    const nareas = flags.areas ?? fromLog.nareas;
    if (nareas === undefined) {
      throw new MediatorError(
        'TRACE_BAD_BOOT_LOG',
        `${log.name}: no line "software IO TLB: area num N." among its ${log.log.lines} lines; pass ${flags.areasFlag ?? '--areas'} N (the guest's CPU count rounded up to a power of two)`,
      );
    }
    const overridden = [
      flags.base === undefined ? '' : '--base',
      flags.slots === undefined ? '' : '--slots',
      flags.areas === undefined ? '' : (flags.areasFlag ?? '--areas'),
    ].filter(Boolean);
    if (overridden.length > 0) notes.push(`${overridden.join(', ')} override the boot log`);
    return {
      spec: spec({ base, nslabs, nareas, restricted: fromLog.restricted }),
      source: `boot log ${log.name}${overridden.length > 0 ? ` and ${overridden.join(', ')}` : ''}`,
      notes,
    };
  }
  if (flags.base === undefined || flags.areas === undefined) {
    throw new MediatorError(
      'CLI_USAGE',
      `without --dmesg FILE, give the pool with --base ADDR and ${flags.areasFlag ?? '--areas'} N (and --slots N, default 32768), or --restricted SIZE --base ADDR`,
    );
  }
  const nslabs = flags.slots ?? IO_TLB_DEFAULT_SIZE / IO_TLB_SIZE;
  if (flags.slots === undefined)
    notes.push('--slots not given: the default pool of 32768 slots (64 MiB)');
  return {
    spec: spec({ base: flags.base, nslabs, nareas: flags.areas }),
    source: 'flags (--base, --slots, --areas)',
    notes,
  };
}

function bootLogReport(
  log: { log: BootLog; name: string } | undefined,
  firstTs: number | null,
  lastTs: number | null,
): BootLogReport | null {
  if (log === undefined) return null;
  const w = log.log.fullWarnings;
  // No times to compare (the latency format counts from the buffer's start): unknown.
  const during =
    firstTs === null || lastTs === null
      ? null
      : w.filter((x) => x.ts !== undefined && x.ts >= firstTs && x.ts <= lastTs).length;
  return {
    source: log.name,
    full_warnings_total: w.length,
    full_warnings_during_trace: during,
    full_warnings: w.slice(0, 10),
    suppressed_warnings: log.log.suppressedWarnings,
  };
}

/**
 * Replays a trace and returns the report.
 * @throws TRACE_NOT_A_TRACE, TRACE_NO_DMA_EVENTS, TRACE_BAD_EVENT, TRACE_BAD_BOOT_LOG, CLI_USAGE
 */
export async function runTraceReplay(opts: TraceRunOptions): Promise<TraceReport> {
  try {
    return await replayStreams(opts);
  } catch (err) {
    // Nothing more will be read: close the files (an error may come before the trace is read).
    opts.trace.destroy();
    opts.bootLog?.input.destroy();
    throw err;
  }
}

async function replayStreams(opts: TraceRunOptions): Promise<TraceReport> {
  const log = opts.bootLog
    ? { log: await readBootLog(opts.bootLog.input), name: opts.bootLog.name }
    : undefined;
  const kernel = resolveKernel(opts.kernel, log);
  const pool = resolvePool(log, opts.pool ?? {}, kernel, opts.dynamic === true);
  const setup = (opts.placement ?? kernelPlacement)(pool.spec);
  const replay = new TraceReplay({
    placement: setup.placement,
    kernel: pool.spec,
    ...(opts.devices && opts.devices.length > 0 ? { devices: new Set(opts.devices) } : {}),
    ...(opts.minAlignMask ? { minAlignMask: opts.minAlignMask } : {}),
    ...(opts.window === undefined ? {} : { window: opts.window }),
    ...(opts.observer ? { observer: opts.observer } : {}),
  });
  const name = opts.traceName === '-' ? 'stdin' : opts.traceName;
  const reader = new TraceReader(name, (ev) => replay.push(ev));

  let bytes = 0;
  opts.trace.on('data', (chunk: Buffer | string) => {
    bytes += chunk.length;
  });
  const started = Date.now();
  const every = opts.progressEveryMs ?? 2000;
  let lastProgress = started;
  await eachLine(opts.trace, (line) => {
    reader.line(line);
    if (opts.onProgress && (reader.lineCount & 0xffff) === 0) {
      const now = Date.now();
      if (now - lastProgress >= every) {
        lastProgress = now;
        opts.onProgress({
          bytes,
          lines: reader.lineCount,
          events: reader.eventCount,
          elapsedMs: now - started,
        });
      }
    }
  });
  const input = reader.finish();
  const result = replay.finish((cpu) => reader.lastEventLine(cpu));
  const { filtered_events, ...rest } = result;
  input.filtered_events = filtered_events;
  const g = setup.placement.geometry;
  const poolReport: PoolReport = {
    base: `0x${pool.spec.base.toString(16)}`,
    nslabs: pool.spec.nslabs,
    nareas: pool.spec.nareas,
    area_nslabs: pool.spec.nslabs / pool.spec.nareas,
    bytes: pool.spec.nslabs * IO_TLB_SIZE,
    source: pool.source,
    kernel: kernel.text ?? null,
    profile: kernel.profile,
    restricted: pool.spec.restricted === true,
    dynamic: pool.spec.dynamic === true,
    exact: g.nslabs === pool.spec.nslabs && g.nareas === pool.spec.nareas,
    rules: setup.placement.rules,
    notes: [...kernel.notes, ...pool.notes, ...setup.notes],
  };
  const hints = [...rest.hints];
  if ((input.overwritten_events ?? 0) > 0) {
    hints.unshift(
      `the ring buffer overwrote ${input.overwritten_events} older events before the trace was read (entries-written > entries-in-buffer): the trace begins later than the recording, so mappings live at its start show as made before it; record with a bigger buffer (buffer_size_kb, trace-cmd record -b 20000), or read trace_pipe while recording`,
    );
  }
  if (input.lost_markers > 0) {
    hints.unshift(
      `the trace lost ${input.lost_events ?? 'some'} events (${input.lost_markers} CPU:N [LOST/DROPPED] lines): their maps and unmaps are missing, so the pools drift apart after them; record with a bigger buffer (trace-cmd record -b 20000)`,
    );
  }
  return {
    input,
    pool: poolReport,
    ...rest,
    hints,
    boot_log: bootLogReport(log, input.first_ts, input.last_ts),
  };
}
