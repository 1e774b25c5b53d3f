import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { EventParseError, parseDmaEvent } from '../src/workload/trace/dma-events.js';
import { TraceReader } from '../src/workload/trace/reader.js';
import { parseTraceLine } from '../src/workload/trace/trace-line.js';
import { type GenEvent, render, type Style } from './helpers/trace-gen.js';
import { mapping } from './helpers/trace-run.js';

/**
 * The trace text formats, checked against their printers' sources:
 * - Linux 6.12.117 include/trace/events/dma.h, swiotlb.h (TP_printk),
 *   kernel/trace/trace_output.c (trace_print_context(), trace_print_symbols_seq(),
 *   trace_print_array_seq()), kernel/trace/trace.c (print_trace_line(), s_show(),
 *   print_func_help_header_irq());
 * - trace-cmd 3.4 tracecmd/trace-read.c (trace_show_data(), time_format(),
 *   print_event_name()) and libtraceevent src/event-parse.c (print_event_time()).
 */

const AT = { line: 1, cpu: 0, pid: 1, ts: 1 };

function read(lines: string[]) {
  const events: unknown[] = [];
  const r = new TraceReader('t.txt', (ev) => events.push(ev));
  for (const line of lines) r.line(line);
  return { input: r.finish(), events };
}

const MAP =
  '0000:00:04.0 dir=TO_DEVICE dma_addr=7bfff000 size=512 phys_addr=1234000 attrs=SKIP_CPU_SYNC|NO_WARN';

describe('trace line layouts', () => {
  it('reads the 6.12 kernel\'s uncounted "CPU:%d [LOST EVENTS]" (trace.c print_trace_line()) as lost', () => {
    expect(parseTraceLine('CPU:2 [LOST EVENTS]')).toEqual({
      kind: 'lost',
      cpu: 2,
      count: undefined,
    });
    const { input } = read([
      '# tracer: nop',
      `             fio-100     [000] .....   100.000000: dma_map_page: ${MAP}`,
      'CPU:2 [LOST EVENTS]',
    ]);
    expect(input).toMatchObject({ lost_markers: 1, lost_events: null });
  });

  it('reads trace-cmd report --ts-diff: " %-8s" of "(+%lld)" after the time', () => {
    const first = `             fio-100   [000] .....   100.000000:          dma_map_page:         ${MAP}`;
    const next = `             fio-100   [000] d..1.   100.000010: (+10)    dma_map_page:         ${MAP}`;
    for (const line of [first, next]) {
      expect(parseTraceLine(line)).toMatchObject({ kind: 'event', cpu: 0, event: 'dma_map_page' });
    }
    expect(parseTraceLine(next)).toMatchObject({ ts: 100.00001, body: MAP });
  });

  it('reads trace-cmd report -l: "%8.8s-%-5d %3d" with the flags glued to the CPU', () => {
    const line = `kworker/-143     3d..1.  7453.327963: dma_map_page:         ${MAP}`;
    expect(parseTraceLine(line)).toEqual({
      kind: 'event',
      pid: 143,
      cpu: 3,
      ts: 7453.327963,
      event: 'dma_map_page',
      body: MAP,
    });
    // nanoseconds (-t: " %9.1d:") and a raw counter clock ("%12d:").
    expect(
      parseTraceLine(`     fio-77     12.... 12.000000001: dma_map_page: ${MAP}`),
    ).toMatchObject({
      cpu: 12,
      ts: 12.000000001,
    });
  });

  it("reads the kernel's own latency-format lines (microseconds since the buffer's start)", () => {
    // Unread until test/trace-latency-format.test.ts's change; covered whole there.
    expect(parseTraceLine(`     fio-77        2d..1.   12us+: dma_map_page: ${MAP}`)).toMatchObject(
      {
        kind: 'event',
        pid: 77,
        cpu: 2,
        ts: 12e-6,
        event: 'dma_map_page',
        sinceStart: true,
      },
    );
  });
});

describe('event texts', () => {
  it("dma_fence_* events (include/trace/events/dma_fence.h) are another system's", () => {
    const fence =
      '   gnome-shell-900     [001] .....   5.000000: dma_fence_emit: driver=i915 timeline=x context=1 seqno=2';
    let err: unknown;
    try {
      read(['# tracer: nop', fence, fence]);
    } catch (e) {
      err = e;
    }
    expect(isMediatorError(err, 'TRACE_NO_DMA_EVENTS')).toBe(true);
    expect((err as Error).message).toContain('dma_fence_emit (2)');
    const { input } = read([
      '# tracer: nop',
      fence,
      `             fio-100     [000] .....   100.000000: dma_map_page: ${MAP}`,
    ]);
    expect(input).toMatchObject({ dma_events: 1, unrelated_events: 1 });
  });

  it('says [LINE TOO BIG] when the kernel printed it instead of an event (8 KiB trace_seq)', () => {
    const { input } = read([
      '# tracer: nop',
      `             fio-100     [000] .....   100.000000: dma_map_page: ${MAP}`,
      '             fio-100     [000] .....   100.000010: dma_unmap_sg: [LINE TOO BIG]',
    ]);
    expect(input.bad_lines.count).toBe(1);
    expect(input.bad_lines.first[0]!.message).toContain('[LINE TOO BIG]');
    expect(input.bad_lines.first[0]!.message).toContain('trace-cmd');
  });

  it('reads dir="0x%lx", the fallback of __print_symbolic (trace_print_symbols_seq())', () => {
    const ev = parseDmaEvent(
      'dma_unmap_page',
      '0000:00:04.0 dir=0x2 dma_addr=1000 size=4 attrs=',
      AT,
    );
    expect(ev).toMatchObject({ kind: 'unmap', dir: DmaDirection.FROM_DEVICE });
    expect(() =>
      parseDmaEvent('dma_unmap_page', '0000:00:04.0 dir=0x7 dma_addr=1000 size=4 attrs=', AT),
    ).toThrow(EventParseError);
  });
});

describe('the test generator writes exactly what the kernel and trace-cmd print', () => {
  const m = mapping('0000:00:04.0', 0x1234000, 512, 0x7bfff000);
  const s1 = mapping('0000:00:04.0', 0x2000000, 0x1000, 0x7bffe000);
  const events: GenEvent[] = [
    { t: 'map', cpu: 0, m },
    { t: 'map_sg', cpu: 1, dev: '0000:00:04.0', dir: DmaDirection.TO_DEVICE, entries: [m, s1] },
  ];
  const lineOf = (style: Style, n: number) => render(events, style).text.split('\n')[n]!;
  const MAP_BODY = '0000:00:04.0 dir=TO_DEVICE dma_addr=7bfff000 size=512 phys_addr=1234000 attrs=';
  // TRACE_EVENT(dma_map_sg), 6.12.117: nents/ents always printed, arrays via trace_print_array_seq().
  const SG_BODY =
    '0000:00:04.0 dir=TO_DEVICE nents=2/2 ents=2/2 dma_addrs={0x7bfff000,0x7bffe000} sizes={0x200,0x1000} phys_addrs={0x1234000,0x2000000} attrs=';

  it('tracefs, irq-info on: "%16s-%-7d [%03d] " flags " %5lu.%06lu: " name ": "', () => {
    const style: Style = { layout: 'tracefs', arrays: 'kernel', naming: '6.12' };
    expect(lineOf(style, 12)).toBe(
      `             fio-100     [000] .....   100.000000: dma_map_page: ${MAP_BODY}`,
    );
    expect(lineOf(style, 13)).toBe(
      `          <idle>-118     [001] d..1.   100.000010: dma_map_sg: ${SG_BODY}`,
    );
  });

  it('tracefs, irq-info off, record-tgid: "(%7d) " and two spaces before the time', () => {
    const style: Style = {
      layout: 'tracefs',
      arrays: 'kernel',
      naming: '6.12',
      irqInfo: false,
      tgid: true,
    };
    const text = render(events, style).text.split('\n');
    expect(text[4]).toBe('#           TASK-PID       TGID    CPU#     TIMESTAMP  FUNCTION');
    expect(text[6]).toBe(
      `             fio-100     (    100) [000]    100.000000: dma_map_page: ${MAP_BODY}`,
    );
  });

  it('trace-cmd report: "%16s-%-5d [%03d]" " %s" " %5llu.%06llu:" " %s: " padded to 20', () => {
    const style: Style = { layout: 'trace-cmd', arrays: 'kernel', naming: '6.12' };
    expect(lineOf(style, 1)).toBe(
      `             fio-100   [000] .....   100.000000: dma_map_page:         ${MAP_BODY}`,
    );
  });

  it('trace-cmd report -l --ts-diff', () => {
    const style: Style = {
      layout: 'trace-cmd',
      arrays: 'kernel',
      naming: '6.12',
      latency: true,
      tsDiff: true,
    };
    expect(lineOf(style, 1)).toBe(
      `     fio-100     0.....   100.000000:          dma_map_page:         ${MAP_BODY}`,
    );
    expect(lineOf(style, 2)).toBe(
      `  <idle>-118     1d..1.   100.000010: (+10)    dma_map_sg:           ${SG_BODY}`,
    );
  });
});
