/**
 * Bounds of the options that the service config, the fio job files and the
 * runtime (BlkDriver, GuestMemory) all check, stated once. Each is [min, max]
 * inclusive unless said otherwise. No imports: anything may read it.
 */
export const LIMITS = {
  /** Virtqueues per device (fio: numjobs), each with its own device thread. */
  queues: [1, 64],
  /** Requests in flight per queue (fio: iodepth), before the cap that makes chains fit. */
  depth: [1, 4096],
  /** Pool areas as asked for (rounded up to a power of two by the geometry). */
  areas: [1, 1024],
  /** Copy worker threads. */
  copyWorkers: [0, 64],
} as const satisfies Record<string, readonly [number, number]>;

/** The largest DMA min_align_mask this project accepts for a device (NVMe sets 4095). */
export const MAX_MIN_ALIGN_MASK = 65535;

/** A device's DMA min_align_mask: 0 or 2^k - 1, at most MAX_MIN_ALIGN_MASK. */
export function isMinAlignMask(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= MAX_MIN_ALIGN_MASK && (n & (n + 1)) === 0;
}

/** SharedArrayBuffers above this are refused: offsets travel as Uint32 in copy descriptors. */
export const MAX_GUEST_MEMORY_SIZE = 2 ** 32 - 2 ** 16;
