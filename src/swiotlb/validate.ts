import { MediatorError } from '../errors.js';
import { type DmaDirection, directionName, isValidMappingDirection } from './constants.js';

/**
 * Argument checks of the pool's API, in one place so that the pool and the
 * growable-pool model refuse the same inputs with the same words.
 */

const TWO_POW_32 = 0x1_0000_0000;

export function invalidArg(message: string, details: Record<string, unknown>): MediatorError {
  return new MediatorError('SWIOTLB_INVALID_ARGUMENT', message, details);
}

export function invalidDirection(dir: number): MediatorError {
  return new MediatorError(
    'SWIOTLB_INVALID_DIRECTION',
    `invalid DMA direction ${directionName(dir)}`,
    {
      dir,
    },
  );
}

/** 2^k - 1 below 2^32. */
export function isMask(mask: number): boolean {
  return Number.isInteger(mask) && mask >= 0 && mask < TWO_POW_32 && ((mask + 1) & mask) === 0;
}

export function checkOwner(owner: number): void {
  if (!Number.isInteger(owner) || owner < 0 || owner > 0x7fff_ffff) {
    throw invalidArg(`owner ${String(owner)} must be a non-negative 31-bit integer`, { owner });
  }
}

export function checkSize(size: number, what = 'size'): void {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw invalidArg(`${what} ${String(size)} must be a positive integer`, { [what]: size });
  }
}

export function checkMask(mask: number, name: string): void {
  if (!isMask(mask)) {
    throw invalidArg(`${name} ${String(mask)} must be 2^k - 1 below 2^32`, { [name]: mask });
  }
}

export function checkArea(area: number, nareas: number): void {
  if (!Number.isInteger(area) || area < 0 || area >= nareas) {
    throw invalidArg(`area ${String(area)} must be an integer from 0 to ${nareas - 1}`, { area });
  }
}

/**
 * Everything a map request must be before the kernel's rules apply to it.
 * `allocSize` is the 6.1/6.6 alloc_size (undefined: the mapping size).
 */
export function checkMapArgs(
  origAddr: number,
  size: number,
  dir: DmaDirection,
  minAlignMask: number,
  allocAlignMask: number,
  allocSize: number | undefined,
  area: number,
  nareas: number,
  owner: number,
): void {
  checkOwner(owner);
  if (!Number.isSafeInteger(origAddr) || origAddr < 0) {
    throw invalidArg(
      `original address ${String(origAddr)} must be a non-negative integer below 2^53`,
      { origAddr },
    );
  }
  checkSize(size);
  if (!Number.isSafeInteger(origAddr + size)) {
    throw invalidArg('original address + size exceeds 2^53', { origAddr, size });
  }
  checkMask(minAlignMask, 'min_align_mask');
  checkMask(allocAlignMask, 'alloc_align_mask');
  if (allocSize !== undefined) {
    checkSize(allocSize, 'alloc_size');
    if (allocSize < size) {
      // swiotlb_tbl_map_single(): "Invalid sizes (mapping: %zd bytes, alloc: %zd bytes)"
      throw invalidArg(`Invalid sizes (mapping: ${size} bytes, alloc: ${allocSize} bytes)`, {
        size,
        allocSize,
      });
    }
  }
  if (!isValidMappingDirection(dir)) throw invalidDirection(dir);
  checkArea(area, nareas);
}

export function notMapped(addr: number, why: string): MediatorError {
  const hex = Number.isSafeInteger(addr) && addr >= 0 ? `0x${addr.toString(16)}` : String(addr);
  return new MediatorError('SWIOTLB_NOT_MAPPED', `address ${hex} ${why}`, { addr });
}
