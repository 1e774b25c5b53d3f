import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { MediatorError } from '../errors.js';
import { SwiotlbPool } from '../swiotlb/pool.js';
import { intFlag, parseCommand, sizeFlag } from './args.js';
import { Replayer } from './replay.js';
import { isTraceReplay, replayTraceCommand } from './replay-trace.js';

export const REPLAY_HELP = `Usage: swiotlb-mediator replay [options] [FILE|-]

Replays a trace of map/unmap/sync calls against a Linux-faithful swiotlb pool
(placement only, no copies) and prints one JSON line per input line.

Options:
  --pool-size SIZE   pool size, e.g. 64MiB, 4M (default 64MiB = 32768 slots)
  --slots N          pool size in 2 KiB slots (the kernel's nslabs); overrides --pool-size
  --areas N          number of areas (default: CPUs rounded up to a power of 2)
  --base ADDR        guest-physical address of the pool, e.g. 0x80000000 (default 0)
  -h, --help         this help

With --trace FILE it replays a kernel DMA trace instead ("replay --trace - --help").

Input lines (JSON):
  {"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device",
   "min_align_mask":4095,"alloc_align_mask":0,"area":0}
  {"op":"unmap","id":"a"}            (optional "size", "dir", "attrs")
  {"op":"sync_for_device","id":"a","offset":0,"size":100}   (and "sync_for_cpu")
  {"op":"stats"}  {"op":"reset_hiwater"}

Output lines:
  {"id":"a","ok":true,"tlb_addr":"0x...","slots":N}
  {"id":"a","ok":false,"code":"SWIOTLB_POOL_FULL","error":"swiotlb buffer is full (sz: ...)"}
  {"line":N,"ok":false,"code":"REPLAY_BAD_LINE","error":"line N: ..."}

The pool's rounding (segments, areas) is reported on stderr, as the kernel logs it.
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

export async function replayCommand(argv: string[], io: ReplayIo): Promise<number> {
  if (isTraceReplay(argv)) return replayTraceCommand(argv, io);
  const parsed = parseCommand('replay', REPLAY_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      'pool-size': { type: 'string' },
      slots: { type: 'string' },
      areas: { type: 'string' },
      base: { type: 'string' },
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
  const pool = SwiotlbPool.create({
    size: sizeFlag('pool-size', values['pool-size']),
    slots: intFlag('slots', values.slots, 1),
    areas: intFlag('areas', values.areas, 1),
    base: intFlag('base', values.base),
    area: 0,
  });
  const g = pool.geometry;
  for (const note of g.adjustments) io.stderr.write(`swiotlb: ${note}\n`);
  io.stderr.write(
    `swiotlb: ${g.nslabs} slots (${g.bytes / 2 ** 20} MiB) in ${g.nareas} areas of ${g.areaNslabs} at 0x${g.base.toString(16)}\n`,
  );

  const file = positionals[0];
  const input = file === undefined || file === '-' ? io.stdin : createReadStream(file);
  const replayer = new Replayer(pool);
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      const out = replayer.handle(line, lineNo);
      if (out !== undefined) await write(io.stdout, `${JSON.stringify(out)}\n`);
    }
  } catch (err) {
    io.stderr.write(`replay: cannot read ${file ?? 'stdin'}: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}
