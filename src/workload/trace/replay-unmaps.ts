import type { FreeEvent, SyncEvent, SyncSgEvent, UnmapEvent, UnmapSgEvent } from './dma-events.js';
import type { Placed } from './live-table.js';
import type { ReplayState } from './replay-state.js';

/**
 * The releases and syncs of the trace, matched to the live mappings:
 *
 * - dma_unmap_page/_phys and dma_free name the dma_addr: a pool address finds the
 *   mapping whose slots hold it (its dma_addr must be the mapping's own); another
 *   address the mapping bounced outside the pool there, or a direct map the
 *   observer was told of.
 * - dma_unmap_sg names the buffers (phys_addrs), so the entries are found by
 *   (device, phys_addr) among what dma_map_sg recorded, oldest first.
 * - unmap, sync and free of a pool address the trace never mapped: the mapping
 *   predates the trace; counted, not an error.
 * - a kernel placement on slots a live mapping holds ({@link makeRoom}): that
 *   mapping's unmap is replayed first when it is ahead in the trace, else the
 *   mapping is released as lost (an event the ring buffer dropped).
 */

/**
 * The kernel took [slot, slot + n): whatever the replay still holds there was
 * released in the kernel already. Replay its unmap now if it is ahead, else
 * release it as lost.
 */
export function makeRoom(s: ReplayState, slot: number, n: number, line: number, ts: number): void {
  for (let i = slot; i < slot + n; i++) {
    const id = s.table.holder(i);
    if (id === 0) continue;
    const rec = s.table.get(id)!;
    const ahead =
      rec.kind === 'sg'
        ? s.window.findUnmapSg(rec.device, rec.phys)
        : s.window.findUnmap(rec.kAddr);
    if (ahead !== undefined) {
      ahead.done = true;
      s.counts.unmaps.reordered++;
      s.replayNow(ahead.ev, ahead.ev.cpu, false);
    }
    if (s.table.has(id)) {
      s.counts.unmaps.implicit++;
      s.release(rec, line, ts);
    }
  }
}

/** dma_unmap_page/_phys, dma_free. */
export function replayUnmap(s: ReplayState, ev: UnmapEvent | FreeEvent): void {
  const d = s.counts.dev(ev.device);
  if (!s.pool.contains(ev.dmaAddr)) {
    const rec = s.table.outsideAt(ev.device, ev.dmaAddr);
    if (rec !== undefined) {
      s.counts.unmaps.replayed++;
      s.release(rec, ev.line, ev.ts);
      return;
    }
    const id = s.table.shiftDirect(ev.device, ev.dmaAddr);
    if (id !== undefined && s.observer?.onUnmap) {
      const dir = ev.kind === 'unmap' ? ev.dir : 0;
      const x: Placed = { ...ev, kind: 'map', dir, phys: ev.dmaAddr, kAddr: ev.dmaAddr };
      s.observe('onUnmap', x, id, { bounced: false, sg: false, slots: 0 });
    }
    return;
  }
  const rec = s.table.atSlot(s.pool.slotAt(ev.dmaAddr));
  if (rec === undefined || rec.kAddr !== ev.dmaAddr) {
    s.counts.unmaps.before_trace++;
    d.unmaps_before_trace++;
    return;
  }
  if (ev.kind === 'unmap' && ev.size !== rec.size) s.counts.unmaps.size_mismatch++;
  s.counts.unmaps.replayed++;
  s.release(rec, ev.line, ev.ts);
}

/** dma_unmap_sg: each buffer's oldest live entry. */
export function replayUnmapSg(s: ReplayState, ev: UnmapSgEvent): void {
  for (const phys of ev.phys) {
    const id = s.table.shiftSg(ev.device, phys);
    if (id === undefined) {
      s.counts.unmaps.sg_unknown++;
      continue;
    }
    if (id > 0) {
      // A bounced entry; one released as lost earlier (no record) was reported then.
      const rec = s.table.get(id);
      if (rec) {
        s.counts.unmaps.replayed++;
        s.release(rec, ev.line, ev.ts);
      }
    } else if (id < 0 && s.observer?.onUnmap) {
      const x: Placed = { ...ev, kind: 'sg', size: 0, phys, kAddr: phys };
      s.observe('onUnmap', x, -id, { bounced: false, sg: true, slots: 0 });
    }
  }
}

export function replaySync(s: ReplayState, ev: SyncEvent): void {
  syncOne(s, ev.device, ev.forDevice, ev.dmaAddr, ev.size);
}

export function replaySyncSg(s: ReplayState, ev: SyncSgEvent): void {
  for (let i = 0; i < ev.dmaAddrs.length; i++) {
    syncOne(s, ev.device, ev.forDevice, ev.dmaAddrs[i]!, ev.sizes[i]!);
  }
}

/** A sync of [addr, addr + size): counted when it lies in a live mapping of the pool. */
function syncOne(s: ReplayState, device: string, forDevice: boolean, addr: number, size: number) {
  if (!s.pool.contains(addr)) return;
  const rec = s.table.atSlot(s.pool.slotAt(addr));
  if (rec === undefined || addr < rec.kAddr || addr + size > rec.kAddr + rec.size) {
    s.counts.syncs.before_trace++;
    return;
  }
  s.counts.dev(device).syncs++;
  if (forDevice) {
    s.counts.syncs.for_device++;
    s.counts.syncs.bytes_for_device += size;
  } else {
    s.counts.syncs.for_cpu++;
    s.counts.syncs.bytes_for_cpu += size;
  }
}
