import type { DmaEvent, MapEvent, MapSgEvent } from './dma-events.js';

/**
 * The next events of the trace, held back so that the replay can take a few of
 * them out of trace order. The trace is in time order of the trace points, and
 * the kernel fires them at different moments of each call (kernel/dma/mapping.c,
 * kernel/dma/swiotlb.c):
 *
 *   swiotlb_bounced   before the slots are searched      (the allocation's moment)
 *   dma_map_* / _sg   after the mapping is made           (later)
 *   dma_unmap_phys    after the slots are freed
 *   dma_unmap_sg      before the slots are freed
 *
 * So on a busy pool a map can appear before the unmap that freed its slots, and
 * two CPUs' maps can appear in the other order than their searches ran. Two
 * look-ups fix that: from a swiotlb_bounced, its map (same CPU, device, original
 * address and size) is found ahead and replayed at the bounce's place; and when
 * the kernel's placement lands on slots still live in the replay, the unmap of
 * what held them is found ahead and replayed first.
 *
 *   queue:  [head ........................ tail]   events in trace order
 *   index:  key -> entries of the queue holding that key, in queue order
 *
 * Rules: every queued event is in each index it has keys for; an event leaves the
 * indexes when it leaves the queue (it is then the first entry of each of its
 * lists, since both are in queue order); `done` marks an event replayed ahead of
 * its turn, which the queue then skips.
 */

export interface Pending {
  ev: DmaEvent;
  /** Replayed already (taken out of order). */
  done: boolean;
  /** swiotlb_bounced events matched to this map, per key (a list can hold a key twice). */
  claims?: Map<string, number>;
  /** Index keys this entry is filed under, to remove it when it leaves. */
  keys: [Map<string, Pending[]>, string][];
}

/** Low 44 bits of an address: drops a memory-encryption bit (SEV's C-bit is bit 47 or 51) that phys_to_dma() sets. */
export function physKey(addr: number): number {
  return Number.isFinite(addr) && addr >= 0 ? addr % 2 ** 44 : -1;
}

/** Key of a mapping as a swiotlb_bounced sees it. */
export function mapKey(cpu: number, device: string, phys: number, size: number): string {
  return `${cpu}|${device}|${physKey(phys)}|${size}`;
}

export function sgPhysKey(device: string, phys: number): string {
  return `${device}|${phys}`;
}

export class Lookahead {
  private queue: Pending[] = [];
  private head = 0;
  private readonly maps = new Map<string, Pending[]>();
  private readonly unmaps = new Map<string, Pending[]>();
  private readonly unmapSgs = new Map<string, Pending[]>();

  get size(): number {
    return this.queue.length - this.head;
  }

  push(ev: DmaEvent): void {
    const p: Pending = { ev, done: false, keys: [] };
    switch (ev.kind) {
      case 'map':
        this.file(this.maps, mapKey(ev.cpu, ev.device, ev.phys, ev.size), p);
        break;
      case 'map_sg':
        for (let i = 0; i < ev.dmaAddrs.length && i < ev.phys.length; i++) {
          this.file(this.maps, mapKey(ev.cpu, ev.device, ev.phys[i]!, ev.sizes[i]!), p);
        }
        break;
      case 'unmap':
      case 'free':
        // A free of NULL frees nothing: no mapping's release to find.
        if (ev.kind === 'free' && ev.nothing) break;
        this.file(this.unmaps, String(ev.dmaAddr), p);
        break;
      case 'unmap_sg':
        for (const phys of ev.phys) this.file(this.unmapSgs, sgPhysKey(ev.device, phys), p);
        break;
      default:
        break;
    }
    this.queue.push(p);
  }

  /** The oldest event, out of the queue and the indexes (done or not). */
  shift(): Pending | undefined {
    if (this.head >= this.queue.length) return undefined;
    const p = this.queue[this.head++]!;
    for (const [index, key] of p.keys) {
      const list = index.get(key);
      if (!list) continue; // filed twice under this key, removed on the first pass
      // Both are in queue order, so p leads its lists; a list can hold p twice.
      while (list.length > 0 && list[0] === p) list.shift();
      if (list.length === 0) index.delete(key);
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return p;
  }

  /**
   * The map event ahead that a swiotlb_bounced belongs to: the first whose key
   * still has an unclaimed entry. Claims it. Undefined when none is queued.
   */
  claimMap(key: string): Pending | undefined {
    for (const p of this.maps.get(key) ?? []) {
      const capacity = keyCount(p.ev as MapEvent | MapSgEvent, key);
      p.claims ??= new Map();
      const claimed = p.claims.get(key) ?? 0;
      if (claimed < capacity) {
        p.claims.set(key, claimed + 1);
        return p;
      }
    }
    return undefined;
  }

  /** The first unmap (or free) of `dmaAddr` ahead that is not done yet. */
  findUnmap(dmaAddr: number): Pending | undefined {
    return this.unmaps.get(String(dmaAddr))?.find((p) => !p.done);
  }

  /** The first dma_unmap_sg ahead naming the buffer `phys` of `device`, not done yet. */
  findUnmapSg(device: string, phys: number): Pending | undefined {
    return this.unmapSgs.get(sgPhysKey(device, phys))?.find((p) => !p.done);
  }

  /** True when an event of `cpu` is queued (not done): that CPU went on after the current event. */
  hasEventOfCpu(cpu: number): boolean {
    for (let i = this.head; i < this.queue.length; i++) {
      const p = this.queue[i]!;
      if (!p.done && p.ev.cpu === cpu) return true;
    }
    return false;
  }

  private file(index: Map<string, Pending[]>, key: string, p: Pending): void {
    let list = index.get(key);
    if (!list) {
      list = [];
      index.set(key, list);
    }
    list.push(p);
    p.keys.push([index, key]);
  }
}

/** How many entries of a map event have `key` (1 for a single map). */
function keyCount(ev: MapEvent | MapSgEvent, key: string): number {
  if (ev.kind === 'map') return 1;
  let n = 0;
  for (let i = 0; i < ev.dmaAddrs.length && i < ev.phys.length; i++) {
    if (mapKey(ev.cpu, ev.device, ev.phys[i]!, ev.sizes[i]!) === key) n++;
  }
  return n;
}
