import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { parseBootLog } from '../src/workload/trace/boot-log.js';
import { limitNareas, poolFromBootLog } from '../src/workload/trace/boot-pool.js';
import {
  DMA_MAPPING_ERROR,
  EventParseError,
  parseDmaEvent,
} from '../src/workload/trace/dma-events.js';
import { TraceReader } from '../src/workload/trace/reader.js';
import { parseTraceLine } from '../src/workload/trace/trace-line.js';
import { splitFields } from '../src/workload/trace/trace-values.js';

const AT = { line: 7, cpu: 2, pid: 99, ts: 1.5 };

function parse(name: string, body: string, st = {}) {
  return parseDmaEvent(name, body, AT, st);
}

function parseError(name: string, body: string): string {
  try {
    parse(name, body);
  } catch (err) {
    if (err instanceof EventParseError) return err.message;
    throw err;
  }
  throw new Error('expected an EventParseError');
}

describe('trace lines (tracefs and trace-cmd report layouts)', () => {
  it('reads a tracefs line: task-pid, [cpu], irq-info flags, secs.usecs, event, body', () => {
    const l = parseTraceLine(
      '          <idle>-0       [003] d.h2.   123.456789: dma_map_phys: 0000:00:04.0 dir=TO_DEVICE',
    );
    expect(l).toEqual({
      kind: 'event',
      pid: 0,
      cpu: 3,
      ts: 123.456789,
      event: 'dma_map_phys',
      body: '0000:00:04.0 dir=TO_DEVICE',
    });
  });

  it('reads task names with spaces and dashes, the tgid column, no flags, a counter clock', () => {
    expect(
      parseTraceLine(
        '        my-app 2-4242    (   4240) [001] .....  10.000001: dma_unmap_page: x dir=NONE',
      ),
    ).toMatchObject({ kind: 'event', pid: 4242, cpu: 1, ts: 10.000001, event: 'dma_unmap_page' });
    expect(
      parseTraceLine(
        '    irq/24-virtio0-311     [000]    17.5: swiotlb_bounced: dev_name: a dma_mask=0',
      ),
    ).toMatchObject({ kind: 'event', pid: 311, cpu: 0, event: 'swiotlb_bounced' });
    expect(
      parseTraceLine('             fio-77      [002]  123456789012: dma_sync_sg_for_cpu: d dir=X'),
    ).toMatchObject({ kind: 'event', pid: 77, cpu: 2, ts: 123456789012 });
  });

  it("reads trace-cmd report's line, whose event name is padded to 20 columns", () => {
    const l = parseTraceLine(
      '    kworker/0:1H-143   [000] .....  7453.327963: dma_unmap_sg:         0000:00:04.0 dir=FROM_DEVICE phys_addrs={0x1000} attrs=',
    );
    expect(l).toMatchObject({ kind: 'event', pid: 143, cpu: 0, event: 'dma_unmap_sg' });
    expect(l.kind === 'event' && l.body).toBe(
      '0000:00:04.0 dir=FROM_DEVICE phys_addrs={0x1000} attrs=',
    );
  });

  it('tells headers, lost-event markers and other text apart', () => {
    expect(parseTraceLine('# tracer: nop')).toEqual({ kind: 'header', layout: 'tracefs' });
    expect(parseTraceLine('#           TASK-PID     CPU#  |||||')).toEqual({ kind: 'header' });
    expect(parseTraceLine('cpus=8')).toEqual({ kind: 'header', layout: 'trace-cmd' });
    expect(parseTraceLine('')).toEqual({ kind: 'header' });
    expect(parseTraceLine('CPU:3 [LOST 1234 EVENTS]')).toEqual({
      kind: 'lost',
      cpu: 3,
      count: 1234,
    });
    expect(parseTraceLine('CPU:0 [56 EVENTS DROPPED]')).toEqual({
      kind: 'lost',
      cpu: 0,
      count: 56,
    });
    expect(parseTraceLine('CPU:1 [EVENTS DROPPED]')).toEqual({
      kind: 'lost',
      cpu: 1,
      count: undefined,
    });
    expect(parseTraceLine('[    0.000000] Linux version 6.12.0')).toEqual({ kind: 'other' });
  });
});

describe('dma event texts (include/trace/events/dma.h, swiotlb.h)', () => {
  it('dma_map_page / dma_map_phys: hex addresses without 0x, decimal size', () => {
    const ev = parse(
      'dma_map_phys',
      '0000:00:04.0 dir=FROM_DEVICE dma_addr=bbfff800 size=4096 phys_addr=12345800 attrs=SKIP_CPU_SYNC|NO_WARN',
    );
    expect(ev).toEqual({
      ...AT,
      kind: 'map',
      device: '0000:00:04.0',
      dir: DmaDirection.FROM_DEVICE,
      dmaAddr: 0xbbfff800,
      size: 4096,
      phys: 0x12345800,
    });
  });

  it('reads the same event through the fast path and the general one (a device name with a space)', () => {
    const text = (dev: string) =>
      `${dev} dir=TO_DEVICE dma_addr=bbfff800 size=4096 phys_addr=12345800 attrs=`;
    const fast = parse('dma_map_phys', text('vda'));
    const general = parse('dma_map_phys', text('my dev'));
    expect({ ...general, device: 'vda' }).toEqual(fast);
    expect(parse('dma_sync_single_for_device', 'a b dir=TO_DEVICE dma_addr=10 size=2')).toEqual({
      ...parse('dma_sync_single_for_device', 'ab dir=TO_DEVICE dma_addr=10 size=2'),
      device: 'a b',
    });
  });

  it('reads ffffffffffffffff as DMA_MAPPING_ERROR and a dma_unmap_resource', () => {
    const ev = parse(
      'dma_map_page',
      'nvme0 dir=BIDIRECTIONAL dma_addr=ffffffffffffffff size=512 phys_addr=1000 attrs=',
    );
    expect(ev).toMatchObject({ kind: 'map', dmaAddr: DMA_MAPPING_ERROR });
    expect(
      parse('dma_unmap_resource', 'x dir=TO_DEVICE dma_addr=fee00000 size=4 attrs='),
    ).toMatchObject({ kind: 'unmap', dmaAddr: 0xfee00000, size: 4 });
  });

  it("dma_map_sg in the kernel's array style, sizes in hex too", () => {
    const st: { arrays?: string } = {};
    const ev = parse(
      'dma_map_sg',
      'd dir=TO_DEVICE dma_addrs={0xbc000000,0x7000} sizes={0x1000,0x200} phys_addrs={0x5000,0x7000} attrs=',
      st,
    );
    expect(ev).toMatchObject({
      kind: 'map_sg',
      dmaAddrs: [0xbc000000, 0x7000],
      sizes: [4096, 512],
      phys: [0x5000, 0x7000],
      nents: 2,
      ents: 2,
      truncated: false,
    });
    expect(st.arrays).toBe('kernel');
  });

  it('dma_map_sg in old libtraceevent style: decimal, space separated, no braces', () => {
    const st: { arrays?: string } = {};
    const ev = parse(
      'dma_map_sg',
      'd dir=TO_DEVICE dma_addrs=3154116608 28672 sizes=4096 512 phys_addrs=20480 28672 attrs=',
      st,
    );
    expect(ev).toMatchObject({
      dmaAddrs: [0xbc000000, 0x7000],
      sizes: [4096, 512],
      phys: [0x5000, 0x7000],
    });
    expect(st.arrays).toBe('decimal');
  });

  it("mainline's dma_map_sg: nents=%d/%d ents=%d/%d and [TRUNCATED]", () => {
    expect(
      parse(
        'dma_map_sg',
        'd dir=FROM_DEVICE nents=2/300 ents=2/300 [TRUNCATED] dma_addrs={0x1,0x2} sizes={0x1,0x1} phys_addrs={0x1,0x2} attrs=',
      ),
    ).toMatchObject({ nents: 300, ents: 300, truncated: true, phys: [1, 2] });
    expect(
      parse(
        'dma_map_sg',
        'd dir=FROM_DEVICE nents=3/3 ents=1/1 dma_addrs={0x10000} sizes={0x3000} phys_addrs={0x1,0x2,0x3} attrs=',
      ),
    ).toMatchObject({ nents: 3, ents: 1, truncated: false });
  });

  it("libtraceevent's [FAILED TO PARSE] raw fields, arrays as little-endian bytes", () => {
    const ev = parse(
      'dma_map_sg',
      '[FAILED TO PARSE] device=0000:00:04.0 full_nents=1 full_ents=1 truncated=0 phys_addrs=ARRAY[00, 50, 00, 00, 00, 00, 00, 00] dma_addrs=ARRAY[00, 00, 00, bc, 00, 00, 00, 00] lengths=ARRAY[00, 10, 00, 00] dir=1 attrs=0x0',
    );
    expect(ev).toMatchObject({
      kind: 'map_sg',
      device: '0000:00:04.0',
      dir: DmaDirection.TO_DEVICE,
      phys: [0x5000],
      dmaAddrs: [0xbc000000],
      sizes: [4096],
    });
  });

  it('dma_unmap_sg names the buffers; syncs; allocations', () => {
    expect(
      parse('dma_unmap_sg', 'd dir=FROM_DEVICE phys_addrs={0x5000,0x7000} attrs='),
    ).toMatchObject({
      kind: 'unmap_sg',
      phys: [0x5000, 0x7000],
    });
    expect(
      parse('dma_sync_single_for_cpu', 'd dir=FROM_DEVICE dma_addr=bc000800 size=100'),
    ).toEqual({
      ...AT,
      kind: 'sync',
      device: 'd',
      forDevice: false,
      dir: DmaDirection.FROM_DEVICE,
      dmaAddr: 0xbc000800,
      size: 100,
    });
    expect(
      parse('dma_sync_sg_for_device', 'd dir=TO_DEVICE dma_addrs={0x1000} sizes={0x200}'),
    ).toMatchObject({ kind: 'sync_sg', forDevice: true, dmaAddrs: [0x1000], sizes: [512] });
    expect(
      parse(
        'dma_alloc',
        'd dir=BIDIRECTIONAL dma_addr=50000000 size=8192 virt_addr=000000003c9a0e1b flags=GFP_KERNEL attrs=',
      ),
    ).toMatchObject({ kind: 'alloc', dmaAddr: 0x5000_0000, size: 8192 });
    expect(parse('dma_alloc_sgt', 'd dir=NONE dma_addr=0 size=1 phys_addrs={} flags= attrs=')).toBe(
      undefined,
    );
  });

  it('swiotlb_bounced: the original buffer, FORCE or NORMAL, a memory-encryption bit kept', () => {
    expect(
      parse(
        'swiotlb_bounced',
        'dev_name: 0000:00:04.0 dma_mask=ffffffffffffffff dev_addr=800012345800 size=4096 FORCE',
      ),
    ).toMatchObject({
      kind: 'bounced',
      device: '0000:00:04.0',
      devAddr: 2 ** 47 + 0x12345800,
      size: 4096,
      force: true,
    });
  });

  it('says what it expected when a field is missing or malformed', () => {
    expect(parseError('dma_map_phys', 'no direction here')).toBe(
      'expected "<device> dir=<direction> ..."',
    );
    expect(parseError('dma_map_phys', 'd dir=SIDEWAYS dma_addr=1 size=1 phys_addr=1 attrs=')).toBe(
      'expected dir=BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE or NONE, got "dir=SIDEWAYS"',
    );
    expect(parseError('dma_map_phys', 'd dir=NONE dma_addr=zz size=1 phys_addr=1 attrs=')).toBe(
      'expected dma_addr in hex, got "zz"',
    );
    expect(parseError('dma_unmap_phys', 'd dir=NONE dma_addr=1 attrs=')).toBe(
      'expected size= (the mapping size)',
    );
    expect(
      parseError(
        'dma_map_sg',
        'd dir=NONE dma_addrs={0x1} sizes={0x1,0x2} phys_addrs={0x1} attrs=',
      ),
    ).toBe('expected as many sizes as dma_addrs, got 2 and 1');
  });

  it('splitFields keeps values that hold spaces', () => {
    expect([...splitFields('a=1 2 3 b={0x1} c= d=x [TRUNCATED]')]).toEqual([
      ['a', '1 2 3'],
      ['b', '{0x1}'],
      ['c', ''],
      ['d', 'x [TRUNCATED]'],
    ]);
  });
});

describe('boot log (kernel/dma/swiotlb.c lines)', () => {
  const pa = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;

  it('reads the pool from "mapped [mem %pa-%pa]" (end exclusive) and "area num %d."', () => {
    const log = parseBootLog(
      [
        '[    0.004000] software IO TLB: area num 4.',
        `[    0.310000] software IO TLB: mapped [mem ${pa(0xbbfff000)}-${pa(0xbffff000)}] (64MB)`,
      ].join('\n'),
    );
    expect(poolFromBootLog(log, 'dmesg')).toEqual({
      base: 0xbbfff000,
      nslabs: 32768,
      nareas: 4,
      restricted: false,
      exact: true,
      notes: [],
    });
  });

  it('reads lines without timestamps and with a journal prefix; limits the areas as limit_nareas()', () => {
    const log = parseBootLog(
      [
        'Mar 01 10:00:00 guest kernel: software IO TLB: area num 64.',
        `software IO TLB: mapped [mem ${pa(0x1000000)}-${pa(0x1400000)}] (4MB)`,
      ].join('\n'),
    );
    const pool = poolFromBootLog(log, 'journal');
    expect(pool.nslabs).toBe(2048);
    expect(pool.nareas).toBe(16);
    expect(limitNareas(64, 2048)).toBe(16);
    expect(limitNareas(4, 32768)).toBe(4);
    expect(pool.notes[0]).toMatch(/area num 64 limited to 16/);
  });

  it('collects the "swiotlb buffer is full" warnings with their device', () => {
    const log = parseBootLog(
      [
        '[   12.345678] virtio-pci 0000:00:04.0: swiotlb buffer is full (sz: 262144 bytes), total 32768 (slots), used 32700 (slots)',
        '[   12.400000] swiotlb_tbl_map_single: 9 callbacks suppressed',
        'nvme 0000:01:00.0: swiotlb buffer is full (sz: 4096 bytes), total 32768 (slots), used 32767 (slots)',
      ].join('\n'),
    );
    expect(log.fullWarnings).toEqual([
      {
        line: 1,
        ts: 12.345678,
        driver: 'virtio-pci',
        device: '0000:00:04.0',
        size: 262144,
        total: 32768,
        used: 32700,
      },
      {
        line: 3,
        ts: undefined,
        driver: 'nvme',
        device: '0000:01:00.0',
        size: 4096,
        total: 32768,
        used: 32767,
      },
    ]);
    expect(log.suppressedWarnings).toBe(9);
  });

  it('uses a lone restricted DMA pool (one area) when there is no default pool', () => {
    const log = parseBootLog(
      'software IO TLB: Reserved memory: created restricted DMA pool at 0x0000000050000000, size 4 MiB',
    );
    expect(poolFromBootLog(log, 'dmesg')).toMatchObject({
      base: 0x5000_0000,
      nslabs: 2048,
      nareas: 1,
      restricted: true,
    });
  });

  it('TRACE_BAD_BOOT_LOG names what is missing and how many lines it read', () => {
    const log = parseBootLog('[    0.0] Linux version 6.12\n[    0.1] Memory: 4G\n');
    try {
      poolFromBootLog(log, 'dmesg.txt');
      throw new Error('expected TRACE_BAD_BOOT_LOG');
    } catch (err) {
      expect(isMediatorError(err, 'TRACE_BAD_BOOT_LOG')).toBe(true);
      expect((err as Error).message).toMatch(
        /^dmesg.txt: no line "software IO TLB: mapped \[mem 0x\.\.\.-0x\.\.\.\] \(NMB\)" among its 3 lines/,
      );
    }
  });
});

describe('TraceReader: what is a trace', () => {
  function read(text: string) {
    const events: unknown[] = [];
    const r = new TraceReader('t.txt', (ev) => events.push(ev));
    for (const line of text.split('\n')) r.line(line);
    return { input: r.finish(), events };
  }

  function code(fn: () => unknown): [string, string] {
    try {
      fn();
    } catch (err) {
      if (isMediatorError(err)) return [err.code, err.message];
      throw err;
    }
    throw new Error('expected an error');
  }

  it('TRACE_NOT_A_TRACE quotes the first line that is not one', () => {
    const [c, m] = code(() => read('hello world\nsecond line'));
    expect(c).toBe('TRACE_NOT_A_TRACE');
    expect(m).toMatch(
      /^t.txt is not a trace: line 1 reads "hello world"; expected tracefs lines like/,
    );
  });

  it('recognises a binary trace.dat and says how to get its text', () => {
    const [c, m] = code(() => read('\u0017\u0008Dtracing6\u0000\u0000\u0000\u0004\nbinary'));
    expect(c).toBe('TRACE_NOT_A_TRACE');
    expect(m).toBe(
      't.txt is a binary trace-cmd trace.dat: give its text, "trace-cmd report t.txt > trace.txt"',
    );
  });

  it('gives up early on a long input that is not a trace', () => {
    const r = new TraceReader('big', () => {});
    expect(() => {
      for (let i = 0; i < 5000; i++) r.line(`not a trace ${i}`);
    }).toThrow(/big is not a trace: line 1 reads "not a trace 0"/);
  });

  it('TRACE_NO_DMA_EVENTS lists the events the trace has instead', () => {
    const [c, m] = code(() =>
      read(
        [
          '# tracer: nop',
          '   fio-1 [000] ..... 1.000000: sched_switch: prev_comm=fio',
          '   fio-1 [000] ..... 1.000001: sched_switch: prev_comm=fio',
          '   fio-1 [000] ..... 1.000002: block_rq_issue: 8,0 W',
        ].join('\n'),
      ),
    );
    expect(c).toBe('TRACE_NO_DMA_EVENTS');
    expect(m).toMatch(/its 3 events are sched_switch \(2\), block_rq_issue \(1\)/);
  });

  it('TRACE_NO_DMA_EVENTS explains that swiotlb_bounced alone is not enough', () => {
    const [c, m] = code(() =>
      read(
        '   fio-1 [000] ..... 1.0: swiotlb_bounced: dev_name: d dma_mask=ffffffff dev_addr=1000 size=4 FORCE',
      ),
    );
    expect(c).toBe('TRACE_NO_DMA_EVENTS');
    expect(m).toMatch(/swiotlb_bounced alone carries no DMA address/);
  });

  it('TRACE_BAD_EVENT when no dma line parses, with the first line number and what was expected', () => {
    const [c, m] = code(() =>
      read(['cpus=2', '   fio-1 [000] ..... 1.0: dma_map_phys: garbage'].join('\n')),
    );
    expect(c).toBe('TRACE_BAD_EVENT');
    expect(m).toBe(
      't.txt: none of its 1 dma event lines could be read; the first, line 2: dma_map_phys: expected "<device> dir=<direction> ..."',
    );
  });

  it('counts single bad lines, unrelated events and lost events, and skips them', () => {
    const { input, events } = read(
      [
        'cpus=2',
        '   fio-1 [000] ..... 1.0: dma_map_phys: d dir=TO_DEVICE dma_addr=1000 size=4 phys_addr=1000 attrs=',
        '   fio-1 [000] ..... 1.1: dma_map_phys: broken',
        'CPU:1 [12 EVENTS DROPPED]',
        '   fio-1 [001] ..... 1.2: sched_switch: x',
      ].join('\n'),
    );
    expect(events).toHaveLength(1);
    expect(input).toMatchObject({
      layout: 'trace-cmd',
      events: 3,
      dma_events: 2,
      unrelated_events: 1,
      lost_events: 12,
      lost_markers: 1,
      first_ts: 1.0,
      last_ts: 1.2,
    });
    expect(input.bad_lines.first[0]!.line).toBe(3);
  });
});
