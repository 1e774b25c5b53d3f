import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { mulberry32 } from '../src/util/prng.js';
import { type Placement, poolPlacement } from '../src/workload/trace/placement.js';
import { TraceProfile } from '../src/workload/trace/profile.js';
import {
  type GenEvent,
  KernelSim,
  type Mapping,
  render,
  STYLES,
  type Style,
} from './helpers/trace-gen.js';
import { replayText } from './helpers/trace-run.js';

/**
 * Traces written by the generator from a simulated kernel (the project's own
 * pool), replayed through the text formats: every placement must agree, in every
 * layout and array style, and a planted disagreement must be reported at its line.
 */

const G = { base: 0x7c00_0000, slots: 1024, areas: 4 }; // 4 areas of 256 slots
const NVME_MASK = 0xfff;

interface Scenario {
  events: GenEvent[];
  /** The map event to plant a disagreement on, and a free pool address for it. */
  plant: { ev: Extract<GenEvent, { t: 'map' }>; addr: number };
  bouncedMaps: number;
  kernelFailures: number;
}

/**
 * Three phases on CPUs 0-2 (areas 0-2), with unrelated events, a device that is
 * not bounced, sg lists mixing bounced and direct entries, syncs, swiotlb_bounced
 * lines before half of the bounced maps; then the unmap of a mapping made before
 * the trace (kept in area 3); then the pool filled until the kernel fails.
 */
function scenario(seed: number): Scenario {
  const sim = new KernelSim(G);
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const events: GenEvent[] = [];
  let bouncedMaps = 0;
  let kernelFailures = 0;

  // Before the trace: move area 3's cursor to its end, leave one mapping there
  // (slots 248-255), release the rest. Nothing of this is traced.
  const filler = [128, 120].map((slots, i) =>
    sim.map('vda', 3, 0x9000_0000 + i * 0x10_0000, slots * 2048, DmaDirection.TO_DEVICE),
  );
  const hidden = sim.map('vda', 3, 0x9100_0000, 8 * 2048, DmaDirection.TO_DEVICE);
  for (const m of filler) sim.unmap(m);
  // Areas 0-2 start with the cursor at 0; area 3 starts with its cursor wrapped to 0.
  expect(hidden.placed).toBe(G.base + (3 * 256 + 248) * 2048);

  let phys = 0x1_0000_0000;
  const nextPhys = (size: number, odd = 0) => {
    const p = phys + odd;
    phys += Math.ceil((size + odd) / 4096) * 4096 + 4096;
    return p;
  };
  const live: { cpu: number; m: Mapping; sg?: Mapping[] }[] = [];
  let plant: Scenario['plant'] | undefined;

  const mapOne = (cpu: number) => {
    const kind = pick(['vda', 'vda', 'nvme0', 'eth0'] as const);
    const size = pick([512, 1500, 4096, 8192, 65536]);
    const dir = pick([DmaDirection.TO_DEVICE, DmaDirection.FROM_DEVICE]);
    const m =
      kind === 'eth0'
        ? sim.map('eth0', cpu, nextPhys(size), size, dir, { bounce: false })
        : sim.map(kind, cpu, nextPhys(size, kind === 'nvme0' ? 0xa00 : 0), size, dir, {
            minAlignMask: kind === 'nvme0' ? NVME_MASK : 0,
          });
    if (m.placed >= 0) {
      bouncedMaps++;
      if (rand() < 0.5) events.push({ t: 'bounced', cpu, m });
    }
    const ev: GenEvent = { t: 'map', cpu, m };
    events.push(ev);
    if (m.placed >= 0 && cpu === 0 && plant === undefined) {
      plant = { ev, addr: G.base + (3 * 256 + 100) * 2048 };
    }
    if (m.placed >= 0 && rand() < 0.3) {
      events.push({ t: 'sync', cpu, m, offset: 0, size: Math.min(size, 512), forDevice: false });
    }
    live.push({ cpu, m });
  };
  const mapSg = (cpu: number) => {
    const dir = DmaDirection.FROM_DEVICE;
    const entries = [4096, 512, 8192].map((size, i) =>
      sim.map('vdb', cpu, nextPhys(size), size, dir, { bounce: i !== 1 }),
    );
    for (const e of entries) {
      if (e.placed >= 0) {
        bouncedMaps++;
        events.push({ t: 'bounced', cpu, m: e });
      }
    }
    events.push({ t: 'map_sg', cpu, dev: 'vdb', dir, entries });
    events.push({ t: 'sync_sg', cpu, dev: 'vdb', entries: [entries[0]!], forDevice: true });
    live.push({ cpu, m: entries[0]!, sg: entries });
  };
  const unmapOne = () => {
    const i = Math.floor(rand() * live.length);
    const x = live.splice(i, 1)[0]!;
    const cpu = pick([0, 1, 2]);
    if (x.sg) {
      for (const e of x.sg) sim.unmap(e);
      events.push({ t: 'unmap_sg', cpu, dev: 'vdb', dir: DmaDirection.FROM_DEVICE, entries: x.sg });
    } else {
      sim.unmap(x.m);
      events.push({ t: 'unmap', cpu, m: x.m });
    }
  };
  const unrelated = (cpu: number) =>
    events.push({
      t: 'other',
      cpu,
      name: 'sched_switch',
      body: 'prev_comm=fio prev_pid=1 ==> next_comm=swapper/0',
    });

  // Phase 1: mixed traffic, everything released at the end.
  for (let step = 0; step < 120; step++) {
    const cpu = pick([0, 1, 2]);
    const r = rand();
    if (r < 0.1) unrelated(cpu);
    else if (r < 0.2) mapSg(cpu);
    else if (r < 0.55 || live.length === 0) mapOne(cpu);
    else unmapOne();
  }
  while (live.length > 0) unmapOne();

  // The mapping made before the trace goes away (while it lived, the kernel could
  // not use its segment, which the model does not know of: phase 2 needs it).
  sim.unmap(hidden);
  events.push({ t: 'unmap', cpu: 3, m: hidden });

  // Phase 2: 256 KiB maps until the kernel fails (every area full), then release.
  const big: Mapping[] = [];
  for (let i = 0; i < 12; i++) {
    const m = sim.map('vda', 2, nextPhys(256 * 1024), 256 * 1024, DmaDirection.TO_DEVICE);
    events.push({ t: 'bounced', cpu: 2, m });
    events.push({ t: 'map', cpu: 2, m });
    if (m.placed >= 0) {
      bouncedMaps++;
      big.push(m);
    } else kernelFailures++;
  }
  for (const m of big) {
    sim.unmap(m);
    events.push({ t: 'unmap', cpu: 1, m });
  }

  return { events, plant: plant!, bouncedMaps, kernelFailures };
}

const MASKS = { all: 0, byDevice: new Map([['nvme0', NVME_MASK]]) };

describe('generated traces (both layouts, both array styles, 6.12 and mainline names)', () => {
  const sc = scenario(7);

  it('the scenario has what the replay must handle', () => {
    const kinds = new Set(sc.events.map((e) => e.t));
    expect([...kinds].sort()).toEqual(
      ['bounced', 'map', 'map_sg', 'other', 'sync', 'sync_sg', 'unmap', 'unmap_sg'].sort(),
    );
    expect(sc.kernelFailures).toBeGreaterThan(0);
    expect(new Set(sc.events.map((e) => e.cpu))).toEqual(new Set([0, 1, 2, 3]));
  });

  it.each(STYLES.map((s) => [`${s.layout} ${s.arrays} ${s.naming}`, s] as [string, Style]))(
    '%s: every placement agrees with the kernel',
    async (_name, style) => {
      const { text } = render(sc.events, style);
      const r = await replayText(text, G, { minAlignMask: MASKS });
      expect(r.input.layout).toBe(style.layout);
      expect(r.input.arrays).toBe(style.arrays);
      expect(r.placements).toMatchObject({ disagree: 0, first_disagreement_line: null });
      expect(r.placements.agree).toBe(sc.bouncedMaps + sc.kernelFailures);
      expect(r.maps).toMatchObject({
        bounced: sc.bouncedMaps,
        kernel_failed: sc.kernelFailures,
        bounced_unmatched: 0,
      });
      expect(r.model.full).toBe(sc.kernelFailures);
      expect(r.unmaps).toMatchObject({ before_trace: 1, implicit: 0, sg_unknown: 0 });
      expect(r.model.used_end).toBe(0);
      expect(r.model.used_hiwater).toBe(r.observed.used_hiwater);
      expect(r.model.used_hiwater).toBeGreaterThan(0.9 * (G.slots - 8)); // the fill phase
      expect(r.devices.find((d) => d.device === 'eth0')).toMatchObject({ bounced: 0 });
    },
  );

  it('reports a planted disagreement at its line, and the rest still agrees', async () => {
    const style = STYLES[1]!;
    const original = sc.plant.ev.m.dmaAddr;
    sc.plant.ev.m.dmaAddr = sc.plant.addr; // map, sync and unmap lines all print it
    try {
      const { text, lineOf } = render(sc.events, style);
      const r = await replayText(text, G, { minAlignMask: MASKS });
      expect(r.placements.disagree).toBe(1);
      expect(r.placements.agree).toBe(sc.bouncedMaps + sc.kernelFailures - 1);
      const line = lineOf.get(sc.plant.ev)!;
      expect(r.placements.first_disagreement_line).toBe(line);
      expect(r.placements.disagreements[0]).toMatchObject({
        line,
        kernel: `0x${sc.plant.addr.toString(16)}`,
        model: `0x${original.toString(16)}`,
        reason: expect.stringMatching(/area 3, the model in area 0/),
      });
      expect(text.split('\n')[line - 1]).toContain(`dma_addr=${sc.plant.addr.toString(16)}`);
    } finally {
      sc.plant.ev.m.dmaAddr = original;
    }
  });

  it('a truncated sg list (mainline) is counted and its unlisted entries reported', async () => {
    const sim = new KernelSim(G);
    const entries = Array.from({ length: 4 }, (_, i) =>
      sim.map('vdb', 0, 0x1_0000_0000 + i * 0x2000, 4096, DmaDirection.TO_DEVICE),
    );
    const ev: GenEvent[] = [
      { t: 'map_sg', cpu: 0, dev: 'vdb', dir: DmaDirection.TO_DEVICE, entries, shown: 2 },
      { t: 'unmap_sg', cpu: 0, dev: 'vdb', dir: DmaDirection.TO_DEVICE, entries },
    ];
    const r = await replayText(render(ev, STYLES[3]!).text, G);
    expect(r.maps).toMatchObject({ sg_truncated: 1, bounced: 2 });
    expect(r.unmaps).toMatchObject({ replayed: 2, sg_unknown: 2 });
    expect(r.hints.join('\n')).toMatch(/printed in part/);
  });

  it("the profile sees each device's sizes, directions and concurrency", async () => {
    const profile = new TraceProfile();
    await replayText(render(sc.events, STYLES[0]!).text, G, {
      minAlignMask: MASKS,
      observer: profile,
    });
    const byName = new Map(profile.result().map((p) => [p.device, p]));
    expect([...byName.keys()].sort()).toEqual(['eth0', 'nvme0', 'vda', 'vdb']);
    const vdb = byName.get('vdb')!;
    expect(vdb.sgEntries).toBe(vdb.maps);
    expect(vdb.sizes.fromDevice.get(512)).toBeGreaterThan(0);
    expect(byName.get('eth0')!.bounced).toBe(0);
    expect(byName.get('vda')!.liveMax).toBeGreaterThanOrEqual(8);
  });
});

describe('generated traces: property', () => {
  it('random maps and unmaps on random CPUs, placed by any profile, replay with every placement agreeing under it', async () => {
    const op = fc.record({
      cpu: fc.integer({ min: 0, max: 3 }),
      size: fc.constantFrom(1, 512, 2048, 4096, 6000, 65536, 262144),
      unmap: fc.boolean(),
      pick: fc.nat(),
      bounced: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 60 }),
        fc.constantFrom(...STYLES),
        fc.constantFrom(1, 2),
        fc.constantFrom(
          ['6.1', '6.1.115'] as const,
          ['6.6', '6.6.60'] as const,
          ['6.10', '6.12.3'] as const,
        ),
        async (ops, style, areas, [kernel, release]) => {
          const g = { base: 0x4000_0000, slots: 256, areas };
          const sim = new KernelSim(g, { kernel });
          const live: Mapping[] = [];
          const events: GenEvent[] = [];
          let phys = 0x2_0000_0000;
          let placed = 0;
          for (const o of ops) {
            if (o.unmap && live.length > 0) {
              const m = live.splice(o.pick % live.length, 1)[0]!;
              sim.unmap(m);
              events.push({ t: 'unmap', cpu: o.cpu, m });
              continue;
            }
            const m = sim.map('vda', o.cpu, phys, o.size, DmaDirection.BIDIRECTIONAL);
            phys += 0x40000;
            if (o.bounced) events.push({ t: 'bounced', cpu: o.cpu, m });
            events.push({ t: 'map', cpu: o.cpu, m });
            if (m.placed >= 0) {
              placed++;
              live.push(m);
            }
          }
          if (placed === 0) return; // a device never seen bouncing: its failures are not replayed
          let placement: Placement | undefined;
          const r = await replayText(render(events, style).text, g, {
            kernel: release,
            placement: (spec) => {
              const setup = poolPlacement(spec);
              placement = setup.placement;
              return setup;
            },
          });
          expect(r.pool.profile).toBe(kernel);
          expect(r.placements.disagree).toBe(0);
          expect(placement!.used()).toBe(r.model.used_end);
          expect(r.model.used_hiwater).toBe(r.observed.used_hiwater);
          expect(r.model.used_end).toBe(live.reduce((s, m) => s + Math.ceil(m.size / 2048), 0));
        },
      ),
      { numRuns: 40, seed: 15 },
    );
  });
});
