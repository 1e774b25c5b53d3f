/**
 * `size`'s advice checked against the kernel sources it quotes (Linux 6.1.192 and
 * 6.12.117): each case is a rule of the kernel that earlier advice got wrong.
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { deviceTreeNode, writeAdvice } from '../src/cli/size.js';
import { requirementNotes } from '../src/cli/size-notes.js';
import { computeGeometry, MAX_POOL_SLOTS } from '../src/swiotlb/geometry.js';
import { parseJobFile } from '../src/workload/fio-job.js';
import { adviseSize, looksUnchanged, unchangedSizeWarning } from '../src/workload/sizing.js';
import type { TraceDemand } from '../src/workload/trace/demand.js';
import { restrictedPoolNode } from '../src/workload/trace/trace-advice.js';
import { sizeFromTrace } from '../src/workload/trace/trace-sizing.js';

const database = parseJobFile(readFileSync('examples/jobs/database.fio', 'utf8'), 'database.fio');

function sink(): { w: Writable; text: () => string } {
  let text = '';
  const w = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return { w, text: () => text };
}

/** The text `size` prints for an advice. */
function printed(advice: ReturnType<typeof adviseSize>): string {
  const out = sink();
  const err = sink();
  writeAdvice(database, advice, false, { stdout: out.w, stderr: err.w });
  return out.text();
}

describe('swiotlb=32768 and swiotlb_adjust_size()', () => {
  // kernel/dma/swiotlb.c swiotlb_adjust_size() (6.1.192, 6.12.117):
  //   if (default_nslabs != IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT) return;
  // and setup_io_tlb_npages() stores ALIGN(nslabs, IO_TLB_SEGSIZE) first.
  it('is the default as the kernel sees it, after ALIGN to a segment', () => {
    expect(looksUnchanged(32768)).toBe(true);
    expect(looksUnchanged(32641)).toBe(true); // ALIGN(32641, 128) = 32768
    expect(looksUnchanged(32640)).toBe(false);
    expect(looksUnchanged(16384)).toBe(false);
    expect(looksUnchanged(65536)).toBe(false);
    expect(unchangedSizeWarning(16384)).toBeUndefined();
    expect(unchangedSizeWarning(32768)).toMatch(/swiotlb_adjust_size\(\).*6% of their memory/);
  });

  it('the "64 MiB in 4 MiB areas" hint says where swiotlb=32768,16 is resized, and what holds everywhere', () => {
    // An 8 GiB SEV guest with swiotlb=32768,16: the areas are known (16) when
    // mem_encrypt_setup_arch() calls swiotlb_adjust_size(8 GiB * 6 / 100), so the
    // kernel builds what the model builds for { areas: 16, size }: 512 MiB in
    // areas of 32 MiB, not 64 MiB in areas of 4 MiB.
    const sev = computeGeometry({ areas: 16, size: Math.floor((8 * 2 ** 30 * 6) / 100) });
    expect(sev.nslabs).toBe(262144);
    expect(sev.areaNslabs * 2048).toBe(32 * 2 ** 20);
    // What the hint offers instead: never the default's size, areas of 4 MiB.
    const alt = computeGeometry({ slots: 16384, areas: 8 });
    expect(looksUnchanged(16384)).toBe(false);
    expect(alt.areaNslabs * 2048).toBe(4 * 2 ** 20);

    const text = printed(adviseSize(database, { steps: 400 }));
    expect(text).toContain("to keep Linux's 64 MiB, swiotlb=32768,16 gives areas of 4.0MiB.");
    expect(text).toMatch(
      /Not on a guest whose architecture sizes the pool \(SEV, TDX; arm64 6\.12/,
    );
    expect(text).toContain('swiotlb=16384,8 keeps areas of 4.0MiB everywhere.');
  });

  it('a recommendation of 32768 slots warns that SEV, TDX and arm64 resize it', () => {
    const advice = adviseSize(database, { steps: 400 });
    const d = advice.default_pool;
    const table = [...d.table, { ...d.table[d.table.length - 1]!, nslabs: 32768 }];
    const at32k = {
      ...advice,
      recommended_slots: 32768,
      default_pool: { ...d, recommended_slots: 32768, table },
    };
    const text = printed(at32k);
    expect(text).toMatch(
      /^Warning: swiotlb=32768 is the size Linux starts from when no swiotlb= is given/m,
    );
    expect(text).toContain('ask for 65536 slots');
    // A recommendation the kernel always keeps carries no such warning.
    expect(printed(advice)).not.toMatch(/^Warning: swiotlb=/m);
  });

  it('the requirements say swiotlb= replaces the architecture size for every device', () => {
    const notes = requirementNotes(adviseSize(database, { steps: 400 })).join('\n');
    expect(notes).toMatch(/swiotlb_adjust_size\(\) returns once swiotlb= changed default_nslabs/);
    expect(notes).toMatch(/clamped to 64 MiB\.\.1 GiB/);
  });
});

describe('the rest of the default-pool advice', () => {
  // drivers/iommu/dma-iommu.c dev_use_swiotlb(): 6.1.192 dev_is_untrusted(dev),
  // 6.12.117 dev_is_untrusted(dev) || dma_kmalloc_needs_bounce(): no force there.
  it('says that force does not reach a device an IOMMU translates', () => {
    const notes = requirementNotes(adviseSize(database, { steps: 400 })).join('\n');
    expect(notes).toMatch(/Forcing does not reach a device whose DMA an IOMMU translates/);
    expect(notes).toContain('dev_use_swiotlb()');
  });

  // arch/x86/kernel/pci-dma.c pci_iommu_init() (6.1.192, 6.12.117): swiotlb_print_info()
  // only if (x86_swiotlb_enable); swiotlb_memblock_alloc(): memblock_alloc_low().
  it('says the logged address is not 0 and that x86 may not print "mapped"', () => {
    const text = printed(adviseSize(database, { steps: 400 }));
    expect(text).toMatch(/logs at boot \(at the address memblock gives the pool in low memory/);
    expect(text).toMatch(/x86 prints the "mapped" line only when it enables swiotlb itself/);
  });
});

describe('the restricted-dma-pool node', () => {
  // kernel/dma/swiotlb.c rmem_swiotlb_setup() (6.1.192, 6.12.117) refuses reusable,
  // linux,cma-default, linux,dma-default and no-map; drivers/of/device.c
  // of_dma_set_restricted_buffer() falls back to the node with the DMA configuration.
  it.each([
    ['size', deviceTreeNode(128)],
    ['size --trace', restrictedPoolNode(128, undefined)],
  ])('%s names every property the kernel refuses, the PCI case and the binding', (_c, node) => {
    for (const p of ['"no-map"', '"reusable"', '"linux,cma-default"', '"linux,dma-default"']) {
      expect(node).toContain(p);
    }
    expect(node).toContain('rmem_swiotlb_setup()');
    expect(node).toMatch(/host bridge's node/);
    expect(node).toContain('dtschema');
    expect(node).toContain('__reserved_mem_check_root()');
    expect(node).toContain('reg = <0x0 0x50000000 0x0 0x40000>');
  });
});

describe('size --trace near 1 GiB', () => {
  /** A demand only a pool of `fits` slots or more holds. */
  const demand = (fits: number) =>
    ({
      requests: 1,
      replay: (g: { nslabs: number; nareas: number }) => ({
        nslabs: g.nslabs,
        nareas: g.nareas,
        failures: g.nslabs >= fits ? 0 : 1,
        used_hiwater: Math.min(g.nslabs, fits),
        requests: 1,
        too_large: 0,
      }),
    }) as unknown as TraceDemand;
  const opts = { profile: '6.10' as const, base: 0, kernelNslabs: 32768, kernelNareas: 2, cpus: 2 };

  it('recommends the largest pool when the minimum plus the margin is past it', () => {
    const s = sizeFromTrace(demand(MAX_POOL_SLOTS), opts);
    expect(s.minimal_slots).toBe(MAX_POOL_SLOTS);
    expect(s.recommended_slots).toBe(MAX_POOL_SLOTS);
    const big = sizeFromTrace(demand(2048), { ...opts, margin: 1000 });
    expect(big.minimal_slots).toBe(2048);
    expect(big.recommended_slots).toBe(MAX_POOL_SLOTS);
  });

  it('otherwise rounds the minimum plus the margin as swiotlb= does', () => {
    const s = sizeFromTrace(demand(2048), opts);
    expect(s.recommended_slots).toBe(4096); // ceil(2048 * 1.25) = 2560 -> 4096
  });
});
