import { DmaDirection, PAGE_SIZE } from '../../swiotlb/constants.js';
import { BLK_HEADER_BYTES } from '../../virtio/blk-format.js';
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
 *   virtio-blk (virtio_queue_rq() -> virtqueue_add_sgs(), one dma_map_page per
 *   sg entry, under the queue's lock, so on one CPU without interleaving):
 *       16-byte TO_DEVICE header   (struct virtio_blk_outhdr)
 *       data maps of >= 512 bytes  (the request's segments, any direction)
 *       < 512-byte FROM_DEVICE     (the status byte; 16 bytes with zone append)
 *   a dma_map_sg list              (one request's segments: NVMe, SCSI)
 *   any other map                  (a network buffer, ...): an I/O of its own
 *
 * An I/O is live from its first map until its last mapping is released; a
 * request with no data (a flush) is counted, not sized. Rules: `open` holds at
 * most one unfinished virtio-blk request per (device, CPU); every id of a live
 * mapping maps to its I/O in `ioOf` until its unmap.
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
  maps: number;
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

export class TraceProfile implements ReplayObserver {
  private readonly devices = new Map<string, DeviceState>();
  /** Mapping id -> its I/O, while live. */
  private readonly ioOf = new Map<number, Io>();
  /** `device|cpu` -> the virtio-blk request being mapped there. */
  private readonly open = new Map<string, Io>();

  onMap(op: TracedOp): void {
    const d = this.device(op);
    d.maps++;
    if (op.failed) {
      // No mapping was made: the driver undoes the request's maps and retries it
      // (virtio-blk requeues with BLK_STS_RESOURCE), seen as a new request later.
      d.failed++;
      const req = this.open.get(`${op.device}|${op.cpu}`);
      if (req) req.aborted = true;
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
    const io = this.ioFor(d, op);
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
    for (const d of this.devices.values()) {
      if (d.sgIo) this.finish(d, d.sgIo);
      d.sgIo = undefined;
    }
    return [...this.devices.values()].map(
      ({ live: _l, liveIos: _i, liveBytes: _b, liveSlots: _s, sgLine: _g, sgIo: _o, ...p }) => p,
    );
  }

  /** The I/O a mapping belongs to (see the grouping rules at the top of this file). */
  private ioFor(d: DeviceState, op: TracedOp): Io {
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
      d.sgIo = this.start(d, { maps: 0, bytes: op.size, read, kind: 'sg', open: false });
      return d.sgIo;
    }
    const key = `${op.device}|${op.cpu}`;
    const req = this.open.get(key);
    if (op.size === BLK_HEADER_BYTES && op.dir === DmaDirection.TO_DEVICE) {
      if (req) this.close(d, req);
      const io = this.start(d, { maps: 0, bytes: 0, read: false, kind: 'blk', open: true });
      this.open.set(key, io);
      return io;
    }
    if (req && op.size >= DATA_MIN_BYTES) {
      if (req.bytes === 0) req.read = read;
      req.bytes += op.size;
      return req;
    }
    if (req && op.dir === DmaDirection.FROM_DEVICE) {
      // The status byte: the request is complete.
      this.open.delete(key);
      this.close(d, req);
      return req;
    }
    const io = this.start(d, { maps: 0, bytes: op.size, read, kind: 'single', open: false });
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
