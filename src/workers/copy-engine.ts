import { performance } from 'node:perf_hooks';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { MediatorError } from '../errors.js';
import { type CopyDirection, DmaDirection } from '../swiotlb/constants.js';
import { Fifo } from '../util/fifo.js';
import { type Logger, NO_LOG } from '../util/logger.js';
import { workerScript } from '../util/worker-script.js';
import {
  COPY_DEFAULTS,
  defaultCopyWorkers,
  defaultEnginePollMicros,
  defaultInlineThreshold,
  defaultSplitInline,
  defaultSplitThreshold,
} from './copy-defaults.js';
import {
  D_DIR,
  D_GUEST_OFFSET,
  D_GUEST_REGION,
  D_LENGTH,
  D_POOL_OFFSET,
  D_POOL_REGION,
  descriptorIndex,
  RING_HEAD,
  RING_NOTIFY_AT,
  RING_SLEEPING,
  RING_STOP,
  RING_TAIL,
  RING_THREAD,
  ringBytes,
  type ServeTask,
} from './copy-ring.js';
import {
  type CopyStatsSnapshot,
  CopyStatsWriter,
  readCopyStats,
  statsLayout,
} from './copy-stats.js';
import { copyShared } from './shared-copy.js';

export interface CopyEngineOptions {
  /**
   * Copy worker threads. 0 copies everything inline on the calling thread.
   * One core is left to the calling thread, which maps, polls and copies inline:
   * a worker that takes its core costs more than it copies.
   * @default {@link defaultCopyWorkers}: the number of CPUs - 1 (at least 1, at most 4)
   */
  workers?: number;
  /**
   * Copies shorter than this are done inline on the calling thread: a small copy
   * costs less than handing it to a worker and hearing back (bench/copy.bench.ts
   * measures both). Longer copies go to the workers.
   * @default {@link defaultInlineThreshold}: 32768, or 131072 on 2 CPUs or fewer
   */
  inlineThreshold?: number;
  /**
   * Copies of at least this many bytes are split in page-aligned parts, one per
   * worker (and one for the calling thread, see `splitInline`), so that one large
   * copy keeps every core busy. Only when nothing else is in flight: under load
   * each worker already has whole copies to do, and a split copy would wait for
   * the slowest of its parts. 0 never splits.
   * @default {@link defaultSplitThreshold}: 131072, or 0 when workers >= the number of CPUs
   */
  splitThreshold?: number;
  /**
   * Whether the calling thread copies one part of a split copy itself, while the
   * workers copy the others (it would otherwise wait for them). Only worth it when
   * it has a core of its own; so one worker on 2 CPUs splits too.
   * @default {@link defaultSplitInline}: true when workers < the number of CPUs
   */
  splitInline?: boolean;
  /**
   * Descriptors per worker ring (a power of two). A full ring queues further
   * copies in the engine until the worker catches up.
   * @default 1024
   */
  ringCapacity?: number;
  /**
   * Memory regions (guest memories and pools) the engine can register.
   * @default 64
   */
  maxRegions?: number;
  /**
   * Bytes queued on a worker before further copies go to the next worker.
   * @default 262144
   */
  spillBytes?: number;
  /**
   * Count and time the copies done inline on the calling thread. Off only to
   * measure what the accounting costs (bench:metrics); worker copies are always
   * counted, off the main thread.
   * @default true
   */
  accounting?: boolean;
  /**
   * After a completion, how long the engine keeps looking for the next one on each
   * event-loop turn before it sleeps until a worker notifies, in microseconds.
   * Polling needs a core of its own: with as many workers as cores it costs the
   * workers more than it saves (measured), so it is off then.
   * @default {@link defaultEnginePollMicros}: 200, or 0 when workers >= the number of CPUs
   */
  pollMicros?: number;
  /**
   * How long an idle worker polls its ring before it sleeps, in microseconds.
   * Bounded so that an idle engine burns no core.
   * @default 20
   */
  spinMicros?: number;
  /**
   * Where a copy worker's crash is logged (error, with `worker`, `code`
   * COPY_WORKER_CRASHED, `failedCopies`, `replaced`, `err`).
   * @default NO_LOG: nothing
   */
  log?: Logger;
}

/** One caller's copy, possibly split over several rings. */
interface Join {
  remaining: number;
  /**
   * The first failed part's error. The copy fails with it only once every part
   * has finished: the caller frees the copy's pool slots when it fails, and a part
   * still on a live worker would go on writing into them.
   */
  error: Error | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Pending {
  /** HEAD value after this descriptor: done when TAIL has reached it. */
  end: number;
  bytes: number;
  join: Join;
}

interface Deferred {
  dir: CopyDirection;
  guestRegion: number;
  guestOffset: number;
  poolRegion: number;
  poolOffset: number;
  length: number;
  join: Join;
}

interface Ring {
  readonly index: number;
  readonly header: Int32Array;
  readonly port: MessagePort;
  head: number;
  outstandingBytes: number;
  readonly pending: Fifo<Pending>;
  armed: boolean;
  dead: boolean;
  /**
   * Given up before its worker started (piscina's 'error': see workerStartFailed):
   * its task may never run, so close() does not wait for it.
   */
  cancelled: boolean;
  task: Promise<unknown> | undefined;
  lastCompletion: number;
  rearm: () => void;
}

const TWO_POW_32 = 2 ** 32;
/** The largest ring: HEAD - TAIL stays below 2^31 (copy-ring.ts). */
const MAX_RING_CAPACITY = 2 ** 30;
/** How often close() repeats its wake-up to workers that may have missed it. */
const STOP_NUDGE_MS = 5;
/** Split copies are cut at page boundaries. */
const PAGE = 4096;

/** Pages in part `i` of `parts` over `pages` pages: as even as they come, the first ones larger. */
function pagesOfPart(pages: number, parts: number, i: number): number {
  return Math.floor(pages / parts) + (i < pages % parts ? 1 : 0);
}

/** A live ring whose descriptor ring is not full. */
function hasRoom(ring: Ring, capacity: number): boolean {
  return !ring.dead && ((ring.head - Atomics.load(ring.header, RING_TAIL)) | 0) < capacity;
}

/** Copies up to this size are byte loops and are not timed (a loop wins up to ~32 B: docs/performance.md). */
const TINY_COPY = 32;
/**
 * One inline copy in this many is timed (a power of two). A clock read is cheap,
 * but a timed copy costs far more: the read waits for the copy's memory operations
 * to finish, so the copy no longer overlaps what follows it. One in 64 costs about
 * what no timing does and still gives thousands of timed copies per second at
 * 4 KiB (docs/performance.md).
 */
const INLINE_TIME_SAMPLE = 64;

/**
 * The trusted DMA engine: copies between guest memory and pools.
 *
 * How: short copies inline on the caller's thread; the rest on long-lived worker
 * threads (piscina manages them: start, replacement, shutdown), each serving one
 * descriptor ring in shared memory (see copy-ring.ts). There is no piscina task
 * per copy. A copy of at least `splitThreshold` bytes with nothing else in flight
 * is split across all workers, one part each, and the calling thread too when it
 * has a core of its own (`splitInline`).
 * Completions are reaped on every submit, looked for on event-loop turns for
 * `pollMicros` after the last one, and otherwise awaited with Atomics.waitAsync
 * on the ring's TAIL: the main thread never blocks. A worker wakes it only at the
 * copy it asked for (about half of what is queued on that worker), so one wake-up
 * completes a batch while the worker goes on with the rest.
 *
 * Accounting: per region (guest) and direction, bytes, copies and time, plus a
 * size histogram, in shared Float64 blocks written by each copying thread alone
 * (copy-stats.ts); {@link stats} reads them.
 */
export class CopyEngine {
  readonly workers: number;
  readonly inlineThreshold: number;
  readonly splitThreshold: number;
  readonly splitInline: boolean;
  private readonly capacity: number;
  private readonly maxRegions: number;
  private readonly spinMicros: number;
  private readonly pollMs: number;
  private inlineSample = 0;
  private readonly spillBytes: number;
  /** Whether inline copies are counted and timed (see CopyEngineOptions.accounting). */
  readonly accounting: boolean;
  private readonly regions: (Buffer | undefined)[];
  private readonly regionBuffers: (SharedArrayBuffer | undefined)[];
  private nextRegion = 0;
  private readonly statsBuffer: SharedArrayBuffer;
  private readonly statsBlocks: number;
  private readonly inlineStats: CopyStatsWriter;
  private readonly piscina: Piscina | undefined;
  private readonly rings: Ring[] = [];
  private readonly backlog = new Fifo<Deferred>();
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private closing = false;
  private closed = false;
  private closeDone: Promise<void> | undefined;
  /** No ring is left after workers failed to start: every copy is made inline. */
  private inlineOnly = false;
  private crashes = 0;
  private readonly log: Logger;

  constructor(opts: CopyEngineOptions = {}) {
    this.log = opts.log ?? NO_LOG;
    this.workers = opts.workers ?? defaultCopyWorkers();
    this.inlineThreshold = opts.inlineThreshold ?? defaultInlineThreshold();
    this.splitThreshold = opts.splitThreshold ?? defaultSplitThreshold(this.workers);
    this.splitInline = opts.splitInline ?? defaultSplitInline(this.workers);
    this.capacity = opts.ringCapacity ?? COPY_DEFAULTS.ringCapacity;
    this.maxRegions = opts.maxRegions ?? COPY_DEFAULTS.maxRegions;
    this.spinMicros = opts.spinMicros ?? COPY_DEFAULTS.spinMicros;
    this.pollMs = (opts.pollMicros ?? defaultEnginePollMicros(this.workers)) / 1000;
    this.spillBytes = opts.spillBytes ?? COPY_DEFAULTS.spillBytes;
    this.accounting = opts.accounting ?? COPY_DEFAULTS.accounting;
    if (!Number.isInteger(this.workers) || this.workers < 0 || this.workers > 64) {
      throw new RangeError(`workers must be an integer from 0 to 64, got ${this.workers}`);
    }
    // An integer, or `&` truncates it: 2.5 passed as a power of two, and the ring then
    // let 3 copies in flight share 2 descriptors (a copy done twice, one never).
    // At most 2^30, so that HEAD - TAIL, an int32 difference, never wraps.
    if (
      !Number.isInteger(this.capacity) ||
      this.capacity < 2 ||
      this.capacity > MAX_RING_CAPACITY ||
      (this.capacity & (this.capacity - 1)) !== 0
    ) {
      throw new RangeError(
        `ringCapacity must be a power of two from 2 to 2^30, got ${this.capacity}`,
      );
    }
    this.regions = new Array(this.maxRegions);
    this.regionBuffers = new Array(this.maxRegions);
    this.statsBlocks = this.workers + 1;
    this.statsBuffer = new SharedArrayBuffer(statsLayout(this.statsBlocks, this.maxRegions).bytes);
    this.inlineStats = new CopyStatsWriter(this.statsBuffer, this.statsBlocks, this.maxRegions, 0);
    if (this.workers > 0) {
      const script = workerScript('workers/copy-worker');
      this.piscina = new Piscina({
        filename: script.filename,
        ...(script.env ? { env: script.env } : {}),
        minThreads: this.workers,
        maxThreads: this.workers,
        concurrentTasksPerWorker: 1,
        idleTimeout: Number.POSITIVE_INFINITY,
      });
      this.piscina.on('error', (err: unknown) =>
        this.workerStartFailed(err instanceof Error ? err : new Error(String(err))),
      );
      for (let i = 0; i < this.workers; i++) this.rings.push(this.startRing(i));
    }
  }

  /** Makes a SharedArrayBuffer (guest memory or pool bytes) copyable; returns its region id. */
  registerRegion(buffer: SharedArrayBuffer): number {
    const id = this.nextRegion;
    if (id >= this.maxRegions) {
      throw new RangeError(`copy engine: more than ${this.maxRegions} regions (raise maxRegions)`);
    }
    // Below 4 GiB, not up to it: a descriptor holds a length in 32 bits, so a copy
    // of a whole 4 GiB region went to a worker as length 0 and was reported done
    // with nothing copied.
    if (buffer.byteLength >= TWO_POW_32) {
      throw new RangeError(
        'copy engine: regions must be smaller than 4 GiB (descriptor offsets and lengths are 32-bit)',
      );
    }
    this.nextRegion++;
    this.regions[id] = Buffer.from(buffer);
    this.regionBuffers[id] = buffer;
    for (const ring of this.rings) ring.port.postMessage({ id, buffer });
    return id;
  }

  /**
   * Copies `length` bytes between a guest region and a pool region: TO_DEVICE
   * guest -> pool, FROM_DEVICE pool -> guest. Returns undefined when the copy was
   * done inline (already complete), else a promise of its completion. Ranges must
   * already be validated by the caller (the DMA API validates them against the
   * mapping); they are checked again here, before anything is copied or queued.
   * @throws COPY_ENGINE_CLOSED; RangeError for an unknown region or direction, an
   *   offset or length that is not an integer, or a range outside a region; the
   *   promise rejects with COPY_WORKER_CRASHED
   */
  copy(
    dir: CopyDirection,
    guestRegion: number,
    guestOffset: number,
    poolRegion: number,
    poolOffset: number,
    length: number,
  ): Promise<void> | undefined {
    if (this.closing) {
      throw new MediatorError('COPY_ENGINE_CLOSED', 'copy engine is closed or closing');
    }
    const guest = this.regions[guestRegion];
    const pool = this.regions[poolRegion];
    // Integers only: NaN passed every comparison below and became offset 0 (in a
    // view, or `| 0` in a descriptor), and a fraction made the byte loop store to
    // non-index keys, a copy reported done with nothing copied.
    if (
      guest === undefined ||
      pool === undefined ||
      (dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) ||
      !Number.isInteger(length) ||
      !Number.isInteger(guestOffset) ||
      !Number.isInteger(poolOffset) ||
      length <= 0 ||
      guestOffset < 0 ||
      poolOffset < 0 ||
      guestOffset + length > guest.length ||
      poolOffset + length > pool.length
    ) {
      throw new RangeError(
        `copy engine: bad copy (direction ${dir}, regions ${guestRegion}/${poolRegion}, offsets ${guestOffset}/${poolOffset}, length ${length})`,
      );
    }
    if (this.workers === 0 || this.inlineOnly || length < this.inlineThreshold) {
      this.copyInline(dir, guest, guestRegion, guestOffset, pool, poolRegion, poolOffset, length);
      return undefined;
    }
    const inlinePart = this.splitInline ? 1 : 0;
    const ways =
      this.splitThreshold > 0 &&
      length >= this.splitThreshold &&
      this.inFlight === 0 &&
      this.workers + inlinePart > 1
        ? this.workers + inlinePart
        : 1;
    // Whole pages per part, as even as they come; the last part takes the remainder.
    const pages = Math.ceil(length / PAGE);
    const parts = Math.min(ways, pages);
    const inline = parts > 1 ? inlinePart : 0;
    return new Promise<void>((resolve, reject) => {
      const join: Join = { remaining: parts - inline, error: undefined, resolve, reject };
      this.inFlight++;
      // The workers' parts first, each on its own worker, so that they start while
      // this thread copies its own (part 0).
      let inlineLength = 0;
      for (let i = 0, off = 0; i < parts; i++) {
        const len = i === parts - 1 ? length - off : pagesOfPart(pages, parts, i) * PAGE;
        if (i < inline) inlineLength = len;
        else {
          this.enqueue(
            {
              dir,
              guestRegion,
              guestOffset: guestOffset + off,
              poolRegion,
              poolOffset: poolOffset + off,
              length: len,
              join,
            },
            parts > 1 ? this.rings[i - inline] : undefined,
          );
        }
        off += len;
      }
      if (inlineLength > 0) {
        this.copyInline(
          dir,
          guest,
          guestRegion,
          guestOffset,
          pool,
          poolRegion,
          poolOffset,
          inlineLength,
        );
      }
    });
  }

  /** A copy on the calling thread, counted (and one in INLINE_TIME_SAMPLE timed) in block 0. */
  private copyInline(
    dir: CopyDirection,
    guest: Buffer,
    guestRegion: number,
    guestOffset: number,
    pool: Buffer,
    poolRegion: number,
    poolOffset: number,
    length: number,
  ): void {
    const src = dir === DmaDirection.TO_DEVICE ? guest : pool;
    const dst = dir === DmaDirection.TO_DEVICE ? pool : guest;
    const from = dir === DmaDirection.TO_DEVICE ? guestOffset : poolOffset;
    const to = dir === DmaDirection.TO_DEVICE ? poolOffset : guestOffset;
    let nanos = 0;
    if (length <= TINY_COPY) {
      // Request headers and status bytes: a loop beats Buffer.copy's call
      // overhead, and timing them would cost more than the copy.
      for (let i = 0; i < length; i++) dst[to + i] = src[from + i]!;
    } else if (this.accounting && (++this.inlineSample & (INLINE_TIME_SAMPLE - 1)) === 0) {
      // Timing one copy costs more than copying it (see INLINE_TIME_SAMPLE): time
      // one in INLINE_TIME_SAMPLE and count it for all of them.
      const t0 = performance.now();
      copyShared(dst, to, this.sourceBuffer(dir, guestRegion, poolRegion), from, length);
      nanos = (performance.now() - t0) * 1e6 * INLINE_TIME_SAMPLE;
    } else {
      copyShared(dst, to, this.sourceBuffer(dir, guestRegion, poolRegion), from, length);
    }
    // The main thread is this block's only writer and its only reader: no seqlock needed.
    if (this.accounting) this.inlineStats.add(guestRegion, dir, length, nanos);
  }

  /**
   * The copy's source region's SharedArrayBuffer, kept since registration
   * (Buffer.copy and subarray read a view's `buffer` and `byteOffset` getters,
   * each a call into the runtime for a shared buffer).
   */
  private sourceBuffer(
    dir: CopyDirection,
    guestRegion: number,
    poolRegion: number,
  ): ArrayBufferLike {
    return this.regionBuffers[dir === DmaDirection.TO_DEVICE ? guestRegion : poolRegion]!;
  }

  /** Copy accounting so far (bytes, copies, time by region and direction; size histogram). */
  stats(): CopyStatsSnapshot {
    return readCopyStats(this.statsBuffer, this.statsBlocks, this.maxRegions);
  }

  /** Worker crashes seen (each one replaced). */
  get workerCrashes(): number {
    return this.crashes;
  }

  /** Worker threads running now (0 once closed). */
  get liveWorkers(): number {
    return this.piscina?.threads.length ?? 0;
  }

  /** Copies accepted and not finished yet. */
  get pendingCopies(): number {
    return this.inFlight;
  }

  /**
   * Fault injection: terminates the thread serving ring `index` as a crash would.
   * Its in-flight copies fail with COPY_WORKER_CRASHED and a new worker takes over.
   */
  async crashWorker(index: number): Promise<void> {
    const ring = this.rings[index];
    if (!ring || !this.piscina) throw new RangeError(`no copy worker ${index}`);
    const tid = await this.waitForThreadId(ring);
    const thread = this.piscina.threads.find((t) => t.threadId === tid);
    if (!thread) throw new Error(`copy worker ${index} (thread ${tid}) not found`);
    await thread.terminate();
    await ring.task?.catch(() => undefined);
  }

  /**
   * Stops taking copies (COPY_ENGINE_CLOSED), waits for every accepted copy to
   * finish, stops the workers and destroys the thread pool. Idempotent: every
   * call, concurrent or later, returns the same promise.
   */
  close(): Promise<void> {
    // One close for every caller: a second call made while the first waits for
    // the workers used to return at once (`closed` was already set), before any
    // worker had stopped.
    this.closeDone ??= this.shutDown();
    return this.closeDone;
  }

  private async shutDown(): Promise<void> {
    this.closing = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.closed = true;
    for (const ring of this.rings) Atomics.store(ring.header, RING_STOP, 1);
    // A worker that read STOP as 0 just before it went to sleep misses the first
    // notify: its wait compares HEAD, which stopping does not change. So notify
    // until every worker has returned (seen as a close() that hung under load).
    const nudge = () => {
      for (const ring of this.rings) Atomics.notify(ring.header, RING_HEAD);
    };
    nudge();
    const nudging = setInterval(nudge, STOP_NUDGE_MS);
    try {
      const started = this.rings.filter((r) => !r.cancelled);
      await Promise.all(started.map((r) => r.task?.catch(() => undefined)));
    } finally {
      clearInterval(nudging);
    }
    for (const ring of this.rings) ring.port.close();
    await this.piscina?.destroy();
  }

  // ---------------------------------------------------------------------------

  private startRing(index: number): Ring {
    const sab = new SharedArrayBuffer(ringBytes(this.capacity));
    const { port1, port2 } = new MessageChannel();
    const ring: Ring = {
      index,
      header: new Int32Array(sab),
      port: port1,
      head: 0,
      outstandingBytes: 0,
      pending: new Fifo<Pending>(this.capacity),
      armed: false,
      dead: false,
      cancelled: false,
      task: undefined,
      lastCompletion: 0,
      rearm: () => undefined,
    };
    ring.rearm = () => {
      ring.armed = false;
      this.arm(ring);
      this.drainBacklog();
    };
    const regions: { id: number; buffer: SharedArrayBuffer }[] = [];
    for (let id = 0; id < this.nextRegion; id++)
      regions.push({ id, buffer: this.regionBuffers[id]! });
    const task: ServeTask = {
      ring: sab,
      capacity: this.capacity,
      stats: this.statsBuffer,
      blocks: this.statsBlocks,
      block: index + 1,
      maxRegions: this.maxRegions,
      regions,
      port: port2,
      spinMicros: this.spinMicros,
    };
    ring.task = this.piscina!.run(task, { transferList: [port2] as never });
    ring.task.then(
      () => {
        if (!this.closed) this.ringDied(ring, new Error('copy worker returned unexpectedly'));
      },
      (err: unknown) => {
        if (!this.closed) this.ringDied(ring, err instanceof Error ? err : new Error(String(err)));
      },
    );
    return ring;
  }

  /** Queues `d` on `preferred` when it is live and has room, else on {@link pickRing}'s choice. */
  private enqueue(d: Deferred, preferred?: Ring): void {
    const ring =
      preferred !== undefined && hasRoom(preferred, this.capacity) ? preferred : this.pickRing();
    if (ring === undefined) {
      this.backlog.push(d);
      return;
    }
    this.submit(ring, d);
  }

  /**
   * The ring for a copy: packs work onto the first workers and spills to the next
   * only when they are backed up by `spillBytes`: a worker with a queue stays awake
   * and copies back to back, while spreading a light load over all of them would
   * make each one sleep and be woken for every copy (a futex wake-up costs more
   * than a 64 KiB copy).
   */
  private pickRing(): Ring | undefined {
    let best: Ring | undefined;
    for (const ring of this.rings) {
      if (!hasRoom(ring, this.capacity)) continue;
      if (ring.outstandingBytes < this.spillBytes) return ring;
      if (best === undefined || ring.outstandingBytes < best.outstandingBytes) best = ring;
    }
    return best;
  }

  private submit(ring: Ring, d: Deferred): void {
    const h = ring.header;
    const i = descriptorIndex(ring.head, this.capacity);
    h[i + D_DIR] = d.dir;
    h[i + D_GUEST_REGION] = d.guestRegion;
    h[i + D_GUEST_OFFSET] = d.guestOffset | 0;
    h[i + D_POOL_REGION] = d.poolRegion;
    h[i + D_POOL_OFFSET] = d.poolOffset | 0;
    h[i + D_LENGTH] = d.length | 0;
    ring.head = (ring.head + 1) | 0;
    ring.outstandingBytes += d.length;
    ring.pending.push({ end: ring.head, bytes: d.length, join: d.join });
    Atomics.store(h, RING_HEAD, ring.head);
    if (Atomics.load(h, RING_SLEEPING)) Atomics.notify(h, RING_HEAD);
    this.arm(ring);
  }

  /** Completes what the worker finished and, while copies remain, waits for more. */
  private arm(ring: Ring): void {
    if (ring.dead) return;
    const tail = Atomics.load(ring.header, RING_TAIL);
    // Completions are reaped on every submit too (as io_uring reaps at submit): a
    // busy caller then hears of finished copies without an event-loop turn, which
    // costs a poll syscall.
    const done = this.completeUpTo(ring, tail);
    if (ring.armed) {
      if (done > 0) ring.lastCompletion = performance.now();
      return;
    }
    const now = performance.now();
    if (done > 0) ring.lastCompletion = now;
    if (ring.pending.isEmpty()) return;
    ring.armed = true;
    // Hybrid polling: while copies complete, look again on the next event-loop turn
    // (cheaper than a wake-up through waitAsync); after pollMicros of quiet, sleep.
    if (now - ring.lastCompletion < this.pollMs) {
      setImmediate(ring.rearm);
      return;
    }
    // Sleep until the worker has done about half of what is queued on it (as
    // virtio's used_event asks): the other half keeps it busy while this thread
    // wakes up and refills, and one wake-up completes several copies. Each wake-up
    // costs this thread microseconds of CPU that, with as many workers as cores,
    // the workers lose (bench:copy compares the wake-up points; docs/performance.md).
    const wanted = ring.pending.at((ring.pending.length - 1) >> 1)!.end;
    Atomics.store(ring.header, RING_NOTIFY_AT, wanted);
    const seen = Atomics.load(ring.header, RING_TAIL);
    if (((seen - wanted) | 0) >= 0) {
      queueMicrotask(ring.rearm);
      return;
    }
    const waited = Atomics.waitAsync(ring.header, RING_TAIL, seen);
    if (waited.async) waited.value.then(ring.rearm);
    else queueMicrotask(ring.rearm);
  }

  private completeUpTo(ring: Ring, tail: number): number {
    let done = 0;
    for (let p = ring.pending.peek(); p !== undefined; p = ring.pending.peek()) {
      if (((tail - p.end) | 0) < 0) break;
      ring.pending.shift();
      ring.outstandingBytes -= p.bytes;
      this.partDone(p.join, undefined);
      done++;
    }
    return done;
  }

  private partDone(join: Join, err: Error | undefined): void {
    if (err !== undefined) join.error ??= err;
    if (--join.remaining === 0) {
      // Settled only now, when no worker holds a part of it any more (see Join.error).
      if (join.error === undefined) join.resolve();
      else join.reject(join.error);
      if (--this.inFlight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private drainBacklog(): void {
    while (!this.backlog.isEmpty()) {
      const ring = this.pickRing();
      if (ring === undefined) return;
      this.submit(ring, this.backlog.shift()!);
    }
  }

  /** A worker died (crash, termination) while serving `ring`: fail its copies, replace it. */
  private ringDied(ring: Ring, cause: Error): void {
    if (ring.dead) return;
    ring.dead = true;
    this.crashes++;
    this.completeUpTo(ring, Atomics.load(ring.header, RING_TAIL));
    const err = new MediatorError(
      'COPY_WORKER_CRASHED',
      `copy worker ${ring.index} died with copies in flight: ${cause.message}`,
      { worker: ring.index },
    );
    const failedCopies = ring.pending.length;
    for (let p = ring.pending.shift(); p !== undefined; p = ring.pending.shift()) {
      this.partDone(p.join, err);
    }
    new CopyStatsWriter(
      this.statsBuffer,
      this.statsBlocks,
      this.maxRegions,
      ring.index + 1,
    ).repairAfterCrash();
    Atomics.notify(ring.header, RING_TAIL); // lets a pending waitAsync on the dead ring settle
    ring.port.close();
    const replaced =
      !ring.cancelled && (!this.closing || this.inFlight > 0 || !this.backlog.isEmpty());
    this.log.error(
      {
        worker: ring.index,
        code: 'COPY_WORKER_CRASHED',
        failedCopies,
        replaced,
        err: cause,
      },
      `copy worker ${ring.index} died: ${cause.message}; ${failedCopies} copies in flight failed with COPY_WORKER_CRASHED${replaced ? '; a new worker takes over' : ''}`,
    );
    if (replaced) {
      this.rings[ring.index] = this.startRing(ring.index);
      this.drainBacklog();
    }
  }

  /**
   * Piscina's 'error' event: a worker failed outside a copy, that is before its
   * ring's task started (at start-up: piscina then starts no more workers, and
   * that task, queued, would never run). Without a listener the event crashed the
   * process; with one alone, copies queued on such a ring, and close(), would wait
   * for ever. So each ring whose worker has not started is given up (its copies
   * fail with COPY_WORKER_CRASHED, as a dead worker's do; its STOP is set, should
   * its task run after all), and once none is left, copies are made inline.
   */
  private workerStartFailed(cause: Error): void {
    if (this.closed) return;
    for (const ring of this.rings) {
      if (ring.dead || Atomics.load(ring.header, RING_THREAD) !== 0) continue;
      ring.cancelled = true;
      Atomics.store(ring.header, RING_STOP, 1);
      this.ringDied(ring, cause);
    }
    if (this.inlineOnly || !this.rings.every((r) => r.dead)) return;
    this.inlineOnly = true;
    this.log.error(
      { code: 'COPY_WORKER_CRASHED', err: cause },
      `copy workers failed to start (${cause.message}): copies are made on the calling thread from now on`,
    );
    for (let d = this.backlog.shift(); d !== undefined; d = this.backlog.shift()) {
      const guest = this.regions[d.guestRegion]!;
      const pool = this.regions[d.poolRegion]!;
      this.copyInline(
        d.dir,
        guest,
        d.guestRegion,
        d.guestOffset,
        pool,
        d.poolRegion,
        d.poolOffset,
        d.length,
      );
      this.partDone(d.join, undefined);
    }
  }

  private async waitForThreadId(ring: Ring): Promise<number> {
    for (;;) {
      const tid = Atomics.load(ring.header, RING_THREAD);
      if (tid !== 0) return tid;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
