/**
 * One case of bench:instructions, run under callgrind by bench/instructions.bench.ts:
 * builds a Mediator in the case's mode with nothing polling (driver, copy engine
 * and device thread all sleep as soon as they are idle, so the main thread's
 * instructions are its work and not its waiting), runs `warmup` + `count` I/Os at
 * queue depth 32, closes, exits. The spec comes as JSON in SWIOTLB_INSTRUCTIONS_CASE.
 */
import type { DeviceKind } from '../src/virtio/device-spec.js';
import { type BenchMode, CAPACITY, caseMediator } from './pipeline-case.js';

export interface InstructionsSpec {
  mode: BenchMode;
  device: DeviceKind;
  size: number;
  op: 'read' | 'write';
  warmup: number;
  count: number;
}

export const INSTRUCTIONS_ENV = 'SWIOTLB_INSTRUCTIONS_CASE';
const DEPTH = 32;

export async function runInstructionsCase(spec: InstructionsSpec): Promise<void> {
  const { mode, device, size, op } = spec;
  const m = caseMediator({
    mode,
    device,
    size,
    depth: DEPTH,
    poolMiB: 64,
    copy: { workers: 0, pollMicros: 0 },
    deviceTuning: { spinMicros: 0, pollMicros: 0 },
  });
  try {
    const dev = m.device('dev')!;
    await dev.ready();
    const total = spec.warmup + spec.count;
    const sectors = (CAPACITY - size) / 512;
    let issued = 0;
    const loop = async (seed: number) => {
      let lba = (seed * 7919) % sectors;
      while (issued < total) {
        issued++;
        lba = (lba + 4099 * (size / 512)) % sectors;
        if (op === 'write') await dev.write(lba, size);
        else await dev.read(lba, size, false);
      }
    };
    await Promise.all(Array.from({ length: DEPTH }, (_, i) => loop(i)));
  } finally {
    await m.close();
  }
}

const spec = process.env[INSTRUCTIONS_ENV];
if (spec !== undefined) await runInstructionsCase(JSON.parse(spec) as InstructionsSpec);
