/**
 * Pool sizing by simulation: the job's allocation pattern replayed against the
 * Linux-faithful pool (placement only: no copies, no threads, no clock), so the
 * same job, seed and step count always give the same answer.
 *
 * What is placed, as BlkDriver places it in bounce mode:
 * - per queue (one per numjobs clone), its virtqueue: dma_alloc_coherent() from
 *   the pool, page aligned, for the whole run, starting in area q mod nareas;
 * - per request: the 16-byte virtio-blk header, the data split at the max mapping
 *   size (256 KiB less the min_align_mask padding), and the 1-byte status, each
 *   its own mapping (with the device's min_align_mask), all or nothing; the guest
 *   buffers sit where the device puts them (header at slot*REQUEST_CTL_BYTES of a page-aligned
 *   block, data at slot*maxRequestBytes), so min_align_mask padding is the real one.
 *
 * Each clone keeps `iodepth` requests (capped as the device caps it) live or
 * waiting. A step completes the live request due first (completions come out of
 * order), unmaps it, lets waiters in first come first served (as the
 * back-pressure gate does), and issues that slot's next request. Completions come
 * in simulated time: each request's service time is exponential with a mean of
 * 1 + size/16 KiB units, so large requests stay mapped longer (as their copies do). A request that
 * finds no room waits; had the pool the Linux policy (fail), it would have failed:
 * that count is `map_failures`.
 */
import { deviceGuestLayout, REQUEST_CTL_BYTES } from '../mediator/blk-options.js';
import { GUEST_DEFAULTS } from '../mediator/defaults.js';
import { DmaDirection, IO_TLB_SEGSIZE, IO_TLB_SIZE, PAGE_SIZE } from '../swiotlb/constants.js';
import { computeGeometry, roundUpPowerOfTwo } from '../swiotlb/geometry.js';
import { SwiotlbPool } from '../swiotlb/pool.js';
import { BLK_HEADER_BYTES } from '../virtio/blk-format.js';
import { virtqueueBytes } from '../virtio/virtqueue-layout.js';
import { type FioJob, type JobFile, jobDirections, pickSize, prng } from './fio-job.js';
import { defaultAreas, maxRequestBytesFor, queueSizeFor } from './job-config.js';

export interface SimOptions {
  /** Pool slots (rounded as the kernel rounds them). */
  slots: number;
  areas: number;
  /** Completions simulated after the queues first fill. @default 4000 */
  steps?: number;
  /** @default 1 */
  seed?: number;
}

export interface SimResult {
  nslabs: number;
  nareas: number;
  bytes: number;
  /** Slots the virtqueues hold. */
  queue_slots: number;
  /** False when the virtqueues themselves do not fit: the device could not start. */
  queues_fit: boolean;
  /** Requests issued. */
  requests: number;
  /** Requests that found no room while nobody waited: what Linux would fail. */
  map_failures: number;
  /** Requests that had to wait for room (back-pressure policy wait). */
  waits: number;
  /** Longest waiting line. */
  max_waiting: number;
  /** Every request waited and none was live: the pool cannot hold even one request. */
  stalled: boolean;
  used_hiwater: number;
  used_hiwater_percent: number;
}

interface CloneShape {
  job: FioJob;
  queue: number;
  depth: number;
  segment: number;
  maxReq: number;
  ctlBase: number;
  dataBase: number;
}

interface Req {
  clone: number;
  slot: number;
  len: number;
  isRead: boolean;
  tlb: number[];
  sizes: number[];
  dirs: DmaDirection[];
  /** Simulated completion time (set when it goes live). */
  doneAt: number;
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
      out.push({
        job,
        queue: q,
        depth: layout.depth,
        segment: layout.segmentBytes,
        maxReq,
        ctlBase,
        dataBase,
      });
    }
  }
  return out;
}

/**
 * One simulation's state: the pool, the clones' shapes, the live requests (in no
 * order; the one due first is searched for) and the waiting line (FIFO:
 * waiting[head..], compacted now and then). Every random draw comes from one
 * seeded stream, in a fixed order, so a run is reproducible.
 */
class Simulation {
  readonly result: SimResult;
  private readonly pool: SwiotlbPool;
  private readonly nareas: number;
  private readonly clones: CloneShape[];
  private readonly rand: () => number;
  private readonly live: Req[] = [];
  private now = 0;
  private readonly waiting: Req[] = [];
  private head = 0;

  constructor(jf: JobFile, opts: SimOptions) {
    this.rand = prng(opts.seed ?? 1);
    this.pool = SwiotlbPool.create({ slots: opts.slots, areas: opts.areas, area: 0 });
    const { nslabs, nareas, bytes } = this.pool.geometry;
    this.nareas = nareas;
    this.clones = shapes(jf);
    this.result = {
      nslabs,
      nareas,
      bytes,
      queue_slots: 0,
      queues_fit: true,
      requests: 0,
      map_failures: 0,
      waits: 0,
      max_waiting: 0,
      stalled: false,
      used_hiwater: 0,
      used_hiwater_percent: 0,
    };
  }

  /**
   * Places every clone's virtqueue for the whole run, page aligned, starting in
   * its queue's area (as placeQueue does). False when one does not fit: the
   * device could not start, which counts as stalled.
   */
  placeQueues(): boolean {
    for (const c of this.clones) {
      const qb = virtqueueBytes(queueSizeFor(c.job, c.maxReq));
      const addr = this.pool.tryAllocate(0, qb, DmaDirection.BIDIRECTIONAL, {
        allocAlignMask: PAGE_SIZE - 1,
        area: c.queue % this.nareas,
      });
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
   * waiters are let in, and its slot issues the next request. Stops early, stalled,
   * when nothing is live.
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
      this.letIn();
      this.arrive(this.newReq(done.clone, done.slot));
    }
  }

  finish(): SimResult {
    const r = this.result;
    r.used_hiwater = this.pool.stats().used_hiwater;
    r.used_hiwater_percent = Math.round((r.used_hiwater / r.nslabs) * 10000) / 100;
    return r;
  }

  private newReq(clone: number, slot: number): Req {
    const job = this.clones[clone]!.job;
    const d = jobDirections(job.rw);
    const isRead = d.read && (!d.write || this.rand() * 100 < job.rwmixread);
    const len = pickSize(isRead ? job.bs.read : job.bs.write, this.rand());
    this.result.requests++;
    return { clone, slot, len, isRead, tlb: [], sizes: [], dirs: [], doneAt: 0 };
  }

  /**
   * Maps a request as BlkDriver does, all or nothing: its header, its data split
   * at the segment size, its status byte, each with the device's min_align_mask,
   * starting in its queue's area.
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
    const opts = { minAlignMask: c.job.minAlignMask, area: c.queue % this.nareas };
    for (const [addr, size, dir] of parts) {
      const tlb = this.pool.tryAllocate(addr, size, dir, opts);
      if (tlb < 0) {
        this.release(r);
        return false;
      }
      r.tlb.push(tlb);
      r.sizes.push(size);
      r.dirs.push(dir);
    }
    return true;
  }

  private release(r: Req): void {
    for (let i = 0; i < r.tlb.length; i++) {
      this.pool.release(r.tlb[i]!, r.sizes[i]!, r.dirs[i]!);
    }
    r.tlb.length = 0;
    r.sizes.length = 0;
    r.dirs.length = 0;
  }

  /**
   * Service time grows with the size (the copies): big requests stay live longer,
   * so at any moment the live set leans to them, as in the real pipeline.
   */
  private goLive(r: Req): void {
    r.doneAt = this.now + (1 + r.len / 16384) * -Math.log(1 - this.rand());
    this.live.push(r);
  }

  /** A new request: placed at once when nobody waits and it fits, else it queues. */
  private arrive(r: Req): void {
    const nobodyWaits = this.head === this.waiting.length;
    if (nobodyWaits && this.place(r)) {
      this.goLive(r);
      return;
    }
    // With nobody ahead of it, Linux (policy fail) would have failed this map.
    if (nobodyWaits) this.result.map_failures++;
    this.result.waits++;
    this.waiting.push(r);
    this.result.max_waiting = Math.max(this.result.max_waiting, this.waiting.length - this.head);
  }

  /** Lets waiters in from the front, in order, until one does not fit (the gate's rule). */
  private letIn(): void {
    const w = this.waiting;
    while (this.head < w.length && this.place(w[this.head]!)) this.goLive(w[this.head++]!);
    if (this.head > 1024 && this.head * 2 > w.length) {
      w.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** One deterministic simulation at one pool geometry. */
export function simulate(jf: JobFile, opts: SimOptions): SimResult {
  const sim = new Simulation(jf, opts);
  if (sim.placeQueues()) {
    sim.fill();
    sim.run(opts.steps ?? 4000);
  }
  return sim.finish();
}

function ok(r: SimResult): boolean {
  return r.queues_fit && !r.stalled && r.map_failures === 0;
}

const MAX_POOL_SLOTS = 2 ** 30 / IO_TLB_SIZE;

/**
 * The smallest pool (in steps of nareas segments, as the geometry rounds) with no
 * map failure at `areas`, or undefined when even 1 GiB fails.
 */
export function minimalSlots(
  jf: JobFile,
  areas: number,
  sim: { steps?: number; seed?: number } = {},
): number | undefined {
  const unit = roundUpPowerOfTwo(areas) * IO_TLB_SEGSIZE;
  const run = (units: number) => ok(simulate(jf, { ...sim, slots: units * unit, areas }));
  let lo = 0; // fails (or nothing)
  let hi = 1;
  const maxUnits = Math.floor(MAX_POOL_SLOTS / unit);
  while (!run(hi)) {
    lo = hi;
    if (hi >= maxUnits) return undefined;
    hi = Math.min(maxUnits, hi * 2);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (run(mid)) hi = mid;
    else lo = mid;
  }
  return hi * unit;
}

/** Slots after the kernel's rounding for `areas`. */
export function roundedSlots(slots: number, areas: number): number {
  return computeGeometry({ slots, areas }).nslabs;
}

export interface SizingAdvice {
  margin: number;
  areas: number;
  /** Smallest pool with no failures at `areas`. */
  minimal_slots: number | undefined;
  /** minimal + margin, rounded to whole segments per area. */
  recommended_slots: number | undefined;
  /** The same for one area (what a restricted-dma-pool gets: Linux gives it one area). */
  one_area: { minimal_slots: number | undefined; recommended_slots: number | undefined };
  /** Per area count tried: the smallest pool with no failures. */
  by_areas: { areas: number; minimal_slots: number | undefined }[];
  /** Simulations at a range of sizes around the recommendation, at `areas`. */
  table: SimResult[];
  steps: number;
  seed: number;
}

export function adviseSize(
  jf: JobFile,
  opts: { margin?: number; steps?: number; seed?: number; areas?: number } = {},
): SizingAdvice {
  const margin = opts.margin ?? 0.25;
  const steps = opts.steps ?? 4000;
  const seed = opts.seed ?? 1;
  const sim = { steps, seed };
  const areas = opts.areas ?? jf.settings.areas ?? defaultAreas(jf);
  const withMargin = (min: number | undefined, a: number) =>
    min === undefined ? undefined : roundedSlots(Math.ceil(min * (1 + margin)), a);

  const counts = new Set<number>([1, areas]);
  const maxAreas = roundUpPowerOfTwo(jf.jobs.reduce((s, j) => s + j.numjobs, 0));
  for (let a = 2; a <= maxAreas; a *= 2) counts.add(a);
  const by_areas = [...counts]
    .sort((a, b) => a - b)
    .map((a) => ({ areas: a, minimal_slots: minimalSlots(jf, a, sim) }));
  const minimal = by_areas.find((b) => b.areas === areas)!.minimal_slots;
  const minimalOne = by_areas.find((b) => b.areas === 1)!.minimal_slots;
  const recommended = withMargin(minimal, areas);

  const sizes = new Set<number>();
  if (minimal !== undefined) {
    for (const f of [0.5, 0.75, 1, 1 + margin, 1.5, 2]) {
      const s = roundedSlots(Math.max(IO_TLB_SEGSIZE, Math.ceil(minimal * f)), areas);
      if (s <= MAX_POOL_SLOTS) sizes.add(s);
    }
    if (recommended !== undefined) {
      sizes.add(recommended);
      sizes.add(roundedSlots(Math.floor(recommended * 0.75), areas));
    }
  }
  if (jf.settings.poolSize !== undefined) {
    sizes.add(roundedSlots(Math.ceil(jf.settings.poolSize / IO_TLB_SIZE), areas));
  }
  const table = [...sizes]
    .sort((a, b) => a - b)
    .map((slots) => simulate(jf, { ...sim, slots, areas }));
  return {
    margin,
    areas,
    minimal_slots: minimal,
    recommended_slots: recommended,
    one_area: { minimal_slots: minimalOne, recommended_slots: withMargin(minimalOne, 1) },
    by_areas,
    table,
    steps,
    seed,
  };
}
