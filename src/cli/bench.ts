import { readFileSync, writeFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { MediatorError } from '../errors.js';
import { createLogger } from '../server/logger.js';
import { packageVersion } from '../util/package-version.js';
import {
  type JobFile,
  type JobMode,
  jobPlacement,
  modesOf,
  parseJobFile,
  RUN_MODES,
  type RunMode,
} from '../workload/fio-job.js';
import { renderHtml } from '../workload/html.js';
import { jobPoolGeometry } from '../workload/job-config.js';
import { Progress } from '../workload/progress.js';
import { buildReport, formatReport } from '../workload/report.js';
import { runMode } from '../workload/runner.js';
import { jobOperand, outputFileFlag, parseCommand } from './args.js';
import { benchTraceCommand } from './bench-trace.js';
import { isTraceReplay } from './replay-trace.js';

export const BENCH_HELP = `Usage: swiotlb-mediator bench --job FILE [--json] [--html FILE] [--mode MODE] [--quiet]

Runs a fio job file in-process against the mediator and reports IOPS, bandwidth,
latency (fio's lat, submission to completion: min/mean/p50/p90/p99/p99.9/max)
per job clone (per group under group_reporting) and in total,
and the mediator's view: bytes bounced by direction, pool high-water,
requeues ("swiotlb buffer is full"), back-pressure waits. Modes: bounce (Linux's swiotlb), bounce-tuned
(bounce, warm placement, reads without the copy-in), shared (buffers allocated in the pool, no
copies, warm placement unless the job sets placement), direct (no isolation). A job
without mode runs bounce-tuned (the service's bounce); "both" runs bounce then direct, "all" every
mode; each mode's IOPS, bandwidth and p99 are printed divided by direct's.

fio options understood, read as fio reads them (aliases such as readwrite,
blocksize, io_limit, timeout are the same option: the later line wins; a line
ends at its first ; or #): rw (read, write, randread, randwrite, randrw, rw,
readwrite), bs (reads,writes[,trims]: "8k," reads only, ",8k" writes only),
bssplit (integer shares; what they leave goes to the largest), rwmixread,
rwmixwrite, iodepth, numjobs, size, io_size, runtime (0: no limit),
time_based, ramp_time, number_ios, randseed, name, group_reporting (one
entry per group), norandommap (random jobs keep fio's random map unless set),
and what a write does to
its buffer as fio does: scramble_buffers (default 1: each 512-byte block
stamped), refill_buffers (all rewritten), zero_buffers (untouched). Sizes with
fio's kb_base=1024: 4k = 4096, and KiB/MiB/GiB powers of 10 (4KiB = 4000).
ioengine sets the depth as in fio: unset (psync) or synchronous, iodepth runs
at 1 with fio's note; libaio, io_uring... keep it; an engine fio lacks is
refused. direct: no page cache here (as direct=1); warned of unless 1.
And this project's: mode (bounce|bounce-tuned|shared|direct|both|all; default
bounce-tuned), from_device_bounce (linux|used-length: what mode bounce copies
for reads), placement (linux|warm: the kernel's next-fit search, or recently
freed slots first; default linux, but shared runs warm unless set; bounce-tuned
always warm), device (null|ram-blk|file-blk), min_align_mask, copy_workers; the
pool in the kernel's terms: swiotlb=N[,A] (the kernel parameter, built as the
kernel builds it), pool_size and areas, or restricted=SIZE (a
restricted-dma-pool: exact slots, one area); kernel (6.1|6.6|6.10: whose
swiotlb rules); backpressure (requeue: Linux's virtio-blk, no time limit |
requeue-bounded: the service's, 5 s | fail: the DMA API's).
filename, thread, invalidate... are ignored with a warning (and
iodepth_batch*, randrepeat when their value makes fio differ); any other option
is an error (JOB_UNSUPPORTED_OPTION).

Options:
  --job FILE        the fio job file (required)
  --json            print the report as fio-shaped JSON on stdout (progress stays on stderr)
  --html FILE       also write a self-contained HTML page with charts and the
                    pool's slot map at its peak
  --mode MODE       override the job file's mode: bounce, bounce-tuned, shared,
                    direct, both or all
  --quiet           no progress output
  -h, --help        this help

Progress goes to stderr: a bar on a terminal, a plain line every second otherwise.
So do the kernel's lines for the pool ("software IO TLB: area num 2." ...) and
warnings, as pino JSON lines: "swiotlb buffer is full" (a pool too small for the
job; virtio-blk then requeues the request, and the report counts the requeues)
and device faults, each once per 5 s burst, and device resets (docs/logging.md).

Example jobs ship with the package in examples/jobs/: database.fio, backup.fio,
network.fio, nvme.fio. The options in full: docs/cli.md.

With --trace FILE it runs a real guest's traced workload instead ("bench --trace - --help").

Exit status: 0 when every mode ran, 1 when a run failed or the --html page could
not be written (the report is printed first), 2 on bad flags or a job file it
cannot read or run (JOB_BAD_FILE, JOB_UNSUPPORTED_OPTION).`;

export interface BenchIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
  /** For `bench --trace -`. @default process.stdin */
  stdin?: Readable;
}

/** Which of the modes run on warm placement (not the kernel's), for the pool line. */
function placementNote(jf: JobFile, modes: readonly JobMode[]): string {
  const warm = modes.filter((m) => m !== 'direct' && jobPlacement(jf.settings, m) === 'warm');
  return warm.length === 0 ? '' : `; warm placement (not the kernel's) in ${warm.join(', ')}`;
}

/** Reads and parses a job file; a missing file is JOB_BAD_FILE. */
export function readJobFile(path: string): JobFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MediatorError('JOB_BAD_FILE', `cannot read ${path}: ${(err as Error).message}`);
  }
  return parseJobFile(text, path);
}

export async function benchCommand(argv: string[], io: BenchIo): Promise<number> {
  if (isTraceReplay(argv))
    return benchTraceCommand(argv, { ...io, stdin: io.stdin ?? process.stdin });
  const parsed = parseCommand('bench', BENCH_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      job: { type: 'string' },
      json: { type: 'boolean' },
      html: { type: 'string' },
      mode: { type: 'string' },
      quiet: { type: 'boolean' },
    },
  });
  if (parsed === undefined) {
    io.stdout.write(`${BENCH_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  const job = jobOperand(positionals, values.job);
  outputFileFlag('html', values.html);
  if (values.mode && !RUN_MODES.includes(values.mode as RunMode)) {
    throw new MediatorError(
      'CLI_USAGE',
      `--mode: "${values.mode}" is not one of ${RUN_MODES.join(', ')}`,
    );
  }
  const jf = readJobFile(job);
  if (values.mode) jf.settings.mode = values.mode as RunMode;
  for (const w of jf.warnings) io.stderr.write(`bench: warning: ${w}\n`);

  const progress = values.quiet ? undefined : new Progress(io.stderr);
  // Warnings (device faults, full pools...) as pino lines on stderr: stdout is the report's.
  const log = createLogger({ level: 'warn', stream: io.stderr });
  const modes = modesOf(jf.settings.mode);
  if (modes.some((m) => m !== 'direct') && !values.quiet) {
    // What the kernel would log at boot for this pool, in its words.
    const g = jobPoolGeometry(jf);
    for (const line of g.log) io.stderr.write(`${line}\n`);
    io.stderr.write(
      `bench: pool ${g.kind === 'restricted' ? 'restricted-dma-pool' : 'default pool'} of ${g.nslabs} slots in ${g.nareas} area(s), Linux ${jf.settings.kernel} rules, policy ${jf.settings.backpressure} when full${placementNote(jf, modes)}\n`,
    );
  }
  const results = [];
  for (const mode of modes) {
    const r = await runMode(jf, mode, {
      log,
      slotMapAtPeak: values.html !== undefined,
      ...(progress
        ? { onProgress: (p: Parameters<Progress['update']>[0]) => progress.update(p) }
        : {}),
    });
    progress?.done(
      `bench: ${mode} done: ${r.total.all.total_ios} I/Os in ${(r.total.runtimeMs / 1000).toFixed(2)} s`,
    );
    results.push(r);
  }
  const report = buildReport(jf, results, packageVersion());
  // The report first: a page that cannot be written (checked at the start, but
  // the disk can change in a long run) must not take the run's figures with it.
  if (values.json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else io.stdout.write(formatReport(report));
  if (values.html) {
    try {
      writeFileSync(values.html, renderHtml(report, `swiotlb-mediator bench: ${job}`));
    } catch (err) {
      io.stderr.write(`bench: --html: cannot write ${values.html}: ${(err as Error).message}\n`);
      return 1;
    }
    io.stderr.write(`bench: wrote ${values.html}\n`);
  }
  return 0;
}
