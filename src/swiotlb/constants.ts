/**
 * Constants of Linux's kernel/dma/swiotlb.c and include/linux/dma-*.h, with the
 * kernel's values so that numbers read from one side can be used on the other.
 */

/** log2 of the slot size (IO_TLB_SHIFT). */
export const IO_TLB_SHIFT = 11;
/** Slot size in bytes: 2 KiB (IO_TLB_SIZE). */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** Slots per segment (IO_TLB_SEGSIZE); one mapping never crosses a segment. */
export const IO_TLB_SEGSIZE = 128;
/** Default pool size (IO_TLB_DEFAULT_SIZE): 64 MiB, 32768 slots. */
export const IO_TLB_DEFAULT_SIZE = 64 * 1024 * 1024;
/** The kernel's PAGE_SIZE on the platforms this models (x86-64, arm64 with 4K pages). */
export const PAGE_SIZE = 4096;

/** enum dma_data_direction, with the kernel's numbering. */
export const DmaDirection = {
  BIDIRECTIONAL: 0,
  TO_DEVICE: 1,
  FROM_DEVICE: 2,
  NONE: 3,
} as const;
export type DmaDirection = (typeof DmaDirection)[keyof typeof DmaDirection];

/** The direction of one copy: guest memory -> pool, or pool -> guest memory. */
export type CopyDirection = typeof DmaDirection.TO_DEVICE | typeof DmaDirection.FROM_DEVICE;

/** DMA attributes (include/linux/dma-mapping.h), with the kernel's bit values. */
export const DmaAttr = {
  /** Skip the copy that unmap and sync would do (DMA_ATTR_SKIP_CPU_SYNC). */
  SKIP_CPU_SYNC: 1 << 5,
  /** Do not log "swiotlb buffer is full" (DMA_ATTR_NO_WARN). Failure counters still move. */
  NO_WARN: 1 << 8,
} as const;

const DIRECTION_NAMES: Record<string, DmaDirection> = {
  bidirectional: DmaDirection.BIDIRECTIONAL,
  to_device: DmaDirection.TO_DEVICE,
  from_device: DmaDirection.FROM_DEVICE,
  none: DmaDirection.NONE,
};

/** Parses "to_device", "from_device", "bidirectional" (or "none"); undefined otherwise. */
export function parseDirection(name: string): DmaDirection | undefined {
  return DIRECTION_NAMES[name.toLowerCase()];
}

export function directionName(dir: number): string {
  switch (dir) {
    case DmaDirection.BIDIRECTIONAL:
      return 'bidirectional';
    case DmaDirection.TO_DEVICE:
      return 'to_device';
    case DmaDirection.FROM_DEVICE:
      return 'from_device';
    case DmaDirection.NONE:
      return 'none';
    default:
      return `invalid(${dir})`;
  }
}

/** True for the three directions a mapping may have (DMA_NONE is not one: the kernel BUG()s). */
export function isValidMappingDirection(dir: number): dir is DmaDirection {
  return (
    dir === DmaDirection.BIDIRECTIONAL ||
    dir === DmaDirection.TO_DEVICE ||
    dir === DmaDirection.FROM_DEVICE
  );
}
