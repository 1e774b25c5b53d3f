/**
 * One line of a kernel trace, in the text layouts users have:
 *
 * - the tracefs `trace` / `trace_pipe` file, printed by the kernel
 *   (kernel/trace/trace_output.c, trace_print_context()):
 *     `"%16s-%-7d "` task-pid, optionally `"(%7d) "` tgid (option record-tgid),
 *     `"[%03d] "` CPU, the flags of trace_print_lat_fmt() when option irq-info is
 *     on (irqs-off, need-resched, hard/softirq, preempt depth, migrate-disable:
 *     5 characters, 4 on older kernels), `" %5lu.%06lu"` seconds (`" %12llu"` with
 *     a counter clock), `": "`, then trace_raw_output_prep()'s `"%s: "` event
 *     name, then the event's TP_printk text. Header lines start with `#`.
 *
 *       <idle>-0       [001] d.h2.   123.456789: dma_map_phys: 0000:00:04.0 dir=TO_DEVICE ...
 *
 * - `trace-cmd report` (trace-cmd 3.4 tracecmd/trace-read.c, trace_show_data()):
 *     a first line `cpus=N`, then `"%16s-%-5d [%03d]"`, `" %s"` the latency
 *     flags (libtraceevent's TEP_PRINT_LATENCY, always printed), the time
 *     (time_format(): `" %6.1000d:"` seconds.microseconds, `" %9.1d:"` with
 *     nanoseconds (-t), `"%12d:"` raw counts when the clock is not in ns),
 *     with --ts-diff `" %-8s"` of `"(+%lld)"` (blank on the first event), then
 *     print_event_name(): `" %s: "` padded with spaces to 20 columns, then
 *     libtraceevent's rendering of the event (tep_print_event()).
 *
 *       kworker/0:1H-143   [000] .....  7453.327963: dma_unmap_sg:         0000:00:04.0 ...
 *
 *   With -l (latency_format) the context is `"%8.8s-%-5d %3d"` and the flags
 *   follow the CPU with no space and no brackets:
 *
 *       kworker/-143     0d..1.  7453.327963: dma_unmap_sg:         0000:00:04.0 ...
 *
 * - the kernel's own latency format (tracefs option latency-format, which the
 *   latency tracers irqsoff/wakeup also use: Documentation/trace/ftrace.rst,
 *   "Latency trace format"; also trace_pipe's), 6.12.117 kernel/trace/trace_output.c
 *   trace_print_lat_context(): lat_print_generic()'s `"%8.8s-%-7d %3d"` task-pid
 *   and CPU, trace_print_lat_fmt()'s flags glued to it, then
 *   lat_print_timestamp(): `" %4lldus%c: "`, the microseconds since the buffer
 *   started (`iter->ts - iter->array_buffer->time_start`, not a clock reading)
 *   and a mark of the time to the next event (trace_find_mark(): `$ @ * # ! +`
 *   or a space), or `" %4lld: "` counts with a clock not in nanoseconds
 *   (trace.c __tracing_open() sets TRACE_FILE_TIME_IN_NS only for a clock
 *   whose trace_clocks[] entry is in_ns: not counter, uptime), then the event's `"%s: "`
 *   and text as above. Header lines start with `#` (print_trace_header()'s
 *   `"# latency: %lu us, #%lu/%lu, CPU#%d | ..."` gives entries/written).
 *
 *          fio-100       2d..1.   12us+: dma_map_page: 0000:00:04.0 dir=TO_DEVICE ...
 *
 *   With option verbose too, trace_print_lat_context() prints
 *   `"%16s %7d %3d %d %08x %08lx "` (comm, pid, CPU, entry->flags, the preempt
 *   count's low nibble, the entry's index) and lat_print_timestamp()
 *   `"[%08llx] %ld.%03ldms (+%ld.%03ldms): "`: the absolute time in
 *   microseconds in hex (ns2usecs(iter->ts), what tracefs prints as
 *   secs.usecs), then milliseconds since the buffer started and to the next
 *   event; with a clock not in nanoseconds `"[%016llx] %lld (+%lld): "`, the raw
 *   count in hex.
 *
 *                  fio     100   2 1 00000001 0000000a [05f5e10a] 2500.010ms (+0.150ms): dma_map_page: ...
 *
 * `ts` is seconds (`secs.usecs`; the latency format's microseconds / 1e6, the
 * verbose one's hex microseconds / 1e6) or, with a clock not in nanoseconds, the
 * bare count. Only the latency format's non-verbose time counts from the
 * buffer's start: those events carry `sinceStart` (and the reader reports no
 * first_ts/last_ts for them).
 *
 * The bracketed layouts are one pattern: the CPU column `[NNN]` anchors it (a
 * task name may hold spaces and dashes), the flags column is optional, the time
 * is digits with an optional fraction, the event name is a C identifier. A
 * second pattern reads the unbracketed CPU with glued flags (trace-cmd's -l and
 * the kernel's latency format, whose time may end in `us` and a mark), tried
 * only when the first fails; a third the verbose latency format, tried last.
 * Not read (they stay `other`, and unreadLayout() names them): option raw/hex
 * (print_raw_fmt() `"%d %d %llu "` then trace_nop_print()'s `"type: %d"`: no
 * event name or text), option bin, and option context-info off (the event's
 * `"%s: "` and text with no task, pid, CPU or time).
 *
 * The kernel prints lost events as `CPU:%d [LOST %lu EVENTS]`, or `CPU:%d [LOST
 * EVENTS]` when it cannot count them (6.12 kernel/trace/trace.c
 * print_trace_line()), and trace-cmd as `CPU:%d [%lld EVENTS DROPPED]` or
 * `CPU:%d [EVENTS DROPPED]` (trace_show_data()).
 */

/** What a line of trace text is. */
export type TraceLine =
  | {
      kind: 'event';
      cpu: number;
      pid: number;
      ts: number;
      event: string;
      body: string;
      /** The time counts from the buffer's start, not from the clock's (latency format, not verbose). */
      sinceStart?: true;
    }
  /**
   * `# ...`, `##### CPU N buffer started ####`, `cpus=N`, blank: layout, not
   * data. `entries`: tracefs' `# entries-in-buffer/entries-written: E/W   #P:N`,
   * or the latency format's `# latency: L us, #E/W, CPU#C | ...`.
   */
  | { kind: 'header'; layout?: TraceLayout; entries?: { inBuffer: number; written: number } }
  /** Events the ring buffer dropped (`count` undefined when the line gives none). */
  | { kind: 'lost'; cpu: number; count: number | undefined }
  | { kind: 'other' };

export type TraceLayout = 'tracefs' | 'trace-cmd';

// task-pid, optional (tgid), [cpu], optional flags, timestamp, optional
// --ts-diff "(+N)", event name, body.
const EVENT_LINE =
  /^\s*(.*?)-(\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(\d{1,5})\]\s+(?:\S{3,8}\s+)?(\d+(?:\.\d+)?):\s+(?:\(\+\d+\)\s+)?([A-Za-z_]\w*):\s?(.*)$/;
// trace-cmd report -l and the kernel's latency format: task-pid, cpu without
// brackets, the flags right after it (their first character, irqs-off, is never
// a digit), the time (the kernel's: microseconds, "us" and a mark), then as above.
const LAT_LINE =
  /^\s*(.*?)-(\d+)\s+(\d{1,5})[^\s\d]\S{2,7}\s+(\d+(?:\.\d+)?)(us[$@*#!+ ])?:\s+(?:\(\+\d+\)\s+)?([A-Za-z_]\w*):\s?(.*)$/;
// The kernel's verbose latency format: comm, pid, cpu, flags, preempt count,
// index, "[hex time]", then "ms (+ms)" or, for a counter clock, "N (+N)".
const VERBOSE_LINE =
  /^\s*(.*?) +(\d+) +(\d+) \d+ [0-9a-f]{8,} [0-9a-f]{8,} \[([0-9a-f]+)\] (?:\d+\.\d{3}ms \(\+\d+\.\d{3}ms\)|(-?\d+) \(\+-?\d+\)): ([A-Za-z_]\w*):\s?(.*)$/;
const LOST_LINE =
  /^CPU:\s*(\d+)\s+\[(?:LOST (\d+) EVENTS|LOST EVENTS|(\d+) EVENTS DROPPED|EVENTS DROPPED)\]/;
const TRACE_CMD_HEADER = /^cpus=\d+\s*$/;
const ENTRIES_HEADER = /^# entries-in-buffer\/entries-written: (\d+)\/(\d+)/;
// print_trace_header(): "# latency: %lu us, #%lu/%lu, CPU#%d |", entries then total.
const LATENCY_HEADER = /^# latency: \d+ us, #(\d+)\/(\d+), CPU#/;

/** Parses one line; never throws (what it cannot read is `other`). */
export function parseTraceLine(line: string): TraceLine {
  const first = line.charCodeAt(0);
  if (line.length === 0) return { kind: 'header' };
  if (first === 35 /* # */) {
    if (line.startsWith('# tracer:')) return { kind: 'header', layout: 'tracefs' };
    const e = ENTRIES_HEADER.exec(line) ?? LATENCY_HEADER.exec(line);
    return e
      ? { kind: 'header', entries: { inBuffer: Number(e[1]), written: Number(e[2]) } }
      : { kind: 'header' };
  }
  if (first === 99 /* c */ && TRACE_CMD_HEADER.test(line)) {
    return { kind: 'header', layout: 'trace-cmd' };
  }
  if (first === 67 /* C */) {
    const lost = LOST_LINE.exec(line);
    if (lost) {
      const n = lost[2] ?? lost[3];
      return { kind: 'lost', cpu: Number(lost[1]), count: n === undefined ? undefined : Number(n) };
    }
  }
  const m = EVENT_LINE.exec(line);
  // trace-cmd pads the event name to 20 columns after ": ".
  if (m) return event(m[2]!, m[3]!, Number(m[4]), m[5]!, m[6]!);
  const l = LAT_LINE.exec(line);
  if (l) {
    if (l[5] === undefined) return event(l[2]!, l[3]!, Number(l[4]), l[6]!, l[7]!);
    const ev = event(l[2]!, l[3]!, Number(l[4]) / 1e6, l[6]!, l[7]!);
    ev.sinceStart = true;
    return ev;
  }
  const v = VERBOSE_LINE.exec(line);
  if (v) {
    const t = Number.parseInt(v[4]!, 16);
    return event(v[2]!, v[3]!, v[5] === undefined ? t / 1e6 : t, v[6]!, v[7]!);
  }
  if (line.trim() === '') return { kind: 'header' };
  return { kind: 'other' };
}

function event(
  pid: string,
  cpu: string,
  ts: number,
  name: string,
  body: string,
): Extract<TraceLine, { kind: 'event' }> {
  return {
    kind: 'event',
    pid: Number(pid),
    cpu: Number(cpu),
    ts,
    event: name,
    body: body.trimStart(),
  };
}

// Option raw (6.12 trace.c print_raw_fmt(): "%d %d %llu ") or hex
// (print_hex_fmt(): the same fields in hex), then trace_nop_print()'s "type: %d"
// (trace_output.c; TRACE_EVENT()s have no raw or hex printer).
const RAW_LINE = /^[0-9a-f ]+type: \d+$/;
// Option context-info off (print_trace_fmt() skips the context): a dma or
// swiotlb event's "%s: " and text alone.
const BARE_EVENT = /^(?:dma|swiotlb)_\w+: /;

/**
 * What a line that parseTraceLine() leaves `other` is, when it is one of the
 * kernel's layouts this reader cannot use: a sentence for the user; undefined
 * otherwise.
 */
export function unreadLayout(line: string): string | undefined {
  if (RAW_LINE.test(line)) {
    return "it is in the layout of tracefs option raw or hex: pid, CPU and time, then the event's type number instead of its name and text (6.12 print_raw_fmt(), trace_nop_print()); turn them off (echo 0 > /sys/kernel/tracing/options/raw; the same for hex and bin) and read the trace again";
  }
  if (BARE_EVENT.test(line)) {
    return "its events have no task, pid, CPU or time before them (tracefs option context-info off, 6.12 print_trace_fmt()), and the replay needs each event's CPU; turn it on (echo 1 > /sys/kernel/tracing/options/context-info) and read the trace again";
  }
  return undefined;
}
