/**
 * One sizing simulation: a job's allocation pattern replayed against a pool built
 * and searched as a given kernel does (placement only: no copies, no threads, no
 * clock), so the same job, pool, seed and step count always give the same answer.
 *
 * What is placed, as Linux's virtio-blk places it (and, but for the indirect
 * table, this service's BlkDriver in bounce mode):
 * - per queue (one per numjobs clone), its virtqueue, when the pool holds the
 *   virtqueues (`queuesInPool`): dma_alloc_coherent() -> swiotlb_alloc(), the
 *   coherent path (pool.tryAlloc: page-aligned size, aligned to its order), for
 *   the whole run, starting in area q mod nareas. A restricted-dma-pool holds
 *   them (rmem_swiotlb_device_init() sets for_alloc) and so does this service's
 *   pool; Linux's default pool never does (dma_direct_alloc() takes ordinary
 *   pages, decrypted in a confidential guest);
 * - per request: the 16-byte virtio-blk header, the data split at the max
 *   mapping size (256 KiB less the min_align_mask padding), and the 1-byte
 *   status, each its own mapping (with the device's min_align_mask), all or
 *   nothing, as virtqueue_add_split() maps them (drivers/virtio/virtio_ring.c:
 *   a failed map unmaps the others and returns -ENOMEM); the guest buffers sit
 *   where the device puts them (header at slot*REQUEST_CTL_BYTES of a
 *   page-aligned block, data at slot*maxRequestBytes), so the min_align_mask
 *   padding is the real one;
 * - with `indirect` (VIRTIO_RING_F_INDIRECT_DESC negotiated: QEMU offers it by
 *   default), then the request's indirect descriptor table, TO_DEVICE, of
 *   total_sg * 16 bytes (total_sg = header + data segments + status):
 *   virtqueue_use_indirect() (`vq->indirect && total_sg > 1 && vq->vq.num_free`)
 *   holds for every virtio-blk request, and virtqueue_add_split() maps the table
 *   after the entries (`vring_map_single(vq, desc, total_sg * sizeof(struct
 *   vring_desc), DMA_TO_DEVICE)`; 6.1.192 and 6.12.117, the packed ring alike);
 *   detach_buf_split() unmaps it first. The table is kmalloc'd: placed at an
 *   offset aligned to its size rounded up to a power of two, as kmalloc's
 *   power-of-two caches place it, it takes one slot up to 2 KiB (126 data
 *   segments). This service's own driver (BlkDriver) uses direct descriptor
 *   chains: its pool (sizing.ts' service pool) is simulated without tables.
 *
 * A full pool, as Linux's virtio-blk meets it: virtio_queue_rq() returns
 * BLK_STS_RESOURCE and blk-mq requeues the request on its hardware queue (one
 * per clone here), whose later requests wait behind it. A step completes the
 * live request due first (completions come out of order), unmaps it, runs the
 * completing clone's line first (blk_mq_sched_restart()), then the other
 * clones' lines (their BLK_MQ_RESOURCE_DELAY runs: the model has no clock, and a
 * completion is the only moment slots come back), each in order until one does
 * not fit, and issues the completed slot's next request. Service times are
 * exponential with a mean of 1 + size/16 KiB units, so large requests stay
 * mapped longer, as their copies do.
 */

import { isMediatorError } from '../errors.js';
import { deviceGuestLayout, REQUEST_CTL_BYTES } from '../mediator/blk-options.js';
import { GUEST_DEFAULTS } from '../mediator/defaults.js';
import { DmaDirection, PAGE_SIZE } from '../swiotlb/constants.js';
import { DynamicPool } from '../swiotlb/dynamic.js';
import { type Geometry, roundUpPowerOfTwo } from '../swiotlb/geometry.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../swiotlb/kernel.js';
import { SwiotlbPool } from '../swiotlb/pool.js';
import { BLK_HEADER_BYTES } from '../virtio/blk-format.js';
import { DESC_SIZE, virtqueueBytes } from '../virtio/virtqueue-layout.js';
import { type FioJob, type JobFile, jobDirections, pickSize, prng } from './fio-job.js';
import { maxRequestBytesFor, queueSizeFor } from './job-config.js';

export interface SimOptions {
  /**
   * Default pool: the kernel parameter's nslabs (`swiotlb=<slots>,<areas>`),
   * rounded as the kernel rounds it. Restricted pool: its exact slot count.
   */
  slots: number;
  /**
   * Default pool: `swiotlb=<slots>,<areas>`, rounded up to a power of two.
   * Ignored for a restricted pool (one area).
   * @default 1
   */
  areas?: number;
  /**
   * A device-tree restricted-dma-pool of exactly `slots` slots in one area.
   * @default false
   */
  restricted?: boolean;
  /** @default '6.10' */
  kernel?: KernelVersion;
  /**
   * CONFIG_SWIOTLB_DYNAMIC (6.6 and later): a default pool that takes transient
   * pools and grows when full instead of failing the map.
   * @default false
   */
  dynamic?: boolean;
  /**
   * The virtqueues are coherent allocations from the pool (restricted pools and
   * this service's pools); false for Linux's default pool.
   * @default true
   */
  queuesInPool?: boolean;
  /**
   * The guest's virtio-blk device offers VIRTIO_RING_F_INDIRECT_DESC (QEMU's
   * default): each request also maps its indirect descriptor table (total_sg x 16
   * bytes, TO_DEVICE) after its status. False: direct descriptor chains (QEMU's
   * `indirect_desc=off`, and this service's own driver).
   * @default true
   */
  indirect?: boolean;
  /** Completions simulated after the queues first fill. @default 4000 */
  steps?: number;
  /** @default 1 */
  seed?: number;
}

export interface SimResult {
  kind: 'default' | 'restricted';
  kernel: KernelVersion;
  nslabs: number;
  nareas: number;
  bytes: number;
  /** Slots the virtqueues hold (0 when they are not in the pool). */
  queue_slots: number;
  /** False when the virtqueues themselves do not fit: the device could not start. */
  queues_fit: boolean;
  /** Requests issued. */
  requests: number;
  /**
   * Requests that found the pool full when dispatched ("swiotlb buffer is full"),
   * each counted once: virtio-blk returned BLK_STS_RESOURCE and blk-mq requeued them.
   */
  requeues: number;
  /** Requests held: requeued, or behind a requeued one on their queue. */
  waits: number;
  /** Longest line of held requests, all queues together. */
  max_waiting: number;
  /** Every request waited and none was live: the pool cannot hold even one request. */
  stalled: boolean;
  /**
   * Requests the kernel would never finish (6.1's endless search:
   * SWIOTLB_KERNEL_WOULD_HANG) or would place past the pool's end
   * (SWIOTLB_KERNEL_OVERRUN); each is counted, then treated as a full pool.
   */
  kernel_defects: number;
  used_hiwater: number;
  used_hiwater_percent: number;
  /** With `dynamic`: what CONFIG_SWIOTLB_DYNAMIC did instead of "buffer is full". */
  dynamic?: {
    /** Mappings that got a transient pool of their own (swiotlb_alloc_pool()). */
    transient_maps: number;
    /** Growths of the pool (swiotlb_dyn_alloc()). */
    growths: number;
    /** mem->nslabs at the end: the default pool and its growths. */
    nslabs_after: number;
  };
}

interface CloneShape {
  job: FioJob;
  queue: number;
  depth: number;
  segment: number;
  maxReq: number;
  ctlBase: number;
  dataBase: number;
  /** The requests' indirect tables: slot*tableStride from here. */
  tableBase: number;
  /** The largest table's size rounded up to a power of two (kmalloc's alignment). */
  tableStride: number;
}

interface Req {
  clone: number;
  slot: number;
  len: number;
  isRead: boolean;
  tlb: number[];
  sizes: number[];
  dirs: DmaDirection[];
  /** Its last mapping is its indirect table (unmapped first). */
  table: boolean;
  /** Simulated completion time (set when it goes live). */
  doneAt: number;
}

/** The pool the simulation places in: a plain pool, or a growable one. */
interface SimPool {
  readonly geometry: Geometry;
  /** A streaming map; -1 when the pool is full. */
  tryMap(orig: number, size: number, dir: DmaDirection, area: number, mask: number): number;
  unmap(tlb: number, size: number, dir: DmaDirection): void;
  /** A coherent allocation; -1 when the pool is full. */
  tryAlloc(size: number, area: number, mask: number): number;
  used(): number;
  hiwater(): number;
}

function plainPool(pool: SwiotlbPool): SimPool {
  return {
    geometry: pool.geometry,
    tryMap: (orig, size, dir, area, minAlignMask) =>
      pool.tryAllocate(orig, size, dir, { minAlignMask, area }),
    unmap: (tlb, size, dir) => pool.release(tlb, size, dir),
    tryAlloc: (size, area, minAlignMask) => pool.tryAlloc(size, { area, minAlignMask }),
    used: () => pool.used(),
    hiwater: () => pool.stats().used_hiwater,
  };
}

/** A growable pool; `transient` counts the maps that landed in a transient pool. */
function dynamicPool(pool: DynamicPool, counts: { transient: number }): SimPool {
  const full = (f: () => number): number => {
    try {
      return f();
    } catch (err) {
      if (isMediatorError(err, 'SWIOTLB_POOL_FULL')) return -1;
      throw err;
    }
  };
  return {
    geometry: pool.geometry,
    tryMap: (orig, size, dir, area, minAlignMask) => {
      const tlb = full(() => pool.map(orig, size, dir, { minAlignMask, area }));
      if (tlb >= 0 && pool.partOf(tlb) === 'transient') counts.transient++;
      return tlb;
    },
    unmap: (tlb, size, dir) => pool.unmap(tlb, size, dir),
    tryAlloc: (size, area, minAlignMask) => full(() => pool.alloc(size, { area, minAlignMask })),
    used: () => pool.used(),
    hiwater: () => pool.stats().used_hiwater,
  };
}

function shapes(jf: JobFile): CloneShape[] {
  const out: CloneShape[] = [];
  // Guest memory laid out as BlkQueue reserves it: per queue, the request
  // headers, then the data buffers, each block page aligned.
  let next = GUEST_DEFAULTS.base;
  const page = (n: number) => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
  for (const job of jf.jobs) {
    const maxReq = maxRequestBytesFor(job);
    const layout = deviceGuestLayout(
      {
        queues: job.numjobs,
        queueSize: queueSizeFor(job, maxReq),
        depth: job.iodepth,
        maxRequestBytes: maxReq,
        minAlignMask: job.minAlignMask,
      },
      'bounce',
    );
    for (let q = 0; q < job.numjobs; q++) {
      const ctlBase = next;
      next += page(layout.depth * REQUEST_CTL_BYTES);
      const dataBase = next;
      next += page(layout.depth * maxReq);
      // Header + data segments + status, 16 bytes each (struct vring_desc).
      const maxTable = (2 + Math.ceil(maxReq / layout.segmentBytes)) * DESC_SIZE;
      out.push({
        job,
        queue: q,
        depth: layout.depth,
        segment: layout.segmentBytes,
        maxReq,
        ctlBase,
        dataBase,
        tableBase: 0,
        tableStride: roundUpPowerOfTwo(maxTable),
      });
    }
  }
  // The tables after every queue's blocks, so the headers and data sit where they always did.
  for (const c of out) {
    c.tableBase = next;
    next += page(c.depth * c.tableStride);
  }
  return out;
}

const KERNEL_DEFECTS = ['SWIOTLB_KERNEL_WOULD_HANG', 'SWIOTLB_KERNEL_OVERRUN'] as const;

/**
 * One simulation's state: the pool, the clones' shapes, the live requests (in no
 * order; the one due first is searched for) and one line of held requests per
 * clone (FIFO: lines[c][heads[c]..], compacted now and then). Every random draw
 * comes from one seeded stream, in a fixed order, so a run is reproducible.
 */
class Simulation {
  readonly result: SimResult;
  private readonly pool: SimPool;
  private readonly dyn: DynamicPool | undefined;
  private readonly counts = { transient: 0 };
  private readonly nareas: number;
  private readonly clones: CloneShape[];
  private readonly indirect: boolean;
  private readonly rand: () => number;
  private readonly live: Req[] = [];
  private now = 0;
  private readonly lines: Req[][];
  private readonly heads: number[];
  private waiting = 0;

  constructor(
    jf: JobFile,
    private readonly opts: SimOptions,
  ) {
    this.rand = prng(opts.seed ?? 1);
    const kernel = opts.kernel ?? DEFAULT_KERNEL;
    const areas = opts.areas ?? 1;
    if (opts.dynamic === true && opts.restricted !== true) {
      this.dyn = new DynamicPool({ kernel, slots: opts.slots, areas });
      this.pool = dynamicPool(this.dyn, this.counts);
    } else {
      const shape = opts.restricted
        ? { restricted: true, size: opts.slots * 2048 }
        : { slots: opts.slots, areas };
      this.pool = plainPool(SwiotlbPool.create({ ...shape, kernel, area: 0, exclusive: true }));
    }
    const { kind, nslabs, nareas, bytes } = this.pool.geometry;
    this.nareas = nareas;
    this.clones = shapes(jf);
    this.indirect = opts.indirect ?? true;
    this.lines = this.clones.map(() => []);
    this.heads = this.clones.map(() => 0);
    this.result = {
      kind,
      kernel,
      nslabs,
      nareas,
      bytes,
      queue_slots: 0,
      queues_fit: true,
      requests: 0,
      requeues: 0,
      waits: 0,
      max_waiting: 0,
      stalled: false,
      kernel_defects: 0,
      used_hiwater: 0,
      used_hiwater_percent: 0,
    };
  }

  /**
   * Places every clone's virtqueue for the whole run through the coherent path,
   * starting in its queue's area (as placeQueue does), when the pool holds them.
   * False when one does not fit: the device could not start, which counts as stalled.
   */
  placeQueues(): boolean {
    if (this.opts.queuesInPool === false) return true;
    for (const c of this.clones) {
      const qb = virtqueueBytes(queueSizeFor(c.job, c.maxReq));
      const addr = this.guard(() =>
        this.pool.tryAlloc(qb, c.queue % this.nareas, c.job.minAlignMask),
      );
      if (addr < 0) {
        this.result.queues_fit = false;
        this.result.stalled = true;
        return false;
      }
    }
    this.result.queue_slots = this.pool.used();
    return true;
  }

  /** Fills every clone's depth, slot by slot, clones interleaved. */
  fill(): void {
    const maxDepth = Math.max(...this.clones.map((c) => c.depth));
    for (let s = 0; s < maxDepth; s++) {
      for (let c = 0; c < this.clones.length; c++) {
        if (s < this.clones[c]!.depth) this.arrive(this.newReq(c, s));
      }
    }
  }

  /**
   * `steps` completions: the live request due first completes and is unmapped,
   * the lines run (its clone's first), and its slot issues the next request.
   * Stops early, stalled, when nothing is live.
   */
  run(steps: number): void {
    const live = this.live;
    for (let step = 0; step < steps; step++) {
      if (live.length === 0) {
        this.result.stalled = true;
        break;
      }
      let i = 0;
      for (let k = 1; k < live.length; k++) if (live[k]!.doneAt < live[i]!.doneAt) i = k;
      const done = live[i]!;
      this.now = done.doneAt;
      live[i] = live[live.length - 1]!;
      live.pop();
      this.release(done);
      for (let k = 0; k < this.clones.length; k++) {
        this.runLine((done.clone + k) % this.clones.length);
      }
      this.arrive(this.newReq(done.clone, done.slot));
    }
  }

  finish(): SimResult {
    const r = this.result;
    r.used_hiwater = this.pool.hiwater();
    let total = r.nslabs;
    if (this.dyn) {
      const s = this.dyn.stats();
      r.dynamic = {
        transient_maps: this.counts.transient,
        growths: s.growths,
        nslabs_after: s.nslabs,
      };
      // Of the pool as it grew (transient slots aside, as debugfs's io_tlb_nslabs).
      total = s.nslabs;
    }
    r.used_hiwater_percent = Math.round((r.used_hiwater / total) * 10000) / 100;
    return r;
  }

  private newReq(clone: number, slot: number): Req {
    const job = this.clones[clone]!.job;
    const d = jobDirections(job.rw);
    const isRead = d.read && (!d.write || this.rand() * 100 < job.rwmixread);
    const len = pickSize(isRead ? job.bs.read : job.bs.write, this.rand());
    this.result.requests++;
    return { clone, slot, len, isRead, tlb: [], sizes: [], dirs: [], table: false, doneAt: 0 };
  }

  /** A map or an alloc; a kernel defect (6.1) counts and reads as a full pool. */
  private guard(place: () => number): number {
    try {
      return place();
    } catch (err) {
      if (KERNEL_DEFECTS.some((code) => isMediatorError(err, code))) {
        this.result.kernel_defects++;
        return -1;
      }
      throw err;
    }
  }

  /**
   * Maps a request as virtio-blk does, all or nothing: its header, its data split
   * at the segment size, its status byte, each with the device's min_align_mask,
   * starting in its queue's area; with indirect descriptors, then its table.
   */
  private place(r: Req): boolean {
    const c = this.clones[r.clone]!;
    const ctl = c.ctlBase + r.slot * REQUEST_CTL_BYTES;
    const data = c.dataBase + r.slot * c.maxReq;
    const dataDir = r.isRead ? DmaDirection.FROM_DEVICE : DmaDirection.TO_DEVICE;
    const parts: [number, number, DmaDirection][] = [
      [ctl, BLK_HEADER_BYTES, DmaDirection.TO_DEVICE],
    ];
    for (let off = 0; off < r.len; off += c.segment) {
      parts.push([data + off, Math.min(c.segment, r.len - off), dataDir]);
    }
    parts.push([ctl + BLK_HEADER_BYTES, 1, DmaDirection.FROM_DEVICE]);
    if (this.indirect) {
      parts.push([
        c.tableBase + r.slot * c.tableStride,
        parts.length * DESC_SIZE,
        DmaDirection.TO_DEVICE,
      ]);
    }
    const area = c.queue % this.nareas;
    for (const [addr, size, dir] of parts) {
      const tlb = this.guard(() => this.pool.tryMap(addr, size, dir, area, c.job.minAlignMask));
      if (tlb < 0) {
        this.release(r);
        return false;
      }
      r.tlb.push(tlb);
      r.sizes.push(size);
      r.dirs.push(dir);
    }
    r.table = this.indirect;
    return true;
  }

  /** Unmaps a request: its table first (detach_buf_split()), then its entries in order. */
  private release(r: Req): void {
    const n = r.tlb.length;
    const unmap = (i: number) => this.pool.unmap(r.tlb[i]!, r.sizes[i]!, r.dirs[i]!);
    if (r.table) unmap(n - 1);
    for (let i = 0; i < (r.table ? n - 1 : n); i++) unmap(i);
    r.tlb.length = 0;
    r.sizes.length = 0;
    r.dirs.length = 0;
    r.table = false;
  }

  /**
   * Service time grows with the size (the copies): big requests stay live longer,
   * so at any moment the live set leans to them, as in the real pipeline.
   */
  private goLive(r: Req): void {
    r.doneAt = this.now + (1 + r.len / 16384) * -Math.log(1 - this.rand());
    this.live.push(r);
  }

  /**
   * A new request of its clone: dispatched at once when its queue has nothing put
   * back and it fits; else it is held on its queue's line (requeued when it was
   * dispatched and found the pool full).
   */
  private arrive(r: Req): void {
    const line = this.lines[r.clone]!;
    const nobodyAhead = this.heads[r.clone] === line.length;
    if (nobodyAhead && this.place(r)) {
      this.goLive(r);
      return;
    }
    if (nobodyAhead) this.result.requeues++;
    this.result.waits++;
    line.push(r);
    this.waiting++;
    this.result.max_waiting = Math.max(this.result.max_waiting, this.waiting);
  }

  /** A run of one clone's queue: its held requests go in order until one does not fit. */
  private runLine(clone: number): void {
    const line = this.lines[clone]!;
    let head = this.heads[clone]!;
    while (head < line.length && this.place(line[head]!)) {
      this.goLive(line[head++]!);
      this.waiting--;
    }
    if (head > 1024 && head * 2 > line.length) {
      line.splice(0, head);
      head = 0;
    }
    this.heads[clone] = head;
  }
}

/** One deterministic simulation at one pool. */
export function simulate(jf: JobFile, opts: SimOptions): SimResult {
  const sim = new Simulation(jf, opts);
  if (sim.placeQueues()) {
    sim.fill();
    sim.run(opts.steps ?? 4000);
  }
  return sim.finish();
}

/**
 * The run was clean: the queues fit, nothing stalled, no request found the pool
 * full (no "swiotlb buffer is full", no transient pool with CONFIG_SWIOTLB_DYNAMIC)
 * and the kernel would have finished every search.
 */
export function clean(r: SimResult): boolean {
  return (
    r.queues_fit &&
    !r.stalled &&
    r.requeues === 0 &&
    r.kernel_defects === 0 &&
    (r.dynamic === undefined || r.dynamic.transient_maps === 0)
  );
}
