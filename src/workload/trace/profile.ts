import { DmaDirection, PAGE_SIZE } from '../../swiotlb/constants.js';
import { BLK_HEADER_BYTES } from '../../virtio/blk-format.js';
import { DESC_SIZE } from '../../virtio/virtqueue-layout.js';
import { IoPeak } from './io-peak.js';
import type { ReplayObserver, TracedOp } from './replay-types.js';
import { type Entry, MAX_TABLE_ENTRIES, tableEntries } from './virtq-table.js';

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
 *   another virtqueue buffer       (a virtio-net packet of several sg entries, a
 *   with its indirect table         big-packets receive buffer, a control command;
 *                                  virtq-table.ts): its entries, the last maps of
 *                                  the device on that CPU, and the TO_DEVICE table
 *                                  of 16 bytes per entry right after them, counted
 *                                  as an sg I/O
 *   any other map                  (a one-entry packet or receive buffer, a map of
 *                                  a buffer of several entries without a table
 *                                  (the device offers no indirect descriptors, or
 *                                  a table the rules below cannot tell), a
 *                                  non-virtio driver's map): an I/O of its own
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
 * Other virtqueue buffers have no header or status to anchor them, so until the
 * next map of the device on that CPU shows whether a table follows, a map that may
 * be an entry of one is pending: counted live as an I/O of its own (IoPeak keeps
 * the peak exact when a table then groups its entries), not yet counted by kind and
 * size. A pending map stops being one, as a single I/O, when its own unmap or a
 * later pending map's comes (its buffer was complete: a table is mapped before the
 * buffer is exposed), when the device maps anything else on that CPU (a virtio-blk
 * map, a dma_map_sg, a BIDIRECTIONAL map), when a table takes later maps (it was
 * added before them), when it is more than MAX_TABLE_ENTRIES maps back, or when
 * more than {@link STALE_STARTS} / 2 I/Os of its device have started since (checked
 * once STALE_STARTS samples wait: an add maps its entries and table in one call).
 * A table that fails to map cuts its buffer short (virtio-net drops the packet).
 *
 * An I/O is live from its first map until its last mapping is released; a
 * request with no data (a flush, a discard) is counted, not sized. Rules: `open`
 * holds at most one unfinished virtio-blk request per (device, CPU), `closed` the
 * request whose status was that CPU's last map of the device (its table may come
 * next); every id of a live mapping maps to its I/O in `ioOf` until its unmap; a
 * device's `runs` hold, per CPU, its pending maps in map order (each live, of a
 * single TO_DEVICE or FROM_DEVICE map, its I/O started and marked `pendingOn` that
 * CPU, in no other I/O; at most MAX_TABLE_ENTRIES; no empty run is kept).
 */

/**
 * Samples IoPeak may keep for a device: past them, maps pending while more than
 * half as many I/Os of the device started are taken for buffers of one entry (a
 * virtqueue add maps its entries and its table in one call, in microseconds, while
 * the device's other CPUs cannot start thousands of I/Os).
 */
export const STALE_STARTS = 4096;

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
   * I/Os by kind: virtio-blk requests, scatter-gather lists (a dma_map_sg list, or a
   * virtqueue buffer's entries with their indirect table), single maps; of those,
   * requests without data (flushes) and requests cut short by a failed map (retried
   * later, or a dropped packet).
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
  /** A pending map's tentative I/O: the CPU whose run holds the map. */
  pendingOn?: number;
}

/** A pending map: maybe an entry of a virtqueue buffer whose indirect table is to come. */
interface Pending extends Entry {
  id: number;
  /** Its tentative single I/O, started. */
  io: Io;
  /** The number IoPeak gave its start. */
  start: number;
}

interface DeviceState extends DeviceProfile {
  live: number;
  /** Live I/Os and their peak (liveIosMax is its max once the profile is read). */
  peak: IoPeak;
  /** CPU -> its pending maps, oldest first (see the rules at the top of this file). */
  runs: Map<number, Pending[]>;
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
      else this.failedTable(d, op);
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
    // Its buffer was complete: no table is to come for it or the maps before it.
    if (io.pendingOn !== undefined) this.resolveThrough(d, io);
    this.ioOf.delete(op.id);
    if (--io.maps === 0 && !io.open) d.peak.down();
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
      for (const cpu of [...d.runs.keys()]) this.resolve(d, cpu);
      d.peak.settle(Number.POSITIVE_INFINITY);
      d.liveIosMax = d.peak.max;
    }
    return [...this.devices.values()].map(
      ({
        live: _l,
        peak: _p,
        runs: _r,
        liveBytes: _b,
        liveSlots: _s,
        sgLine: _g,
        sgIo: _o,
        ...p
      }) => p,
    );
  }

  /**
   * The I/O a mapping belongs to (see the grouping rules at the top of this file);
   * `done` is the request whose status was the last map on `key`.
   */
  private ioFor(d: DeviceState, op: TracedOp, key: string, done: Io | undefined): Io {
    const io = this.driverIo(d, op, key, done);
    if (io === undefined) return this.virtqIo(d, op);
    // A map of another kind on that CPU: no virtqueue buffer is being added there.
    this.resolve(d, op.cpu);
    return io;
  }

  /** The I/O of a dma_map_sg entry or a virtio-blk request's map; undefined for any other map. */
  private driverIo(
    d: DeviceState,
    op: TracedOp,
    key: string,
    done: Io | undefined,
  ): Io | undefined {
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
    return undefined;
  }

  /**
   * Any other map: the indirect table of the pending maps before it (virtq-table.ts),
   * or a single I/O, pending when it may be a virtqueue buffer's entry.
   */
  private virtqIo(d: DeviceState, op: TracedOp): Io {
    const run = d.runs.get(op.cpu);
    const k = run === undefined ? 0 : tableEntries(run, op);
    if (k > 0) return this.group(d, op.cpu, k, false);
    const io = newIo('single', op.size, op.dir === DmaDirection.FROM_DEVICE);
    if (op.dir !== DmaDirection.TO_DEVICE && op.dir !== DmaDirection.FROM_DEVICE) {
      // virtqueues map only these two directions.
      this.resolve(d, op.cpu);
      this.start(d, io);
      this.finish(d, io);
      return io;
    }
    // No table covers more entries: the oldest was a buffer of its own.
    if (run !== undefined && run.length >= MAX_TABLE_ENTRIES) this.resolve(d, op.cpu, 1);
    io.pendingOn = op.cpu;
    const entry: Pending = { id: op.id, size: op.size, dir: op.dir, io, start: d.peak.up(true) };
    const now = d.runs.get(op.cpu);
    if (now) now.push(entry);
    else d.runs.set(op.cpu, [entry]);
    if (d.peak.waiting > STALE_STARTS) this.resolveStale(d);
    return io;
  }

  /**
   * The last `k` pending maps of `cpu` are one virtqueue buffer's entries and the map
   * being made (or failed: `failed`) is its indirect table: one sg I/O, read when it
   * moves more bytes from the device than to it. The maps pending before them were
   * buffers of their own (added before, without a table).
   */
  private group(d: DeviceState, cpu: number, k: number, failed: boolean): Io {
    const run = d.runs.get(cpu)!;
    const entries = run.splice(run.length - k, k);
    const io = newIo('sg', 0, false);
    io.maps = k;
    io.entries = k;
    if (failed) io.aborted = true;
    let fromDevice = 0;
    for (const e of entries) {
      io.bytes += e.size;
      if (e.dir === DmaDirection.FROM_DEVICE) fromDevice += e.size;
      this.ioOf.set(e.id, io);
    }
    io.read = fromDevice * 2 > io.bytes;
    d.peak.group(entries.map((e) => e.start));
    this.resolve(d, cpu);
    this.finish(d, io);
    return io;
  }

  /** A failed map: the table of the pending maps before it (the buffer is cut short), or their end. */
  private failedTable(d: DeviceState, op: TracedOp): void {
    const run = d.runs.get(op.cpu);
    const k = run === undefined ? 0 : tableEntries(run, op);
    if (k > 0) this.group(d, op.cpu, k, true);
    else this.resolve(d, op.cpu);
  }

  /** The first `n` pending maps of `cpu` (all by default) are buffers of their own: single I/Os. */
  private resolve(d: DeviceState, cpu: number, n = Number.POSITIVE_INFINITY): void {
    const run = d.runs.get(cpu);
    if (run === undefined) return;
    for (const e of run.splice(0, n)) {
      e.io.pendingOn = undefined;
      this.finish(d, e.io);
    }
    if (run.length === 0) d.runs.delete(cpu);
    let oldest = Number.POSITIVE_INFINITY;
    for (const r of d.runs.values()) oldest = Math.min(oldest, r[0]!.start);
    d.peak.settle(oldest);
  }

  /** The pending map of `io` was unmapped: it and the maps pending before it on its CPU were buffers of their own. */
  private resolveThrough(d: DeviceState, io: Io): void {
    const cpu = io.pendingOn!;
    const run = d.runs.get(cpu)!;
    this.resolve(d, cpu, run.findIndex((e) => e.io === io) + 1);
  }

  /** Pending maps that {@link STALE_STARTS} / 2 I/O starts or more have followed: buffers of their own. */
  private resolveStale(d: DeviceState): void {
    const cut = d.peak.next - STALE_STARTS / 2;
    for (const [cpu, run] of [...d.runs]) {
      const n = run.findIndex((e) => e.start >= cut);
      this.resolve(d, cpu, n < 0 ? run.length : n);
    }
  }

  private start(d: DeviceState, io: Io): Io {
    d.peak.up(false);
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
    if (io.maps === 0) d.peak.down();
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
        peak: new IoPeak(),
        runs: new Map(),
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
