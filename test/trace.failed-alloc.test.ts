import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isNullPointer, parseDmaEvent } from '../src/workload/trace/dma-events.js';
import { formatTraceReport } from '../src/workload/trace/format.js';
import { runTraceReplay } from '../src/workload/trace/run.js';
import { adviseFromTrace } from '../src/workload/trace/trace-advice.js';

// 6.12.117 kernel/dma/mapping.c, dma_alloc_attrs(): a failed allocation is traced
// with a NULL virt_addr and whatever the caller's handle held; dma_free_attrs()
// traces a free of NULL and returns. lib/vsprintf.c ptr_to_id(): NULL prints as
// its value, zero-padded to 16 digits.
const NULL_PTR = '0000000000000000';
const base = 0x5000_0000;

function line(n: number, event: string, body: string): string {
  return `   kworker-1   [000] .....  1.${String(n).padStart(6, '0')}: ${event}: ${body}`;
}
function alloc(n: number, dev: string, dma: string, size: number, virt: string): string {
  return line(
    n,
    'dma_alloc',
    `${dev} dir=BIDIRECTIONAL dma_addr=${dma} size=${size} virt_addr=${virt} flags=GFP_KERNEL attrs=`,
  );
}
function free(n: number, dev: string, dma: string, size: number, virt: string): string {
  return line(
    n,
    'dma_free',
    `${dev} dir=BIDIRECTIONAL dma_addr=${dma} size=${size} virt_addr=${virt} attrs=`,
  );
}

/** A restricted pool of 32 KiB (16 slots, one area) at `base`. */
function replay(lines: string[]) {
  return runTraceReplay({
    trace: Readable.from([['# tracer: nop', ...lines, ''].join('\n')]),
    traceName: 'failed-alloc.txt',
    pool: { base, restrictedBytes: 2 ** 15 },
  });
}

describe('a NULL virt_addr', () => {
  it('is told from a hashed pointer in every style a trace prints it', () => {
    for (const t of [NULL_PTR, '0x0', '0', '(nil)', '(null)']) expect(isNullPointer(t)).toBe(true);
    for (const t of ['000000003c9a0e1b', '(____ptrval____)', '0x10', 'ffff8880']) {
      expect(isNullPointer(t)).toBe(false);
    }
    const at = { line: 1, cpu: 0, pid: 1, ts: 1 };
    const body = (v: string) =>
      `vda dir=BIDIRECTIONAL dma_addr=50000000 size=4096 virt_addr=${v} flags=GFP_KERNEL attrs=`;
    expect(parseDmaEvent('dma_alloc', body(NULL_PTR), at)).toMatchObject({
      kind: 'alloc',
      failed: true,
    });
    expect(parseDmaEvent('dma_alloc', body('000000003c9a0e1b'), at)).toMatchObject({
      kind: 'alloc',
      failed: false,
    });
    expect(
      parseDmaEvent(
        'dma_free',
        `vda dir=BIDIRECTIONAL dma_addr=0 size=4096 virt_addr=${NULL_PTR} attrs=`,
        at,
      ),
    ).toMatchObject({ kind: 'free', nothing: true });
  });
});

describe('failed coherent allocations (dma_alloc with a NULL virt_addr)', () => {
  it('of a device that allocates from the pool: the kernel found no room, and neither does the model', async () => {
    // 8 KiB at slot 0, then 32 KiB, which no longer fits the 32 KiB pool. The
    // failed call's dma_addr is the handle's old value, here the pool's base: it
    // is no allocation there.
    const r = await replay([
      alloc(0, 'vda', '50000000', 8192, '000000003c9a0e1b'),
      alloc(1, 'vda', '50000000', 32768, NULL_PTR),
      free(2, 'vda', '50000000', 8192, '000000003c9a0e1b'),
    ]);
    expect(r.maps).toMatchObject({
      allocs: 1,
      allocs_failed: 1,
      allocs_failed_other: 0,
      replayed: 2,
    });
    expect(r.kernel_failures).toEqual([
      { line: 3, device: 'vda', cpu: 0, size: 32768, call: 'alloc', model: 'full' },
    ]);
    expect(r.placements).toMatchObject({ agree: 2, disagree: 0 });
    // The 8 KiB allocation stayed where it was until its free: nothing was lost or moved.
    expect(r.unmaps).toMatchObject({ replayed: 1, implicit: 0, before_trace: 0 });
    expect(r.model).toMatchObject({ used_hiwater: 4, used_end: 0 });
    const text = formatTraceReport(r);
    expect(text).toContain(
      'failed coherent allocations (virt_addr NULL): 1 of devices that allocate from the pool',
    );
    expect(text).toContain('line 3: vda cpu 0, a coherent allocation of 32768 bytes; model: full');
  });

  it('where the model found room: a disagreement, and the model gives its slots back at once', async () => {
    // 16 KiB of the 32 KiB pool taken; the kernel fails a second 16 KiB, which
    // the model places in the other half. The third fits only if the model gave
    // that half back.
    const r = await replay([
      alloc(0, 'vda', '50000000', 16384, '000000003c9a0e1b'),
      alloc(1, 'vda', '0', 16384, NULL_PTR),
      alloc(2, 'vda', '50004000', 16384, '00000000aa55aa55'),
    ]);
    expect(r.maps).toMatchObject({ allocs: 2, allocs_failed: 1 });
    expect(r.kernel_failures).toEqual([
      { line: 3, device: 'vda', cpu: 0, size: 16384, call: 'alloc', model: 'placed' },
    ]);
    expect(r.placements).toMatchObject({ agree: 2, disagree: 1 });
    expect(r.placements.disagreements[0]).toMatchObject({
      line: 3,
      kernel: 'failed',
      model: '0x50004000',
    });
    expect(r.model).toMatchObject({ full: 0, used_end: 16 });
  });

  it('size --trace notes them: a restricted pool holds coherent buffers too', async () => {
    const report = await adviseFromTrace({
      trace: Readable.from(
        [
          '# tracer: nop',
          alloc(0, 'vda', '50000000', 8192, '000000003c9a0e1b'),
          line(
            1,
            'dma_map_page',
            'vda dir=TO_DEVICE dma_addr=50002000 size=4096 phys_addr=7000 attrs=',
          ),
          alloc(2, 'vda', '0', 32768, NULL_PTR),
          line(3, 'dma_unmap_page', 'vda dir=TO_DEVICE dma_addr=50002000 size=4096 attrs='),
          '',
        ].join('\n'),
      ),
      traceName: 'advice.txt',
      pool: { base, restrictedBytes: 2 ** 15 },
    });
    expect(report.replay.kernel_full).toBe(1);
    expect(report.notes).toContainEqual(
      expect.stringMatching(
        /^the kernel failed 1 coherent allocations from the pool \(a NULL virt_addr\)/,
      ),
    );
  });

  it('of a device with no allocation in the pool: counted, not replayed', async () => {
    const r = await replay([alloc(0, 'vdb', '0', 4096, NULL_PTR)]);
    expect(r.maps).toMatchObject({
      allocs: 0,
      allocs_failed: 0,
      allocs_failed_other: 1,
      replayed: 0,
    });
    expect(r.kernel_failures).toEqual([]);
    expect(r.placements).toMatchObject({ agree: 0, disagree: 0 });
    expect(formatTraceReport(r)).toContain(
      'failed coherent allocations (virt_addr NULL): 0 of devices that allocate from the pool, 1 of other devices (not replayed)',
    );
  });
});

describe('dma_free of NULL', () => {
  it('frees nothing: no mapping is released, none is counted as made before the trace', async () => {
    const r = await replay([
      alloc(0, 'vda', '50000000', 4096, '000000003c9a0e1b'),
      // The handle still holds the live allocation's address.
      free(1, 'vda', '50000000', 4096, NULL_PTR),
      alloc(2, 'vda', '50001000', 4096, '00000000aa55aa55'),
    ]);
    expect(r.unmaps).toMatchObject({ null_frees: 1, replayed: 0, before_trace: 0, implicit: 0 });
    expect(r.placements).toMatchObject({ agree: 2, disagree: 0 });
    expect(formatTraceReport(r)).toContain('1 frees of NULL (nothing freed)');
  });
});

describe('events the ring buffer overwrote', () => {
  // 6.12.117 kernel/trace/trace.c, print_event_info(): "# entries-in-buffer/
  // entries-written: %lu/%lu   #P:%d", where written = in buffer +
  // ring_buffer_overrun_cpu() (get_total_entries_cpu()).
  const header = (inBuffer: number, written: number) => [
    '# tracer: nop',
    '#',
    `# entries-in-buffer/entries-written: ${inBuffer}/${written}   #P:2`,
    '#',
  ];
  const events = [
    alloc(0, 'vda', '50000000', 4096, '000000003c9a0e1b'),
    free(1, 'vda', '50000000', 4096, '000000003c9a0e1b'),
  ];
  const run = (lines: string[]) =>
    runTraceReplay({
      trace: Readable.from([[...lines, ''].join('\n')]),
      traceName: 'overwritten.txt',
      pool: { base, restrictedBytes: 2 ** 15 },
    });

  it('are counted from tracefs header and said in the report, with what to do', async () => {
    const r = await run([...header(2, 9), ...events]);
    expect(r.input.overwritten_events).toBe(7);
    expect(r.hints[0]).toMatch(
      /^the ring buffer overwrote 7 older events before the trace was read .*record with a bigger buffer/,
    );
    expect(formatTraceReport(r)).toContain(
      '7 older events overwritten in the ring buffer before it was read',
    );
  });

  it('none overwritten: 0 and no hint; no header (trace-cmd report): null', async () => {
    const whole = await run([...header(2, 2), ...events]);
    expect(whole.input.overwritten_events).toBe(0);
    expect(whole.hints.join('\n')).not.toMatch(/overwrote/);
    const bare = await run(['# tracer: nop', ...events]);
    expect(bare.input.overwritten_events).toBeNull();
  });
});
