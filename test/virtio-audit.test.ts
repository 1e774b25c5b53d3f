/**
 * The virtio fidelity audit's tests: behaviours checked against their sources
 * (the VIRTIO spec, Linux 6.12's drivers/virtio/virtio_ring.c and
 * drivers/block/virtio_blk.c, QEMU's hw/block/virtio-blk.c), each test naming its
 * source. Device side: BlkBackend on hand-built chains. Driver side: GuestVirtqueue
 * on a used ring written by hand.
 */

import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { BlkBackend, type Chain } from '../src/devices/blk-backend.js';
import { RamStore } from '../src/devices/block-store.js';
import { DeviceQueue } from '../src/devices/device-queue.js';
import { GuestVirtqueue, type UsedSink } from '../src/mediator/driver-virtqueue.js';
import {
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../src/virtio/blk-format.js';
import { layoutAt } from '../src/virtio/virtqueue-layout.js';

/** A descriptor of a hand-built chain: its length and whether the device writes it. */
interface Desc {
  len: number;
  w?: boolean;
}

/**
 * Device-visible memory with the chain's buffers laid out one after another (a
 * 64-byte gap between them, filled with 0xee so a stray write shows), and a
 * RAM disk of 64 sectors whose sector s is filled with s + 1.
 */
function rig(descs: Desc[]) {
  const mem = Buffer.alloc(64 * 1024, 0xee);
  const disk = new SharedArrayBuffer(64 * 512);
  const diskBytes = Buffer.from(disk);
  for (let s = 0; s < 64; s++) diskBytes.fill(s + 1, s * 512, (s + 1) * 512);
  const chain: Chain = {
    count: descs.length,
    offsets: new Float64Array(descs.length),
    lens: new Uint32Array(descs.length),
    writable: new Uint8Array(descs.length),
  };
  let at = 0;
  descs.forEach((d, i) => {
    chain.offsets[i] = at;
    chain.lens[i] = d.len;
    chain.writable[i] = d.w ? 1 : 0;
    at += d.len + 64;
  });
  const device = new BlkBackend(new RamStore(disk), 'audit-serial');
  return { mem, diskBytes, chain, device };
}

/** Writes the 16-byte request header as a stream over the chain's first readable bytes. */
function putHeader(mem: Buffer, chain: Chain, type: number, sector: number): void {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(0, 4);
  h.writeBigUInt64LE(BigInt(sector), 8);
  let done = 0;
  for (let i = 0; i < chain.count && done < 16; i++) {
    if (chain.writable[i]) continue;
    const n = Math.min(chain.lens[i]!, 16 - done);
    h.copy(mem, chain.offsets[i]!, done, done + n);
    done += n;
  }
}

/** The byte at `k` of descriptor `i`. */
const at = (r: ReturnType<typeof rig>, i: number, k: number) => r.mem[r.chain.offsets[i]! + k];

describe('virtio-blk device: any arrangement of descriptors (VIRTIO 1.2 §2.7.4.1)', () => {
  // split-ring.tex, "Message Framing", device requirement: "The device MUST NOT make
  // assumptions about the particular arrangement of descriptors." QEMU's
  // virtio_blk_handle_request() reads the header with iov_to_buf() across the
  // device-readable buffers and takes the status as the last byte of the last
  // device-writable one (`req->in = in_iov[in_num - 1].iov_base + iov_len - 1`).

  it('a write whose header and data share one descriptor writes its data', () => {
    const r = rig([{ len: 16 + 1024 }, { len: 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_OUT, 4);
    r.mem.fill(0xab, r.chain.offsets[0]! + 16, r.chain.offsets[0]! + 16 + 1024);
    const len = r.device.handle(r.mem, r.chain);
    expect(at(r, 1, 0)).toBe(VIRTIO_BLK_S_OK);
    expect(r.diskBytes.subarray(4 * 512, 6 * 512).every((b) => b === 0xab)).toBe(true);
    expect(r.diskBytes[6 * 512]).toBe(7); // the next sector untouched
    expect(len).toBe(1);
  });

  it('a read whose data and status share one descriptor: the status is its last byte', () => {
    const r = rig([{ len: 16 }, { len: 1024 + 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_IN, 2);
    const len = r.device.handle(r.mem, r.chain);
    const data = r.mem.subarray(r.chain.offsets[1]!, r.chain.offsets[1]! + 1024);
    expect(data.subarray(0, 512).every((b) => b === 3)).toBe(true);
    expect(data.subarray(512).every((b) => b === 4)).toBe(true);
    expect(at(r, 1, 1024)).toBe(VIRTIO_BLK_S_OK);
    expect(len).toBe(1025);
  });

  it('a header split over two descriptors is read whole', () => {
    const r = rig([{ len: 8 }, { len: 8 }, { len: 512, w: true }, { len: 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_IN, 9);
    expect(r.device.handle(r.mem, r.chain)).toBe(513);
    expect(at(r, 3, 0)).toBe(VIRTIO_BLK_S_OK);
    expect(at(r, 2, 0)).toBe(10);
    expect(at(r, 2, 511)).toBe(10);
  });

  it('a read split across descriptors of odd sizes lands in order', () => {
    const r = rig([{ len: 16 }, { len: 100, w: true }, { len: 924, w: true }, { len: 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_IN, 0);
    expect(r.device.handle(r.mem, r.chain)).toBe(1025);
    expect(at(r, 1, 99)).toBe(1);
    expect(at(r, 2, 411)).toBe(1); // byte 511 of the stream
    expect(at(r, 2, 412)).toBe(2); // byte 512: sector 1
    expect(at(r, 3, 0)).toBe(VIRTIO_BLK_S_OK);
  });

  it("a write's status buffer wider than one byte: the status is its last byte", () => {
    const r = rig([{ len: 16 }, { len: 512 }, { len: 4, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_OUT, 1);
    r.mem.fill(0x5a, r.chain.offsets[1]!, r.chain.offsets[1]! + 512);
    const len = r.device.handle(r.mem, r.chain);
    expect(at(r, 2, 3)).toBe(VIRTIO_BLK_S_OK);
    expect([at(r, 2, 0), at(r, 2, 1), at(r, 2, 2)]).toEqual([0xee, 0xee, 0xee]);
    expect(r.diskBytes[512]).toBe(0x5a);
    // Bytes it left alone come before the status: the length stops short of it
    // (an underestimate, VIRTIO 1.2 §2.7.8.2).
    expect(len).toBe(0);
  });

  it('the usual layouts (header | data... | status) are served as before', () => {
    const read = rig([{ len: 16 }, { len: 512, w: true }, { len: 1, w: true }]);
    putHeader(read.mem, read.chain, VIRTIO_BLK_T_IN, 5);
    expect(read.device.handle(read.mem, read.chain)).toBe(513);
    expect(at(read, 1, 0)).toBe(6);
    expect(at(read, 2, 0)).toBe(VIRTIO_BLK_S_OK);

    const write = rig([{ len: 16 }, { len: 512 }, { len: 512 }, { len: 1, w: true }]);
    putHeader(write.mem, write.chain, VIRTIO_BLK_T_OUT, 0);
    write.mem.fill(0x11, write.chain.offsets[1]!, write.chain.offsets[1]! + 512);
    write.mem.fill(0x22, write.chain.offsets[2]!, write.chain.offsets[2]! + 512);
    expect(write.device.handle(write.mem, write.chain)).toBe(1);
    expect([write.diskBytes[0], write.diskBytes[512], write.diskBytes[1024]]).toEqual([
      0x11, 0x22, 3,
    ]);

    const flush = rig([{ len: 16 }, { len: 1, w: true }]);
    putHeader(flush.mem, flush.chain, VIRTIO_BLK_T_FLUSH, 0);
    expect(flush.device.handle(flush.mem, flush.chain)).toBe(1);
    expect(at(flush, 1, 0)).toBe(VIRTIO_BLK_S_OK);
  });

  it('GET_ID: the NUL-padded serial in the 20 data bytes, then the status', () => {
    const r = rig([{ len: 16 }, { len: 20 + 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_GET_ID, 0);
    expect(r.device.handle(r.mem, r.chain)).toBe(21);
    const id = r.mem.subarray(r.chain.offsets[1]!, r.chain.offsets[1]! + 20);
    expect(id.toString('latin1')).toBe('audit-serial\0\0\0\0\0\0\0\0');
    expect(at(r, 1, 20)).toBe(VIRTIO_BLK_S_OK);
  });

  it('errors: past the capacity IOERR, an unknown type UNSUPP, readable after writable IOERR', () => {
    // QEMU virtio_blk_sect_range_ok() -> VIRTIO_BLK_S_IOERR; a type its switch has no
    // case for -> `default:` VIRTIO_BLK_S_UNSUPP.
    const past = rig([{ len: 16 }, { len: 512, w: true }, { len: 1, w: true }]);
    putHeader(past.mem, past.chain, VIRTIO_BLK_T_IN, 64);
    expect(past.device.handle(past.mem, past.chain)).toBe(0);
    expect(at(past, 2, 0)).toBe(VIRTIO_BLK_S_IOERR);
    expect(at(past, 1, 0)).toBe(0xee);

    const lifetime = rig([{ len: 16 }, { len: 6 + 1, w: true }]);
    putHeader(lifetime.mem, lifetime.chain, 10, 0); // VIRTIO_BLK_T_GET_LIFETIME: no QEMU case
    expect(lifetime.device.handle(lifetime.mem, lifetime.chain)).toBe(0);
    expect(at(lifetime, 1, 6)).toBe(VIRTIO_BLK_S_UNSUPP);

    const discard = rig([{ len: 16 }, { len: 16 }, { len: 1, w: true }]);
    putHeader(discard.mem, discard.chain, 11, 0); // VIRTIO_BLK_T_DISCARD, not offered here
    expect(discard.device.handle(discard.mem, discard.chain)).toBe(1);
    expect(at(discard, 2, 0)).toBe(VIRTIO_BLK_S_UNSUPP);

    // split-ring.tex: "The driver MUST place any device-writable descriptor elements
    // after any device-readable descriptor elements" (QEMU's virtqueue_split_pop():
    // "Incorrect order for descriptors").
    const order = rig([{ len: 16 }, { len: 512, w: true }, { len: 512 }, { len: 1, w: true }]);
    putHeader(order.mem, order.chain, VIRTIO_BLK_T_OUT, 0);
    order.device.handle(order.mem, order.chain);
    expect(at(order, 3, 0)).toBe(VIRTIO_BLK_S_IOERR);
    expect(order.diskBytes[0]).toBe(1);
  });

  it('fail() (a store error) puts IOERR in the last writable byte', () => {
    const r = rig([{ len: 16 }, { len: 512 + 1, w: true }]);
    putHeader(r.mem, r.chain, VIRTIO_BLK_T_IN, 0);
    expect(r.device.fail(r.mem, r.chain)).toBe(0);
    expect(at(r, 1, 512)).toBe(VIRTIO_BLK_S_IOERR);
    expect(at(r, 1, 0)).toBe(0xee);
  });
});

describe('driver virtqueue: the used-entry checks of Linux 6.12 virtqueue_get_buf_ctx_split()', () => {
  // drivers/virtio/virtio_ring.c (6.12.117), virtqueue_get_buf_ctx_split():
  //   if (unlikely(i >= vq->split.vring.num)) BAD_RING(vq, "id %u out of range\n", i);
  //   if (unlikely(!vq->split.desc_state[i].data)) BAD_RING(vq, "id %u is not a head!\n", i);
  // The guest here makes both checks; a bad entry faults and is skipped instead of
  // marking the whole queue broken as BAD_RING does.
  const size = 8;
  function queue() {
    const layout = layoutAt(0, size);
    const memory = new SharedArrayBuffer(layout.bytes + 4096);
    const vq = new GuestVirtqueue(memory, 0, layout);
    const u16 = new Uint16Array(memory);
    const u32 = new Uint32Array(memory);
    let usedIdx = 0;
    const push = (id: number, len: number) => {
      const slot = (layout.used >>> 2) + 1 + (usedIdx % size) * 2;
      u32[slot] = id;
      u32[slot + 1] = len;
      usedIdx = (usedIdx + 1) & 0xffff;
      Atomics.store(u16, (layout.used >>> 1) + 1, usedIdx);
    };
    const seen: string[] = [];
    const sink: UsedSink = {
      complete: (head, len) => seen.push(`ok ${head} ${len}`),
      fault: (kind, head) => seen.push(`${kind} ${String(head)}`),
    };
    return { vq, push, seen, sink };
  }

  it('an id past the queue, or one that is not the head of a chain in flight, is a fault', () => {
    const q = queue();
    const head = q.vq.addChain(3, [4096, 8192, 12288], [16, 512, 1], [0, 1, 1]);
    q.vq.publish();
    q.push(size, 1); // out of range
    q.push((head + 1) % size, 1); // not a head (the chain's second descriptor, or a free one)
    q.push(head, 514); // more than the 513 device-writable bytes
    q.vq.poll(q.sink);
    expect(q.seen).toEqual([
      'used_idx undefined', // three entries, one chain in flight
      'used_id undefined',
      'used_id undefined',
      `used_len ${head}`,
    ]);
  });

  it('a valid entry completes with its length; the same id again is a double completion', () => {
    const q = queue();
    const head = q.vq.addChain(3, [4096, 8192, 12288], [16, 512, 1], [0, 1, 1]);
    q.vq.publish();
    q.push(head, 513);
    q.vq.poll(q.sink);
    q.push(head, 513);
    q.vq.poll(q.sink);
    expect(q.seen).toEqual([`ok ${head} 513`, 'used_idx undefined', 'double_completion undefined']);
  });
});

describe('device queue: an available index moved past the ring breaks the queue', () => {
  // QEMU hw/virtio/virtio.c, virtqueue_num_heads(): `if (num_heads > vq->vring.num)
  // { virtio_error(vq->vdev, "Guest moved used index from %u to %u", ...); return
  // -EINVAL; }`; Linux 6.12.117 drivers/vhost/vhost.c, vhost_get_avail_idx(), makes
  // the same check ("Invalid available index change from %u to %u").
  const size = 8;
  function deviceQueue() {
    const layout = layoutAt(0, size);
    const memory = new SharedArrayBuffer(layout.bytes);
    const q = new DeviceQueue({
      memory,
      memBase: 0,
      queue: layout, // a VirtqueueLayout is the queue part of the device's spec
    });
    const u16 = new Uint16Array(memory);
    const setAvail = (idx: number) => Atomics.store(u16, (layout.avail >>> 1) + 1, idx);
    return { q, setAvail };
  }

  it('a full ring (size entries ahead) is served; one more entry is a broken queue', () => {
    const ok = deviceQueue();
    ok.setAvail(size);
    expect(ok.q.hasNew(ok.q.availIdx())).toBe(true);
    expect(ok.q.broken).toBe(false);

    const bad = deviceQueue();
    bad.setAvail(size + 1);
    expect(bad.q.hasNew(bad.q.availIdx())).toBe(false);
    expect(bad.q.broken).toBe(true);
    // Broken for good: even a plausible index takes nothing.
    bad.setAvail(1);
    expect(bad.q.hasNew(bad.q.availIdx())).toBe(false);
  });

  it('a broken queue sleeps on the doorbell rather than spinning on its index', () => {
    const bad = deviceQueue();
    bad.setAvail(0xffff); // 65535 entries "ahead"
    expect(bad.q.hasNew(bad.q.availIdx())).toBe(false);
    expect(bad.q.spin(bad.q.availIdx(), 50)).toBe(0xffff);
    const t0 = performance.now();
    bad.q.sleep(20);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
  });
});
