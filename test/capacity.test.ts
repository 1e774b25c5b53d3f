/**
 * Requests beyond the capacity, and chains no driver should make, on both sides:
 *
 * - the driver refuses a read or write beyond the capacity before it maps or
 *   sends anything (VIRTIO 1.2 §5.2.6.1, "A driver MUST NOT submit a request
 *   which would cause a read or write beyond capacity"; Linux 6.12.117,
 *   block/blk-core.c bio_check_eod(): "attempt to access beyond end of device",
 *   the bio ends with BLK_STS_IOERR);
 * - a device thread (src/devices/device-worker.ts, started here by hand) still
 *   fails what a hostile or buggy guest submits anyway, given raw chains: IOERR
 *   beyond its capacity, the null device's too (QEMU hw/block/virtio-blk.c,
 *   virtio_blk_sect_range_ok()), and a chain with a zero-length descriptor
 *   completed with 0 bytes (QEMU hw/virtio/virtio.c, virtqueue_map_desc(): "zero
 *   sized buffers are not allowed").
 */

import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeviceQueue } from '../src/devices/device-queue.js';
import { isMediatorError, type MediatorError } from '../src/errors.js';
import { GuestVirtqueue, type UsedSink } from '../src/mediator/driver-virtqueue.js';
import { Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { toProblem } from '../src/server/errors.js';
import { workerScript } from '../src/util/worker-script.js';
import {
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../src/virtio/blk-format.js';
import type { DeviceKind, DeviceWorkerData } from '../src/virtio/device-spec.js';
import { layoutAt } from '../src/virtio/virtqueue-layout.js';

const MiB = 2 ** 20;

describe('driver: a read or write beyond the capacity is refused before anything is mapped', () => {
  const spec = (mode: 'bounce' | 'shared'): MediatorSpec => ({
    mode,
    copy: { workers: 0 },
    pools: [{ name: 'p0', size: 4 * MiB, areas: 1 }],
    guests: [{ name: 'g0', size: 16 * MiB }],
    devices: [
      { id: 'ram', kind: 'ram-blk', guest: 'g0', pool: 'p0', capacity: MiB, depth: 4 },
      { id: 'nul', kind: 'null', guest: 'g0', pool: 'p0', capacity: MiB, depth: 4 },
    ],
  });

  for (const mode of ['bounce', 'shared'] as const) {
    it(`${mode}: MEDIATOR_IO_ERROR with the capacity, no chain made available, no slot taken`, async () => {
      const m = new Mediator(spec(mode));
      try {
        const pool = m.pools.get('p0')!.pool;
        for (const id of ['ram', 'nul']) {
          const dev = m.device(id)!;
          await dev.ready();
          const idle = pool.used();
          // The driver's available index, as the device would read it.
          const avail = new DeviceQueue(dev.workerData(0));
          const last = dev.capacity / 512; // 2048
          const tries: [string, Promise<unknown>][] = [
            ['read at the end', dev.read(last, 512)],
            ['synthetic read at the end', dev.read(last, 4096, false)],
            ['write across the end', dev.write(last - 1, Buffer.alloc(1024))],
            ['synthetic write far past it', dev.write(2 ** 40, 512)],
          ];
          for (const [what, p] of tries) {
            const err = (await p.catch((e: unknown) => e)) as MediatorError;
            expect(isMediatorError(err, 'MEDIATOR_IO_ERROR'), `${id}: ${what}`).toBe(true);
            expect(err.message).toContain('attempt to access beyond end of device');
            expect(err.details).toMatchObject({ capacity: dev.capacity });
            // Over HTTP (were a route to let one through): 416 with Content-Range.
            const problem = toProblem(err, { retryAfterSeconds: 1, bodyLimit: MiB });
            expect(problem.status).toBe(416);
            expect(problem.headers['content-range']).toBe(`bytes */${dev.capacity}`);
          }
          expect(avail.availIdx()).toBe(0);
          expect(pool.used()).toBe(idle);
          const s = dev.stats();
          expect(s.inFlight).toBe(0);
          expect(s.requests.read.ioerr + s.requests.write.ioerr).toBe(0);
          // The last sector is on the disk; FLUSH carries no range.
          await dev.write(last - 1, Buffer.alloc(512, 5));
          await dev.flush();
          expect(avail.availIdx()).toBe(2);
        }
        const ram = m.device('ram')!;
        expect((await ram.read(2047, 512))!.every((b) => b === 5)).toBe(true);
        // What each device thread is given: its capacity, the null device's too.
        expect(m.device('nul')!.workerData(0).capacity).toBe(MiB);
      } finally {
        await m.close();
      }
    });
  }
});

/** A descriptor of a raw chain: its length, whether the device writes it. */
interface Desc {
  len: number;
  w?: boolean;
}

/** Where a raw chain's first buffer goes in the device-visible memory (after the queue). */
const BUFFERS = 8192;
/** The status byte's preset: no virtio-blk status, so a device that leaves it shows. */
const PRESET = 0xff;

/**
 * A device thread of `kind` on a queue of its own, as the driver starts one
 * (src/mediator/device-thread.ts), for a guest that writes raw chains: 64 KiB of
 * device-visible memory, the queue at 0, a disk of `capacity` bytes (ram-blk: its
 * sector s filled with s + 1).
 */
async function startDevice(kind: DeviceKind, capacity: number) {
  const layout = layoutAt(0, 16);
  const memory = new SharedArrayBuffer(64 * 1024);
  const mem = Buffer.from(memory);
  const backing = kind === 'ram-blk' ? new SharedArrayBuffer(capacity) : undefined;
  const disk = backing ? Buffer.from(backing) : undefined;
  if (disk) for (let s = 0; s < capacity / 512; s++) disk.fill(s + 1, s * 512, (s + 1) * 512);
  const data: DeviceWorkerData = {
    kind,
    memory,
    memBase: 0,
    queue: {
      size: layout.size,
      desc: layout.desc,
      avail: layout.avail,
      used: layout.used,
      notify: layout.notify,
    },
    serial: 'capacity',
    spinMicros: 0,
    clock: new SharedArrayBuffer(8),
    capacity,
  };
  if (backing) data.backing = backing;
  const script = workerScript('devices/device-worker');
  const worker = new Worker(script.filename, {
    workerData: data,
    ...(script.env ? { env: script.env } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (msg: { type?: string } | null) => {
      if (msg?.type === 'ready') resolve();
    });
    worker.once('error', reject);
  });
  const vq = new GuestVirtqueue(memory, 0, layout);
  const used = new Map<number, number>();
  const faults: string[] = [];
  const sink: UsedSink = {
    complete: (head, len) => used.set(head, len),
    fault: (kind, head, detail) => faults.push(`${kind} ${String(head)} ${detail}`),
  };

  /**
   * Submits one raw chain (buffers one after another from BUFFERS, 64 bytes
   * apart): the header (type, sector) written over its first readable bytes, a
   * write's data filled with 0xab, the other writable bytes with 0xee, the last
   * writable byte preset. Resolves, once the device completed it, with the used
   * length and the chain's buffers.
   */
  async function submit(descs: Desc[], type: number, sector: bigint) {
    const addrs: number[] = [];
    let at = BUFFERS;
    for (const d of descs) {
      addrs.push(at);
      mem.fill(d.w ? 0xee : 0xab, at, at + d.len);
      at += d.len + 64;
    }
    const header = Buffer.alloc(16);
    header.writeUInt32LE(type, 0);
    header.writeBigUInt64LE(sector, 8);
    let done = 0;
    for (const [i, d] of descs.entries()) {
      if (d.w || done === 16) continue;
      const n = Math.min(d.len, 16 - done);
      header.copy(mem, addrs[i]!, done, done + n);
      done += n;
    }
    const lastW = descs.findLastIndex((d) => d.w && d.len > 0);
    const statusAt = lastW < 0 ? -1 : addrs[lastW]! + descs[lastW]!.len - 1;
    if (statusAt >= 0) mem[statusAt] = PRESET;
    const head = vq.addChain(
      descs.length,
      addrs,
      descs.map((d) => d.len),
      descs.map((d) => (d.w ? 1 : 0)),
    );
    vq.publish();
    vq.ring();
    await vi.waitFor(() => {
      vq.poll(sink);
      expect(used.has(head)).toBe(true);
    });
    const len = used.get(head)!;
    used.delete(head);
    return { len, status: statusAt >= 0 ? mem[statusAt] : undefined, addrs };
  }

  return { mem, disk, submit, faults, stop: () => worker.terminate() };
}

type Device = Awaited<ReturnType<typeof startDevice>>;

describe('device thread: what a guest submits beyond the capacity fails with IOERR', () => {
  const started: Device[] = [];
  afterEach(async () => {
    for (const d of started.splice(0)) await d.stop();
  });
  const start = async (kind: DeviceKind, capacity: number) => {
    const d = await startDevice(kind, capacity);
    started.push(d);
    return d;
  };
  const read = (sectors: number): Desc[] => [
    { len: 16 },
    { len: sectors * 512, w: true },
    { len: 1, w: true },
  ];
  const write = (sectors: number): Desc[] => [
    { len: 16 },
    { len: sectors * 512 },
    { len: 1, w: true },
  ];

  // QEMU hw/block/virtio-blk.c, virtio_blk_sect_range_ok(): `if (sector >
  // total_sectors || nb_sectors > total_sectors - sector) return false;`, and the
  // request completes with VIRTIO_BLK_S_IOERR. The null device is checked the same
  // way: QEMU's null-co has a size (its `size` option) that virtio-blk checks.
  for (const kind of ['ram-blk', 'null'] as const) {
    it(`${kind}: past the end, across it, and at a 64-bit sector: IOERR, nothing moved`, async () => {
      const dev = await start(kind, 64 * 512);
      const past = await dev.submit(read(1), VIRTIO_BLK_T_IN, 64n);
      expect(past).toMatchObject({ status: VIRTIO_BLK_S_IOERR, len: 0 });
      expect(dev.mem[past.addrs[1]!]).toBe(0xee); // no data written
      const across = await dev.submit(write(2), VIRTIO_BLK_T_OUT, 63n);
      expect(across.status).toBe(VIRTIO_BLK_S_IOERR);
      const huge = await dev.submit(read(1), VIRTIO_BLK_T_IN, 2n ** 64n - 1n);
      expect(huge.status).toBe(VIRTIO_BLK_S_IOERR);
      const longer = await dev.submit(read(65), VIRTIO_BLK_T_IN, 0n);
      expect(longer.status).toBe(VIRTIO_BLK_S_IOERR);
      // A request of no data at the very end passes, one sector past it fails
      // (`sector > total_sectors`).
      const atEnd = await dev.submit([{ len: 16 }, { len: 1, w: true }], VIRTIO_BLK_T_IN, 64n);
      expect(atEnd.status).toBe(VIRTIO_BLK_S_OK);
      const pastEnd = await dev.submit([{ len: 16 }, { len: 1, w: true }], VIRTIO_BLK_T_IN, 65n);
      expect(pastEnd.status).toBe(VIRTIO_BLK_S_IOERR);
      if (dev.disk) expect(dev.disk[63 * 512]).toBe(64); // the write across the end left it
      // Within the disk: served (the null device moves no data, so writes no length).
      const last = await dev.submit(write(1), VIRTIO_BLK_T_OUT, 63n);
      expect(last.status).toBe(VIRTIO_BLK_S_OK);
      const whole = await dev.submit(read(64), VIRTIO_BLK_T_IN, 0n);
      expect(whole).toMatchObject({
        status: VIRTIO_BLK_S_OK,
        len: kind === 'null' ? 0 : 64 * 512 + 1,
      });
      if (dev.disk) expect(dev.disk[63 * 512]).toBe(0xab);
      expect(dev.faults).toEqual([]);
    });
  }

  // The spec forbids no zero-length descriptor (split-ring.tex, "The Virtqueue
  // Descriptor Table", driver requirements: a chain of at most 2^32 bytes, no
  // loop); QEMU refuses one (hw/virtio/virtio.c, virtqueue_map_desc(): `if (!sz) {
  // virtio_error(vdev, "virtio: zero sized buffers are not allowed");`) and marks
  // the device broken. Here the chain alone fails, as one outside the memory does:
  // completed with 0 bytes, its status left alone; the next request is served.
  it('a chain with a zero-length descriptor completes with 0 bytes and no status', async () => {
    const dev = await start('ram-blk', 64 * 512);
    const chains: [string, Desc[], number][] = [
      [
        'a read with an empty data buffer',
        [{ len: 16 }, { len: 0, w: true }, { len: 1, w: true }],
        VIRTIO_BLK_T_IN,
      ],
      [
        'a write with an empty data buffer',
        [{ len: 16 }, { len: 0 }, { len: 512 }, { len: 1, w: true }],
        VIRTIO_BLK_T_OUT,
      ],
      [
        'an empty buffer after the status',
        [{ len: 16 }, { len: 512, w: true }, { len: 1, w: true }, { len: 0, w: true }],
        VIRTIO_BLK_T_IN,
      ],
      ['an empty header', [{ len: 0 }, { len: 16 }, { len: 1, w: true }], VIRTIO_BLK_T_IN],
    ];
    for (const [what, descs, type] of chains) {
      const r = await dev.submit(descs, type, 2n);
      expect(r.len, what).toBe(0);
      expect(r.status, what).toBe(PRESET);
      // Nothing read into the chain's writable bytes, nothing written to the disk.
      descs.forEach((d, i) => {
        if (d.w && d.len > 1) expect(dev.mem[r.addrs[i]!], what).toBe(0xee);
      });
      expect(dev.disk![2 * 512], what).toBe(3);
    }
    const ok = await dev.submit(read(1), VIRTIO_BLK_T_IN, 2n);
    expect(ok).toMatchObject({ status: VIRTIO_BLK_S_OK, len: 513 });
    expect(dev.mem[ok.addrs[1]!]).toBe(3);
  });
});
