/**
 * The cost of isolation, end to end: the same virtio-blk workload through the
 * mediator in each mode, measured in one run:
 * - `direct`: the device is handed guest memory (no isolation: the baseline);
 * - `bounce`: Linux's swiotlb (the map copies in for every direction, the unmap
 *   copies back);
 * - `bounce-tuned`: bounce with what costs less and keeps the isolation: warm
 *   placement (the pool's `placement: "warm"`, recently freed slots first) and
 *   reads without the copy-in (`fromDeviceBounce: "used-length"`);
 * - `shared`: each request's buffers allocated in the pool, no copies (the
 *   device sees them while in flight), on warm placement as the service's
 *   shared mode runs.
 *
 * Options: `npm run bench:pipeline -- --help`.
 *
 * For the null device (no data work: pure mediation cost) and ram-blk, 4 KiB and
 * 64 KiB, reads and writes, queue depth 32: IOPS, GB/s, p50/p99 completion
 * latency, and each mode ÷ direct. Ratios only: the machines are shared and noisy.
 * With --repeat, each ratio is of the medians, and the rounds' own ratios (the
 * k-th run of a mode over the k-th run of direct; `rounds` in the JSON) show how
 * far the machine moved it: a target inside that spread is met or missed by the
 * round, not by the path.
 *
 * Pools: every pooled mode runs on Linux's default pool (64 MiB, one area per
 * CPU) and on a pool sized to the load (8 MiB: `swiotlb-mediator size`
 * recommends 3.8 MiB for 64 KiB writes at depth 32; 0 skips it). The allocator's
 * next-fit cursor walks the whole area, so a large pool hands out buffers that
 * left the CPU caches (and TLBs) long ago: the sized pool measures what that
 * placement costs. `--pool-areas 16` gives 4 MiB areas, as Linux splits 64 MiB on
 * a 16-CPU guest. The recorded runs: docs/performance.md.
 *
 * Each case runs in a fresh child process with its memory pre-touched
 * (bench/pipeline-case.ts says why), so that no case inherits another's
 * threads, heap, JIT or page state; `--in-process` runs them all in this
 * process instead (quicker, and what the earlier runs of docs/performance.md did).
 * What no process can reset is where the host runs the two vCPUs: a case measured
 * with them far apart (no shared cache) and its direct baseline near measure luck.
 * So every case measures short windows with a core-to-core probe between each
 * two (bench/c2c-probe.ts; printed as `c2c ns`), and under `--topology near` (the
 * default) starts in the near state, counts only its near windows, and is
 * measured again when none was near (the state moves within seconds, faster than
 * a case runs). A near state that has not come back within --topology-wait gives
 * way to the one the cores are in (c2c-probe.ts waitForNear()).
 *
 * What bounds a figure, measured:
 * - copies: each copying result carries the guest-side copy time per request
 *   (copy_us_per_io, the copy engine's own timing; inline copies are timed one in
 *   64) and the share copied inline on the main thread. When every copy ran there,
 *   the main thread cannot complete requests faster than one per copy_us_per_io,
 *   so mode ÷ direct cannot exceed (1e6 / copy_us_per_io) / direct IOPS, whatever
 *   the rest costs: "copies allow" (copy_bound in the JSON);
 * - the main thread: its time on a CPU per request over the window
 *   (main_cpu_us_per_io, from /proc/thread-self/schedstat) and how busy that kept
 *   it (main_busy). It issues, maps, copies and completes every request; near
 *   100% busy it had no time to give. Not a cap on IOPS like the copies' one: the
 *   time includes the driver's polling for completions (pollMicros), which fills
 *   what would otherwise be idle, so direct mode too shows it busy;
 * - the device thread: its work per request over the window (device_us_per_io:
 *   the window less the time it polled for requests or slept, by the idle clock
 *   it keeps, src/virtio/thread-clock.ts) and how busy that kept it
 *   (device_busy). The device serves one request at a time, so mode ÷ direct
 *   cannot exceed (1e6 / device_us_per_io) / direct IOPS: "device allows"
 *   (device_bound in the JSON). Where its work differs between modes, mind what
 *   its copy meets: in direct mode guest memory no other thread touches, in a
 *   bounce mode pool slots the main thread has just written (writes) or reads
 *   next (reads);
 * - placement: the same mode on the sized pool ("on a pool sized to the load").
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../src/util/size.js';
import type { CopyEngineOptions } from '../src/workers/copy-engine.js';
import { closeProbe, coreToCoreNs, nearState, seeProbe, waitForNear } from './c2c-probe.js';
import {
  benchArgs,
  choiceFlag,
  choicesFlag,
  intFlag,
  listFlag,
  positiveFlag,
  sizeFlag,
} from './cli.js';
import { glibcTunables, thpMode } from './huge-pages.js';
import { median } from './median.js';
import {
  BENCH_MODES,
  type BenchMode,
  CASE_ENV,
  type CaseResult,
  type CaseSpec,
  runCase,
} from './pipeline-case.js';
import {
  ALL_INLINE,
  boundText,
  caseKey,
  type PooledMode,
  pipelineTargets,
  type Ratio,
  ratio,
  roundsSpan,
  roundsText,
} from './pipeline-targets.js';

const USAGE = `Usage: npm run bench:pipeline -- [options]
The cost of isolation: virtio-blk requests in each mode, divided by direct mode.
Progress goes to stderr, one line per case run; the table (or the JSON) to stdout.

  --devices LIST            null, ram-blk (default null,ram-blk)
  --sizes LIST              request sizes, multiples of 512 (default 4k,64k)
  --ops LIST                write, read (default write,read)
  --modes LIST              direct, bounce, bounce-tuned, shared (default all four)
  --depth N                 requests in flight (default 32)
  --duration S              seconds each measurement counts (default 0.6), in windows
                            of --window with a core-to-core probe between each two
  --window S                seconds of one window (default 0.2)
  --repeat N                measure each case N times, modes alternated, and report
                            medians with the IOPS range (default 1)
  --warmup S                seconds of warm-up per case (default 1: each case runs
                            in a fresh process, whose JIT starts cold)
  --pool-mib MIB            the default pool (default 64, Linux's default)
  --sized-pool-mib MIB      the pool sized to the load; 0 skips it (default 8)
  --pool-areas N            areas of both pools (default: one per CPU, as Linux)
  --in-process              run every case in this process (no fresh process per case)
  --cold                    do not pre-touch guest memory, pool and disk before a case
  --pages 4k|2m             the pages behind each case's memory: 2m asks glibc for
                            transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1
                            in each case's process; bench/huge-pages.ts), 4k takes what
                            the allocator gives (default 4k; --in-process: this process's)
  --topology near|any       near (default): count only windows whose cores were near
                            by the probes before and after (round trip within 2.5x of
                            the lowest seen; bench/c2c-probe.ts), measuring up to four
                            times the windows needed; start each case in the near
                            state, waiting up to --topology-wait (then the state
                            the cores are in becomes the near one); measure a case
                            again (twice at most) when no window of it was near.
                            any: count every window, probe and print, never wait
  --topology-wait S         seconds to wait for the near state per case (default 20)
  --copy-workers N          copy workers; default: the CPUs the main thread and the
                            device threads leave (0 on 2 CPUs)
  --inline-threshold B      copy engine option
  --device-spin-micros US   device thread option
  --device-poll-micros US   device thread option
  --json                    print {"results":[...],"over_direct":{...},...} last
  -h, --help                this help`;

const options = benchArgs(
  'bench:pipeline',
  USAGE,
  {
    options: {
      duration: { type: 'string', default: '0.6' },
      window: { type: 'string', default: '0.2' },
      warmup: { type: 'string', default: '1' },
      depth: { type: 'string', default: '32' },
      repeat: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      devices: { type: 'string', default: 'null,ram-blk' },
      sizes: { type: 'string', default: '4k,64k' },
      ops: { type: 'string', default: 'write,read' },
      modes: { type: 'string', default: BENCH_MODES.join(',') },
      'device-spin-micros': { type: 'string' },
      'pool-mib': { type: 'string', default: '64' },
      'sized-pool-mib': { type: 'string', default: '8' },
      'pool-areas': { type: 'string' },
      'in-process': { type: 'boolean', default: false },
      cold: { type: 'boolean', default: false },
      pages: { type: 'string', default: '4k' },
      topology: { type: 'string', default: 'near' },
      'topology-wait': { type: 'string', default: '20' },
      'device-poll-micros': { type: 'string' },
      'copy-workers': { type: 'string' },
      'inline-threshold': { type: 'string' },
    },
  },
  (values) => {
    const sized = values['sized-pool-mib'];
    // 0 turns the sized-pool runs off; anything else is a size in MiB.
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
      modes: choicesFlag('modes', values.modes, BENCH_MODES),
      poolMiB: positiveFlag('pool-mib', values['pool-mib']),
      poolAreas: intFlag('pool-areas', values['pool-areas'], 1),
      sizedPoolMiB,
      deviceTuning,
      copy,
      duration: positiveFlag('duration', values.duration) * 1000,
      windowMs: positiveFlag('window', values.window) * 1000,
      warmup: positiveFlag('warmup', values.warmup) * 1000,
      depth: intFlag('depth', values.depth, 1),
      repeat: intFlag('repeat', values.repeat, 1),
      inProcess: values['in-process'],
      cold: values.cold,
      pages: choiceFlag('pages', values.pages, ['4k', '2m'] as const),
      topology: choiceFlag('topology', values.topology, ['near', 'any'] as const),
      topologyWaitMs: positiveFlag('topology-wait', values['topology-wait']) * 1000,
      json: values.json,
    };
  },
);
const { devices, sizes, ops, modes, poolMiB, sizedPoolMiB, poolAreas, deviceTuning, copy } =
  options;
const { duration, warmup, depth, repeat } = options;

/** Runs one case in a fresh process (the default) or in this one. */
function measure(spec: CaseSpec): Promise<CaseResult> {
  if (options.inProcess) return runCase(spec);
  const here = fileURLToPath(import.meta.url);
  const script = here.replace(/pipeline\.bench\.(ts|js)$/, 'pipeline-case.$1');
  return new Promise<CaseResult>((resolve, reject) => {
    const child = fork(script, [], {
      env: {
        ...process.env,
        [CASE_ENV]: JSON.stringify(spec),
        GLIBC_TUNABLES: glibcTunables(options.pages === '2m'),
      },
      execArgv: [...process.execArgv, '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let settled = false;
    child.once('message', (msg: { result?: CaseResult; error?: string }) => {
      settled = true;
      if (msg.result) resolve(msg.result);
      else reject(new Error(`case ${JSON.stringify(spec)} failed: ${msg.error}`));
    });
    child.once('exit', (code) => {
      if (!settled) reject(new Error(`case process exited with ${code} before its result`));
    });
  });
}

/** Far: a round trip over this many times the lowest (c2c-probe.ts isFar's default). */
const FAR_FACTOR = 2.5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The topology of the two cores (bench/c2c-probe.ts): the lowest round trip seen
 * is the near state's until it fails to come back (waitForNear); a probe over
 * FAR_FACTOR times it is far.
 */
const topology = {
  /** The near state: its floor (reset by waitForNear), the run's lowest probe, resets. */
  near: nearState(),
  farRuns: 0,
  farWindows: 0,
  reruns: 0,
  waitedMs: 0,
};

async function probe(): Promise<number> {
  const ns = await coreToCoreNs();
  seeProbe(topology.near, ns);
  return ns;
}

/**
 * Under `--topology near`, waits until the cores are near, --topology-wait at most,
 * then takes the state they are in as the near one (c2c-probe.ts waitForNear());
 * returns the last probe.
 */
async function settle(): Promise<number> {
  if (options.topology === 'any') return probe();
  const r = await waitForNear(topology.near, coreToCoreNs, {
    waitMs: options.topologyWaitMs,
    factor: FAR_FACTOR,
  });
  topology.waitedMs += r.waitedMs;
  if (r.resetFrom !== undefined) {
    process.stderr.write(
      `bench:pipeline: the cores have not been near (${r.resetFrom} ns) for ${(r.waitedMs / 1000).toFixed(0)} s; the near state is now ${topology.near.floorNs} ns\n`,
    );
  }
  return r.ns;
}

/** Measures again, under `--topology near`, a case none of whose windows was near. */
const MAX_RERUNS = 2;

/**
 * One measurement of a case, started in the near state when it can be; the case
 * counts only its near windows under `near` (pipeline-case.ts), and is measured
 * again when it had none.
 */
async function measureSettled(spec: CaseSpec): Promise<CaseResult> {
  for (let attempt = 0; ; attempt++) {
    const waited = topology.waitedMs;
    await settle();
    const r = await measure({ ...spec, floorNs: topology.near.floorNs });
    seeProbe(topology.near, r.c2c_floor_ns);
    topology.farWindows += r.far_windows;
    const far = r.far_runs > 0;
    const again = far && options.topology === 'near' && attempt < MAX_RERUNS;
    progress(spec, r, topology.waitedMs - waited, again);
    if (again) {
      topology.reruns++;
      continue;
    }
    if (far) topology.farRuns++;
    return r;
  }
}

/** Case runs this invocation makes (measurements again not included), for {@link progress}. */
let caseRunsTotal = 0;
let caseRunsDone = 0;

/**
 * One line on stderr per case run, so that a long run (--repeat 3 of every case
 * takes 10 to 15 minutes, part of it waiting for the near state) shows where it is;
 * stdout keeps the table, or the JSON alone.
 */
function progress(spec: CaseSpec, r: CaseResult, waitedMs: number, again: boolean): void {
  if (!again) caseRunsDone++;
  const pool = spec.mode === 'direct' ? '' : ` ${spec.poolMiB} MiB`;
  const wait =
    waitedMs >= 1000 ? `, waited ${(waitedMs / 1000).toFixed(1)} s for the near state` : '';
  const far = r.far_windows > 0 ? `, ${r.far_windows} far window(s)` : '';
  const next = again ? '; no near window: measuring it again' : '';
  process.stderr.write(
    `bench:pipeline: [${caseRunsDone}/${caseRunsTotal}] ${spec.device} ${spec.op} ${spec.size} ${spec.mode}${pool}: ${r.iops} IOPS, c2c ${r.c2c_before_ns}/${r.c2c_after_ns} ns${wait}${far}${next}\n`,
  );
}

/** The median of the known values; null when any is unknown. */
function medianOrNull(values: (number | null)[]): number | null {
  return values.every((v) => v !== null) ? median(values as number[]) : null;
}

/** One result for the repeats of a case: the median of each figure, and the IOPS range. */
function medianResult(repeats: CaseResult[]): CaseResult {
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
    main_cpu_us_per_io: medianOrNull(repeats.map((r) => r.main_cpu_us_per_io)),
    main_busy: medianOrNull(repeats.map((r) => r.main_busy)),
    device_us_per_io: medianOrNull(repeats.map((r) => r.device_us_per_io)),
    device_busy: medianOrNull(repeats.map((r) => r.device_busy)),
    c2c_before_ns: median(repeats.map((r) => r.c2c_before_ns)),
    c2c_after_ns: median(repeats.map((r) => r.c2c_after_ns)),
    c2c_floor_ns: Math.min(...repeats.map((r) => r.c2c_floor_ns)),
    windows: repeats.reduce((n, r) => n + r.windows, 0),
    far_windows: repeats.reduce((n, r) => n + r.far_windows, 0),
    far_runs: repeats.reduce((n, r) => n + r.far_runs, 0),
    runs: repeats.length,
    iops_min: Math.min(...iops),
    iops_max: Math.max(...iops),
  };
}

interface Run {
  mode: BenchMode;
  pool: number;
}

// The runs of every case, in the order they alternate: each pooled mode on the
// default pool, then on the sized one, then direct.
const runs: Run[] = [];
for (const mode of modes) {
  if (mode === 'direct') continue;
  runs.push({ mode, pool: poolMiB });
  if (sizedPoolMiB > 0 && sizedPoolMiB !== poolMiB) runs.push({ mode, pool: sizedPoolMiB });
}
if (modes.includes('direct')) runs.push({ mode: 'direct', pool: poolMiB });

const results: CaseResult[] = [];
/** The runs (rounds of --repeat, in order) behind each result. */
const runsOf = new Map<CaseResult, CaseResult[]>();
/** mode ÷ direct, per case key, on the default pool and on the sized pool. */
const overDirect: Partial<Record<PooledMode, Record<string, Ratio>>> = {};
const overDirectSized: Partial<Record<PooledMode, Record<string, Ratio>>> = {};
const log = (line: string) => {
  if (!options.json) console.log(line);
};
const TUNED_NOTE =
  'bounce-tuned = bounce with warm placement (placement "warm": recently freed slots first, not the kernel\'s next-fit) and reads without the copy-in (fromDeviceBounce "used-length")';
const pagesText = `pages ${options.inProcess ? "this process's" : options.pages === '2m' ? '2m (glibc.malloc.hugetlb=1)' : '4k (as allocated)'}, THP ${thpMode()} (huge MiB per case in the JSON)`;
const SHARED_NOTE =
  "shared = buffers allocated in the pool, no bounce copies, on warm placement (as the service's shared mode)";
if (modes.includes('bounce-tuned')) log(`note: ${TUNED_NOTE}`);
if (modes.includes('shared')) log(`note: ${SHARED_NOTE}`);
log(
  `cases run ${options.inProcess ? 'in this process' : 'each in a fresh process'}, memory ${options.cold ? 'cold (not pre-touched)' : 'pre-touched'}, ${pagesText}`,
);
// The near state's round trip: the lowest of a few probes before the first case.
for (let i = 0; i < 5; i++) {
  await probe();
  await sleep(100);
}
log(
  `core-to-core round trip: ${topology.near.floorNs} ns at best before the first case; ${options.topology === 'near' ? 'each case waits for the near state (--topology near)' : 'probed, not waited for (--topology any)'}`,
);
log(
  'device   op    size   mode          pool/areas      IOPS     GB/s   p50 us   p99 us  copy us/IO   main us/IO device us/IO   c2c ns',
);
caseRunsTotal = devices.length * sizes.length * ops.length * runs.length * repeat;
for (const device of devices) {
  for (const size of sizes) {
    for (const op of ops) {
      // Repeats go round the runs (bounce, ..., direct, bounce, ...) so that a
      // slow stretch of the machine hits every mode alike.
      const measured: CaseResult[][] = runs.map(() => []);
      for (let k = 0; k < repeat; k++) {
        for (const [i, run] of runs.entries()) {
          measured[i]!.push(
            await measureSettled({
              device,
              op,
              size,
              mode: run.mode,
              poolMiB: run.pool,
              poolAreas,
              depth,
              durationMs: duration,
              windowMs: options.windowMs,
              nearOnly: options.topology === 'near',
              warmupMs: warmup,
              copy,
              deviceTuning,
              cold: options.cold,
            }),
          );
        }
      }
      const done: { run: Run; r: CaseResult }[] = [];
      for (const [i, run] of runs.entries()) {
        const r = medianResult(measured[i]!);
        done.push({ run, r });
        results.push(r);
        runsOf.set(r, measured[i]!);
        const pool = run.mode === 'direct' ? '-' : `${run.pool}MiB/${r.pool_areas}`;
        const farText =
          r.far_windows === 0
            ? ''
            : `, ${r.far_windows} far${options.topology === 'near' && r.far_runs === 0 ? ' not counted' : ''}`;
        const range =
          r.runs > 1
            ? `  (${r.iops_min}-${r.iops_max}, ${r.runs} runs, ${r.windows} windows${farText})`
            : `  (${r.windows} windows${farText})`;
        const copyUs =
          r.copy_us_per_io === 0
            ? '-'
            : `${r.copy_us_per_io.toFixed(2)}${r.inline_copy_share >= ALL_INLINE ? '' : '*'}`;
        const c2c = `${r.c2c_before_ns}/${r.c2c_after_ns}${r.far_runs > 0 ? ` far ${r.far_runs}` : ''}`;
        const mainUs =
          r.main_cpu_us_per_io === null || r.main_busy === null
            ? '-'
            : `${r.main_cpu_us_per_io.toFixed(2)} ${Math.round(r.main_busy * 100)}%`;
        const deviceUs =
          r.device_us_per_io === null || r.device_busy === null
            ? '-'
            : `${r.device_us_per_io.toFixed(2)} ${Math.round(r.device_busy * 100)}%`;
        log(
          `${device.padEnd(8)} ${op.padEnd(5)} ${String(size).padStart(5)}  ${run.mode.padEnd(12)} ${pool.padStart(10)} ${String(r.iops).padStart(9)} ${r.gbps.toFixed(2).padStart(8)} ${r.p50_us.toFixed(1).padStart(8)} ${r.p99_us.toFixed(1).padStart(8)} ${copyUs.padStart(11)} ${mainUs.padStart(12)} ${deviceUs.padStart(13)} ${c2c.padStart(8)}${range}`,
        );
      }
      const directIndex = runs.findIndex((run) => run.mode === 'direct');
      if (directIndex < 0) continue;
      const direct = done[directIndex]!.r;
      const key = caseKey({ device, op, size });
      for (const [i, { run, r }] of done.entries()) {
        if (run.mode === 'direct') continue;
        const table = run.pool === poolMiB ? overDirect : overDirectSized;
        table[run.mode] ??= {};
        table[run.mode]![key] = ratio(r, direct, measured[i]!, measured[directIndex]!);
      }
      const parts = (modes.filter((m) => m !== 'direct') as PooledMode[]).flatMap((m) => {
        const r = overDirect[m]?.[key];
        const s = overDirectSized[m]?.[key];
        if (!r && !s) return [];
        const fig = [
          r ? `${r.iops}${roundsText(r)}${boundText(r)}` : undefined,
          s ? `${s.iops}${roundsText(s)} on ${sizedPoolMiB} MiB${boundText(s)}` : undefined,
        ].filter((x) => x !== undefined);
        return [`${m} ${fig.join(', ')}`];
      });
      if (parts.length > 0) log(`${' '.repeat(22)}÷ direct: ${parts.join('; ')}`);
    }
  }
}

const targets = pipelineTargets({
  results,
  runsOf,
  overDirect,
  overDirectSized,
  poolMiB,
  sizedPoolMiB,
});
log('');
log(`targets (on the ${poolMiB} MiB pool; medians when --repeat):`);
for (const t of targets) {
  if (t.measured === null) continue;
  const span = roundsSpan(t.rounds);
  const spread = span
    ? `; rounds ${span[0]}-${span[1]}${span[0] < t.target && t.target <= span[1] ? ', the target inside that spread' : ''}`
    : '';
  log(`  ${t.name} >= ${t.target}: ${t.measured} (${t.met ? 'met' : 'not met'}${spread})`);
  for (const b of t.bounds) log(`    bound: ${b}`);
}
log(
  '  ("copies allow N": the main thread copied every byte; its copy time per request alone caps mode / direct at N.',
);
log(
  '   "device allows N": the device thread\'s work per request (the window less its idle time) alone caps mode / direct at N.',
);
log("   '*' after a copy time: some copies ran on workers, so no such cap.)");
log(
  `core-to-core round trip (c2c ns: median before/after the windows counted): lowest ${topology.near.lowestNs} ns${topology.near.resets > 0 ? `; the near state reset ${topology.near.resets} time(s), last to ${topology.near.floorNs} ns` : ''}; ${topology.farWindows} window(s) measured with the cores far (over ${FAR_FACTOR}x the near state)${options.topology === 'near' ? ', not counted where a near one was' : ''}; ${topology.farRuns} run(s) counted far windows, ${topology.reruns} measured again, ${(topology.waitedMs / 1000).toFixed(1)} s waited for the near state`,
);
await closeProbe();
if (options.json) {
  console.log(
    JSON.stringify({
      results,
      over_direct: overDirect,
      over_direct_sized_pool: overDirectSized,
      // The names earlier runs of this benchmark printed.
      bounce_over_direct: overDirect.bounce ?? {},
      bounce_over_direct_sized_pool: overDirectSized.bounce ?? {},
      targets,
      topology: {
        mode: options.topology,
        floor_ns: topology.near.lowestNs,
        near_ns: topology.near.floorNs,
        floor_resets: topology.near.resets,
        far_factor: FAR_FACTOR,
        far_windows: topology.farWindows,
        far_runs: topology.farRuns,
        reruns: topology.reruns,
        waited_s: +(topology.waitedMs / 1000).toFixed(1),
      },
      notes: [
        TUNED_NOTE,
        SHARED_NOTE,
        `cases ${options.inProcess ? 'in one process' : 'each in a fresh process'}; memory ${options.cold ? 'cold' : 'pre-touched'}; ${pagesText}`,
      ],
    }),
  );
}
