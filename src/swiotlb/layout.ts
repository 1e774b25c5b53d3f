import { IO_TLB_SIZE } from './constants.js';
import type { Geometry } from './geometry.js';
import { bitmapWords, isUsed } from './slot-bitmap.js';

/**
 * Where the allocator's metadata lives in its SharedArrayBuffer. The metadata is
 * trusted: only the guest side (main thread, copy workers) ever gets this buffer;
 * device backends get the data buffer alone and can never steer the allocator.
 *
 *   Int32 control block:
 *     per area a (AREA_STRIDE words at a * AREA_STRIDE, one 64-byte cache line
 *     each, so that two threads working in two areas do not bounce one line
 *     between their cores; the kernel does not: struct io_tlb_area { unsigned
 *     long used; unsigned int index; spinlock_t lock; } has no alignment and
 *     mem->areas is one array aligned to SMP_CACHE_BYTES as a whole,
 *     swiotlb_init_remap(), 6.1.192 and 6.12.117: 16 bytes without lock
 *     debugging, four areas to a line):
 *       [LOCK] [INDEX: next-fit cursor] [USED: slots] [CONTENDED: lock waits]
 *       [MAPS] [UNMAPS] [HINT_TOP] [HINT_COUNT: the warm hint ring's, warm.ts]
 *       -- all but LOCK and CONTENDED change only under LOCK
 *     then the pool-wide words at G = nareas * AREA_STRIDE (own cache line):
 *       G+TOTAL_USED, G+HIWATER (atomics, as the kernel's total_used and
 *       used_hiwater), G+FAIL_FULL, G+FAIL_TOO_LARGE, G+FAIL_INVALID, G+SYNCS,
 *       G+FAIL_KERNEL (requests the pool's kernel would hang on or overrun with),
 *       G+PLACEMENT (the pool's placement policy, set once at creation: 0 linux,
 *       1 warm; every handle reads it when it attaches), G+EXCLUSIVE (1 when the
 *       handle that created the pool is its only mapper: no other handle may
 *       attach, and that one takes no lock and makes no atomic access on its map
 *       and unmap path; set once at creation), G+TAIL_EXACT (6.1 with a partial
 *       last segment only: 1 once a run ending at the pool's last slot was handed
 *       out; from then on 6.1's list[] no longer counts the missing slots as free,
 *       search.ts findWrapped(); written under the lock of the pool's one area)
 *   usedBits: one bit per slot, 1 = in use (slot-bitmap.ts; the kernel's list[s]
 *     is freeRun(usedBits, s)). Plain accesses under the lock of the slot's area.
 *   hints: WARM_HINTS Int32 words per area, the warm placement's ring of recently
 *     freed runs (warm.ts has its picture and rules); all 0 under `linux`. Plain
 *     accesses under the lock of its area.
 *   slotHead: one Int32 per slot s: the head slot h of the mapping s holds data
 *     of; -1 when s is free or padding. The only per-slot field: a 64 KiB map or
 *     unmap writes 32 of them (two cache lines).
 *   per slot s, one 32-byte record, meaningful on two slots of a mapping only:
 *
 *     byte 0        8          12       16        20         24         26         27       28      29..31
 *     [origAddr f64][allocSize][unused  ][mapSize ][mapOwner ][headOffset][padSlots][mapDir ][noHint][unused]
 *
 *   on the first slot of an allocation (its first padding slot, or its head):
 *     allocSize   alloc_size of that slot: bytes from its data to the end of the
 *                 allocation (swiotlb_release_slots() reads it there)
 *   on a mapping's head slot h (its first data slot, after the padding):
 *     origAddr    original (guest) address of h's bytes; -1 = INVALID_PHYS_ADDR
 *                 (always -1 for a coherent allocation, as swiotlb_alloc() leaves it)
 *     mapSize     mapping_size in bytes (> 0 marks h as a live head; Atomics: a racing
 *                 double unmap must see 0)
 *     mapOwner    who mapped it (a guest id): only that owner may sync or unmap it
 *     headOffset  tlb_addr & 2047 of the mapping
 *     padSlots    slots skipped before h (alignment padding)
 *     mapDir      the dma_data_direction it was mapped with; DMA_NONE (3) marks a
 *                 coherent allocation (swiotlb_alloc()), which only free() releases
 *     noHint      1 when the mapping took the kernel's search on request in a
 *                 `warm` pool (MapOptions.kernelSearch, AllocOptions.kernelSearch):
 *                 its run goes back to that search when freed, not onto the warm
 *                 ring (warm.ts); 0 otherwise (stored only where it is 1, and
 *                 cleared there by the unmap, so that no other map pays a store)
 *   Everything but mapSize's Atomics is a plain access under the area's lock.
 *   In an exclusive pool (G+EXCLUSIVE) one thread makes every access, so the
 *   locks are not taken and mapSize, TOTAL_USED and HIWATER are plain accesses.
 *
 *   The kernel also keeps orig_addr and alloc_size in every slot; both are
 *   arithmetic progressions over a mapping's slots (orig_addr grows and alloc_size
 *   shrinks by IO_TLB_SIZE per slot), so this pool keeps them once per mapping and
 *   {@link readSlot} derives the kernel's per-slot values: a map and an unmap write
 *   once per mapping, not once per slot (measured: docs/performance.md, "Pool
 *   metadata").
 *
 *   Why records and not one array per field: a map and an unmap then touch one or
 *   two cache lines of metadata instead of a line in each of eight arrays, which
 *   between cold copies costs several times more (docs/performance.md).
 *
 * Counters in the control block are Uint32 values that wrap modulo 2^32; readers
 * that need totals over long runs accumulate differences (see stats.ts).
 */
export const AREA_STRIDE = 16;
export const AREA_LOCK = 0;
export const AREA_INDEX = 1;
export const AREA_USED = 2;
export const AREA_CONTENDED = 3;
export const AREA_MAPS = 4;
export const AREA_UNMAPS = 5;
/** Position of the newest entry of the area's warm hint ring (warm.ts). */
export const AREA_HINT_TOP = 6;
/** Entries the area's warm hint ring holds (warm.ts). */
export const AREA_HINT_COUNT = 7;

export const G_TOTAL_USED = 0;
export const G_HIWATER = 1;
export const G_FAIL_FULL = 2;
export const G_FAIL_TOO_LARGE = 3;
export const G_FAIL_INVALID = 4;
export const G_SYNCS = 5;
export const G_FAIL_KERNEL = 6;
export const G_PLACEMENT = 7;
export const G_EXCLUSIVE = 8;
export const G_TAIL_EXACT = 9;
const GLOBAL_WORDS = 16;

export const INVALID_PHYS_ADDR = -1;

/**
 * Entries of one area's warm hint ring (a power of two; 512 bytes, eight cache
 * lines). A virtio-blk request frees three runs (header, data, status): the ring
 * holds those of 42 requests completed before the next ones are mapped (a
 * queue's completions are reaped together, then its next requests mapped).
 */
export const WARM_HINTS = 128;

/** Bytes of one slot record. */
export const SLOT_RECORD_BYTES = 32;

// Where each field of slot s's record is in the view of its type.
export const origAddrAt = (s: number): number => s * 4; // slotF64
export const allocSizeAt = (s: number): number => s * 8 + 2; // slotI32
export const mapSizeAt = (s: number): number => s * 8 + 4; // slotI32
export const mapOwnerAt = (s: number): number => s * 8 + 5; // slotI32
export const headOffsetAt = (s: number): number => s * 16 + 12; // slotU16
export const padSlotsAt = (s: number): number => s * 32 + 26; // slotU8
export const mapDirAt = (s: number): number => s * 32 + 27; // slotU8
export const noHintAt = (s: number): number => s * 32 + 28; // slotU8

export interface MetadataViews {
  readonly control: Int32Array;
  /** Index of the first pool-wide word in `control`. */
  readonly globalBase: number;
  /** One bit per slot (slot-bitmap.ts). */
  readonly usedBits: Int32Array;
  /** The warm hint rings, WARM_HINTS words per area (warm.ts). */
  readonly hints: Int32Array;
  /** Per slot: the head of the mapping it holds data of, or -1. */
  readonly slotHead: Int32Array;
  /** The slot records, seen as each field type (index with the *At functions). */
  readonly slotF64: Float64Array;
  readonly slotI32: Int32Array;
  readonly slotU16: Uint16Array;
  readonly slotU8: Uint8Array;
}

/** One slot as the kernel keeps it, plus this pool's per-mapping fields (tests and debugging). */
export interface SlotRecord {
  /** orig_addr of this slot: -1 when free or padding. */
  origAddr: number;
  /** alloc_size of this slot: 0 when free. */
  allocSize: number;
  headOf: number;
  mapSize: number;
  mapOwner: number;
  headOffset: number;
  padSlots: number;
  mapDir: number;
}

/**
 * Slot s with the kernel's per-slot orig_addr and alloc_size derived from its
 * mapping. Not for hot paths: a padding slot is matched to its mapping by looking
 * ahead for the head (at most a segment away).
 */
export function readSlot(v: MetadataViews, s: number): SlotRecord {
  const headOf = v.slotHead[s]!;
  // The first slot of s's allocation, where its alloc_size is kept.
  let first = -1;
  if (headOf >= 0) {
    first = headOf - v.slotU8[padSlotsAt(headOf)]!;
  } else if (isUsed(v.usedBits, s)) {
    // Padding: the first head ahead is the mapping it pads.
    for (let k = s + 1; k < v.slotHead.length && k <= s + 128; k++) {
      const h = v.slotHead[k]!;
      if (h >= 0) {
        first = h - v.slotU8[padSlotsAt(h)]!;
        break;
      }
    }
  }
  return {
    origAddr:
      headOf >= 0 ? v.slotF64[origAddrAt(headOf)]! + (s - headOf) * IO_TLB_SIZE : INVALID_PHYS_ADDR,
    allocSize:
      first >= 0 && first <= s ? v.slotI32[allocSizeAt(first)]! - (s - first) * IO_TLB_SIZE : 0,
    headOf,
    mapSize: Atomics.load(v.slotI32, mapSizeAt(s)),
    mapOwner: v.slotI32[mapOwnerAt(s)]!,
    headOffset: v.slotU16[headOffsetAt(s)]!,
    padSlots: v.slotU8[padSlotsAt(s)]!,
    mapDir: v.slotU8[mapDirAt(s)]!,
  };
}

interface Section {
  readonly offset: number;
  readonly bytes: number;
}

function plan(geometry: Geometry): { total: number; sections: Record<string, Section> } {
  const n = geometry.nslabs;
  // Every section starts 64-byte aligned: records then pair up in cache lines.
  const sizes: [string, number][] = [
    ['control', (geometry.nareas * AREA_STRIDE + GLOBAL_WORDS) * 4],
    ['usedBits', bitmapWords(n) * 4],
    ['hints', geometry.nareas * WARM_HINTS * 4],
    ['slotHead', n * 4],
    ['slots', n * SLOT_RECORD_BYTES],
  ];
  const sections: Record<string, Section> = {};
  let offset = 0;
  for (const [name, bytes] of sizes) {
    offset = Math.ceil(offset / 64) * 64;
    sections[name] = { offset, bytes };
    offset += bytes;
  }
  return { total: Math.ceil(offset / 64) * 64, sections };
}

export function metadataBytes(geometry: Geometry): number {
  return plan(geometry).total;
}

export function metadataViews(buffer: SharedArrayBuffer, geometry: Geometry): MetadataViews {
  const { total, sections } = plan(geometry);
  if (buffer.byteLength !== total) {
    throw new Error(`metadata buffer is ${buffer.byteLength} bytes, geometry needs ${total}`);
  }
  const n = geometry.nslabs;
  const at = (name: string): number => sections[name]!.offset;
  const slots = at('slots');
  const slotBytes = n * SLOT_RECORD_BYTES;
  return {
    control: new Int32Array(buffer, at('control'), geometry.nareas * AREA_STRIDE + GLOBAL_WORDS),
    globalBase: geometry.nareas * AREA_STRIDE,
    usedBits: new Int32Array(buffer, at('usedBits'), bitmapWords(n)),
    hints: new Int32Array(buffer, at('hints'), geometry.nareas * WARM_HINTS),
    slotHead: new Int32Array(buffer, at('slotHead'), n),
    slotF64: new Float64Array(buffer, slots, slotBytes / 8),
    slotI32: new Int32Array(buffer, slots, slotBytes / 4),
    slotU16: new Uint16Array(buffer, slots, slotBytes / 2),
    slotU8: new Uint8Array(buffer, slots, slotBytes),
  };
}
