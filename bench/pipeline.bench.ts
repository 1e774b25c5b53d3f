/**
 * The cost of isolation, end to end: the same virtio-blk workload through the
 * mediator in bounce mode (buffers bounced through the swiotlb pool, the device
 * sees only the pool) and in direct mode (the device is handed guest memory),
 * measured side by side in one run.
 *
 * Options: `npm run bench:pipeline -- --help`.
 *
 * For the null device (no data work: pure mediation cost) and ram-blk, 4 KiB and
 * 64 KiB, reads and writes, queue depth 32: IOPS, GB/s, p50/p99 completion
 * latency, and bounce / direct. Ratios only: the machines are shared and noisy.
 *
 * Bounce mode runs twice: with a 64 MiB pool (Linux's default swiotlb size) and
 * with a pool sized to the load (8 MiB: `swiotlb-mediator size` recommends 3.8 MiB
 * for 64 KiB writes at depth 32; 0 skips this run). The allocator's next-fit
 * cursor walks the whole area, so a large pool hands out buffers that left the
 * CPU caches (and TLBs) long ago, and both the guest-side copy and the device pay
 * for it. The cursor is per area, so what counts is the area's size:
 * `--pool-areas 16` gives 4 MiB areas, as Linux splits 64 MiB on a 16-CPU guest.
 * The recorded runs: docs/performance.md.
 *
 * Copy time: each bounce result carries the guest-side copy time per request
 * (copy_us_per_io: the copy engine's own timing, every copy thread, over the
 * measured window; inline copies are timed one in 64, and a timed copy runs a
 * little slower than the others) and the share of bytes copied inline on the main
 * thread. When every copy ran there, the main thread cannot complete requests
 * faster than one per copy_us_per_io, so bounce / direct cannot exceed
 * (1e6 / copy_us_per_io) / direct IOPS whatever the rest costs: the verdict prints
 * that bound ("copies allow"). Reads bounce twice on the guest side (Linux copies
 * into the pool at map for every direction, and back at unmap), writes once.
 */

import { Mediator } from '../src/mediator/mediator.js';
import { parseSize } from '../src/util/size.js';
import type { DeviceKind } from '../src/virtio/device-spec.js';
import type { CopyEngineOptions } from '../src/workers/copy-engine.js';
import { benchArgs, choicesFlag, intFlag, listFlag, positiveFlag, sizeFlag } from './cli.js';

const USAGE = `Usage: npm run bench:pipeline -- [options]
The cost of isolation: virtio-blk requests in bounce mode vs direct mode.

  --devices LIST            null, ram-blk (default null,ram-blk)
  --sizes LIST              request sizes, multiples of 512 (default 4k,64k)
  --ops LIST                write, read (default write,read)
  --modes LIST              bounce, direct (default bounce,direct)
  --depth N                 requests in flight (default 32)
  --duration S              seconds per measurement (default 0.6)
  --repeat N                measure each case N times, bounce and direct alternated,
                            and report medians with the IOPS range (default 1)
  --warmup S                seconds of warm-up per case (default 0.2; the first
                            case of the process warms up 1 s at least)
  --pool-mib MIB            pool of the first bounce run (default 64, Linux's default)
  --sized-pool-mib MIB      pool of the second bounce run; 0 skips it (default 8)
  --pool-areas N            areas of both pools (default: one per CPU, as Linux)
  --copy-workers N          copy workers; default: the CPUs the main thread and the
                            device threads leave (0 on 2 CPUs)
  --inline-threshold B      copy engine option
  --device-spin-micros US   device thread option
  --device-poll-micros US   device thread option
  --json                    print {"results":[...],"bounce_over_direct":{...}} last
  -h, --help                this help`;

const options = benchArgs(
  'bench:pipeline',
  USAGE,
  {
    options: {
      duration: { type: 'string', default: '0.6' },
      warmup: { type: 'string', default: '0.2' },
      depth: { type: 'string', default: '32' },
      repeat: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      devices: { type: 'string', default: 'null,ram-blk' },
      sizes: { type: 'string', default: '4k,64k' },
      ops: { type: 'string', default: 'write,read' },
      modes: { type: 'string', default: 'bounce,direct' },
      'device-spin-micros': { type: 'string' },
      'pool-mib': { type: 'string', default: '64' },
      'sized-pool-mib': { type: 'string', default: '8' },
      'pool-areas': { type: 'string' },
      'device-poll-micros': { type: 'string' },
      'copy-workers': { type: 'string' },
      'inline-threshold': { type: 'string' },
    },
  },
  (values) => {
    const sized = values['sized-pool-mib'];
    // 0 turns the second bounce run off; anything else is a size in MiB.
    const sizedPoolMiB =
      sized.trim() !== '' && Number(sized) === 0 ? 0 : positiveFlag('sized-pool-mib', sized);
    const deviceTuning: { spinMicros?: number; pollMicros?: number } = {};
    const spinMicros = intFlag('device-spin-micros', values['device-spin-micros']);
    const pollMicros = intFlag('device-poll-micros', values['device-poll-micros']);
    if (spinMicros !== undefined) deviceTuning.spinMicros = spinMicros;
    if (pollMicros !== undefined) deviceTuning.pollMicros = pollMicros;
    const copy: CopyEngineOptions = {};
    const workers = intFlag('copy-workers', values['copy-workers']);
    const inlineThreshold = sizeFlag('inline-threshold', values['inline-threshold']);
    if (workers !== undefined) copy.workers = workers;
    if (inlineThreshold !== undefined) copy.inlineThreshold = inlineThreshold;
    return {
      devices: choicesFlag('devices', values.devices, ['null', 'ram-blk'] as const),
      sizes: listFlag(
        'sizes',
        values.sizes,
        (v) => {
          const n = parseSize(v);
          return n && n % 512 === 0 ? n : undefined;
        },
        'a size that is a multiple of 512 bytes',
      ),
      ops: choicesFlag('ops', values.ops, ['write', 'read'] as const),
      modes: choicesFlag('modes', values.modes, ['bounce', 'direct'] as const),
      poolMiB: positiveFlag('pool-mib', values['pool-mib']),
      poolAreas: intFlag('pool-areas', values['pool-areas'], 1),
      sizedPoolMiB,
      deviceTuning,
      copy,
      duration: positiveFlag('duration', values.duration) * 1000,
      warmup: positiveFlag('warmup', values.warmup) * 1000,
      depth: intFlag('depth', values.depth, 1),
      repeat: intFlag('repeat', values.repeat, 1),
      json: values.json,
    };
  },
);
const { devices, sizes, ops, modes, poolMiB, sizedPoolMiB, poolAreas, deviceTuning, copy } =
  options;
const { duration, warmup, depth, repeat } = options;

interface Result {
  device: DeviceKind;
  op: 'read' | 'write';
  size: number;
  mode: 'bounce' | 'direct';
  /** The pool's size and areas (bounce mode; 0 in direct mode, which has none). */
  pool_mib: number;
  pool_areas: number;
  iops: number;
  gbps: number;
  p50_us: number;
  p99_us: number;
  /**
   * bounce: guest-side copy time per request, microseconds, all copy threads
   * (the engine's timing over the measured window); 0 in direct mode.
   */
  copy_us_per_io: number;
  /** bounce: share of the copied bytes copied inline on the main thread (1 = all). */
  inline_copy_share: number;
  /** Measurements behind this result (--repeat): the figures are their medians. */
  runs: number;
  iops_min: number;
  iops_max: number;
}

/** Warm-up of the first case of the process, at least (see runCase). */
const FIRST_WARMUP_MS = 1000;
let firstCase = true;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runCase(
  device: DeviceKind,
  op: 'read' | 'write',
  size: number,
  mode: 'bounce' | 'direct',
  poolMiB: number,
): Promise<Result> {
  const m = new Mediator({
    mode,
    copy,
    pools: [
      {
        name: 'pool',
        size: poolMiB * 2 ** 20,
        ...(poolAreas === undefined ? {} : { areas: poolAreas }),
      },
    ],
    guests: [{ name: 'guest', size: 256 * 2 ** 20 }],
    devices: [
      {
        id: 'dev',
        kind: device,
        guest: 'guest',
        pool: 'pool',
        capacity: 64 * 2 ** 20,
        depth,
        queueSize: 256,
        maxRequestBytes: Math.max(size, 64 * 1024),
        ...deviceTuning,
      },
    ],
  });
  try {
    const dev = m.device('dev')!;
    await dev.ready();
    const sectors = (64 * 2 ** 20 - size) / 512;
    const latencies = new Float64Array(4_000_000);
    let count = 0;
    let recording = false;
    let stop = false;
    const loop = async (seed: number) => {
      let lba = (seed * 7919) % sectors;
      while (!stop) {
        lba = (lba + 4099 * (size / 512)) % sectors;
        const t0 = performance.now();
        if (op === 'write') await dev.write(lba, size);
        else await dev.read(lba, size, false);
        if (recording && count < latencies.length) latencies[count++] = performance.now() - t0;
      }
    };
    const loops = Array.from({ length: depth }, (_, i) => loop(i));
    // The first case of the process also warms the main thread's JIT, which later
    // cases inherit (their device threads are new, and 0.2 s warms those): with
    // 0.2 s the first case measured a cold JIT, half its warm IOPS (docs/performance.md).
    await new Promise((r) => setTimeout(r, firstCase ? Math.max(warmup, FIRST_WARMUP_MS) : warmup));
    firstCase = false;
    recording = true;
    const copies0 = m.engine.stats().byWriter;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, duration));
    const done = count;
    const elapsed = (performance.now() - t0) / 1000;
    const copies1 = m.engine.stats().byWriter;
    recording = false;
    let copySeconds = 0;
    let copiedBytes = 0;
    for (const [i, w] of copies1.entries()) {
      copySeconds += w.seconds - copies0[i]!.seconds;
      copiedBytes += w.bytes - copies0[i]!.bytes;
    }
    const inlineBytes = copies1[0]!.bytes - copies0[0]!.bytes;
    stop = true;
    await Promise.all(loops);
    const sorted = latencies.slice(0, done).sort();
    return {
      device,
      op,
      size,
      mode,
      pool_mib: mode === 'bounce' ? poolMiB : 0,
      pool_areas: mode === 'bounce' ? m.pools.get('pool')!.pool.geometry.nareas : 0,
      iops: Math.round(done / elapsed),
      gbps: (done * size) / elapsed / 1e9,
      p50_us: percentile(sorted, 50) * 1000,
      p99_us: percentile(sorted, 99) * 1000,
      copy_us_per_io: done > 0 ? (copySeconds / done) * 1e6 : 0,
      inline_copy_share: copiedBytes > 0 ? inlineBytes / copiedBytes : 0,
      runs: 1,
      iops_min: Math.round(done / elapsed),
      iops_max: Math.round(done / elapsed),
    };
  } finally {
    await m.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One result for the repeats of a case: the median of each figure, and the IOPS range. */
function medianResult(repeats: Result[]): Result {
  const first = repeats[0]!;
  if (repeats.length === 1) return first;
  const iops = repeats.map((r) => r.iops);
  return {
    ...first,
    iops: Math.round(median(iops)),
    gbps: median(repeats.map((r) => r.gbps)),
    p50_us: median(repeats.map((r) => r.p50_us)),
    p99_us: median(repeats.map((r) => r.p99_us)),
    copy_us_per_io: median(repeats.map((r) => r.copy_us_per_io)),
    inline_copy_share: median(repeats.map((r) => r.inline_copy_share)),
    runs: repeats.length,
    iops_min: Math.min(...iops),
    iops_max: Math.max(...iops),
  };
}

const results: Result[] = [];
/** bounce / direct with the default (Linux-sized) pool, and with the pool sized to the load. */
const ratios: Record<string, Ratio> = {};
const ratiosSized: Record<string, Ratio> = {};
const log = (line: string) => {
  if (!options.json) console.log(line);
};
const runs: { mode: 'bounce' | 'direct'; pool: number }[] = [];
if (modes.includes('bounce')) {
  runs.push({ mode: 'bounce', pool: poolMiB });
  if (sizedPoolMiB > 0 && sizedPoolMiB !== poolMiB)
    runs.push({ mode: 'bounce', pool: sizedPoolMiB });
}
if (modes.includes('direct')) runs.push({ mode: 'direct', pool: poolMiB });
/** Copies all inline (on the main thread): below this share, the copy bound does not hold. */
const ALL_INLINE = 0.999;
interface Ratio {
  iops: number;
  p99: number;
  /**
   * The highest IOPS ratio the main thread's copies alone allow (see the header),
   * or null when some copies ran on workers or there were none.
   */
  copy_bound: number | null;
}
const ratio = (b: Result, d: Result): Ratio => ({
  iops: +(b.iops / d.iops).toFixed(3),
  p99: +(b.p99_us / d.p99_us).toFixed(3),
  copy_bound:
    b.inline_copy_share >= ALL_INLINE && b.copy_us_per_io > 0
      ? +(1e6 / b.copy_us_per_io / d.iops).toFixed(3)
      : null,
});
/** ", copies allow N" when the bound holds. */
const boundText = (r: Ratio | undefined) =>
  r?.copy_bound == null ? '' : `, copies allow ${r.copy_bound}`;
log('device   op    size   mode    pool/areas      IOPS     GB/s   p50 us   p99 us  copy us/IO');
for (const device of devices) {
  for (const size of sizes) {
    for (const op of ops) {
      // Repeats go round the runs (bounce, direct, bounce, ...) so that a slow
      // stretch of the machine hits every mode alike.
      const measured: Result[][] = runs.map(() => []);
      for (let k = 0; k < repeat; k++) {
        for (const [i, run] of runs.entries()) {
          measured[i]!.push(await runCase(device, op, size, run.mode, run.pool));
        }
      }
      const done: Result[] = [];
      for (const [i, run] of runs.entries()) {
        const r = medianResult(measured[i]!);
        done.push(r);
        results.push(r);
        const pool = run.mode === 'direct' ? '-' : `${run.pool}MiB/${r.pool_areas}`;
        const range = r.runs > 1 ? `  (${r.iops_min}-${r.iops_max}, ${r.runs} runs)` : '';
        const copyUs =
          run.mode === 'direct'
            ? '-'
            : `${r.copy_us_per_io.toFixed(2)}${r.inline_copy_share >= ALL_INLINE ? '' : '*'}`;
        log(
          `${device.padEnd(8)} ${op.padEnd(5)} ${String(size).padStart(5)}  ${run.mode.padEnd(7)} ${pool.padStart(8)} ${String(r.iops).padStart(9)} ${r.gbps.toFixed(2).padStart(8)} ${r.p50_us.toFixed(1).padStart(8)} ${r.p99_us.toFixed(1).padStart(8)} ${copyUs.padStart(11)}${range}`,
        );
      }
      const direct = done.find((r) => r.mode === 'direct');
      const bounce = done.find((r) => r.mode === 'bounce' && r.pool_mib === poolMiB);
      const sized = done.find((r) => r.mode === 'bounce' && r.pool_mib !== poolMiB);
      if (direct === undefined) continue;
      const key = `${device}/${op}/${size}`;
      const parts: string[] = [];
      if (bounce) {
        ratios[key] = ratio(bounce, direct);
        parts.push(
          `${poolMiB} MiB pool: IOPS ${ratios[key].iops}, p99 ${ratios[key].p99}${boundText(ratios[key])}`,
        );
      }
      if (sized) {
        ratiosSized[key] = ratio(sized, direct);
        parts.push(
          `${sizedPoolMiB} MiB pool: IOPS ${ratiosSized[key].iops}, p99 ${ratiosSized[key].p99}${boundText(ratiosSized[key])}`,
        );
      }
      if (parts.length > 0) log(`${' '.repeat(22)}bounce / direct: ${parts.join('; ')}`);
    }
  }
}
const nullBounce4k = results.find(
  (r) =>
    r.device === 'null' &&
    r.size === 4096 &&
    r.mode === 'bounce' &&
    r.op === 'write' &&
    r.pool_mib === poolMiB,
);
/** The ratios measured for `key`, each with its pool; '-' when none was measured. */
const both = (key: string) => {
  const parts: string[] = [];
  const r = ratios[key];
  const sized = ratiosSized[key];
  if (r) parts.push(`${r.iops} (${poolMiB} MiB pool${boundText(r)})`);
  if (sized) parts.push(`${sized.iops} (${sizedPoolMiB} MiB pool${boundText(sized)})`);
  return parts.length > 0 ? parts.join(', ') : '-';
};
log('');
if (nullBounce4k) {
  log(
    `target: null 4 KiB bounce writes >= 200k IOPS: ${nullBounce4k.iops} (${nullBounce4k.iops >= 200_000 ? 'met' : 'not met'})`,
  );
}
log('target: ram-blk 64 KiB bounce / direct >= 0.7:');
log(`  writes ${both('ram-blk/write/65536')}`);
log(`  reads  ${both('ram-blk/read/65536')}`);
log(
  '  ("copies allow N": the main thread copied every byte; its copy time per request alone caps bounce / direct at N.',
);
log("   '*' after a copy time: some copies ran on workers, so no such cap.)");
if (options.json) {
  console.log(
    JSON.stringify({
      results,
      bounce_over_direct: ratios,
      bounce_over_direct_sized_pool: ratiosSized,
    }),
  );
}
