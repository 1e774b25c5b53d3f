import { afterAll, describe, expect, it } from 'vitest';
import {
  closeProbe,
  coreToCoreNs,
  isFar,
  nearState,
  seeProbe,
  waitForNear,
} from '../bench/c2c-probe.js';

/** A probe that answers `trips` in turn (the last one after that), on a clock that each sleep moves. */
function scripted(trips: number[]) {
  let t = 0;
  let i = 0;
  const slept: number[] = [];
  return {
    probe: async () => trips[Math.min(i++, trips.length - 1)]!,
    now: () => t,
    sleep: async (ms: number) => {
      slept.push(ms);
      t += ms;
    },
    probes: () => i,
    slept,
  };
}

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

  it('waits for the near state, and takes the state the cores are in when it does not come back', async () => {
    const s = nearState();
    seeProbe(s, 195);
    // Near again after two far probes: no reset, the floor kept.
    let c = scripted([900, 880, 300]);
    let r = await waitForNear(s, c.probe, {
      waitMs: 1000,
      everyMs: 250,
      now: c.now,
      sleep: c.sleep,
    });
    expect(r).toEqual({ ns: 300, waitedMs: 500 });
    expect(s).toEqual({ floorNs: 195, lowestNs: 195, resets: 0 });
    // Far for the whole wait: the lowest probe of the wait becomes the floor.
    c = scripted([910, 870, 940, 905, 890]);
    r = await waitForNear(s, c.probe, { waitMs: 1000, everyMs: 250, now: c.now, sleep: c.sleep });
    expect(r).toEqual({ ns: 890, waitedMs: 1000, resetFrom: 195 });
    expect(c.probes()).toBe(5);
    expect(s).toEqual({ floorNs: 870, lowestNs: 195, resets: 1 });
    // Then 900 is near at once (no wait), and a lower probe lowers the floor again.
    c = scripted([900]);
    r = await waitForNear(s, c.probe, { waitMs: 1000, now: c.now, sleep: c.sleep });
    expect(r).toEqual({ ns: 900, waitedMs: 0 });
    expect(c.slept).toEqual([]);
    seeProbe(s, 180);
    expect(s).toEqual({ floorNs: 180, lowestNs: 180, resets: 1 });
  });

  it('with no wait allowed, resets on the first far probe', async () => {
    const s = nearState();
    seeProbe(s, 100);
    const c = scripted([700]);
    const r = await waitForNear(s, c.probe, { waitMs: 0, now: c.now, sleep: c.sleep });
    expect(r).toEqual({ ns: 700, waitedMs: 0, resetFrom: 100 });
    expect(s.floorNs).toBe(700);
  });
});
