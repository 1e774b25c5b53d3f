import { Readable } from 'node:stream';
import { type DeviceProfile, TraceProfile } from '../../src/workload/trace/profile.js';
import type { TraceReport } from '../../src/workload/trace/report-types.js';
import { runTraceReplay, type TraceRunOptions } from '../../src/workload/trace/run.js';
import {
  bootLog,
  DmaDirection,
  type GenEvent,
  type Mapping,
  type Rendered,
  render,
  type Style,
} from './trace-gen.js';

/** Replays trace text (and a boot log for the geometry) in-process. */
export async function replayText(
  text: string,
  g: { base: number; slots: number; areas: number },
  opts: Partial<TraceRunOptions> = {},
): Promise<TraceReport> {
  return runTraceReplay({
    trace: Readable.from([text]),
    traceName: 'trace.txt',
    bootLog: { input: Readable.from([bootLog(g)]), name: 'dmesg.txt' },
    ...opts,
  });
}

export const TRACEFS: Style = { layout: 'tracefs', arrays: 'kernel', naming: '6.12' };

/**
 * The profile (profile.ts) of the first device of `events`, rendered as a tracefs
 * trace and replayed against a one-area pool of `slots` at `base`, no boot log.
 */
export async function profileOfEvents(
  events: GenEvent[],
  g: { base: number; slots: number },
): Promise<DeviceProfile> {
  const p = new TraceProfile();
  await runTraceReplay({
    trace: Readable.from([render(events, TRACEFS).text]),
    traceName: 't',
    pool: { base: g.base, slots: g.slots, areas: 1 },
    observer: p,
  });
  const [first] = p.result();
  return first!;
}

/** Renders events in the given order and replays them. */
export async function replayEvents(
  events: GenEvent[],
  g: { base: number; slots: number; areas: number },
  opts: Partial<TraceRunOptions> = {},
  style: Style = TRACEFS,
): Promise<{ report: TraceReport; rendered: Rendered }> {
  const rendered = render(events, style);
  return { report: await replayText(rendered.text, g, opts), rendered };
}

/** A mapping with a hand-chosen kernel address. */
export function mapping(
  dev: string,
  phys: number,
  size: number,
  dmaAddr: number,
  dir: DmaDirection = DmaDirection.TO_DEVICE,
): Mapping {
  return { dev, phys, size, dir, dmaAddr, placed: dmaAddr };
}
