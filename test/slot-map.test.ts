/**
 * The slot map reader (src/swiotlb/slot-map.ts): hand-worked placements, a
 * property test against a model of the kernel's placement arithmetic (padding
 * from the alignment offset, the allocation's slot count), the coherent ranges,
 * the cursors, and that a read takes no area lock.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { acquire, release } from '../src/swiotlb/area-lock.js';
import { DmaDirection, IO_TLB_SIZE } from '../src/swiotlb/constants.js';
import { AREA_LOCK, AREA_STRIDE, metadataViews } from '../src/swiotlb/layout.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import {
  SLOT_COHERENT,
  SLOT_FREE,
  SLOT_IN_USE,
  SLOT_PADDING,
  SlotMapReader,
  type SlotState,
  slotMapBytes,
  slotStateAt,
} from '../src/swiotlb/slot-map.js';

const states = (bits: Uint8Array, from: number, count: number): SlotState[] =>
  Array.from({ length: count }, (_, i) => slotStateAt(bits, from + i));

const slotOf = (pool: SwiotlbPool, tlbAddr: number) =>
  Math.floor((tlbAddr - pool.geometry.base) / IO_TLB_SIZE);

describe('slot map', () => {
  it('packs four slots a byte, the lowest slot in the lowest bits', () => {
    const bits = new Uint8Array([0b11_10_01_00, 0b00_00_00_10]);
    expect(states(bits, 0, 8)).toEqual([0, 1, 2, 3, 2, 0, 0, 0]);
    expect(slotMapBytes(32768)).toBe(8192);
    expect(slotMapBytes(130)).toBe(33);
  });

  it('an empty pool is all free, each cursor at the start of its area', () => {
    const pool = SwiotlbPool.create({ slots: 1024, areas: 4 });
    const map = new SlotMapReader(pool.share()).read();
    expect(map.bits.every((b) => b === 0)).toBe(true);
    expect(map.counts).toEqual({ free: 1024, in_use: 0, padding: 0, coherent: 0 });
    expect(map.cursors).toEqual([0, 256, 512, 768]);
    expect([map.nslabs, map.nareas, map.areaNslabs]).toEqual([1024, 4, 256]);
  });

  it('hand-worked: a 4 KiB mapping, an aligned one with a padding slot, a coherent queue', () => {
    const pool = SwiotlbPool.create({ slots: 512, areas: 1 });
    const reader = new SlotMapReader(pool.share());
    // 4096 bytes at a page-aligned original: 2 slots at slot 0, no padding.
    const a = pool.map(0x10000, 4096, DmaDirection.TO_DEVICE);
    expect(slotOf(pool, a)).toBe(0);
    // min_align_mask = alloc_align_mask = 4095 and an original at 0x1800: the
    // offset is 0x1800 & 4095 = 0x800, so pad_slots = 1; alloc_size =
    // ALIGN(4096 + 0x800, 4096) = 8192: 4 slots, 1 padding + 2 data + 1 the
    // alignment rounds up to. The search starts at the cursor (slot 2) and needs
    // a page-aligned slot: slot 2. The head is slot 3.
    const b = pool.map(0x1800, 4096, DmaDirection.FROM_DEVICE, {
      minAlignMask: 4095,
      allocAlignMask: 4095,
    });
    expect(slotOf(pool, b)).toBe(3);
    // A queue-like coherent allocation: 10000 bytes, page aligned, alloc_size
    // ALIGN(10000, 4096) = 12288: 6 slots, at the next page-aligned slot (6).
    const q = pool.tryAllocate(0, 10000, DmaDirection.BIDIRECTIONAL, {
      allocAlignMask: 4095,
      owner: 77,
    });
    expect(slotOf(pool, q)).toBe(6);

    const plain = reader.read();
    expect(states(plain.bits, 0, 13)).toEqual([1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    expect(plain.counts).toEqual({ free: 500, in_use: 11, padding: 1, coherent: 0 });
    expect(plain.cursors).toEqual([12]);

    // Named as coherent by its 10000 bytes: all 6 slots, the one past the bytes too.
    const map = reader.read([{ addr: q, bytes: 10000 }]);
    expect(states(map.bits, 0, 13)).toEqual([1, 1, 2, 1, 1, 1, 3, 3, 3, 3, 3, 3, 0]);
    expect(map.counts).toEqual({ free: 500, in_use: 5, padding: 1, coherent: 6 });
    expect(map.counts.in_use + map.counts.padding + map.counts.coherent).toBe(pool.used());

    // A range that is free now (released) reads as free, not coherent.
    pool.release(q, 10000, DmaDirection.BIDIRECTIONAL, 77);
    const after = reader.read([{ addr: q, bytes: 10000 }]);
    expect(states(after.bits, 6, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(after.counts.coherent).toBe(0);
  });

  it('fills a buffer it is given, and refuses one of the wrong size', () => {
    const pool = SwiotlbPool.create({ slots: 256, areas: 1 });
    const reader = new SlotMapReader(pool.share());
    const out = new Uint8Array(slotMapBytes(256)).fill(0xff);
    pool.map(0, 2048, DmaDirection.TO_DEVICE);
    const map = reader.read([], out);
    expect(map.bits).toBe(out);
    expect(states(out, 0, 3)).toEqual([SLOT_IN_USE, SLOT_FREE, SLOT_FREE]);
    expect(() => reader.read([], new Uint8Array(10))).toThrow(/10 bytes, 256 slots need 64/);
  });

  it('takes no area lock: it reads while another thread holds every lock', () => {
    const pool = SwiotlbPool.create({ slots: 512, areas: 2 });
    pool.map(0, 8192, DmaDirection.TO_DEVICE);
    const shared = pool.share();
    const v = metadataViews(shared.meta, shared.geometry);
    for (let a = 0; a < 2; a++) acquire(v.control, a * AREA_STRIDE + AREA_LOCK);
    try {
      expect(new SlotMapReader(shared).read().counts.in_use).toBe(4);
    } finally {
      for (let a = 0; a < 2; a++) release(v.control, a * AREA_STRIDE + AREA_LOCK);
    }
  });

  it('matches the kernel placement arithmetic after random maps and unmaps (property)', () => {
    const op = fc.record({
      unmap: fc.boolean(),
      pick: fc.nat(),
      orig: fc.integer({ min: 0, max: 2 ** 24 }),
      size: fc.integer({ min: 1, max: 40_000 }),
      minAlign: fc.constantFrom(0, 4095),
      allocAlign: fc.constantFrom(0, 4095, 16383),
      area: fc.nat(3),
      coherent: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const pool = SwiotlbPool.create({ slots: 1024, areas: 4 });
        const reader = new SlotMapReader(pool.share());
        interface Live {
          tlb: number;
          size: number;
          first: number;
          head: number;
          end: number;
          coherent: boolean;
        }
        const live: Live[] = [];
        for (const o of ops) {
          if (o.unmap && live.length > 0) {
            const [m] = live.splice(o.pick % live.length, 1);
            pool.release(m!.tlb, m!.size, DmaDirection.BIDIRECTIONAL);
            continue;
          }
          const tlb = pool.tryAllocate(o.orig, o.size, DmaDirection.BIDIRECTIONAL, {
            minAlignMask: o.minAlign,
            allocAlignMask: o.allocAlign,
            area: o.area,
          });
          if (tlb < 0) continue;
          // The kernel's arithmetic (swiotlb_tbl_map_single, swiotlb_align_offset):
          // offset = orig & min_align_mask & (alloc_align_mask | 2047);
          // alloc_size = ALIGN(size + offset, alloc_align_mask + 1);
          // pad_slots = offset >> 11; the head is pad_slots after the first slot.
          const offset = o.orig & o.minAlign & (o.allocAlign | 2047);
          const allocSize = Math.ceil((o.size + offset) / (o.allocAlign + 1)) * (o.allocAlign + 1);
          const head = slotOf(pool, tlb);
          const first = head - (offset >> 11);
          live.push({
            tlb,
            size: o.size,
            first,
            head,
            end: first + Math.ceil(allocSize / IO_TLB_SIZE),
            coherent: o.coherent,
          });
        }
        const expected = new Array<SlotState>(1024).fill(SLOT_FREE);
        for (const m of live) {
          for (let s = m.first; s < m.end; s++) {
            expected[s] = m.coherent ? SLOT_COHERENT : s < m.head ? SLOT_PADDING : SLOT_IN_USE;
          }
        }
        // Coherent allocations named by their mapping's bytes, as the mediator names queues.
        const map = reader.read(
          live.filter((m) => m.coherent).map((m) => ({ addr: m.tlb, bytes: m.size })),
        );
        const got = states(map.bits, 0, 1024);
        // Padding of a coherent allocation lies before its named bytes: it stays padding.
        for (const m of live) {
          if (m.coherent) for (let s = m.first; s < m.head; s++) expected[s] = SLOT_PADDING;
        }
        expect(got).toEqual(expected);
        const count = (st: SlotState) => expected.filter((x) => x === st).length;
        expect(map.counts).toEqual({
          free: count(SLOT_FREE),
          in_use: count(SLOT_IN_USE),
          padding: count(SLOT_PADDING),
          coherent: count(SLOT_COHERENT),
        });
        const stats = pool.stats();
        expect(map.cursors).toEqual(stats.areas.map((a, i) => i * stats.area_nslabs + a.index));
      }),
      { numRuns: 150, seed: 16 },
    );
  });
});
