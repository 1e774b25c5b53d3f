import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseJobFile } from '../src/workload/fio-job.js';
import { fioJobText, jobShape } from '../src/workload/trace/job-shape.js';
import { type DeviceProfile, TraceProfile } from '../src/workload/trace/profile.js';
import { runTraceReplay } from '../src/workload/trace/run.js';
import type { GenEvent } from './helpers/trace-gen.js';
import { mapping, replayEvents } from './helpers/trace-run.js';

function profile(sizes: Partial<Record<'to' | 'from' | 'bidi', [number, number][]>>, live = 4) {
  const p: DeviceProfile = {
    device: 'vda',
    maps: 0,
    bounced: 0,
    outside: 0,
    failed: 0,
    sgEntries: 0,
    allocs: 0,
    sizes: {
      toDevice: new Map(sizes.to ?? []),
      fromDevice: new Map(sizes.from ?? []),
      bidirectional: new Map(sizes.bidi ?? []),
    },
    ioSizes: { read: new Map(), write: new Map() },
    ios: { blk: 0, sg: 0, single: 0, flushes: 0, aborted: 0 },
    liveMax: live,
    liveIosMax: 0,
    liveBouncedBytesMax: 0,
    liveBouncedSlotsMax: 0,
    largest: 0,
    dataMaps: 0,
    unaligned: 0,
    minAlignMask: 0,
    cpus: new Set([0, 1]),
    firstTs: 0,
    lastTs: 1,
  };
  return p;
}

describe('the traced workload as a fio job', () => {
  it('jobShape: data sizes by direction (control mappings left out), read share, depth, jobs', () => {
    const shape = jobShape(
      profile({
        from: [
          [4096, 30],
          [65536, 10],
          [16, 40], // a virtio-blk header: not data
        ],
        to: [[4096, 20]],
        bidi: [[1, 40]],
      }),
    );
    expect(shape).toEqual({
      read: [
        [4096, 75],
        [65536, 25],
      ],
      write: [[4096, 100]],
      rwmixread: 67,
      // 4 mappings live at once, shared by the 2 CPUs (clones).
      iodepth: 2,
      numjobs: 2,
    });
  });

  it('fioJobText gives a job that parseJobFile reads back to the same shape', () => {
    const shape = jobShape(
      profile({
        from: [
          [4096, 3],
          [8192, 1],
        ],
        to: [[1536, 1]],
      }),
    );
    const jf = parseJobFile(fioJobText('vda', shape, 0xfff), 'traced.fio');
    expect(jf.warnings).toEqual([]);
    const job = jf.jobs[0]!;
    expect(job).toMatchObject({
      rw: 'randrw',
      rwmixread: 80,
      iodepth: 2,
      numjobs: 2,
      minAlignMask: 0xfff,
    });
    expect(job.bs.read).toEqual([
      { size: 4096, percent: 75 },
      { size: 8192, percent: 25 },
    ]);
    expect(job.bs.write).toEqual([{ size: 1536, percent: 100 }]);
  });

  it('percentages sum to 100 (largest remainder)', () => {
    const shape = jobShape(
      profile({
        to: [
          [512, 1],
          [1024, 1],
          [2048, 1],
        ],
      }),
    );
    expect(shape.write.map(([, p]) => p)).toEqual([34, 33, 33]);
  });

  it('the profile counts live mappings from the trace', async () => {
    const p = new TraceProfile();
    const a = mapping('vda', 0x5000, 4096, 0x1000_0000);
    const b = mapping('vda', 0x9000, 4096, 0x1000_2000);
    const events: GenEvent[] = [
      { t: 'map', cpu: 0, m: a },
      { t: 'map', cpu: 1, m: b },
      { t: 'unmap', cpu: 0, m: a },
      { t: 'unmap', cpu: 1, m: b },
    ];
    await replayEvents(events, { base: 0x1000_0000, slots: 256, areas: 1 }, { observer: p });
    const [vda] = p.result();
    expect(vda).toMatchObject({ maps: 2, bounced: 2, liveMax: 2, liveBouncedBytesMax: 8192 });
    expect([...vda!.cpus].sort()).toEqual([0, 1]);
    expect(vda!.sizes.toDevice.get(4096)).toBe(2);
  });
});

describe('restricted pools and coherent allocations', () => {
  it('--restricted SIZE --base: one area; dma_alloc/dma_free in the pool are replayed', async () => {
    const base = 0x5000_0000;
    // swiotlb_alloc() (6.9+): orig_addr 0, aligned to its own size rounded up to a
    // power of two of pages; 8 KiB -> slot 0; a 4 KiB map then takes slots 4-5.
    const text = [
      '# tracer: nop',
      '   kworker-1   [000] .....  1.000000: dma_alloc: vda dir=BIDIRECTIONAL dma_addr=50000000 size=6000 virt_addr=0000000012345678 flags=GFP_KERNEL attrs=',
      '   kworker-1   [000] .....  1.000001: dma_map_page: vda dir=TO_DEVICE dma_addr=50002000 size=4096 phys_addr=7000 attrs=',
      '   kworker-1   [000] .....  1.000002: dma_unmap_page: vda dir=TO_DEVICE dma_addr=50002000 size=4096 attrs=',
      '   kworker-1   [000] .....  1.000003: dma_free: vda dir=BIDIRECTIONAL dma_addr=50000000 size=6000 virt_addr=0000000012345678 attrs=',
      '',
    ].join('\n');
    const r = await runTraceReplay({
      trace: Readable.from([text]),
      traceName: 'restricted.txt',
      pool: { base, restrictedBytes: 2 ** 20 },
    });
    expect(r.pool).toMatchObject({
      nslabs: 512,
      nareas: 1,
      source: 'flags (--restricted, --base)',
    });
    expect(r.pool.rules).toMatch(/restricted pool: one area/);
    expect(r.placements).toMatchObject({ agree: 2, disagree: 0 });
    expect(r.maps).toMatchObject({ allocs: 1, bounced: 1, replayed: 2 });
    expect(r.unmaps.replayed).toBe(2);
    expect(r.model).toMatchObject({ used_hiwater: 6, used_end: 0 });
  });
});

describe('progress', () => {
  it('reports bytes, lines and events while it reads a long trace', async () => {
    const filler = '   a-1  [000] ..... 1.0: sched_switch: prev_comm=a\n'.repeat(70_000);
    const dma =
      '   a-1  [000] ..... 2.0: dma_map_page: vda dir=TO_DEVICE dma_addr=50000000 size=512 phys_addr=7000 attrs=\n';
    const seen: { lines: number; events: number; bytes: number }[] = [];
    await runTraceReplay({
      trace: Readable.from([dma, filler]),
      traceName: 'long',
      pool: { base: 0x5000_0000, areas: 1, slots: 128 },
      onProgress: (p) => seen.push(p),
      progressEveryMs: 0,
    });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[0]).toMatchObject({ lines: 65536, events: 1 });
    expect(seen[0]!.bytes).toBeGreaterThan(65536 * 40);
  });
});
