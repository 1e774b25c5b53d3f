import { DmaDirection, IO_TLB_SIZE, PAGE_SIZE } from '../../swiotlb/constants.js';
import {
  type AllocEvent,
  DMA_MAPPING_ERROR,
  type DmaEvent,
  type FreeEvent,
  type MapEvent,
  type MapSgEvent,
  type SyncEvent,
  type SyncSgEvent,
  type UnmapEvent,
  type UnmapSgEvent,
} from './dma-events.js';
import { Lookahead, mapKey, physKey, sgPhysKey } from './lookahead.js';
import type { PlaceFailure, Placement, PlaceResult } from './placement.js';
import type {
  AreaReport,
  DeviceReport,
  Disagreement,
  KernelFailure,
  KernelHang,
  MapCounts,
  TraceReport,
} from './report-types.js';
import { UsageSeries } from './series.js';

/**
 * Replays a kernel DMA trace against a {@link Placement}: every mapping the
 * kernel bounced (its dma_addr lies in the pool) is placed by the model, in trace
 * order, starting in area `cpu & (nareas - 1)` as swiotlb_pool_find_slots() does
 * with raw_smp_processor_id(); the model's address is compared with the kernel's.
 *
 * Matching rules (each has a hand-worked test in test/trace.replay.test.ts, the
 * kernel profiles' in test/trace.kernels.test.ts):
 * - dma_addr in [base, base + nslabs * 2 KiB): bounced, replayed;
 *   dma_addr == phys_addr: not bounced, skipped; any other dma_addr: outside the
 *   pool. Announced by a swiotlb_bounced line, it was bounced into another pool
 *   (a transient or grown one of CONFIG_SWIOTLB_DYNAMIC, or a restricted one):
 *   counted apart, and with a growable model replayed and compared by the kind of
 *   pool it lands in. Else an IOMMU address or a DMA offset: counted;
 *   dma_addr == ffffffffffffffff: the kernel failed. It is replayed when the device
 *   bounces (a swiotlb_bounced line announced it, or the device has bounced
 *   before): both failing is an agreement.
 * - dma_map_sg: entry i is (phys_addrs[i], dma_addrs[i], sizes[i]); bounced and
 *   direct entries mix; lists with fewer DMA segments than buffers went through an
 *   IOMMU and are skipped. dma_unmap_sg names the buffers (phys_addrs), so the
 *   entries are found by (device, phys_addr) among what dma_map_sg recorded.
 * - unmap, sync and free of a pool address the trace never mapped: the mapping
 *   predates the trace; counted, not an error.
 * - swiotlb_bounced: fires before the slots are searched, so the map it announces
 *   (same CPU, device, original address, size; the next one ahead) is replayed at
 *   its place, with its CPU; see lookahead.ts.
 * - a kernel placement on slots a live mapping holds: that mapping's unmap is
 *   replayed first when it is ahead in the trace, else the mapping is released as
 *   lost (an event the ring buffer dropped).
 * - 6.1 (swiotlb_do_find_slots() without 7c3940bf81e5 never ends some searches,
 *   spinning with the area lock held): a traced map line the model says never
 *   ends is a disagreement (the kernel returned from it); a swiotlb_bounced with
 *   no map line whose CPU has nothing ahead in the window is tried, and a request
 *   that never ends is judged at the end: hung (agreement) when its CPU wrote no
 *   later event, a disagreement when it did.
 *
 * State:
 *
 *   owner   kernel slot -> id of the live mapping holding it (0: free, as far as
 *           the trace shows)          slots: [0 0 7 7 7 0 9 9 0 ...]
 *   recs    id -> the mapping: its kernel slots, its model address (-1: the model
 *           did not place it)
 *   sgLive  (device, buffer) -> ids of its live dma_map_sg entries, oldest first
 *           (an entry that was not bounced: minus its observer id, or 0)
 *   outsideLive  (device, dma_addr) -> ids of live single maps bounced outside
 *           the pool (their recs have kSlot -1, and no `owner` slots)
 *   directLive   (device, dma_addr) -> observer ids of live direct maps (only
 *           with an observer: it pairs their unmaps)
 *
 * Rules: the slots of every live mapping in the pool hold its id in `owner` and
 * no other slot holds an id; kernel use = the sum of live in-pool mappings' kernel
 * slots (those outside: kOutsideUsed); model
 * use = the sum of the model slots of the mappings it placed = the placement's
 * own used() (the property test checks the last two against the generator).
 *
 * The kernel's own slots for a bounced mapping follow from its dma_addr: the
 * bounce offset is dma_addr & (IO_TLB_SIZE - 1) (swiotlb_align_offset() keeps at
 * most the low 11 bits for streaming maps), the mapping takes
 * nr_slots(size + offset) slots from the slot below (swiotlb_tbl_map_single()).
 */

export interface ReplayObserver {
  /**
   * Every map the replay sees (bounced or not, of the devices kept), in replay
   * order, and the kernel's failures of bouncing devices (`failed`).
   */
  onMap?(op: TracedOp): void;
  /** The release of a mapping {@link onMap} saw (its unmap, or its slots reused: a lost unmap). */
  onUnmap?(op: TracedOp): void;
}

/** A normalized DMA operation of the trace, for profiles, sizing and workload extraction. */
export interface TracedOp {
  /** The mapping's id: the same in its onMap and onUnmap; 0 for an unmap of nothing seen. */
  id: number;
  kind: 'map' | 'sg' | 'alloc';
  line: number;
  ts: number;
  cpu: number;
  device: string;
  size: number;
  dir: DmaDirection;
  /** The original buffer's address (0 for a coherent allocation). */
  phys: number;
  /** The kernel bounced it (in the pool, or outside it as `outside` says). */
  bounced: boolean;
  /** Bounced outside the pool replayed (a swiotlb_bounced line announced it): a grown or transient pool, or another pool. */
  outside: boolean;
  /** The kernel failed it: dma_addr=ffffffffffffffff of a device that bounces. No unmap follows. */
  failed: boolean;
  /** Part of a scatter-gather list. */
  sg: boolean;
  /** Slots the kernel's mapping takes (nr_slots(size + bounce offset)); 0 when not bounced. */
  slots: number;
  /** The device's min_align_mask as the replay was told it. */
  minAlignMask: number;
}

export interface TraceReplayOptions {
  placement: Placement;
  /** The kernel's pool (what the trace's addresses are measured against). */
  kernel: { base: number; nslabs: number; nareas: number };
  /** Keep only these devices (dev_name) when given. */
  devices?: ReadonlySet<string>;
  /** min_align_mask for every device, and per device. @default 0 */
  minAlignMask?: { all: number; byDevice: ReadonlyMap<string, number> };
  /** Events held back to replay out of order (see lookahead.ts). @default 4096 */
  window?: number;
  /** Disagreements and failures kept with details. @default 10 */
  keep?: number;
  observer?: ReplayObserver;
}

/** What the replay reports; the input, pool and boot-log parts come from the reader. */
export type ReplayResult = Omit<TraceReport, 'input' | 'pool' | 'boot_log'> & {
  filtered_events: number;
};

interface LiveRec {
  id: number;
  kind: 'map' | 'sg' | 'alloc';
  device: string;
  line: number;
  cpu: number;
  size: number;
  dir: DmaDirection;
  phys: number;
  kAddr: number;
  /** The kernel's first slot; -1 for a mapping outside the pool (a grown or transient pool). */
  kSlot: number;
  kSlots: number;
  /** The model's address, -1 when it did not place it. */
  mAddr: number;
  mSlots: number;
  /** The model's area in the default pool; -1 outside it (a growth or transient pool of the model). */
  mArea: number;
}

interface Placed {
  kind: LiveRec['kind'];
  device: string;
  line: number;
  ts: number;
  cpu: number;
  size: number;
  dir: DmaDirection;
  phys: number;
  kAddr: number;
}

type DeviceStats = Omit<DeviceReport, 'device' | 'min_align_mask'>;

function hex(n: number): string {
  return Number.isFinite(n) ? `0x${n.toString(16)}` : 'out of range';
}

function pageAlign(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

const ORPHANS_KEPT = 10_000;

/** Key of a live mapping by device and DMA address. */
function liveKey(device: string, dmaAddr: number): string {
  return `${device}|${dmaAddr}`;
}

function pushId(index: Map<string, number[]>, key: string, id: number): void {
  const ids = index.get(key);
  if (ids) ids.push(id);
  else index.set(key, [id]);
}

/** The oldest id under `key`, taken out. */
function shiftId(index: Map<string, number[]>, key: string): number | undefined {
  const ids = index.get(key);
  const id = ids?.shift();
  if (ids?.length === 0) index.delete(key);
  return id;
}

function dropId(index: Map<string, number[]>, key: string, id: number): void {
  const ids = index.get(key);
  const at = ids?.indexOf(id) ?? -1;
  if (!ids || at < 0) return;
  ids.splice(at, 1);
  if (ids.length === 0) index.delete(key);
}

export class TraceReplay {
  private readonly p: Placement;
  private readonly window = new Lookahead();
  private readonly windowSize: number;
  private readonly keep: number;
  private readonly base: number;
  private readonly end: number;
  private readonly kAreaNslabs: number;
  /** Kernel slot -> id of the live mapping holding it (0: free, as far as the trace shows). */
  private readonly owner: Int32Array;
  private readonly recs = new Map<number, LiveRec>();
  private nextId = 1;
  /** (device, buffer) -> ids of live dma_map_sg entries of that buffer (0: a direct entry). */
  private readonly sgLive = new Map<string, number[]>();
  /** swiotlb_bounced lines whose map was not found ahead, by (device, address, size). */
  private readonly orphans = new Map<string, number>();
  /** (device, dma_addr) -> ids of live mappings outside the pool that the kernel bounced. */
  private readonly outsideLive = new Map<string, number[]>();
  /** (device, dma_addr) -> ids of live direct maps (kept only for an observer, to pair unmaps). */
  private readonly directLive = new Map<string, number[]>();
  /** 6.1 requests the model says never end (swiotlb_do_find_slots() without 7c3940bf81e5). */
  private readonly hangs: (KernelHang & { seenAfter: boolean })[] = [];
  private readonly dyn = {
    kernel_outside: 0,
    both_outside: 0,
    model_in_pool: 0,
    model_outside_kernel_in_pool: 0,
    model_failed: 0,
    kernel_outside_used_hiwater: 0,
  };
  private kOutsideUsed = 0;
  private readonly devices = new Map<string, DeviceStats>();
  private readonly series = new UsageSeries();

  private readonly maps: MapCounts = {
    replayed: 0,
    bounced: 0,
    direct: 0,
    outside_pool: 0,
    kernel_failed: 0,
    kernel_failed_other: 0,
    sg_lists: 0,
    sg_truncated: 0,
    sg_merged: 0,
    sg_errors: 0,
    allocs: 0,
    reordered: 0,
    bounced_unmatched: 0,
    outside_bounced: 0,
  };
  private readonly unmaps = {
    replayed: 0,
    before_trace: 0,
    sg_unknown: 0,
    implicit: 0,
    reordered: 0,
    size_mismatch: 0,
  };
  private readonly syncs = {
    for_device: 0,
    for_cpu: 0,
    bytes_for_device: 0,
    bytes_for_cpu: 0,
    before_trace: 0,
  };
  private agree = 0;
  private disagree = 0;
  private readonly disagreements: Disagreement[] = [];
  private readonly kernelFailures: KernelFailure[] = [];
  private readonly offsetHints = new Set<string>();
  private full = 0;
  private tooLarge = 0;
  private invalid = 0;
  private kernelHang = 0;
  private kernelOverrun = 0;
  private filtered = 0;
  private mUsed = 0;
  private mHiwater = 0;
  private kUsed = 0;
  private kHiwater = 0;
  private readonly mArea: { maps: number; used: number; hiwater: number }[];
  private readonly kArea: { maps: number; used: number; hiwater: number }[];
  private largest: { size: number; device: string; line: number } | null = null;

  constructor(private readonly opts: TraceReplayOptions) {
    this.p = opts.placement;
    this.windowSize = opts.window ?? 4096;
    this.keep = opts.keep ?? 10;
    this.base = opts.kernel.base;
    this.end = opts.kernel.base + opts.kernel.nslabs * IO_TLB_SIZE;
    this.kAreaNslabs = opts.kernel.nslabs / opts.kernel.nareas;
    this.owner = new Int32Array(opts.kernel.nslabs);
    const area = () => ({ maps: 0, used: 0, hiwater: 0 });
    this.mArea = Array.from({ length: this.p.geometry.nareas }, area);
    this.kArea = Array.from({ length: opts.kernel.nareas }, area);
  }

  /** Takes the next event of the trace (in trace order). */
  push(ev: DmaEvent): void {
    this.window.push(ev);
    while (this.window.size > this.windowSize) this.step();
  }

  /**
   * Replays what is held back and returns the results. `lastEventLine(cpu)` is the
   * line of the last event (of any kind) that CPU wrote: a CPU that wrote after a
   * request the 6.1 model says never ends did not hang.
   */
  finish(lastEventLine: (cpu: number) => number = () => 0): ReplayResult {
    while (this.step()) {}
    for (const n of this.orphans.values()) this.maps.bounced_unmatched += n;
    this.orphans.clear();
    for (const h of this.hangs) this.judgeHang(h, lastEventLine(h.cpu));
    return this.result();
  }

  /** Slots the model holds now (equal to the placement's own count: a test invariant). */
  modelUsed(): number {
    return this.mUsed;
  }

  private step(): boolean {
    const p = this.window.shift();
    if (p === undefined) return false;
    if (!p.done) {
      p.done = true;
      this.dispatch(p.ev, p.ev.cpu, false);
    }
    return true;
  }

  private dispatch(ev: DmaEvent, cpu: number, viaBounced: boolean): void {
    if (this.opts.devices && !this.opts.devices.has(ev.device)) {
      this.filtered++;
      return;
    }
    switch (ev.kind) {
      case 'bounced':
        this.onBounced(ev.device, ev.cpu, ev.devAddr, ev.size, ev.line);
        break;
      case 'map':
        this.onMap(ev, cpu, viaBounced);
        break;
      case 'map_sg':
        this.onMapSg(ev, cpu, viaBounced);
        break;
      case 'map_sg_err':
        this.maps.sg_errors++;
        break;
      case 'unmap':
      case 'free':
        this.onUnmap(ev);
        break;
      case 'unmap_sg':
        this.onUnmapSg(ev);
        break;
      case 'sync':
        this.onSync(ev);
        break;
      case 'sync_sg':
        this.onSyncSg(ev);
        break;
      case 'alloc':
        this.onAlloc(ev, cpu);
        break;
    }
  }

  private onBounced(
    device: string,
    cpu: number,
    devAddr: number,
    size: number,
    line: number,
  ): void {
    const p = this.window.claimMap(mapKey(cpu, device, devAddr, size));
    if (p === undefined) {
      this.probeHang(device, cpu, devAddr, size, line);
      const key = `${device}|${physKey(devAddr)}|${size}`;
      this.orphans.set(key, (this.orphans.get(key) ?? 0) + 1);
      if (this.orphans.size > ORPHANS_KEPT) {
        const oldest = this.orphans.keys().next().value!;
        this.maps.bounced_unmatched += this.orphans.get(oldest)!;
        this.orphans.delete(oldest);
      }
      return;
    }
    if (p.done) return; // an sg list replayed at an earlier entry's bounce
    p.done = true;
    this.maps.reordered++;
    this.dispatch(p.ev, cpu, true);
  }

  /**
   * A map whose swiotlb_bounced was not matched ahead: its bounce was counted an
   * orphan too soon. True when there was such a bounce (the map was bounced).
   */
  private adoptOrphan(device: string, phys: number, size: number): boolean {
    const key = `${device}|${physKey(phys)}|${size}`;
    const n = this.orphans.get(key);
    if (n === undefined) return false;
    if (n > 1) this.orphans.set(key, n - 1);
    else this.orphans.delete(key);
    return true;
  }

  /**
   * A swiotlb_bounced with no map line: under 6.1, the kernel may have hung in
   * swiotlb_do_find_slots() (its loop never ends for some min_align_mask requests,
   * with the area lock held: the CPU writes nothing more). When that CPU has no
   * event ahead in the window, the model tries the request: a WOULD_HANG answer is
   * judged at the end against the CPU's last event. The try is placement-only; one
   * that fits is released at once (the failed map took nothing in the kernel; the
   * model's next-fit cursor moved, which is the price of asking).
   */
  private probeHang(
    device: string,
    cpu: number,
    devAddr: number,
    size: number,
    line: number,
  ): void {
    if (this.p.profile !== '6.1' || this.window.hasEventOfCpu(cpu)) return;
    const phys = physKey(devAddr);
    const res = this.p.map(phys, size, DmaDirection.TO_DEVICE, {
      cpu,
      minAlignMask: this.maskFor(device),
    });
    if ('addr' in res) {
      this.p.unmap(res.addr, size, DmaDirection.TO_DEVICE);
      return;
    }
    if (res.failure !== 'kernel_hang') return;
    this.maps.replayed++;
    this.kernelHang++;
    this.hangs.push({ line, device, cpu, size, phys: hex(phys), kernel: 'hung', seenAfter: false });
  }

  /** A 6.1 request the model says never ends: the kernel hung if its CPU wrote nothing after it. */
  private judgeHang(h: KernelHang & { seenAfter: boolean }, lastLine: number): void {
    const d = this.dev(h.device);
    if (lastLine > h.line || h.seenAfter) {
      h.kernel = 'went on';
      h.next_line = lastLine > h.line ? lastLine : null;
      this.disagreed(
        d,
        { ...h, phys: Number(h.phys), kAddr: DMA_MAPPING_ERROR },
        h.cpu & (this.p.geometry.nareas - 1),
        'kernel_hang',
        `the 6.1 rules never end this search (swiotlb_do_find_slots() without 7c3940bf81e5), but CPU ${h.cpu} went on (its last event is at line ${lastLine}): the kernel's search is not 6.1.y's, or the pools differ`,
        'no map line; the CPU went on',
      );
    } else {
      h.kernel = 'hung';
      this.agreed(d);
    }
  }

  private inPool(addr: number): boolean {
    return addr >= this.base && addr < this.end;
  }

  private dev(name: string): DeviceStats {
    let d = this.devices.get(name);
    if (!d) {
      d = {
        maps: 0,
        bounced: 0,
        direct: 0,
        outside_pool: 0,
        outside_bounced: 0,
        kernel_failed: 0,
        bytes_bounced: 0,
        largest: 0,
        sg_lists: 0,
        syncs: 0,
        unmaps_before_trace: 0,
        agree: 0,
        disagree: 0,
      };
      this.devices.set(name, d);
    }
    return d;
  }

  private maskFor(device: string): number {
    const m = this.opts.minAlignMask;
    return m === undefined ? 0 : (m.byDevice.get(device) ?? m.all);
  }

  private observe(kind: 'onMap' | 'onUnmap', op: TracedOp): void {
    this.opts.observer?.[kind]?.(op);
  }

  private onMap(ev: MapEvent, cpu: number, viaBounced: boolean): void {
    const d = this.dev(ev.device);
    d.maps++;
    const adopted =
      !viaBounced && this.orphans.size > 0 && this.adoptOrphan(ev.device, ev.phys, ev.size);
    const x: Placed = {
      kind: 'map',
      device: ev.device,
      line: ev.line,
      ts: ev.ts,
      cpu,
      size: ev.size,
      dir: ev.dir,
      phys: ev.phys,
      kAddr: ev.dmaAddr,
    };
    if (ev.dmaAddr === DMA_MAPPING_ERROR) {
      this.kernelFailure(ev, cpu, viaBounced, d);
    } else if (this.inPool(ev.dmaAddr)) {
      this.place(x);
    } else if (ev.dmaAddr !== ev.phys && (viaBounced || adopted)) {
      this.placeOutside(x);
    } else {
      this.notBounced(d, ev.dmaAddr, ev.phys);
      this.observeDirect(x, false);
    }
  }

  private notBounced(d: DeviceStats, dmaAddr: number, phys: number): void {
    if (dmaAddr === phys) {
      this.maps.direct++;
      d.direct++;
    } else {
      this.maps.outside_pool++;
      d.outside_pool++;
    }
  }

  /** A map the kernel did not bounce, for the observer (an id to pair its unmap by dma_addr). */
  private observeDirect(x: Placed, sg: boolean): number {
    if (!this.opts.observer?.onMap) return 0;
    const id = this.nextId++;
    if (!sg) pushId(this.directLive, liveKey(x.device, x.kAddr), id);
    this.observe('onMap', this.op(x, id, { bounced: false, sg, slots: 0 }));
    return id;
  }

  /** The observer's view of a mapping. */
  private op(
    x: Placed,
    id: number,
    o: { bounced: boolean; sg: boolean; slots: number; outside?: boolean; failed?: boolean },
  ): TracedOp {
    return {
      id,
      kind: x.kind,
      line: x.line,
      ts: x.ts,
      cpu: x.cpu,
      device: x.device,
      size: x.size,
      dir: x.dir,
      phys: x.phys,
      bounced: o.bounced,
      outside: o.outside ?? false,
      failed: o.failed ?? false,
      sg: o.sg,
      slots: o.slots,
      minAlignMask: this.maskFor(x.device),
    };
  }

  /**
   * A mapping the kernel bounced outside the pool replayed (a swiotlb_bounced line
   * announced it): with CONFIG_SWIOTLB_DYNAMIC a transient pool or a grown one,
   * else another pool (a restricted one). Its kernel slots are counted apart; with
   * a growable model it is placed and compared by the part it lands in.
   */
  private placeOutside(x: Placed): LiveRec {
    const d = this.dev(x.device);
    this.maps.outside_bounced++;
    d.outside_bounced++;
    d.bytes_bounced += x.size;
    const kSlots = Math.ceil((x.size + (x.kAddr & (IO_TLB_SIZE - 1))) / IO_TLB_SIZE);
    const rec = this.newRec(x, -1, kSlots);
    if (this.p.dynamic) {
      this.maps.replayed++;
      this.dyn.kernel_outside++;
      const area = x.cpu & (this.p.geometry.nareas - 1);
      const res = this.p.map(x.phys, x.size, x.dir, {
        cpu: x.cpu,
        minAlignMask: this.maskFor(x.device),
      });
      if (!('addr' in res)) {
        this.dyn.model_failed++;
        this.countFailure(res);
        this.disagreed(
          d,
          x,
          area,
          res.failure,
          this.whyFailed(res, x.size, this.maskFor(x.device)),
        );
      } else {
        this.modelPlaced(rec, res);
        if (res.part === 'default') {
          this.dyn.model_in_pool++;
          this.disagreed(
            d,
            x,
            area,
            hex(res.addr),
            'the kernel bounced it outside its default pool (a transient or grown pool: the default pool had no room), the model found room in the default pool: the model holds fewer mappings (an earlier disagreement, mappings made before the trace, or lost maps)',
          );
        } else {
          this.dyn.both_outside++;
        }
      }
    }
    this.take(rec, x.ts);
    // An sg entry's unmap names its buffer: dma_unmap_sg finds it through sgLive.
    if (x.kind !== 'sg') pushId(this.outsideLive, liveKey(x.device, x.kAddr), rec.id);
    this.observe(
      'onMap',
      this.op(x, rec.id, { bounced: true, sg: x.kind === 'sg', slots: kSlots, outside: true }),
    );
    return rec;
  }

  private onMapSg(ev: MapSgEvent, cpu: number, viaBounced: boolean): void {
    const d = this.dev(ev.device);
    this.maps.sg_lists++;
    d.sg_lists++;
    if (ev.truncated) this.maps.sg_truncated++;
    const merged = ev.dmaAddrs.length !== ev.phys.length || ev.ents !== ev.nents;
    if (merged) this.maps.sg_merged++;
    for (let i = 0; i < ev.phys.length; i++) {
      const phys = ev.phys[i]!;
      const dma = merged ? undefined : ev.dmaAddrs[i];
      const size = ev.sizes[i] ?? 0;
      d.maps++;
      const adopted = !viaBounced && dma !== undefined && this.adoptOrphan(ev.device, phys, size);
      let id = 0;
      const x: Placed = {
        kind: 'sg',
        line: ev.line,
        ts: ev.ts,
        cpu,
        device: ev.device,
        size,
        dir: ev.dir,
        phys,
        kAddr: dma ?? phys,
      };
      if (dma !== undefined && this.inPool(dma)) {
        id = this.place(x).id;
      } else if (dma !== undefined && dma !== phys && (viaBounced || adopted)) {
        id = this.placeOutside(x).id;
      } else {
        if (dma !== undefined) this.notBounced(d, dma, phys);
        // A direct entry: a negative id, so that its dma_unmap_sg finds no record.
        id = -this.observeDirect(x, true);
      }
      pushId(this.sgLive, sgPhysKey(ev.device, phys), id);
    }
  }

  private onAlloc(ev: AllocEvent, cpu: number): void {
    // dma_direct_alloc() page-aligns the size before swiotlb_alloc(); other
    // allocations (not from this pool) say nothing about it.
    if (!this.inPool(ev.dmaAddr)) return;
    const d = this.dev(ev.device);
    d.maps++;
    this.place({
      kind: 'alloc',
      device: ev.device,
      line: ev.line,
      ts: ev.ts,
      cpu,
      size: pageAlign(ev.size),
      dir: 0,
      phys: 0,
      kAddr: ev.dmaAddr,
    });
  }

  /** The kernel placed a mapping at `x.kAddr`: take its slots, ask the model, compare. */
  private place(x: Placed): LiveRec {
    const d = this.dev(x.device);
    this.maps.replayed++;
    if (x.kind === 'alloc') this.maps.allocs++;
    else this.maps.bounced++;
    d.bounced++;
    d.bytes_bounced += x.size;
    if (x.size > d.largest) d.largest = x.size;
    if (this.largest === null || x.size > this.largest.size) {
      this.largest = { size: x.size, device: x.device, line: x.line };
    }

    const offset = x.kAddr & (IO_TLB_SIZE - 1);
    const kSlot = (x.kAddr - offset - this.base) / IO_TLB_SIZE;
    const kSlots = Math.min(Math.ceil((x.size + offset) / IO_TLB_SIZE), this.owner.length - kSlot);
    this.makeRoom(kSlot, kSlots, x.line, x.ts);

    const area = x.cpu & (this.p.geometry.nareas - 1);
    const mask = this.maskFor(x.device);
    const res =
      x.kind === 'alloc'
        ? this.p.alloc(x.size, { cpu: x.cpu })
        : this.p.map(x.phys, x.size, x.dir, { cpu: x.cpu, minAlignMask: mask });
    const rec = this.newRec(x, kSlot, kSlots);
    if ('addr' in res) {
      this.modelPlaced(rec, res);
      if (res.addr === x.kAddr) this.agreed(d);
      else if (res.part !== 'default') {
        this.dyn.model_outside_kernel_in_pool++;
        this.disagreed(
          d,
          x,
          area,
          `${hex(res.addr)} (${res.part} pool)`,
          'the model found no room in the default pool and grew, where the kernel placed it in the default pool: the model holds mappings the kernel had released (an earlier disagreement or a lost unmap)',
        );
      } else this.disagreed(d, x, area, hex(res.addr), this.whyElsewhere(x, res.addr, rec.mArea));
    } else {
      this.countFailure(res);
      this.disagreed(d, x, area, res.failure, this.whyFailed(res, x.size, mask));
    }
    this.take(rec, x.ts);
    if (this.opts.observer?.onMap) {
      this.observe(
        'onMap',
        this.op(x, rec.id, { bounced: true, sg: x.kind === 'sg', slots: kSlots }),
      );
    }
    return rec;
  }

  private newRec(x: Placed, kSlot: number, kSlots: number): LiveRec {
    return {
      id: this.nextId++,
      kind: x.kind,
      device: x.device,
      line: x.line,
      cpu: x.cpu,
      size: x.size,
      dir: x.dir,
      phys: x.phys,
      kAddr: x.kAddr,
      kSlot,
      kSlots,
      mAddr: -1,
      mSlots: 0,
      mArea: -1,
    };
  }

  /** Records where the model placed a mapping (its area only inside the default pool). */
  private modelPlaced(rec: LiveRec, res: Extract<PlaceResult, { addr: number }>): void {
    const g = this.p.geometry;
    rec.mAddr = res.addr;
    rec.mSlots = res.slots;
    rec.mArea =
      res.part === 'default' ? Math.floor((res.addr - g.base) / IO_TLB_SIZE / g.areaNslabs) : -1;
  }

  /** Books a placed mapping on both sides. */
  private take(rec: LiveRec, ts: number): void {
    this.recs.set(rec.id, rec);
    if (rec.kSlot >= 0) {
      this.owner.fill(rec.id, rec.kSlot, rec.kSlot + rec.kSlots);
      this.kUsed += rec.kSlots;
      if (this.kUsed > this.kHiwater) this.kHiwater = this.kUsed;
      const ka = this.kAreaOf(rec.kSlot);
      ka.maps++;
      ka.used += rec.kSlots;
      if (ka.used > ka.hiwater) ka.hiwater = ka.used;
    } else {
      this.kOutsideUsed += rec.kSlots;
      if (this.kOutsideUsed > this.dyn.kernel_outside_used_hiwater) {
        this.dyn.kernel_outside_used_hiwater = this.kOutsideUsed;
      }
    }
    if (rec.mAddr >= 0) {
      this.mUsed += rec.mSlots;
      if (this.mUsed > this.mHiwater) this.mHiwater = this.mUsed;
      if (rec.mArea >= 0) {
        const ma = this.mArea[rec.mArea]!;
        ma.maps++;
        ma.used += rec.mSlots;
        if (ma.used > ma.hiwater) ma.hiwater = ma.used;
      }
    }
    this.series.add(rec.line, ts, this.mUsed, this.kUsed);
  }

  private kAreaOf(kSlot: number): { maps: number; used: number; hiwater: number } {
    return this.kArea[Math.min(Math.floor(kSlot / this.kAreaNslabs), this.kArea.length - 1)]!;
  }

  private agreed(d: DeviceStats): void {
    this.agree++;
    d.agree++;
  }

  private disagreed(
    d: DeviceStats,
    x: Omit<Placed, 'kind' | 'dir' | 'ts'>,
    area: number,
    model: string,
    reason: string,
    kernel?: string,
  ): void {
    this.disagree++;
    d.disagree++;
    if (this.disagreements.length >= this.keep) return;
    this.disagreements.push({
      line: x.line,
      device: x.device,
      cpu: x.cpu,
      area,
      size: x.size,
      phys: hex(x.phys),
      kernel:
        kernel ??
        (x.kAddr === DMA_MAPPING_ERROR
          ? 'failed'
          : this.inPool(x.kAddr)
            ? hex(x.kAddr)
            : `${hex(x.kAddr)} (outside the pool)`),
      model,
      reason,
    });
  }

  private whyElsewhere(x: Placed, mAddr: number, mArea: number): string {
    const kOff = x.kAddr & (IO_TLB_SIZE - 1);
    const mOff = mAddr & (IO_TLB_SIZE - 1);
    if (kOff !== mOff) {
      if (kOff !== 0 && kOff === (x.phys & (IO_TLB_SIZE - 1))) {
        this.offsetHints.add(x.device);
        return `the kernel kept the buffer's offset 0x${kOff.toString(16)} in the slot: the device has a min_align_mask the replay was not given (--min-align-mask ${x.device}=0xfff for NVMe)`;
      }
      return `bounce offsets differ (kernel 0x${kOff.toString(16)}, model 0x${mOff.toString(16)}): check --min-align-mask for ${x.device}`;
    }
    const kArea = Math.floor((x.kAddr - this.base) / IO_TLB_SIZE / this.kAreaNslabs);
    if (kArea !== mArea) {
      return `the kernel placed it in area ${kArea}, the model in area ${mArea} (the search started in area ${x.cpu & (this.p.geometry.nareas - 1)})`;
    }
    return 'another slot of the same area: the pools differ (an earlier disagreement, mappings made before the trace, or lost events)';
  }

  private countFailure(res: PlaceFailure): void {
    if (res.failure === 'full') this.full++;
    else if (res.failure === 'too_large') this.tooLarge++;
    else if (res.failure === 'kernel_hang') this.kernelHang++;
    else if (res.failure === 'kernel_overrun') this.kernelOverrun++;
    else this.invalid++;
  }

  private whyFailed(res: PlaceFailure, size: number, mask: number): string {
    if (res.failure === 'invalid') return `the model refuses it: ${res.message}`;
    if (res.failure === 'kernel_hang') {
      return `the ${this.p.profile} rules never end this search (swiotlb_do_find_slots() without 7c3940bf81e5: it would spin with the area lock held), but the kernel returned from it: not a 6.1.y search, or the pools differ (an earlier disagreement)`;
    }
    if (res.failure === 'kernel_overrun') {
      return `the ${this.p.profile} rules would place it past the pool's end (a run into the missing slots of a partial last segment, or swiotlb_alloc() in a pool that is not page aligned), which the kernel did not: not a 6.1.y search, or the pools differ`;
    }
    if (res.failure === 'too_large') {
      return `the model refuses ${size} bytes: more than the max mapping size with min_align_mask 0x${mask.toString(16)}`;
    }
    return 'the model found no room where the kernel did: it holds mappings the kernel had released (an earlier disagreement or a lost unmap)';
  }

  /** dma_addr=ffffffffffffffff: replayed when the device bounces. */
  private kernelFailure(ev: MapEvent, cpu: number, viaBounced: boolean, d: DeviceStats): void {
    if (!viaBounced && d.bounced === 0 && d.outside_bounced === 0) {
      this.maps.kernel_failed_other++;
      return;
    }
    this.maps.kernel_failed++;
    this.maps.replayed++;
    d.kernel_failed++;
    const g = this.p.geometry;
    const area = cpu & (g.nareas - 1);
    const mask = this.maskFor(ev.device);
    const res = this.p.map(ev.phys, ev.size, ev.dir, { cpu, minAlignMask: mask });
    const x: Placed = { ...ev, kind: 'map', cpu, kAddr: DMA_MAPPING_ERROR };
    let model: KernelFailure['model'];
    if ('addr' in res) {
      model = 'placed';
      // The kernel has no such mapping, so no unmap will come: give the slots back now.
      this.p.unmap(res.addr, ev.size, ev.dir);
      this.disagreed(
        d,
        x,
        area,
        hex(res.addr),
        'the kernel failed (swiotlb buffer is full) where the model found room: the model holds fewer mappings (mappings made before the trace, or lost maps)',
      );
    } else {
      model = res.failure;
      this.countFailure(res);
      // The kernel failed; 6.1's rules would have spun or run past the pool's end instead.
      if (res.failure === 'kernel_hang' || res.failure === 'kernel_overrun') {
        this.disagreed(d, x, area, res.failure, this.whyFailed(res, ev.size, mask));
      } else this.agreed(d);
    }
    if (this.opts.observer?.onMap) {
      const slots = Math.ceil((ev.size + (ev.phys & mask & (IO_TLB_SIZE - 1))) / IO_TLB_SIZE);
      this.observe(
        'onMap',
        this.op(x, this.nextId++, { bounced: true, sg: false, slots, failed: true }),
      );
    }
    if (this.kernelFailures.length < this.keep) {
      this.kernelFailures.push({ line: ev.line, device: ev.device, cpu, size: ev.size, model });
    }
  }

  /**
   * The kernel took [slot, slot + n): whatever the replay still holds there was
   * released in the kernel already. Replay its unmap now if it is ahead, else
   * release it as lost.
   */
  private makeRoom(slot: number, n: number, line: number, ts: number): void {
    for (let s = slot; s < slot + n; s++) {
      const id = this.owner[s]!;
      if (id === 0) continue;
      const rec = this.recs.get(id)!;
      const ahead =
        rec.kind === 'sg'
          ? this.window.findUnmapSg(rec.device, rec.phys)
          : this.window.findUnmap(rec.kAddr);
      if (ahead !== undefined) {
        ahead.done = true;
        this.unmaps.reordered++;
        this.dispatch(ahead.ev, ahead.ev.cpu, false);
      }
      if (this.recs.has(id)) {
        this.unmaps.implicit++;
        this.release(rec, line, ts);
      }
    }
  }

  /** Releases a mapping on both sides (its unmap, or its slots taken again: a lost unmap). */
  private release(rec: LiveRec, line: number, ts: number): void {
    this.recs.delete(rec.id);
    if (rec.kSlot >= 0) {
      this.owner.fill(0, rec.kSlot, rec.kSlot + rec.kSlots);
      this.kUsed -= rec.kSlots;
      this.kAreaOf(rec.kSlot).used -= rec.kSlots;
    } else {
      this.kOutsideUsed -= rec.kSlots;
      if (rec.kind !== 'sg') dropId(this.outsideLive, liveKey(rec.device, rec.kAddr), rec.id);
    }
    if (rec.mAddr >= 0) {
      if (rec.kind === 'alloc') this.p.free(rec.mAddr, rec.size);
      else this.p.unmap(rec.mAddr, rec.size, rec.dir);
      this.mUsed -= rec.mSlots;
      if (rec.mArea >= 0) this.mArea[rec.mArea]!.used -= rec.mSlots;
    }
    if (rec.kind === 'sg') dropId(this.sgLive, sgPhysKey(rec.device, rec.phys), rec.id);
    this.series.add(line, ts, this.mUsed, this.kUsed);
    if (this.opts.observer?.onUnmap) {
      const x: Placed = { ...rec, ts, line };
      this.observe(
        'onUnmap',
        this.op(x, rec.id, {
          bounced: true,
          sg: rec.kind === 'sg',
          slots: rec.kSlots,
          outside: rec.kSlot < 0,
        }),
      );
    }
  }

  /** The live mapping holding pool address `addr`, if the trace showed it. */
  private recAt(addr: number): LiveRec | undefined {
    const id = this.owner[Math.floor((addr - this.base) / IO_TLB_SIZE)] ?? 0;
    return id === 0 ? undefined : this.recs.get(id);
  }

  private onUnmap(ev: UnmapEvent | FreeEvent): void {
    const d = this.dev(ev.device);
    if (!this.inPool(ev.dmaAddr)) {
      const key = liveKey(ev.device, ev.dmaAddr);
      const outside = this.outsideLive.get(key)?.[0];
      const rec = outside === undefined ? undefined : this.recs.get(outside);
      if (rec !== undefined) {
        this.unmaps.replayed++;
        this.release(rec, ev.line, ev.ts);
        return;
      }
      const id = shiftId(this.directLive, key);
      if (id !== undefined && this.opts.observer?.onUnmap) {
        const dir = ev.kind === 'unmap' ? ev.dir : 0;
        const x: Placed = { ...ev, kind: 'map', dir, phys: ev.dmaAddr, kAddr: ev.dmaAddr };
        this.observe('onUnmap', this.op(x, id, { bounced: false, sg: false, slots: 0 }));
      }
      return;
    }
    const rec = this.recAt(ev.dmaAddr);
    if (rec === undefined || rec.kAddr !== ev.dmaAddr) {
      this.unmaps.before_trace++;
      d.unmaps_before_trace++;
      return;
    }
    if (ev.kind === 'unmap' && ev.size !== rec.size) this.unmaps.size_mismatch++;
    this.unmaps.replayed++;
    this.release(rec, ev.line, ev.ts);
  }

  private onUnmapSg(ev: UnmapSgEvent): void {
    for (const phys of ev.phys) {
      const id = shiftId(this.sgLive, sgPhysKey(ev.device, phys));
      if (id === undefined) {
        this.unmaps.sg_unknown++;
        continue;
      }
      if (id > 0) {
        // A bounced entry; one released as lost earlier (no record) was reported then.
        const rec = this.recs.get(id);
        if (rec) {
          this.unmaps.replayed++;
          this.release(rec, ev.line, ev.ts);
        }
      } else if (id < 0 && this.opts.observer?.onUnmap) {
        const x: Placed = { ...ev, kind: 'sg', size: 0, phys, kAddr: phys };
        this.observe('onUnmap', this.op(x, -id, { bounced: false, sg: true, slots: 0 }));
      }
    }
  }

  private onSync(ev: SyncEvent): void {
    this.syncOne(ev.device, ev.forDevice, ev.dmaAddr, ev.size);
  }

  private onSyncSg(ev: SyncSgEvent): void {
    for (let i = 0; i < ev.dmaAddrs.length; i++) {
      this.syncOne(ev.device, ev.forDevice, ev.dmaAddrs[i]!, ev.sizes[i]!);
    }
  }

  private syncOne(device: string, forDevice: boolean, addr: number, size: number): void {
    if (!this.inPool(addr)) return;
    const rec = this.recAt(addr);
    if (rec === undefined || addr < rec.kAddr || addr + size > rec.kAddr + rec.size) {
      this.syncs.before_trace++;
      return;
    }
    this.dev(device).syncs++;
    if (forDevice) {
      this.syncs.for_device++;
      this.syncs.bytes_for_device += size;
    } else {
      this.syncs.for_cpu++;
      this.syncs.bytes_for_cpu += size;
    }
  }

  private result(): ReplayResult {
    const areas: AreaReport[] = [];
    const n = Math.max(this.mArea.length, this.kArea.length);
    for (let a = 0; a < n; a++) {
      areas.push({
        area: a,
        maps: this.mArea[a]?.maps ?? 0,
        used_hiwater: this.mArea[a]?.hiwater ?? 0,
        kernel_maps: this.kArea[a]?.maps ?? 0,
        kernel_used_hiwater: this.kArea[a]?.hiwater ?? 0,
      });
    }
    const devices = [...this.devices.entries()]
      .map(([device, s]) => ({ device, min_align_mask: this.maskFor(device), ...s }))
      .sort((a, b) => b.bounced - a.bounced || a.device.localeCompare(b.device));
    return {
      placements: {
        agree: this.agree,
        disagree: this.disagree,
        first_disagreement_line:
          this.disagreements.length === 0
            ? null
            : Math.min(...this.disagreements.map((x) => x.line)),
        disagreements: this.disagreements.sort((a, b) => a.line - b.line),
      },
      maps: this.maps,
      unmaps: this.unmaps,
      syncs: this.syncs,
      model: {
        full: this.full,
        too_large: this.tooLarge,
        invalid: this.invalid,
        kernel_hang: this.kernelHang,
        kernel_overrun: this.kernelOverrun,
        used_hiwater: this.mHiwater,
        used_end: this.mUsed,
        series: this.series.result(),
        areas,
      },
      observed: { used_hiwater: this.kHiwater, used_end: this.kUsed },
      largest: this.largest,
      kernel_failures: this.kernelFailures,
      kernel_hangs: this.hangs.map(({ seenAfter: _s, ...h }) => h),
      dynamic: this.p.dynamic ? { ...this.dyn, ...this.p.growth() } : null,
      devices,
      hints: this.hints(),
      filtered_events: this.filtered,
    };
  }

  private hints(): string[] {
    const out: string[] = [];
    for (const device of this.offsetHints) {
      out.push(
        `${device}: the kernel's bounce addresses keep the low bits of the buffers' addresses, so the device has a min_align_mask (NVMe sets 0xfff): replay with --min-align-mask ${device}=0xfff`,
      );
    }
    const m = this.maps;
    if (m.bounced === 0 && m.allocs === 0 && m.outside_pool > 0) {
      out.push(
        `no dma_addr fell in the pool [${hex(this.base)}, ${hex(this.end)}) but ${m.outside_pool} were neither there nor the buffer's own address: is the boot log from the traced boot, or is the pool's base right?`,
      );
    }
    if (m.outside_pool > 0 && m.bounced > 0) {
      out.push(
        `${m.outside_pool} mappings went outside the pool and are not replayed: an IOMMU, a DMA offset, or pools the kernel grew (record swiotlb:swiotlb_bounced too: it tells bounced mappings apart)`,
      );
    }
    if (m.outside_bounced > 0 && !this.p.dynamic) {
      out.push(
        `${m.outside_bounced} mappings that swiotlb_bounced announced went outside the pool: transient or grown pools of CONFIG_SWIOTLB_DYNAMIC (replay with --dynamic), or another pool (a restricted-dma-pool: replay it with --restricted); they are counted, not replayed`,
      );
    }
    for (const h of this.hangs) {
      if (h.kernel !== 'hung') continue;
      out.push(
        `line ${h.line}: ${h.device} on CPU ${h.cpu} asked for ${h.size} bytes that the 6.1 rules search for ever (swiotlb_do_find_slots() without 7c3940bf81e5), and CPU ${h.cpu} wrote nothing after it: the kernel hung there with the area's lock held. Linux 6.3 fixed it; 6.1.y has not taken the fix`,
      );
    }
    if (this.unmaps.before_trace > 0) {
      out.push(
        `${this.unmaps.before_trace} unmaps of mappings made before the trace started (counted, not errors): they held slots the model did not know of, so early placements can disagree`,
      );
    }
    if (this.unmaps.implicit > 0) {
      out.push(
        `${this.unmaps.implicit} mappings were released without their unmap (the kernel reused their slots): events were lost, or unmaps lie further ahead than the lookahead window`,
      );
    }
    if (m.sg_truncated > 0) {
      out.push(
        `${m.sg_truncated} scatter-gather lists were printed in part (more than 128 entries): their other entries are not replayed`,
      );
    }
    if (m.bounced_unmatched > 0) {
      out.push(
        `${m.bounced_unmatched} swiotlb_bounced lines have no map line: maps that failed without a dma event (dma_map_sg's errors are not traced) or lost events`,
      );
    }
    return out;
  }
}
