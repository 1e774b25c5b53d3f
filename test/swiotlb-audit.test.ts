/**
 * Divergences found by a line-by-line comparison of src/swiotlb/ with
 * kernel/dma/swiotlb.c of 6.12.117 and 6.1.192 (and, for the 6.6 profile, the
 * 6.6/6.7 text that the later mainline patches quote as their context). Each case
 * is worked by hand from the source; each failed before its fix.
 */
import { describe, expect, it } from 'vitest';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { DynamicPool } from '../src/swiotlb/dynamic.js';
import { computeGeometry } from '../src/swiotlb/geometry.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { caught } from './helpers/caught.js';

const P = 'software IO TLB: ';

describe('swiotlb_adjust_size() after swiotlb=<nslabs> (6.1.192 and 6.12.117)', () => {
  // swiotlb_adjust_size():
  //   if (default_nslabs != IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT) return;
  // It tests the value, not whether swiotlb= was given: a swiotlb=<nslabs> whose
  // ALIGN(nslabs, IO_TLB_SEGSIZE) is 32768 leaves default_nslabs at the default,
  // and an architecture's size then replaces it.
  it('an 8 GiB SEV guest with swiotlb=32768,16 gets 512 MiB, not 64 MiB', () => {
    // mem_encrypt_setup_arch() (arch/x86/mm/mem_encrypt.c, 6.12.117):
    //   size = total_mem * 6 / 100 = 8589934592 * 6 / 100 = 515396075 (integer division),
    //   clamp_val(size, IO_TLB_DEFAULT_SIZE, SZ_1G) keeps it.
    // setup_io_tlb_npages("32768,16") ran first (early param): default_nslabs =
    //   ALIGN(32768, 128) = 32768; swiotlb_adjust_nareas(16): "area num 16.",
    //   round_up_default_nslabs(): 32768 >= 128 * 16 and a power of two -> false.
    // swiotlb_adjust_size(515396075): default_nslabs == 32768, so it goes on:
    //   size = ALIGN(515396075, 2048) = 251659 * 2048 = 515397632;
    //   default_nslabs = ALIGN(515397632 >> 11, 128) = ALIGN(251659, 128) = 251776;
    //   round_up_default_nslabs(): 251776 is no power of two -> 262144, true;
    //   size = 262144 << 11 = 512 MiB: "SWIOTLB bounce buffer size adjusted to 512MB".
    // area_nslabs = 262144 / 16 = 16384.
    const size = Math.floor((8 * 2 ** 30 * 6) / 100);
    const g = computeGeometry({ slots: 32768, areas: 16, size });
    expect(g).toMatchObject({ nslabs: 262144, nareas: 16, areaNslabs: 16384 });
    expect(g.log).toEqual([
      `${P}area num 16.`,
      `${P}SWIOTLB bounce buffer size adjusted to 512MB`,
      `${P}mapped [mem 0x0000000000000000-0x0000000020000000] (512MB)`,
    ]);
    // swiotlb=32700: ALIGN(32700, 128) = 32768 as well: the same pool.
    expect(computeGeometry({ slots: 32700, areas: 16, size }).nslabs).toBe(262144);
  });

  it('any other swiotlb=<nslabs> keeps its own size', () => {
    // swiotlb=32769,16: ALIGN(32769, 128) = 32896; swiotlb_adjust_nareas(16):
    // round_up_default_nslabs(): not a power of two -> 65536 ("roundup to 128MB");
    // swiotlb_adjust_size(): 65536 != 32768 -> return, nothing logged.
    const g = computeGeometry({ slots: 32769, areas: 16, size: 512 * 2 ** 20 });
    expect(g.nslabs).toBe(65536);
    expect(g.log).toEqual([
      `${P}area num 16.`,
      `${P}SWIOTLB bounce buffer size roundup to 128MB`,
      `${P}mapped [mem 0x0000000000000000-0x0000000008000000] (128MB)`,
    ]);
  });
});

describe("6.6.y's growable pool has no early size check in swiotlb_find_slots()", () => {
  // 6.12.117 swiotlb_find_slots() (CONFIG_SWIOTLB_DYNAMIC) begins
  //   if (alloc_size > IO_TLB_SEGSIZE * IO_TLB_SIZE) return -1;
  // added by 3dc2f209208d ("swiotlb: check alloc_size before the allocation of a
  // new memory pool", 6.8 merge window, no Fixes: or stable tag). Its v1 was made
  // against the 6.6/6.7 text (blob 33d942615be5), which reads there:
  //   rcu_read_lock();
  //   list_for_each_entry_rcu(pool, &mem->pools, node) {
  //       index = swiotlb_pool_find_slots(dev, pool, orig_addr, alloc_size, alloc_align_mask);
  //       if (index >= 0) { rcu_read_unlock(); goto found; } }
  //   rcu_read_unlock();
  //   if (!mem->can_grow) return -1;
  //   schedule_work(&mem->dyn_alloc);
  //   nslabs = nr_slots(alloc_size); ... pool = swiotlb_alloc_pool(dev, nslabs, nslabs, 1, ...);
  //   index = swiotlb_area_find_slots(dev, pool, 0, ...);  (list <= 128 < nslots: -1)
  //   if (index < 0) { swiotlb_dyn_free(&pool->rcu); return -1; }
  // So on 6.6 a search for more than one segment fails, as on 6.10, but only after
  // it has scheduled a growth (and made and freed a transient pool).
  const tooBig = 262145; // nr_slots(262145) = 129 > IO_TLB_SEGSIZE

  it('6.6: a map of 129 slots fails and schedules a growth, which runs before the next request', () => {
    const d = new DynamicPool({ slots: 1024, areas: 1, kernel: '6.6' });
    expect(caught(() => d.map(0x20_0000, tooBig, D.TO_DEVICE)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    expect(d.stats()).toMatchObject({
      pending_growth: true,
      growths: 0,
      transient_nslabs: 0, // swiotlb_dyn_free(): the transient pool is gone again
      used: 0,
      nslabs: 1024,
    });
    // swiotlb_dyn_alloc() adds a pool of default_nslabs (1024) in default_nareas (1),
    // searched first (list_add_rcu()): the next map lands there.
    const t = d.map(0x30_0000, 4096, D.TO_DEVICE);
    expect(d.partOf(t)).toBe('growth');
    expect(d.stats()).toMatchObject({ growths: 1, nslabs: 2048 });
  });

  it('6.10 refuses it before any growth (unchanged)', () => {
    const d = new DynamicPool({ slots: 1024, areas: 1, kernel: '6.10' });
    expect(caught(() => d.map(0x20_0000, tooBig, D.TO_DEVICE)).code).toBe(
      'SWIOTLB_MAPPING_TOO_LARGE',
    );
    expect(d.stats()).toMatchObject({ pending_growth: false, growths: 0 });
  });
});

describe("6.1's release of a run that ends at the pool's last slot (partial last segment)", () => {
  // 6.1.192 swiotlb_init_io_tlb_mem(): list = IO_TLB_SEGSIZE - io_tlb_offset(i), so in a
  // restricted pool of 200 slots (one segment of 128, one of 72) slot 190 starts with
  // list 66 (its 10 slots plus the 56 that do not exist). swiotlb_release_slots():
  //   if (index + nslots < ALIGN(index + 1, IO_TLB_SEGSIZE))
  //       count = mem->slots[index + nslots].list;
  // For a run ending at slot 200 that reads slots[200], past the array, which
  // rmem_swiotlb_device_init() took with kcalloc(200, sizeof(*mem->slots)) = 4800
  // bytes: a kmalloc-8k object, zeroed whole (mm/slab.h slab_post_alloc_hook():
  // memset(p[i], 0, s->object_size); kcalloc() adds __GFP_ZERO; 6.1.192) and never
  // written by the init loop (i < nslabs). So count = 0, and the freed slots get
  // list 10..1: the missing slots are no longer counted as free.
  it('a run of 20 slots then passes over slot 190 and is placed at slot 0, not an overrun', () => {
    const p = SwiotlbPool.create({ restricted: true, size: 200 * 2048, kernel: '6.1', area: 0 });
    // stride: iotlb_align_mask 0 -> 1, doubled for alloc_size >= PAGE_SIZE -> 2.
    const a = p.map(0x10_0000, 128 * 2048, D.TO_DEVICE); // ALIGN(0, 2) = 0, list 128: slot 0, cursor 128
    const b = p.map(0x20_0000, 62 * 2048, D.TO_DEVICE); // slot 128 (list 128 >= 62), cursor 190
    const c = p.map(0x30_0000, 10 * 2048, D.TO_DEVICE); // slot 190 (list 66 >= 10), ends at 200, cursor 0
    expect([a, b, c]).toEqual([0, 128 * 2048, 190 * 2048]);
    p.unmap(c, 10 * 2048, D.TO_DEVICE); // count = slots[200].list = 0: list[190..199] = 10..1
    p.unmap(a, 128 * 2048, D.TO_DEVICE); // 128 == ALIGN(1, 128): count 0, list[0..127] = 128..1
    const a2 = p.map(0x10_0000, 128 * 2048, D.TO_DEVICE); // slot 0 again, cursor 128
    p.unmap(a2, 128 * 2048, D.TO_DEVICE);
    // 20 slots, used 62: 20 <= 200 - 62. wrap = ALIGN(128, 2) = 128; 128..188 used
    // (list 0); 190: list 10 < 20; 192..198: 8, 6, 4, 2; 200 wraps to 0 (!= wrap);
    // 0: list 128 >= 20: found at slot 0.
    expect(p.map(0x40_0000, 20 * 2048, D.TO_DEVICE)).toBe(0);
    expect(p.stats().map_failures.kernel_defect).toBe(0);
  });
});
