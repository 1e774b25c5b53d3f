import { MediatorError } from '../errors.js';
import { type DmaDirection, directionName, isValidMappingDirection } from './constants.js';

/**
 * Argument checks of the pool's API, in one place so that the pool and the
 * growable-pool model refuse the same inputs with the same words.
 *
 * Shape (for the map path, which runs per I/O): each rule is a tiny predicate
 * (the engine inlines those whatever its budget) and each error is built by a
 * function of its own, called only when a rule fails.
 */

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

/** 2^k - 1 below 2^32 (`>>> 0` keeps exactly the integers from 0 to 2^32 - 1). */
export function isMask(mask: number): boolean {
  return mask >>> 0 === mask && ((mask + 1) & mask) === 0;
}

/** A 31-bit non-negative integer (`| 0` keeps exactly the 32-bit integers). */
function isOwner(owner: number): boolean {
  return (owner | 0) === owner && owner >= 0;
}

function isSize(size: number): boolean {
  return Number.isSafeInteger(size) && size > 0;
}

function isArea(area: number, nareas: number): boolean {
  return (area | 0) === area && area >= 0 && area < nareas;
}

function isAddress(addr: number): boolean {
  return Number.isSafeInteger(addr) && addr >= 0;
}

function badOwner(owner: number): MediatorError {
  return invalidArg(`owner ${String(owner)} must be a non-negative 31-bit integer`, { owner });
}

function badSize(size: number, what: string): MediatorError {
  return invalidArg(`${what} ${String(size)} must be a positive integer`, { [what]: size });
}

function badMask(mask: number, name: string): MediatorError {
  return invalidArg(`${name} ${String(mask)} must be 2^k - 1 below 2^32`, { [name]: mask });
}

function badArea(area: number, nareas: number): MediatorError {
  return invalidArg(`area ${String(area)} must be an integer from 0 to ${nareas - 1}`, { area });
}

export function checkOwner(owner: number): void {
  if (!isOwner(owner)) throw badOwner(owner);
}

export function checkSize(size: number, what = 'size'): void {
  if (!isSize(size)) throw badSize(size, what);
}

export function checkMask(mask: number, name: string): void {
  if (!isMask(mask)) throw badMask(mask, name);
}

export function checkArea(area: number, nareas: number): void {
  if (!isArea(area, nareas)) throw badArea(area, nareas);
}

/**
 * Everything a map request must be before the kernel's rules apply to it.
 * `allocSize` is the 6.1/6.6 alloc_size (undefined: the mapping size);
 * `takesAllocSize` is false for 6.10, whose swiotlb_tbl_map_single() has none.
 */
export function checkMapArgs(
  origAddr: number,
  size: number,
  dir: DmaDirection,
  minAlignMask: number,
  allocAlignMask: number,
  allocSize: number | undefined,
  takesAllocSize: boolean,
  area: number,
  nareas: number,
  owner: number,
): void {
  if (!isOwner(owner)) throw badOwner(owner);
  if (!isAddress(origAddr)) throw badOrig(origAddr);
  if (!isSize(size)) throw badSize(size, 'size');
  if (!Number.isSafeInteger(origAddr + size)) throw badEnd(origAddr, size);
  // 0 first: the usual mask, answered here without a call (this runs per map).
  if (minAlignMask !== 0 && !isMask(minAlignMask)) throw badMask(minAlignMask, 'min_align_mask');
  if (allocAlignMask !== 0 && !isMask(allocAlignMask)) {
    throw badMask(allocAlignMask, 'alloc_align_mask');
  }
  if (allocSize !== undefined) checkAllocSize(size, allocSize, takesAllocSize);
  if (!isValidMappingDirection(dir)) throw invalidDirection(dir);
  if (!isArea(area, nareas)) throw badArea(area, nareas);
}

function badOrig(origAddr: number): MediatorError {
  return invalidArg(
    `original address ${String(origAddr)} must be a non-negative integer below 2^53`,
    { origAddr },
  );
}

function badEnd(origAddr: number, size: number): MediatorError {
  return invalidArg('original address + size exceeds 2^53', { origAddr, size });
}

/** The 6.1/6.6 alloc_size: at least the mapping size; 6.10 has none. */
function checkAllocSize(size: number, allocSize: number, takesAllocSize: boolean): void {
  if (!takesAllocSize && allocSize !== size) {
    throw invalidArg(
      `alloc_size ${allocSize}: 6.10's swiotlb_tbl_map_single() takes no alloc_size (only the 6.1 and 6.6 profiles do)`,
      { allocSize, size },
    );
  }
  checkSize(allocSize, 'alloc_size');
  if (allocSize < size) {
    // swiotlb_tbl_map_single(): "Invalid sizes (mapping: %zd bytes, alloc: %zd bytes)"
    throw invalidArg(`Invalid sizes (mapping: ${size} bytes, alloc: ${allocSize} bytes)`, {
      size,
      allocSize,
    });
  }
}

export function notMapped(addr: number, why: string): MediatorError {
  const hex = Number.isSafeInteger(addr) && addr >= 0 ? `0x${addr.toString(16)}` : String(addr);
  return new MediatorError('SWIOTLB_NOT_MAPPED', `address ${hex} ${why}`, { addr });
}
