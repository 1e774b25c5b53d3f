/**
 * One line of a kernel trace, in either of the two text layouts users have:
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
 * One pattern reads the bracketed layouts: the CPU column `[NNN]` anchors it (a
 * task name may hold spaces and dashes), the flags column is optional, the time
 * is digits with an optional fraction, the event name is a C identifier; a
 * second one reads trace-cmd's -l layout. Not read (they stay `other`): the
 * kernel's own latency format (option latency-format, trace_print_lat_context():
 * `"%8.8s-%-7d %3d"`, flags, then `" %4lldus%c: "` microseconds since the buffer
 * started, not a clock reading) and option raw/hex/bin output.
 *
 * The kernel prints lost events as `CPU:%d [LOST %lu EVENTS]`, or `CPU:%d [LOST
 * EVENTS]` when it cannot count them (6.12 kernel/trace/trace.c
 * print_trace_line()), and trace-cmd as `CPU:%d [%lld EVENTS DROPPED]` or
 * `CPU:%d [EVENTS DROPPED]` (trace_show_data()).
 */

/** What a line of trace text is. */
export type TraceLine =
  | { kind: 'event'; cpu: number; pid: number; ts: number; event: string; body: string }
  /**
   * `# ...`, `##### CPU N buffer started ####`, `cpus=N`, blank: layout, not
   * data. `entries`: tracefs' `# entries-in-buffer/entries-written: E/W   #P:N`.
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
// trace-cmd report -l: task-pid, cpu without brackets, the flags right after it
// (their first character, irqs-off, is never a digit), then as above.
const LAT_LINE =
  /^\s*(.*?)-(\d+)\s+(\d{1,5})[^\s\d]\S{2,7}\s+(\d+(?:\.\d+)?):\s+(?:\(\+\d+\)\s+)?([A-Za-z_]\w*):\s?(.*)$/;
const LOST_LINE =
  /^CPU:\s*(\d+)\s+\[(?:LOST (\d+) EVENTS|LOST EVENTS|(\d+) EVENTS DROPPED|EVENTS DROPPED)\]/;
const TRACE_CMD_HEADER = /^cpus=\d+\s*$/;
const ENTRIES_HEADER = /^# entries-in-buffer\/entries-written: (\d+)\/(\d+)/;

/** Parses one line; never throws (what it cannot read is `other`). */
export function parseTraceLine(line: string): TraceLine {
  const first = line.charCodeAt(0);
  if (line.length === 0) return { kind: 'header' };
  if (first === 35 /* # */) {
    if (line.startsWith('# tracer:')) return { kind: 'header', layout: 'tracefs' };
    const e = ENTRIES_HEADER.exec(line);
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
  const m = EVENT_LINE.exec(line) ?? LAT_LINE.exec(line);
  if (m) {
    return {
      kind: 'event',
      pid: Number(m[2]),
      cpu: Number(m[3]),
      ts: Number(m[4]),
      event: m[5]!,
      // trace-cmd pads the event name to 20 columns after ": ".
      body: m[6]!.trimStart(),
    };
  }
  if (line.trim() === '') return { kind: 'header' };
  return { kind: 'other' };
}
