import { DmaDirection, PAGE_SIZE } from '../../swiotlb/constants.js';
import { BLK_HEADER_BYTES } from '../../virtio/blk-format.js';
import { DESC_SIZE } from '../../virtio/virtqueue-layout.js';
import type { ReplayObserver, TracedOp } from './replay-types.js';

/**
 * The traced workload, as `size --trace` and `bench --trace` need it: a
 * {@link ReplayObserver} that sees every map and unmap the replay reads (of the
 * devices kept) and keeps, per device, the mapping sizes by direction, the I/Os
 * they make up, the concurrency (mappings, bounced bytes and slots, I/Os live at
 * once) and the CPUs that mapped. job-shape.ts turns a device's profile into
 * the shape of a fio job (bssplit, rwmixread, iodepth, numjobs) and job-file
 * text.
 *
 * An I/O is what a driver submits at once, grouped from the mappings:
 *
 *   virtio-blk (virtio_queue_rq() -> virtblk_add_req() -> virtqueue_add_sgs(),
 *   one dma_map_page per sg entry, under the queue's lock with interrupts off,
 *   so on one CPU without interleaving):
 *       16-byte TO_DEVICE header   (struct virtio_blk_outhdr)
 *       data maps of >= 512 bytes  (the request's segments, any direction), or,
 *                                  right after the header, a smaller payload
 *                                  (discard / write-zeroes / secure-erase ranges,
 *                                  16 bytes each; GET_ID's 20 bytes): no data
 *       < 512-byte FROM_DEVICE     (the status byte; 16 bytes with zone append)
 *       the indirect table         a TO_DEVICE map of exactly 16 x the request's
 *                                  sg entries, right after its status: only when
 *                                  the device offers VIRTIO_RING_F_INDIRECT_DESC
 *                                  (QEMU's default), see below
 *   a dma_map_sg list              (one request's segments: NVMe, SCSI)
 *   any other map                  (a network buffer, ...): an I/O of its own
 *
 * The indirect table (drivers/virtio/virtio_ring.c, 6.1.192 and 6.12.117): with
 * the feature negotiated, virtqueue_use_indirect() (`vq->indirect && total_sg > 1
 * && vq->vq.num_free`) holds for every virtio-blk request (header and status make
 * total_sg >= 2), and virtqueue_add_split() (the packed ring's
 * virtqueue_add_indirect_packed() alike), after mapping the sg entries in order,
 * maps the kmalloc'd table: vring_map_single(vq, desc, total_sg * sizeof(struct
 * vring_desc), DMA_TO_DEVICE), a dma_map_single traced as dma_map_page. It is part
 * of the request (a map, maybe a bounce), never an I/O of its own; its unmap
 * (detach_buf_split(): the table first, then the entries) is the request's too.
 * When it fails, the driver unmaps the entries and requeues (the packed ring
 * retries at once with direct descriptors): the request counts as cut short.
 *
 * An I/O is live from its first map until its last mapping is released; a
 * request with no data (a flush, a discard) is counted, not sized. Rules: `open`
 * holds at most one unfinished virtio-blk request per (device, CPU), `closed` the
 * request whose status was that CPU's last map of the device (its table may come
 * next); every id of a live mapping maps to its I/O in `ioOf` until its unmap.
 */

/**
 * Mappings smaller than this are control structures, not data: virtio-blk maps
 * a 16-byte request header and a 1-byte status around each request's data.
 */
export const DATA_MIN_BYTES = 512;

export interface DeviceProfile {
  device: string;
  maps: number;
  bounced: number;
  /** Bounced outside the pool replayed (grown, transient or other pools). */
  outside: number;
  /** Maps the kernel failed (dma_addr=ffffffffffffffff). */
  failed: number;
  sgEntries: number;
  /** Coherent allocations (dma_alloc) in the pool. */
  allocs: number;
  /** Mapping size -> count, per direction of the mapping. */
  sizes: {
    toDevice: Map<number, number>;
    fromDevice: Map<number, number>;
    bidirectional: Map<number, number>;
  };
  /** I/O size (bytes of data) -> count: reads (FROM_DEVICE data) and writes (TO_DEVICE, BIDIRECTIONAL). */
  ioSizes: { read: Map<number, number>; write: Map<number, number> };
  /**
   * I/Os by kind: virtio-blk requests, scatter-gather lists, single maps; of those,
   * requests without data (flushes) and requests cut short by a failed map (retried later).
   */
  ios: { blk: number; sg: number; single: number; flushes: number; aborted: number };
  /** Most mappings live at once (bounced or not). */
  liveMax: number;
  /** Most I/Os live at once. */
  liveIosMax: number;
  /** Most bounced bytes live at once. */
  liveBouncedBytesMax: number;
  /** Most slots the kernel's bounced mappings held at once. */
  liveBouncedSlotsMax: number;
  /** Largest mapping. */
  largest: number;
  /** Data maps (of at least {@link DATA_MIN_BYTES}), and those whose buffer does not start on a page. */
  dataMaps: number;
  unaligned: number;
  /** The device's min_align_mask as the replay was told it. */
  minAlignMask: number;
  cpus: Set<number>;
  firstTs: number;
  lastTs: number;
}

interface Io {
  /** Its mappings still live. */
  maps: number;
  /** Maps made for it: a virtio-blk request's sg entries (header, payload or data, status). */
  entries: number;
  bytes: number;
  read: boolean;
  kind: 'blk' | 'sg' | 'single';
  /** A virtio-blk request still taking maps (before its status). */
  open: boolean;
  /** One of its maps failed: the driver retries the whole request later. */
  aborted?: boolean;
}

interface DeviceState extends DeviceProfile {
  live: number;
  liveIos: number;
  liveBytes: number;
  liveSlots: number;
  /** Line of the dma_map_sg whose entries the current sg I/O gathers. */
  sgLine: number;
  sgIo: Io | undefined;
}

function bump(m: Map<number, number>, key: number): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

function newIo(kind: Io['kind'], bytes: number, read: boolean): Io {
  return { maps: 0, entries: 0, bytes, read, kind, open: false };
}

/**
 * `op` is the indirect descriptor table of `req`, the virtio-blk request whose
 * status was the last map on its CPU: a TO_DEVICE single map of exactly
 * total_sg * sizeof(struct vring_desc) bytes, total_sg being the request's sg
 * entries (>= 2: header and status).
 */
function isIndirectTable(op: TracedOp, req: Io): boolean {
  return (
    req.kind === 'blk' &&
    req.entries >= 2 &&
    !op.sg &&
    op.kind === 'map' &&
    op.dir === DmaDirection.TO_DEVICE &&
    op.size === req.entries * DESC_SIZE
  );
}

/**
 * A payload smaller than a data map, right after a virtio-blk header: anything
 * but the status byte that a request without data would map next (discard and
 * write-zeroes ranges are 16 bytes each, TO_DEVICE; secure erase's go FROM_DEVICE,
 * its type lacking VIRTIO_BLK_T_OUT; GET_ID's ID buffer is 20 bytes FROM_DEVICE).
 */
function isPayload(op: TracedOp): boolean {
  return (
    op.kind === 'map' &&
    op.size < DATA_MIN_BYTES &&
    !(op.dir === DmaDirection.FROM_DEVICE && op.size === 1)
  );
}

export class TraceProfile implements ReplayObserver {
  private readonly devices = new Map<string, DeviceState>();
  /** Mapping id -> its I/O, while live. */
  private readonly ioOf = new Map<number, Io>();
  /** `device|cpu` -> the virtio-blk request being mapped there. */
  private readonly open = new Map<string, Io>();
  /** `device|cpu` -> the virtio-blk request whose status was the last map there. */
  private readonly closed = new Map<string, Io>();

  onMap(op: TracedOp): void {
    const d = this.device(op);
    d.maps++;
    const key = `${op.device}|${op.cpu}`;
    // The indirect table comes right after the status, or not at all.
    const done = this.closed.get(key);
    this.closed.delete(key);
    if (op.failed) {
      // No mapping was made: the driver undoes the request's maps and retries it
      // (virtio-blk requeues with BLK_STS_RESOURCE), seen as a new request later.
      d.failed++;
      const req = this.open.get(key);
      if (req) req.aborted = true;
      else if (done && isIndirectTable(op, done)) this.abortFinished(d, done);
      return;
    }
    if (op.kind === 'alloc') {
      d.allocs++;
      return;
    }
    if (op.bounced) {
      if (op.outside) d.outside++;
      else d.bounced++;
      d.liveBytes += op.size;
      d.liveSlots += op.slots;
      if (d.liveBytes > d.liveBouncedBytesMax) d.liveBouncedBytesMax = d.liveBytes;
      if (d.liveSlots > d.liveBouncedSlotsMax) d.liveBouncedSlotsMax = d.liveSlots;
    }
    if (op.sg) d.sgEntries++;
    bump(
      op.dir === DmaDirection.TO_DEVICE
        ? d.sizes.toDevice
        : op.dir === DmaDirection.FROM_DEVICE
          ? d.sizes.fromDevice
          : d.sizes.bidirectional,
      op.size,
    );
    if (op.size > d.largest) d.largest = op.size;
    if (op.size >= DATA_MIN_BYTES) {
      d.dataMaps++;
      if (op.phys % PAGE_SIZE !== 0) d.unaligned++;
    }
    d.cpus.add(op.cpu);
    d.live++;
    if (d.live > d.liveMax) d.liveMax = d.live;
    const io = this.ioFor(d, op, key, done);
    io.maps++;
    this.ioOf.set(op.id, io);
  }

  onUnmap(op: TracedOp): void {
    const d = this.device(op);
    // Unmaps of mappings made before the trace would take the counts below zero.
    if (d.live > 0) d.live--;
    if (op.bounced) {
      d.liveBytes = Math.max(0, d.liveBytes - op.size);
      d.liveSlots = Math.max(0, d.liveSlots - op.slots);
    }
    const io = this.ioOf.get(op.id);
    if (io === undefined) return;
    this.ioOf.delete(op.id);
    if (--io.maps === 0 && !io.open) d.liveIos--;
  }

  result(): DeviceProfile[] {
    for (const [key, io] of this.open) {
      this.close(this.devices.get(key.slice(0, key.lastIndexOf('|')))!, io);
    }
    this.open.clear();
    this.closed.clear();
    for (const d of this.devices.values()) {
      if (d.sgIo) this.finish(d, d.sgIo);
      d.sgIo = undefined;
    }
    return [...this.devices.values()].map(
      ({ live: _l, liveIos: _i, liveBytes: _b, liveSlots: _s, sgLine: _g, sgIo: _o, ...p }) => p,
    );
  }

  /**
   * The I/O a mapping belongs to (see the grouping rules at the top of this file);
   * `done` is the request whose status was the last map on `key`.
   */
  private ioFor(d: DeviceState, op: TracedOp, key: string, done: Io | undefined): Io {
    const read = op.dir === DmaDirection.FROM_DEVICE;
    if (d.sgIo !== undefined) {
      // The entries of one dma_map_sg come in a row, with its line.
      if (op.sg && d.sgLine === op.line) {
        d.sgIo.bytes += op.size;
        return d.sgIo;
      }
      this.finish(d, d.sgIo);
      d.sgIo = undefined;
    }
    if (op.sg) {
      d.sgLine = op.line;
      d.sgIo = this.start(d, newIo('sg', op.size, read));
      return d.sgIo;
    }
    // The request's indirect descriptor table: a map of it, not an I/O.
    if (done !== undefined && done.maps > 0 && isIndirectTable(op, done)) return done;
    const req = this.open.get(key);
    if (req && !req.aborted && req.entries === 1 && isPayload(op)) {
      // Right after the header: a discard's (write-zeroes', secure erase's) ranges or
      // GET_ID's buffer, not the status byte; the request still has no data.
      req.entries++;
      return req;
    }
    if (op.size === BLK_HEADER_BYTES && op.dir === DmaDirection.TO_DEVICE) {
      if (req) this.close(d, req);
      const io = this.start(d, { ...newIo('blk', 0, false), entries: 1, open: true });
      this.open.set(key, io);
      return io;
    }
    if (req && op.size >= DATA_MIN_BYTES) {
      if (req.bytes === 0) req.read = read;
      req.bytes += op.size;
      req.entries++;
      return req;
    }
    if (req && op.dir === DmaDirection.FROM_DEVICE) {
      // The status byte: the request is complete (but for its indirect table).
      req.entries++;
      this.open.delete(key);
      this.close(d, req);
      this.closed.set(key, req);
      return req;
    }
    const io = this.start(d, newIo('single', op.size, read));
    this.finish(d, io);
    return io;
  }

  private start(d: DeviceState, io: Io): Io {
    d.liveIos++;
    if (d.liveIos > d.liveIosMax) d.liveIosMax = d.liveIos;
    return io;
  }

  /** Counts a finished I/O by kind and size. */
  private finish(d: DeviceState, io: Io): void {
    d.ios[io.kind]++;
    if (io.aborted) {
      d.ios.aborted++;
      return;
    }
    if (io.bytes === 0) {
      d.ios.flushes++;
      return;
    }
    bump(io.read ? d.ioSizes.read : d.ioSizes.write, io.bytes);
  }

  /** A finished request whose indirect table failed to map: the driver retries it later. */
  private abortFinished(d: DeviceState, io: Io): void {
    if (io.aborted) return;
    io.aborted = true;
    d.ios.aborted++;
    if (io.bytes === 0) {
      d.ios.flushes--;
      return;
    }
    const m = io.read ? d.ioSizes.read : d.ioSizes.write;
    const n = (m.get(io.bytes) ?? 0) - 1;
    if (n > 0) m.set(io.bytes, n);
    else m.delete(io.bytes);
  }

  /** A virtio-blk request whose maps are all made (or cut short by the next header). */
  private close(d: DeviceState, io: Io): void {
    if (!io.open) return;
    io.open = false;
    this.finish(d, io);
    if (io.maps === 0) d.liveIos--;
  }

  private device(op: TracedOp): DeviceState {
    let d = this.devices.get(op.device);
    if (!d) {
      d = {
        device: op.device,
        maps: 0,
        bounced: 0,
        outside: 0,
        failed: 0,
        sgEntries: 0,
        allocs: 0,
        sizes: { toDevice: new Map(), fromDevice: new Map(), bidirectional: new Map() },
        ioSizes: { read: new Map(), write: new Map() },
        ios: { blk: 0, sg: 0, single: 0, flushes: 0, aborted: 0 },
        liveMax: 0,
        liveIosMax: 0,
        liveBouncedBytesMax: 0,
        liveBouncedSlotsMax: 0,
        largest: 0,
        dataMaps: 0,
        unaligned: 0,
        minAlignMask: op.minAlignMask,
        cpus: new Set(),
        firstTs: op.ts,
        lastTs: op.ts,
        live: 0,
        liveIos: 0,
        liveBytes: 0,
        liveSlots: 0,
        sgLine: -1,
        sgIo: undefined,
      };
      this.devices.set(op.device, d);
    }
    d.lastTs = op.ts;
    return d;
  }
}
