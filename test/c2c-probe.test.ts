import { afterAll, describe, expect, it } from 'vitest';
import { closeProbe, coreToCoreNs, isFar } from '../bench/c2c-probe.js';

describe('core-to-core probe (bench/c2c-probe.ts)', () => {
  afterAll(closeProbe);

  it('measures a positive round trip, again after a pause, and ends its thread', async () => {
    const first = await coreToCoreNs(5);
    const second = await coreToCoreNs(5);
    for (const ns of [first, second]) {
      expect(Number.isFinite(ns)).toBe(true);
      expect(ns).toBeGreaterThan(0);
    }
    await closeProbe();
    // A probe after close starts a new thread.
    expect(await coreToCoreNs(5)).toBeGreaterThan(0);
  });

  it('calls a round trip far above factor x the floor, relative to the floor', () => {
    expect(isFar(150, 72)).toBe(false);
    expect(isFar(180, 72)).toBe(false); // exactly 2.5x is near
    expect(isFar(181, 72)).toBe(true);
    expect(isFar(550, 140)).toBe(true);
    expect(isFar(2000, 1000, 3)).toBe(false);
    expect(isFar(3001, 1000, 3)).toBe(true);
  });
});
