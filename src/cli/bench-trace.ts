import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MediatorError } from '../errors.js';
import { TraceProfile } from '../workload/trace/profile.js';
import { runTraceReplay } from '../workload/trace/run.js';
import { TRACED_JOB_LIMITS, tracedJob } from '../workload/trace/trace-job.js';
import { intFlag, noOperands, outputFileFlag, parseCommand } from './args.js';
import { type BenchIo, benchCommand } from './bench.js';
import { type ReplayTraceIo, TRACE_FLAGS, traceRunFlags, withPoolFlags } from './replay-trace.js';

export const BENCH_TRACE_HELP = `Usage: swiotlb-mediator bench --trace FILE|- [--dmesg FILE] [options]

Runs a real guest's traced workload through the mediator, bounce and direct, for
the cost of isolation on that workload. The trace (see "replay --trace --help")
is read into a fio job: per device that bounced, its I/O sizes (bssplit; a
virtio-blk request is its header, data and status maps, an sg list is one I/O),
directions (rwmixread), the CPUs that mapped (numjobs) and the most I/Os live at
once (iodepth), its min_align_mask; the traced pool's size and areas. The job
is printed on stderr and then run as "bench --job" runs it. Timing, order and
buffer offsets are not replayed (docs/trace.md).

Options:
  --trace FILE         the trace text; - reads stdin (required)
  --dmesg FILE, --base ADDR, --slots N, --areas N, --restricted SIZE|log
                       the traced pool (as replay --trace; --restricted not
                       with --slots or --areas); without them every
                       map counts as not bounced, and the job uses the
                       runner's default pool
  --device NAME        these devices only (repeat)
  --min-align-mask M   a device's min_align_mask, NAME=MASK or MASK (repeat)
  --kernel V, --dynamic, --window N   as replay --trace
  --runtime S          seconds per mode (default 10)
  --mode MODE          bounce, direct or both (default both)
  --save-job FILE      also write the generated job file there
  --json, --html FILE  as bench --job
  --quiet              no progress on stderr
  -h, --help           this help

Exit status: as bench --job; also 1 when the trace or boot log cannot be used
(TRACE_* errors), and 2 for pool flags without --base or --dmesg.`;

/** A pool no address falls in: with no pool given, every map is profiled as not bounced. */
const NO_POOL = { base: 2 ** 52, slots: 128, areas: 1 };

export async function benchTraceCommand(
  argv: string[],
  io: BenchIo & ReplayTraceIo,
): Promise<number> {
  const parsed = parseCommand('bench', BENCH_TRACE_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      ...TRACE_FLAGS,
      runtime: { type: 'string' },
      mode: { type: 'string' },
      'save-job': { type: 'string' },
      json: { type: 'boolean' },
      html: { type: 'string' },
    },
  });
  if (parsed === undefined) {
    io.stdout.write(`${BENCH_TRACE_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  noOperands(positionals);
  outputFileFlag('save-job', values['save-job']);
  outputFileFlag('html', values.html);
  const runtime = intFlag('runtime', values.runtime, 1);
  const mode = values.mode ?? 'both';
  if (mode !== 'bounce' && mode !== 'direct' && mode !== 'both') {
    throw new MediatorError('CLI_USAGE', `--mode: "${mode}" is not bounce, direct or both`);
  }
  const { run, finishProgress } = traceRunFlags(values, io, 'bench');
  const noPool = run.bootLog === undefined && values.base === undefined;
  if (noPool) {
    // NO_POOL replaces the pool: flags that declare one would be dropped unseen.
    const dropped = (['slots', 'areas', 'restricted'] as const).filter(
      (f) => values[f] !== undefined,
    );
    if (dropped.length > 0) {
      throw new MediatorError(
        'CLI_USAGE',
        `${dropped.map((f) => `--${f}`).join(', ')} ${dropped.length > 1 ? 'describe' : 'describes'} the traced pool, which needs --base ADDR or --dmesg FILE (without either, every map counts as not bounced)`,
      );
    }
    run.pool = { ...NO_POOL };
  }
  const profile = new TraceProfile();
  const report = await withPoolFlags(() => runTraceReplay({ ...run, observer: profile }), values);
  finishProgress();
  const job = tracedJob(profile.result(), {
    mode,
    ...(runtime === undefined ? {} : { runtime }),
    ...(noPool ? {} : { poolBytes: report.pool.bytes, areas: report.pool.nareas }),
  });
  const notes = [
    ...job.notes,
    ...(noPool ? ['no pool given (--dmesg, --base): every map was profiled as not bounced'] : []),
  ];
  io.stderr.write(
    `bench: the traced workload as a fio job (${job.devices.length} device${job.devices.length > 1 ? 's' : ''}):\n${job.text}\n`,
  );
  for (const n of notes) io.stderr.write(`bench: note: ${n}\n`);
  io.stderr.write(`bench: not replayed: ${TRACED_JOB_LIMITS.join('; ')}\n`);
  if (values['save-job']) writeFileSync(values['save-job'], job.text);
  const dir = mkdtempSync(join(tmpdir(), 'bench-trace-'));
  try {
    const file = join(dir, 'traced.fio');
    writeFileSync(file, job.text);
    const args = ['--job', file];
    if (values.json) args.push('--json');
    if (values.html) args.push('--html', values.html);
    if (values.quiet) args.push('--quiet');
    return await benchCommand(args, io);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
