import { PAGE_SIZE } from '../../swiotlb/constants.js';
import {
  type AllocEvent,
  DMA_MAPPING_ERROR,
  type MapEvent,
  type MapSgEvent,
} from './dma-events.js';
import type { LiveRec, Placed } from './live-table.js';
import type { BouncedLines } from './replay-bounced.js';
import { replayFailedAlloc, replayKernelFailure } from './replay-failures.js';
import { placeOutside } from './replay-outside.js';
import type { ReplayState } from './replay-state.js';
import { makeRoom } from './replay-unmaps.js';
import { hex } from './replay-verdicts.js';

function pageAlign(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * The maps of the trace, matched against the model: every mapping the kernel
 * bounced into the pool is placed by the model, starting in area
 * `cpu & (nareas - 1)` as the kernel does with raw_smp_processor_id()
 * (6.1.192 and 6.12.117 swiotlb_find_slots(); 6.12's swiotlb_search_area() with
 * CONFIG_SWIOTLB_DYNAMIC, offset 0 first; 6.6.y's swiotlb_pool_find_slots()),
 * and the model's address is compared with the kernel's.
 *
 * - dma_addr in [base, end): bounced, replayed ({@link place}); dma_addr ==
 *   phys_addr: not bounced, counted; another dma_addr announced by a
 *   swiotlb_bounced line: bounced into another pool (replay-outside.ts); any other
 *   dma_addr: an IOMMU address or a DMA offset, counted;
 *   dma_addr == ffffffffffffffff: the kernel failed (replay-failures.ts).
 * - dma_map_sg: entry i is (phys_addrs[i], dma_addrs[i], sizes[i]); bounced and
 *   direct entries mix; lists with fewer DMA segments than buffers went through an
 *   IOMMU and are not replayed. Each entry is filed under its buffer for
 *   dma_unmap_sg (replay-unmaps.ts).
 * - dma_alloc in the pool: swiotlb_alloc() of the page-aligned size; a failed one
 *   (NULL virt_addr) of a device that allocates from the pool: replay-failures.ts.
 * - a traced map the 6.1 model says never ends is a disagreement (the kernel
 *   returned from it); see replay-hangs.ts for the maps that never came.
 */
export class MapMatcher {
  /** Devices with an allocation in the pool: their allocations come from it (restricted pools). */
  private readonly poolAllocators = new Set<string>();

  constructor(
    private readonly s: ReplayState,
    private readonly bounced: BouncedLines,
  ) {}

  /** dma_map_page/_phys/_resource; `viaBounced`: its swiotlb_bounced announced it. */
  map(ev: MapEvent, cpu: number, viaBounced: boolean): void {
    const s = this.s;
    const d = s.counts.dev(ev.device);
    d.maps++;
    const adopted =
      !viaBounced && this.bounced.waiting && this.bounced.adopt(ev.device, ev.phys, ev.size);
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
      replayKernelFailure(s, ev, cpu, viaBounced, d);
    } else if (s.pool.contains(ev.dmaAddr)) {
      this.place(x);
    } else if (ev.dmaAddr !== ev.phys && (viaBounced || adopted)) {
      placeOutside(s, x);
    } else {
      s.counts.notBounced(d, ev.dmaAddr, ev.phys);
      this.observeDirect(x, false);
    }
  }

  /** dma_map_sg: each entry as a map of its own, filed under its buffer. */
  mapSg(ev: MapSgEvent, cpu: number, viaBounced: boolean): void {
    const s = this.s;
    const d = s.counts.dev(ev.device);
    s.counts.maps.sg_lists++;
    d.sg_lists++;
    if (ev.truncated) s.counts.maps.sg_truncated++;
    const merged = ev.dmaAddrs.length !== ev.phys.length || ev.ents !== ev.nents;
    if (merged) s.counts.maps.sg_merged++;
    for (let i = 0; i < ev.phys.length; i++) {
      const phys = ev.phys[i]!;
      const dma = merged ? undefined : ev.dmaAddrs[i];
      const size = ev.sizes[i] ?? 0;
      d.maps++;
      const adopted = !viaBounced && dma !== undefined && this.bounced.adopt(ev.device, phys, size);
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
      if (dma !== undefined && s.pool.contains(dma)) {
        id = this.place(x).id;
      } else if (dma !== undefined && dma !== phys && (viaBounced || adopted)) {
        id = placeOutside(s, x).id;
      } else {
        if (dma !== undefined) s.counts.notBounced(d, dma, phys);
        // A direct entry: a negative id, so that its dma_unmap_sg finds no record.
        id = -this.observeDirect(x, true);
      }
      s.table.pushSg(ev.device, phys, id);
    }
  }

  /** dma_alloc: only an allocation from the pool (swiotlb_alloc()) says anything of it. */
  alloc(ev: AllocEvent, cpu: number): void {
    // dma_direct_alloc() page-aligns the size before swiotlb_alloc(); other
    // allocations (not from this pool) say nothing about it.
    if (ev.failed) {
      replayFailedAlloc(this.s, ev, cpu, pageAlign(ev.size), this.poolAllocators.has(ev.device));
      return;
    }
    if (!this.s.pool.contains(ev.dmaAddr)) return;
    this.poolAllocators.add(ev.device);
    const d = this.s.counts.dev(ev.device);
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

  /** A map the kernel did not bounce, for the observer (an id to pair its unmap by dma_addr). */
  private observeDirect(x: Placed, sg: boolean): number {
    const s = this.s;
    if (!s.observer?.onMap) return 0;
    const id = s.table.newId();
    if (!sg) s.table.pushDirect(x.device, x.kAddr, id);
    s.observe('onMap', x, id, { bounced: false, sg, slots: 0 });
    return id;
  }

  /** The kernel placed a mapping at `x.kAddr`: take its slots, ask the model, compare. */
  private place(x: Placed): LiveRec {
    const s = this.s;
    const d = s.counts.dev(x.device);
    s.counts.bouncedInPool(d, x);

    const kSlot = s.pool.firstSlot(x.kAddr);
    const kSlots = s.pool.slotCount(x.kAddr, x.size);
    makeRoom(s, kSlot, kSlots, x.line, x.ts);

    const area = s.startArea(x.cpu);
    const mask = s.maskFor(x.device);
    const res =
      x.kind === 'alloc'
        ? s.p.alloc(x.size, { cpu: x.cpu })
        : s.p.map(x.phys, x.size, x.dir, { cpu: x.cpu, minAlignMask: mask });
    const rec = s.table.newRec(x, kSlot, kSlots);
    const v = s.verdicts;
    if ('addr' in res) {
      s.modelPlaced(rec, res);
      if (res.addr === x.kAddr) v.agreed(d);
      else if (res.part !== 'default') {
        s.counts.dyn.model_outside_kernel_in_pool++;
        v.disagreed(
          d,
          x,
          area,
          `${hex(res.addr)} (${res.part} pool)`,
          'the model found no room in the default pool and grew, where the kernel placed it in the default pool: the model holds mappings the kernel had released (an earlier disagreement or a lost unmap)',
        );
      } else v.disagreed(d, x, area, hex(res.addr), v.whyElsewhere(x, res.addr, rec.mArea));
    } else {
      s.counts.countFailure(res);
      v.disagreed(d, x, area, res.failure, v.whyFailed(res, x.size, mask));
    }
    s.take(rec, x.ts);
    if (s.observer?.onMap) {
      s.observe('onMap', x, rec.id, { bounced: true, sg: x.kind === 'sg', slots: kSlots });
    }
    return rec;
  }
}
