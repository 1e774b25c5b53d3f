import type { Readable, Writable } from 'node:stream';
import { MediatorError } from '../errors.js';
import { LIMITS } from '../mediator/limits.js';
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SIZE } from '../swiotlb/constants.js';
import { computeGeometry } from '../swiotlb/geometry.js';
import { hasDynamicPools, type KernelVersion } from '../swiotlb/kernel.js';
import { formatSize } from '../util/size.js';
import type { JobFile } from '../workload/fio-job.js';
import { formatBytes } from '../workload/report.js';
import { jobConfig } from '../workload/runner.js';
import {
  adviseSize,
  type PoolAdvice,
  type SizingAdvice,
  unchangedSizeWarning,
} from '../workload/sizing.js';
import { intFlag, jobOperand, kernelFlag, MAX_SEED, parseCommand } from './args.js';
import { readJobFile } from './bench.js';
import { isTraceReplay } from './replay-trace.js';
import { requirementNotes } from './size-notes.js';
import { sizeTraceCommand } from './size-trace.js';

export const SIZE_HELP = `Usage: swiotlb-mediator size --job FILE [--kernel V] [--dynamic] [--margin PCT]
                             [--areas N] [--indirect-desc on|off] [--steps N]
                             [--seed N] [--json]

Pool sizing advice for a fio job. Replays the job's allocation pattern (block
sizes from bs/bssplit, iodepth requests live per numjobs clone, each request a
16-byte header + its data split at the max mapping size + a 1-byte status + its
indirect descriptor table of 16 bytes per entry, the job's min_align_mask, clone
q starting in area q mod nareas) against pools built
and searched as the kernel does: placement only, no copies, a seeded
deterministic sequence of out-of-order completions. A request that finds the
pool full is requeued, as Linux's virtio-blk does (BLK_STS_RESOURCE), never
failed. It advises three pools: the kernel parameter swiotlb=<nslabs>,<nareas>
(streaming maps only: Linux allocates the virtqueues elsewhere), a device-tree
restricted-dma-pool node (maps and virtqueues, one area), and this service's
config; each the smallest the kernel builds where nothing was requeued, with a
margin. Then what the guest needs for the pool to be used at all.

Options:
  --job FILE      the fio job file (required)
  --kernel V      whose swiotlb rules: 6.1, 6.6 or 6.10 (default: the job's kernel=, else 6.10)
  --dynamic       CONFIG_SWIOTLB_DYNAMIC (6.6 and later): the default pool takes
                  transient pools and grows instead of filling; shows what it does
  --margin PCT    head room over what the run used (default 25)
  --areas N       area count to advise for (default: the job's areas, else its
                  largest numjobs rounded up to a power of two)
  --indirect-desc on|off
                  does the guest's virtio-blk device offer indirect descriptors
                  (VIRTIO_RING_F_INDIRECT_DESC)? on (default, as QEMU's does):
                  Linux maps each request's descriptor table too, one more slot
                  per request in flight; off: as QEMU's indirect_desc=off
  --steps N       completions simulated (default 4000)
  --seed N        PRNG seed (default 1)
  --json          the advice as JSON
  -h, --help      this help

The kernel's lines for the advised pool ("software IO TLB: area num 2." ...) go
to stderr. Example: swiotlb-mediator size --job examples/jobs/nvme.fio (the
example jobs ship with the package in examples/jobs/).

With --trace FILE it sizes from a real guest's DMA trace instead ("size --trace - --help").

Exit status: 0 with a recommendation, 1 when no default pool up to 1 GiB holds
the job, 2 on bad flags or a job file it cannot read or use (JOB_* errors).`;

export interface SizeIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
  /** For `size --trace -`. @default process.stdin */
  stdin?: Readable;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The device-tree reserved-memory node of a restricted-dma-pool of `slots` slots. */
export function deviceTreeNode(slots: number): string {
  const bytes = slots * IO_TLB_SIZE;
  const base = 0x5000_0000;
  return `/* Binding: dtschema, schemas/reserved-memory/shared-dma-pool.yaml (the kernel's
 * Documentation/devicetree/bindings/reserved-memory/shared-dma-pool.yaml moved
 * there). A restricted-dma-pool must not have "no-map", "reusable", "linux,cma-default"
 * or "linux,dma-default" (rmem_swiotlb_setup() refuses the node); Linux makes
 * it exactly size >> 11 slots in ONE area (rmem_swiotlb_device_init()), never
 * rounded, never grown, and places the device's virtqueues in it too
 * (dma_alloc_coherent() -> swiotlb_alloc()). Pick a free, page-aligned address in
 * the guest's RAM: the pool is used through the linear mapping. #address-cells and
 * #size-cells must be the root node's (__reserved_mem_check_root()). */
reserved-memory {
\t#address-cells = <2>;
\t#size-cells = <2>;
\tranges;

\tbounce_pool: restricted-dma-pool@${base.toString(16)} {
\t\tcompatible = "restricted-dma-pool";
\t\treg = <0x0 ${hex(base)} 0x0 ${hex(bytes)}>; /* ${formatBytes(bytes)}, ${slots} slots */
\t};
};

/* and in the node of each device that must bounce through it (a PCI device with
 * no node of its own: the host bridge's node, for every device behind it, as
 * of_dma_set_restricted_buffer() falls back to the node with the DMA configuration): */
\tmemory-region = <&bounce_pool>;`;
}

/**
 * Where the advised log lines differ from a real boot's: the address, and x86's
 * "mapped" line. swiotlb_memblock_alloc() (kernel/dma/swiotlb.c, 6.12.117) takes the
 * pool from low memory (memblock_alloc_low()); x86 passes no SWIOTLB_VERBOSE to
 * swiotlb_init() and prints the line in pci_iommu_init() (arch/x86/kernel/pci-dma.c,
 * 6.1.192 and 6.12.117) only `if (x86_swiotlb_enable)`, which pci_swiotlb_detect() sets
 * for memory above 4 GiB (max_possible_pfn > MAX_DMA32_PFN) or a confidential guest.
 */
const BOOT_LOG_CAVEAT =
  'at the address memblock gives the pool in low memory, not 0; x86 prints the "mapped" line only when it enables swiotlb itself: a confidential guest, memory above 4 GiB, iommu=soft; a forced pool of a smaller x86 guest logs "area num" alone';

/** An area size that measured as fast as a pool sized to the load (see formatAdvice). */
const SMALL_AREA_BYTES = 4 * 2 ** 20;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** One table of runs: requeues, held requests, high-water (and growth with --dynamic). */
function tableLines(a: PoolAdvice, dynamic: boolean): string[] {
  const out = [
    `     slots      size   requeues       held  high-water${dynamic ? '             transient  growths  slots after' : ''}`,
  ];
  for (const r of a.table) {
    const mark = r.nslabs === a.recommended_slots ? '  <- recommended' : '';
    const note = !r.queues_fit
      ? ' (queues do not fit)'
      : r.kernel_defects > 0
        ? ` (${r.kernel_defects} searches Linux ${r.kernel} never finishes)`
        : r.stalled
          ? ' (stalls)'
          : '';
    const hw = `${r.used_hiwater} (${r.used_hiwater_percent}%)`;
    const dyn = r.dynamic
      ? `  ${String(r.dynamic.transient_maps).padStart(9)}  ${String(r.dynamic.growths).padStart(7)}  ${String(r.dynamic.nslabs_after).padStart(11)}`
      : '';
    out.push(
      `${String(r.nslabs).padStart(10)} ${formatBytes(r.bytes).padStart(9)} ${String(r.requeues).padStart(10)} ${String(r.waits).padStart(10)}  ${dynamic ? hw.padEnd(18) : hw}${dyn}${note}${mark}`,
    );
  }
  return out;
}

/** The default pool: by area count, the table, the recommendation and what it costs. */
function defaultPoolLines(advice: SizingAdvice): string[] {
  const out: string[] = [];
  const d = advice.default_pool;
  out.push(
    'Default pool (swiotlb=<nslabs>,<nareas>): the streaming maps only; Linux allocates the virtqueues outside it.',
    `Smallest pool the kernel builds on which nothing was requeued${advice.dynamic ? ' nor grown' : ''}, by area count:`,
  );
  for (const b of advice.by_areas) {
    out.push(
      `  ${String(b.areas).padStart(3)} area${b.areas > 1 ? 's' : ' '}: ${b.minimal_slots === undefined ? 'none up to 1 GiB' : `swiotlb=${b.minimal_slots},${b.areas} (${formatBytes(b.minimal_slots * IO_TLB_SIZE)})`}`,
    );
  }
  out.push('', `At ${plural(advice.areas, 'area')}:`, ...tableLines(d, advice.dynamic), '');
  const rec = d.recommended_slots;
  if (rec === undefined) {
    out.push(
      'No default pool up to 1 GiB holds this job without requeues: lower iodepth or numjobs.',
    );
    return out;
  }
  const hw = d.table.find((r) => r.nslabs === rec)!.used_hiwater;
  out.push(
    `Recommended: swiotlb=${rec},${advice.areas} (${formatBytes(rec * IO_TLB_SIZE)}): the smallest pool the kernel builds on which nothing was requeued${advice.dynamic ? ' nor grown' : ''} and whose high-water (${hw} slots) + ${Math.round(advice.margin * 100)}% fits. The kernel keeps it as written (a power of two, at least 128 slots per area), and logs at boot (${BOOT_LOG_CAVEAT}):`,
  );
  for (const line of computeGeometry({ slots: rec, areas: advice.areas }).log)
    out.push(`  ${line}`);
  if (rec * IO_TLB_SIZE * 4 <= IO_TLB_DEFAULT_SIZE) {
    // Measured with bench:pipeline: docs/performance.md ("Pool and area size").
    out.push(
      `Linux's default pool (${formatBytes(IO_TLB_DEFAULT_SIZE)}) is ${Math.floor(IO_TLB_DEFAULT_SIZE / (rec * IO_TLB_SIZE))}x this. A pool far above its high-water costs speed, not only memory: the next-fit search walks the whole area, so each bounce buffer has left the CPU caches before it is used again (ram-blk 64 KiB writes at depth 32 on 2 CPUs ran at 0.55 of direct with 64 MiB in 2 areas, 1.01 with 64 MiB in 16 areas of 4 MiB, 1.10 with 8 MiB). Keep the pool small, or its areas: to keep Linux's 64 MiB, swiotlb=${IO_TLB_DEFAULT_SIZE / IO_TLB_SIZE},${IO_TLB_DEFAULT_SIZE / SMALL_AREA_BYTES} gives areas of ${formatBytes(SMALL_AREA_BYTES)}. Not on a guest whose architecture sizes the pool (SEV, TDX; arm64 6.12 with all memory below the DMA zone limit): 32768 slots look like no swiotlb= to swiotlb_adjust_size(), which resizes the pool (on SEV and TDX to 6% of memory, its ${IO_TLB_DEFAULT_SIZE / SMALL_AREA_BYTES} areas growing with it); swiotlb=${IO_TLB_DEFAULT_SIZE / IO_TLB_SIZE / 2},${IO_TLB_DEFAULT_SIZE / 2 / SMALL_AREA_BYTES} keeps areas of ${formatBytes(SMALL_AREA_BYTES)} everywhere.`,
    );
  }
  if (advice.dynamic) {
    out.push(
      'With CONFIG_SWIOTLB_DYNAMIC a smaller pool never says "swiotlb buffer is full": each request that finds it full gets a transient pool of its own (allocated then, freed at its unmap), and the pool grows by up to 4 MiB at a time ("slots after"). The recommendation is the pool that needs neither.',
    );
  }
  out.push(
    '',
    'Kernel command line:',
    `  swiotlb=${rec},${advice.areas}          a confidential guest (SEV, TDX) bounces every DMA by itself`,
    `  swiotlb=${rec},${advice.areas},force    any other guest: without force Linux bounces only what a device cannot reach`,
  );
  const unchanged = unchangedSizeWarning(rec);
  if (unchanged !== undefined) out.push(`Warning: ${unchanged}`);
  return out;
}

function restrictedLines(a: PoolAdvice, margin: number): string[] {
  const out = [
    'Device tree restricted-dma-pool: the streaming maps and the virtqueues, exactly size >> 11 slots in one area.',
    ...tableLines(a, false),
  ];
  const rec = a.recommended_slots;
  if (rec === undefined) return [...out, '  no restricted pool up to 1 GiB holds this job'];
  const wanted = (a.minimal_slots ?? 0) * (1 + margin);
  const basis = `the smallest on which nothing was requeued (${a.minimal_slots} slots, in whole segments) + ${Math.round(margin * 100)}% margin`;
  out.push(
    `Recommended: ${rec} slots (${formatBytes(rec * IO_TLB_SIZE)}): ${basis}${
      wanted > rec
        ? ` would be ${Math.ceil(wanted)} slots, past the 1 GiB a pool can be: the largest pool instead.`
        : ', in whole segments.'
    }`,
    deviceTreeNode(rec),
  );
  return out;
}

/** How the guest's requests were mapped in the kernel's pools. */
function indirectNote(advice: SizingAdvice): string {
  return advice.indirect
    ? "Each request maps its 16-byte header, its data, its status byte and its indirect descriptor table (16 bytes per entry: the device offers VIRTIO_RING_F_INDIRECT_DESC, as QEMU's does by default; --indirect-desc off if yours does not); this service's own pool, whose driver chains descriptors directly, has no tables."
    : "Each request maps its 16-byte header, its data and its status byte: no indirect descriptor tables (--indirect-desc off, as with QEMU's indirect_desc=off).";
}

function formatAdvice(advice: SizingAdvice, configJson: string | undefined): string {
  const out: string[] = [
    `Linux ${advice.kernel} swiotlb rules${advice.dynamic ? ' with CONFIG_SWIOTLB_DYNAMIC' : ''}; ${advice.steps} completions simulated per pool (seed ${advice.seed}). ${indirectNote(advice)} "requeues": requests that found the pool full ("swiotlb buffer is full"); Linux's virtio-blk returns BLK_STS_RESOURCE and blk-mq requeues them until slots come back: the I/O is delayed, not failed. "held": requests requeued or waiting behind one on their queue.`,
    '',
    ...defaultPoolLines(advice),
    '',
    ...restrictedLines(advice.restricted_pool, advice.margin),
    '',
  ];
  if (configJson) {
    const s = advice.service_pool;
    out.push(
      `This service (serve --config FILE): its pool holds the virtqueues too (${s.table.find((r) => r.nslabs === s.recommended_slots)?.queue_slots ?? 0} slots), so it is sized on its own:`,
      configJson,
      '',
    );
  }
  out.push('Before you rely on it:', ...requirementNotes(advice).map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}

/** The service config for the advice: the job's devices on the advised service pool. */
function serviceConfig(jf: JobFile, advice: SizingAdvice): unknown {
  const slots = advice.service_pool.recommended_slots;
  if (slots === undefined) return undefined;
  const c = jobConfig(jf, 'bounce', { pool: { slots, areas: advice.areas }, fileDir: '.' });
  c.kernel = advice.kernel;
  // The pool in the kernel's terms, sizes as people write them.
  c.pools = (c.pools ?? []).map((p) => ({
    name: p.name,
    swiotlb: `${slots},${advice.areas}`,
    ...(p.backpressure ? { backpressure: p.backpressure } : {}),
  }));
  for (const d of c.devices ?? []) {
    if (typeof d.capacity === 'number') d.capacity = formatSize(d.capacity);
    if (typeof d.maxRequestBytes === 'number') d.maxRequestBytes = formatSize(d.maxRequestBytes);
  }
  return c;
}

/** An `on` / `off` flag's value; undefined when not given. */
function onOffFlag(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'on' || value === 'off') return value === 'on';
  throw new MediatorError('CLI_USAGE', `--${name}: expected on or off, got "${value}"`);
}

export async function sizeCommand(argv: string[], io: SizeIo): Promise<number> {
  if (isTraceReplay(argv))
    return sizeTraceCommand(argv, { ...io, stdin: io.stdin ?? process.stdin });
  const parsed = parseCommand('size', SIZE_HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      job: { type: 'string' },
      kernel: { type: 'string' },
      dynamic: { type: 'boolean' },
      margin: { type: 'string' },
      areas: { type: 'string' },
      'indirect-desc': { type: 'string' },
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
  const dynamic = values.dynamic === true;
  const flagKernel = kernelFlag(values.kernel, dynamic);
  const margin = intFlag('margin', values.margin, 0);
  const areas = intFlag('areas', values.areas, ...LIMITS.areas);
  const steps = intFlag('steps', values.steps, 1);
  const seed = intFlag('seed', values.seed, 0, MAX_SEED);
  const indirect = onOffFlag('indirect-desc', values['indirect-desc']);
  const jf = readJobFile(job);
  for (const w of jf.warnings) io.stderr.write(`size: warning: ${w}\n`);
  const kernel: KernelVersion = flagKernel ?? jf.settings.kernel;
  if (dynamic && !hasDynamicPools(kernel)) {
    throw new MediatorError(
      'CLI_USAGE',
      `--dynamic: ${kernel} (the job's kernel=) has no CONFIG_SWIOTLB_DYNAMIC (6.6 on)`,
    );
  }
  const advice = adviseSize(jf, {
    kernel,
    dynamic,
    ...(indirect !== undefined ? { indirect } : {}),
    ...(margin !== undefined ? { margin: margin / 100 } : {}),
    ...(areas !== undefined ? { areas } : {}),
    ...(steps !== undefined ? { steps } : {}),
    ...(seed !== undefined ? { seed } : {}),
  });
  const asked = areas ?? jf.settings.areas;
  if (asked !== undefined && asked !== advice.areas) {
    io.stderr.write(
      `size: note: ${asked} areas are built as ${advice.areas}: the kernel rounds the count up to a power of two (swiotlb_adjust_nareas()), and the advice is for what it builds\n`,
    );
  }
  return writeAdvice(jf, advice, values.json === true, io);
}

/**
 * Prints advice (text or JSON) and the kernel's lines for the advised default pool
 * on stderr; the exit status: 1 when no default pool up to 1 GiB holds the job.
 * Also what `size --trace` prints for a traced workload.
 */
export function writeAdvice(jf: JobFile, advice: SizingAdvice, json: boolean, io: SizeIo): number {
  const rec = advice.recommended_slots;
  if (rec !== undefined) {
    for (const line of computeGeometry({ slots: rec, areas: advice.areas }).log) {
      io.stderr.write(`${line}\n`);
    }
  }
  const config = serviceConfig(jf, advice);
  const configJson = config === undefined ? undefined : JSON.stringify(config, null, 2);
  if (json) {
    const one = advice.restricted_pool.recommended_slots;
    io.stdout.write(
      `${JSON.stringify(
        {
          ...advice,
          kernel_parameter: rec === undefined ? null : `swiotlb=${rec},${advice.areas}`,
          kernel_parameter_forced:
            rec === undefined ? null : `swiotlb=${rec},${advice.areas},force`,
          kernel_log:
            rec === undefined ? [] : computeGeometry({ slots: rec, areas: advice.areas }).log,
          device_tree: one === undefined ? null : deviceTreeNode(one),
          config: config ?? null,
          requirements: requirementNotes(advice),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout.write(formatAdvice(advice, configJson));
  }
  return rec === undefined ? 1 : 0;
}
