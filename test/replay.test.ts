import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPLAY_HELP } from '../src/cli/replay-command.js';
import { ReplayEngine } from '../src/swiotlb/replay.js';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;

function runCli(
  args: string[],
  input = '',
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], {
    input,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function replay(lines: string[], slots = 256, areas = 1): Record<string, unknown>[] {
  const r = new ReplayEngine({ pool: { slots, areas } });
  return lines
    .map((l, i) => r.handle(l, i + 1))
    .filter((x): x is Record<string, unknown> => x !== undefined);
}

describe('ReplayEngine (JSON lines)', () => {
  it('maps, unmaps and reports stats in the documented shapes', () => {
    const out = replay([
      '{"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device","min_align_mask":4095}',
      '{"op":"map","id":"b","orig":"0x1a34","size":100,"dir":"from_device","min_align_mask":4095,"alloc_align_mask":4095}',
      '{"op":"stats"}',
      '{"op":"unmap","id":"a"}',
      '{"op":"unmap","id":"b"}',
      '{"op":"stats"}',
    ]);
    expect(out[0]).toEqual({ id: 'a', ok: true, tlb_addr: '0x234', slots: 1 });
    // b: 2 slots (one pad) at the next 4 KiB aligned slot after the cursor (1): slot 2.
    expect(out[1]).toEqual({ id: 'b', ok: true, tlb_addr: '0x1a34', slots: 2 });
    expect(out[2]).toMatchObject({
      nslabs: 256,
      used: 3,
      used_hiwater: 3,
      areas: [{ used: 3, index: 4 }],
      largest_free_run: 128,
    });
    expect(out[3]).toEqual({ id: 'a', ok: true });
    expect(out[5]).toMatchObject({ used: 0, used_hiwater: 3 });
  });

  it('reports pool errors with their codes and the kernel message', () => {
    const out = replay(
      [
        '{"op":"map","id":"big","orig":"0x100000","size":204800,"dir":"to_device"}',
        '{"op":"map","id":"x","orig":"0x200000","size":65536,"dir":"to_device"}',
        '{"op":"map","id":"huge","orig":"0x0","size":262145,"dir":"to_device"}',
        '{"op":"unmap","id":"nope"}',
      ],
      128,
    );
    expect(out[1]).toEqual({
      id: 'x',
      ok: false,
      code: 'SWIOTLB_POOL_FULL',
      error: 'swiotlb buffer is full (sz: 65536 bytes), total 128 (slots), used 100 (slots)',
    });
    expect(out[2]).toMatchObject({ id: 'huge', ok: false, code: 'SWIOTLB_MAPPING_TOO_LARGE' });
    expect(out[3]).toMatchObject({ id: 'nope', ok: false, code: 'SWIOTLB_NOT_MAPPED' });
  });

  it('makes an unmap of another size or direction as the kernel does: released, with its warnings', () => {
    const out = replay(
      [
        '{"op":"map","id":"big","orig":"0x100000","size":204800,"dir":"from_device"}',
        '{"op":"unmap","id":"big","size":300000}',
        '{"op":"map","id":"b","orig":"0x100000","size":4096,"dir":"to_device"}',
        '{"op":"unmap","id":"b","dir":"bidirectional","size":100}',
        '{"op":"map","id":"s","orig":"0x0","size":4096,"dir":"from_device"}',
        '{"op":"unmap","id":"s","size":8192,"attrs":32}',
        '{"op":"stats"}',
        // The 100 slots "big" held are free again: a map of 128 slots fits.
        '{"op":"map","id":"all","orig":"0x0","size":262144,"dir":"to_device"}',
      ],
      128,
    );
    expect(out[1]).toEqual({
      id: 'big',
      ok: true,
      warnings: [
        {
          source: 'swiotlb',
          message: 'Buffer overflow detected. Allocation size: 204800. Mapping size: 300000.',
        },
        {
          source: 'dma-debug',
          message:
            'DMA-API: device driver frees DMA memory with different size [device address=0x0000000000000000] [map size=204800 bytes] [unmap size=300000 bytes]',
        },
      ],
    });
    // A smaller size copies less, so swiotlb says nothing; DMA-API debug reports both differences.
    expect(out[3]).toMatchObject({ id: 'b', ok: true });
    const bWarnings = (out[3]!.warnings as { source: string; message: string }[]).map(
      (w) => w.message,
    );
    expect(bWarnings).toHaveLength(2);
    expect(bWarnings[0]).toContain('[map size=4096 bytes] [unmap size=100 bytes]');
    expect(bWarnings[1]).toContain('[mapped with DMA_TO_DEVICE] [unmapped with DMA_BIDIRECTIONAL]');
    // DMA_ATTR_SKIP_CPU_SYNC: no copy, so no overflow warning; the size still differs.
    expect(out[5]).toMatchObject({ id: 's', ok: true });
    expect((out[5]!.warnings as { source: string }[]).map((w) => w.source)).toEqual(['dma-debug']);
    expect(out[6]).toMatchObject({ used: 0 });
    expect(out[7]).toMatchObject({ id: 'all', ok: true, slots: 128 });
  });

  it('names the line and the problem for malformed input, and goes on', () => {
    const out = replay([
      'not json',
      '[1,2]',
      '{"op":"fly"}',
      '{"op":"map","id":"a","orig":"0x1234","size":10}',
      '{"op":"map","id":"a","orig":"zz","size":10,"dir":"to_device"}',
      '{"op":"map","id":"a","orig":"0x10","size":-4,"dir":"to_device"}',
      '',
      '{"op":"map","id":"a","orig":"0x10","size":4,"dir":"to_device"}',
      '{"op":"map","id":"a","orig":"0x10","size":4,"dir":"to_device"}',
    ]);
    expect(out).toHaveLength(8); // the blank line gives no output
    for (const [i, line] of [1, 2, 3, 4, 5, 6].entries()) {
      expect(out[i]).toMatchObject({ line, ok: false, code: 'REPLAY_BAD_LINE' });
      expect(String(out[i]!.error)).toMatch(new RegExp(`^line ${line}: `));
    }
    expect(String(out[3]!.error)).toContain('"dir"');
    expect(String(out[4]!.error)).toContain('"orig"');
    expect(String(out[5]!.error)).toContain('"size"');
    expect(out[6]).toMatchObject({ id: 'a', ok: true });
    expect(out[7]).toMatchObject({ line: 9, id: 'a', code: 'REPLAY_BAD_LINE' });
  });

  it('warns of an overflow past the alloc_size the map stored, not the mapping size', () => {
    // 6.1's alloc_size and 6.10's alloc_align_mask padding both give swiotlb_bounce() more room.
    const k61 = new ReplayEngine({ pool: { slots: 256, areas: 1 }, kernel: '6.1' });
    k61.handle(
      '{"op":"map","id":"a","orig":"0x0","size":4096,"alloc_size":8192,"dir":"from_device"}',
      1,
    );
    const a = k61.handle('{"op":"unmap","id":"a","size":8000}', 2)!;
    expect((a.warnings as { source: string }[]).map((w) => w.source)).toEqual(['dma-debug']);
    const k610 = new ReplayEngine({ pool: { slots: 256, areas: 1 } });
    k610.handle(
      '{"op":"map","id":"p","orig":"0x0","size":100,"alloc_align_mask":4095,"dir":"from_device"}',
      1,
    );
    const p = k610.handle('{"op":"unmap","id":"p","size":5000}', 2)!;
    expect((p.warnings as { message: string }[])[0]!.message).toBe(
      'Buffer overflow detected. Allocation size: 4096. Mapping size: 5000.',
    );
  });

  it("6.1: a sync starting below the mapping's in-slot offset in a later slot warns as 6.1 does", () => {
    const lines = [
      '{"op":"map","id":"a","orig":"0x10100","size":8192,"min_align_mask":4095,"dir":"bidirectional"}',
      '{"op":"sync_for_cpu","id":"a","offset":1800,"size":100}',
    ];
    const k61 = new ReplayEngine({ pool: { slots: 256, areas: 1 }, kernel: '6.1' });
    const out61 = lines.map((l, i) => k61.handle(l, i + 1)!);
    expect(out61[1]).toEqual({
      id: 'a',
      ok: true,
      warnings: [
        {
          source: 'swiotlb',
          message: 'Access before mapping start detected. orig offset 256, requested offset 8.',
        },
      ],
    });
    const k610 = new ReplayEngine({ pool: { slots: 256, areas: 1 } });
    const out610 = lines.map((l, i) => k610.handle(l, i + 1)!);
    expect(out610[1]).toEqual({ id: 'a', ok: true });
  });

  it('syncs partial ranges, warns as the kernel does for ranges past the end, refuses offsets past it', () => {
    const out = replay([
      '{"op":"map","id":"a","orig":"0x4000","size":3000,"dir":"bidirectional"}',
      '{"op":"sync_for_cpu","id":"a","offset":1000,"size":100}',
      '{"op":"sync_for_device","id":"a","offset":2990,"size":100}',
      '{"op":"sync_for_device","id":"a","offset":3000,"size":1}',
      '{"op":"map","id":"t","orig":"0x0","size":4096,"dir":"to_device"}',
      '{"op":"sync_for_cpu","id":"t","dir":"from_device"}',
      '{"op":"sync_for_cpu","id":"t"}',
    ]);
    expect(out[1]).toEqual({ id: 'a', ok: true });
    // swiotlb_bounce() at 2990: the second slot's alloc_size (952) less its offset (942).
    expect(out[2]).toMatchObject({ id: 'a', ok: true });
    const messages = (out[2]!.warnings as { message: string }[]).map((w) => w.message);
    expect(messages[0]).toBe('Buffer overflow detected. Allocation size: 10. Mapping size: 100.');
    expect(messages[1]).toMatch(
      /^DMA-API: device driver tries to sync DMA memory it has not allocated \[device address=0x0000000000000bae\] \[size=100 bytes\]$/,
    );
    expect(out[3]).toMatchObject({ id: 'a', ok: false, code: 'SWIOTLB_BUFFER_OVERFLOW' });
    expect(String(out[3]!.error)).toContain('past the mapping');
    const t = (out[5]!.warnings as { message: string }[]).map((w) => w.message);
    expect(t).toHaveLength(2);
    expect(t[0]).toContain('syncs DMA memory with different direction');
    expect(t[1]).toContain('syncs device read-only DMA memory for cpu');
    // Its own direction for the CPU: the kernel copies nothing and reports nothing.
    expect(out[6]).toEqual({ id: 't', ok: true });
  });
});

describe('ReplayEngine: coherent allocations, kernels, calls', () => {
  it('answers alloc and free like map lines, and keeps ids of the two kinds apart', () => {
    const out = replay([
      '{"op":"map","id":"a","orig":"0x0","size":2048,"dir":"to_device"}',
      '{"op":"alloc","id":"q","size":6784}',
      '{"op":"unmap","id":"q"}',
      '{"op":"free","id":"a"}',
      '{"op":"alloc","id":"a","size":10}',
      '{"op":"free","id":"q"}',
      '{"op":"free","id":"q"}',
    ]);
    // 6784 -> PAGE_ALIGN 8192, order 1: 8 KiB aligned from the cursor (1): slot 4.
    expect(out[1]).toEqual({ id: 'q', ok: true, tlb_addr: '0x2000', slots: 4 });
    expect(out[2]).toMatchObject({ id: 'q', ok: false, code: 'SWIOTLB_NOT_MAPPED' });
    expect(String(out[2]!.error)).toContain('coherent allocation');
    expect(out[3]).toMatchObject({ id: 'a', ok: false, code: 'SWIOTLB_NOT_MAPPED' });
    expect(out[4]).toMatchObject({ line: 5, id: 'a', code: 'REPLAY_BAD_LINE' });
    expect(out[5]).toEqual({ id: 'q', ok: true });
    expect(out[6]).toMatchObject({ id: 'q', ok: false, code: 'SWIOTLB_NOT_MAPPED' });
  });

  it('places by the chosen kernel, with its alloc_size, and says when 6.1 would hang', () => {
    const line =
      '{"op":"map","id":"b","orig":"0x1a34","size":100,"dir":"to_device","min_align_mask":4095,"alloc_align_mask":4095}';
    const at = (kernel: '6.1' | '6.6' | '6.10') =>
      new ReplayEngine({ pool: { slots: 256, areas: 1 }, kernel }).handle(line, 1);
    expect(at('6.10')).toEqual({ id: 'b', ok: true, tlb_addr: '0xa34', slots: 2 });
    expect(at('6.1')).toEqual({ id: 'b', ok: true, tlb_addr: '0x234', slots: 1 });
    // A trace parser's calls: start area, min_align_mask, kernel -> address or code.
    const e = new ReplayEngine({ pool: { restricted: true, size: 128 * 2048 }, kernel: '6.1' });
    for (let i = 0; i < 128; i++) {
      expect(e.map(`m${i}`, { orig: 0x100_0000 + i * 2048, size: 2048, dir: 1 }).ok).toBe(true);
    }
    for (let i = 0; i < 128; i += 2) expect(e.unmap(`m${i}`).ok).toBe(true);
    expect(e.map('x', { orig: 0, size: 2048, dir: 1 })).toEqual({ ok: true, tlbAddr: 0, slots: 1 });
    expect(e.map('nvme', { orig: 0x1a34, size: 4096, dir: 1, minAlignMask: 4095 })).toMatchObject({
      ok: false,
      code: 'SWIOTLB_KERNEL_WOULD_HANG',
    });
    expect(e.stats().map_failures.kernel_defect).toBe(1);
  });

  it('starts in the area of the CPU a trace names (cpu & (nareas - 1))', () => {
    const e = new ReplayEngine({ pool: { slots: 1024, areas: 4 } });
    // 4 areas of 256 slots: CPU 5 -> area 1, whose first slot is 256 (0x80000).
    expect(e.map('a', { orig: 0, size: 2048, dir: 1, cpu: 5 })).toMatchObject({ tlbAddr: 0x80000 });
    expect(e.handle('{"op":"alloc","id":"q","size":4096,"cpu":7}', 2)).toEqual({
      id: 'q',
      ok: true,
      tlb_addr: '0x180000',
      slots: 2,
    });
  });
});

describe("replay --placement warm (not the kernel's)", () => {
  const lines = [
    '{"op":"map","id":"a","orig":"0x10000","size":65536,"dir":"to_device"}',
    '{"op":"map","id":"b","orig":"0x20000","size":65536,"dir":"to_device"}',
    '{"op":"unmap","id":"a"}',
    '{"op":"map","id":"c","orig":"0x30000","size":65536,"dir":"to_device"}',
  ];

  it('a map after an unmap takes the freed slots, where the kernel moves on', () => {
    const run = (placement: 'linux' | 'warm') => {
      const r = new ReplayEngine({ pool: { slots: 1024, areas: 1 }, placement });
      expect(r.placement).toBe(placement);
      return lines.map((l, i) => r.handle(l, i + 1));
    };
    expect(run('linux')[3]).toEqual({ id: 'c', ok: true, tlb_addr: '0x20000', slots: 32 });
    expect(run('warm')[3]).toEqual({ id: 'c', ok: true, tlb_addr: '0x0', slots: 32 });
    // A growable pool passes it to its pools.
    const dyn = new ReplayEngine({
      pool: { slots: 1024, areas: 1 },
      placement: 'warm',
      dynamic: true,
    });
    expect(lines.map((l, i) => dyn.handle(l, i + 1))[3]).toMatchObject({ tlb_addr: '0x0' });
  });

  it('the command says so on stderr, and refuses a placement it does not know', () => {
    const r = runCli(
      ['replay', '--slots', '1024', '--areas', '1', '--placement', 'warm', '-'],
      `${lines.join('\n')}\n`,
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n')[3]!)).toMatchObject({ tlb_addr: '0x0' });
    expect(r.stderr).toContain(
      "warm placement (recently freed slots first: not the kernel's next-fit)",
    );
    const bad = runCli(['replay', '--placement', 'lifo']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--placement "lifo": must be linux or warm');
  });
});

describe('replay command (process)', () => {
  // Each test's temporary folders, removed after it whether it passed or failed.
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('reads a file, writes one JSON line per input line, and logs the rounding on stderr', () => {
    const dir = mkdtempSync(join(tmpdir(), 'replay-'));
    dirs.push(dir);
    const file = join(dir, 'trace.jsonl');
    writeFileSync(
      file,
      [
        '{"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device","min_align_mask":4095}',
        '{"op":"stats"}',
        'oops',
      ].join('\n'),
    );
    const r = runCli(['replay', '--slots', '300', '--areas', '3', '--base', '0x80000000', file]);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({ id: 'a', ok: true, tlb_addr: '0x80000234', slots: 1 });
    expect(lines[1]).toMatchObject({ nslabs: 512, used: 1 });
    expect(lines[2]).toMatchObject({ line: 3, code: 'REPLAY_BAD_LINE' });
    // swiotlb=300,3: ALIGN(300, 128) = 384 < 128 x 4 areas -> 512 (1 MiB).
    expect(r.stderr).toContain('software IO TLB: area num 4.\n');
    expect(r.stderr).toContain('software IO TLB: SWIOTLB bounce buffer size roundup to 1MB\n');
    expect(r.stderr).toContain(
      'software IO TLB: mapped [mem 0x0000000080000000-0x0000000080100000] (1MB)\n',
    );
  });

  it('declares a restricted pool and a kernel, and refuses what the kernel has no words for', () => {
    const r = runCli(
      ['replay', '--restricted', '400KiB', '--base', '0x90000000', '--kernel', '6.1', '-'],
      '{"op":"stats"}\n',
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ nslabs: 200, areas: [{ used: 0 }] });
    expect(r.stderr).toContain(
      'software IO TLB: Reserved memory: created restricted DMA pool at 0x0000000090000000, size 0 MiB\n',
    );
    expect(r.stderr).toContain('Linux 6.1 rules');
    const both = runCli(['replay', '--restricted', '1MiB', '--slots', '512']);
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('--slots does not apply');
    const dyn = runCli(['replay', '--dynamic', '--kernel', '6.1']);
    expect(dyn.status).toBe(2);
    expect(dyn.stderr).toContain('6.1 has no CONFIG_SWIOTLB_DYNAMIC');
  });

  it('reads stdin with "-" and refuses bad flags with exit 2', () => {
    const ok = runCli(['replay', '--pool-size', '1MiB', '-'], '{"op":"stats"}\n');
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ nslabs: 512 });
    const bad = runCli(['replay', '--pool-size', 'lots']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--pool-size: "lots" is not a size');
    const unknown = runCli(['replay', '--frobnicate']);
    expect(unknown.status).toBe(2);
    const missing = runCli(['replay', '/nonexistent/trace.jsonl']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('cannot read');
  });
});

describe('replay input: fields an op does not take, numbers given as strings', () => {
  /** Every field each op takes, as the message lists them. */
  const TAKES = {
    map: 'op, id, orig, size, dir, min_align_mask, alloc_align_mask, alloc_size, area, cpu, attrs',
    unmap: 'op, id, size, dir, attrs',
    sync_for_device: 'op, id, offset, size, dir',
    sync_for_cpu: 'op, id, offset, size, dir',
    alloc: 'op, id, size, area, cpu, min_align_mask',
    free: 'op, id',
    stats: 'op',
    reset_hiwater: 'op',
  } as const;

  it('refuses a misspelt field with the line number, the field and what the op takes, and goes on', () => {
    const out = replay([
      '{"op":"map","id":"a","orig":"0x1a34","size":100,"dir":"to_device","min_allign_mask":4095}',
      '{"op":"map","id":"a","orig":"0x1a34","size":100,"dir":"to_device","min_align_mask":4095}',
      '{"op":"stats"}',
    ]);
    expect(out[0]).toEqual({
      line: 1,
      id: 'a',
      ok: false,
      code: 'REPLAY_BAD_LINE',
      error: `line 1: unknown field "min_allign_mask"; op "map" takes ${TAKES.map}`,
    });
    // Nothing was placed for line 1: the id is free, and one slot is used.
    expect(out[1]).toEqual({ id: 'a', ok: true, tlb_addr: '0xa34', slots: 1 });
    expect(out[2]).toMatchObject({ used: 1 });
  });

  it.each([
    [
      'map',
      '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","sz":8,"flags":1}',
      ['sz', 'flags'],
    ],
    ['alloc', '{"op":"alloc","id":"q","size":4096,"dir":"to_device"}', ['dir']],
    ['alloc', '{"op":"alloc","id":"q","size":4096,"alloc_align_mask":4095}', ['alloc_align_mask']],
    ['unmap', '{"op":"unmap","id":"a","offset":0}', ['offset']],
    ['unmap', '{"op":"unmap","id":"nope","sise":10}', ['sise']],
    ['free', '{"op":"free","id":"a","size":10}', ['size']],
    ['sync_for_device', '{"op":"sync_for_device","id":"a","attrs":32}', ['attrs']],
    ['sync_for_cpu', '{"op":"sync_for_cpu","id":"a","ofset":8}', ['ofset']],
    ['stats', '{"op":"stats","id":"s"}', ['id']],
    ['reset_hiwater', '{"op":"reset_hiwater","all":true}', ['all']],
  ] as const)('%s: refuses %s', (op, line, unknown) => {
    const e = new ReplayEngine({ pool: { slots: 256, areas: 1 } });
    e.handle('{"op":"map","id":"a","orig":"0x0","size":100,"dir":"to_device"}', 1);
    const out = e.handle(line, 2);
    const names = unknown.map((f) => `"${f}"`).join(', ');
    expect(out).toMatchObject({ line: 2, ok: false, code: 'REPLAY_BAD_LINE' });
    expect(out!.error).toBe(
      `line 2: unknown field${unknown.length > 1 ? 's' : ''} ${names}; op "${op}" takes ${TAKES[op]}`,
    );
    // The line did nothing: "a" is still mapped, nothing else is.
    expect(e.liveIds()).toEqual(['a']);
  });

  it('takes every input line docs/cli.md shows', () => {
    const doc = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## `replay`'), doc.indexOf('### `replay --trace`'));
    const inputs = [...section.matchAll(/^\| `(\{[^`]*\})`/gm)].map((m) => m[1]!);
    const examples = [...section.matchAll(/^ {2}'(\{.*\})' \\$/gm)].map((m) => m[1]!);
    expect(inputs.length).toBeGreaterThanOrEqual(7);
    expect(examples.length).toBeGreaterThanOrEqual(1);
    const out = replay([...inputs, ...examples]);
    expect(out.filter((o) => o.code === 'REPLAY_BAD_LINE')).toEqual([]);
  });

  it.each([
    ['map', 'size', '{"op":"map","id":"m","orig":"0x0","size":"100","dir":"to_device"}'],
    [
      'map',
      'min_align_mask',
      '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","min_align_mask":"4095"}',
    ],
    [
      'map',
      'alloc_align_mask',
      '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","alloc_align_mask":"0"}',
    ],
    [
      'map',
      'alloc_size',
      '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","alloc_size":"8"}',
    ],
    ['map', 'area', '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","area":"0"}'],
    ['map', 'cpu', '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","cpu":"1"}'],
    ['map', 'attrs', '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","attrs":"32"}'],
    ['alloc', 'size', '{"op":"alloc","id":"q","size":"4096"}'],
    ['alloc', 'area', '{"op":"alloc","id":"q","size":4096,"area":"0"}'],
    ['alloc', 'cpu', '{"op":"alloc","id":"q","size":4096,"cpu":"0"}'],
    ['alloc', 'min_align_mask', '{"op":"alloc","id":"q","size":4096,"min_align_mask":"0"}'],
    ['unmap', 'size', '{"op":"unmap","id":"a","size":"100"}'],
    ['unmap', 'attrs', '{"op":"unmap","id":"a","attrs":"32"}'],
    ['unmap (an id not mapped)', 'size', '{"op":"unmap","id":"nope","size":"100"}'],
    ['sync_for_device', 'offset', '{"op":"sync_for_device","id":"a","offset":"0"}'],
    ['sync_for_cpu', 'size', '{"op":"sync_for_cpu","id":"a","size":"10"}'],
    ['sync_for_cpu (an id not mapped)', 'offset', '{"op":"sync_for_cpu","id":"nope","offset":"0"}'],
  ])('%s: refuses "%s" given as a string', (_op, field, line) => {
    const e = new ReplayEngine({ pool: { slots: 256, areas: 1 } });
    e.handle('{"op":"map","id":"a","orig":"0x0","size":100,"dir":"to_device"}', 1);
    const out = e.handle(line, 2);
    expect(out).toMatchObject({ line: 2, ok: false, code: 'REPLAY_BAD_LINE' });
    expect(out!.error).toMatch(
      new RegExp(`^line 2: "${field}" must be a JSON number, not a string`),
    );
    expect(e.liveIds()).toEqual(['a']);
  });

  it('says what to write for a hex string where a number goes', () => {
    const out = replay([
      '{"op":"map","id":"m","orig":"0x0","size":8,"dir":"to_device","min_align_mask":"0xfff"}',
    ]);
    expect(out[0]!.error).toBe(
      'line 1: "min_align_mask" must be a JSON number, not a string: got "0xfff" (write 4095)',
    );
  });

  it('takes orig as a hex string or a number, and refuses a string that could be either', () => {
    const out = replay([
      '{"op":"map","id":"hex","orig":"0x1a34","size":100,"dir":"to_device","min_align_mask":4095}',
      '{"op":"map","id":"num","orig":6708,"size":100,"dir":"to_device","min_align_mask":4095}',
      '{"op":"map","id":"dec","orig":"6708","size":100,"dir":"to_device","min_align_mask":4095}',
      '{"op":"map","id":"bare","orig":"1a34","size":100,"dir":"to_device"}',
    ]);
    expect(out[0]).toMatchObject({ ok: true, tlb_addr: '0xa34' });
    expect(out[1]).toMatchObject({ ok: true, tlb_addr: '0x1a34' });
    expect(out[2]).toMatchObject({ line: 3, id: 'dec', code: 'REPLAY_BAD_LINE' });
    expect(out[2]!.error).toBe(
      'line 3: "orig" must be a hex string like "0x1234" or a JSON number: "6708" has no 0x (write "0x6708" or 6708)',
    );
    expect(out[3]).toMatchObject({ line: 4, id: 'bare', code: 'REPLAY_BAD_LINE' });
    expect(String(out[3]!.error)).toContain('"orig"');
  });
});

describe('replay input: blank lines', () => {
  it('skips empty and whitespace-only lines, which still count in the line numbers', () => {
    const r = runCli(
      ['replay', '--slots', '256', '--areas', '1', '-'],
      [
        '{"op":"map","id":"a","orig":"0x0","size":100,"dir":"to_device"}',
        '',
        ' \t ',
        '{"op":"map","id":"a","orig":"0x0","size":100,"dir":"to_device"}',
        '{"op":"stats"}',
      ].join('\n'),
    );
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ id: 'a', ok: true });
    expect(lines[1]).toMatchObject({ line: 4, id: 'a', code: 'REPLAY_BAD_LINE' });
    expect(lines[2]).toMatchObject({ used: 1 });
  });

  it('--help and docs/cli.md say so', () => {
    const doc = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## `replay`'), doc.indexOf('### `replay --trace`'));
    expect(section.replace(/\s+/g, ' ')).toContain(
      'Blank lines (empty or only whitespace) are skipped: they print nothing',
    );
    expect(REPLAY_HELP.replace(/\s+/g, ' ')).toContain('blank lines are skipped');
  });
});

describe('replay: two flags for the pool size', () => {
  /** The one stderr line of a usage error. */
  function usage(args: string[]): string {
    const r = runCli(args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    return lines[0]!;
  }

  it.each([
    [['--slots', '1024', '--pool-size', '4m']],
    [['--pool-size', '4MiB', '--slots', '1024', '--areas', '2']],
  ])('refuses %j, naming both', (flags) => {
    expect(usage(['replay', ...flags, '-'])).toBe(
      "swiotlb-mediator replay: --slots and --pool-size both give the pool's size: give one (--slots N is swiotlb=N, --pool-size SIZE the size an architecture sets) (--help lists the options)",
    );
  });

  it('a pool the flags ask for that the kernel cannot build is a usage error too', () => {
    expect(usage(['replay', '--slots', '99999999999', '-'])).toBe(
      'swiotlb-mediator replay: the pool of the flags: pool of 137438953472 slots exceeds the limit of 524288 slots (1 GiB) (--help lists the options)',
    );
    expect(usage(['replay', '--base', '0x123', '-'])).toMatch(
      /^swiotlb-mediator replay: the pool of the flags: base address 291 /,
    );
  });

  it('still takes --pool-size with --areas', () => {
    const r = runCli(['replay', '--pool-size', '4MiB', '--areas', '2', '-'], '{"op":"stats"}\n');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ nslabs: 2048, areas: [{}, {}] });
  });

  it.each([
    [['--restricted', '1MiB', '--base', '0x0', '--slots', '512'], '--slots'],
    [['--restricted', 'log', '--slots', '512'], '--slots'],
    [['--restricted', '1MiB', '--base', '0x0', '--areas', '1'], '--areas'],
  ])('replay --trace refuses %j', (flags, other) => {
    const restricted = flags[1] === 'log' ? 'log' : 'SIZE';
    expect(usage(['replay', '--trace', '-', ...flags])).toBe(
      `swiotlb-mediator replay: --restricted ${restricted} replays a restricted-dma-pool: ${other} does not apply to it (--help lists the options)`,
    );
  });

  it('size --trace and bench --trace refuse the same pairs (their pool flags are the same code)', () => {
    expect(usage(['size', '--trace', '-', '--restricted', 'log', '--pool-areas', '2'])).toBe(
      'swiotlb-mediator size: --restricted log replays a restricted-dma-pool: --pool-areas does not apply to it (--help lists the options)',
    );
    expect(usage(['bench', '--trace', '-', '--restricted', '1MiB', '--slots', '512'])).toBe(
      'swiotlb-mediator bench: --restricted SIZE replays a restricted-dma-pool: --slots does not apply to it (--help lists the options)',
    );
  });
});
