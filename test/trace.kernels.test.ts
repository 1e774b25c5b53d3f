/**
 * The trace replay on the kernel profiles: which profile a traced kernel gets,
 * the pool built with the kernel's exact geometry (default and restricted pools,
 * from the boot log), 6.1's endless search, CONFIG_SWIOTLB_DYNAMIC, and traces
 * generated under each profile replayed under each.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import { DmaDirection as D, IO_TLB_SIZE } from '../src/swiotlb/constants.js';
import { computeGeometry } from '../src/swiotlb/geometry.js';
import type { KernelVersion } from '../src/swiotlb/kernel.js';
import { mulberry32 } from '../src/util/prng.js';
import { parseBootLog } from '../src/workload/trace/boot-log.js';
import {
  chooseProfile,
  parseKernelVersion,
  profileFor,
} from '../src/workload/trace/kernel-version.js';
import { kernelPlacement } from '../src/workload/trace/placement.js';
import type { TraceReport } from '../src/workload/trace/report-types.js';
import { resolveKernel, runTraceReplay, type TraceRunOptions } from '../src/workload/trace/run.js';
import { type GenEvent, KernelSim, type Mapping, render, simBootLog } from './helpers/trace-gen.js';
import { TRACEFS } from './helpers/trace-run.js';

function replay(
  text: string,
  dmesg: string | undefined,
  opts: Partial<TraceRunOptions> = {},
): Promise<TraceReport> {
  return runTraceReplay({
    trace: Readable.from([text]),
    traceName: 'trace.txt',
    ...(dmesg === undefined ? {} : { bootLog: { input: Readable.from([dmesg]), name: 'dmesg' } }),
    ...opts,
  });
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

const pa = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;

describe('which profile a traced kernel follows', () => {
  it('reads versions: releases, distribution ABI names (patch unknown), rc tags', () => {
    expect(parseKernelVersion('6.6.30')).toEqual({ text: '6.6.30', major: 6, minor: 6, patch: 30 });
    expect(parseKernelVersion('6.12')).toMatchObject({ major: 6, minor: 12, patch: 0 });
    expect(parseKernelVersion('v6.13-rc2')).toMatchObject({ major: 6, minor: 13, patch: 0 });
    // Debian's and Ubuntu's x.y.0-N: some stable release of the line, not x.y.0.
    expect(parseKernelVersion('6.1.0-27-amd64')).toMatchObject({ minor: 1, patch: undefined });
    expect(parseKernelVersion('6.8.0-45-generic')).toMatchObject({ minor: 8, patch: undefined });
    expect(parseKernelVersion('6.6.30-2-lts')).toMatchObject({ minor: 6, patch: 30 });
    expect(parseKernelVersion('latest')).toBeUndefined();
  });

  it('6.1.y -> 6.1, 6.6.y -> 6.6, 6.10 and later -> 6.10; older stable releases get a note', () => {
    const profile = (v: string) => profileFor(parseKernelVersion(v)!);
    expect(profile('6.1.115')).toEqual({ profile: '6.1', notes: [] });
    expect(profile('6.1.0-27-amd64')).toEqual({ profile: '6.1', notes: [] });
    expect(profile('6.1.50')!.notes.join()).toMatch(/predates 6\.1\.84/);
    expect(profile('6.6.60')).toEqual({ profile: '6.6', notes: [] });
    expect(profile('6.6.20')!.notes.join()).toMatch(/6\.6\.0-6\.6\.23 had none of them/);
    expect(profile('6.6.30')!.notes.join()).toMatch(/this release lacks some of them/);
    for (const v of ['6.10', '6.10.14', '6.12.3', '6.19', '7.2.1', 'v6.13-rc2']) {
      expect(profile(v), v).toEqual({ profile: '6.10', notes: [] });
    }
    // The profile names read as their lines.
    expect(profile('6.1')!.profile).toBe('6.1');
    expect(profile('6.6')!.profile).toBe('6.6');
  });

  it('refuses 6.2-6.5, 6.7-6.9 and kernels before 6.1, naming the supported lines', () => {
    for (const v of ['6.2', '6.5.13', '6.7.1', '6.8.0-45-generic', '6.9.12', '5.15.170', '4.19']) {
      expect(profileFor(parseKernelVersion(v)!), v).toBeUndefined();
      expect(
        code(() => chooseProfile(v, { kind: 'flag' })),
        v,
      ).toMatch(
        /^CLI_USAGE: --kernel .*: no swiotlb profile for Linux \d+\.\d+; the modelled lines are 6\.1 \(6\.1\.y\), 6\.6 \(6\.6\.y\) and 6\.10 \(6\.10 and later\)/,
      );
    }
    expect(
      code(() => chooseProfile('6.8.12', { kind: 'boot-log', name: 'dmesg', line: 3 })),
    ).toMatch(/^TRACE_UNSUPPORTED_KERNEL: dmesg:3: Linux 6\.8\.12: .*--kernel 6\.1, 6\.6 or 6\.10/);
    expect(code(() => chooseProfile('latest', { kind: 'flag' }))).toMatch(
      /^CLI_USAGE: --kernel latest: not a kernel version/,
    );
  });

  it("takes the boot log's banner (Debian's stable release from it), the flag over it, 6.10 without either", () => {
    const log = parseBootLog(
      [
        '[    0.000000] Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)',
        '[    0.004000] software IO TLB: area num 2.',
      ].join('\n'),
    );
    expect(log.kernel).toEqual({ text: '6.1.115', line: 1 });
    const named = { log, name: 'dmesg' };
    expect(resolveKernel(undefined, named)).toEqual({
      profile: '6.1',
      text: '6.1.115',
      notes: ['Linux 6.1.115, from dmesg:1'],
    });
    const flag = resolveKernel('6.12.3', named);
    expect(flag).toMatchObject({ profile: '6.10', text: '6.12.3' });
    expect(flag.notes).toEqual(['dmesg:1 says Linux 6.1.115; --kernel 6.12.3 overrides it']);
    expect(resolveKernel(undefined, undefined)).toMatchObject({ profile: '6.10', text: undefined });
    const unsupported = parseBootLog(
      'Linux version 6.8.0-45-generic (buildd@lcy02) (gcc) #45-Ubuntu',
    );
    expect(code(() => resolveKernel(undefined, { log: unsupported, name: 'ubuntu.log' }))).toMatch(
      /^TRACE_UNSUPPORTED_KERNEL: ubuntu\.log:1: Linux 6\.8\.0-45-generic/,
    );
  });
});

describe("the kernel's exact geometry", () => {
  it('builds every swiotlb=N,A pool the kernel logs exactly, for every profile', async () => {
    // The pools of docs/kernels.md's worked cases, as their boot logs print them.
    const cases: [number, number, number, number][] = [
      [3000, 3, 4096, 4],
      [640, 8, 1024, 8],
      [10240, 2, 16384, 2],
      [32768, 16, 32768, 16],
      [0, 0, 128, 1],
    ];
    for (const [slots, areas, nslabs, nareas] of cases) {
      const g = computeGeometry({ slots, areas, base: 0x7c00_0000 });
      expect([g.nslabs, g.nareas]).toEqual([nslabs, nareas]);
      for (const kernel of ['6.1.115', '6.6.60', '6.12.3']) {
        const dmesg = simBootLog(g, kernel);
        const trace = `# tracer: nop\n   fio-1  [000] ..... 1.0: dma_map_page: vda dir=TO_DEVICE dma_addr=${(0x7c00_0000).toString(16)} size=512 phys_addr=7000 attrs=\n`;
        const r = await replay(trace, dmesg);
        expect(r.pool, `swiotlb=${slots},${areas} on ${kernel}`).toMatchObject({
          nslabs,
          nareas,
          area_nslabs: nslabs / nareas,
          exact: true,
        });
        expect(r.pool.notes.join('\n')).not.toMatch(/model's pool has/);
        expect(r.placements).toMatchObject({ agree: 1, disagree: 0 });
      }
    }
  });

  it('a halved pool: limit_nareas() on 6.6/6.10; 6.1.192 keeps all its areas, which no model pool can', async () => {
    // swiotlb=1024,8 whose memblock allocation failed once: 512 slots. 6.12's
    // swiotlb_init_remap() gives it limit_nareas(8, 512) = 4 areas; 6.1.192 passes
    // default_nareas (8 areas of 64 slots) to swiotlb_init_io_tlb_mem().
    const log = (release: string) =>
      [
        `[    0.000000] Linux version ${release} (b@h) (gcc) #1 SMP`,
        '[    0.004000] software IO TLB: area num 8.',
        '[    0.100000] software IO TLB: SWIOTLB bounce buffer size adjusted 1024 -> 512 slabs',
        `[    0.100001] software IO TLB: mapped [mem ${pa(0x4000_0000)}-${pa(0x4010_0000)}] (1MB)`,
      ].join('\n');
    const trace = `# tracer: nop\n   fio-1  [000] ..... 1.0: dma_map_page: vda dir=TO_DEVICE dma_addr=40000000 size=512 phys_addr=7000 attrs=\n`;
    const r610 = await replay(trace, log('6.12.3'));
    expect(r610.pool).toMatchObject({ nslabs: 512, nareas: 4, exact: true, profile: '6.10' });
    expect(r610.pool.notes.join('\n')).toMatch(
      /area num 8 limited to 4 \(line 3: halved from 1024 slots\)/,
    );
    const r61 = await replay(trace, log('6.1.115'));
    expect(r61.pool).toMatchObject({ nslabs: 512, nareas: 4, profile: '6.1' });
    expect(r61.pool.notes.join('\n')).toMatch(
      /6\.1\.192's swiotlb_init_remap\(\) passes default_nareas .* areas have 64 slots/,
    );
  });

  it('takes --slots/--areas as the kernel reports them; says so when no kernel builds them', () => {
    const exact = kernelPlacement({ base: 0, nslabs: 200, nareas: 1 });
    expect(exact.placement.geometry).toMatchObject({ nslabs: 200, nareas: 1, areaNslabs: 200 });
    expect(exact.notes).toEqual([]);
    const odd = kernelPlacement({ base: 0, nslabs: 3000, nareas: 3 });
    expect(odd.placement.geometry).toMatchObject({ nslabs: 4096, nareas: 4 });
    expect(odd.notes.join()).toMatch(/no kernel builds a default pool of 3000 slots in 3 areas/);
  });
});

describe('restricted pools from the boot log', () => {
  const base = 0x5000_0000;
  const restrictedLine = (mib: number, at = base) =>
    `[    0.000000] software IO TLB: Reserved memory: created restricted DMA pool at ${pa(at)}, size ${mib} MiB`;
  const ofLine = (bytes: number, at = base) =>
    `[    0.000000] OF: reserved mem: ${pa(at)}..${pa(at + bytes - 1)} (${bytes / 1024} KiB) map non-reusable restricted-dma-pool@${at.toString(16)}`;

  /** A 6.10 restricted pool of 200 slots: 100 slots, then the 72 of the partial last segment. */
  function partialSegmentTrace(kernel: KernelVersion): { text: string; sim: KernelSim } {
    const sim = new KernelSim({ base, slots: 0, areas: 1, restricted: 400 * 1024 }, { kernel });
    const a = sim.map('vda', 0, 0x10_0000, 100 * IO_TLB_SIZE, D.TO_DEVICE);
    const b = sim.map('vda', 0, 0x20_0000, 72 * IO_TLB_SIZE, D.TO_DEVICE);
    expect([a.placed, b.placed]).toEqual([base, base + 128 * IO_TLB_SIZE]);
    const events: GenEvent[] = [
      { t: 'map', cpu: 0, m: a },
      { t: 'map', cpu: 0, m: b },
      { t: 'unmap', cpu: 0, m: a },
      { t: 'unmap', cpu: 0, m: b },
    ];
    return { text: render(events, TRACEFS).text, sim };
  }

  it('exact from the OF reserved-memory line; its last segment partial (200 slots)', async () => {
    const { text } = partialSegmentTrace('6.10');
    const dmesg = [ofLine(400 * 1024), restrictedLine(0)].join('\n');
    const r = await replay(text, dmesg, { kernel: '6.12' });
    expect(r.pool).toMatchObject({ nslabs: 200, nareas: 1, restricted: true, exact: true });
    expect(r.pool.rules).toMatch(/restricted pool: one area, exact size/);
    expect(r.placements).toMatchObject({ agree: 2, disagree: 0 });
  });

  it('the swiotlb line alone gives whole MiB (rounded down): used, and said; 0 MiB needs --restricted', async () => {
    const { text } = partialSegmentTrace('6.10');
    const r = await replay(text, [restrictedLine(1)].join('\n'));
    expect(r.pool).toMatchObject({ nslabs: 512, restricted: true, exact: true });
    expect(r.pool.notes.join('\n')).toMatch(
      /"size 1 MiB", which rmem_swiotlb_setup\(\) rounds down/,
    );
    await expect(replay(text, restrictedLine(0))).rejects.toThrow(
      /prints "size 0 MiB" \(rounded down\) and no "OF: reserved mem" line gives its size: pass --restricted SIZE/,
    );
    // --restricted SIZE with the log's base: exact.
    const sized = await replay(text, restrictedLine(0), {
      pool: { restrictedBytes: 400 * 1024 },
    });
    expect(sized.pool).toMatchObject({ nslabs: 200, base: '0x50000000' });
    expect(sized.placements).toMatchObject({ agree: 2, disagree: 0 });
  });

  it('--restricted log picks the restricted pool over the default one; --base picks among several', async () => {
    const { text } = partialSegmentTrace('6.10');
    const dmesg = [
      '[    0.004000] software IO TLB: area num 2.',
      `[    0.310000] software IO TLB: mapped [mem ${pa(0x7c00_0000)}-${pa(0x7c40_0000)}] (4MB)`,
      ofLine(400 * 1024),
      restrictedLine(0),
      ofLine(2 ** 20, 0x6000_0000),
      restrictedLine(1, 0x6000_0000),
    ].join('\n');
    const byDefault = await replay(text, dmesg);
    expect(byDefault.pool).toMatchObject({ nslabs: 2048, restricted: false });
    expect(byDefault.pool.notes.join('\n')).toMatch(
      /also has 2 restricted DMA pools .* --restricted log/,
    );
    expect(byDefault.maps.outside_pool).toBe(2);
    await expect(replay(text, dmesg, { pool: { restrictedFromLog: true } })).rejects.toThrow(
      /2 restricted DMA pools .*: choose one with --base ADDR/,
    );
    const picked = await replay(text, dmesg, { pool: { restrictedFromLog: true, base } });
    expect(picked.pool).toMatchObject({ nslabs: 200, restricted: true });
    expect(picked.placements).toMatchObject({ agree: 2, disagree: 0 });
  });

  it('6.1 would run a 73-slot map into the missing slots where 6.10 said "full": a disagreement', async () => {
    const sim = new KernelSim(
      { base, slots: 0, areas: 1, restricted: 400 * 1024 },
      { kernel: '6.10' },
    );
    const a = sim.map('vda', 0, 0x10_0000, 100 * IO_TLB_SIZE, D.TO_DEVICE);
    const b = sim.map('vda', 0, 0x20_0000, 73 * IO_TLB_SIZE, D.TO_DEVICE);
    expect(b.dmaAddr).toBe(-1); // 6.10: swiotlb buffer is full
    const text = render(
      [
        { t: 'map', cpu: 0, m: a },
        { t: 'bounced', cpu: 0, m: b },
        { t: 'map', cpu: 0, m: b },
      ],
      TRACEFS,
    ).text;
    const dmesg = [ofLine(400 * 1024), restrictedLine(0)].join('\n');
    const as610 = await replay(text, dmesg, { kernel: '6.12' });
    expect(as610.placements).toMatchObject({ agree: 2, disagree: 0 });
    const as61 = await replay(text, dmesg, { kernel: '6.1.115' });
    expect(as61.placements).toMatchObject({ agree: 1, disagree: 1 });
    expect(as61.model.kernel_overrun).toBe(1);
    expect(as61.placements.disagreements[0]).toMatchObject({
      kernel: 'failed',
      model: 'kernel_overrun',
    });
  });
});

describe("6.1's search that never ends", () => {
  const base = 0x5000_0000;
  const NVME = 0xfff;

  /**
   * One segment (a 256 KiB restricted pool): every odd slot mapped, the cursor at
   * 1; then an NVMe map of 4 KiB whose buffer has bit 11 set on CPU 1. 6.1's walk
   * starts at ALIGN(1, 4) = 4 and steps 5, 9, ... 129 -> 0, 1, 5 ...: never 4 again
   * (docs/kernels.md). 6.10 says "buffer is full".
   */
  function oddSlots(kernel: KernelVersion): { sim: KernelSim; events: GenEvent[]; nvme: Mapping } {
    const sim = new KernelSim(
      { base, slots: 0, areas: 1, restricted: 128 * IO_TLB_SIZE },
      { kernel },
    );
    const events: GenEvent[] = [];
    const maps: Mapping[] = [];
    for (let i = 0; i < 128; i++) {
      const m = sim.map('vda', 0, 0x100_0000 + i * 0x1000, IO_TLB_SIZE, D.TO_DEVICE);
      events.push({ t: 'map', cpu: 0, m });
      maps.push(m);
    }
    for (let i = 0; i < 128; i += 2) {
      sim.unmap(maps[i]!);
      events.push({ t: 'unmap', cpu: 0, m: maps[i]! });
    }
    const first = sim.map('vda', 0, 0x200_0000, IO_TLB_SIZE, D.TO_DEVICE);
    expect(first.placed).toBe(base); // the cursor moves to 1
    events.push({ t: 'map', cpu: 0, m: first });
    const nvme = sim.map('nvme0', 1, 0x1a34 | 0x30_0000, 4096, D.TO_DEVICE, { minAlignMask: NVME });
    return { sim, events, nvme };
  }
  const opts = (kernel: string): Partial<TraceRunOptions> => ({
    pool: { base, restrictedBytes: 128 * IO_TLB_SIZE },
    kernel,
    minAlignMask: { all: 0, byDevice: new Map([['nvme0', NVME]]) },
  });

  it('a traced map the 6.1 rules search for ever: the kernel returned from it, a disagreement', async () => {
    const { events, nvme } = oddSlots('6.10');
    expect(nvme.dmaAddr).toBe(-1); // 6.10: full
    events.push({ t: 'bounced', cpu: 1, m: nvme }, { t: 'map', cpu: 1, m: nvme });
    const { text, lineOf } = render(events, TRACEFS);
    const as610 = await replay(text, undefined, opts('6.12'));
    expect(as610.placements).toMatchObject({ agree: 130, disagree: 0 });
    expect(as610.maps.kernel_failed).toBe(1);
    const as61 = await replay(text, undefined, opts('6.1.115'));
    expect(as61.placements).toMatchObject({ agree: 129, disagree: 1 });
    expect(as61.model.kernel_hang).toBe(1);
    expect(as61.placements.disagreements).toEqual([
      expect.objectContaining({
        line: lineOf.get(events[events.length - 1]!),
        kernel: 'failed',
        model: 'kernel_hang',
        reason: expect.stringMatching(/never end this search .* the kernel returned from it/),
      }),
    ]);
  });

  it('a swiotlb_bounced with no map line, and nothing more from its CPU: the kernel hung there', async () => {
    const { sim, events, nvme } = oddSlots('6.1');
    expect(sim.hung).toEqual([nvme]); // the generating kernel never returned
    events.push({ t: 'bounced', cpu: 1, m: nvme });
    // CPU 0 goes on with a device that does not bounce.
    const eth = sim.map('eth0', 0, 0x9000_0000, 1500, D.TO_DEVICE, { bounce: false });
    events.push({ t: 'map', cpu: 0, m: eth }, { t: 'unmap', cpu: 0, m: eth });
    const { text, lineOf } = render(events, TRACEFS);
    const r = await replay(text, undefined, opts('6.1.115'));
    expect(r.kernel_hangs).toEqual([
      {
        line: lineOf.get(events[events.length - 3]!),
        device: 'nvme0',
        cpu: 1,
        size: 4096,
        phys: '0x301a34',
        kernel: 'hung',
      },
    ]);
    expect(r.placements).toMatchObject({ agree: 130, disagree: 0 });
    expect(r.model.kernel_hang).toBe(1);
    expect(r.hints.join('\n')).toMatch(/CPU 1 wrote nothing after it: the kernel hung there/);
    // Under 6.10's rules the same line is only a bounce without its map.
    const as610 = await replay(text, undefined, opts('6.12'));
    expect(as610.kernel_hangs).toEqual([]);
    expect(as610.maps.bounced_unmatched).toBe(1);
  });

  it('... and when that CPU went on writing events, the kernel did not hang: a disagreement', async () => {
    const { events, nvme } = oddSlots('6.1');
    events.push({ t: 'bounced', cpu: 1, m: nvme });
    // Any later line of that CPU is evidence, DMA or not (here a scheduler event).
    events.push({ t: 'other', cpu: 1, name: 'sched_switch', body: 'prev_comm=fio prev_pid=1' });
    const { text, lineOf } = render(events, TRACEFS);
    const r = await replay(text, undefined, opts('6.1.115'));
    expect(r.kernel_hangs).toEqual([
      expect.objectContaining({
        line: lineOf.get(events[events.length - 2]!),
        kernel: 'went on',
        next_line: lineOf.get(events[events.length - 1]!),
      }),
    ]);
    expect(r.placements.disagree).toBe(1);
    expect(r.placements.disagreements[0]).toMatchObject({
      kernel: 'no map line; the CPU went on',
      model: 'kernel_hang',
    });
  });
});

describe('CONFIG_SWIOTLB_DYNAMIC: maps outside the default pool', () => {
  const G = { base: 0x7c00_0000, slots: 128, areas: 1 };

  /**
   * A default pool of one segment; five 64 KiB maps on CPU 0 (32 slots each):
   * four fill it, the fifth gets a transient pool (and schedules a growth), the
   * sixth lands in the grown pool. `hidden` maps 32 slots before the trace.
   */
  function growing(kernel: KernelVersion, hidden: boolean) {
    const sim = new KernelSim(G, { kernel, dynamic: true });
    if (hidden) sim.map('vda', 0, 0x8000_0000, 65536, D.TO_DEVICE);
    const events: GenEvent[] = [];
    const maps: Mapping[] = [];
    const parts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const m = sim.map('vda', 0, 0x1_0000_0000 + i * 0x10_0000, 65536, D.FROM_DEVICE);
      events.push({ t: 'bounced', cpu: 0, m }, { t: 'map', cpu: 0, m });
      maps.push(m);
      parts.push(sim.dyn!.partOf(m.placed));
    }
    for (const m of maps) {
      sim.unmap(m);
      events.push({ t: 'unmap', cpu: 0, m });
    }
    return { parts, text: render(events, TRACEFS).text, dmesg: sim.bootLog('6.12.3') };
  }

  it('--dynamic: the kernel went outside where the model grew too (transient, then grown): counted apart', async () => {
    const { parts, text, dmesg } = growing('6.10', false);
    expect(parts).toEqual(['default', 'default', 'default', 'default', 'transient', 'growth']);
    const r = await replay(text, dmesg, { dynamic: true });
    expect(r.pool.dynamic).toBe(true);
    expect(r.placements).toMatchObject({ agree: 4, disagree: 0 });
    expect(r.maps).toMatchObject({ bounced: 4, outside_bounced: 2, outside_pool: 0, replayed: 6 });
    expect(r.dynamic).toMatchObject({
      kernel_outside: 2,
      both_outside: 2,
      model_in_pool: 0,
      model_failed: 0,
      kernel_outside_used_hiwater: 64,
      growths: 1,
      transient_nslabs: 0,
    });
    expect(r.unmaps.replayed).toBe(6);
    expect(r.model.used_end).toBe(0);
  });

  it('without --dynamic they are counted, not replayed, and the report says to add it', async () => {
    const { text, dmesg } = growing('6.10', false);
    const r = await replay(text, dmesg);
    expect(r.dynamic).toBeNull();
    expect(r.maps).toMatchObject({ bounced: 4, outside_bounced: 2, replayed: 4 });
    expect(r.hints.join('\n')).toMatch(
      /2 mappings that swiotlb_bounced announced went outside the pool: .*--dynamic/,
    );
  });

  it('a kernel that grew where the model had room (a mapping made before the trace): a disagreement', async () => {
    const { text, dmesg } = growing('6.6', true);
    const r = await replay(text, dmesg, { dynamic: true, kernel: '6.6.60' });
    expect(r.dynamic).toMatchObject({ kernel_outside: 3, model_in_pool: 1, both_outside: 2 });
    // The hidden mapping shifts the model's first placements; then the kernel grows where the model has room.
    expect(r.placements.disagreements.map((d) => d.reason)).toContainEqual(
      expect.stringMatching(/outside its default pool .* the model found room in the default pool/),
    );
  });

  it('refuses --dynamic on 6.1 and on a restricted pool', async () => {
    const { text, dmesg } = growing('6.10', false);
    await expect(replay(text, dmesg, { dynamic: true, kernel: '6.1.115' })).rejects.toThrow(
      /--dynamic: Linux 6\.1 has no CONFIG_SWIOTLB_DYNAMIC/,
    );
    await expect(
      replay(text, undefined, {
        dynamic: true,
        pool: { base: 0x5000_0000, restrictedBytes: 2 ** 20 },
      }),
    ).rejects.toThrow(/a restricted-dma-pool never grows/);
  });
});

describe('traces generated under each profile, replayed under each', () => {
  const G = { base: 0x7c00_0000, slots: 512, areas: 2 };
  const KERNELS = ['6.1', '6.6', '6.10'] as const;
  const RELEASE: Record<KernelVersion, string> = {
    '6.1': '6.1.115',
    '6.6': '6.6.60',
    '6.10': '6.12.3',
  };

  /**
   * One random sequence of maps (NVMe with min_align_mask 0xfff and odd offsets,
   * plain 2 KiB-4 KiB maps) and unmaps on two CPUs, run by three kernels side by
   * side; the trace is written from `gen`'s placements. Returns it with the index
   * of the first map the profiles place differently.
   */
  function scenario(gen: KernelVersion, seed: number) {
    const sims = Object.fromEntries(
      KERNELS.map((k) => [k, new KernelSim(G, { kernel: k })]),
    ) as Record<KernelVersion, KernelSim>;
    const rand = mulberry32(seed);
    const live: Record<KernelVersion, Mapping[]> = { '6.1': [], '6.6': [], '6.10': [] };
    const events: GenEvent[] = [];
    const firstDiff: Partial<Record<KernelVersion, GenEvent>> = {};
    let phys = 0x1_0000_0000;
    let bounced = 0;
    for (let i = 0; i < 200; i++) {
      const cpu = Math.floor(rand() * 2);
      if (rand() < 0.6 || live['6.1'].length === 0) {
        const nvme = rand() < 0.5;
        const size = nvme
          ? [4096, 8192, 512][Math.floor(rand() * 3)]!
          : [2048, 1500, 4096][Math.floor(rand() * 3)]!;
        const p = phys + (nvme ? Math.floor(rand() * 8) * 0x200 : 0);
        phys += 0x10000;
        const placed = {} as Record<KernelVersion, Mapping>;
        for (const k of KERNELS) {
          placed[k] = sims[k].map(nvme ? 'nvme0' : 'vda', cpu, p, size, D.TO_DEVICE, {
            minAlignMask: nvme ? 0xfff : 0,
          });
          live[k].push(placed[k]);
        }
        const m = placed[gen];
        if (m.placed >= 0) bounced++;
        events.push({ t: 'bounced', cpu, m });
        const ev: GenEvent = { t: 'map', cpu, m };
        events.push(ev);
        for (const k of KERNELS) if (placed[k].dmaAddr !== m.dmaAddr) firstDiff[k] ??= ev;
      } else {
        const j = Math.floor(rand() * live['6.1'].length);
        let m: Mapping | undefined;
        for (const k of KERNELS) {
          const x = live[k].splice(j, 1)[0]!;
          sims[k].unmap(x);
          if (k === gen) m = x;
        }
        if (m!.placed >= 0) events.push({ t: 'unmap', cpu, m: m! });
      }
    }
    expect(Object.values(sims).every((s) => s.hung.length === 0)).toBe(true);
    return { events, firstDiff, bounced, dmesg: sims[gen].bootLog(RELEASE[gen]) };
  }
  const masks = { all: 0, byDevice: new Map([['nvme0', 0xfff]]) };

  it('each profile agrees with the traces of its own kernel, in every placement', async () => {
    for (const gen of KERNELS) {
      const { events, bounced, dmesg } = scenario(gen, 3);
      // The boot log's banner selects the profile.
      const r = await replay(render(events, TRACEFS).text, dmesg, { minAlignMask: masks });
      expect(r.pool.profile, gen).toBe(gen);
      expect(r.placements, gen).toMatchObject({
        agree: bounced + r.maps.kernel_failed,
        disagree: 0,
      });
      expect(bounced).toBeGreaterThan(50);
    }
  });

  it('6.1 disagrees with a 6.10 trace (and 6.10 with a 6.1 trace) first where their rules differ', async () => {
    for (const [gen, other] of [
      ['6.10', '6.1'],
      ['6.1', '6.10'],
    ] as const) {
      const { events, firstDiff, dmesg } = scenario(gen, 3);
      const diff = firstDiff[other];
      expect(diff, `${gen} vs ${other}`).toBeDefined();
      const { text, lineOf } = render(events, TRACEFS);
      const r = await replay(text, dmesg, { minAlignMask: masks, kernel: RELEASE[other] });
      expect(r.pool.profile).toBe(other);
      expect(r.placements.disagree, `${gen} traced, ${other} replayed`).toBeGreaterThan(0);
      expect(r.placements.first_disagreement_line).toBe(lineOf.get(diff!));
    }
  });

  it('6.6 and 6.10 place these dma-direct maps alike: no disagreement across them', async () => {
    const { events, firstDiff, dmesg } = scenario('6.6', 3);
    expect(firstDiff['6.10']).toBeUndefined();
    const r = await replay(render(events, TRACEFS).text, dmesg, {
      minAlignMask: masks,
      kernel: '6.12',
    });
    expect(r.placements.disagree).toBe(0);
  });

  it('hand-worked: 6.1 starts an NVMe page map at ALIGN(index, 4), 6.10 at the cursor', async () => {
    // docs/kernels.md: after a 2 KiB map (cursor 1) a 4 KiB NVMe map of 0x1a34:
    // 6.1 -> 0x2a34 (slot 5), 6.6/6.10 -> 0xa34 (slot 1), from a pool at 0.
    const trace = (nvmeAt: number) =>
      [
        '# tracer: nop',
        '   fio-1  [000] ..... 1.000000: dma_map_page: vda dir=TO_DEVICE dma_addr=0 size=2048 phys_addr=100000 attrs=',
        `   fio-1  [000] ..... 1.000001: dma_map_page: nvme0 dir=TO_DEVICE dma_addr=${nvmeAt.toString(16)} size=4096 phys_addr=1a34 attrs=`,
        '',
      ].join('\n');
    const run = (at: number, kernel: string) =>
      replay(trace(at), undefined, {
        kernel,
        pool: { base: 0, slots: 256, areas: 1 },
        minAlignMask: masks,
      });
    expect((await run(0x2a34, '6.1.115')).placements).toMatchObject({ agree: 2, disagree: 0 });
    expect((await run(0xa34, '6.12.3')).placements).toMatchObject({ agree: 2, disagree: 0 });
    expect((await run(0xa34, '6.6.60')).placements).toMatchObject({ agree: 2, disagree: 0 });
    const cross = await run(0xa34, '6.1.115');
    expect(cross.placements.disagreements[0]).toMatchObject({ kernel: '0xa34', model: '0x2a34' });
  });
});
