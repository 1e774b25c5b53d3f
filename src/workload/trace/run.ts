import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { MediatorError } from '../../errors.js';
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SHIFT, IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { type BootLog, BootLogReader, poolFromBootLog } from './boot-log.js';
import { type PlacementSetup, type PlacementSpec, poolPlacement } from './placement.js';
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
  /** Slots (--slots). */
  slots?: number;
  /** Areas (--areas). */
  areas?: number;
  /** A restricted-dma-pool of this many bytes at `base` (--restricted SIZE). */
  restrictedBytes?: number;
}

export interface TraceRunOptions {
  trace: Readable;
  /** The trace's name in messages ("-" reads as "stdin"). */
  traceName: string;
  /** The boot log, when given (--dmesg). */
  bootLog?: { input: Readable; name: string };
  pool?: PoolFlags;
  /** The traced kernel's version (--kernel). */
  kernel?: string;
  devices?: readonly string[];
  minAlignMask?: { all: number; byDevice: ReadonlyMap<string, number> };
  /** @default 4096 */
  window?: number;
  /** Builds the allocator model. @default poolPlacement (the project's SwiotlbPool) */
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

interface ResolvedPool {
  spec: PlacementSpec;
  source: string;
  notes: string[];
}

/**
 * The kernel's pool: from the boot log, flags overriding it field by field; or
 * from the flags alone.
 * @throws TRACE_BAD_BOOT_LOG, CLI_USAGE
 */
export function resolvePool(
  log: { log: BootLog; name: string } | undefined,
  flags: PoolFlags,
  kernel: string | undefined,
): ResolvedPool {
  const notes: string[] = [];
  const withKernel = (s: Omit<PlacementSpec, 'kernel'>): PlacementSpec =>
    kernel === undefined ? s : { ...s, kernel };
  if (flags.restrictedBytes !== undefined) {
    if (flags.base === undefined) {
      throw new MediatorError(
        'CLI_USAGE',
        '--restricted SIZE needs --base ADDR (the pool\'s "reg" address)',
      );
    }
    if (flags.restrictedBytes % IO_TLB_SIZE !== 0) {
      notes.push(
        `--restricted ${flags.restrictedBytes}: not a multiple of 2 KiB; Linux takes size >> ${IO_TLB_SHIFT} slots`,
      );
    }
    const nslabs = Math.floor(flags.restrictedBytes / IO_TLB_SIZE);
    return {
      spec: withKernel({ base: flags.base, nslabs, nareas: 1, restricted: true }),
      source: 'flags (--restricted, --base)',
      notes,
    };
  }
  if (log !== undefined) {
    const fromLog = poolFromBootLog(log.log, log.name);
    notes.push(...fromLog.notes);
    const base = flags.base ?? fromLog.base;
    const nslabs = flags.slots ?? fromLog.nslabs;
    const nareas = flags.areas ?? fromLog.nareas;
    if (nareas === undefined) {
      throw new MediatorError(
        'TRACE_BAD_BOOT_LOG',
        `${log.name}: no line "software IO TLB: area num N." among its ${log.log.lines} lines; pass --areas N (the guest's CPU count rounded up to a power of two)`,
      );
    }
    const overridden = [
      flags.base === undefined ? '' : '--base',
      flags.slots === undefined ? '' : '--slots',
      flags.areas === undefined ? '' : '--areas',
    ].filter(Boolean);
    if (overridden.length > 0) notes.push(`${overridden.join(', ')} override the boot log`);
    return {
      spec: withKernel({ base, nslabs, nareas, restricted: fromLog.restricted }),
      source: `boot log ${log.name}${overridden.length > 0 ? ` and ${overridden.join(', ')}` : ''}`,
      notes,
    };
  }
  if (flags.base === undefined || flags.areas === undefined) {
    throw new MediatorError(
      'CLI_USAGE',
      'without --dmesg FILE, give the pool with --base ADDR and --areas N (and --slots N, default 32768), or --restricted SIZE --base ADDR',
    );
  }
  const nslabs = flags.slots ?? IO_TLB_DEFAULT_SIZE / IO_TLB_SIZE;
  if (flags.slots === undefined)
    notes.push('--slots not given: the default pool of 32768 slots (64 MiB)');
  return {
    spec: withKernel({ base: flags.base, nslabs, nareas: flags.areas }),
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
  const during =
    firstTs === null || lastTs === null
      ? 0
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
  const pool = resolvePool(log, opts.pool ?? {}, opts.kernel);
  const setup = (opts.placement ?? poolPlacement)(pool.spec);
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
  const result = replay.finish();
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
    rules: setup.placement.rules,
    notes: [...pool.notes, ...setup.notes],
  };
  if (g.nslabs !== pool.spec.nslabs) poolReport.notes.push(`model pool: ${g.nslabs} slots`);
  const hints = [...rest.hints];
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
