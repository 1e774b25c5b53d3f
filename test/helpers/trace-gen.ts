import { isMediatorError } from '../../src/errors.js';
import { DmaDirection, IO_TLB_SIZE } from '../../src/swiotlb/constants.js';
import { DynamicPool } from '../../src/swiotlb/dynamic.js';
import type { GeometryOptions } from '../../src/swiotlb/geometry.js';
import type { KernelVersion } from '../../src/swiotlb/kernel.js';
import { SwiotlbPool } from '../../src/swiotlb/pool.js';

/**
 * Writes kernel trace text for tests, from the formats the kernel and trace-cmd
 * print (see src/workload/trace/trace-line.ts and dma-events.ts for the sources):
 * both layouts (tracefs `trace` and `trace-cmd report`), both array styles
 * (the kernel's / libtraceevent >= 1.8.4 "{0x..,0x..}" and older libtraceevent's
 * space-separated decimal), the 6.12 event names and mainline's renames
 * (dma_map_phys, dma_unmap_phys, dma_map_sg's nents/ents and [TRUNCATED]).
 *
 * The "kernel" is {@link KernelSim}: the project's own pool with a kernel profile
 * (6.1, 6.6, 6.10), exact geometry, a restricted pool or a growable one, driven in
 * the order the test performs the operations, gives every bounced mapping its
 * dma_addr; {@link simBootLog} writes the boot log that pool's kernel prints.
 * The test then lays the events out in whatever trace order it wants (to model
 * CPUs whose trace points fire out of the order of the allocations).
 */

export interface Style {
  layout: 'tracefs' | 'trace-cmd';
  arrays: 'kernel' | 'decimal';
  naming: '6.12' | 'mainline';
  /**
   * The flags column of option irq-info (tracefs only: trace-cmd report always
   * prints libtraceevent's latency column). @default true
   */
  irqInfo?: boolean;
  /** The tgid column of option record-tgid (tracefs). @default false */
  tgid?: boolean;
  /** trace-cmd report -l: `"%8.8s-%-5d %3d%s"`, the CPU unbracketed, the flags glued to it. */
  latency?: boolean;
  /** trace-cmd report --ts-diff: `" %-8s"` of `"(+%lld)"` after the time. */
  tsDiff?: boolean;
  /**
   * tracefs option latency-format (6.12 trace_print_lat_context()): 'plain'
   * lat_print_generic() and lat_print_timestamp()'s time since the buffer
   * started; 'verbose' with option verbose too. Its own header
   * (print_trace_header(), print_lat_help_header()).
   */
  latencyFormat?: 'plain' | 'verbose';
  /**
   * tracefs' trace clock: 'ns' for local, global, mono... (TRACE_FILE_TIME_IN_NS:
   * secs.usecs, the latency format's microseconds), 'counter' for one that
   * counts (the render's microsecond numbers printed as bare counts). @default 'ns'
   */
  clock?: 'ns' | 'counter';
}

export const STYLES: readonly Style[] = [
  { layout: 'tracefs', arrays: 'kernel', naming: '6.12' },
  { layout: 'trace-cmd', arrays: 'kernel', naming: '6.12' },
  { layout: 'trace-cmd', arrays: 'decimal', naming: '6.12' },
  { layout: 'tracefs', arrays: 'kernel', naming: 'mainline', tgid: true },
  { layout: 'trace-cmd', arrays: 'decimal', naming: 'mainline', latency: true, tsDiff: true },
  { layout: 'tracefs', arrays: 'kernel', naming: '6.12', irqInfo: false },
  { layout: 'tracefs', arrays: 'kernel', naming: '6.12', latencyFormat: 'plain' },
  { layout: 'tracefs', arrays: 'kernel', naming: 'mainline', latencyFormat: 'verbose' },
];

/** One buffer the kernel mapped: its dma_addr is what the trace prints (a test may plant another). */
export interface Mapping {
  dev: string;
  phys: number;
  size: number;
  dir: DmaDirection;
  /** The address the trace prints; -1 prints ffffffffffffffff. */
  dmaAddr: number;
  /** Where the simulated kernel really placed it (-1: not in the pool). */
  placed: number;
}

export type GenEvent =
  | { t: 'map'; cpu: number; m: Mapping }
  | { t: 'unmap'; cpu: number; m: Mapping }
  | { t: 'map_sg'; cpu: number; dev: string; dir: DmaDirection; entries: Mapping[]; shown?: number }
  | { t: 'unmap_sg'; cpu: number; dev: string; dir: DmaDirection; entries: Mapping[] }
  | { t: 'sync'; cpu: number; m: Mapping; offset: number; size: number; forDevice: boolean }
  | { t: 'sync_sg'; cpu: number; dev: string; entries: Mapping[]; forDevice: boolean }
  | { t: 'bounced'; cpu: number; m: Mapping; encryptionBit?: number }
  | { t: 'other'; cpu: number; name: string; body: string }
  | { t: 'lost'; cpu: number; count: number };

const DIR_NAMES = ['BIDIRECTIONAL', 'TO_DEVICE', 'FROM_DEVICE', 'NONE'];

/** The simulated kernel's pool: `swiotlb=slots,areas` at base, or a restricted-dma-pool of `restricted` bytes. */
export interface SimGeometry {
  base: number;
  slots: number;
  areas: number;
  /** A restricted-dma-pool of this many bytes (one area; `slots` and `areas` are ignored). */
  restricted?: number;
}

export interface SimOptions {
  /** The profile whose rules place the mappings. @default '6.10' */
  kernel?: KernelVersion;
  /** CONFIG_SWIOTLB_DYNAMIC: the default pool grows (6.6, 6.10). @default false */
  dynamic?: boolean;
}

/**
 * The simulated kernel: the project's pool with a kernel profile, the search
 * starting in area cpu & (nareas - 1); with `dynamic`, the growable pool, whose
 * transient and grown pools lie outside the default pool's range. A map the
 * 6.1 rules would search for ever is not made (`hung`): a real 6.1 CPU would
 * write nothing more.
 */
export class KernelSim {
  readonly pool: SwiotlbPool;
  readonly dyn: DynamicPool | undefined;
  readonly kernel: KernelVersion;
  /** Requests the profile's kernel would never finish (6.1), in order. */
  readonly hung: Mapping[] = [];

  constructor(
    readonly geometry: SimGeometry,
    opts: SimOptions = {},
  ) {
    this.kernel = opts.kernel ?? '6.10';
    const g: GeometryOptions =
      geometry.restricted === undefined
        ? { base: geometry.base, slots: geometry.slots, areas: geometry.areas }
        : { base: geometry.base, restricted: true, size: geometry.restricted };
    if (opts.dynamic) {
      this.dyn = new DynamicPool({ ...g, kernel: this.kernel });
      this.pool = this.dyn.defpool;
    } else {
      this.pool = SwiotlbPool.create({ ...g, kernel: this.kernel, area: 0 });
    }
  }

  /** A streaming map: bounced (placed in the pool, or failed) or direct (dma_addr = phys). */
  map(
    dev: string,
    cpu: number,
    phys: number,
    size: number,
    dir: DmaDirection,
    opts: { bounce?: boolean; minAlignMask?: number } = {},
  ): Mapping {
    if (opts.bounce === false) return { dev, phys, size, dir, dmaAddr: phys, placed: -1 };
    const minAlignMask = opts.minAlignMask ?? 0;
    let tlb: number;
    try {
      if (this.dyn) {
        try {
          tlb = this.dyn.map(phys, size, dir, { area: cpu, minAlignMask });
        } catch (err) {
          if (!isMediatorError(err, 'SWIOTLB_POOL_FULL')) throw err;
          tlb = -1;
        }
      } else {
        const area = cpu & (this.pool.geometry.nareas - 1);
        tlb = this.pool.tryAllocate(phys, size, dir, { area, minAlignMask });
      }
    } catch (err) {
      if (!isMediatorError(err, 'SWIOTLB_KERNEL_WOULD_HANG')) throw err;
      const m = { dev, phys, size, dir, dmaAddr: -1, placed: -1 };
      this.hung.push(m);
      return m;
    }
    return { dev, phys, size, dir, dmaAddr: tlb, placed: tlb };
  }

  unmap(m: Mapping): void {
    if (m.placed < 0) return;
    if (this.dyn) this.dyn.unmap(m.placed, m.size, m.dir);
    else this.pool.release(m.placed, m.size, m.dir);
  }

  /** True when the mapping lies outside the default pool (a transient or grown pool). */
  outside(m: Mapping): boolean {
    return m.placed >= 0 && !this.pool.contains(m.placed);
  }

  /** The boot log of this pool (its kernel's own lines), with the banner of `release`. */
  bootLog(release: string, extra: string[] = []): string {
    return simBootLog(this.pool.geometry, release, extra);
  }
}

/** A boot log from a pool geometry's own log lines (computeGeometry()), dmesg style. */
export function simBootLog(
  g: { log: readonly string[] },
  release: string,
  extra: string[] = [],
): string {
  return [
    `[    0.000000] Linux version ${release} (builder@host) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC`,
    '[    0.000000] Command line: console=ttyS0 swiotlb=force',
    ...g.log.map((line, i) => `[    0.${String(4000 + i * 1000).padStart(6, '0')}] ${line}`),
    ...extra,
    '[    1.000000] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks (1.07 GB/1.00 GiB)',
    '',
  ].join('\n');
}

function hex(n: number): string {
  return n === -1 ? 'ffffffffffffffff' : n.toString(16);
}

function array(values: number[], style: Style): string {
  return style.arrays === 'kernel'
    ? `{${values.map((v) => `0x${v === -1 ? 'ffffffffffffffff' : v.toString(16)}`).join(',')}}`
    : values.map((v) => (v === -1 ? '18446744073709551615' : String(v))).join(' ');
}

/** The event's name and its TP_printk text. */
export function eventText(ev: GenEvent, style: Style): { name: string; body: string } {
  const page = style.naming === 'mainline' ? 'phys' : 'page';
  switch (ev.t) {
    case 'map': {
      const m = ev.m;
      return {
        name: `dma_map_${page}`,
        body: `${m.dev} dir=${DIR_NAMES[m.dir]} dma_addr=${hex(m.dmaAddr)} size=${m.size} phys_addr=${hex(m.phys)} attrs=`,
      };
    }
    case 'unmap': {
      const m = ev.m;
      return {
        name: `dma_unmap_${page}`,
        body: `${m.dev} dir=${DIR_NAMES[m.dir]} dma_addr=${hex(m.dmaAddr)} size=${m.size} attrs=`,
      };
    }
    case 'map_sg': {
      const n = ev.entries.length;
      const shown = ev.shown ?? n;
      const list = ev.entries.slice(0, shown);
      // 6.12.117's dma.h prints the counts as mainline does (TRACE_EVENT(dma_map_sg)).
      const counts = ` nents=${shown}/${n} ents=${shown}/${n}${shown < n ? ' [TRUNCATED]' : ''}`;
      return {
        name: 'dma_map_sg',
        body: `${ev.dev} dir=${DIR_NAMES[ev.dir]}${counts} dma_addrs=${array(
          list.map((m) => m.dmaAddr),
          style,
        )} sizes=${array(
          list.map((m) => m.size),
          style,
        )} phys_addrs=${array(
          list.map((m) => m.phys),
          style,
        )} attrs=`,
      };
    }
    case 'unmap_sg':
      return {
        name: 'dma_unmap_sg',
        body: `${ev.dev} dir=${DIR_NAMES[ev.dir]} phys_addrs=${array(
          ev.entries.map((m) => m.phys),
          style,
        )} attrs=SKIP_CPU_SYNC`,
      };
    case 'sync':
      return {
        name: ev.forDevice ? 'dma_sync_single_for_device' : 'dma_sync_single_for_cpu',
        body: `${ev.m.dev} dir=${DIR_NAMES[ev.m.dir]} dma_addr=${hex(ev.m.dmaAddr + ev.offset)} size=${ev.size}`,
      };
    case 'sync_sg':
      return {
        name: ev.forDevice ? 'dma_sync_sg_for_device' : 'dma_sync_sg_for_cpu',
        body: `${ev.dev} dir=${DIR_NAMES[ev.entries[0]!.dir]} dma_addrs=${array(
          ev.entries.map((m) => m.dmaAddr),
          style,
        )} sizes=${array(
          ev.entries.map((m) => m.size),
          style,
        )}`,
      };
    case 'bounced':
      return {
        name: 'swiotlb_bounced',
        body: `dev_name: ${ev.m.dev} dma_mask=ffffffffffffffff dev_addr=${hex(ev.m.phys + (ev.encryptionBit ?? 0))} size=${ev.m.size} FORCE`,
      };
    case 'other':
      return { name: ev.name, body: ev.body };
    case 'lost':
      throw new Error('a lost-events marker has no event text');
  }
}

// Task names as trace lines show them: with spaces, dashes, slashes and <idle>.
const COMMS = ['fio', 'kworker/1:1H', '<idle>', 'my-app 2', 'irq/24-virtio0'];

/**
 * The `trace` file's header (6.12 kernel/trace/trace.c s_show(): "# tracer: %s",
 * "#"; print_event_info(); print_func_help_header_irq() with irq-info, its
 * columns shifted 10 more with record-tgid, else print_func_help_header()).
 */
function tracefsHeader(n: number, style: Style): string[] {
  const tgid = style.tgid === true;
  const head = ['# tracer: nop', '#', `# entries-in-buffer/entries-written: ${n}/${n}   #P:4`, '#'];
  if (style.irqInfo === false) {
    return [
      ...head,
      `#           TASK-PID    ${tgid ? '   TGID   ' : ''} CPU#     TIMESTAMP  FUNCTION`,
      `#              | |      ${tgid ? '     |    ' : ''}   |         |         |`,
    ];
  }
  const sp = ' '.repeat(tgid ? 12 : 2);
  return [
    ...head,
    `#                            ${sp}  _-----=> irqs-off/BH-disabled`,
    `#                            ${sp} / _----=> need-resched`,
    `#                            ${sp}| / _---=> hardirq/softirq`,
    `#                            ${sp}|| / _--=> preempt-depth`,
    `#                            ${sp}||| / _-=> migrate-disable`,
    `#                            ${sp}|||| /     delay`,
    `#           TASK-PID  ${tgid ? '     TGID   ' : '  '} CPU#  |||||  TIMESTAMP  FUNCTION`,
    `#              | |    ${tgid ? '       |    ' : '  '}   |   |||||     |         |`,
  ];
}

/**
 * The `trace` file's header with option latency-format (6.12 kernel/trace/trace.c
 * s_show(); trace_default_header(): print_trace_header() for the nop tracer,
 * whose per-CPU data no max-latency update fills (__update_max_tr() writes the
 * max buffer's): "# %s latency trace v1.1.5 on %s", the dashes, "# latency: %lu
 * us, #%lu/%lu, CPU#%d | (M:%s VP:%d, KP:%d, SP:%d HP:%d" " #P:%d)", the task
 * lines, "#"; then, without option verbose, print_lat_help_header(), trailing
 * spaces included).
 */
function latencyHeader(n: number, style: Style): string[] {
  const head = [
    '# tracer: nop',
    '#',
    '# nop latency trace v1.1.5 on 6.12.117',
    `# ${'-'.repeat(68)}`,
    `# latency: 0 us, #${n}/${n}, CPU#0 | (M:preempt VP:0, KP:0, SP:0 HP:0 #P:4)`,
    '#    -----------------',
    '#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)',
    '#    -----------------',
    '#',
  ];
  if (style.latencyFormat === 'verbose') return head;
  return [
    ...head,
    '#                    _------=> CPU#            ',
    '#                   / _-----=> irqs-off/BH-disabled',
    '#                  | / _----=> need-resched    ',
    '#                  || / _---=> hardirq/softirq ',
    '#                  ||| / _--=> preempt-depth   ',
    '#                  |||| / _-=> migrate-disable ',
    '#                  ||||| /     delay           ',
    '#  cmd     pid     |||||| time  |   caller     ',
    '#     \\   /        ||||||  \\    |    /       ',
  ];
}

/** Microseconds (counts with a counter clock) between the buffer's start and the render's t0. */
export const BUFFER_START_BEFORE = 2_500_000;

export interface Rendered {
  text: string;
  /** 1-based line of each event. */
  lineOf: Map<GenEvent, number>;
}

/**
 * Lays the events out as trace text, in the given order, `step` µs apart (the
 * `i`th entry of `events` at t0 + i * step; with a counter clock those numbers
 * are the counts). The latency format's buffer started BUFFER_START_BEFORE
 * before t0.
 */
export function render(events: readonly GenEvent[], style: Style, t0 = 100, step = 10): Rendered {
  // A tracefs option: trace-cmd report has its own -l (Style.latency).
  const latency = style.layout === 'tracefs' && style.latencyFormat !== undefined;
  const lines =
    style.layout === 'trace-cmd'
      ? ['cpus=4']
      : latency
        ? latencyHeader(events.length, style)
        : tracefsHeader(events.length, style);
  const lineOf = new Map<GenEvent, number>();
  const base = Math.round(t0 * 1e6);
  // trace_print_lat_context(): the next entry's time, its own for the last.
  const nextOf: number[] = [];
  for (let j = events.length - 1, next = -1; j >= 0; j--) {
    nextOf[j] = next;
    if (events[j]!.t !== 'lost') next = j;
  }
  let idx = 0;
  events.forEach((ev, i) => {
    if (ev.t === 'lost') {
      lines.push(
        style.layout === 'trace-cmd'
          ? `CPU:${ev.cpu} [${ev.count} EVENTS DROPPED]`
          : `CPU:${ev.cpu} [LOST ${ev.count} EVENTS]`,
      );
      return;
    }
    const us = base + i * step;
    let line: string;
    if (latency) {
      const next = nextOf[i]!;
      const time = {
        us,
        start: base - BUFFER_START_BEFORE,
        rel: next < 0 ? 0 : (next - i) * step,
        idx: idx++,
      };
      line = latencyLine(ev, style, i, time);
    } else line = eventLine(ev, style, i, us, i === 0 ? undefined : step);
    lines.push(line);
    lineOf.set(ev, lines.length);
  });
  return { text: `${lines.join('\n')}\n`, lineOf };
}

// trace_find_mark() (6.12 kernel/trace/trace_output.c): the first mark whose
// nanoseconds the delay exceeds.
const MARKS: [number, string][] = [
  [1e9, '$'],
  [1e8, '@'],
  [1e7, '*'],
  [1e6, '#'],
  [1e5, '!'],
  [1e4, '+'],
];

function traceFindMark(ns: number): string {
  return MARKS.find(([val]) => ns > val)?.[1] ?? ' ';
}

/**
 * One event line of the kernel's latency format, byte for byte as 6.12
 * kernel/trace/trace_output.c trace_print_lat_context() writes it:
 * - not verbose: lat_print_generic()'s `"%8.8s-%-7d %3d"` and
 *   trace_print_lat_fmt()'s flags, then lat_print_timestamp()'s `" %4lldus%c: "`
 *   (microseconds since the buffer's time_start, trace_find_mark() of the time
 *   to the next entry) or, with a counter clock, `" %4lld: "`;
 * - verbose: `"%16s %7d %3d %d %08x %08lx "` (comm, pid, cpu, entry->flags,
 *   preempt_count & 0xf, iter->idx), then `"[%08llx] %ld.%03ldms (+%ld.%03ldms): "`
 *   (ns2usecs(iter->ts), then the times since the start and to the next entry
 *   in msecs.usecs) or, with a counter clock, `"[%016llx] %lld (+%lld): "`;
 * then trace_raw_output_prep()'s `"%s: "` and the TP_printk text. The flags are
 * those of eventLine(): `d..1.` is TRACE_FLAG_IRQS_OFF (0x01,
 * include/linux/trace_events.h) and a preempt count of 1.
 */
function latencyLine(
  ev: GenEvent,
  style: Style,
  i: number,
  time: { us: number; start: number; rel: number; idx: number },
): string {
  const { name, body } = eventText(ev, style);
  const comm = COMMS[(ev.cpu + i) % COMMS.length]!;
  const pid = 100 + ev.cpu * 17 + (i % 3);
  const irqsOff = i % 2 === 1;
  const abs = time.us - time.start;
  const counter = style.clock === 'counter';
  if (style.latencyFormat === 'verbose') {
    const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
    const ms = (n: number) => `${Math.floor(n / 1000)}.${String(n % 1000).padStart(3, '0')}ms`;
    const context = `${comm.padStart(16)} ${String(pid).padStart(7)} ${String(ev.cpu).padStart(3)} ${irqsOff ? 1 : 0} ${hex(irqsOff ? 1 : 0, 8)} ${hex(time.idx, 8)} `;
    const stamp = counter
      ? `[${hex(time.us, 16)}] ${abs} (+${time.rel}): `
      : `[${hex(time.us, 8)}] ${ms(abs)} (+${ms(time.rel)}): `;
    return `${context}${stamp}${name}: ${body}`;
  }
  const flags = irqsOff ? 'd..1.' : '.....';
  const context = `${comm.slice(0, 8).padStart(8)}-${String(pid).padEnd(7)} ${String(ev.cpu).padStart(3)}${flags}`;
  const stamp = counter
    ? ` ${String(abs).padStart(4)}: `
    : ` ${String(abs).padStart(4)}us${traceFindMark(time.rel * 1000)}: `;
  return `${context}${stamp}${name}: ${body}`;
}

/**
 * One event line, byte for byte as its printer writes it:
 * - tracefs (6.12 kernel/trace/trace_output.c trace_print_context()):
 *   `"%16s-%-7d "`, `"(%7d) "` (record-tgid), `"[%03d] "`, the irq-info flags
 *   (trace_print_lat_fmt(), no trailing space), `" %5lu.%06lu"`, `": "`, then
 *   trace_raw_output_prep()'s `"%s: "` and the TP_printk text;
 * - trace-cmd report (trace-cmd 3.4 tracecmd/trace-read.c trace_show_data()):
 *   `"%16s-%-5d [%03d]"` (-l: `"%8.8s-%-5d %3d"`), `" %s"` latency (-l: `"%s"`),
 *   `" %6.1000d:"` (libtraceevent print_event_time(): `"%5llu.%06llu"`), with
 *   --ts-diff `" %-8s"` of `"(+%lld)"`, then print_event_name()'s `" %s: "` padded
 *   to 20 columns, then the event text.
 */
function eventLine(ev: GenEvent, style: Style, i: number, us: number, diff?: number): string {
  const { name, body } = eventText(ev, style);
  const comm = COMMS[(ev.cpu + i) % COMMS.length]!;
  const pid = 100 + ev.cpu * 17 + (i % 3);
  // trace_print_time(): " %5lu.%06lu", or " %12llu" with a counter clock (tracefs).
  const ts =
    style.clock === 'counter' && style.layout === 'tracefs'
      ? String(us).padStart(12)
      : `${String(Math.floor(us / 1e6)).padStart(5)}.${String(us % 1e6).padStart(6, '0')}`;
  const flags = i % 2 ? 'd..1.' : '.....';
  if (style.layout === 'trace-cmd') {
    const pad = ' '.repeat(Math.max(0, 20 - name.length));
    const context = style.latency
      ? `${comm.slice(0, 8).padStart(8)}-${String(pid).padEnd(5)} ${String(ev.cpu).padStart(3)}${flags}`
      : `${comm.padStart(16)}-${String(pid).padEnd(5)} [${String(ev.cpu).padStart(3, '0')}] ${flags}`;
    const tsDiff = style.tsDiff ? ` ${(diff === undefined ? '' : `(+${diff})`).padEnd(8)}` : '';
    return `${context} ${ts}:${tsDiff} ${name}: ${pad}${body}`;
  }
  const tgid = style.tgid ? `(${String(pid).padStart(7)}) ` : '';
  const irq = style.irqInfo === false ? '' : flags;
  return `${comm.padStart(16)}-${String(pid).padEnd(7)} ${tgid}[${String(ev.cpu).padStart(3, '0')}] ${irq} ${ts}: ${name}: ${body}`;
}

/** A boot log with the pool lines, dmesg timestamps included. */
export function bootLog(
  g: { base: number; slots: number; areas: number },
  extra: string[] = [],
): string {
  const end = g.base + g.slots * IO_TLB_SIZE;
  const pa = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;
  return [
    '[    0.000000] Linux version 6.12.0 (builder@host) #1 SMP PREEMPT_DYNAMIC',
    '[    0.000000] Command line: console=ttyS0 swiotlb=force',
    `[    0.004000] software IO TLB: area num ${g.areas}.`,
    '[    0.120000] Memory: 4000000K/4194304K available',
    `[    0.310000] software IO TLB: mapped [mem ${pa(g.base)}-${pa(end)}] (${(g.slots * IO_TLB_SIZE) >> 20}MB)`,
    ...extra,
    '[    1.000000] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks (1.07 GB/1.00 GiB)',
    '',
  ].join('\n');
}

export { DmaDirection };

/**
 * The events of `maps` made in order on `cpu`: each one's dma_map_page, after its
 * swiotlb_bounced when it was bounced (swiotlb_map() traces the bounce before it
 * searches, so a failed map has one too).
 */
export function mapEventsOf(cpu: number, maps: readonly Mapping[]): GenEvent[] {
  const events: GenEvent[] = [];
  for (const m of maps) {
    if (m.dmaAddr !== m.phys) events.push({ t: 'bounced', cpu, m });
    events.push({ t: 'map', cpu, m });
  }
  return events;
}

/**
 * A virtio-blk request as virtio_queue_rq() maps it (virtqueue_add_sgs(): one
 * dma_map_page per sg entry, in order, on one CPU): the 16-byte header
 * (TO_DEVICE), the data in `segment`-byte pieces, the status byte (FROM_DEVICE).
 * Returns its mappings and their swiotlb_bounced + map events, and its unmap events.
 */
export function virtioBlkRequest(
  sim: KernelSim,
  dev: string,
  cpu: number,
  buf: number,
  bytes: number,
  read: boolean,
  opts: { segment?: number; bounce?: boolean } = {},
): { maps: Mapping[]; mapEvents: GenEvent[]; unmapEvents: () => GenEvent[] } {
  const segment = opts.segment ?? bytes;
  const o = { bounce: opts.bounce !== false };
  const maps = [sim.map(dev, cpu, buf, 16, DmaDirection.TO_DEVICE, o)];
  for (let off = 0; off < bytes; off += segment) {
    const dir = read ? DmaDirection.FROM_DEVICE : DmaDirection.TO_DEVICE;
    maps.push(sim.map(dev, cpu, buf + 0x1000 + off, Math.min(segment, bytes - off), dir, o));
  }
  maps.push(sim.map(dev, cpu, buf + 16, 1, DmaDirection.FROM_DEVICE, o));
  return {
    maps,
    mapEvents: mapEventsOf(cpu, maps),
    unmapEvents: () =>
      maps.map((m) => {
        sim.unmap(m);
        return { t: 'unmap', cpu, m } as GenEvent;
      }),
  };
}
