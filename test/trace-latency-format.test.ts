import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import type { DmaEvent } from '../src/workload/trace/dma-events.js';
import { TraceReader } from '../src/workload/trace/reader.js';
import type { TraceReport } from '../src/workload/trace/report-types.js';
import { parseTraceLine, type TraceLine } from '../src/workload/trace/trace-line.js';
import {
  BUFFER_START_BEFORE,
  type GenEvent,
  KernelSim,
  type Mapping,
  render,
  type Style,
} from './helpers/trace-gen.js';
import { mapping, replayText, TRACEFS } from './helpers/trace-run.js';

/**
 * The kernel's own latency format (tracefs option latency-format, and
 * option verbose with it), read from Linux 6.12.117 kernel/trace/trace_output.c
 * trace_print_lat_context(), lat_print_generic(), lat_print_timestamp(),
 * trace_find_mark(), and kernel/trace/trace.c print_trace_header(),
 * print_lat_help_header(), print_raw_fmt().
 */

const PLAIN: Style = { ...TRACEFS, latencyFormat: 'plain' };
const VERBOSE: Style = { ...TRACEFS, latencyFormat: 'verbose' };
const LATENCY_STYLES: [string, Style][] = [
  ['not verbose', PLAIN],
  ['not verbose, counter clock', { ...PLAIN, clock: 'counter' }],
  ['verbose', VERBOSE],
  ['verbose, counter clock', { ...VERBOSE, clock: 'counter' }],
];
const T0 = 100;

type Ev = Extract<TraceLine, { kind: 'event' }>;

/** The events in a latency style, checked to be in it (print_trace_header()'s first line). */
function latencyText(events: GenEvent[], style: Style): string {
  const text = render(events, style, T0).text;
  expect(text).toContain('\n# nop latency trace v1.1.5 on 6.12.117\n');
  expect(text).not.toMatch(/\[\d{3}\] /); // no tracefs "[NNN] " CPU column
  return text;
}

function eventLines(text: string): Ev[] {
  return text
    .split('\n')
    .map((l) => parseTraceLine(l))
    .filter((l): l is Ev => l.kind === 'event');
}

const DEV = '0000:00:04.0';
const m1 = mapping(DEV, 0x1234000, 512, 0x7bfff000);
const m2 = mapping(DEV, 0x2000000, 0x1000, 0x7bffe000, DmaDirection.FROM_DEVICE);
/** Every event kind the generator has, each DMA one on several CPUs. */
const EVERY_KIND: GenEvent[] = [
  { t: 'bounced', cpu: 0, m: m1 },
  { t: 'map', cpu: 0, m: m1 },
  { t: 'map_sg', cpu: 1, dev: DEV, dir: DmaDirection.FROM_DEVICE, entries: [m2, m1] },
  { t: 'sync', cpu: 2, m: m1, offset: 16, size: 64, forDevice: true },
  { t: 'sync', cpu: 3, m: m1, offset: 0, size: 512, forDevice: false },
  { t: 'lost', cpu: 2, count: 7 },
  { t: 'sync_sg', cpu: 1, dev: DEV, entries: [m2], forDevice: false },
  { t: 'sync_sg', cpu: 0, dev: DEV, entries: [m2], forDevice: true },
  { t: 'other', cpu: 3, name: 'sched_switch', body: 'prev_comm=fio prev_pid=1 ==> next_comm=x' },
  { t: 'unmap_sg', cpu: 2, dev: DEV, dir: DmaDirection.FROM_DEVICE, entries: [m2, m1] },
  { t: 'unmap', cpu: 3, m: m1 },
];

describe('latency-format lines: every event kind, as tracefs gives it', () => {
  const reference = eventLines(render(EVERY_KIND, TRACEFS, T0).text);
  const counterRef = eventLines(render(EVERY_KIND, { ...TRACEFS, clock: 'counter' }, T0).text);

  it.each(LATENCY_STYLES)(
    '%s: pid, cpu, event and body as tracefs, the time converted',
    (_n, style) => {
      const got = eventLines(latencyText(EVERY_KIND, style));
      const ref = style.clock === 'counter' ? counterRef : reference;
      expect(got).toHaveLength(ref.length);
      got.forEach((g, i) => {
        const r = ref[i]!;
        expect({ pid: g.pid, cpu: g.cpu, event: g.event, body: g.body }).toEqual({
          pid: r.pid,
          cpu: r.cpu,
          event: r.event,
          body: r.body,
        });
        if (style.latencyFormat === 'verbose') {
          // "[%08llx]" ns2usecs(iter->ts) / "[%016llx]" iter->ts: tracefs' own time.
          expect(g.ts).toBe(r.ts);
          expect(g.sinceStart).toBeUndefined();
        } else if (style.clock === 'counter') {
          // " %4lld: ": the count since the buffer's start.
          expect(g.ts).toBe(r.ts - (T0 * 1e6 - BUFFER_START_BEFORE));
        } else {
          // " %4lldus%c: ": microseconds since the buffer's start, in seconds.
          expect(g.ts).toBeCloseTo(r.ts - (T0 - BUFFER_START_BEFORE / 1e6), 9);
          expect(g.sinceStart).toBe(true);
        }
      });
    },
  );

  it.each(LATENCY_STYLES)('%s: the reader hands on the same DMA events', (_n, style) => {
    const read = (text: string) => {
      const out: DmaEvent[] = [];
      const r = new TraceReader('t.txt', (ev) => out.push(ev));
      for (const line of text.split('\n')) r.line(line);
      const input = r.finish();
      return { input, out: out.map(({ line: _l, ts: _t, ...rest }) => rest) };
    };
    const ref = read(render(EVERY_KIND, TRACEFS, T0).text);
    const got = read(latencyText(EVERY_KIND, style));
    expect(got.out).toEqual(ref.out);
    expect(got.out.length).toBe(EVERY_KIND.length - 2); // less the lost marker and sched_switch
    // Every DMA event kind the generator has.
    expect(new Set(got.out.map((e) => e.kind))).toEqual(
      new Set(['bounced', 'map', 'map_sg', 'sync', 'sync_sg', 'unmap_sg', 'unmap']),
    );
    expect(new Set(eventLines(latencyText(EVERY_KIND, style)).map((e) => e.event))).toEqual(
      new Set([
        'swiotlb_bounced',
        'dma_map_page',
        'dma_map_sg',
        'dma_sync_single_for_device',
        'dma_sync_single_for_cpu',
        'dma_sync_sg_for_cpu',
        'dma_sync_sg_for_device',
        'sched_switch',
        'dma_unmap_sg',
        'dma_unmap_page',
      ]),
    );
    expect(got.input).toMatchObject({
      layout: 'tracefs',
      events: ref.input.events,
      dma_events: ref.input.dma_events,
      unrelated_events: 1,
      lost_events: 7,
      lost_markers: 1,
      bad_lines: { count: 0 },
      overwritten_events: 0,
    });
  });

  it('prints and reads each trace_find_mark() mark: " %4lldus%c: "', () => {
    const two: GenEvent[] = [
      { t: 'map', cpu: 1, m: m1 },
      { t: 'unmap', cpu: 1, m: m1 },
    ];
    const marks = new Map([
      [10, ' '], // not more than 10 us
      [11, '+'],
      [101, '!'],
      [1001, '#'],
      [10_001, '*'],
      [100_001, '@'],
      [1_000_001, '$'],
    ]);
    for (const [step, mark] of marks) {
      const text = render(two, PLAIN, T0, step).text.split('\n');
      const first = text.find((l) => l.includes('dma_map_page'))!;
      const last = text.find((l) => l.includes('dma_unmap_page'))!;
      expect(first).toContain(`${BUFFER_START_BEFORE}us${mark}: dma_map_page: `);
      expect(last).toContain(`${BUFFER_START_BEFORE + step}us : dma_unmap_page: `); // the last: +0
      expect(parseTraceLine(first)).toMatchObject({ kind: 'event', cpu: 1, ts: 2.5 });
      expect(parseTraceLine(last)).toMatchObject({ kind: 'event', ts: (2_500_000 + step) / 1e6 });
    }
  });
});

describe('the generator prints what the kernel prints', () => {
  const events: GenEvent[] = [
    { t: 'map', cpu: 0, m: m1 },
    { t: 'map_sg', cpu: 1, dev: DEV, dir: DmaDirection.TO_DEVICE, entries: [m1] },
  ];
  const MAP =
    'dma_map_page: 0000:00:04.0 dir=TO_DEVICE dma_addr=7bfff000 size=512 phys_addr=1234000 attrs=';
  const SG =
    'dma_map_sg: 0000:00:04.0 dir=TO_DEVICE nents=1/1 ents=1/1 dma_addrs={0x7bfff000} sizes={0x200} phys_addrs={0x1234000} attrs=';

  it('"%8.8s-%-7d %3d" flags " %4lldus%c: " (and " %4lld: " with a counter clock)', () => {
    const lines = render(events, PLAIN, T0).text.split('\n');
    expect(lines[18]).toBe(`     fio-100       0..... 2500000us : ${MAP}`);
    // <idle> fits %8.8s; the time to the next entry is 0 for the last one.
    expect(lines[19]).toBe(`  <idle>-118       1d..1. 2500010us : ${SG}`);
    const counter = render(events, { ...PLAIN, clock: 'counter' }, T0).text.split('\n');
    expect(counter[18]).toBe(`     fio-100       0..... 2500000: ${MAP}`);
  });

  it('verbose: "%16s %7d %3d %d %08x %08lx " "[%08llx] %ld.%03ldms (+%ld.%03ldms): "', () => {
    const lines = render(events, VERBOSE, T0).text.split('\n');
    expect(lines[9]).toBe(
      `             fio     100   0 0 00000000 00000000 [05f5e100] 2500.000ms (+0.010ms): ${MAP}`,
    );
    expect(lines[10]).toBe(
      `          <idle>     118   1 1 00000001 00000001 [05f5e10a] 2500.010ms (+0.000ms): ${SG}`,
    );
    const counter = render(events, { ...VERBOSE, clock: 'counter' }, T0).text.split('\n');
    expect(counter[9]).toBe(
      `             fio     100   0 0 00000000 00000000 [0000000005f5e100] 2500000 (+10): ${MAP}`,
    );
  });

  it('a task name truncated by %8.8s, with spaces or dashes, in both layouts', () => {
    // COMMS[(cpu + i) % 5]: i = 0 on CPU 3 is "my-app 2", on CPU 4 "irq/24-virtio0".
    for (const [cpu, comm, short] of [
      [3, 'my-app 2', 'my-app 2'],
      [4, 'irq/24-virtio0', 'irq/24-v'],
    ] as const) {
      const ev: GenEvent[] = [{ t: 'map', cpu, m: m1 }];
      const plain = eventLines(render(ev, PLAIN, T0).text)[0]!;
      const verbose = eventLines(render(ev, VERBOSE, T0).text)[0]!;
      expect(render(ev, PLAIN, T0).text).toContain(`${short}-${100 + cpu * 17}`);
      expect(render(ev, VERBOSE, T0).text).toContain(`${comm.padStart(16)}     ${100 + cpu * 17}`);
      for (const l of [plain, verbose]) {
        expect(l).toMatchObject({ pid: 100 + cpu * 17, cpu, event: 'dma_map_page' });
      }
    }
  });
});

describe('latency-format headers', () => {
  it('takes every header line as a header, the "# latency:" line giving entries/written', () => {
    for (const style of [PLAIN, VERBOSE]) {
      const text = render(EVERY_KIND, style, T0).text.split('\n');
      const header = text.slice(
        0,
        text.findIndex((l) => !l.startsWith('#')),
      );
      expect(header.length).toBe(style === PLAIN ? 18 : 9);
      for (const line of header) expect(parseTraceLine(line).kind).toBe('header');
      if (style === PLAIN)
        expect(header).toContain('#  cmd     pid     |||||| time  |   caller     ');
      expect(parseTraceLine(header[0]!)).toEqual({ kind: 'header', layout: 'tracefs' });
      const n = EVERY_KIND.length;
      expect(parseTraceLine(header[4]!)).toEqual({
        kind: 'header',
        entries: { inBuffer: n, written: n },
      });
    }
    // print_trace_header(): "# latency: %lu us, #%lu/%lu, CPU#%d |": entries, then total.
    expect(
      parseTraceLine('# latency: 259 us, #4/10, CPU#2 | (M:preempt VP:0, KP:0, SP:0 HP:0 #P:4)'),
    ).toEqual({ kind: 'header', entries: { inBuffer: 4, written: 10 } });
  });

  it('reports the events the ring buffer overwrote from the "# latency:" line', () => {
    const r = new TraceReader('t.txt', () => {});
    const text = render(EVERY_KIND, PLAIN, T0).text.replace(
      /#(\d+)\/(\d+), CPU#0/,
      (_all, e) => `#${e}/${Number(e) + 40}, CPU#0`,
    );
    for (const line of text.split('\n')) r.line(line);
    expect(r.finish().overwritten_events).toBe(40);
  });
});

// A small trace of the simulated kernel: virtio-blk-like maps on four CPUs, an
// sg list, syncs, swiotlb_bounced lines, an unrelated event, a lost marker, maps
// until the pool fails.
const G = { base: 0x7c00_0000, slots: 512, areas: 2 };

function smallTrace(): GenEvent[] {
  const sim = new KernelSim(G);
  const events: GenEvent[] = [];
  const live: Mapping[] = [];
  let phys = 0x1_0000_0000;
  for (let i = 0; i < 24; i++) {
    const cpu = i % 4;
    const size = [512, 4096, 16384, 65536][i % 4]!;
    const m = sim.map('vda', cpu, phys, size, DmaDirection.TO_DEVICE);
    phys += 0x20000;
    events.push({ t: 'bounced', cpu, m }, { t: 'map', cpu, m });
    events.push({ t: 'sync', cpu, m, offset: 0, size: Math.min(size, 64), forDevice: true });
    live.push(m);
    if (i % 3 === 2) {
      const x = live.shift()!;
      sim.unmap(x);
      events.push({ t: 'unmap', cpu: (cpu + 1) % 4, m: x });
    }
    if (i === 10) {
      events.push({ t: 'other', cpu, name: 'sched_switch', body: 'prev_comm=fio' });
      events.push({ t: 'lost', cpu: 3, count: 2 });
    }
  }
  const entries = [8192, 2048].map((size, k) =>
    sim.map('vdb', 1, phys + k * 0x4000, size, DmaDirection.FROM_DEVICE),
  );
  events.push({ t: 'map_sg', cpu: 1, dev: 'vdb', dir: DmaDirection.FROM_DEVICE, entries });
  events.push({ t: 'sync_sg', cpu: 1, dev: 'vdb', entries, forDevice: false });
  for (let k = 0; k < 6; k++) {
    const m = sim.map('vda', 0, phys + 0x100000 * (k + 1), 262144, DmaDirection.TO_DEVICE);
    events.push({ t: 'bounced', cpu: 0, m }, { t: 'map', cpu: 0, m });
    if (m.placed >= 0) live.push(m);
  }
  for (const e of entries) sim.unmap(e);
  events.push({ t: 'unmap_sg', cpu: 2, dev: 'vdb', dir: DmaDirection.FROM_DEVICE, entries });
  for (const m of live) {
    sim.unmap(m);
    events.push({ t: 'unmap', cpu: 2, m });
  }
  return events;
}

/** The report with every `ts` (and the input's first_ts/last_ts) taken out. */
function withoutTimes(r: TraceReport): unknown {
  return JSON.parse(
    JSON.stringify(r, (key, value) =>
      key === 'ts' ||
      key === 'first_ts' ||
      key === 'last_ts' ||
      key === 'full_warnings_during_trace'
        ? undefined
        : value,
    ),
  );
}

function times(r: TraceReport): number[] {
  const out: number[] = [];
  JSON.stringify(r, (key, value) => {
    if (key === 'ts' && typeof value === 'number') out.push(value);
    return value;
  });
  return out;
}

describe('a latency-format trace replays as its tracefs twin', () => {
  const events = smallTrace();

  /** The tracefs rendering under the latency style's header lines, so both have the same line numbers. */
  function twin(style: Style): string {
    const own = render(events, style, T0).text.split('\n');
    const ref = render(events, TRACEFS, T0).text.split('\n');
    const headerOf = (lines: string[]) => lines.findIndex((l) => !l.startsWith('#'));
    return [...own.slice(0, headerOf(own)), ...ref.slice(headerOf(ref))].join('\n');
  }

  it('verbose: the same report, times included', async () => {
    const got = await replayText(latencyText(events, VERBOSE), G);
    const ref = await replayText(twin(VERBOSE), G);
    expect(got).toEqual(ref);
    expect(got.input.first_ts).toBe(T0);
    // What the trace holds: the kernel's failures, an sg list, a lost marker, and agreement.
    expect(got.maps.kernel_failed).toBeGreaterThan(0);
    expect(got.maps.sg_lists).toBe(1);
    expect(got.placements).toMatchObject({ disagree: 0 });
    expect(got.placements.agree).toBeGreaterThan(20);
    expect(got.input.lost_markers).toBe(1);
  });

  it('not verbose: the same report, times counted from the buffer start and no first_ts/last_ts', async () => {
    const got = await replayText(latencyText(events, PLAIN), G);
    const ref = await replayText(twin(PLAIN), G);
    expect(withoutTimes(got)).toEqual(withoutTimes(ref));
    // The boot log's "during the trace" count needs a clock reading: unknown.
    expect(got.input).toMatchObject({ first_ts: null, last_ts: null });
    expect(got.boot_log?.full_warnings_during_trace).toBeNull();
    expect(ref.boot_log?.full_warnings_during_trace).toBe(0);
    expect(ref.input.first_ts).toBe(T0);
    const shift = T0 - BUFFER_START_BEFORE / 1e6;
    const a = times(got);
    const b = times(ref);
    expect(a.length).toBe(b.length);
    expect(a.length).toBeGreaterThan(0);
    a.forEach((t, i) => {
      expect(t).toBeCloseTo(b[i]! - shift, 9);
    });
  });
});

describe('layouts the replay cannot read say so', () => {
  function error(lines: string[]): { code: string; message: string } {
    const r = new TraceReader('t.txt', () => {});
    try {
      for (const line of lines) r.line(line);
      r.finish();
    } catch (err) {
      if (isMediatorError(err)) return { code: err.code, message: err.message };
      throw err;
    }
    throw new Error('expected an error');
  }

  it('option raw: print_raw_fmt() "%d %d %llu " and trace_nop_print() "type: %d"', () => {
    const e = error([
      '# tracer: nop',
      '#',
      '100 0 100000000 type: 1520',
      '118 1 100000010 type: 1520',
    ]);
    expect(e.code).toBe('TRACE_NOT_A_TRACE');
    expect(e.message).toMatch(
      /^t\.txt is a trace in a layout this replay cannot read: line 3 reads "100 0 100000000 type: 1520"; it is in the layout of tracefs option raw or hex/,
    );
    expect(e.message).toContain('options/raw');
  });

  it('option context-info off: the event text alone', () => {
    const body = `dma_map_page: ${DEV} dir=TO_DEVICE dma_addr=7bfff000 size=512 phys_addr=1234000 attrs=`;
    const e = error(['# tracer: nop', '#', body]);
    expect(e.code).toBe('TRACE_NOT_A_TRACE');
    expect(e.message).toContain('line 3 reads "dma_map_page: ');
    expect(e.message).toContain('options/context-info');
  });
});
