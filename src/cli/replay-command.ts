import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { isMediatorError, MediatorError } from '../errors.js';
import type { GeometryOptions } from '../swiotlb/geometry.js';
import { DEFAULT_KERNEL } from '../swiotlb/kernel.js';
import { ReplayEngine } from '../swiotlb/replay.js';
import { isPlacement, PLACEMENTS } from '../swiotlb/warm.js';
import { intFlag, kernelFlag, parseCommand, sizeFlag } from './args.js';
import { isTraceReplay, replayTraceCommand } from './replay-trace.js';

export const REPLAY_HELP = `Usage: swiotlb-mediator replay [options] [FILE|-]

Replays a trace of map/unmap/sync/alloc/free calls against a pool built and
searched as a given Linux kernel does (placement only, no copies) and prints one
JSON line per input line; blank lines are skipped (they still count as lines).

Pool (the default pool, as the kernel's swiotlb= builds it):
  --slots N          swiotlb=N: slots before the kernel's rounding (default 32768)
  --areas A          swiotlb=N,A: areas before rounding (default: CPUs, rounded)
  --pool-size SIZE   a default pool of SIZE bytes (swiotlb_adjust_size), e.g. 64MiB;
                     not with --slots, which gives the size too
Or a device tree restricted-dma-pool (exact slots, one area, never grows):
  --restricted SIZE  its size, e.g. 4MiB (size >> 11 slots)
Both:
  --base ADDR        guest-physical address of the pool, e.g. 0x80000000 (default 0)
  --kernel V         whose rules: 6.1, 6.6 or 6.10 (default ${DEFAULT_KERNEL}); see docs/kernels.md
  --dynamic          CONFIG_SWIOTLB_DYNAMIC: the default pool grows (6.6 and later)
  --placement P      linux (default: the kernel's next-fit search) or warm (the
                     runs freed last first; NOT what the kernel does, though each
                     placement keeps the kernel's alignment and padding rules)
  -h, --help         this help

With --trace FILE it replays a kernel DMA trace instead ("replay --trace - --help").

Input lines (JSON):
  {"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device",
   "min_align_mask":4095,"alloc_align_mask":0,"area":0}
     ("cpu":N instead of "area" starts in area N & (areas - 1); 6.1/6.6 take "alloc_size")
  {"op":"unmap","id":"a"}            (optional "size", "dir", "attrs")
  {"op":"sync_for_device","id":"a","offset":0,"size":100}   (and "sync_for_cpu"; "dir")
  {"op":"alloc","id":"q","size":6784}   {"op":"free","id":"q"}   (dma_alloc_coherent;
     alloc also takes "area" or "cpu", and "min_align_mask")
  {"op":"stats"}  {"op":"reset_hiwater"}
Numbers are JSON numbers ("size":"100" is refused); "orig" may be a "0x..." string.
A field the op does not take (a typo such as "min_allign_mask") refuses the line.

Output lines:
  {"id":"a","ok":true,"tlb_addr":"0x...","slots":N}      (+ "pool" with --dynamic)
  {"id":"a","ok":false,"code":"SWIOTLB_POOL_FULL","error":"swiotlb buffer is full (sz: ...)"}
  {"id":"a","ok":true,"warnings":[{"source":"swiotlb","message":"Buffer overflow ..."}]}
     (an unmap or sync of another size or direction: made as the kernel makes it,
     with what swiotlb and CONFIG_DMA_API_DEBUG print for it; see docs/cli.md)
  {"line":N,"ok":false,"code":"REPLAY_BAD_LINE","error":"line N: ..."}

The kernel's log lines for the pool ("software IO TLB: ...") go to stderr.
Exit status: 0 when every line was read (errors in lines included), 2 on bad flags,
1 when the input cannot be read.`;

export interface ReplayIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
}

type ReplayValues = Record<string, string | boolean | undefined>;

/** The pool the flags declare (CLI_USAGE for combinations the kernel has no words for). */
function poolOptions(values: ReplayValues): GeometryOptions {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const base = intFlag('base', str('base'));
  const restricted = sizeFlag('restricted', str('restricted'));
  if (restricted !== undefined) {
    for (const other of ['slots', 'areas', 'pool-size']) {
      if (values[other] !== undefined) {
        throw new MediatorError(
          'CLI_USAGE',
          `--restricted SIZE declares a restricted-dma-pool: --${other} does not apply to it`,
        );
      }
    }
    if (values.dynamic === true) {
      throw new MediatorError('CLI_USAGE', '--dynamic: a restricted-dma-pool never grows');
    }
    return { restricted: true, size: restricted, base };
  }
  if (values.slots !== undefined && values['pool-size'] !== undefined) {
    // The kernel's swiotlb=N would win over an architecture's size: one flag, not a silent pick.
    throw new MediatorError(
      'CLI_USAGE',
      "--slots and --pool-size both give the pool's size: give one (--slots N is swiotlb=N, --pool-size SIZE the size an architecture sets)",
    );
  }
  return {
    size: sizeFlag('pool-size', str('pool-size')),
    slots: intFlag('slots', str('slots'), 1),
    areas: intFlag('areas', str('areas'), 1),
    base,
  };
}

export async function replayCommand(argv: string[], io: ReplayIo): Promise<number> {
  if (isTraceReplay(argv)) return replayTraceCommand(argv, io);
  const parsed = parseCommand('replay', REPLAY_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      'pool-size': { type: 'string' },
      slots: { type: 'string' },
      areas: { type: 'string' },
      restricted: { type: 'string' },
      base: { type: 'string' },
      kernel: { type: 'string' },
      dynamic: { type: 'boolean' },
      placement: { type: 'string' },
    },
  });
  if (parsed === undefined) {
    await write(io.stdout, `${REPLAY_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) {
    throw new MediatorError(
      'CLI_USAGE',
      `takes one input file, got ${positionals.length}: "${positionals.join(' ')}"`,
    );
  }
  const dynamic = values.dynamic === true;
  const placement = values.placement as string | undefined;
  if (placement !== undefined && !isPlacement(placement)) {
    throw new MediatorError(
      'CLI_USAGE',
      `--placement ${JSON.stringify(placement)}: must be ${PLACEMENTS.join(' or ')}`,
    );
  }
  let engine: ReplayEngine;
  try {
    engine = new ReplayEngine({
      pool: poolOptions(values),
      kernel: kernelFlag(values.kernel, dynamic) ?? DEFAULT_KERNEL,
      dynamic,
      ...(placement === undefined ? {} : { placement }),
    });
  } catch (err) {
    // The pool is the flags' (--slots, --areas, --pool-size, --restricted, --base):
    // one it cannot build is the command line's mistake, exit 2.
    if (isMediatorError(err, 'SWIOTLB_INVALID_GEOMETRY')) {
      throw new MediatorError('CLI_USAGE', `the pool of the flags: ${err.message}`);
    }
    throw err;
  }
  for (const line of engine.log()) io.stderr.write(`${line}\n`);
  const g = engine.geometry;
  io.stderr.write(
    `replay: ${g.kind} pool of ${g.nslabs} slots in ${g.nareas} area(s) of ${g.areaNslabs}, Linux ${engine.kernel} rules${dynamic ? ', growable (CONFIG_SWIOTLB_DYNAMIC)' : ''}${engine.placement === 'warm' ? ", warm placement (recently freed slots first: not the kernel's next-fit)" : ''}\n`,
  );

  const file = positionals[0];
  const input = file === undefined || file === '-' ? io.stdin : createReadStream(file);
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      const out = engine.handle(line, lineNo);
      if (out !== undefined) await write(io.stdout, `${JSON.stringify(out)}\n`);
    }
  } catch (err) {
    io.stderr.write(`replay: cannot read ${file ?? 'stdin'}: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}
