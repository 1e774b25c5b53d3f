/**
 * `size --trace` and `bench --trace`: the traced workload's I/Os (profile.ts, job-shape.ts),
 * the traced demand replayed against other pools (demand.ts, trace-sizing.ts),
 * the advice end to end, and the traced workload run through the real pipeline.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { benchTraceCommand } from '../src/cli/bench-trace.js';
import { sizeCommand } from '../src/cli/size.js';
import { requirementNotes } from '../src/cli/size-notes.js';
import { DmaDirection as D, IO_TLB_SIZE } from '../src/swiotlb/constants.js';
import { parseJobFile } from '../src/workload/fio-job.js';
import { TraceDemand } from '../src/workload/trace/demand.js';
import { jobShape } from '../src/workload/trace/job-shape.js';
import { TraceProfile } from '../src/workload/trace/profile.js';
import { runTraceReplay } from '../src/workload/trace/run.js';
import type { TraceSizeReport } from '../src/workload/trace/trace-advice.js';
import { sizeFromTrace } from '../src/workload/trace/trace-sizing.js';
import { runCli } from './helpers/run-cli.js';
import { type GenEvent, KernelSim, render, virtioBlkRequest } from './helpers/trace-gen.js';
import { TRACEFS } from './helpers/trace-run.js';

const dir = mkdtempSync(join(tmpdir(), 'trace-sizing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function sink(): PassThrough & { text: () => string } {
  const s = new PassThrough();
  let out = '';
  s.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  return Object.assign(s, { text: () => out });
}

describe('the traced I/Os (profile.ts)', () => {
  const G = { base: 0x7c00_0000, slots: 1024, areas: 2 };

  it('groups virtio-blk requests (header, data, status), sg lists and single maps; counts what was live', async () => {
    const sim = new KernelSim(G);
    // CPU 0: an 8 KiB read in two 4 KiB segments; CPU 1, meanwhile: a 64 KiB write.
    const read = virtioBlkRequest(sim, 'vda', 0, 0x1_0000_0000, 8192, true, { segment: 4096 });
    const write = virtioBlkRequest(sim, 'vda', 1, 0x1_0010_0000, 65536, false);
    const flush = virtioBlkRequest(sim, 'vda', 0, 0x1_0020_0000, 0, false);
    const sg = [4096, 512, 8192].map((size, i) =>
      sim.map('nvme0', 1, 0x2_0000_0000 + i * 0x10000, size, D.FROM_DEVICE),
    );
    const net = sim.map('eth0', 0, 0x3_0000_0000 + 0x42, 1500, D.TO_DEVICE, { bounce: false });
    const events: GenEvent[] = [
      ...read.mapEvents,
      ...write.mapEvents,
      ...read.unmapEvents(),
      ...write.unmapEvents(),
      ...flush.mapEvents,
      ...flush.unmapEvents(),
      { t: 'map_sg', cpu: 1, dev: 'nvme0', dir: D.FROM_DEVICE, entries: sg },
      { t: 'unmap_sg', cpu: 1, dev: 'nvme0', dir: D.FROM_DEVICE, entries: sg },
      { t: 'map', cpu: 0, m: net },
      { t: 'unmap', cpu: 0, m: net },
    ];
    const p = new TraceProfile();
    await runTraceReplay({
      trace: Readable.from([render(events, TRACEFS).text]),
      traceName: 't',
      pool: { base: G.base, slots: G.slots, areas: G.areas },
      observer: p,
    });
    const byName = new Map(p.result().map((d) => [d.device, d]));
    const vda = byName.get('vda')!;
    expect(vda.ios).toEqual({ blk: 3, sg: 0, single: 0, flushes: 1, aborted: 0 });
    expect([...vda.ioSizes.read]).toEqual([[8192, 1]]);
    expect([...vda.ioSizes.write]).toEqual([[65536, 1]]);
    // Both requests were mapped before either was unmapped: 2 I/Os, 7 mappings.
    expect(vda).toMatchObject({ liveIosMax: 2, liveMax: 7, bounced: 9 });
    // 4 KiB + 4 KiB + 16 + 1 and 64 KiB + 16 + 1 bytes: 2 + 2 + 1 + 1 and 32 + 1 + 1 slots.
    expect(vda).toMatchObject({ liveBouncedBytesMax: 8192 + 65536 + 34, liveBouncedSlotsMax: 40 });
    expect(jobShape(vda)).toEqual({
      read: [[8192, 100]],
      write: [[65536, 100]],
      rwmixread: 50,
      iodepth: 1,
      numjobs: 2,
    });
    const nvme = byName.get('nvme0')!;
    expect(nvme.ios).toMatchObject({ sg: 1, single: 0 });
    expect([...nvme.ioSizes.read]).toEqual([[4096 + 512 + 8192, 1]]);
    const eth = byName.get('eth0')!;
    expect(eth).toMatchObject({ bounced: 0, dataMaps: 1, unaligned: 1 });
    expect([...eth.ioSizes.write]).toEqual([[1500, 1]]);
    expect(jobShape(eth).write).toEqual([[1536, 100]]); // rounded up to 512 bytes
  });

  it('a request whose data map failed is cut short (the driver retries it), not a flush', async () => {
    const sim = new KernelSim({ base: G.base, slots: 128, areas: 1 });
    const big = sim.map('vda', 0, 0x5_0000_0000, 250 * 1024, D.TO_DEVICE); // 125 of the 128 slots
    const req = virtioBlkRequest(sim, 'vda', 0, 0x1_0000_0000, 8192, false);
    expect(req.maps.map((m) => m.dmaAddr === -1)).toEqual([false, true, false]);
    const p = new TraceProfile();
    await runTraceReplay({
      trace: Readable.from([
        render([{ t: 'map', cpu: 0, m: big }, ...req.mapEvents], TRACEFS).text,
      ]),
      traceName: 't',
      pool: { base: G.base, slots: 128, areas: 1 },
      observer: p,
    });
    expect(p.result()[0]).toMatchObject({ failed: 1, ios: { blk: 1, aborted: 1, flushes: 0 } });
  });
});

/**
 * Five 256 KiB maps live at once (one segment each) on CPU 0 of a traced pool of
 * 4096 slots in 2 areas. Worked by hand from the rules:
 * - a default pool needs 8 segments (the power of two above 5) at 1 area; at 2
 *   areas 1024 slots (4 segments per area: CPU 0's area takes 4, area 1 the
 *   fifth); 512 slots (2 + 2) fail one, 256 slots (1 + 1) fail three;
 * - a restricted pool (one area) needs exactly 5 segments, 640 slots;
 * - with 25%: swiotlb=1280 -> 2048 slots; the restricted pool 800 -> 7 segments, 896.
 */
function fiveSegments(): { trace: string; dmesg: string } {
  const sim = new KernelSim({ base: 0x7c00_0000, slots: 4096, areas: 2 });
  const maps = Array.from({ length: 5 }, (_, i) =>
    sim.map('vda', 0, 0x1_0000_0000 + i * 0x10_0000, 256 * 1024, D.FROM_DEVICE),
  );
  const events: GenEvent[] = [
    ...maps.flatMap((m): GenEvent[] => [
      { t: 'bounced', cpu: 0, m },
      { t: 'map', cpu: 0, m },
    ]),
    ...maps.map((m): GenEvent => ({ t: 'unmap', cpu: 0, m })),
  ];
  return { trace: render(events, TRACEFS).text, dmesg: sim.bootLog('6.12.3') };
}

describe('sizing from the traced demand (trace-sizing.ts)', () => {
  it('five concurrent segments: the hand-worked minimum per area count and for a restricted pool', async () => {
    const { trace, dmesg } = fiveSegments();
    const demand = new TraceDemand();
    const r = await runTraceReplay({
      trace: Readable.from([trace]),
      traceName: 't',
      bootLog: { input: Readable.from([dmesg]), name: 'dmesg' },
      observer: demand,
    });
    expect(r.pool).toMatchObject({ nslabs: 4096, nareas: 2, profile: '6.10' });
    expect(demand.requests).toBe(5);
    const s = sizeFromTrace(demand, {
      profile: '6.10',
      base: 0x7c00_0000,
      kernelNslabs: 4096,
      kernelNareas: 2,
      cpus: 1,
    });
    expect(s.by_areas).toEqual([
      { areas: 1, minimal_slots: 1024 },
      { areas: 2, minimal_slots: 1024 },
    ]);
    expect(s).toMatchObject({ areas: 2, minimal_slots: 1024, recommended_slots: 2048 });
    expect(s.restricted).toEqual({ minimal_slots: 640, recommended_slots: 896 });
    expect(s.table.map((t) => [t.nslabs, t.failures, t.used_hiwater, t.traced])).toEqual([
      [256, 3, 256, false],
      [512, 1, 512, false],
      [1024, 0, 640, false],
      [2048, 0, 640, false],
      [4096, 0, 640, true],
    ]);
  });
});

describe('size --trace', () => {
  it('prints the advice as JSON: demand per device, minimum, swiotlb=, device tree, service config', async () => {
    const { trace, dmesg } = fiveSegments();
    const stdout = sink();
    const code = await sizeCommand(
      [
        '--trace',
        file('five.txt', trace),
        '--dmesg',
        file('five.dmesg', dmesg),
        '--json',
        '--quiet',
      ],
      { stdout, stderr: sink() },
    );
    expect(code).toBe(0);
    const r = JSON.parse(stdout.text()) as TraceSizeReport;
    expect(r.kernel_parameter).toBe('swiotlb=2048,2');
    expect(r.kernel_parameter_forced).toBe('swiotlb=2048,2,force');
    expect(r.sizing.restricted.recommended_slots).toBe(896);
    expect(r.device_tree).toContain(
      `reg = <0x0 0x50000000 0x0 0x${(896 * IO_TLB_SIZE).toString(16)}>`,
    );
    expect(r.devices).toEqual([
      expect.objectContaining({
        device: 'vda',
        bounced: 5,
        ios: 5,
        peak_live_ios: 5,
        peak_bounced_slots: 640,
        peak_bounced_bytes: 5 * 256 * 1024,
        read_sizes: [[262144, 100]],
        cpus: [0],
        areas: [0],
      }),
    ]);
    expect(r.replay).toMatchObject({ placements: { agree: 5, disagree: 0 } });
    // The service: the traced workload as a job, sized by the fio-job sizing.
    expect(r.service?.config?.devices).toEqual([
      expect.objectContaining({ id: 'vda', queues: 1, depth: 5 }),
    ]);
    expect(r.service?.recommended_slots).toBeGreaterThan(640);
  });

  it('--areas recommends for another area count; --margin changes the head room', async () => {
    const { trace, dmesg } = fiveSegments();
    const stdout = sink();
    await sizeCommand(
      [
        '--trace',
        file('five2.txt', trace),
        '--dmesg',
        file('five2.dmesg', dmesg),
        '--areas',
        '1',
        '--margin',
        '0',
        '--json',
        '--quiet',
      ],
      { stdout, stderr: sink() },
    );
    const r = JSON.parse(stdout.text()) as TraceSizeReport & { requirements: string[] };
    expect(r.kernel_parameter).toBe('swiotlb=1024,1');
    expect(r.sizing.restricted.recommended_slots).toBe(640);
    // What size --job says a guest needs first, for the traced kernel's profile.
    expect(r.requirements).toEqual(requirementNotes({ kernel: r.pool.profile, dynamic: false }));
    expect(r.requirements[0]).toMatch(
      /^virtio: the device must negotiate VIRTIO_F_ACCESS_PLATFORM/,
    );
  });

  it('as a process: text advice, exit 0; a usage error exits 2', async () => {
    const { trace, dmesg } = fiveSegments();
    const t = file('p.txt', trace);
    const d = file('p.dmesg', dmesg);
    const ok = await runCli(['size', '--trace', t, '--dmesg', d, '--quiet']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^Sizing from .*p\.txt: its 5 bounced requests replayed/);
    expect(ok.stdout).toMatch(
      /Kernel command line:\n {2}swiotlb=2048,2 {10}a confidential guest .*\n {2}swiotlb=2048,2,force {4}any other guest: without force Linux bounces only what a device cannot reach\n/,
    );
    expect(ok.stdout).toMatch(/restricted-dma-pool \(one area\): 640 slots/);
    expect(ok.stdout).toMatch(
      /\n\nBefore you rely on it:\n- virtio: the device must negotiate VIRTIO_F_ACCESS_PLATFORM\./,
    );
    const bad = await runCli(['size', '--trace', t, '--kernel', '6.8']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no swiotlb profile for Linux 6\.8/);
  }, 30_000);
});

describe('bench --trace', () => {
  it("runs the traced workload, bounce then direct, from a job whose sizes, directions and depth are the trace's", async () => {
    const sim = new KernelSim({ base: 0x7c00_0000, slots: 2048, areas: 2 });
    const events: GenEvent[] = [];
    // 3 reads of 4 KiB and 1 write of 64 KiB live at once on CPUs 0 and 1, twice.
    for (let round = 0; round < 2; round++) {
      const reqs = [
        virtioBlkRequest(sim, 'vda', 0, 0x1_0000_0000 + round * 0x100_0000, 4096, true),
        virtioBlkRequest(sim, 'vda', 1, 0x1_0010_0000 + round * 0x100_0000, 4096, true),
        virtioBlkRequest(sim, 'vda', 0, 0x1_0020_0000 + round * 0x100_0000, 4096, true),
        virtioBlkRequest(sim, 'vda', 1, 0x1_0030_0000 + round * 0x100_0000, 65536, false),
      ];
      events.push(...reqs.flatMap((r) => r.mapEvents), ...reqs.flatMap((r) => r.unmapEvents()));
    }
    const saved = join(dir, 'saved.fio');
    const stdout = sink();
    const stderr = sink();
    const code = await benchTraceCommand(
      [
        '--trace',
        file('bench.txt', render(events, TRACEFS).text),
        '--dmesg',
        file('bench.dmesg', sim.bootLog('6.12.3')),
        '--runtime',
        '1',
        '--save-job',
        saved,
        '--json',
        '--quiet',
      ],
      { stdin: Readable.from([]), stdout, stderr },
    );
    expect(code).toBe(0);
    const job = parseJobFile(readFileSync(saved, 'utf8'), 'saved.fio');
    expect(job.settings).toMatchObject({ mode: 'both', poolSize: 2048 * IO_TLB_SIZE, areas: 2 });
    expect(job.jobs).toEqual([
      expect.objectContaining({
        name: 'vda',
        rw: 'randrw',
        rwmixread: 75,
        bs: { read: [{ size: 4096, percent: 100 }], write: [{ size: 65536, percent: 100 }] },
        numjobs: 2,
        iodepth: 2,
        runtime: 1,
      }),
    ]);
    expect(stderr.text()).toMatch(/bench: the traced workload as a fio job \(1 device\)/);
    expect(stderr.text()).toMatch(/bench: not replayed: timing/);
    const report = JSON.parse(stdout.text()) as {
      jobs: { mode: string }[];
      comparison: { bounce_over_direct: { all: { iops: number } } };
    };
    expect(new Set(report.jobs.map((j) => j.mode))).toEqual(new Set(['bounce', 'direct']));
    expect(report.comparison.bounce_over_direct.all.iops).toBeGreaterThan(0);
  }, 60_000);

  it('without a pool every map counts as not bounced: the devices with data are profiled', async () => {
    const sim = new KernelSim({ base: 0x7c00_0000, slots: 256, areas: 1 });
    const req = virtioBlkRequest(sim, 'vda', 0, 0x1_0000_0000, 16384, false, { bounce: false });
    const saved = join(dir, 'nopool.fio');
    const stderr = sink();
    await benchTraceCommand(
      [
        '--trace',
        file('nopool.txt', render([...req.mapEvents, ...req.unmapEvents()], TRACEFS).text),
        '--runtime',
        '1',
        '--mode',
        'direct',
        '--save-job',
        saved,
        '--json',
        '--quiet',
      ],
      { stdin: Readable.from([]), stdout: sink(), stderr },
    );
    expect(stderr.text()).toMatch(/no pool given .* every map was profiled as not bounced/);
    const job = parseJobFile(readFileSync(saved, 'utf8'), 'nopool.fio');
    expect(job.settings).toMatchObject({ mode: 'direct', poolSize: undefined });
    expect(job.jobs[0]).toMatchObject({
      rw: 'randwrite',
      bs: { write: [{ size: 16384, percent: 100 }] },
    });
  }, 30_000);
});
