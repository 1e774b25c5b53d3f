import { MediatorError } from '../../errors.js';
import {
  type DmaEvent,
  EventParseError,
  eventKind,
  isDmaEventName,
  parseDmaEvent,
} from './dma-events.js';
import type { InputReport } from './report-types.js';
import { parseTraceLine, type TraceLayout, unreadLayout } from './trace-line.js';
import type { ArrayStyle } from './trace-values.js';

/**
 * Reads trace text line by line and hands each dma:* / swiotlb:* event to a
 * sink, keeping only counts: a trace of hundreds of MB streams through in
 * constant memory. Decides, with a line number and what was expected, when the
 * input is not a trace at all, has no DMA events, or has only unreadable ones.
 */

/** Non-blank lines without a single event or header after which the input is declared not a trace. */
const NOT_A_TRACE_AFTER = 1000;
/** Bad lines kept with their message. */
const BAD_LINES_KEPT = 5;

export class TraceReader {
  private layout: TraceLayout | undefined;
  private readonly st: { arrays?: ArrayStyle } = {};
  /** CPU -> line of its last event (any event: a CPU that goes on writing did not hang). */
  private readonly lastLineOfCpu = new Map<number, number>();
  private lines = 0;
  private events = 0;
  private dmaEvents = 0;
  private bounced = 0;
  /** dma:* events read (swiotlb_bounced and ignored ones aside). */
  private dmaParsed = 0;
  private unrelated = 0;
  private headers = 0;
  private others = 0;
  private firstOther: { line: number; text: string } | undefined;
  private badCount = 0;
  private readonly bad: { line: number; message: string }[] = [];
  private lostEvents: number | null = null;
  private lostMarkers = 0;
  /** entries-written minus entries-in-buffer of the tracefs headers read; null without one. */
  private overwritten: number | null = null;
  private firstTs: number | null = null;
  private lastTs: number | null = null;
  /** An event's time counted from the buffer's start (latency format): no clock reading to report. */
  private sinceStart = false;
  /** Event names of other systems seen, with counts (for the "no DMA events" error). */
  private readonly otherNames = new Map<string, number>();

  constructor(
    private readonly source: string,
    private readonly sink: (ev: DmaEvent) => void,
  ) {}

  /** Reads the next line. @throws TRACE_NOT_A_TRACE early, when nothing so far looks like a trace */
  line(text: string): void {
    const n = ++this.lines;
    const t = parseTraceLine(text);
    switch (t.kind) {
      case 'header':
        if (t.layout) this.layout ??= t.layout;
        if (t.entries) {
          this.overwritten =
            (this.overwritten ?? 0) + Math.max(0, t.entries.written - t.entries.inBuffer);
        }
        if (text.trim() !== '') this.headers++;
        return;
      case 'lost':
        this.lostMarkers++;
        if (t.count !== undefined) this.lostEvents = (this.lostEvents ?? 0) + t.count;
        return;
      case 'other':
        this.others++;
        this.firstOther ??= { line: n, text };
        if (this.events === 0 && this.headers === 0 && this.others >= NOT_A_TRACE_AFTER) {
          throw this.notATrace();
        }
        return;
      case 'event':
        break;
    }
    this.events++;
    this.lastLineOfCpu.set(t.cpu, n);
    this.firstTs ??= t.ts;
    this.lastTs = t.ts;
    if (t.sinceStart) this.sinceStart = true;
    if (!isDmaEventName(t.event)) {
      this.unrelated++;
      if (this.otherNames.size < 1000 || this.otherNames.has(t.event)) {
        this.otherNames.set(t.event, (this.otherNames.get(t.event) ?? 0) + 1);
      }
      return;
    }
    this.dmaEvents++;
    try {
      const ev = parseDmaEvent(
        t.event,
        t.body,
        { line: n, cpu: t.cpu, pid: t.pid, ts: t.ts },
        this.st,
      );
      if (ev === undefined) return;
      if (ev.kind === 'bounced') this.bounced++;
      else this.dmaParsed++;
      this.sink(ev);
    } catch (err) {
      if (!(err instanceof EventParseError)) throw err;
      this.badCount++;
      if (this.bad.length < BAD_LINES_KEPT) {
        this.bad.push({ line: n, message: `line ${n}: ${t.event}: ${err.message}` });
      }
    }
  }

  /**
   * The input's counts once it is all read.
   * @throws TRACE_NOT_A_TRACE, TRACE_NO_DMA_EVENTS, TRACE_BAD_EVENT
   */
  finish(): InputReport {
    if (this.events === 0 && (this.headers === 0 || this.unreadFirst() !== undefined)) {
      throw this.notATrace();
    }
    if (this.badCount > 0 && this.dmaParsed === 0) {
      throw new MediatorError(
        'TRACE_BAD_EVENT',
        `${this.source}: none of its ${this.badCount} dma event lines could be read; the first, ${this.bad[0]?.message ?? ''}`,
        { lines: this.bad.map((b) => b.line) },
      );
    }
    if (this.dmaParsed === 0) {
      throw this.noDmaEvents();
    }
    return {
      source: this.source,
      layout: this.layout ?? 'tracefs',
      arrays: this.st.arrays ?? 'none',
      lines: this.lines,
      events: this.events,
      dma_events: this.dmaEvents,
      swiotlb_bounced: this.bounced,
      unrelated_events: this.unrelated,
      filtered_events: 0,
      bad_lines: { count: this.badCount, first: this.bad },
      lost_events: this.lostEvents,
      lost_markers: this.lostMarkers,
      overwritten_events: this.overwritten,
      // The latency format's times count from the buffer's start (6.12
      // lat_print_timestamp(): iter->ts - time_start), which no boot log's
      // printk time can be compared with.
      first_ts: this.sinceStart ? null : this.firstTs,
      last_ts: this.sinceStart ? null : this.lastTs,
    };
  }

  /** Line of the last event (of any kind) that CPU `cpu` wrote; 0 when none. */
  lastEventLine(cpu: number): number {
    return this.lastLineOfCpu.get(cpu) ?? 0;
  }

  /** Lines read so far (for progress). */
  get lineCount(): number {
    return this.lines;
  }

  get eventCount(): number {
    return this.dmaEvents;
  }

  private notATrace(): MediatorError {
    const first = this.firstOther;
    // trace-cmd's trace.dat starts with 0x17 0x08 0x44 "tracing" (trace-cmd
    // Documentation/trace-cmd/trace-cmd.dat.v7.5.txt).
    if (first?.line === 1 && first.text.startsWith('\u0017\u0008Dtracing')) {
      return new MediatorError(
        'TRACE_NOT_A_TRACE',
        `${this.source} is a binary trace-cmd trace.dat: give its text, "trace-cmd report ${this.source} > trace.txt"`,
        { line: 1 },
      );
    }
    const shown = first?.text.slice(0, 80).replace(/[^\x20-\x7e]/g, '?');
    const found =
      first === undefined
        ? 'it is empty'
        : `line ${first.line} reads "${shown}${first.text.length > 80 ? '...' : ''}"`;
    const why = this.unreadFirst();
    if (why !== undefined) {
      return new MediatorError(
        'TRACE_NOT_A_TRACE',
        `${this.source} is a trace in a layout this replay cannot read: ${found}; ${why}`,
        { line: first?.line },
      );
    }
    return new MediatorError(
      'TRACE_NOT_A_TRACE',
      `${this.source} is not a trace: ${found}; expected tracefs lines like "<task>-<pid> [<cpu>] <flags> <secs>.<usecs>: <event>: <fields>" or trace-cmd report's "cpus=N" header (run "trace-cmd report" on a trace.dat first)`,
      { line: first?.line },
    );
  }

  /** What the first unreadable line is, when it is a kernel layout this reader cannot use. */
  private unreadFirst(): string | undefined {
    return this.firstOther === undefined ? undefined : unreadLayout(this.firstOther.text);
  }

  private noDmaEvents(): MediatorError {
    const names = [...this.otherNames.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([name, count]) => `${name} (${count})`);
    let what: string;
    if (this.events === 0) what = 'it has headers but no events';
    else if (this.bounced > 0) {
      what = `it has ${this.bounced} swiotlb_bounced events but no dma:* event, and swiotlb_bounced alone carries no DMA address`;
    } else
      what = `its ${this.events} events are ${names.join(', ')}${this.otherNames.size > 5 ? ', ...' : ''}`;
    return new MediatorError(
      'TRACE_NO_DMA_EVENTS',
      `${this.source} has no dma event to replay: ${what}; expected dma_map_*/dma_unmap_*/dma_sync_* lines (record with "trace-cmd record -e dma -e swiotlb", kernel 6.12 or later)`,
      { events: this.events },
    );
  }
}

/** Event names this replay reads (for docs and tests). */
export function readsEvent(name: string): boolean {
  const k = eventKind(name);
  return k !== undefined && k !== 'ignored';
}
