import { describe, expect, it } from 'vitest';
import { DmaDirection } from '../src/swiotlb/constants.js';
import type { GenEvent } from './helpers/trace-gen.js';
import { mapping, replayEvents } from './helpers/trace-run.js';

/**
 * Hand-worked cases, one per matching rule of the replay (src/workload/trace/replay.ts
 * names the module of each: replay-maps.ts, replay-unmaps.ts, replay-bounced.ts...). The
 * kernel addresses are worked out by hand from the 6.10 rules (DESIGN.md):
 * pool at 0x10000000; area a of n starts at slot a * nslabs / n; next-fit from
 * the area's cursor; a map of 4 KiB or more takes an even (page-aligned) slot.
 */

const BASE = 0x1000_0000;
const SLOT = 0x800;
const FOUR = { base: BASE, slots: 1024, areas: 4 }; // 4 areas of 256 slots
const ONE = { base: BASE, slots: 128, areas: 1 }; // 1 area of 128 slots
const area = (a: number, slot = 0) => BASE + (a * 256 + slot) * SLOT;

describe('replay rules (hand-worked)', () => {
  it('a bounced map starts its search in area cpu & (nareas - 1) and agrees with the kernel', async () => {
    const a = mapping('vda', 0x5000, 4096, area(1)); // cpu 1 -> area 1, slot 0
    const b = mapping('vda', 0x9000, 512, area(1, 2)); // next fit: after a's 2 slots
    const c = mapping('vda', 0x6000, 4096, area(2)); // cpu 6 -> 6 & 3 = area 2
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 1, m: a },
        { t: 'map', cpu: 1, m: b },
        { t: 'map', cpu: 6, m: c },
      ],
      FOUR,
    );
    expect(report.placements).toMatchObject({ agree: 3, disagree: 0 });
    expect(report.maps).toMatchObject({ replayed: 3, bounced: 3 });
    expect(report.model.used_hiwater).toBe(5);
    expect(report.observed.used_hiwater).toBe(5);
    expect(report.model.areas.map((x) => x.maps)).toEqual([0, 2, 1, 0]);
    expect(report.largest).toEqual({ size: 4096, device: 'vda', line: 13 });
  });

  it('dma_addr == phys_addr is not bounced (skipped); another address outside the pool is counted', async () => {
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 0, m: mapping('eth0', 0x9000, 1500, 0x9000) },
        { t: 'map', cpu: 0, m: mapping('gpu', 0x9000, 4096, 0xfffff000) },
        { t: 'unmap', cpu: 0, m: mapping('eth0', 0x9000, 1500, 0x9000) },
      ],
      FOUR,
    );
    expect(report.maps).toMatchObject({ replayed: 0, bounced: 0, direct: 1, outside_pool: 1 });
    expect(report.unmaps).toMatchObject({ replayed: 0, before_trace: 0 });
    expect(report.placements).toMatchObject({ agree: 0, disagree: 0 });
  });

  it('ffffffffffffffff agrees when the model finds the pool full too', async () => {
    const big = mapping('vda', 0x100000, 256 * 1024, BASE); // the whole 128-slot area
    const failed = mapping('vda', 0x200000, 4096, -1);
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 0, m: big },
        { t: 'map', cpu: 0, m: failed },
        // a device never seen bouncing: its failure is not the pool's, not replayed
        { t: 'map', cpu: 0, m: mapping('gpu', 0x300000, 4096, -1) },
      ],
      ONE,
    );
    expect(report.placements).toMatchObject({ agree: 2, disagree: 0 });
    expect(report.maps).toMatchObject({ kernel_failed: 1, kernel_failed_other: 1, replayed: 2 });
    expect(report.model.full).toBe(1);
    expect(report.kernel_failures).toEqual([
      { line: 14, device: 'vda', cpu: 0, size: 4096, call: 'map', model: 'full' },
    ]);
  });

  it('a kernel failure where the model finds room is a disagreement, and the model keeps nothing', async () => {
    const { report } = await replayEvents(
      [
        { t: 'bounced', cpu: 0, m: mapping('vda', 0x5000, 4096, -1) },
        { t: 'map', cpu: 0, m: mapping('vda', 0x5000, 4096, -1) },
      ],
      ONE,
    );
    expect(report.placements).toMatchObject({ agree: 0, disagree: 1 });
    expect(report.placements.disagreements[0]).toMatchObject({
      line: 14,
      kernel: 'failed',
      model: `0x${BASE.toString(16)}`,
    });
    expect(report.model.used_end).toBe(0);
  });

  it('an sg list mixes bounced and direct entries; dma_unmap_sg finds them by their buffers', async () => {
    const e0 = mapping('vda', 0x20000, 4096, area(0)); // cpu 0: area 0 slots 0-1
    const e1 = mapping('vda', 0x30000, 512, 0x30000); // direct
    const e2 = mapping('vda', 0x40000, 8192, area(0, 2)); // slots 2-5
    const events: GenEvent[] = [
      { t: 'map_sg', cpu: 0, dev: 'vda', dir: DmaDirection.FROM_DEVICE, entries: [e0, e1, e2] },
      { t: 'sync_sg', cpu: 0, dev: 'vda', entries: [e0, e2], forDevice: false },
      { t: 'unmap_sg', cpu: 3, dev: 'vda', dir: DmaDirection.FROM_DEVICE, entries: [e0, e1, e2] },
    ];
    for (const e of [e0, e1, e2]) e.dir = DmaDirection.FROM_DEVICE;
    const { report } = await replayEvents(events, FOUR);
    expect(report.placements).toMatchObject({ agree: 2, disagree: 0 });
    expect(report.maps).toMatchObject({ sg_lists: 1, bounced: 2, direct: 1 });
    expect(report.unmaps).toMatchObject({ replayed: 2, sg_unknown: 0 });
    expect(report.syncs).toMatchObject({ for_cpu: 2, bytes_for_cpu: 4096 + 8192 });
    expect(report.model).toMatchObject({ used_hiwater: 6, used_end: 0 });
    expect(report.observed).toMatchObject({ used_hiwater: 6, used_end: 0 });
  });

  it('unmaps and syncs of mappings made before the trace are counted, not errors', async () => {
    const old = mapping('vda', 0x70000, 4096, area(3, 10));
    const { report } = await replayEvents(
      [
        { t: 'sync', cpu: 0, m: old, offset: 0, size: 4096, forDevice: true },
        { t: 'unmap', cpu: 0, m: old },
        { t: 'unmap_sg', cpu: 0, dev: 'vda', dir: 1, entries: [old] },
      ],
      FOUR,
    );
    expect(report.unmaps).toMatchObject({ before_trace: 1, sg_unknown: 1, replayed: 0 });
    expect(report.syncs.before_trace).toBe(1);
    expect(report.hints.join('\n')).toMatch(/1 unmaps of mappings made before the trace started/);
  });

  it('a partial sync inside a mapping counts; one past its end does not', async () => {
    const m = mapping('vda', 0x5000, 4096, area(0));
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 0, m },
        { t: 'sync', cpu: 0, m, offset: 1024, size: 2048, forDevice: true },
        { t: 'sync', cpu: 0, m, offset: 3072, size: 2048, forDevice: true },
      ],
      FOUR,
    );
    expect(report.syncs).toMatchObject({ for_device: 1, bytes_for_device: 2048, before_trace: 1 });
  });

  it("a map is replayed at its swiotlb_bounced line, with that line's CPU", async () => {
    // The kernel searched for A (cpu 0) before B (cpu 1), but B's map line came first.
    const a = mapping('vda', 0x5000, 4096, BASE);
    const b = mapping('vda', 0x8000, 4096, BASE + 2 * SLOT);
    const events: GenEvent[] = [
      { t: 'bounced', cpu: 0, m: a },
      { t: 'bounced', cpu: 1, m: b },
      { t: 'other', cpu: 1, name: 'block_rq_issue', body: '253,0 W 4096 () 8 + 8 [fio]' },
      { t: 'map', cpu: 1, m: b },
      { t: 'map', cpu: 0, m: a },
    ];
    const { report } = await replayEvents(events, ONE);
    expect(report.placements).toMatchObject({ agree: 2, disagree: 0 });
    expect(report.maps).toMatchObject({ reordered: 2, bounced_unmatched: 0 });

    // Without the bounce lines, B takes A's slot: both disagree.
    const plain = await replayEvents([events[3]!, events[4]!], ONE);
    expect(plain.report.placements).toMatchObject({ agree: 0, disagree: 2 });
  });

  it('matches a swiotlb_bounced whose dev_addr carries a memory-encryption bit (SEV)', async () => {
    const a = mapping('vda', 0x5000, 4096, BASE);
    const { report } = await replayEvents(
      [
        { t: 'bounced', cpu: 0, m: a, encryptionBit: 2 ** 47 },
        { t: 'map', cpu: 0, m: a },
      ],
      ONE,
    );
    expect(report.maps).toMatchObject({ reordered: 1, bounced_unmatched: 0 });
  });

  it('a swiotlb_bounced without its map line is reported (a failed dma_map_sg leaves no dma event)', async () => {
    const { report } = await replayEvents(
      [
        { t: 'bounced', cpu: 0, m: mapping('vda', 0x5000, 4096, -1) },
        { t: 'map', cpu: 0, m: mapping('vda', 0x9000, 4096, BASE) },
      ],
      ONE,
    );
    expect(report.maps.bounced_unmatched).toBe(1);
    expect(report.hints.join('\n')).toMatch(/1 swiotlb_bounced lines have no map line/);
  });

  it('when the kernel reuses slots before their unmap line, the unmap ahead is replayed first', async () => {
    const a = mapping('vda', 0x5000, 4096, BASE); // slots 0-1, cursor 2
    const b = mapping('vda', 0x100000, 126 * SLOT, BASE + 2 * SLOT); // slots 2-127, cursor wraps to 0
    const c = mapping('vda', 0x9000, 4096, BASE); // after a's unmap: slots 0-1 again
    const events: GenEvent[] = [
      { t: 'map', cpu: 0, m: a },
      { t: 'map', cpu: 0, m: b },
      { t: 'map', cpu: 1, m: c }, // cpu 1's map line came before cpu 0's unmap line
      { t: 'unmap', cpu: 0, m: a },
    ];
    const { report } = await replayEvents(events, ONE);
    expect(report.placements).toMatchObject({ agree: 3, disagree: 0 });
    expect(report.unmaps).toMatchObject({ replayed: 1, reordered: 1, implicit: 0 });

    // Without the unmap line at all (a lost event), a is released as lost.
    const lost = await replayEvents(events.slice(0, 3), ONE);
    expect(lost.report.placements).toMatchObject({ agree: 3, disagree: 0 });
    expect(lost.report.unmaps).toMatchObject({ implicit: 1, reordered: 0 });
  });

  it('--device keeps only the named devices', async () => {
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 0, m: mapping('vda', 0x5000, 4096, area(0)) },
        { t: 'map', cpu: 0, m: mapping('vdb', 0x9000, 4096, area(0, 2)) },
      ],
      FOUR,
      { devices: ['vdb'] },
    );
    // vdb alone: the model puts it at slot 0 where the kernel (with vda there) used slot 2.
    expect(report.devices.map((d) => d.device)).toEqual(['vdb']);
    expect(report.input.filtered_events).toBe(1);
    expect(report.placements).toMatchObject({ agree: 0, disagree: 1 });
  });

  it('--min-align-mask per device: NVMe keeps the low 12 bits of the buffer', async () => {
    // phys 0x12345a00, mask 0xfff: offset 0x200 in the slot, and the slot's bit 11
    // must equal the buffer's (set), so slot 1: 0x10000800 + 0x200.
    const nvme = mapping('nvme0', 0x12345a00, 512, BASE + SLOT + 0x200);
    const events: GenEvent[] = [{ t: 'map', cpu: 0, m: nvme }];
    const withMask = await replayEvents(events, FOUR, {
      minAlignMask: { all: 0, byDevice: new Map([['nvme0', 0xfff]]) },
    });
    expect(withMask.report.placements).toMatchObject({ agree: 1, disagree: 0 });
    expect(withMask.report.devices[0]!.min_align_mask).toBe(0xfff);

    const without = await replayEvents(events, FOUR);
    expect(without.report.placements).toMatchObject({ agree: 0, disagree: 1 });
    expect(without.report.placements.disagreements[0]!.reason).toMatch(
      /kept the buffer's offset 0x200 .*--min-align-mask nvme0=0xfff/,
    );
    expect(without.report.hints[0]).toMatch(/replay with --min-align-mask nvme0=0xfff/);
  });

  it('a map no kernel could have traced (direction NONE) is refused by the model, not a crash', async () => {
    const odd = mapping('vda', 0x5000, 4096, area(0), DmaDirection.NONE);
    const { report } = await replayEvents(
      [
        { t: 'map', cpu: 0, m: odd },
        { t: 'unmap', cpu: 0, m: odd },
        { t: 'map', cpu: 0, m: mapping('vda', 0x9000, 4096, area(0)) },
      ],
      FOUR,
    );
    expect(report.placements).toMatchObject({ agree: 1, disagree: 1 });
    expect(report.model.invalid).toBe(1);
    expect(report.placements.disagreements[0]!.reason).toBe(
      'the model refuses it: invalid DMA direction none',
    );
    expect(report.unmaps.replayed).toBe(1);
  });

  it('counts lost-event markers and says what they mean', async () => {
    const { report } = await replayEvents(
      [
        { t: 'lost', cpu: 2, count: 40 },
        { t: 'map', cpu: 0, m: mapping('vda', 0x5000, 4096, area(0)) },
      ],
      FOUR,
    );
    expect(report.input).toMatchObject({ lost_events: 40, lost_markers: 1 });
    expect(report.hints[0]).toMatch(/the trace lost 40 events/);
  });
});
