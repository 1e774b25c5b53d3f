/**
 * Pools as the kernel builds them, worked out by hand from kernel/dma/swiotlb.c
 * (setup_io_tlb_npages(), swiotlb_adjust_nareas(), round_up_default_nslabs(),
 * swiotlb_adjust_size(), swiotlb_print_info(), rmem_swiotlb_device_init()). These
 * functions are the same text in 6.1.192 and 6.12.117, so every profile builds
 * the same pools; the last case checks that the pool does not depend on the profile.
 */
import { availableParallelism } from 'node:os';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import {
  computeGeometry,
  parseSwiotlbParameter,
  roundUpPowerOfTwo,
} from '../src/swiotlb/geometry.js';
import { KERNEL_VERSIONS } from '../src/swiotlb/kernel.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';

const P = 'software IO TLB: ';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

describe('swiotlb=<nslabs>,<nareas> (the default pool)', () => {
  it('swiotlb=3000,3 builds 4096 slots in 4 areas', () => {
    // ALIGN(3000, 128) = 3072; nareas 3 -> 4 ("area num 4."); 3072 >= 128 x 4 but not
    // a power of two -> roundup_pow_of_two(3072) = 4096 = 8 MiB.
    const g = computeGeometry({ slots: 3000, areas: 3 });
    expect([g.nslabs, g.nareas, g.areaNslabs, g.bytes]).toEqual([4096, 4, 1024, 8 * 2 ** 20]);
    expect(g.log).toEqual([
      `${P}area num 4.`,
      `${P}SWIOTLB bounce buffer size roundup to 8MB`,
      `${P}mapped [mem 0x0000000000000000-0x0000000000800000] (8MB)`,
    ]);
  });

  it('swiotlb=640,8 builds 1024 slots: 128 per area', () => {
    // ALIGN(640, 128) = 640 < 128 x 8 = 1024 -> 1024, a power of two: 2 MiB.
    const g = computeGeometry({ slots: 640, areas: 8, base: 0x8000_0000 });
    expect([g.nslabs, g.nareas, g.areaNslabs]).toEqual([1024, 8, 128]);
    expect(g.log).toEqual([
      `${P}area num 8.`,
      `${P}SWIOTLB bounce buffer size roundup to 2MB`,
      `${P}mapped [mem 0x0000000080000000-0x0000000080200000] (2MB)`,
    ]);
  });

  it('swiotlb=10240,2 (what size used to advise) builds 16384 slots, not 10240', () => {
    const g = computeGeometry({ slots: 10240, areas: 2 });
    expect([g.nslabs, g.areaNslabs]).toEqual([16384, 8192]);
    expect(g.log[1]).toBe(`${P}SWIOTLB bounce buffer size roundup to 32MB`);
  });

  it('keeps a power of two of at least 128 slots per area as given, and says nothing', () => {
    const g = computeGeometry({ slots: 32768, areas: 16 });
    expect([g.nslabs, g.nareas, g.areaNslabs]).toEqual([32768, 16, 2048]);
    expect(g.log).toEqual([
      `${P}area num 16.`,
      `${P}mapped [mem 0x0000000000000000-0x0000000004000000] (64MB)`,
    ]);
  });

  it('treats 0 areas as 1 and prints the MB of a pool under 1 MiB as 0', () => {
    // swiotlb=0,0: nslabs ALIGN(0) = 0 < 128 x 1 -> 128 slots (256 KiB) -> "0MB".
    const g = computeGeometry({ slots: 0, areas: 0 });
    expect([g.nslabs, g.nareas]).toEqual([128, 1]);
    expect(g.log).toEqual([
      `${P}area num 1.`,
      `${P}SWIOTLB bounce buffer size roundup to 0MB`,
      `${P}mapped [mem 0x0000000000000000-0x0000000000040000] (0MB)`,
    ]);
  });

  it('without ,<nareas> takes the CPUs (num_possible_cpus()) and still rounds', () => {
    const nareas = roundUpPowerOfTwo(availableParallelism());
    const g = computeGeometry({ slots: 3000 });
    expect(g.nareas).toBe(nareas);
    expect(g.nslabs).toBe(Math.max(4096, 128 * nareas));
    expect(g.log[0]).toBe(`${P}area num ${nareas}.`);
  });

  it('sizes a confidential guest pool as swiotlb_adjust_size() does', () => {
    // areas first (the parameter), then the architecture's size: ALIGN(3 MiB + 100,
    // 2 KiB) = 3 MiB + 2 KiB = 1537 slots -> ALIGN 128 = 1664 -> power of two 2048.
    const g = computeGeometry({ size: 3 * 2 ** 20 + 100, areas: 2 });
    expect(g.nslabs).toBe(2048);
    expect(g.log.slice(0, 2)).toEqual([
      `${P}area num 2.`,
      `${P}SWIOTLB bounce buffer size adjusted to 4MB`,
    ]);
    // No areas given yet when the size is adjusted: no rounding there ("3MB"); the
    // areas from the CPUs round it afterwards.
    const late = computeGeometry({ size: 3 * 2 ** 20 + 100 });
    expect(late.log[0]).toBe(`${P}SWIOTLB bounce buffer size adjusted to 3MB`);
    expect(late.nslabs).toBe(Math.max(2048, 128 * late.nareas));
  });

  it('always ends with whole-segment areas and a power-of-two pool (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 300_000 }), fc.nat({ max: 64 }), (slots, areas) => {
        const g = computeGeometry({ slots, areas });
        const nareas = areas === 0 ? 1 : roundUpPowerOfTwo(areas);
        const aligned = Math.ceil(slots / 128) * 128;
        const want = aligned < 128 * nareas ? 128 * nareas : roundUpPowerOfTwo(aligned);
        expect([g.nslabs, g.nareas]).toEqual([want, nareas]);
        expect(g.areaNslabs % 128).toBe(0);
        expect(g.areaNslabs * g.nareas).toBe(g.nslabs);
        expect(g.log.some((l) => l.includes('roundup'))).toBe(want !== aligned);
      }),
      { numRuns: 300, seed: 0x9e0 },
    );
  });
});

describe('restricted-dma-pool (rmem_swiotlb_device_init)', () => {
  it('has exactly size >> 11 slots in one area, with no rounding', () => {
    const g = computeGeometry({ restricted: true, size: 400 * 1024, base: 0x9000_0000 });
    expect([g.kind, g.nslabs, g.nareas, g.areaNslabs]).toEqual(['restricted', 200, 1, 200]);
    expect(g.log).toEqual([
      `${P}Reserved memory: created restricted DMA pool at 0x0000000090000000, size 0 MiB`,
    ]);
    const four = computeGeometry({ restricted: true, size: 4 * 2 ** 20 + 1000 });
    expect(four.nslabs).toBe(2048); // the odd 1000 bytes are no slot
    expect(four.log[0]).toContain('size 4 MiB');
  });

  it('refuses slots or areas with it, and a size under one slot', () => {
    expect(codeOf(() => computeGeometry({ restricted: true, size: 2 ** 20, areas: 2 }))).toBe(
      'SWIOTLB_INVALID_GEOMETRY',
    );
    expect(codeOf(() => computeGeometry({ restricted: true, size: 1000 }))).toBe(
      'SWIOTLB_INVALID_GEOMETRY',
    );
    expect(codeOf(() => computeGeometry({ restricted: true }))).toBe('SWIOTLB_INVALID_GEOMETRY');
  });

  it('places nothing past the end of a partial last segment (6.6 and 6.10)', () => {
    // 200 slots: segment 1 has 72. A 72-slot map fits there, 73 slots do not.
    for (const kernel of ['6.6', '6.10'] as const) {
      const pool = SwiotlbPool.create({ restricted: true, size: 200 * 2048, kernel, area: 0 });
      pool.map(0x10_0000, 128 * 2048, 1); // segment 0
      expect(pool.stats().largest_free_run).toBe(72);
      expect(codeOf(() => pool.map(0x20_0000, 73 * 2048, 1))).toBe('SWIOTLB_POOL_FULL');
      expect(pool.map(0x20_0000, 72 * 2048, 1)).toBe(128 * 2048);
      expect(pool.used()).toBe(200);
    }
  });
});

describe('the swiotlb= parameter text (setup_io_tlb_npages)', () => {
  it('reads nslabs, nareas and force/noforce in base 0, as simple_strtoul(str, &str, 0)', () => {
    expect(parseSwiotlbParameter('swiotlb=3000,3')).toEqual({ slots: 3000, areas: 3 });
    expect(parseSwiotlbParameter('0x100,010,force')).toEqual({
      slots: 256,
      areas: 8,
      force: true,
    });
    expect(parseSwiotlbParameter('65536,noforce')).toEqual({ slots: 65536, noforce: true });
    expect(parseSwiotlbParameter('force')).toEqual({ force: true });
    expect(parseSwiotlbParameter(',4')).toEqual({ areas: 4 });
    expect(parseSwiotlbParameter('12x')).toBeUndefined();
    expect(parseSwiotlbParameter('1,2,3')).toBeUndefined();
  });
});

describe('every profile builds the same pool', () => {
  it('6.1, 6.6 and 6.10 agree on swiotlb=3000,3 and on a restricted pool', () => {
    const shapes = KERNEL_VERSIONS.map((kernel) => {
      const a = SwiotlbPool.create({ slots: 3000, areas: 3, kernel }).geometry;
      const b = SwiotlbPool.create({ restricted: true, size: 300_000, kernel }).geometry;
      return [a, b];
    });
    expect(shapes[1]).toEqual(shapes[0]);
    expect(shapes[2]).toEqual(shapes[0]);
  });
});
