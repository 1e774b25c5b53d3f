/**
 * Soak: the mediator's failure paths under load, round after round, until one
 * hangs or leaks. Each round builds a Mediator with a hostile `chaos` device (the
 * default fault rates: dropped, doubled and forged completions, scribbled pool
 * bytes), a small pool with back-pressure and a short request timeout, so that
 * requests time out and the device is reset again and again while 16 loops keep
 * it busy; the round then either stops the load and resets (every slot must come
 * back) or closes the mediator in the middle of the load (close must finish and
 * every loop must end), by turns. Every other pair of rounds runs a copy worker
 * (copies from 4 KiB go to it, and it is crashed in the middle of the load), and
 * the device has 1 or 2 queues by turns. `--mode shared` runs the same rounds with
 * the driver allocating each request's buffers in the pool (no copy worker then);
 * `--timeout-ms` shortens the request timeout, and `--hogs N` runs N busy threads
 * beside the load, so that the device thread is late often and its completions
 * race the timeout sweep and the reset.
 *
 * A round that does not finish within --deadline seconds, or that leaves pool
 * slots allocated, prints the device's state and exits 1 (with --keep-going a
 * leak is counted and the rounds go on; the exit code is 1 at the end). Each round is seeded
 * (--seed + round), so a failing round can be run alone with --from. This found
 * two hangs (a copy-worker stop that lost its wake-up; a reset that let a request
 * lose its table entry); it proves nothing about rounds it did not run.
 *
 * Options: `npm run soak -- --help`.
 */

import { Worker } from 'node:worker_threads';
import { MODES } from '../src/mediator/defaults.js';
import { Mediator } from '../src/mediator/mediator.js';
import { DEFAULT_CHAOS } from '../src/virtio/device-spec.js';
import { benchArgs, choiceFlag, intFlag, positiveFlag } from './cli.js';

const USAGE = `Usage: npm run soak -- [options]
Chaos-device load with timeouts, resets, copy-worker crashes and closes, round
after round; exits 1 on a hang or a leaked pool slot.

  --rounds N       rounds to run (default 20)
  --from N         first round (default 0): a failing round, run alone
  --seconds S      load per round (default 1.5)
  --deadline S     longest a round may take to end its load or close (default 10)
  --seed N         chaos seed of round 0; round r uses seed + r (default 1)
  --mode M         bounce (default) or shared (buffers allocated in the pool)
  --timeout-ms N   request timeout of every round (default 100, 200, 300 by turns)
  --hogs N         busy threads beside the load (default 0)
  --keep-going     count leaked slots and go on to the next round (exit 1 at the end)
  --json           print {"rounds":[...]} as the last line
  -h, --help       this help`;

const opts = benchArgs(
  'soak',
  USAGE,
  {
    options: {
      rounds: { type: 'string', default: '20' },
      from: { type: 'string', default: '0' },
      seconds: { type: 'string', default: '1.5' },
      deadline: { type: 'string', default: '10' },
      seed: { type: 'string', default: '1' },
      mode: { type: 'string', default: 'bounce' },
      'timeout-ms': { type: 'string' },
      hogs: { type: 'string', default: '0' },
      'keep-going': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  },
  (values) => ({
    rounds: intFlag('rounds', values.rounds, 1),
    from: intFlag('from', values.from, 0),
    loadMs: positiveFlag('seconds', values.seconds) * 1000,
    deadlineMs: positiveFlag('deadline', values.deadline) * 1000,
    seed: intFlag('seed', values.seed, 0),
    mode: choiceFlag(
      'mode',
      values.mode,
      MODES.filter((m) => m !== 'direct'),
    ),
    timeoutMs: intFlag('timeout-ms', values['timeout-ms'], 1),
    hogs: intFlag('hogs', values.hogs, 0),
    keepGoing: values['keep-going'],
    json: values.json,
  }),
);

interface RoundResult {
  round: number;
  seed: number;
  /** How the round ended its load: a close in the middle of it, or a stop and a reset. */
  end: 'closed under load' | 'stopped, reset';
  resets: number;
  /** Copy workers that died (crashed on purpose) and were replaced. */
  workerCrashes: number;
  /** Requests by outcome: 'ok' or the error code they failed with. */
  outcomes: Record<string, number>;
  /** Pool slots still allocated after the stop and the reset (--keep-going; else 0). */
  leaked: number;
}

const MiB = 2 ** 20;
const LOOPS = 16;
const SIZES = [512, 4096, 65536];

/** `p`'s value, or 'timeout' when it has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function fail(round: number, what: string, m: Mediator): never {
  const dev = m.device('chaos')!;
  const s = dev.stats();
  console.error(
    `soak: round ${round} (seed ${opts.seed + round}): ${what}; device: ${s.inFlight} requests in flight, ` +
      `${s.resets} resets, queues ${JSON.stringify(s.queues)}; pool: ${m.pools.get('pool')!.pool.used()} slots used; ` +
      `copy engine: ${m.engine.pendingCopies} copies pending`,
  );
  process.exit(1);
}

async function round(r: number): Promise<RoundResult> {
  const m = new Mediator({
    mode: opts.mode,
    // Shared mode copies nothing: no worker to crash.
    copy: { workers: opts.mode === 'shared' ? 0 : (r >> 1) % 2, inlineThreshold: 4096 },
    pools: [{ name: 'pool', size: MiB, backpressure: { policy: 'wait', waitMs: 500 } }],
    guests: [{ name: 'guest', size: 64 * MiB }],
    devices: [
      {
        id: 'chaos',
        kind: 'chaos',
        guest: 'guest',
        pool: 'pool',
        capacity: 4 * MiB,
        depth: 16,
        queues: 1 + (r % 2),
        maxRequestBytes: 64 * 1024,
        timeoutMs: opts.timeoutMs ?? 100 + (r % 3) * 100,
        chaos: { ...DEFAULT_CHAOS, seed: opts.seed + r },
      },
    ],
  });
  const dev = m.device('chaos')!;
  await dev.ready();
  const pool = m.pools.get('pool')!.pool;
  const baseline = pool.used();
  const outcomes = new Map<string, number>();
  let stop = false;
  const loops = Array.from({ length: LOOPS }, async (_, k) => {
    for (let i = 0; !stop; i++) {
      const size = SIZES[(k + i) % SIZES.length]!;
      const lba = ((k * 97 + i * 13) % 1000) * 8;
      const io = (k + i) % 2 ? dev.write(lba, size) : dev.read(lba, size, false);
      const code = await io.then(
        () => 'ok',
        (err: { code?: string }) => err.code ?? 'other',
      );
      outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
      if (code === 'MEDIATOR_CLOSED') return;
    }
  });
  // Odd rounds close in the middle of the load; even ones stop it, then reset.
  const closeUnderLoad = r % 2 === 1;
  let leaked = 0;
  await new Promise((resolve) => setTimeout(resolve, opts.loadMs / 2));
  // With a copy worker, it dies halfway: its copies fail and a new one takes over.
  if (m.engine.workers > 0) await m.engine.crashWorker(0);
  await new Promise((resolve) => setTimeout(resolve, opts.loadMs / 2));
  if (closeUnderLoad) {
    if ((await within(m.close(), opts.deadlineMs)) === 'timeout') {
      fail(r, 'close() under load did not finish', m);
    }
    stop = true;
    if ((await within(Promise.all(loops), opts.deadlineMs)) === 'timeout') {
      fail(r, 'requests did not end after close()', m);
    }
  } else {
    stop = true;
    if ((await within(Promise.all(loops), opts.deadlineMs)) === 'timeout') {
      fail(r, 'requests did not end', m);
    }
    // Timed-out requests keep their slots until a reset has stopped the device thread.
    await dev.reset();
    leaked = pool.used() - baseline;
    if (leaked !== 0) {
      const what = `${leaked} pool slots leaked`;
      if (!opts.keepGoing) fail(r, what, m);
      console.error(`soak: round ${r} (seed ${opts.seed + r}): ${what}`);
    }
    if ((await within(m.close(), opts.deadlineMs)) === 'timeout') {
      fail(r, 'close() did not finish', m);
    }
  }
  return {
    round: r,
    seed: opts.seed + r,
    end: closeUnderLoad ? 'closed under load' : 'stopped, reset',
    resets: dev.stats().resets,
    workerCrashes: m.engine.workerCrashes,
    outcomes: Object.fromEntries(outcomes),
    leaked,
  };
}

/** Threads that only burn CPU: the load of a machine shared with other work. */
function startHogs(n: number): Worker[] {
  return Array.from({ length: n }, () => {
    const w = new Worker('for (;;) {}', { eval: true });
    w.unref();
    return w;
  });
}

const hogs = startHogs(opts.hogs);

const t0 = performance.now();
const results: RoundResult[] = [];
for (let r = opts.from; r < opts.from + opts.rounds; r++) {
  const res = await round(r);
  results.push(res);
  const counts = Object.entries(res.outcomes)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  console.log(
    `round ${r} (seed ${res.seed}): ${res.end}; ${res.resets} resets, ${res.workerCrashes} worker crashes; ${counts}`,
  );
}
await Promise.all(hogs.map((w) => w.terminate()));
const leaky = results.filter((res) => res.leaked !== 0);
const took = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
console.log(
  leaky.length === 0
    ? `soak: ${opts.rounds} rounds, no hang, no leaked slot (${took})`
    : `soak: ${opts.rounds} rounds, no hang, ${leaky.length} round(s) leaked pool slots (seeds ${leaky.map((res) => res.seed).join(', ')}) (${took})`,
);
if (opts.json) console.log(JSON.stringify({ rounds: results }));
process.exit(leaky.length === 0 ? 0 : 1);
