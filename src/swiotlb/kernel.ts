/**
 * The kernel lines whose swiotlb rules a pool can follow. Each profile was read
 * from that line's own kernel/dma/swiotlb.c and kernel/dma/direct.c (docs/kernels.md
 * quotes the rules, with the function and the release read):
 *
 *   '6.1'   the 6.1.y longterm line, latest release read: 6.1.192.
 *           swiotlb_do_find_slots(): starts at ALIGN(area->index, stride), loops
 *           `while (index != wrap)` (so some min_align_mask requests never end),
 *           no pad_slots, swiotlb_alloc() with no alignment.
 *   '6.6'   the 6.6.y longterm line after 6.6.35 (the 6.9 alignment fixes and
 *           pad_slots backported): the 6.10 search, but maps search for
 *           alloc_size + offset and CONFIG_SWIOTLB_DYNAMIC searches pool by pool,
 *           with no early refusal of a search for more than one segment.
 *   '6.10'  mainline 6.10 and later (read in 6.12.117, unchanged in 7.2.13): the search for
 *           ALIGN(mapping_size + offset, alloc_align_mask + 1).
 */
export const KERNEL_VERSIONS = ['6.1', '6.6', '6.10'] as const;
export type KernelVersion = (typeof KERNEL_VERSIONS)[number];

/** The profile a pool follows when none is named. */
export const DEFAULT_KERNEL: KernelVersion = '6.10';

/** Small integers for the hot path (a comparison, not a string compare). 6.10 is 0. */
export const K6_10 = 0;
export const K6_6 = 1;
export const K6_1 = 2;
export type KernelCode = typeof K6_10 | typeof K6_6 | typeof K6_1;

export function kernelCode(version: KernelVersion): KernelCode {
  return version === '6.1' ? K6_1 : version === '6.6' ? K6_6 : K6_10;
}

export function isKernelVersion(value: unknown): value is KernelVersion {
  return typeof value === 'string' && (KERNEL_VERSIONS as readonly string[]).includes(value);
}

/** What each profile was checked against, for logs and docs. */
export const KERNEL_SOURCES: Record<KernelVersion, string> = {
  '6.1': 'Linux 6.1.192 (kernel/dma/swiotlb.c, kernel/dma/direct.c)',
  '6.6': 'Linux 6.6.y after 6.6.35 (its stable patches to kernel/dma/swiotlb.c)',
  '6.10':
    'Linux 6.10 and later, read in 6.12.117 and unchanged in 7.2.13 (kernel/dma/swiotlb.c, kernel/dma/direct.c)',
};

/** CONFIG_SWIOTLB_DYNAMIC exists from 6.6 on (it came with 6.6's growable pools). */
export function hasDynamicPools(version: KernelVersion): boolean {
  return version !== '6.1';
}
