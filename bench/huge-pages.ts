/**
 * 2 MiB pages for a benchmark's memory. A SharedArrayBuffer is anonymous memory
 * that V8 gets from the C library's allocator, so it is backed by 4 KiB pages
 * unless transparent huge pages (THP) apply to it: always when THP is `always`,
 * only after madvise(MADV_HUGEPAGE) when it is `madvise`, a common default. glibc
 * 2.35 added a tunable that makes malloc issue that madvise on the memory it maps
 * (glibc 2.35 NEWS: "glibc.malloc.hugetlb, can be used to make malloc issue
 * madvise plus MADV_HUGEPAGE on mmap and sbrk calls"); it is read when a process
 * starts, so a benchmark sets it for the processes it starts.
 */
import { readFileSync } from 'node:fs';

/** The tunable that asks glibc's malloc for transparent huge pages. */
export const HUGETLB_TUNABLE = 'glibc.malloc.hugetlb=1';

/** GLIBC_TUNABLES for a child: the parent's, without the hugetlb tunable, then with it when `huge`. */
export function glibcTunables(huge: boolean): string {
  const kept = (process.env.GLIBC_TUNABLES ?? '')
    .split(':')
    .filter((t) => t !== '' && !t.startsWith('glibc.malloc.hugetlb='));
  if (huge) kept.push(HUGETLB_TUNABLE);
  return kept.join(':');
}

/** MiB of this process's anonymous memory on huge pages (AnonHugePages), or null where Linux does not say. */
export function anonHugeMiB(): number | null {
  try {
    const m = /AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** The THP mode the kernel runs (the bracketed word of .../transparent_hugepage/enabled). */
export function thpMode(): string {
  try {
    const s = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    return /\[(\w+)\]/.exec(s)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
