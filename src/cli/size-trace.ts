import type { Writable } from 'node:stream';
import { LIMITS } from '../mediator/limits.js';
import { adviseFromTrace } from '../workload/trace/trace-advice.js';
import { formatTraceSize } from '../workload/trace/trace-size-format.js';
import { intFlag, MAX_SEED, noOperands, parseCommand } from './args.js';
import { type ReplayTraceIo, TRACE_FLAGS, traceRunFlags, withPoolFlags } from './replay-trace.js';
import { requirementNotes } from './size-notes.js';

export const SIZE_TRACE_HELP = `Usage: swiotlb-mediator size --trace FILE|- [--dmesg FILE] [options]

Pool sizing advice from a real guest's DMA trace (see "replay --trace --help" for
the trace and how to capture it). Every mapping the traced kernel bounced is
replayed, in trace order and from the CPU that searched, against default pools
of each size swiotlb= can give (powers of two) for 1, 2, 4... areas, and
against restricted pools (one area) of whole segments, by the traced kernel's
rules (--kernel, or the boot log's version). It reports what each device asked
of the pool (I/Os and their sizes, peaks of what was live, CPUs and areas,
alignment), the smallest pool with no map failure, and recommends it plus a
margin, three ways: the kernel parameter swiotlb=<nslabs>,<nareas>, a
device-tree restricted-dma-pool node, and this service's config (from the fio
job sizing of the traced workload: its pool also holds the virtqueues).

Options:
  --trace FILE         the trace text; - reads stdin (required)
  --dmesg FILE         the traced boot's log: the traced pool and kernel version
  --base ADDR, --slots N, --pool-areas N, --restricted SIZE|log
                       the traced pool without (or over) the boot log
                       (--restricted not with --slots or --pool-areas)
  --device NAME        size for these devices only (repeat)
  --min-align-mask M   a device's min_align_mask, NAME=MASK or MASK (repeat)
  --kernel V           the traced kernel's version (default: the boot log's, else 6.10)
  --dynamic            the traced kernel had CONFIG_SWIOTLB_DYNAMIC
  --window N           events held back to replay out of trace order (default 4096)
  --areas N            area count to recommend for (default: the traced pool's)
  --margin PCT         head room over the smallest pool without failures (default 25)
  --steps N, --seed N  the service sizing's simulation (as size --job)
  --json               the advice as JSON
  --quiet              no progress on stderr
  -h, --help           this help

Exit status: 0 with a recommendation, 1 when no pool up to 1 GiB holds the trace
or the trace cannot be used (TRACE_* errors), 2 on bad flags.`;

export interface SizeTraceIo extends ReplayTraceIo {
  stdout: Writable;
}

export async function sizeTraceCommand(argv: string[], io: SizeTraceIo): Promise<number> {
  const parsed = parseCommand('size', SIZE_TRACE_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      ...TRACE_FLAGS,
      'pool-areas': { type: 'string' },
      margin: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (parsed === undefined) {
    io.stdout.write(`${SIZE_TRACE_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  noOperands(positionals);
  const areas = intFlag('areas', values.areas, ...LIMITS.areas);
  const margin = intFlag('margin', values.margin, 0);
  const steps = intFlag('steps', values.steps, 1);
  const seed = intFlag('seed', values.seed, 0, MAX_SEED);
  const poolAreas = { name: 'pool-areas', value: values['pool-areas'] };
  const { run, finishProgress } = traceRunFlags(values, io, 'size', poolAreas);
  const report = await withPoolFlags(
    () =>
      adviseFromTrace({
        ...run,
        ...(areas === undefined ? {} : { areas }),
        ...(margin === undefined ? {} : { margin: margin / 100 }),
        ...(steps === undefined ? {} : { steps }),
        ...(seed === undefined ? {} : { seed }),
      }),
    values,
    poolAreas,
  );
  finishProgress();
  // What a guest needs before any advised pool is used, as size --job says it.
  const requirements = requirementNotes({
    kernel: report.pool.profile,
    dynamic: report.pool.dynamic,
  });
  if (values.json) io.stdout.write(`${JSON.stringify({ ...report, requirements }, null, 2)}\n`);
  else {
    io.stdout.write(formatTraceSize(report));
    io.stdout.write(
      ['', 'Before you rely on it:', ...requirements.map((r) => `- ${r}`), ''].join('\n'),
    );
  }
  return report.sizing.recommended_slots === undefined ? 1 : 0;
}
