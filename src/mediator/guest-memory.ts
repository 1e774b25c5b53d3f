import { MediatorError } from '../errors.js';
import { GUEST_DEFAULTS } from './defaults.js';
import { MAX_GUEST_MEMORY_SIZE } from './limits.js';

export interface GuestMemoryOptions {
  /**
   * Size of the guest's private memory in bytes.
   * @default 268435456 (256 MiB)
   */
  size?: number;
  /**
   * Guest-physical address of the first byte. Keep it clear of the pools' bases:
   * pool and private memory share the guest-physical address space.
   * @default 0x100000000 (4 GiB)
   */
  base?: number;
}

/**
 * A guest's private memory: one SharedArrayBuffer addressed by guest-physical
 * address. Only the guest side (the driver on the main thread, the copy workers)
 * ever holds it; device backends never do.
 */
export class GuestMemory {
  readonly base: number;
  readonly size: number;
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  private reserved = 0;

  constructor(opts: GuestMemoryOptions = {}) {
    const size = opts.size ?? GUEST_DEFAULTS.size;
    const base = opts.base ?? GUEST_DEFAULTS.base;
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_GUEST_MEMORY_SIZE) {
      throw new MediatorError(
        'DMA_BAD_ADDRESS',
        `guest memory size ${String(size)} must be from 1 byte to ${MAX_GUEST_MEMORY_SIZE} bytes`,
        { size },
      );
    }
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(base + size)) {
      throw new MediatorError('DMA_BAD_ADDRESS', `guest memory base ${String(base)} is not valid`, {
        base,
      });
    }
    this.base = base;
    this.size = size;
    this.buffer = new SharedArrayBuffer(size);
    this.bytes = new Uint8Array(this.buffer);
  }

  /**
   * Sets aside `length` bytes of guest memory for the driver (request headers,
   * data buffers, direct-mode virtqueues) and returns their guest address. A bump
   * allocator: reservations are made at set-up and last as long as the guest.
   * @throws MEDIATOR_BAD_CONFIG when guest memory is too small
   */
  reserve(length: number, align = 4096): number {
    const start = Math.ceil(this.reserved / align) * align;
    if (start + length > this.size) {
      throw new MediatorError(
        'MEDIATOR_BAD_CONFIG',
        `guest memory of ${this.size} bytes is too small: ${start + length} bytes needed for queues and request buffers`,
        { size: this.size, needed: start + length },
      );
    }
    this.reserved = start + length;
    return this.base + start;
  }

  /** Bytes reserved so far. */
  get reservedBytes(): number {
    return this.reserved;
  }

  /** Offset of [addr, addr+length) in {@link bytes}; throws DMA_BAD_ADDRESS if it is not all inside. */
  offsetOf(addr: number, length: number): number {
    const offset = addr - this.base;
    if (
      !Number.isSafeInteger(addr) ||
      !Number.isSafeInteger(length) ||
      length <= 0 ||
      offset < 0 ||
      offset + length > this.size
    ) {
      throw new MediatorError(
        'DMA_BAD_ADDRESS',
        `guest buffer [0x${Number.isSafeInteger(addr) ? addr.toString(16) : addr}, +${length}) is not inside guest memory [0x${this.base.toString(16)}, +${this.size})`,
        { addr, length },
      );
    }
    return offset;
  }
}
