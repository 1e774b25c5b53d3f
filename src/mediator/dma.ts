import { MediatorError } from '../errors.js';
import {
  type CopyDirection,
  DmaDirection as Dir,
  type DmaDirection,
} from '../swiotlb/constants.js';
import { syncForCpuCopies, syncForDeviceCopies, unmapCopies } from '../swiotlb/dma-rules.js';
import type { MapOptions, SgEntry, SwiotlbPool } from '../swiotlb/pool.js';
import type { CopyEngine } from '../workers/copy-engine.js';
import type { FromDeviceBounce } from './defaults.js';
import type { GuestMemory } from './guest-memory.js';

/**
 * The guest's DMA API (include/linux/dma-mapping.h, streaming mappings), in the two
 * modes the mediator compares:
 * - bounce: every buffer is placed in the shared pool by the Linux-faithful
 *   allocator and copied by the copy engine at the steps Linux copies (dma-rules.ts);
 *   the device address is the bounce address;
 * - direct: no isolation, no pool, no copy; the device address is the guest address.
 */
export interface GuestDma extends BatchDma {
  readonly mode: 'bounce' | 'direct';
  readonly guest: GuestMemory;
  /** The largest buffer one mapping can take (dma_max_mapping_size()). */
  maxMappingSize(): number;
  mapSingle(addr: number, size: number, dir: DmaDirection, attrs?: number): Promise<number>;
  unmapSingle(dmaAddr: number, size: number, dir: DmaDirection, attrs?: number): Promise<void>;
  syncSingleForCpu(dmaAddr: number, size: number, dir: DmaDirection): Promise<void>;
  syncSingleForDevice(dmaAddr: number, size: number, dir: DmaDirection): Promise<void>;
  mapSg(entries: readonly SgEntry[], dir: DmaDirection, attrs?: number): Promise<number[]>;
  unmapSg(
    dmaAddrs: readonly number[],
    lengths: readonly number[],
    dir: DmaDirection,
    attrs?: number,
  ): Promise<void>;
}

/** The request pipeline's path through a DMA layer: a batch of buffers per request. */
export interface BatchDma {
  readonly mode: 'bounce' | 'direct' | 'shared';
  /**
   * Places the `n` buffers all at once or none (returns false when the pool is
   * full, having placed nothing), writing the device addresses to `out`. No
   * copies yet; no allocation beyond the caller's arrays.
   */
  tryPlace(n: number, b: DmaBatch): boolean;
  /** The map copies of a placed batch; undefined when already done inline. */
  copyIn(n: number, b: DmaBatch): Promise<unknown> | undefined;
  /**
   * Unmaps a placed batch: copies back what the mapping's rules copy back (unless
   * `attrs` has SKIP_CPU_SYNC), then frees every buffer, even when a copy fails.
   * `usedLen` is the device's used length for the chain the batch is (read once
   * and validated against its device-writable bytes); only `used-length`
   * bouncing reads it, and copies back nothing but presets without it.
   */
  release(n: number, b: DmaBatch, attrs: number, usedLen?: number): Promise<void> | undefined;
}

/** A request's buffers, in preallocated arrays reused from request to request. */
export interface DmaBatch {
  /** Guest addresses. */
  addrs: Float64Array;
  sizes: Uint32Array;
  dirs: Uint8Array;
  /** Device addresses, filled by tryPlace. */
  out: Float64Array;
  /** Scratch for release(). */
  heads: Int32Array;
  /**
   * Per buffer: -1, or a byte value (0-255) the driver preset the buffer to, a
   * value no device sends (the virtio-blk status byte). Under `used-length`
   * bouncing such a DMA_FROM_DEVICE buffer is filled with it in the pool instead
   * of copied in, and read back whole whatever the used length (the driver
   * validates its value).
   */
  presets: Int16Array;
  /**
   * Shared mode: 1 where the buffer was allocated in the pool for this request
   * (by tryPlace, or handed over with a pool buffer the caller filled); release()
   * frees exactly these. 0 elsewhere, and in the other modes.
   */
  allocated: Uint8Array;
}

export function createBatch(capacity: number): DmaBatch {
  return {
    addrs: new Float64Array(capacity),
    sizes: new Uint32Array(capacity),
    dirs: new Uint8Array(capacity),
    out: new Float64Array(capacity),
    heads: new Int32Array(capacity),
    presets: new Int16Array(capacity).fill(-1),
    allocated: new Uint8Array(capacity),
  };
}

export interface BounceDmaOptions {
  /**
   * The device's min_align_mask (NVMe: 4095).
   * @default 0
   */
  minAlignMask?: number;
  /**
   * alloc_align_mask for every mapping.
   * @default 0
   */
  allocAlignMask?: number;
  /**
   * The pool area this user's maps start in (a queue picks its own).
   * @default the pool handle's area
   */
  area?: number;
  /**
   * Owner id recorded with each mapping, so that guests sharing a pool cannot unmap
   * or sync each other's slots.
   * @default the guest's region id in the copy engine
   */
  owner?: number;
  /**
   * What the batch path (tryPlace, copyIn, release) copies for a DMA_FROM_DEVICE
   * buffer: `linux` (copy in at map, the whole buffer back at unmap) or
   * `used-length` (nothing in, the used length back). The single-buffer calls
   * (mapSingle, unmapSingle, the syncs) always follow Linux: they know no used
   * length.
   * @default 'linux'
   */
  fromDevice?: FromDeviceBounce;
}

/** Presets of up to this many bytes are stored byte by byte (copyIn). */
const TINY_PRESET = 16;

/** What a bounce-mode DMA user needs: its guest and pool registered with one engine. */
export interface BounceContext {
  guest: GuestMemory;
  guestRegion: number;
  pool: SwiotlbPool;
  poolRegion: number;
  engine: CopyEngine;
}

/**
 * Bounce mode. For DMA_FROM_DEVICE buffers the batch path follows one of two rules
 * (option `fromDevice`):
 *
 * `linux`: swiotlb_tbl_map_single() copies the original buffer into the slots for
 * every direction; kernel/dma/swiotlb.c (6.10) says why: "When the device is
 * writing memory, i.e. dir == DMA_FROM_DEVICE, copy the original buffer to the TLB
 * buffer before initiating DMA in order to preserve the original's data if the
 * device does a partial write, i.e. if the device doesn't overwrite the entire
 * buffer." (The comment it replaced, from the rework of the fix for CVE-2022-0854:
 * "we could omit the copy from the orig to the tlb buffer, if we knew for sure the
 * device will overwrite the entire current content. But we don't. Thus
 * unconditional bounce may prevent leaking swiotlb content (i.e. kernel memory) to
 * user-space.") The unmap copies the whole buffer back. The price: the
 * device sees the old contents of every read buffer, and a read is copied three
 * times.
 *
 * `used-length`: a virtio device says how much it wrote. VIRTIO 1.2 §2.7.8.2: "The
 * device MUST write at least len bytes to descriptor, beginning at the first
 * device-writable buffer" (len is allowed to be an underestimate); §2.7.8.3: "The
 * driver MUST NOT make assumptions about data in device-writable buffers beyond the
 * first len bytes". So the map copies nothing in, and the unmap copies back, of the
 * chain's device-writable buffers in order, only the first `usedLen` bytes (the
 * used length was validated against those buffers' total by the virtqueue). Both
 * of Linux's reasons hold without the copy-in:
 * - bytes the device did not write are not copied back, so they keep the guest's
 *   data (not clobbered, and no stale pool byte reaches the guest);
 * - bytes it says it wrote come back from the pool. A device that claims bytes it
 *   did not write breaks the MUST above; what it hands back then is pool content,
 *   which the device could read, and so could have written itself: a fill of the
 *   slots would protect nothing against it, so none is made (and none is paid).
 * The only bytes filled are presets (DmaBatch.presets: the virtio-blk status byte,
 * which the driver reads whatever the used length, as Linux's virtio_blk does), so
 * that a device that never writes its status cannot leave a stale "OK" there.
 * No guest byte reaches the device through a read buffer.
 */
export class BounceDma implements GuestDma {
  readonly mode = 'bounce' as const;
  readonly guest: GuestMemory;
  private readonly pool: SwiotlbPool;
  private readonly engine: CopyEngine;
  private readonly guestRegion: number;
  private readonly poolRegion: number;
  private readonly mapOpts: {
    minAlignMask: number;
    allocAlignMask: number;
    area: number;
    owner: number;
  };
  /** `used-length` bouncing of DMA_FROM_DEVICE buffers (see the class comment). */
  private readonly usedLength: boolean;
  /**
   * mapOpts for a DMA_FROM_DEVICE buffer under `used-length` with no preset: the
   * kernel's search even in a `warm` pool (MapOptions.kernelSearch: the CPU writes
   * nothing into it, so the device writes it first). A preset (the status byte)
   * is written by the CPU at map, as a copy-in is, and takes warm slots.
   */
  private readonly fromDeviceOpts: MapOptions;

  constructor(ctx: BounceContext, opts: BounceDmaOptions = {}) {
    this.guest = ctx.guest;
    this.pool = ctx.pool;
    this.engine = ctx.engine;
    this.guestRegion = ctx.guestRegion;
    this.poolRegion = ctx.poolRegion;
    this.mapOpts = {
      minAlignMask: opts.minAlignMask ?? 0,
      allocAlignMask: opts.allocAlignMask ?? 0,
      area: opts.area ?? ctx.pool.area,
      owner: opts.owner ?? ctx.guestRegion,
    };
    this.usedLength = (opts.fromDevice ?? 'linux') === 'used-length';
    this.fromDeviceOpts = this.usedLength ? { ...this.mapOpts, kernelSearch: true } : this.mapOpts;
    const g = this.guest;
    const p = this.pool.geometry;
    if (g.base < p.base + p.bytes && p.base < g.base + g.size) {
      throw new MediatorError(
        'DMA_BAD_ADDRESS',
        `guest memory [0x${g.base.toString(16)}, +${g.size}) overlaps the pool [0x${p.base.toString(16)}, +${p.bytes})`,
      );
    }
  }

  maxMappingSize(): number {
    return this.pool.maxMappingSize(this.mapOpts.minAlignMask);
  }

  async mapSingle(addr: number, size: number, dir: DmaDirection, attrs = 0): Promise<number> {
    const guestOffset = this.guest.offsetOf(addr, size);
    const opts = this.mapOpts;
    const tlbAddr = this.pool.tryAllocate(addr, size, dir, opts);
    if (tlbAddr < 0) {
      this.pool.countFailure('full');
      throw this.pool.fullError(this.pool.paddedSize(addr, size, opts));
    }
    void attrs; // map copies for every direction, whatever the attributes (dma-rules.ts)
    try {
      const pending = this.engine.copy(
        Dir.TO_DEVICE,
        this.guestRegion,
        guestOffset,
        this.poolRegion,
        this.pool.offsetOf(tlbAddr),
        size,
      );
      if (pending) await pending;
    } catch (err) {
      this.pool.release(tlbAddr, size, dir, opts.owner);
      throw err;
    }
    return tlbAddr;
  }

  async unmapSingle(dmaAddr: number, size: number, dir: DmaDirection, attrs = 0): Promise<void> {
    const head = this.pool.beginUnmap(dmaAddr, size, dir, this.mapOpts.owner);
    try {
      if (unmapCopies(dir, attrs)) {
        const origAddr = this.pool.mappedOrigAddr(head);
        const pending = this.engine.copy(
          Dir.FROM_DEVICE,
          this.guestRegion,
          origAddr - this.guest.base,
          this.poolRegion,
          this.pool.offsetOf(dmaAddr),
          size,
        );
        if (pending) await pending;
      }
    } finally {
      this.pool.finishUnmap(head);
    }
  }

  async syncSingleForCpu(dmaAddr: number, size: number, dir: DmaDirection): Promise<void> {
    await this.sync(dmaAddr, size, dir, syncForCpuCopies(dir) ? Dir.FROM_DEVICE : undefined);
  }

  async syncSingleForDevice(dmaAddr: number, size: number, dir: DmaDirection): Promise<void> {
    await this.sync(dmaAddr, size, dir, syncForDeviceCopies(dir) ? Dir.TO_DEVICE : undefined);
  }

  /** Validates a (partial) sync against the live mapping, then copies in `copy`'s direction, if any. */
  private sync(
    dmaAddr: number,
    size: number,
    dir: DmaDirection,
    copy: CopyDirection | undefined,
  ): Promise<void> | undefined {
    const origAddr = this.pool.resolve(dmaAddr, size, dir, this.mapOpts.owner);
    if (copy === undefined) return undefined;
    return this.engine.copy(
      copy,
      this.guestRegion,
      origAddr - this.guest.base,
      this.poolRegion,
      this.pool.offsetOf(dmaAddr),
      size,
    );
  }

  /**
   * dma_map_sg() as dma_direct_map_sg() makes it (kernel/dma/direct.c, 6.1.192 and
   * 6.12.117): the entries are mapped in order and the first that fails ends the
   * walk; the entries before it are unmapped with SKIP_CPU_SYNC
   * (`dma_direct_unmap_sg(dev, sgl, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC)`), the
   * ones after it are never tried, and the error is thrown: nothing stays mapped,
   * and the next-fit cursors and used_hiwater are the kernel's.
   *
   * The kernel copies each entry in as it maps it. Here every entry is placed
   * first, in the same order (a placement does not depend on a copy), then the
   * placed entries are copied together (long copies on the workers at once). So a
   * map that fails copies no guest byte into slots it frees again; a copy that
   * fails (a crashed worker) unmaps every entry once the other copies are done.
   */
  async mapSg(entries: readonly SgEntry[], dir: DmaDirection, attrs = 0): Promise<number[]> {
    void attrs; // map copies for every direction, whatever the attributes (dma-rules.ts)
    const opts = this.mapOpts;
    const tlbs: number[] = [];
    try {
      for (const e of entries) {
        this.guest.offsetOf(e.addr, e.length);
        const tlb = this.pool.tryAllocate(e.addr, e.length, dir, opts);
        if (tlb < 0) {
          this.pool.countFailure('full');
          throw this.pool.fullError(this.pool.paddedSize(e.addr, e.length, opts));
        }
        tlbs.push(tlb);
      }
    } catch (err) {
      this.releaseSg(tlbs, entries, dir);
      throw err;
    }
    let pending: Promise<void>[] | undefined;
    let failure: { reason: unknown } | undefined;
    for (let i = 0; i < tlbs.length; i++) {
      const e = entries[i]!;
      try {
        const p = this.engine.copy(
          Dir.TO_DEVICE,
          this.guestRegion,
          e.addr - this.guest.base,
          this.poolRegion,
          this.pool.offsetOf(tlbs[i]!),
          e.length,
        );
        if (p) {
          pending ??= [];
          pending.push(p);
        }
      } catch (err) {
        failure = { reason: err };
        break;
      }
    }
    if (pending !== undefined) {
      // Every copy settles before any slot is freed: a worker may still be writing it.
      try {
        await settleAll(pending);
      } catch (err) {
        failure ??= { reason: err };
      }
    }
    if (failure !== undefined) {
      this.releaseSg(tlbs, entries, dir);
      throw failure.reason;
    }
    return tlbs;
  }

  /** dma_direct_unmap_sg() with SKIP_CPU_SYNC of the first `tlbs.length` entries, in order. */
  private releaseSg(tlbs: readonly number[], entries: readonly SgEntry[], dir: DmaDirection): void {
    const owner = this.mapOpts.owner;
    for (let i = 0; i < tlbs.length; i++) {
      this.pool.release(tlbs[i]!, entries[i]!.length, dir, owner);
    }
  }

  tryPlace(n: number, b: DmaBatch): boolean {
    let i = 0;
    try {
      for (; i < n; i++) {
        const addr = b.addrs[i]!;
        const size = b.sizes[i]!;
        const dir = b.dirs[i] as DmaDirection;
        this.guest.offsetOf(addr, size);
        const opts =
          dir === Dir.FROM_DEVICE && b.presets[i]! < 0 ? this.fromDeviceOpts : this.mapOpts;
        const tlb = this.pool.tryAllocate(addr, size, dir, opts);
        if (tlb < 0) break;
        b.out[i] = tlb;
      }
    } catch (err) {
      this.releasePlaced(i, b);
      throw err;
    }
    if (i === n) return true;
    this.releasePlaced(i, b);
    return false;
  }

  copyIn(n: number, b: DmaBatch): Promise<unknown> | undefined {
    let pending: Promise<void>[] | undefined;
    for (let i = 0; i < n; i++) {
      if (this.usedLength && b.dirs[i] === Dir.FROM_DEVICE) {
        const preset = b.presets[i]!;
        if (preset >= 0) {
          const data = this.pool.data;
          const off = this.pool.offsetOf(b.out[i]!);
          const end = off + b.sizes[i]!;
          // The status byte: a store, where fill() on shared memory is a call into C++.
          if (end - off <= TINY_PRESET) for (let k = off; k < end; k++) data[k] = preset;
          else data.fill(preset, off, end);
        }
        continue;
      }
      const p = this.engine.copy(
        Dir.TO_DEVICE,
        this.guestRegion,
        b.addrs[i]! - this.guest.base,
        this.poolRegion,
        this.pool.offsetOf(b.out[i]!),
        b.sizes[i]!,
      );
      if (p) {
        pending ??= [];
        pending.push(p);
      }
    }
    return pending === undefined ? undefined : settleAll(pending);
  }

  release(n: number, b: DmaBatch, attrs: number, usedLen = 0): Promise<void> | undefined {
    const owner = this.mapOpts.owner;
    let pending: Promise<void>[] | undefined;
    let firstError: unknown;
    const heads = b.heads;
    let begun = 0;
    // used-length: what the device says it wrote, spread over the chain's
    // device-writable buffers in order (every buffer that unmapCopies names).
    let unwritten = usedLen;
    for (let i = 0; i < n; i++) {
      const dir = b.dirs[i] as DmaDirection;
      const tlb = b.out[i]!;
      const size = b.sizes[i]!;
      const head = this.pool.beginUnmap(tlb, size, dir, owner);
      heads[begun++] = head;
      if (!unmapCopies(dir, attrs)) continue;
      let bytes = size;
      if (this.usedLength) {
        const written = Math.max(0, Math.min(size, unwritten));
        unwritten -= written;
        if (dir === Dir.FROM_DEVICE && b.presets[i]! < 0) bytes = written;
      }
      if (bytes === 0) continue;
      try {
        const p = this.engine.copy(
          Dir.FROM_DEVICE,
          this.guestRegion,
          this.pool.mappedOrigAddr(head) - this.guest.base,
          this.poolRegion,
          this.pool.offsetOf(tlb),
          bytes,
        );
        if (p) {
          pending ??= [];
          pending.push(p);
        }
      } catch (err) {
        firstError ??= err;
      }
    }
    if (pending === undefined) {
      this.finishUnmaps(begun, heads);
      if (firstError !== undefined) throw firstError;
      return undefined;
    }
    return Promise.allSettled(pending).then((results) => {
      this.finishUnmaps(begun, heads);
      const failed = results.find((r) => r.status === 'rejected');
      if (firstError !== undefined) throw firstError;
      if (failed) throw (failed as PromiseRejectedResult).reason;
    });
  }

  /**
   * Frees a request's runs last buffer first. Under `warm` placement each free
   * pushes its run on the area's ring (warm.ts), so the ring's newest entry is
   * then the request's first buffer: the next request of that shape maps its
   * buffers in order and finds each one's run on top (warmTop), not under the
   * others' (a walk). The order of the frees changes nothing else.
   */
  private finishUnmaps(count: number, heads: Int32Array): void {
    for (let k = count - 1; k >= 0; k--) this.pool.finishUnmap(heads[k]!);
  }

  private releasePlaced(count: number, b: DmaBatch): void {
    for (let k = 0; k < count; k++) {
      this.pool.release(b.out[k]!, b.sizes[k]!, b.dirs[k] as DmaDirection, this.mapOpts.owner);
    }
  }

  async unmapSg(
    dmaAddrs: readonly number[],
    lengths: readonly number[],
    dir: DmaDirection,
    attrs = 0,
  ): Promise<void> {
    checkSgLengths(dmaAddrs, lengths);
    await settleAll(dmaAddrs.map((a, i) => this.unmapSingle(a, lengths[i]!, dir, attrs)));
  }
}

/** No isolation: the device is handed guest memory and guest addresses. The baseline. */
export class DirectDma implements GuestDma {
  readonly mode = 'direct' as const;

  constructor(readonly guest: GuestMemory) {}

  maxMappingSize(): number {
    return this.guest.size;
  }

  async mapSingle(addr: number, size: number, dir: DmaDirection): Promise<number> {
    this.guest.offsetOf(addr, size);
    checkDirection(dir);
    return addr;
  }

  async unmapSingle(dmaAddr: number, size: number, dir: DmaDirection): Promise<void> {
    this.guest.offsetOf(dmaAddr, size);
    checkDirection(dir);
  }

  async syncSingleForCpu(dmaAddr: number, size: number, dir: DmaDirection): Promise<void> {
    this.guest.offsetOf(dmaAddr, size);
    checkDirection(dir);
  }

  async syncSingleForDevice(dmaAddr: number, size: number, dir: DmaDirection): Promise<void> {
    this.guest.offsetOf(dmaAddr, size);
    checkDirection(dir);
  }

  async mapSg(entries: readonly SgEntry[], dir: DmaDirection): Promise<number[]> {
    checkDirection(dir);
    return entries.map((e) => {
      this.guest.offsetOf(e.addr, e.length);
      return e.addr;
    });
  }

  tryPlace(n: number, b: DmaBatch): boolean {
    for (let i = 0; i < n; i++) {
      this.guest.offsetOf(b.addrs[i]!, b.sizes[i]!);
      b.out[i] = b.addrs[i]!;
    }
    return true;
  }

  copyIn(): undefined {
    return undefined;
  }

  release(): undefined {
    return undefined;
  }

  async unmapSg(dmaAddrs: readonly number[], lengths: readonly number[], dir: DmaDirection) {
    checkSgLengths(dmaAddrs, lengths);
    checkDirection(dir);
    for (let i = 0; i < dmaAddrs.length; i++) this.guest.offsetOf(dmaAddrs[i]!, lengths[i]!);
  }
}

function checkDirection(dir: number): void {
  if (dir !== Dir.BIDIRECTIONAL && dir !== Dir.TO_DEVICE && dir !== Dir.FROM_DEVICE) {
    throw new MediatorError('SWIOTLB_INVALID_DIRECTION', `invalid DMA direction ${dir}`, { dir });
  }
}

function checkSgLengths(addrs: readonly number[], lengths: readonly number[]): void {
  if (addrs.length !== lengths.length) {
    throw new MediatorError('SWIOTLB_INVALID_ARGUMENT', 'unmapSg needs one length per address', {
      addresses: addrs.length,
      lengths: lengths.length,
    });
  }
}

/**
 * Settles when every copy (or unmap) has, then fails with the first failure: the
 * caller frees the slots when a map's copy fails, and a copy still on a live
 * worker would go on writing into them (Promise.all rejects at the first failure).
 */
async function settleAll(pending: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(pending);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
