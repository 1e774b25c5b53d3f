/**
 * bench:stability `--experiment pairs`: would measuring each mode beside direct
 * in adjacent short windows cancel the swings between runs? Two processes stay up
 * for the whole experiment, one per mode (ram-blk 64 KiB writes on the 64 MiB
 * pool, as bench:pipeline builds them, memory pre-touched, warmed up once), and
 * take turns: each round measures one window of each, in alternating order, with
 * the core-to-core round trip probed before each window. If the machine drifted
 * alike for both modes, the ratio of a round's two windows would hold still where
 * the windows' IOPS do not.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { closeProbe, coreToCoreNs, isFar } from './c2c-probe.js';
import { type BenchMode, CaseIo, caseMediator, pretouchCase, RAMP_MS } from './pipeline-case.js';
import { type Figure, figure } from './stability-figure.js';

const CHILD_ENV = 'SWIOTLB_STABILITY_PAIRS';
const SIZE = 65536;
const WARMUP_MS = 1000;

interface WindowRequest {
  warmMs: number;
  windowMs: number;
}

/** A child: one mode's Mediator, one window per request from the parent. */
async function serve(mode: BenchMode): Promise<void> {
  const m = caseMediator({
    mode,
    device: 'ram-blk',
    size: SIZE,
    depth: 32,
    poolMiB: 64,
    copy: {},
    deviceTuning: {},
  });
  const dev = m.device('dev')!;
  await dev.ready();
  pretouchCase(m);
  // Latencies are not looked at here: a small array, counts only.
  const io = new CaseIo(dev, { op: 'write', size: SIZE, depth: 32 }, new Float64Array(1));
  const window = async ({ warmMs, windowMs }: WindowRequest): Promise<number> => {
    io.start();
    await new Promise((r) => setTimeout(r, warmMs));
    const done0 = io.done;
    io.recording = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const iops = (io.done - done0) / ((performance.now() - t0) / 1000);
    io.recording = false;
    await io.stop();
    return iops;
  };
  process.on('message', (msg: WindowRequest | 'quit') => {
    if (msg === 'quit') {
      void m.close().then(() => process.exit(0));
      return;
    }
    void window(msg).then((iops) => process.send!({ iops }));
  });
  process.send!({ ready: true });
}

interface Child {
  mode: BenchMode;
  next(): Promise<{ iops?: number }>;
  send(msg: WindowRequest | 'quit'): void;
}

function start(mode: BenchMode): Child {
  const child = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [CHILD_ENV]: mode },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // One answer is awaited at a time: the parent sends the next request after it.
  let waiting: { resolve: (m: { iops?: number }) => void; reject: (e: Error) => void } | undefined;
  child.on('message', (m) => {
    waiting?.resolve(m as { iops?: number });
    waiting = undefined;
  });
  child.once('exit', (code) => {
    waiting?.reject(new Error(`pairs: the ${mode} process exited with ${code}`));
    waiting = undefined;
  });
  return {
    mode,
    next: () => new Promise((resolve, reject) => (waiting = { resolve, reject })),
    send: (msg) => child.send(msg),
  };
}

/** Runs the experiment: `rounds` rounds of one window per mode. */
export async function pairsExperiment(
  rounds: number,
  windowMs: number,
  log: (line: string) => void,
  show: (unit: string, f: Figure) => void,
): Promise<Figure[]> {
  const children = [start('direct'), start('bounce-tuned')];
  const measure = async (c: Child, warmMs: number) => {
    const reply = c.next();
    c.send({ warmMs, windowMs });
    return (await reply).iops!;
  };
  const rows: { direct: number; tuned: number; rtt: number }[] = [];
  try {
    await Promise.all(children.map((c) => c.next()));
    for (const c of children) await measure(c, WARMUP_MS);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? children : [...children].reverse();
      const got: Record<string, number> = {};
      let rtt = 0;
      for (const c of order) {
        rtt = Math.max(rtt, await coreToCoreNs());
        got[c.mode] = await measure(c, RAMP_MS);
      }
      rows.push({ direct: got.direct!, tuned: got['bounce-tuned']!, rtt });
    }
  } finally {
    for (const c of children) c.send('quit');
    await closeProbe();
  }
  const floor = Math.min(...rows.map((x) => x.rtt));
  const paired = rows.map((x) => x.tuned / x.direct);
  // The same windows paired a round apart: what pairing would have to beat.
  const shifted = rows.slice(1).map((x, i) => x.tuned / rows[i]!.direct);
  const out = [
    figure(
      'direct IOPS',
      rows.map((x) => x.direct),
    ),
    figure(
      'bounce-tuned IOPS',
      rows.map((x) => x.tuned),
    ),
    figure('bounce-tuned / direct, same round', paired),
    figure('bounce-tuned / direct, a round apart', shifted),
  ];
  for (const state of ['near', 'far'] as const) {
    const ratios = rows
      .filter((x) => isFar(x.rtt, floor) === (state === 'far'))
      .map((x) => x.tuned / x.direct);
    if (ratios.length > 0)
      out.push(figure(`same round, cores ${state} (${ratios.length})`, ratios));
  }
  log(
    `pairs: ram-blk 64 KiB writes, 64 MiB pool, ${rounds} rounds of ${windowMs} ms windows, two live processes taking turns (lowest round trip ${floor} ns):`,
  );
  for (const f of out) show('', f);
  return out;
}

const childMode = process.env[CHILD_ENV];
if (childMode !== undefined && process.send) void serve(childMode as BenchMode);
