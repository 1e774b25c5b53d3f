import type { ChaosRates } from '../../src/virtio/device-spec.js';

/** A chaos device that misbehaves in no way: spread it and set the one fault a test wants. */
export const NO_FAULTS: Required<ChaosRates> = {
  drop: 0,
  double: 0,
  badId: 0,
  badLen: 0,
  scribble: 0,
  corruptDesc: 0,
  jumpIdx: 0,
};
