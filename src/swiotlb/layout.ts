import type { Geometry } from './geometry.js';

/**
 * Where the allocator's metadata lives in its SharedArrayBuffer. The metadata is
 * trusted: only the guest side (main thread, copy workers) ever gets this buffer;
 * device backends get the data buffer alone and can never steer the allocator.
 *
 *   Int32 control block:
 *     per area a (AREA_STRIDE words at a * AREA_STRIDE, one 64-byte cache line
 *     each, as the kernel aligns struct io_tlb_area, so that two threads working
 *     in two areas do not bounce one line between their cores):
 *       [LOCK] [INDEX: next-fit cursor] [USED: slots] [CONTENDED: lock waits]
 *       [MAPS] [UNMAPS]  -- all but LOCK and CONTENDED change only under LOCK
 *     then the pool-wide words at G = nareas * AREA_STRIDE (own cache line):
 *       G+TOTAL_USED, G+HIWATER (atomics, as the kernel's total_used and
 *       used_hiwater), G+FAIL_FULL, G+FAIL_TOO_LARGE, G+FAIL_INVALID, G+SYNCS
 *   per slot s (plain accesses, always under the lock of the area that owns s):
 *     list[s]        free contiguous slots from s to the end of its segment; 0 = used
 *     allocSize[s]   bytes from this slot's data to the end of the allocation
 *     padSlots[s]    slots skipped before the mapping's first data slot (set on that slot)
 *     origAddr[s]    original (guest) address of this slot's bytes; -1 = INVALID_PHYS_ADDR
 *   per mapping, set on its head slot h (the first data slot, after the padding):
 *     mapSize[h]     mapping_size in bytes (> 0 marks h as a head)
 *     mapDir[h]      the dma_data_direction it was mapped with
 *     headOffset[h]  tlb_addr & 2047 of the mapping
 *     mapOwner[h]    who mapped it (a guest id): only that owner may sync or unmap it
 *   per data slot s of a mapping: headOf[s] = h; -1 when s is free or padding.
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

export const G_TOTAL_USED = 0;
export const G_HIWATER = 1;
export const G_FAIL_FULL = 2;
export const G_FAIL_TOO_LARGE = 3;
export const G_FAIL_INVALID = 4;
export const G_SYNCS = 5;
const GLOBAL_WORDS = 16;

export const INVALID_PHYS_ADDR = -1;

export interface MetadataViews {
  readonly control: Int32Array;
  /** Index of the first pool-wide word in `control`. */
  readonly globalBase: number;
  readonly list: Int32Array;
  readonly allocSize: Int32Array;
  readonly padSlots: Uint8Array;
  readonly origAddr: Float64Array;
  readonly mapSize: Int32Array;
  readonly mapDir: Uint8Array;
  readonly headOffset: Uint16Array;
  readonly headOf: Int32Array;
  readonly mapOwner: Int32Array;
}

interface Section {
  readonly offset: number;
  readonly bytes: number;
}

function plan(geometry: Geometry): { total: number; sections: Record<string, Section> } {
  const n = geometry.nslabs;
  // Every section starts 8-byte aligned, which suits each element type.
  const sizes: [string, number][] = [
    ['control', (geometry.nareas * AREA_STRIDE + GLOBAL_WORDS) * 4],
    ['origAddr', n * 8],
    ['list', n * 4],
    ['allocSize', n * 4],
    ['mapSize', n * 4],
    ['headOf', n * 4],
    ['mapOwner', n * 4],
    ['headOffset', n * 2],
    ['padSlots', n],
    ['mapDir', n],
  ];
  const sections: Record<string, Section> = {};
  let offset = 0;
  for (const [name, bytes] of sizes) {
    offset = Math.ceil(offset / 8) * 8;
    sections[name] = { offset, bytes };
    offset += bytes;
  }
  return { total: Math.ceil(offset / 8) * 8, sections };
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
  return {
    control: new Int32Array(buffer, at('control'), geometry.nareas * AREA_STRIDE + GLOBAL_WORDS),
    globalBase: geometry.nareas * AREA_STRIDE,
    origAddr: new Float64Array(buffer, at('origAddr'), n),
    list: new Int32Array(buffer, at('list'), n),
    allocSize: new Int32Array(buffer, at('allocSize'), n),
    mapSize: new Int32Array(buffer, at('mapSize'), n),
    headOf: new Int32Array(buffer, at('headOf'), n),
    mapOwner: new Int32Array(buffer, at('mapOwner'), n),
    headOffset: new Uint16Array(buffer, at('headOffset'), n),
    padSlots: new Uint8Array(buffer, at('padSlots'), n),
    mapDir: new Uint8Array(buffer, at('mapDir'), n),
  };
}
