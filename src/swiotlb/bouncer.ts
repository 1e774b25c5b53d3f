import type { CopyDirection } from './constants.js';

/**
 * The copy the pool asks for at map, unmap and sync: `length` bytes between the
 * guest's original buffer at `origAddr` and the bounce buffer at `tlbAddr`
 * (both guest-physical addresses), in direction `dir` (TO_DEVICE: original ->
 * bounce; FROM_DEVICE: bounce -> original). The pool has validated both ranges
 * against a live mapping before it calls.
 */
export interface Bouncer {
  bounce(dir: CopyDirection, origAddr: number, tlbAddr: number, length: number): void;
}

/** A bouncer that copies nothing: placement only (the replay command, allocator benchmarks). */
export const NO_COPY: Bouncer = {
  bounce() {},
};
