/**
 * virtio-blk requests traced from a device with indirect descriptors
 * (VIRTIO_RING_F_INDIRECT_DESC, QEMU's default) and without: the grouping of
 * profile.ts, and what size --trace and bench --trace derive from it.
 *
 * drivers/virtio/virtio_ring.c (6.1.192 and 6.12.117): with the feature,
 * virtqueue_use_indirect() (`vq->indirect && total_sg > 1 && vq->vq.num_free`)
 * holds for every virtio-blk request, and virtqueue_add_split(), after mapping the
 * header, data and status sg entries, maps the table: vring_map_single(vq, desc,
 * total_sg * sizeof(struct vring_desc), DMA_TO_DEVICE). detach_buf_split() unmaps
 * the table first, then the entries.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { jobShape } from '../src/workload/trace/job-shape.js';
import type { DeviceProfile } from '../src/workload/trace/profile.js';
import { adviseFromTrace } from '../src/workload/trace/trace-advice.js';
import { tracedJob } from '../src/workload/trace/trace-job.js';
import {
  type GenEvent,
  KernelSim,
  type Mapping,
  mapEventsOf,
  render,
} from './helpers/trace-gen.js';
import { profileOfEvents, TRACEFS } from './helpers/trace-run.js';

const G = { base: 0x5000_0000, slots: 1024, areas: 1 };

interface Req {
  maps: Mapping[];
  table: Mapping | undefined;
  mapEvents: GenEvent[];
  unmapEvents: () => GenEvent[];
}

/**
 * One virtio-blk request as virtqueue_add_split() maps it: the 16-byte header, the
 * entries between (data segments or a small payload), the 1-byte status, then,
 * with `indirect`, the table of 16 bytes per sg entry (kmalloc'd, TO_DEVICE).
 * Unmapped as detach_buf_split() does: the table first, then the entries.
 */
function blkRequest(
  sim: KernelSim,
  cpu: number,
  buf: number,
  middle: [number, D][],
  indirect: boolean,
): Req {
  const dev = 'vda';
  const maps = [sim.map(dev, cpu, buf, 16, D.TO_DEVICE)];
  middle.forEach(([size, dir], i) => {
    maps.push(sim.map(dev, cpu, buf + 0x1000 * (i + 1), size, dir));
  });
  maps.push(sim.map(dev, cpu, buf + 0x20, 1, D.FROM_DEVICE));
  const table = indirect
    ? sim.map(dev, cpu, buf + 0x80_0000, maps.length * 16, D.TO_DEVICE)
    : undefined;
  const all = table ? [...maps, table] : maps;
  return {
    maps,
    table,
    mapEvents: mapEventsOf(cpu, all),
    unmapEvents: () =>
      (table ? [table, ...maps] : maps).map((m) => {
        sim.unmap(m);
        return { t: 'unmap', cpu, m } as GenEvent;
      }),
  };
}

const profileOf = (events: GenEvent[], slots = G.slots): Promise<DeviceProfile> =>
  profileOfEvents(events, { base: G.base, slots });

/** Eight 4 KiB reads on CPU 0, all mapped before any is unmapped (the audit's trace). */
function eightReads(indirect: boolean): { events: GenEvent[]; sim: KernelSim } {
  const sim = new KernelSim(G);
  const reqs = Array.from({ length: 8 }, (_, i) =>
    blkRequest(sim, 0, 0x1_0000_0000 + i * 0x100_0000, [[4096, D.FROM_DEVICE]], indirect),
  );
  return {
    sim,
    events: [...reqs.flatMap((r) => r.mapEvents), ...reqs.flatMap((r) => r.unmapEvents())],
  };
}

describe('virtio-blk requests with and without indirect descriptor tables', () => {
  for (const indirect of [true, false]) {
    it(`eight 4 KiB reads ${indirect ? 'with a 48-byte table each' : 'without tables'}: 8 I/Os, peak 8, iodepth 8`, async () => {
      const vda = await profileOf(eightReads(indirect).events);
      const perReq = indirect ? 4 : 3;
      expect(vda.maps).toBe(8 * perReq);
      expect(vda.bounced).toBe(8 * perReq);
      expect(vda.ios).toEqual({ blk: 8, sg: 0, single: 0, flushes: 0, aborted: 0 });
      expect(vda.liveIosMax).toBe(8);
      expect(vda.liveMax).toBe(8 * perReq);
      // Header 1 slot, 4 KiB 2, status 1, and the table 1.
      expect(vda.liveBouncedSlotsMax).toBe(8 * (indirect ? 5 : 4));
      expect([...vda.ioSizes.read]).toEqual([[4096, 8]]);
      expect([...vda.sizes.toDevice].sort((a, b) => a[0] - b[0])).toEqual(
        indirect
          ? [
              [16, 8],
              [48, 8],
            ]
          : [[16, 8]],
      );
      expect(jobShape(vda)).toEqual({
        read: [[4096, 100]],
        write: [],
        rwmixread: 100,
        iodepth: 8,
        numjobs: 1,
      });
      expect(tracedJob([vda]).text).toMatch(/^iodepth=8$/m);
    });
  }

  it('size --trace: the tables are maps and bounces of their requests, not I/Os; the service job runs at the traced depth', async () => {
    const { events, sim } = eightReads(true);
    const report = await adviseFromTrace({
      trace: Readable.from([render(events, TRACEFS).text]),
      traceName: 't',
      bootLog: { input: Readable.from([sim.bootLog('6.12.117')]), name: 'dmesg' },
      steps: 200,
    });
    expect(report.devices[0]).toMatchObject({
      device: 'vda',
      maps: 32,
      bounced: 32,
      ios: 8,
      flushes: 0,
      peak_live_ios: 8,
      peak_bounced_slots: 40,
    });
    expect(report.service?.job).toMatch(/^iodepth=8$/m);
    expect(report.service?.config?.devices?.[0]).toMatchObject({ depth: 8 });
  });

  it('requests on two CPUs interleaved, a flush (32-byte table), discards (16-byte ranges), a 2-segment write (64-byte table)', async () => {
    const sim = new KernelSim(G);
    const a = blkRequest(sim, 0, 0x1_0000_0000, [[8192, D.FROM_DEVICE]], true);
    const b = blkRequest(
      sim,
      1,
      0x2_0000_0000,
      [
        [4096, D.TO_DEVICE],
        [4096, D.TO_DEVICE],
      ],
      true,
    );
    const flush = blkRequest(sim, 0, 0x3_0000_0000, [], true);
    const discard = blkRequest(sim, 1, 0x4_0000_0000, [[16, D.TO_DEVICE]], true);
    const discard3 = blkRequest(sim, 0, 0x5_0000_0000, [[48, D.TO_DEVICE]], true);
    expect([a, b, flush, discard, discard3].map((r) => r.table?.size)).toEqual([
      48, 64, 32, 48, 48,
    ]);
    const events: GenEvent[] = [
      ...a.mapEvents.slice(0, 4),
      ...b.mapEvents.slice(0, 6),
      ...a.mapEvents.slice(4),
      ...b.mapEvents.slice(6),
      ...flush.mapEvents,
      ...discard.mapEvents,
      ...a.unmapEvents(),
      ...discard3.mapEvents,
      ...b.unmapEvents(),
      ...flush.unmapEvents(),
      ...discard.unmapEvents(),
      ...discard3.unmapEvents(),
    ];
    const vda = await profileOf(events);
    expect(vda.ios).toEqual({ blk: 5, sg: 0, single: 0, flushes: 3, aborted: 0 });
    expect([...vda.ioSizes.read]).toEqual([[8192, 1]]);
    expect([...vda.ioSizes.write]).toEqual([[8192, 1]]);
    // a, b, the flush and the first discard before a's unmap.
    expect(vda.liveIosMax).toBe(4);
    expect(vda.maps).toBe(4 + 5 + 3 + 4 + 4);
  });

  it('without tables: a discard (2 ranges) and GET_ID (20 bytes in) are one request each, without data', async () => {
    const sim = new KernelSim(G);
    const discard = blkRequest(sim, 0, 0x1_0000_0000, [[32, D.TO_DEVICE]], false);
    const getId = blkRequest(sim, 0, 0x2_0000_0000, [[20, D.FROM_DEVICE]], false);
    const write = blkRequest(sim, 0, 0x3_0000_0000, [[4096, D.TO_DEVICE]], false);
    const vda = await profileOf([
      ...discard.mapEvents,
      ...getId.mapEvents,
      ...write.mapEvents,
      ...discard.unmapEvents(),
      ...getId.unmapEvents(),
      ...write.unmapEvents(),
    ]);
    expect(vda.ios).toEqual({ blk: 3, sg: 0, single: 0, flushes: 2, aborted: 0 });
    expect([...vda.ioSizes.write]).toEqual([[4096, 1]]);
    expect(vda.ioSizes.read.size).toBe(0);
    expect(vda.liveIosMax).toBe(3);
  });

  it('a map after the status that is not the table (wrong size) stays an I/O of its own', async () => {
    const sim = new KernelSim(G);
    const r = blkRequest(sim, 0, 0x1_0000_0000, [[4096, D.FROM_DEVICE]], false);
    const other = sim.map('vda', 0, 0x9_0000_0000, 64, D.TO_DEVICE); // 16 x 4, not 16 x 3
    const vda = await profileOf([
      ...r.mapEvents,
      { t: 'map', cpu: 0, m: other },
      ...r.unmapEvents(),
      { t: 'unmap', cpu: 0, m: other },
    ]);
    expect(vda.ios).toMatchObject({ blk: 1, single: 1 });
    expect(vda.liveIosMax).toBe(2);
  });

  it('a table that fails to map cuts its request short (the driver unmaps the entries, requeues it)', async () => {
    // 128 slots: a 124-slot map leaves 4, which header (1), 4 KiB (2) and status (1) take.
    const sim = new KernelSim({ base: G.base, slots: 128, areas: 1 });
    const big = sim.map('vda', 0, 0x7_0000_0000, 124 * 2048, D.TO_DEVICE);
    const r = blkRequest(sim, 0, 0x1_0000_0000, [[4096, D.FROM_DEVICE]], true);
    expect(r.maps.every((m) => m.dmaAddr >= 0)).toBe(true);
    expect(r.table?.dmaAddr).toBe(-1);
    const vda = await profileOf(
      [
        { t: 'map', cpu: 0, m: big },
        ...r.mapEvents,
        ...r.maps.map((m): GenEvent => ({ t: 'unmap', cpu: 0, m })),
      ],
      128,
    );
    expect(vda.failed).toBe(1);
    expect(vda.ios).toMatchObject({ blk: 1, single: 1, aborted: 1, flushes: 0 });
    expect(vda.ioSizes.read.size).toBe(0);
  });
});
