import { MediatorError } from '../../src/errors.js';

/**
 * A stand-in for a request's buffers in a pool: `free` slots shared by every
 * request; a request of `n` slots places when n fit. Each request records how
 * often it tried (the back-pressure gate's tests).
 */
export class Slots {
  tries = new Map<string, number>();
  constructor(public free: number) {}
  request(name: string, n: number): () => boolean {
    return () => {
      this.tries.set(name, (this.tries.get(name) ?? 0) + 1);
      if (n > this.free) return false;
      this.free -= n;
      return true;
    };
  }
}

/** The error a full pool gives (the gate's `fullError`). */
export const fullError = () =>
  new MediatorError('SWIOTLB_POOL_FULL', 'swiotlb buffer is full (sz: 4096 bytes)');
