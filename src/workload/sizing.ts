/**
 * Pool sizing advice: which pools the kernel would build for a job, found by
 * simulation (sizing-sim.ts) and stated in the kernel's terms.
 *
 * Three pools are sized, because they hold different things:
 *
 *   pool                        holds                          sizes it can have
 *   default pool (swiotlb=N,A)  streaming maps only (Linux     what the kernel builds: a power of
 *                               allocates virtqueues elsewhere) two of at least 128 x A slots
 *   restricted-dma-pool         streaming maps + virtqueues    exactly size >> 11 slots, one area
 *                               (swiotlb_alloc(): for_alloc)   (advised in whole 128-slot segments)
 *   this service's pool         streaming maps + virtqueues    as the default pool
 *
 * The two kernel pools hold the guest's requests as Linux's virtio-blk maps them:
 * header, data, status and (`indirect`, the default: the device offers
 * VIRTIO_RING_F_INDIRECT_DESC, as QEMU's does) the request's indirect descriptor
 * table; the service's pool holds them as its own driver maps them, without a
 * table (direct descriptor chains).
 *
 * Rules of the advice:
 * - a pool is good when a run on it is clean (sizing-sim.ts clean(): no request
 *   requeued for a full pool, no 6.1 endless search, no transient pool);
 * - default-pool kinds: `minimal` is the smallest pool the kernel builds that is
 *   good; `recommended` the smallest good one whose high-water plus the margin
 *   fits it (the next size the kernel builds is twice as large, so the margin is
 *   checked against what the run used, not added to the size);
 * - restricted pool: `minimal` is the smallest good count of whole segments (any
 *   count is a pool the kernel builds); `recommended` is minimal plus the margin,
 *   rounded up to a segment.
 * So `swiotlb=<recommended>,<areas>` is kept by the kernel as written: it logs
 * no "SWIOTLB bounce buffer size roundup".
 */
import { IO_TLB_DEFAULT_SIZE, IO_TLB_SEGSIZE, IO_TLB_SHIFT } from '../swiotlb/constants.js';
import { computeGeometry, MAX_POOL_SLOTS, roundUpPowerOfTwo } from '../swiotlb/geometry.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../swiotlb/kernel.js';
import type { JobFile } from './fio-job.js';
import { defaultAreas, jobPool } from './job-config.js';
import { clean, type SimOptions, type SimResult, simulate } from './sizing-sim.js';

export { clean, type SimOptions, type SimResult, simulate } from './sizing-sim.js';

/**
 * True when `swiotlb=<slots>` leaves default_nslabs at IO_TLB_DEFAULT_SIZE >>
 * IO_TLB_SHIFT (32768) after setup_io_tlb_npages()'s ALIGN(slots, IO_TLB_SEGSIZE):
 * swiotlb_adjust_size() (kernel/dma/swiotlb.c, 6.1.192 and 6.12.117) cannot tell
 * it from no `swiotlb=` at all and resizes the pool where an architecture asks.
 */
export function looksUnchanged(slots: number): boolean {
  return Math.ceil(slots / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE === IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT;
}

// arch/x86/mm/mem_encrypt.c mem_encrypt_setup_arch() (6.12.117) and
// arch/x86/mm/mem_encrypt_amd.c sev_setup_arch() (6.1.192): size = total_mem * 6 / 100;
// clamp_val(size, IO_TLB_DEFAULT_SIZE, SZ_1G); arch/arm64/mm/init.c mem_init() (6.12.117):
// DIV_ROUND_UP(memblock_phys_mem_size(), 1024), at most swiotlb_size_or_default().
export const ARCH_POOL_SIZES =
  'x86 SEV and TDX guests ask for 6% of their memory, clamped to 64 MiB..1 GiB (mem_encrypt_setup_arch() in arch/x86/mm/mem_encrypt.c, 6.12; sev_setup_arch() in arch/x86/mm/mem_encrypt_amd.c, 6.1, built with CONFIG_AMD_MEM_ENCRYPT); arm64 6.12 guests whose memory all lies below the DMA zone limit ask for 1 MiB per GiB of memory, at most 64 MiB (mem_init() in arch/arm64/mm/init.c, CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC)';

/** What `swiotlb=<slots>,...` gives on a guest whose architecture sizes the pool, when it looks unchanged. */
export function unchangedSizeWarning(slots: number): string | undefined {
  if (!looksUnchanged(slots)) return undefined;
  return `swiotlb=${slots} is the size Linux starts from when no swiotlb= is given, so swiotlb_adjust_size() (kernel/dma/swiotlb.c) still resizes the pool where the architecture asks: ${ARCH_POOL_SIZES}. On such a guest ask for ${2 * (IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT)} slots (the next size the kernel keeps as written) instead.`;
}

/** What a simulation run needs besides the pool. */
type RunOptions = Pick<SimOptions, 'kernel' | 'steps' | 'seed' | 'indirect'>;

/** Slots the kernel builds for `swiotlb=<slots>,<areas>` (round_up_default_nslabs()). */
export function roundedSlots(slots: number, areas: number): number {
  return computeGeometry({ slots, areas }).nslabs;
}

/** The default-pool sizes the kernel builds at `areas`: 128 x areas x 2^k, up to 1 GiB. */
export function kernelPoolSizes(areas: number): number[] {
  const out: number[] = [];
  for (let s = IO_TLB_SEGSIZE * roundUpPowerOfTwo(areas); s <= MAX_POOL_SLOTS; s *= 2) out.push(s);
  return out;
}

/** Advice for one kind of pool. */
export interface PoolAdvice {
  /** The smallest pool (as the kernel builds it) on which the job ran clean; undefined: none up to 1 GiB. */
  minimal_slots: number | undefined;
  /** What to ask for (see the rules at the top of this file). */
  recommended_slots: number | undefined;
  /** Runs at sizes around the recommendation. */
  table: SimResult[];
}

/** A default-pool kind: the power-of-two sizes the kernel builds, smallest first. */
function adviseDefault(
  jf: JobFile,
  areas: number,
  margin: number,
  sim: RunOptions & Pick<SimOptions, 'dynamic' | 'queuesInPool'>,
  extra: number[],
): PoolAdvice {
  const sizes = kernelPoolSizes(areas);
  const runs = new Map<number, SimResult>();
  const at = (slots: number) => {
    let r = runs.get(slots);
    if (r === undefined) {
      r = simulate(jf, { ...sim, slots, areas });
      runs.set(slots, r);
    }
    return r;
  };
  const minimal = sizes.find((s) => clean(at(s)));
  const recommended =
    minimal === undefined
      ? undefined
      : sizes.find((s) => s >= minimal && clean(at(s)) && at(s).used_hiwater * (1 + margin) <= s);
  const shown = new Set<number>(extra.map((s) => roundedSlots(s, areas)));
  const anchor = minimal ?? sizes[sizes.length - 1]!;
  for (const f of [0.25, 0.5, 1, 2]) {
    const s = anchor * f;
    if (s >= sizes[0]! && s <= MAX_POOL_SLOTS) shown.add(s);
  }
  if (recommended !== undefined) shown.add(recommended);
  return {
    minimal_slots: minimal,
    recommended_slots: recommended,
    table: [...shown].sort((a, b) => a - b).map(at),
  };
}

/** A restricted-dma-pool: exact slots, one area; searched in whole segments. */
function adviseRestricted(jf: JobFile, margin: number, sim: RunOptions): PoolAdvice {
  const run = (segments: number) =>
    simulate(jf, { ...sim, restricted: true, slots: segments * IO_TLB_SEGSIZE });
  const maxSegments = MAX_POOL_SLOTS / IO_TLB_SEGSIZE;
  let lo = 0; // not clean (or nothing)
  let hi = 1;
  while (!clean(run(hi))) {
    lo = hi;
    if (hi >= maxSegments)
      return { minimal_slots: undefined, recommended_slots: undefined, table: [] };
    hi = Math.min(maxSegments, hi * 2);
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (clean(run(mid))) hi = mid;
    else lo = mid;
  }
  const minimal = hi * IO_TLB_SEGSIZE;
  const recommended = Math.min(
    MAX_POOL_SLOTS,
    Math.ceil((minimal * (1 + margin)) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE,
  );
  const shown = new Set([Math.max(1, lo) * IO_TLB_SEGSIZE, minimal, recommended]);
  return {
    minimal_slots: minimal,
    recommended_slots: recommended,
    table: [...shown]
      .sort((a, b) => a - b)
      .map((slots) => simulate(jf, { ...sim, restricted: true, slots })),
  };
}

export interface SizingAdvice {
  kernel: KernelVersion;
  /** The default pool was simulated with CONFIG_SWIOTLB_DYNAMIC. */
  dynamic: boolean;
  /**
   * The guest's requests map an indirect descriptor table each (the device offers
   * VIRTIO_RING_F_INDIRECT_DESC): in the default and restricted pools; the
   * service's pool never has them (its driver uses direct descriptor chains).
   */
  indirect: boolean;
  margin: number;
  /** The areas the default pool and the service's pool are advised for. */
  areas: number;
  /** The default pool (`swiotlb=`): streaming maps only. Same as `default_pool`. */
  minimal_slots: number | undefined;
  recommended_slots: number | undefined;
  table: SimResult[];
  default_pool: PoolAdvice;
  /** A restricted-dma-pool: maps and virtqueues, exact slots, one area. */
  restricted_pool: PoolAdvice;
  /** The same as `restricted_pool`, under the name earlier releases used. */
  one_area: { minimal_slots: number | undefined; recommended_slots: number | undefined };
  /** This service's pool (virtqueues in it too), as `swiotlb=` builds it. */
  service_pool: PoolAdvice;
  /** Per area count tried: the smallest default pool the kernel builds that ran clean. */
  by_areas: { areas: number; minimal_slots: number | undefined }[];
  steps: number;
  seed: number;
}

export interface AdviseOptions {
  /** Head room over what the run used. @default 0.25 */
  margin?: number;
  /** @default 4000 */
  steps?: number;
  /** @default 1 */
  seed?: number;
  /** Areas to advise for. @default the job's, else its largest numjobs rounded up to a power of two */
  areas?: number;
  /** @default the job's `kernel=`, else '6.10' */
  kernel?: KernelVersion;
  /** CONFIG_SWIOTLB_DYNAMIC for the default pool (6.6 and later). @default false */
  dynamic?: boolean;
  /**
   * The guest's virtio-blk device offers VIRTIO_RING_F_INDIRECT_DESC (QEMU's
   * default, `indirect_desc=on`): Linux maps each request's indirect table too.
   * @default true
   */
  indirect?: boolean;
}

/**
 * Advice for a job (a fio job file, or any JobFile-shaped workload: a traced one
 * converted to per-device jobs sizes the same way).
 */
export function adviseSize(jf: JobFile, opts: AdviseOptions = {}): SizingAdvice {
  const margin = opts.margin ?? 0.25;
  const steps = opts.steps ?? 4000;
  const seed = opts.seed ?? 1;
  const kernel = opts.kernel ?? jf.settings.kernel ?? DEFAULT_KERNEL;
  const dynamic = opts.dynamic ?? false;
  const indirect = opts.indirect ?? true;
  const sim: RunOptions = { kernel, steps, seed, indirect };
  // The areas the kernel builds for the count asked: swiotlb_adjust_nareas()
  // rounds it up to a power of two (src/swiotlb/geometry.ts), so the advice
  // names what the kernel keeps (",3" would boot with "area num 4.").
  const areas = roundUpPowerOfTwo(Math.max(1, opts.areas ?? jf.settings.areas ?? defaultAreas(jf)));
  // The job's own pool, when it is a default pool, gets a row of its own.
  const own = jobPool(jf);
  const ownSlots =
    own.restricted === undefined
      ? [
          computeGeometry({
            ...(own.size !== undefined ? { size: own.size } : {}),
            ...(own.slots !== undefined ? { slots: own.slots } : {}),
            areas: own.areas ?? areas,
          }).nslabs,
        ]
      : [];

  const counts = new Set<number>([1, areas]);
  const maxAreas = roundUpPowerOfTwo(jf.jobs.reduce((s, j) => s + j.numjobs, 0));
  for (let a = 2; a <= maxAreas; a *= 2) counts.add(a);
  const kernelSim = { ...sim, dynamic, queuesInPool: false };
  const by_areas = [...counts]
    .sort((a, b) => a - b)
    .map((a) => ({
      areas: a,
      minimal_slots: kernelPoolSizes(a).find((s) =>
        clean(simulate(jf, { ...kernelSim, slots: s, areas: a })),
      ),
    }));
  const default_pool = adviseDefault(jf, areas, margin, kernelSim, ownSlots);
  const restricted_pool = adviseRestricted(jf, margin, sim);
  // This service's driver (src/mediator) chains descriptors directly: no tables.
  const service_pool = adviseDefault(
    jf,
    areas,
    margin,
    { ...sim, indirect: false, queuesInPool: true },
    [],
  );
  return {
    kernel,
    dynamic,
    indirect,
    margin,
    areas,
    minimal_slots: default_pool.minimal_slots,
    recommended_slots: default_pool.recommended_slots,
    table: default_pool.table,
    default_pool,
    restricted_pool,
    one_area: {
      minimal_slots: restricted_pool.minimal_slots,
      recommended_slots: restricted_pool.recommended_slots,
    },
    service_pool,
    by_areas,
    steps,
    seed,
  };
}
