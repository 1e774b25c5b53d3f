/**
 * Warm placement (src/swiotlb/warm.ts): hand-worked cases of LIFO reuse and of
 * every rule kept, then random map/unmap sequences under the three kernel
 * profiles checking that each placement is one the profile's kernel makes: the
 * slot its search (test/helpers/swiotlb-ref.ts, written from kernel/dma/swiotlb.c)
 * returns from some cursor position, with the profile's alignment, offset and pad
 * slots, inside one segment of one area, never over a live mapping; and that the
 * kernel's search from the area's cursor runs, as it would, when no hint fits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import {
  DmaDirection as D,
  DmaDirection,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
} from '../src/swiotlb/constants.js';
import type { Geometry } from '../src/swiotlb/geometry.js';
import { K6_1, K6_6, K6_10, type KernelCode } from '../src/swiotlb/kernel.js';
import {
  AREA_HINT_COUNT,
  AREA_HINT_TOP,
  AREA_INDEX,
  AREA_MAPS,
  AREA_STRIDE,
  AREA_UNMAPS,
  G_FAIL_FULL,
  G_FAIL_KERNEL,
  G_HIWATER,
  metadataViews,
  WARM_HINTS,
} from '../src/swiotlb/layout.js';
import { MapPlan, planMap } from '../src/swiotlb/plan.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { NOT_FOUND } from '../src/swiotlb/search.js';
import {
  bitmapWords,
  freeRun,
  markFree,
  markPhantom,
  markUsed,
} from '../src/swiotlb/slot-bitmap.js';
import { warmFind, warmTop } from '../src/swiotlb/warm.js';
import {
  type Kernel,
  low,
  type Placement,
  placement,
  refSearchArea,
} from './helpers/swiotlb-ref.js';

function pool(kernel: Kernel, placement: 'linux' | 'warm', slots = 256, base = 0): SwiotlbPool {
  return SwiotlbPool.create({ slots, areas: 1, base, kernel, placement, area: 0 });
}

const cursor = (p: SwiotlbPool, area = 0) => p.stats().areas[area]!.index;

/** Slots [first, last] an address range touches. */
function slotsOf(p: SwiotlbPool, tlb: number, size: number): number[] {
  const first = Math.floor((tlb - p.geometry.base) / IO_TLB_SIZE);
  const last = Math.floor((tlb + size - 1 - p.geometry.base) / IO_TLB_SIZE);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

describe('warm placement: a map after an unmap takes the freed slots', () => {
  it('a 64 KiB map reuses the run just freed, where Linux moves on (6.10)', () => {
    // A at slots 0-31 (page aligned), B at 32-63; A unmapped. Linux's cursor is at
    // 64, so C goes to slot 64 (0x20000); warm takes A's run back (slot 0) and leaves
    // the cursor at 64 for the kernel's search.
    for (const [placementName, expected] of [
      ['linux', 0x20000],
      ['warm', 0],
    ] as const) {
      const p = pool('6.10', placementName, 1024);
      const a = p.map(0x1_0000_0000, 65536, D.TO_DEVICE);
      expect(a).toBe(0);
      expect(p.map(0x1_0001_0000, 65536, D.TO_DEVICE)).toBe(0x10000);
      p.unmap(a, 65536, D.TO_DEVICE);
      expect(p.map(0x1_0002_0000, 65536, D.TO_DEVICE), placementName).toBe(expected);
      expect(cursor(p), placementName).toBe(placementName === 'warm' ? 64 : 96);
      expect(p.used()).toBe(64);
    }
  });

  it('a map with kernelSearch takes the kernel search even in a warm pool; its slots go back to that search', () => {
    // As above: A (0-31) freed, B at 32-63. C asks for the kernel's search: slot 64
    // (0x20000), as Linux. Unmapped, C's run is not pushed on the ring (noHint):
    // D (warm) takes A's run, and the next kernel search goes on from the cursor.
    const p = pool('6.10', 'warm', 1024);
    const a = p.map(0x1_0000_0000, 65536, D.TO_DEVICE);
    p.map(0x1_0001_0000, 65536, D.TO_DEVICE);
    p.unmap(a, 65536, D.TO_DEVICE);
    const c = p.map(0x1_0002_0000, 65536, D.FROM_DEVICE, { kernelSearch: true });
    expect(c).toBe(0x20000);
    expect(cursor(p)).toBe(96);
    p.unmap(c, 65536, D.FROM_DEVICE);
    expect(p.map(0x1_0003_0000, 65536, D.TO_DEVICE)).toBe(0);
    expect(cursor(p)).toBe(96);
    // A warm map's run does go back on the ring when unmapped.
    p.unmap(0, 65536, D.TO_DEVICE);
    expect(p.map(0x1_0004_0000, 65536, D.TO_DEVICE)).toBe(0);
  });

  it("a request's three runs come back in reverse order: header, data, status (6.10)", () => {
    // Header 16 B -> slot 0; data 64 KiB needs a 4 KiB-aligned start (6.10 page-aligns
    // a map of PAGE_SIZE or more): slot 1 is 0x800, so slots 2-33; status 1 B -> 34.
    // Unmapped in that order, the ring holds (0,1) (2,32) (34,1), newest last: the
    // next header takes 34, the data 2-33, the status 0. Linux goes on at 35, 36, 68.
    const placeRequest = (p: SwiotlbPool, g: number) => [
      p.map(g, 16, D.TO_DEVICE),
      p.map(g + 0x1000, 65536, D.TO_DEVICE),
      p.map(g + 0x20000, 1, D.FROM_DEVICE),
    ];
    const sizes = [16, 65536, 1];
    const dirs = [D.TO_DEVICE, D.TO_DEVICE, D.FROM_DEVICE];
    for (const [placementName, expected] of [
      ['linux', [35 * 2048, 36 * 2048, 68 * 2048]],
      ['warm', [34 * 2048, 2 * 2048, 0]],
    ] as const) {
      const p = pool('6.10', placementName, 1024);
      const first = placeRequest(p, 0x1_0000_0000);
      expect(first).toEqual([0, 2 * 2048, 34 * 2048]);
      for (let i = 0; i < 3; i++) p.unmap(first[i]!, sizes[i]!, dirs[i]!);
      expect(placeRequest(p, 0x1_0010_0000), placementName).toEqual(expected);
      expect(cursor(p), placementName).toBe(placementName === 'warm' ? 35 : 69);
    }
  });

  it('a steady FIFO workload keeps to the slots of its first fill; Linux walks the area', () => {
    // Depth 8 of (header, 64 KiB data, status), one completion then one new request,
    // 400 times: warm touches only the slots the first 8 requests took (its cursor
    // never moves again), Linux every slot its next-fit cursor passes.
    const run = (placementName: 'linux' | 'warm') => {
      const p = pool('6.10', placementName, 2048);
      const inflight: number[][] = [];
      const touched = new Set<number>();
      const sizes = [16, 65536, 1];
      const place = (i: number) => {
        const g = 0x1_0000_0000 + (i % 8) * 0x40000;
        const r = [
          p.map(g, 16, D.TO_DEVICE),
          p.map(g + 0x1000, 65536, D.TO_DEVICE),
          p.map(g + 0x20000, 1, D.FROM_DEVICE),
        ];
        r.forEach((tlb, k) => {
          for (const s of slotsOf(p, tlb, sizes[k]!)) touched.add(s);
        });
        inflight.push(r);
      };
      for (let i = 0; i < 8; i++) place(i);
      const firstFill = new Set(touched);
      const cursorAfterFill = cursor(p);
      for (let i = 8; i < 408; i++) {
        const r = inflight.shift()!;
        p.unmap(r[0]!, 16, D.TO_DEVICE);
        p.unmap(r[1]!, 65536, D.TO_DEVICE);
        p.unmap(r[2]!, 1, D.FROM_DEVICE);
        place(i);
      }
      return { firstFill, touched, cursorAfterFill, cursorAtEnd: cursor(p) };
    };
    const warm = run('warm');
    expect([...warm.touched].sort((a, b) => a - b)).toEqual(
      [...warm.firstFill].sort((a, b) => a - b),
    );
    expect(warm.cursorAtEnd).toBe(warm.cursorAfterFill);
    const linux = run('linux');
    expect(linux.firstFill).toEqual(warm.firstFill);
    // 400 requests of 35 slots go round a 2048-slot area several times.
    expect(linux.touched.size).toBeGreaterThan(4 * linux.firstFill.size);
  });

  it('another handle on the same pool (another thread) sees the placement and the hints', () => {
    const p = pool('6.10', 'warm', 256);
    const other = SwiotlbPool.attach(p.share(), { area: 0 });
    expect(other.placement).toBe('warm');
    expect(SwiotlbPool.attach(pool('6.10', 'linux').share()).placement).toBe('linux');
    const a = p.map(0x1000, 4096, D.TO_DEVICE);
    p.map(0x9000, 4096, D.TO_DEVICE);
    p.unmap(a, 4096, D.TO_DEVICE);
    expect(other.map(0x5000, 4096, D.TO_DEVICE)).toBe(a);
  });

  it('a coherent allocation reuses a freed one at the alignment of its own order (6.10)', () => {
    // 8 KiB: order 1, align 8191 -> slots 0-3, 4-7; the first freed; a 4 KiB allocation
    // (align 4095) takes slot 0 under warm, slot 8 (the cursor) under Linux.
    for (const [placementName, expected] of [
      ['linux', 0x4000],
      ['warm', 0],
    ] as const) {
      const p = pool('6.10', placementName);
      const a = p.alloc(8192);
      expect(p.alloc(8192)).toBe(0x2000);
      p.free(a, 8192);
      expect(p.alloc(4096), placementName).toBe(expected);
    }
  });

  it('a coherent allocation with kernelSearch takes the cursor, in tryAlloc and tryAllocArea alike', () => {
    for (const alloc of [
      (p: SwiotlbPool) => p.tryAlloc(4096, { kernelSearch: true }),
      (p: SwiotlbPool) => p.tryAllocArea(0, 4096, { kernelSearch: true }),
    ]) {
      const p = pool('6.10', 'warm');
      const a = p.alloc(8192);
      expect(p.alloc(8192)).toBe(0x2000);
      p.free(a, 8192);
      // The freed run at 0 is on the ring; the kernel's search goes on from slot 8.
      const c = alloc(p);
      expect(c).toBe(0x4000);
      // Freed, c's run is not pushed: a warm allocation takes a's, below it.
      p.free(c, 4096);
      expect(p.alloc(4096)).toBe(0);
    }
  });

  it('keeps the newest runs when more are freed than the ring holds', () => {
    const p = pool('6.10', 'warm', 1024);
    const n = WARM_HINTS + 40;
    const tlbs = Array.from({ length: n }, (_, i) =>
      p.map(0x1_0000_0000 + i * 0x1000, 16, D.TO_DEVICE),
    );
    expect(tlbs[n - 1]).toBe((n - 1) * 2048);
    for (const tlb of tlbs) p.unmap(tlb, 16, D.TO_DEVICE);
    const v = metadataViews(p.share().meta, p.geometry);
    expect(v.control[AREA_HINT_COUNT]).toBe(WARM_HINTS);
    // LIFO: the last unmapped first, down to the oldest run the ring kept.
    const again = Array.from({ length: WARM_HINTS }, () => p.map(0x2000, 16, D.TO_DEVICE));
    expect(again).toEqual(tlbs.slice(n - WARM_HINTS).reverse());
    expect(v.control[AREA_HINT_COUNT]).toBe(0);
    // The runs pushed out of the ring come back only through the kernel's search,
    // from its cursor (which stood at n since the first maps).
    expect(p.map(0x2000, 16, D.TO_DEVICE)).toBe(n * 2048);
  });

  it('linux pools never touch the hint words', () => {
    const p = pool('6.10', 'linux');
    for (let i = 0; i < 20; i++)
      p.unmap(p.map(i * 0x800, 100 * (i + 1), D.TO_DEVICE), 1, D.TO_DEVICE);
    const v = metadataViews(p.share().meta, p.geometry);
    expect(v.hints.every((w) => w === 0)).toBe(true);
    expect([v.control[AREA_HINT_TOP], v.control[AREA_HINT_COUNT]]).toEqual([0, 0]);
  });

  it('refuses a placement it does not know', () => {
    let thrown: unknown;
    try {
      SwiotlbPool.create({ slots: 128, placement: 'cold' as 'warm' });
    } catch (err) {
      thrown = err;
    }
    expect(isMediatorError(thrown, 'SWIOTLB_INVALID_ARGUMENT')).toBe(true);
    expect((thrown as Error).message).toBe('placement "cold" must be "linux" or "warm"');
  });
});

describe('warm placement: a hint that does not fit degrades to what the rules allow', () => {
  it('a page-aligned map skips a freed odd slot and takes the kernel search (6.10)', () => {
    // 16 B maps at slots 0, 1, 2; slot 1 freed. A 4 KiB map needs a 4 KiB-aligned
    // start: slot 1 (0x800) is not, so the kernel's search from the cursor (3) takes
    // slots 4-5; the 1-slot hint stays for the next small map.
    const p = pool('6.10', 'warm');
    const small = [0, 1, 2].map((i) => p.map(0x1000 * i, 16, D.TO_DEVICE));
    p.unmap(small[1]!, 16, D.TO_DEVICE);
    expect(p.map(0x10000, 4096, D.TO_DEVICE)).toBe(0x2000);
    expect(cursor(p)).toBe(6);
    expect(p.map(0x20000, 16, D.TO_DEVICE)).toBe(0x800);
    expect(cursor(p)).toBe(6);
  });

  it('min_align_mask 4095: the slot of the run whose bit 11 matches the original (6.10)', () => {
    // A 4 KiB map at slots 2-3 (slot 0 taken, 1 not page aligned), then freed. An NVMe
    // map of 512 B at 0x10800 needs address bit 11 set (iotlb_align_mask 0x800): slot 2
    // (0x1000) does not have it, slot 3 (0x1800) does: tlb 0x1800, the low 12 bits of
    // the original kept. Linux would take slot 5 (0x2800) from its cursor at 4.
    for (const [placementName, expected] of [
      ['linux', 0x2800],
      ['warm', 0x1800],
    ] as const) {
      const p = pool('6.10', placementName);
      p.map(0, 16, D.TO_DEVICE);
      const q = p.map(0x20000, 4096, D.TO_DEVICE);
      expect(q).toBe(0x1000);
      p.unmap(q, 4096, D.TO_DEVICE);
      const tlb = p.map(0x10800, 512, D.FROM_DEVICE, { minAlignMask: 4095 });
      expect(tlb, placementName).toBe(expected);
      expect(tlb & 4095).toBe(0x800);
    }
  });

  it('pad slots: the same dma-iommu map takes the freed run and its pad slot again (6.10)', () => {
    // min 4095, alloc 4095, orig 0x1a34: offset 0xa34, one pad slot, tlb 0xa34 (slots
    // 0-1). With a 16 B map after it (slot 2) and the first unmapped, a map of orig
    // 0x5a34 fits the run at slot 0 (4 KiB aligned): tlb 0xa34 again. Linux: slot 4.
    const opts = { minAlignMask: 4095, allocAlignMask: 4095 };
    for (const [placementName, expected] of [
      ['linux', 0x2a34],
      ['warm', 0xa34],
    ] as const) {
      const p = pool('6.10', placementName);
      const first = p.map(0x1a34, 100, D.TO_DEVICE, opts);
      expect(first).toBe(0xa34);
      p.map(0x9000, 16, D.TO_DEVICE);
      p.unmap(first, 100, D.TO_DEVICE);
      expect(p.map(0x5a34, 100, D.TO_DEVICE, opts), placementName).toBe(expected);
      expect(p.used()).toBe(3);
    }
  });

  it('6.1: the walk from the stride grid point before the run, as swiotlb_do_find_slots() walks', () => {
    // NVMe 4 KiB at 0x10800 under 6.1: iotlb_align_mask 0x800, stride 2 doubled to 4
    // for a page. From cursor 0: slot 0 mismatches, slot 1 fits: slots 1-2 (0x800); the
    // same map again: ALIGN(3, 4) = 4 mismatches, 5: slots 5-6. The first unmapped,
    // warm walks from the grid point 0: 0 mismatches, 1 fits: 0x800 again. Linux:
    // ALIGN(7, 4) = 8, then 9: 0x4800.
    const opts = { minAlignMask: 4095 };
    for (const [placementName, expected] of [
      ['linux', 0x4800],
      ['warm', 0x800],
    ] as const) {
      const p = pool('6.1', placementName);
      const a = p.map(0x10800, 4096, D.TO_DEVICE, opts);
      expect(a).toBe(0x800);
      expect(p.map(0x10800, 4096, D.TO_DEVICE, opts)).toBe(0x2800);
      p.unmap(a, 4096, D.TO_DEVICE);
      expect(p.map(0x30800, 4096, D.TO_DEVICE, opts), placementName).toBe(expected);
    }
  });

  it('6.1: a hint at the end of a partial last segment, where 6.1 would overrun, is left to the search', () => {
    // A restricted pool of 200 slots (segment 1 is 72 slots long). 6.1's list[] counts
    // the 56 missing slots as free: a run of 8 from slot 196 would end past the pool.
    // Slots 0-127 and 196-199 freed (in that order): the newest hint (196) is given up,
    // and the kernel's search from its cursor (0) takes slot 0, moving the cursor to 8.
    const p = SwiotlbPool.create({
      restricted: true,
      size: 200 * 2048,
      kernel: '6.1',
      placement: 'warm',
      area: 0,
    });
    const a = p.map(0x1_0000_0000, 262144, D.TO_DEVICE);
    expect(p.map(0x1_0010_0000, 68 * 2048, D.TO_DEVICE)).toBe(128 * 2048);
    const c = p.map(0x1_0020_0000, 8192, D.TO_DEVICE);
    expect([a, c]).toEqual([0, 196 * 2048]);
    expect(cursor(p)).toBe(0);
    p.unmap(a, 262144, D.TO_DEVICE);
    p.unmap(c, 8192, D.TO_DEVICE);
    expect(p.map(0x1_0030_0000, 16384, D.TO_DEVICE)).toBe(0);
    expect(cursor(p)).toBe(8);
    expect(p.used()).toBe(68 + 8);
  });
});

// ---------------------------------------------------------------------------
// Random sequences: every warm placement is one the kernel makes
// ---------------------------------------------------------------------------

const KERNELS = ['6.1', '6.6', '6.10'] as const;

/** A request shape; maps pick from a few, so that freed runs fit later maps. */
interface Shape {
  orig: number;
  size: number;
  minAlignMask: number;
  allocAlignMask: number;
  /** 6.1/6.6: alloc_size = size + allocExtra. */
  allocExtra: number;
}

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  orig: fc.oneof(
    fc.constant(0),
    fc.nat({ max: 0xffff_ffff }),
    fc.constantFrom(0x800, 0x1a34, 0xfff, 2 ** 32 + 0x800, 2 ** 40 - 0x1060),
  ),
  size: fc.oneof(
    fc.constantFrom(1, 16, 2048, 4096, 4097, 65536),
    fc.integer({ min: 1, max: 70000 }),
    fc.integer({ min: 1, max: 262144 }),
  ),
  minAlignMask: fc.constantFrom(0, 0, 4095, 2047, 8191),
  allocAlignMask: fc.constantFrom(0, 0, 2047, 4095, 8191),
  allocExtra: fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, fc.nat({ max: 8191 })),
});

type Cmd =
  | { kind: 'map'; shape: number; origDelta: number; area: number }
  | { kind: 'unmap'; pick: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('map' as const),
      shape: fc.nat(),
      // Another original of the same low bits, or any other.
      origDelta: fc.oneof(
        fc.constant(0),
        fc.nat({ max: 64 }).map((k) => k * 0x10000),
        fc.nat(),
      ),
      area: fc.nat({ max: 3 }),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant('unmap' as const), pick: fc.nat() }), weight: 4 },
);

interface PoolCfg {
  slots: number;
  areas: number;
  base: number;
  kernel: Kernel;
}

interface Live {
  tlb: number;
  size: number;
  start: number;
  nslots: number;
  id: number;
}

/** What the random runs met: the last test checks that each path was taken. */
const seen = {
  hinted: { '6.1': 0, '6.6': 0, '6.10': 0 },
  searched: { '6.1': 0, '6.6': 0, '6.10': 0 },
  full: 0,
  hang: 0,
  paddedHint: 0,
  maskedHint: 0,
};

class WarmHarness {
  readonly pool: SwiotlbPool;
  readonly g: Geometry;
  /** Mapping id per slot, 0 = free: from the returned addresses alone. */
  readonly owner: Int32Array;
  readonly live: Live[] = [];
  private nextId = 1;

  constructor(
    cfg: PoolCfg,
    readonly shapes: readonly Shape[],
  ) {
    this.pool = SwiotlbPool.create({ ...cfg, placement: 'warm', area: 0 });
    this.g = this.pool.geometry;
    this.owner = new Int32Array(this.g.nslabs);
  }

  get kernel(): Kernel {
    return this.pool.kernel;
  }

  /** The kernel's list[slot] from the model's occupancy. */
  freeRun(slot: number): number {
    const end = Math.min((Math.floor(slot / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE, this.g.nslabs);
    let n = 0;
    for (let s = slot; s < end && this.owner[s] === 0; s++) n++;
    return n;
  }

  areaUsed(a: number): number {
    let n = 0;
    for (let s = a * this.g.areaNslabs; s < (a + 1) * this.g.areaNslabs; s++) {
      if (this.owner[s] !== 0) n++;
    }
    return n;
  }

  search(a: number, cursorAt: number, orig: number, p: Placement): number | 'hang' {
    return refSearchArea(this.g, (s) => this.freeRun(s), {
      area: a,
      used: this.areaUsed(a),
      cursor: cursorAt,
      orig,
      p,
    });
  }

  /** Is `start` the slot the kernel's search of area `a` takes from some cursor? */
  kernelTakes(a: number, start: number, orig: number, p: Placement): boolean {
    const index = start - a * this.g.areaNslabs;
    if (!p.indexAligned) return this.search(a, index, orig, p) === start;
    // 6.1: the walk begins where ALIGN(cursor, stride) puts it; warm begins at most
    // a run (a segment) and a stride before the slot it takes: try every cursor there.
    for (let c = index; c >= 0 && c >= index - IO_TLB_SEGSIZE - p.stride; c--) {
      if (this.search(a, c, orig, p) === start) return true;
    }
    return false;
  }

  map(cmd: Extract<Cmd, { kind: 'map' }>): void {
    const g = this.g;
    const shape = this.shapes[cmd.shape % this.shapes.length]!;
    const orig = Math.min(shape.orig + cmd.origDelta, 2 ** 52);
    const size = Math.min(shape.size, this.pool.maxMappingSize(shape.minAlignMask));
    let allocSize: number | undefined;
    if (this.kernel !== '6.10' && shape.allocExtra > 0) allocSize = size + shape.allocExtra;
    let p = placement(this.kernel, orig, size, shape.minAlignMask, shape.allocAlignMask, allocSize);
    if (p.nslots > IO_TLB_SEGSIZE) {
      allocSize = undefined;
      p = placement(this.kernel, orig, size, shape.minAlignMask, shape.allocAlignMask);
    }
    const area = cmd.area % g.nareas;
    const before = this.pool.stats().areas.map((s) => s.index);
    let tlb = -1;
    let error: unknown;
    try {
      tlb = this.pool.map(orig, size, DmaDirection.BIDIRECTIONAL, {
        minAlignMask: shape.minAlignMask,
        allocAlignMask: shape.allocAlignMask,
        ...(allocSize === undefined ? {} : { allocSize }),
        area,
      });
    } catch (err) {
      error = err;
    }
    const after = this.pool.stats().areas.map((s) => s.index);
    if (error !== undefined) {
      this.failed(error, area, orig, p, before, after);
      return;
    }
    const start = Math.floor((tlb - g.base) / IO_TLB_SIZE) - (p.offset >> IO_TLB_SHIFT);
    const a = Math.floor(start / g.areaNslabs);
    this.checkRules(shape, orig, size, tlb, start, p);
    const moved = after.flatMap((c, i) => (c === before[i] ? [] : [i]));
    if (moved.length === 0) {
      // From a hint: a slot the kernel's search takes from some cursor position.
      // (Or the kernel's search from the cursor, when it came round to the cursor again.)
      const takes =
        this.kernelTakes(a, start, orig, p) || this.search(a, before[a]!, orig, p) === start;
      expect(takes, 'a warm placement the kernel never makes').toBe(true);
      seen.hinted[this.kernel]++;
      if (p.padSlots > 0) seen.paddedHint++;
      if (p.iotlbAlignMask !== 0 && orig !== 0) seen.maskedHint++;
    } else {
      // The kernel's search from the cursor, in the area it placed in: exactly its slot.
      expect(moved).toEqual([a]);
      expect(this.search(a, before[a]!, orig, p), 'the kernel search from the cursor').toBe(start);
      const index = start - a * g.areaNslabs + p.nslots;
      expect(after[a]).toBe(index >= g.areaNslabs ? 0 : index);
      seen.searched[this.kernel]++;
    }
    const id = this.nextId++;
    for (let s = start; s < start + p.nslots; s++) {
      expect(this.owner[s], `slot ${s} handed out twice`).toBe(0);
      this.owner[s] = id;
    }
    this.live.push({ tlb, size, start, nslots: p.nslots, id });
  }

  /** Alignment, offset, pad slots, one segment, one area, as checkPlaced does for Linux. */
  private checkRules(
    shape: Shape,
    orig: number,
    size: number,
    tlb: number,
    start: number,
    p: Placement,
  ): void {
    const g = this.g;
    expect(start).toBeGreaterThanOrEqual(0);
    expect(start + p.nslots).toBeLessThanOrEqual(g.nslabs);
    expect(Math.floor(start / IO_TLB_SEGSIZE), 'one segment').toBe(
      Math.floor((start + p.nslots - 1) / IO_TLB_SEGSIZE),
    );
    expect(Math.floor(start / g.areaNslabs), 'one area').toBe(
      Math.floor((start + p.nslots - 1) / g.areaNslabs),
    );
    const startAddr = g.base + start * IO_TLB_SIZE;
    if (!p.indexAligned) expect(low(startAddr, p.searchAlignMask), 'start alignment').toBe(0);
    expect(tlb, 'bounce address = allocation start + offset (pad slots)').toBe(
      startAddr + p.offset,
    );
    const kept =
      orig === 0
        ? shape.minAlignMask & (IO_TLB_SIZE - 1)
        : this.kernel === '6.1'
          ? shape.minAlignMask & (p.iotlbAlignMask | (IO_TLB_SIZE - 1))
          : shape.minAlignMask;
    expect(low(tlb, kept), 'min_align_mask bits of the original').toBe(low(orig, kept));
    expect(tlb + size).toBeLessThanOrEqual(startAddr + p.nslots * IO_TLB_SIZE);
  }

  /** A map fails only where the kernel's search from the cursor fails too. */
  private failed(
    error: unknown,
    startArea: number,
    orig: number,
    p: Placement,
    before: number[],
    after: number[],
  ): void {
    expect(after).toEqual(before);
    const results: (number | 'hang')[] = [];
    let a = startArea;
    do {
      const r = this.search(a, before[a]!, orig, p);
      results.push(r);
      if (r === 'hang') break;
      if (++a >= this.g.nareas) a = 0;
    } while (a !== startArea);
    if (isMediatorError(error, 'SWIOTLB_KERNEL_WOULD_HANG')) {
      expect(results.at(-1)).toBe('hang');
      seen.hang++;
      return;
    }
    if (!isMediatorError(error, 'SWIOTLB_POOL_FULL')) throw error;
    expect(results.every((r) => r === -1)).toBe(true);
    seen.full++;
  }

  unmap(pick: number): void {
    if (this.live.length === 0) return;
    const [m] = this.live.splice(pick % this.live.length, 1);
    this.pool.unmap(m!.tlb, m!.size, DmaDirection.BIDIRECTIONAL);
    for (let s = m!.start; s < m!.start + m!.nslots; s++) this.owner[s] = 0;
  }

  /** The pool's bitmap, counters and hint rings agree with the model. */
  check(): void {
    const v = metadataViews(this.pool.share().meta, this.g);
    const stats = this.pool.stats();
    for (let a = 0; a < this.g.nareas; a++) {
      expect(stats.areas[a]!.used).toBe(this.areaUsed(a));
      const count = v.control[a * AREA_STRIDE + AREA_HINT_COUNT]!;
      expect(count).toBeGreaterThanOrEqual(0);
      expect(count).toBeLessThanOrEqual(WARM_HINTS);
      const top = v.control[a * AREA_STRIDE + AREA_HINT_TOP]!;
      if (count > 0) expect(v.hints[a * WARM_HINTS + top], 'a tombstone on top').not.toBe(0);
      for (let k = 0; k < count; k++) {
        const e = v.hints[a * WARM_HINTS + ((top - k) & (WARM_HINTS - 1))]!;
        if (e === 0) continue;
        const start = Math.floor(e / 256);
        const len = e % 256;
        expect(len).toBeGreaterThan(0);
        expect(len).toBeLessThanOrEqual(IO_TLB_SEGSIZE);
        expect(Math.floor(start / this.g.areaNslabs), "a hint in its area's ring").toBe(a);
        expect(Math.floor((start + len - 1) / this.g.areaNslabs)).toBe(a);
      }
    }
    for (let s = 0; s < this.g.nslabs; s++) {
      const expected = this.owner[s] === 0 ? this.freeRun(s) : 0;
      if (freeRun(v.usedBits, s) !== expected) {
        throw new Error(`slot ${s}: free run ${freeRun(v.usedBits, s)}, expected ${expected}`);
      }
    }
  }

  /** Unmapped everything: the metadata is a fresh warm pool's, cursors, counters and hints aside. */
  expectFresh(): void {
    while (this.live.length > 0) this.unmap(0);
    const fresh = SwiotlbPool.create({
      slots: this.g.nslabs,
      areas: this.g.nareas,
      base: this.g.base,
      kernel: this.kernel,
      placement: 'warm',
    });
    const strip = (meta: SharedArrayBuffer): Uint8Array => {
      const copy = new SharedArrayBuffer(meta.byteLength);
      new Uint8Array(copy).set(new Uint8Array(meta));
      const v = metadataViews(copy, this.g);
      for (let a = 0; a < this.g.nareas; a++) {
        for (const w of [AREA_INDEX, AREA_MAPS, AREA_UNMAPS, AREA_HINT_TOP, AREA_HINT_COUNT]) {
          v.control[a * AREA_STRIDE + w] = 0;
        }
      }
      for (const w of [G_HIWATER, G_FAIL_FULL, G_FAIL_KERNEL]) v.control[v.globalBase + w] = 0;
      v.hints.fill(0);
      return new Uint8Array(copy);
    };
    expect(Buffer.compare(strip(this.pool.share().meta), strip(fresh.share().meta))).toBe(0);
  }
}

describe('warm placement: random sequences under every kernel profile', () => {
  it('places only where the kernel would, and falls back to its search exactly', () => {
    fc.assert(
      fc.property(
        fc.record({
          slots: fc.integer({ min: 256, max: 1024 }),
          areas: fc.constantFrom(1, 2, 4),
          base: fc.constantFrom(0, 0x1800, 2 ** 32 + 0x8000),
          kernel: fc.constantFrom(...KERNELS),
        }),
        fc.array(shapeArb, { minLength: 1, maxLength: 4 }),
        fc.array(cmdArb, { minLength: 1, maxLength: 150, size: 'max' }),
        (cfg, shapes, cmds) => {
          const h = new WarmHarness(cfg, shapes);
          for (const cmd of cmds) {
            if (cmd.kind === 'map') h.map(cmd);
            else h.unmap(cmd.pick);
            h.check();
          }
          h.expectFresh();
        },
      ),
      { numRuns: 120, seed: 0x3a57 },
    );
  });

  it('met hints and searches under every profile, pad slots, masks, full pools and 6.1 hangs', () => {
    for (const k of KERNELS) {
      expect(seen.hinted[k], `warm placements under ${k}`).toBeGreaterThan(50);
      expect(seen.searched[k], `kernel searches under ${k}`).toBeGreaterThan(50);
    }
    expect(seen.paddedHint, 'warm placements with pad slots').toBeGreaterThan(0);
    expect(seen.maskedHint, 'warm placements with an iotlb_align_mask').toBeGreaterThan(0);
    expect(seen.full, 'full pools').toBeGreaterThan(0);
    expect(seen.hang, '6.1 requests that never end').toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------
// warmTop, the shortcut: the same slot and the same ring as warmFind alone
// ---------------------------------------------------------------------------

describe('warmTop: a shortcut of warmFind that changes nothing it would not', () => {
  /** One area of `nslabs` slots (whole segments or a partial last one) and its ring. */
  const stateArb = fc.record({
    kernel: fc.constantFrom<KernelCode>(K6_10, K6_6, K6_1),
    nslabs: fc.constantFrom(512, 1024, 1000),
    base: fc.constantFrom(0, 0x1800, 2 ** 32 + 0x8000),
    orig: fc.oneof(fc.constant(0), fc.nat({ max: 0xffff_ffff }), fc.constant(2 ** 40 - 0x1060)),
    size: fc.oneof(fc.constantFrom(1, 16, 2048, 4096, 65536), fc.integer({ min: 1, max: 200000 })),
    minAlignMask: fc.constantFrom(0, 0, 4095, 2047),
    allocAlignMask: fc.constantFrom(0, 0, 2047, 4095),
    /** Used runs: [first slot, slots]. */
    usedRuns: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })), { maxLength: 12 }),
    /** Ring entries below the newest: [first slot, slots] or a tombstone. */
    older: fc.array(fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 128 }))), {
      maxLength: 40,
    }),
    /** The newest entry: the plan's own shape (the usual case) or another one. */
    newest: fc.record({
      exact: fc.boolean(),
      first: fc.nat(),
      /** How the first slot is picked: a multiple of this many slots. */
      grid: fc.constantFrom(1, 2, 4),
      len: fc.integer({ min: 1, max: 128 }),
      free: fc.boolean(),
    }),
    top: fc.nat({ max: WARM_HINTS - 1 }),
  });

  it('returns what warmFind returns and leaves the ring, the counts and the bitmap as it does', () => {
    let shortcuts = 0;
    let passed = 0;
    fc.assert(
      fc.property(stateArb, (st) => {
        const p = new MapPlan();
        planMap(st.kernel, p, st.orig, st.size, st.minAlignMask, st.allocAlignMask, st.size);
        fc.pre(p.nslots <= IO_TLB_SEGSIZE);
        const used = new Int32Array(bitmapWords(st.nslabs));
        markPhantom(used, st.nslabs);
        const inSegment = (first: number, len: number): [number, number] => {
          const start = first % st.nslabs;
          const segEnd = Math.min(
            (Math.floor(start / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE,
            st.nslabs,
          );
          return [start, Math.min(len, segEnd - start)];
        };
        for (const [first, len] of st.usedRuns) markUsed(used, ...inSegment(first, len));
        const c = new Int32Array(AREA_STRIDE);
        const hints = new Int32Array(WARM_HINTS);
        const entries = [...st.older.map((e) => (e === null ? 0 : inSegment(e[0], e[1])))];
        const n = st.newest;
        const [start, len] = inSegment(n.first - (n.first % n.grid), n.exact ? p.nslots : n.len);
        if (len > 0) {
          if (n.free) markFree(used, start, len);
          entries.push([start, len]);
        }
        // Oldest first; the newest at `top`. Tombstones may not be on top (finish() pops them).
        while (entries.length > 0 && entries.at(-1) === 0) entries.pop();
        entries.forEach((e, i) => {
          const at = (st.top - (entries.length - 1 - i) + WARM_HINTS * 2) % WARM_HINTS;
          hints[at] = e === 0 ? 0 : e[0] * 256 + e[1];
        });
        c[AREA_HINT_TOP] = st.top;
        c[AREA_HINT_COUNT] = Math.min(entries.length, WARM_HINTS);

        const alone = { c: c.slice(), hints: hints.slice(), used: used.slice() };
        const expected = warmFind(
          alone.c,
          alone.hints,
          alone.used,
          0,
          0,
          st.base,
          st.nslabs,
          st.orig,
          p,
        );
        const before = { c: c.slice(), hints: hints.slice() };
        const top = warmTop(c, hints, used, 0, st.base, st.orig, p);
        if (top !== NOT_FOUND) shortcuts++;
        else {
          // Nothing changed on the way to NOT_FOUND.
          expect(c).toEqual(before.c);
          expect(hints).toEqual(before.hints);
        }
        const got =
          top !== NOT_FOUND ? top : warmFind(c, hints, used, 0, 0, st.base, st.nslabs, st.orig, p);
        expect(got).toBe(expected);
        expect(c).toEqual(alone.c);
        expect(hints).toEqual(alone.hints);
        expect(used).toEqual(alone.used);
        if (st.kernel === K6_1) expect(top).toBe(NOT_FOUND);
        passed++;
      }),
      { numRuns: 600, seed: 0x70b5 },
    );
    // The shortcut was taken often enough for the comparison to mean something.
    expect(shortcuts).toBeGreaterThan(passed / 10);
  });
});
