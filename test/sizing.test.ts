/**
 * `size`'s advice for the shipped example jobs, worked by hand where the job
 * allows it, and the rules every advice keeps: a `swiotlb=` the kernel keeps as
 * written (a power of two of at least 128 x nareas: round_up_default_nslabs() logs
 * no roundup), a restricted-dma-pool in whole segments, requeues (never failures)
 * below the advice, the kernel's lines on stderr, and what the guest needs.
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { sizeCommand } from '../src/cli/size.js';
import { MediatorError } from '../src/errors.js';
import { IO_TLB_SEGSIZE } from '../src/swiotlb/constants.js';
import { computeGeometry, roundUpPowerOfTwo as roundUp } from '../src/swiotlb/geometry.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { type JobFile, parseJobFile } from '../src/workload/fio-job.js';
import {
  adviseSize,
  clean,
  kernelPoolSizes,
  type SizingAdvice,
  simulate,
} from '../src/workload/sizing.js';

const job = (name: string) =>
  parseJobFile(readFileSync(`examples/jobs/${name}.fio`, 'utf8'), `${name}.fio`);

/** The run the advice's table holds at `slots` (every recommendation has its row). */
const row = (t: SizingAdvice['table'], slots: number) => t.find((r) => r.nslabs === slots)!;

/** The rules every advice keeps, whatever the job. */
function checkRules(jf: JobFile, advice: SizingAdvice): void {
  const { areas, margin } = advice;
  // Default pool: one the kernel builds as written.
  const rec = advice.recommended_slots!;
  expect(kernelPoolSizes(areas)).toContain(rec);
  const g = computeGeometry({ slots: rec, areas });
  expect(g.nslabs).toBe(rec);
  expect(g.log.some((l) => l.includes('roundup'))).toBe(false);
  const at = row(advice.table, rec);
  expect(at.requeues).toBe(0);
  expect(at.queue_slots).toBe(0); // Linux's default pool holds no virtqueue
  expect(at.used_hiwater * (1 + margin)).toBeLessThanOrEqual(rec);
  // The size the kernel builds below it either requeued or left less than the margin.
  if (rec / 2 >= IO_TLB_SEGSIZE * roundUp(areas)) {
    const under = simulate(jf, {
      slots: rec / 2,
      areas,
      kernel: advice.kernel,
      indirect: advice.indirect,
      queuesInPool: false,
      steps: advice.steps,
      seed: advice.seed,
    });
    expect(clean(under) && under.used_hiwater * (1 + margin) <= rec / 2).toBe(false);
  }
  // Restricted pool: minimal in whole segments, plus the margin in whole segments.
  const r = advice.restricted_pool;
  expect(r.minimal_slots! % IO_TLB_SEGSIZE).toBe(0);
  expect(r.recommended_slots).toBe(
    Math.ceil((r.minimal_slots! * (1 + margin)) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE,
  );
  expect(row(r.table, r.minimal_slots!).requeues).toBe(0);
  expect(row(r.table, r.minimal_slots!).queue_slots).toBeGreaterThan(0);
  // The service's pool holds its virtqueues too but maps no indirect tables: never
  // smaller than the kernel's pool without tables.
  if (!advice.indirect) {
    expect(advice.service_pool.recommended_slots!).toBeGreaterThanOrEqual(rec);
  }
  expect(advice.one_area.recommended_slots).toBe(r.recommended_slots);
}

describe('size: hand-worked advice for examples/jobs', () => {
  it('database.fio: 64 reads of 4 KiB in flight, 5 slots each: 320 slots, so swiotlb=512,2', () => {
    // Each request: the 16-byte header (1 slot), 4 KiB of data (2 slots: a page,
    // page aligned since alloc_size >= PAGE_SIZE), the status byte (1 slot) and
    // its indirect descriptor table, 3 entries x 16 = 48 bytes (1 slot).
    // 2 clones x iodepth 32 = 64 requests, always all in flight: 320 slots.
    const jf = job('database');
    const advice = adviseSize(jf);
    expect(advice.indirect).toBe(true);
    expect(advice.areas).toBe(2);
    expect(advice.recommended_slots).toBe(512); // 320 x 1.25 = 400 -> next power of two
    expect(row(advice.table, 512).used_hiwater).toBe(320);
    // Restricted pool: the same 320 slots + 2 virtqueues of 256 descriptors
    // (6784 bytes -> PAGE_ALIGN 8192 = 4 slots each): at least 328, so 3 segments.
    expect(advice.restricted_pool.minimal_slots).toBeGreaterThanOrEqual(3 * IO_TLB_SEGSIZE);
    expect(
      row(advice.restricted_pool.table, advice.restricted_pool.minimal_slots!).used_hiwater,
    ).toBe(328);
    // The service's own driver maps no table: 4 slots a request, 256 + 8 for its queues.
    expect(advice.service_pool.recommended_slots).toBe(512);
    expect(row(advice.service_pool.table, 512).used_hiwater).toBe(264);
    checkRules(jf, advice);
  });

  it('database.fio without indirect descriptors (--indirect-desc off): 4 slots a request, 256 slots', () => {
    const jf = job('database');
    const advice = adviseSize(jf, { indirect: false });
    expect(advice.indirect).toBe(false);
    expect(advice.recommended_slots).toBe(512); // 256 would be exactly full: no margin
    expect(row(advice.table, 512).used_hiwater).toBe(256);
    expect(
      row(advice.restricted_pool.table, advice.restricted_pool.minimal_slots!).used_hiwater,
    ).toBe(264);
    // The service's pool is the same either way.
    expect(advice.service_pool).toEqual(adviseSize(jf).service_pool);
    checkRules(jf, advice);
  });

  it('backup.fio: 8 writes of 128 KiB, 67 slots each: 536 slots, so swiotlb=1024,1', () => {
    // header 1 + data 64 (128 KiB, page aligned) + status 1 + table 1 (48 bytes) = 67
    // slots; iodepth 8.
    const jf = job('backup');
    const advice = adviseSize(jf);
    expect(advice.areas).toBe(1);
    expect(advice.recommended_slots).toBe(1024); // 536 x 1.25 = 670 -> 1024
    expect(row(advice.table, 1024).used_hiwater).toBe(536);
    expect(row(adviseSize(jf, { indirect: false }).table, 1024).used_hiwater).toBe(528);
    checkRules(jf, advice);
  });

  it('nvme.fio: swiotlb=16384,2 with indirect tables (8192 requeues), 8192,2 without; both kept as written', () => {
    const jf = job('nvme');
    const advice = adviseSize(jf);
    expect(advice.areas).toBe(2);
    const rec = advice.recommended_slots!;
    expect(rec).toBe(16384);
    // Not the margin: 8192 slots would hold the high-water + 25%, but requests were
    // requeued on it (the one-slot tables among the 128-slot segments).
    const hw = row(advice.table, rec).used_hiwater;
    expect(hw * 1.25).toBeLessThanOrEqual(8192);
    expect(row(advice.table, 8192).requeues).toBeGreaterThan(0);
    checkRules(jf, advice);
    // Without tables, as before: the high-water + 25% needs more than 4096 slots.
    const direct = adviseSize(jf, { indirect: false });
    expect(direct.recommended_slots).toBe(8192);
    const hwDirect = row(direct.table, 8192).used_hiwater;
    expect(hwDirect * 1.25).toBeGreaterThan(4096);
    expect(hwDirect * 1.25).toBeLessThanOrEqual(8192);
    expect(computeGeometry({ slots: 10240, areas: 2 }).nslabs).toBe(16384);
    checkRules(jf, direct);
  });

  it('network.fio: four queues of 64 mixed requests; the advice keeps the rules', () => {
    const jf = job('network');
    const advice = adviseSize(jf, { steps: 1500 });
    expect(advice.areas).toBe(4);
    // At least 3 slots per request (header, data, status), 256 requests in flight.
    expect(row(advice.table, advice.recommended_slots!).used_hiwater).toBeGreaterThanOrEqual(768);
    checkRules(jf, advice);
  });

  it('below the advice, requests are requeued (Linux delays them), never failed', () => {
    const jf = job('nvme');
    const r = simulate(jf, { slots: 2048, areas: 2, queuesInPool: false });
    expect(r.requeues).toBeGreaterThan(0);
    expect(r.stalled).toBe(false);
    expect(r.requests).toBeGreaterThan(4000);
  });

  it('6.1: its own search, its own advice (its kernel-defect searches would count as unclean)', () => {
    // 6.1.y's swiotlb_do_find_slots() walks index-aligned strides, doubled for
    // mappings of a page or more: nvme.fio's mix still finds 8192 slots full
    // now and then, where 6.10 does not.
    const jf = job('nvme');
    const at8192 = simulate(jf, { slots: 8192, areas: 2, kernel: '6.1', queuesInPool: false });
    expect(at8192.kernel).toBe('6.1');
    const advice = adviseSize(jf, { kernel: '6.1' });
    expect(advice.kernel).toBe('6.1');
    const rec = advice.recommended_slots!;
    expect(at8192.requeues).toBeGreaterThan(0);
    expect(rec).toBe(16384);
    expect(row(advice.table, rec)).toMatchObject({ requeues: 0, kernel_defects: 0 });
  });

  it('a search the kernel would never finish counts against the pool, then reads as a full one', () => {
    // 6.1's endless walk (SWIOTLB_KERNEL_WOULD_HANG) is rare in a job's run: the
    // allocator is made to report it on every 50th map.
    const jf = job('database');
    let calls = 0;
    const real = SwiotlbPool.prototype.tryAllocate;
    const spy = vi.spyOn(SwiotlbPool.prototype, 'tryAllocate').mockImplementation(function (
      this: SwiotlbPool,
      ...args: Parameters<SwiotlbPool['tryAllocate']>
    ) {
      if (++calls % 50 === 0) {
        throw new MediatorError('SWIOTLB_KERNEL_WOULD_HANG', 'the 6.1 search would never end');
      }
      return real.apply(this, args);
    });
    try {
      const r = simulate(jf, { slots: 4096, areas: 2, kernel: '6.1', steps: 500 });
      expect(r.kernel_defects).toBeGreaterThan(0);
      expect(r.requeues).toBeGreaterThan(0);
      expect(clean(r)).toBe(false);
      expect(r.stalled).toBe(false);
    } finally {
      spy.mockRestore();
    }
  });

  it('--dynamic: below the advice the pool takes transient pools and grows instead of filling', () => {
    const jf = job('nvme');
    const r = simulate(jf, { slots: 2048, areas: 2, dynamic: true, queuesInPool: false });
    expect(r.requeues).toBe(0);
    expect(r.dynamic!.transient_maps).toBeGreaterThan(0);
    expect(r.dynamic!.growths).toBeGreaterThan(0);
    expect(r.dynamic!.nslabs_after).toBeGreaterThan(2048);
    const advice = adviseSize(jf, { dynamic: true });
    expect(row(advice.table, advice.recommended_slots!).dynamic).toEqual({
      transient_maps: 0,
      growths: 0,
      nslabs_after: advice.recommended_slots,
    });
  });
});

describe('size: the command', () => {
  async function size(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const text = { stdout: '', stderr: '' };
    const sink = (key: keyof typeof text) =>
      new Writable({
        write(chunk, _enc, done) {
          text[key] += String(chunk);
          done();
        },
      });
    const code = await sizeCommand(args, { stdout: sink('stdout'), stderr: sink('stderr') });
    return { code, ...text };
  }

  it('says requeues, not failures; gives swiotlb= with and without force; the kernel lines on stderr', async () => {
    const { code, stdout, stderr } = await size(['--job', 'examples/jobs/database.fio']);
    expect(code).toBe(0);
    expect(stdout).not.toMatch(/fail(ure)?s?\b.*swiotlb buffer is full|Linux would fail/i);
    expect(stdout).toMatch(/blk-mq requeues them until slots come back/);
    expect(stdout).toMatch(/^ {2}swiotlb=512,2 {10}a confidential guest/m);
    expect(stdout).toMatch(/^ {2}swiotlb=512,2,force {4}any other guest/m);
    expect(stdout).toContain('schemas/reserved-memory/shared-dma-pool.yaml');
    expect(stdout).toMatch(/VIRTIO_F_ACCESS_PLATFORM/);
    expect(stdout).toMatch(/CONFIG_DMA_RESTRICTED_POOL/);
    expect(stdout).toMatch(/behind an IOMMU/);
    // database.fio sets ioengine=libaio and direct=1: the runner warns of neither.
    expect(stderr).not.toMatch(/warning/);
    expect(
      stderr.endsWith(
        'software IO TLB: area num 2.\nsoftware IO TLB: mapped [mem 0x0000000000000000-0x0000000000100000] (1MB)\n',
      ),
    ).toBe(true);
  });

  it('a margin that asks past 1 GiB says the advice is the largest pool, not that margin', async () => {
    const { stdout } = await size(['--job', 'examples/jobs/database.fio', '--margin', '1000000']);
    expect(stdout).toContain(
      'Recommended: 524288 slots (1.0GiB): the smallest on which nothing was requeued (512 slots, in whole segments) + 1000000% margin would be 5120512 slots, past the 1 GiB a pool can be: the largest pool instead.',
    );
  });

  it('--areas 3 is advised as the 4 areas the kernel builds for it, and says so', async () => {
    const { code, stdout, stderr } = await size([
      '--job',
      'examples/jobs/database.fio',
      '--areas',
      '3',
    ]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Recommended: swiotlb=512,4 /m);
    expect(stdout).not.toMatch(/swiotlb=\d+,3\b/);
    expect(stderr).toContain('size: note: 3 areas are built as 4');
    expect(stderr).toContain('software IO TLB: area num 4.');
  });

  it('--indirect-desc: on by default (QEMU offers indirect descriptors), off leaves the tables out', async () => {
    const on = await size(['--job', 'examples/jobs/database.fio', '--json']);
    expect(JSON.parse(on.stdout)).toMatchObject({ indirect: true });
    const text = await size(['--job', 'examples/jobs/database.fio']);
    expect(text.stdout).toContain(
      'Each request maps its 16-byte header, its data, its status byte and its indirect descriptor table',
    );
    expect(text.stdout).toMatch(/high-water \(320 slots\)/);
    const off = await size(['--job', 'examples/jobs/database.fio', '--indirect-desc', 'off']);
    expect(off.stdout).toContain('no indirect descriptor tables (--indirect-desc off');
    expect(off.stdout).toMatch(/high-water \(256 slots\)/);
    await expect(
      size(['--job', 'examples/jobs/database.fio', '--indirect-desc', 'no']),
    ).rejects.toMatchObject({ code: 'CLI_USAGE' });
  });

  it('--kernel and --dynamic: 6.1 has no CONFIG_SWIOTLB_DYNAMIC', async () => {
    await expect(
      size(['--job', 'examples/jobs/database.fio', '--kernel', '6.1', '--dynamic']),
    ).rejects.toMatchObject({ code: 'CLI_USAGE' });
    await expect(
      size(['--job', 'examples/jobs/database.fio', '--kernel', '4.19']),
    ).rejects.toMatchObject({ code: 'CLI_USAGE' });
    const { stdout } = await size([
      '--job',
      'examples/jobs/database.fio',
      '--kernel',
      '6.6',
      '--json',
    ]);
    const advice = JSON.parse(stdout);
    expect(advice.kernel).toBe('6.6');
    expect(advice.config.kernel).toBe('6.6');
    expect(advice.kernel_log).toEqual(computeGeometry({ slots: 512, areas: 2 }).log);
    expect(advice.requirements.length).toBeGreaterThanOrEqual(4);
  });
});
