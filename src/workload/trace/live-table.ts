import type { DmaDirection } from '../../swiotlb/constants.js';
import { sgPhysKey } from './lookahead.js';

/** A mapping as the trace shows the kernel made it (with the CPU whose search placed it). */
export interface Placed {
  kind: 'map' | 'sg' | 'alloc';
  device: string;
  line: number;
  ts: number;
  cpu: number;
  size: number;
  dir: DmaDirection;
  phys: number;
  /** The traced dma_addr. */
  kAddr: number;
}

/** A live mapping the kernel bounced: its kernel slots and where the model put it. */
export interface LiveRec {
  id: number;
  kind: Placed['kind'];
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

/**
 * The mappings the trace shows live, and the indexes that find them again from
 * what their unmaps name:
 *
 *   owner   kernel slot -> id of the live mapping holding it (0: free, as far as
 *           the trace shows)          slots: [0 0 7 7 7 0 9 9 0 ...]
 *   recs    id -> the mapping: its kernel slots, its model address (-1: the model
 *           did not place it)
 *   sg      (device, buffer) -> ids of its live dma_map_sg entries, oldest first
 *           (an entry that was not bounced: minus its observer id, or 0)
 *   outside (device, dma_addr) -> ids of live single maps bounced outside the
 *           pool (their recs have kSlot -1, and no `owner` slots)
 *   direct  (device, dma_addr) -> observer ids of live direct maps (only with an
 *           observer: it pairs their unmaps)
 *
 * Rules: the slots of every live mapping in the pool hold its id in `owner` and
 * no other slot holds an id; every rec outside the pool that is not an sg entry
 * is under its (device, dma_addr) in `outside`; a bounced sg entry is under its
 * (device, buffer) in `sg` until dma_unmap_sg takes it out or it is released.
 * Ids come from one counter, shared with the observer's ids of mappings that
 * have no rec (direct maps, the kernel's failures), so an id names one mapping.
 */
export class LiveTable {
  private readonly owner: Int32Array;
  private readonly recs = new Map<number, LiveRec>();
  private nextId = 1;
  private readonly sg = new Map<string, number[]>();
  private readonly outside = new Map<string, number[]>();
  private readonly direct = new Map<string, number[]>();

  /** A table for a kernel pool of `nslabs` slots. */
  constructor(nslabs: number) {
    this.owner = new Int32Array(nslabs);
  }

  /** A fresh id, for a mapping the observer is told of. */
  newId(): number {
    return this.nextId++;
  }

  /** A record for a mapping the kernel bounced (not live until {@link add}). */
  newRec(x: Placed, kSlot: number, kSlots: number): LiveRec {
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

  get(id: number): LiveRec | undefined {
    return this.recs.get(id);
  }

  has(id: number): boolean {
    return this.recs.has(id);
  }

  /** The id holding kernel slot `slot` (0: free). */
  holder(slot: number): number {
    return this.owner[slot]!;
  }

  /** The live mapping holding kernel slot `slot`, if the trace showed it. */
  atSlot(slot: number): LiveRec | undefined {
    const id = this.owner[slot] ?? 0;
    return id === 0 ? undefined : this.recs.get(id);
  }

  /** Makes a mapping live: its slots, or its (device, dma_addr) outside the pool. */
  add(rec: LiveRec): void {
    this.recs.set(rec.id, rec);
    if (rec.kSlot >= 0) this.owner.fill(rec.id, rec.kSlot, rec.kSlot + rec.kSlots);
    // An sg entry's unmap names its buffer: dma_unmap_sg finds it through `sg`.
    else if (rec.kind !== 'sg') pushId(this.outside, liveKey(rec.device, rec.kAddr), rec.id);
  }

  /** Takes a mapping out of the table and every index. */
  remove(rec: LiveRec): void {
    this.recs.delete(rec.id);
    if (rec.kSlot >= 0) this.owner.fill(0, rec.kSlot, rec.kSlot + rec.kSlots);
    else if (rec.kind !== 'sg') dropId(this.outside, liveKey(rec.device, rec.kAddr), rec.id);
    if (rec.kind === 'sg') dropId(this.sg, sgPhysKey(rec.device, rec.phys), rec.id);
  }

  /** Files a dma_map_sg entry under its buffer (a bounced entry's id; a direct one's negated, or 0). */
  pushSg(device: string, phys: number, id: number): void {
    pushId(this.sg, sgPhysKey(device, phys), id);
  }

  /** The oldest sg entry of (device, buffer), taken out. */
  shiftSg(device: string, phys: number): number | undefined {
    return shiftId(this.sg, sgPhysKey(device, phys));
  }

  /** The oldest live single map outside the pool at (device, dma_addr). */
  outsideAt(device: string, dmaAddr: number): LiveRec | undefined {
    const id = this.outside.get(liveKey(device, dmaAddr))?.[0];
    return id === undefined ? undefined : this.recs.get(id);
  }

  /** Files a direct map's observer id under (device, dma_addr). */
  pushDirect(device: string, dmaAddr: number, id: number): void {
    pushId(this.direct, liveKey(device, dmaAddr), id);
  }

  /** The oldest direct map's observer id at (device, dma_addr), taken out. */
  shiftDirect(device: string, dmaAddr: number): number | undefined {
    return shiftId(this.direct, liveKey(device, dmaAddr));
  }
}
