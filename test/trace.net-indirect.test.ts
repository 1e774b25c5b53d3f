/**
 * virtio-net buffers traced from a device with indirect descriptors
 * (VIRTIO_RING_F_INDIRECT_DESC, QEMU's default): the grouping of profile.ts and
 * virtq-table.ts, and what size --trace derives from it.
 *
 * drivers/net/virtio_net.c (6.12.117): xmit_skb() adds a packet's virtio-net
 * header (unless pushed into the headroom), linear part and fragments with
 * virtqueue_add_outbuf(); add_recvbuf_big() adds the header, the rest of the first
 * page and one page per fragment with virtqueue_add_inbuf(). drivers/virtio/
 * virtio_ring.c (6.12.117): when virtqueue_use_indirect() (`vq->indirect &&
 * total_sg > 1 && vq->vq.num_free`), virtqueue_add_split() maps the entries one by
 * one, then the kmalloc'd table: vring_map_single(vq, desc, total_sg *
 * sizeof(struct vring_desc), DMA_TO_DEVICE); detach_buf_split() unmaps the table
 * first, then the entries.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { IoPeak } from '../src/workload/trace/io-peak.js';
import { type DeviceProfile, STALE_STARTS } from '../src/workload/trace/profile.js';
import { adviseFromTrace } from '../src/workload/trace/trace-advice.js';
import { formatTraceSize } from '../src/workload/trace/trace-size-format.js';
import {
  type GenEvent,
  KernelSim,
  type Mapping,
  mapEventsOf,
  render,
} from './helpers/trace-gen.js';
import { profileOfEvents, TRACEFS } from './helpers/trace-run.js';

const G = { base: 0x5000_0000, slots: 1024, areas: 1 };
const NET = '0000:00:03.0';
const TO = D.TO_DEVICE;
const FROM = D.FROM_DEVICE;

interface Buf {
  maps: Mapping[];
  table: Mapping | undefined;
  mapEvents: GenEvent[];
  unmapEvents: () => GenEvent[];
}

/**
 * One virtqueue buffer as virtqueue_add_split() maps it on `cpu`: its entries at
 * the given offsets from `buf`, then, with `table`, the table of 16 bytes per
 * entry at `table` (a kmalloc'd address unless a test says otherwise). Unmapped as
 * detach_buf_split() does: the table first, then the entries.
 */
function netBuffer(
  sim: KernelSim,
  cpu: number,
  buf: number,
  entries: [size: number, dir: D, offset: number][],
  table?: number,
  opts: { bounce?: boolean } = {},
): Buf {
  const maps = entries.map(([size, dir, off]) => sim.map(NET, cpu, buf + off, size, dir, opts));
  const t = table === undefined ? undefined : sim.map(NET, cpu, table, maps.length * 16, TO, opts);
  const all = t ? [...maps, t] : maps;
  return {
    maps,
    table: t,
    mapEvents: mapEventsOf(cpu, all),
    unmapEvents: () =>
      (t ? [t, ...maps] : maps).map((m) => {
        sim.unmap(m);
        return { t: 'unmap', cpu, m } as GenEvent;
      }),
  };
}

/**
 * A TSO packet as xmit_skb() adds it without `can_push`: the 12-byte virtio-net
 * header (in the skb's control block), the 66 bytes of Ethernet, IPv4 and TCP
 * headers (2 bytes off a 4-byte boundary), then `frags` page fragments; its table
 * in a kmalloc-64/-512 object.
 */
function tsoPacket(sim: KernelSim, cpu: number, n: number, frags = 1, table = true): Buf {
  const buf = 0x1_0000_0000 + n * 0x10_0000;
  const entries: [number, D, number][] = [
    [12, TO, 0x28],
    [66, TO, 0x102],
  ];
  for (let f = 0; f < frags; f++) entries.push([4096, TO, 0x1000 * (f + 2)]);
  return netBuffer(sim, cpu, buf, entries, table ? buf + 0xf_fe00 : undefined);
}

/** A packet of one entry (header pushed into the headroom): no table. */
function smallPacket(sim: KernelSim, cpu: number, n: number, size = 78): Buf {
  return netBuffer(sim, cpu, 0x3_0000_0000 + n * 0x1000, [[size, TO, 0x82]]);
}

const profileOf = (events: GenEvent[], slots = G.slots): Promise<DeviceProfile> =>
  profileOfEvents(events, { base: G.base, slots });

/** Eight TSO packets of 3 entries (header, headers, one 4 KiB fragment) on CPU 0, all mapped before any is unmapped. */
function eightPackets(): { events: GenEvent[]; sim: KernelSim } {
  const sim = new KernelSim(G);
  const bufs = Array.from({ length: 8 }, (_, i) => tsoPacket(sim, 0, i));
  return {
    sim,
    events: [...bufs.flatMap((b) => b.mapEvents), ...bufs.flatMap((b) => b.unmapEvents())],
  };
}

describe('virtio-net buffers with indirect descriptor tables', () => {
  it('eight 3-entry packets with 48-byte tables: 8 I/Os, not 32; peak 8', async () => {
    const net = await profileOf(eightPackets().events);
    expect(net.maps).toBe(32);
    expect(net.bounced).toBe(32);
    expect(net.ios).toEqual({ blk: 0, sg: 8, single: 0, flushes: 0, aborted: 0 });
    expect(net.liveIosMax).toBe(8);
    expect(net.liveMax).toBe(32);
    expect([...net.ioSizes.write]).toEqual([[12 + 66 + 4096, 8]]);
    expect(net.ioSizes.read.size).toBe(0);
    expect(net.sizes.toDevice.get(48)).toBe(8);
  });

  it('size --trace prints 8 I/Os and a peak of 8, the service job runs at depth 8', async () => {
    const { events, sim } = eightPackets();
    const report = await adviseFromTrace({
      trace: Readable.from([render(events, TRACEFS).text]),
      traceName: 't',
      bootLog: { input: Readable.from([sim.bootLog('6.12.117')]), name: 'dmesg' },
      steps: 200,
    });
    expect(report.devices[0]).toMatchObject({
      device: NET,
      maps: 32,
      ios: 8,
      aborted: 0,
      peak_live_ios: 8,
      write_sizes: [[4608, 100]],
    });
    const text = formatTraceSize(report);
    expect(text).toContain(`${NET}: 32 maps (32 bounced), 8 I/Os; peak 8 I/Os`);
    expect(report.service?.job).toMatch(/^iodepth=8$/m);
  });

  it('3, 19, 2 and 4 entries (48-, 304-, 32- and 64-byte tables), two CPUs interleaved: one I/O each, peak exact', async () => {
    const sim = new KernelSim(G);
    const a = tsoPacket(sim, 0, 0); // 3 entries
    const b = tsoPacket(sim, 1, 1, 17); // 19 entries: MAX_SKB_FRAGS + 2
    const c = netBuffer(
      sim,
      0,
      0x2_0000_0000,
      [
        [12, TO, 0x28],
        [1514, TO, 0x102],
      ],
      0x2_0000_0f00,
    );
    const d = tsoPacket(sim, 0, 3, 2); // 4 entries
    expect([a, b, c, d].map((x) => x.table?.size)).toEqual([48, 304, 32, 64]);
    const one = smallPacket(sim, 0, 0);
    const events: GenEvent[] = [
      ...a.mapEvents,
      ...b.mapEvents.slice(0, 38), // b's 19 entries (bounce and map each), pending on CPU 1
      ...one.mapEvents, // a one-entry packet, pending on CPU 0
      ...b.mapEvents.slice(38), // b's table
      ...a.unmapEvents(),
      ...c.mapEvents.slice(0, 4),
      ...one.unmapEvents(), // one: a buffer of its own; c's entries still pending
      ...c.mapEvents.slice(4),
      ...d.mapEvents,
      ...b.unmapEvents(),
      ...c.unmapEvents(),
      ...d.unmapEvents(),
    ];
    const net = await profileOf(events);
    expect(net.ios).toEqual({ blk: 0, sg: 4, single: 1, flushes: 0, aborted: 0 });
    // Live at once: a, b, one (3); then b, one, c (3); then b, c, d (3).
    expect(net.liveIosMax).toBe(3);
    expect([...net.ioSizes.write].sort((x, y) => x[0] - y[0])).toEqual([
      [78, 1],
      [1526, 1],
      [12 + 66 + 4096, 1],
      [12 + 66 + 2 * 4096, 1],
      [12 + 66 + 17 * 4096, 1],
    ]);
  });

  it('one-entry packets (no table) stay I/Os of their own, before, between and after packets with tables', async () => {
    const sim = new KernelSim(G);
    const s = [0, 1, 2, 3].map((i) => smallPacket(sim, 0, i, [78, 1526, 66, 90][i]));
    const p = tsoPacket(sim, 0, 0);
    const q = tsoPacket(sim, 0, 1, 2);
    const order = [s[0]!, s[1]!, p, s[2]!, q, s[3]!];
    // All mapped on CPU 0 before any unmap; unmapped oldest first.
    const net = await profileOf([
      ...order.flatMap((b) => b.mapEvents),
      ...order.flatMap((b) => b.unmapEvents()),
    ]);
    expect(net.ios).toEqual({ blk: 0, sg: 2, single: 4, flushes: 0, aborted: 0 });
    expect(net.liveIosMax).toBe(6);
    expect(net.maps).toBe(4 + 4 + 5);
    expect(net.ioSizes.write.get(78)).toBe(1);
    expect(net.ioSizes.write.get(1526)).toBe(1);
  });

  it('receive buffers of big-packets mode (19 entries in, a 304-byte table) and a control command', async () => {
    const sim = new KernelSim(G);
    // add_recvbuf_big(): the 12-byte header, PAGE_SIZE - sizeof(struct padded_vnet_hdr) of
    // the first page, then MAX_SKB_FRAGS (17) pages; all FROM_DEVICE.
    const rx = [0, 1, 2, 3].map((i) => {
      const page = 0x4_0000_0000 + i * 0x100_0000;
      const entries: [number, D, number][] = [
        [12, FROM, 0],
        [4064, FROM, 32],
      ];
      for (let f = 0; f < 17; f++) entries.push([4096, FROM, 0x10_0000 + f * 0x1000]);
      return netBuffer(sim, 2, page, entries, page + 0xf_0000);
    });
    // virtnet_send_command_reply(): the 2-byte control header and 8 bytes of data out, the
    // status byte in; virtqueue_add_sgs() makes a 48-byte table.
    const cmd = netBuffer(
      sim,
      2,
      0x5_0000_0000,
      [
        [2, TO, 0x10],
        [8, TO, 0x18],
        [1, FROM, 0x12],
      ],
      0x5_0000_0040,
    );
    const net = await profileOf([
      ...rx.flatMap((b) => b.mapEvents),
      ...cmd.mapEvents,
      ...cmd.unmapEvents(),
      ...rx.flatMap((b) => b.unmapEvents()),
    ]);
    expect(net.ios).toEqual({ blk: 0, sg: 5, single: 0, flushes: 0, aborted: 0 });
    expect([...net.ioSizes.read]).toEqual([[12 + 4064 + 17 * 4096, 4]]);
    expect([...net.ioSizes.write]).toEqual([[11, 1]]);
    expect(net.liveIosMax).toBe(5);
  });

  it('a table that fails to map cuts its packet short (virtio-net drops it)', async () => {
    // 128 slots: a 124-slot map leaves 4, which the header (1), headers (1) and 4 KiB (2) take.
    const sim = new KernelSim({ base: G.base, slots: 128, areas: 1 });
    const big = sim.map(NET, 0, 0x7_0000_0000, 124 * 2048, TO);
    const p = tsoPacket(sim, 0, 0);
    expect(p.maps.every((m) => m.dmaAddr >= 0)).toBe(true);
    expect(p.table?.dmaAddr).toBe(-1);
    const net = await profileOf(
      [
        { t: 'bounced', cpu: 0, m: big },
        { t: 'map', cpu: 0, m: big },
        ...p.mapEvents,
        // virtqueue_add_split()'s unmap_release: the entries.
        ...p.maps.map((m): GenEvent => ({ t: 'unmap', cpu: 0, m })),
      ],
      128,
    );
    expect(net.failed).toBe(1);
    expect(net.ios).toEqual({ blk: 0, sg: 1, single: 1, flushes: 0, aborted: 1 });
    expect([...net.ioSizes.write]).toEqual([[124 * 2048, 1]]);
  });
});

/**
 * A TO_DEVICE map of 16 x k bytes that is no table, in a trace that also holds a
 * 3-entry packet with its table on CPU 5 (one I/O): `events` gives the maps around
 * it, `singles` how many I/Os of their own they make.
 */
interface NotATable {
  name: string;
  events: (sim: KernelSim) => GenEvent[];
  singles: number;
  sg?: number;
  blk?: number;
}

/** Maps (with their bounces) then unmaps of the buffers, in the order given. */
function mapThenUnmap(bufs: Buf[]): GenEvent[] {
  return [...bufs.flatMap((b) => b.mapEvents), ...bufs.flatMap((b) => b.unmapEvents())];
}

const NOT_TABLES: NotATable[] = [
  {
    name: 'its address is not aligned as kmalloc() aligns a 64-byte table (a one-entry packet)',
    events: (sim) => mapThenUnmap([0, 1, 2, 3, 4].map((i) => smallPacket(sim, 0, i, 64))),
    singles: 5,
  },
  {
    name: 'fewer maps pending before it than it would hold (48 bytes after one)',
    events: (sim) => {
      const s = smallPacket(sim, 0, 0);
      const t = netBuffer(sim, 0, 0x6_0000_0000, [[48, TO, 0]]);
      return mapThenUnmap([s, t]);
    },
    singles: 2,
  },
  {
    name: 'the maps before it were unmapped (their buffers were complete)',
    events: (sim) => {
      const a = smallPacket(sim, 0, 0);
      const b = smallPacket(sim, 0, 1);
      const t = netBuffer(sim, 0, 0x6_0000_0000, [[32, TO, 0]]);
      return [...mapThenUnmap([a, b]), ...mapThenUnmap([t])];
    },
    singles: 3,
  },
  {
    name: 'the maps before it were made on another CPU',
    events: (sim) => {
      const a = smallPacket(sim, 0, 0);
      const b = smallPacket(sim, 0, 1);
      const t = netBuffer(sim, 1, 0x6_0000_0000, [[32, TO, 0]]);
      return mapThenUnmap([a, b, t]);
    },
    singles: 3,
  },
  {
    name: 'a writable entry would come before a readable one',
    events: (sim) => {
      const a = netBuffer(sim, 0, 0x6_0000_0000, [[1536, FROM, 0]]);
      const b = smallPacket(sim, 0, 1);
      const t = netBuffer(sim, 0, 0x6_1000_0000, [[32, TO, 0]]);
      return mapThenUnmap([a, b, t]);
    },
    singles: 3,
  },
  {
    name: 'a BIDIRECTIONAL map came between (no virtqueue maps one)',
    events: (sim) => {
      const a = smallPacket(sim, 0, 0);
      const b = smallPacket(sim, 0, 1);
      const x = netBuffer(sim, 0, 0x6_0000_0000, [[2048, D.BIDIRECTIONAL, 0]]);
      const t = netBuffer(sim, 0, 0x6_1000_0000, [[32, TO, 0]]);
      return mapThenUnmap([a, b, x, t]);
    },
    singles: 4,
  },
  {
    name: 'a virtio-blk request came between on that CPU (its table is 48 bytes, not this 32)',
    events: (sim) => {
      const a = smallPacket(sim, 0, 0);
      const b = smallPacket(sim, 0, 1);
      const req = netBuffer(sim, 0, 0x6_0000_0000, [
        [16, TO, 0],
        [4096, FROM, 0x1000],
        [1, FROM, 0x20],
      ]);
      const t = netBuffer(sim, 0, 0x6_1000_0000, [[32, TO, 0]]);
      return mapThenUnmap([a, b, req, t]);
    },
    singles: 3,
    blk: 1,
  },
  {
    name: '512 bytes after 32 maps (a sector-sized write, never a table)',
    events: (sim) => {
      const reads = Array.from({ length: 32 }, (_, i) =>
        netBuffer(sim, 0, 0x6_0000_0000 + i * 0x1000, [[512, FROM, 0]], undefined, {
          bounce: false,
        }),
      );
      const w = netBuffer(sim, 0, 0x7_0000_0000, [[512, TO, 0]], undefined, { bounce: false });
      return mapThenUnmap([...reads, w]);
    },
    singles: 33,
  },
];

describe('a TO_DEVICE map of 16 bytes per pending map is no table when', () => {
  for (const c of NOT_TABLES) {
    it(c.name, async () => {
      const sim = new KernelSim(G);
      const real = tsoPacket(sim, 5, 0);
      const events = c.events(sim);
      const net = await profileOf([...real.mapEvents, ...events, ...real.unmapEvents()]);
      expect(net.ios).toEqual({
        blk: c.blk ?? 0,
        sg: 1,
        single: c.singles,
        flushes: 0,
        aborted: 0,
      });
    });
  }

  it('the maps before it have been pending for more than STALE_STARTS / 2 starts of the device', async () => {
    const sim = new KernelSim(G);
    const real = tsoPacket(sim, 5, 0);
    const first = netBuffer(sim, 3, 0x6_0000_0000, [[1526, TO, 0]], undefined, { bounce: false });
    // Other CPUs start more I/Os than a virtqueue add could take.
    const busy = Array.from({ length: STALE_STARTS + 8 }, (_, i) =>
      netBuffer(sim, i % 2, 0x3_0000_0000 + i * 0x1000, [[1526, TO, 0x82]], undefined, {
        bounce: false,
      }),
    );
    // One more map on CPU 3, then 32 bytes at a kmalloc'd address: a table if `first`
    // were still pending.
    const rest = netBuffer(
      sim,
      3,
      0x6_1000_0000,
      [
        [1526, TO, 0],
        [32, TO, 0x100],
      ],
      undefined,
      { bounce: false },
    );
    const net = await profileOf([
      ...real.mapEvents,
      ...first.mapEvents,
      ...busy.flatMap((b) => [...b.mapEvents, ...b.unmapEvents()]),
      ...rest.mapEvents,
      ...real.unmapEvents(),
    ]);
    // `first` is a buffer of its own, so the 32-byte map has one entry pending: no table.
    expect(net.ios).toEqual({
      blk: 0,
      sg: 1,
      single: busy.length + 3,
      flushes: 0,
      aborted: 0,
    });
  });
});

describe('IoPeak', () => {
  it('lowers the samples a table makes too high, and settles only what no pending map precedes', () => {
    const p = new IoPeak();
    p.up(false); // an I/O, nothing pending: peak 1
    const a = p.up(true); // entry 1 of a buffer: 2
    const b = p.up(true); // entry 2: 3 counted, 2 true
    p.down(); // the first I/O ends: 2 counted, 1 true
    const c = p.up(true); // entry 3: 3 counted, 2 true
    p.up(true); // another CPU's pending map: 4 counted, 3 true
    p.group([a, b, c]);
    expect(p.live).toBe(2);
    p.settle(c + 1); // the other CPU's map is still pending: its sample waits
    expect(p.max).toBe(2);
    expect(p.waiting).toBe(1);
    p.up(false); // 3 live, truly
    p.settle(Number.POSITIVE_INFINITY);
    expect(p.max).toBe(3);
    expect(p.waiting).toBe(0);
  });
});
