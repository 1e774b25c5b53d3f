import type { Readable, Writable } from 'node:stream';
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SIZE } from '../swiotlb/constants.js';
import { formatSize } from '../util/size.js';
import { formatBytes } from '../workload/report.js';
import { jobConfig } from '../workload/runner.js';
import { adviseSize, type SizingAdvice } from '../workload/sizing.js';
import { intFlag, jobOperand, parseCommand } from './args.js';
import { readJobFile } from './bench.js';
import { isTraceReplay } from './replay-trace.js';
import { sizeTraceCommand } from './size-trace.js';

export const SIZE_HELP = `Usage: swiotlb-mediator size --job FILE [--margin PCT] [--areas N] [--steps N] [--seed N] [--json]

Pool sizing advice for a fio job. Replays the job's allocation pattern (block
sizes from bs/bssplit, iodepth requests live per numjobs clone, each request a
16-byte header + its data split at the max mapping size + a 1-byte status, the
job's min_align_mask, one virtqueue per clone in the pool, clone q starting in
area q mod nareas) against the Linux-faithful pool: placement only, no copies, a
seeded deterministic sequence of out-of-order completions. For a range of pool
sizes and area counts it reports map failures, back-pressure waits and the
high-water mark, then recommends the smallest pool with no failures plus a
margin, printed three ways: the kernel parameter swiotlb=<nslabs>,<nareas>, a
device-tree restricted-dma-pool node, and this service's config.

Options:
  --job FILE      the fio job file (required)
  --margin PCT    head room over the smallest pool without failures (default 25)
  --areas N       area count to recommend for (default: the job's areas, else its
                  largest numjobs rounded up to a power of two)
  --steps N       completions simulated (default 4000)
  --seed N        PRNG seed (default 1)
  --json          the advice as JSON
  -h, --help      this help

Example: swiotlb-mediator size --job examples/jobs/nvme.fio (the example jobs ship
with the package in examples/jobs/).

With --trace FILE it sizes from a real guest's DMA trace instead ("size --trace - --help").`;

export interface SizeIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
  /** For `size --trace -`. @default process.stdin */
  stdin?: Readable;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The device-tree reserved-memory node (a restricted-dma-pool gets one area in Linux). */
export function deviceTreeNode(slots: number): string {
  const bytes = slots * IO_TLB_SIZE;
  const base = 0x5000_0000;
  return `/* Linux: Documentation/devicetree/bindings/reserved-memory/shared-dma-pool.yaml.
 * A restricted-dma-pool must not have "no-map" or "reusable" (the kernel maps it to
 * bounce through it), and Linux gives it ONE area (rmem_swiotlb_device_init):
 * it is sized here for one area. Pick a free, suitably aligned physical address. */
reserved-memory {
\t#address-cells = <2>;
\t#size-cells = <2>;
\tranges;

\tbounce_pool: restricted-dma-pool@${base.toString(16)} {
\t\tcompatible = "restricted-dma-pool";
\t\treg = <0x0 ${hex(base)} 0x0 ${hex(bytes)}>; /* ${formatBytes(bytes)}, ${slots} slots */
\t};
};

/* and in the node of each device that must bounce through it: */
\tmemory-region = <&bounce_pool>;`;
}

/** An area size that measured as fast as a pool sized to the load (see formatAdvice). */
const SMALL_AREA_BYTES = 4 * 2 ** 20;

function formatAdvice(advice: SizingAdvice, configJson: string | undefined): string {
  const out: string[] = [];
  out.push(
    `Simulated ${advice.steps} completions per pool (seed ${advice.seed}); "failures" = requests Linux would fail (swiotlb buffer is full), "waits" = requests the back-pressure gate would hold.`,
  );
  out.push('');
  out.push('Smallest pool without map failures, by area count:');
  for (const b of advice.by_areas) {
    out.push(
      `  ${String(b.areas).padStart(3)} area${b.areas > 1 ? 's' : ' '}: ${b.minimal_slots === undefined ? 'none up to 1 GiB' : `${b.minimal_slots} slots (${formatBytes(b.minimal_slots * IO_TLB_SIZE)})`}`,
    );
  }
  out.push('');
  out.push(`At ${advice.areas} area${advice.areas > 1 ? 's' : ''}:`);
  out.push('     slots      size   failures      waits  high-water');
  for (const r of advice.table) {
    const mark = r.nslabs === advice.recommended_slots ? '  <- recommended' : '';
    const note = !r.queues_fit ? ' (queues do not fit)' : r.stalled ? ' (stalls)' : '';
    out.push(
      `${String(r.nslabs).padStart(10)} ${formatBytes(r.bytes).padStart(9)} ${String(r.map_failures).padStart(10)} ${String(r.waits).padStart(10)}  ${r.used_hiwater} (${r.used_hiwater_percent}%)${note}${mark}`,
    );
  }
  out.push('');
  if (advice.recommended_slots === undefined) {
    out.push('No pool up to 1 GiB holds this job without failures: lower iodepth or numjobs.');
    return `${out.join('\n')}\n`;
  }
  const rec = advice.recommended_slots;
  out.push(
    `Recommended: ${rec} slots (${formatBytes(rec * IO_TLB_SIZE)}), ${advice.areas} area${advice.areas > 1 ? 's' : ''}: the smallest pool without failures (${advice.minimal_slots} slots) + ${Math.round(advice.margin * 100)}% margin, rounded to whole segments per area.`,
  );
  if (rec * IO_TLB_SIZE * 4 <= IO_TLB_DEFAULT_SIZE) {
    // Measured with bench:pipeline: docs/performance.md ("Pool and area size").
    out.push(
      `Linux's default pool (${formatBytes(IO_TLB_DEFAULT_SIZE)}) is ${Math.floor(IO_TLB_DEFAULT_SIZE / (rec * IO_TLB_SIZE))}x this. A pool far above its high-water costs speed, not only memory: the next-fit search walks the whole area, so each bounce buffer has left the CPU caches before it is used again (ram-blk 64 KiB writes at depth 32 on 2 CPUs ran at 0.55 of direct with 64 MiB in 2 areas, 1.01 with 64 MiB in 16 areas of 4 MiB, 1.10 with 8 MiB). Keep the pool small, or its areas: to keep Linux's 64 MiB, swiotlb=${IO_TLB_DEFAULT_SIZE / IO_TLB_SIZE},${IO_TLB_DEFAULT_SIZE / SMALL_AREA_BYTES} gives areas of ${formatBytes(SMALL_AREA_BYTES)}.`,
    );
  }
  out.push('');
  out.push('Kernel command line:');
  out.push(`  swiotlb=${rec},${advice.areas}`);
  out.push('');
  const one = advice.one_area.recommended_slots;
  out.push('Device tree (restricted DMA pool, one area):');
  out.push(one === undefined ? '  no one-area pool up to 1 GiB works' : deviceTreeNode(one));
  out.push('');
  if (configJson) {
    out.push('This service (serve --config FILE):');
    out.push(configJson);
  }
  return `${out.join('\n')}\n`;
}

export async function sizeCommand(argv: string[], io: SizeIo): Promise<number> {
  if (isTraceReplay(argv))
    return sizeTraceCommand(argv, { ...io, stdin: io.stdin ?? process.stdin });
  const parsed = parseCommand('size', SIZE_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      job: { type: 'string' },
      margin: { type: 'string' },
      areas: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (parsed === undefined) {
    io.stdout.write(`${SIZE_HELP}\n`);
    return 0;
  }
  const { values, positionals } = parsed;
  const job = jobOperand(positionals, values.job);
  const margin = intFlag('margin', values.margin, 0);
  const areas = intFlag('areas', values.areas, 1);
  const steps = intFlag('steps', values.steps, 1);
  const seed = intFlag('seed', values.seed, 0);
  const jf = readJobFile(job);
  for (const w of jf.warnings) io.stderr.write(`size: warning: ${w}\n`);
  const advice = adviseSize(jf, {
    ...(margin !== undefined ? { margin: margin / 100 } : {}),
    ...(areas !== undefined ? { areas } : {}),
    ...(steps !== undefined ? { steps } : {}),
    ...(seed !== undefined ? { seed } : {}),
  });
  let config: unknown;
  if (advice.recommended_slots !== undefined) {
    const c = jobConfig(jf, 'bounce', {
      poolSize: advice.recommended_slots * IO_TLB_SIZE,
      areas: advice.areas,
      fileDir: '.',
    });
    // Sizes as people write them.
    for (const p of c.pools ?? []) if (typeof p.size === 'number') p.size = formatSize(p.size);
    for (const d of c.devices ?? []) {
      if (typeof d.capacity === 'number') d.capacity = formatSize(d.capacity);
      if (typeof d.maxRequestBytes === 'number') d.maxRequestBytes = formatSize(d.maxRequestBytes);
    }
    config = c;
  }
  const configJson = config === undefined ? undefined : JSON.stringify(config, null, 2);
  if (values.json) {
    const rec = advice.recommended_slots;
    const one = advice.one_area.recommended_slots;
    io.stdout.write(
      `${JSON.stringify(
        {
          ...advice,
          kernel_parameter: rec === undefined ? null : `swiotlb=${rec},${advice.areas}`,
          device_tree: one === undefined ? null : deviceTreeNode(one),
          config: config ?? null,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout.write(formatAdvice(advice, configJson));
  }
  return advice.recommended_slots === undefined ? 1 : 0;
}
