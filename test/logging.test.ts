/**
 * What the mediator logs, record by record, through a pino logger writing to a
 * captured stream: device faults (once per burst), request timeouts, device
 * resets, backing store errors (once per burst), "swiotlb buffer is full" (once
 * per burst, the kernel's words and figures), back-pressure timeouts, copy-worker
 * crashes, device threads.
 */
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { benchCommand } from '../src/cli/bench.js';
import { isMediatorError } from '../src/errors.js';
import { Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { RateLimit } from '../src/util/logger.js';
import { CopyEngine } from '../src/workers/copy-engine.js';
import { NO_FAULTS } from './helpers/chaos.js';
import { logCapture } from './helpers/http.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Longer than any test: every repeated warning of a test is one burst. */
const ONE_BURST_MS = 60_000;

type Rec = Record<string, unknown>;

function setup(spec: Omit<MediatorSpec, 'log'>): {
  med: Mediator;
  records: () => Rec[];
  warnings: () => Rec[];
} {
  const logs = logCapture();
  const med = new Mediator({ ...spec, log: pino({ level: 'debug' }, logs.stream) });
  opened.push(med);
  const records = () => logs.lines();
  return { med, records, warnings: () => records().filter((r) => (r.level as number) >= 40) };
}

const opened: Mediator[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((m) => m.close()));
});

/** A mediator with one device `d` of the given kind on pool `p` (fail fast unless told). */
function oneDevice(device: Rec, pool: Rec = {}, logIntervalMs = ONE_BURST_MS) {
  return setup({
    copy: { workers: 0 },
    logIntervalMs,
    pools: [{ name: 'p', slots: 128, areas: 1, backpressure: { policy: 'fail' }, ...pool }],
    guests: [{ name: 'g', size: 8 * MiB }],
    devices: [
      {
        id: 'd',
        kind: 'ram-blk',
        guest: 'g',
        pool: 'p',
        capacity: MiB,
        maxRequestBytes: 256 * KiB,
        depth: 4,
        ...device,
      } as MediatorSpec['devices'][number],
    ],
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return isMediatorError(err) ? err.code : String(err);
  }
}

describe('RateLimit', () => {
  it('lets the first event of a burst through and counts the rest for the next record', () => {
    let now = 0;
    const limit = new RateLimit(5000, () => now);
    const at = (t: number) => {
      now = t;
      return limit.take();
    };
    expect([at(0), at(1), at(2), at(4999)]).toEqual([0, -1, -1, -1]);
    expect([at(5000), at(5001), at(9999)]).toEqual([3, -1, -1]);
    expect([at(20_000), at(20_000)]).toEqual([2, -1]);
    // 0 logs every event.
    const every = new RateLimit(0, () => now);
    expect([every.take(), every.take()]).toEqual([0, 0]);
  });
});

describe('mediator log records', () => {
  it('device threads: one debug record per queue when it serves, one when it stops', async () => {
    const { med, records } = oneDevice({ queues: 2 });
    await med.device('d')!.ready();
    const serving = records()
      .filter((r) => /serving$/.test(String(r.msg)))
      .sort((a, b) => (a.queue as number) - (b.queue as number));
    // The threads come up in any order.
    expect(serving).toEqual([
      expect.objectContaining({ level: 20, device: 'd', queue: 0, threadId: expect.any(Number) }),
      expect.objectContaining({ level: 20, device: 'd', queue: 1, threadId: expect.any(Number) }),
    ]);
    await med.close();
    const stopped = records().filter((r) => /stopped$/.test(String(r.msg)));
    expect(stopped.map((r) => r.queue).sort()).toEqual([0, 1]);
    for (const r of stopped) expect(r).toMatchObject({ level: 20, device: 'd', exitCode: 0 });
    expect(records().filter((r) => (r.level as number) > 20)).toEqual([]);
  });

  it('device faults: one warning per burst, with the kind of the first', async () => {
    const { med, warnings } = oneDevice({ kind: 'chaos', chaos: { ...NO_FAULTS, badLen: 1 } });
    const dev = med.device('d')!;
    await dev.ready();
    for (let i = 0; i < 3; i++)
      expect(await codeOf(dev.read(0, 4096))).toBe('MEDIATOR_DEVICE_FAULT');
    expect(dev.stats().faults.used_len).toBe(3);
    expect(warnings()).toEqual([
      {
        level: 40,
        time: expect.any(Number),
        pid: process.pid,
        hostname: expect.any(String),
        device: 'd',
        queue: 0,
        code: 'MEDIATOR_DEVICE_FAULT',
        kind: 'used_len',
        suppressed: 0,
        msg: expect.stringMatching(
          /^device d: used len \d+ exceeds the 4097 device-writable bytes of chain \d+$/,
        ),
      },
    ]);
  });

  it('a request timeout: one warning for the timeout, one for the reset it causes', async () => {
    const { med, warnings } = oneDevice({
      kind: 'chaos',
      chaos: { ...NO_FAULTS, drop: 1 },
      timeoutMs: 200,
    });
    const dev = med.device('d')!;
    await dev.ready();
    expect(await codeOf(dev.write(0, 4096))).toBe('MEDIATOR_DEVICE_TIMEOUT');
    await vi.waitFor(() => expect(warnings()).toHaveLength(2), { timeout: 5000 });
    const [timeout, reset] = warnings();
    expect(timeout).toMatchObject({
      device: 'd',
      queue: 0,
      code: 'MEDIATOR_DEVICE_TIMEOUT',
      requests: 1,
      timeoutMs: 200,
      msg: 'device d: 1 request(s) on queue 0 got no completion within 200 ms; resetting the device',
    });
    expect(reset).toMatchObject({
      level: 40,
      device: 'd',
      code: 'MEDIATOR_DEVICE_RESET',
      reason: 'timeout',
      failed: 0,
      timedOut: 1,
      resets: 1,
    });
    expect(String(reset!.msg)).toMatch(/^device d reset \(a request timed out\)/);
  });

  it('a reset with requests in flight: one warning naming how many failed', async () => {
    const { med, warnings } = oneDevice({
      kind: 'chaos',
      chaos: { ...NO_FAULTS, drop: 1 },
      timeoutMs: ONE_BURST_MS,
    });
    const dev = med.device('d')!;
    await dev.ready();
    const writes = [dev.write(0, 4096), dev.write(8, 4096)].map(codeOf);
    await vi.waitFor(() => expect(dev.stats().queues[0]!.inFlight).toBe(2), { timeout: 5000 });
    await dev.reset();
    expect(await Promise.all(writes)).toEqual(['MEDIATOR_DEVICE_RESET', 'MEDIATOR_DEVICE_RESET']);
    expect(warnings()).toEqual([
      expect.objectContaining({
        level: 40,
        device: 'd',
        code: 'MEDIATOR_DEVICE_RESET',
        reason: 'requested',
        failed: 2,
        timedOut: 0,
        resets: 1,
        msg: 'device d reset (requested): 2 request(s) in flight failed with MEDIATOR_DEVICE_RESET, 0 timed-out request(s) freed',
      }),
    ]);
  });

  /**
   * A file-blk device whose disk starts failing: the test closes the descriptor
   * the device opened and opens /dev/full in its place (the lowest free number, so
   * the same one, checked), so that the device thread's pwrite() fails with
   * ENOSPC and its fdatasync() with EINVAL, as a real disk's errors would.
   */
  async function failingDisk(logIntervalMs: number) {
    const dir = mkdtempSync(join(tmpdir(), 'io-error-'));
    dirs.push(dir);
    const t = oneDevice({ kind: 'file-blk', file: join(dir, 'd.img') }, {}, logIntervalMs);
    const dev = t.med.device('d')!;
    await dev.ready();
    const held = dev as unknown as { fd: number };
    closeSync(held.fd);
    const full = openSync('/dev/full', 'r+');
    if (full !== held.fd) closeSync(full);
    expect(full, 'the descriptor number came back for /dev/full').toBe(held.fd);
    return { ...t, dev };
  }
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const storeErrors = (records: Rec[]) => records.filter((r) => r.code === 'MEDIATOR_IO_ERROR');

  it.skipIf(!existsSync('/dev/full'))(
    "a backing store error: the request's IOERR, and a warning with the device and the store's message",
    async () => {
      const { med, dev, warnings } = await failingDisk(0);
      expect(await codeOf(dev.write(0, 4096))).toBe('MEDIATOR_IO_ERROR');
      expect(await codeOf(dev.flush())).toBe('MEDIATOR_IO_ERROR');
      // The thread's posts are delivered before its exit is (a clean stop at close).
      await med.close();
      expect(storeErrors(warnings())).toEqual([
        {
          level: 40,
          time: expect.any(Number),
          pid: process.pid,
          hostname: expect.any(String),
          device: 'd',
          queue: 0,
          code: 'MEDIATOR_IO_ERROR',
          suppressed: 0,
          msg: 'device d: backing store error on queue 0: ENOSPC: no space left on device, write',
        },
        expect.objectContaining({
          device: 'd',
          suppressed: 0,
          msg: 'device d: backing store error on queue 0: EINVAL: invalid argument, fdatasync',
        }),
      ]);
      // Nothing else went wrong: no fault, no reset, the thread lived on.
      expect(warnings().filter((r) => r.code !== 'MEDIATOR_IO_ERROR')).toEqual([]);
    },
  );

  it.skipIf(!existsSync('/dev/full'))(
    'backing store errors: one warning per burst (a failing disk fails every request)',
    async () => {
      const { med, dev, warnings } = await failingDisk(ONE_BURST_MS);
      const codes = await Promise.all([0, 8, 16].map((s) => codeOf(dev.write(s, 4096))));
      expect(codes).toEqual(['MEDIATOR_IO_ERROR', 'MEDIATOR_IO_ERROR', 'MEDIATOR_IO_ERROR']);
      expect(dev.stats().requests.write.ioerr).toBe(3);
      await med.close();
      expect(storeErrors(warnings())).toEqual([
        expect.objectContaining({ device: 'd', queue: 0, suppressed: 0 }),
      ]);
    },
  );

  it('"swiotlb buffer is full": the kernel\'s words and figures, once per burst', async () => {
    const { med, warnings } = oneDevice({}, {}, 200);
    const dev = med.device('d')!;
    await dev.ready();
    const burst = async () => {
      const codes = await Promise.all(
        Array.from({ length: 4 }, (_, i) => codeOf(dev.write(i * 512, 200 * KiB))),
      );
      // 128 slots: one 200 KiB request fits, the three others fail at once.
      expect(codes.sort()).toEqual([
        'SWIOTLB_POOL_FULL',
        'SWIOTLB_POOL_FULL',
        'SWIOTLB_POOL_FULL',
        'ok',
      ]);
    };
    await burst();
    expect(warnings()).toHaveLength(1);
    const first = warnings()[0]!;
    expect(first).toMatchObject({
      level: 40,
      pool: 'p',
      device: 'd',
      code: 'SWIOTLB_POOL_FULL',
      total: 128,
      policy: 'fail',
      suppressed: 0,
    });
    expect(first.msg).toBe(
      `swiotlb buffer is full (sz: ${first.size} bytes), total 128 (slots), used ${first.used} (slots)`,
    );
    // The figures are the pool's at the failure: the first request's slots were held.
    expect(first.used as number).toBeGreaterThan(100);
    expect((first.size as number) + (first.used as number) * 2048).toBeGreaterThan(128 * 2048);

    // The next burst, after the interval, logs once more and counts the two left out.
    await new Promise((r) => setTimeout(r, 250));
    await burst();
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ code: 'SWIOTLB_POOL_FULL', suppressed: 2 });
    expect(med.pools.get('p')!.pool.stats().map_failures.full).toBe(6);
  });

  it('back-pressure (policy requeue-bounded, old name wait): "buffer is full" when a request is requeued, then its timeout', async () => {
    const { med, warnings } = oneDevice(
      { kind: 'chaos', chaos: { ...NO_FAULTS, drop: 1 }, timeoutMs: ONE_BURST_MS },
      { backpressure: { policy: 'wait', waitMs: 50 } },
    );
    const dev = med.device('d')!;
    await dev.ready();
    // Never completed: holds its slots until the reset below.
    const held = codeOf(dev.write(0, 200 * KiB));
    await vi.waitFor(() => expect(dev.stats().queues[0]!.inFlight).toBe(1), { timeout: 5000 });
    expect(await codeOf(dev.write(512, 200 * KiB))).toBe('MEDIATOR_BACKPRESSURE_TIMEOUT');
    await dev.reset();
    expect(await held).toBe('MEDIATOR_DEVICE_RESET');
    const [full, gaveUp, reset] = warnings();
    expect(full).toMatchObject({
      pool: 'p',
      device: 'd',
      code: 'SWIOTLB_POOL_FULL',
      policy: 'requeue-bounded',
    });
    expect(String(full!.msg)).toMatch(
      /^swiotlb buffer is full \(sz: \d+ bytes\), total 128 \(slots\), used \d+ \(slots\); the request is requeued \(BLK_STS_RESOURCE\) until slots come back$/,
    );
    expect(gaveUp).toMatchObject({
      pool: 'p',
      code: 'MEDIATOR_BACKPRESSURE_TIMEOUT',
      waitMs: 50,
      total: 128,
      suppressed: 0,
    });
    expect(String(gaveUp!.msg)).toMatch(
      /^pool p: a request gave up after waiting 50 ms for pool slots/,
    );
    expect(reset).toMatchObject({ code: 'MEDIATOR_DEVICE_RESET', failed: 1 });
    expect(warnings()).toHaveLength(3);
  });
});

describe('copy engine log records', () => {
  it('a copy worker crash: one error record, the worker replaced', async () => {
    const logs = logCapture();
    const engine = new CopyEngine({ workers: 1, log: pino({ level: 'debug' }, logs.stream) });
    try {
      await engine.crashWorker(0);
      expect(engine.workerCrashes).toBe(1);
      const records = logs.lines();
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({
        level: 50,
        worker: 0,
        code: 'COPY_WORKER_CRASHED',
        failedCopies: 0,
        replaced: true,
        err: { message: expect.any(String), stack: expect.any(String) },
      });
      expect(String(records[0]!.msg)).toMatch(
        /^copy worker 0 died: .+; 0 copies in flight failed with COPY_WORKER_CRASHED; a new worker takes over$/,
      );
    } finally {
      await engine.close();
    }
  });
});

describe('bench', () => {
  it('logs warnings as pino lines on stderr; stdout keeps the report alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-log-'));
    const text = { stdout: '', stderr: '' };
    const sink = (key: keyof typeof text) =>
      new Writable({
        write(chunk, _enc, done) {
          text[key] += String(chunk);
          done();
        },
      });
    try {
      const job = join(dir, 'full.fio');
      // Two 128 KiB writes in flight cannot both fit in 128 slots: maps fail.
      writeFileSync(
        job,
        '[global]\nmode=bounce\ncopy_workers=0\nsize=1m\npool_size=256k\nbackpressure=fail\n' +
          '[j]\nrw=write\nbs=128k\nioengine=libaio\ndirect=1\niodepth=4\nnumber_ios=16\n',
      );
      const code = await benchCommand(['--job', job, '--json', '--quiet'], {
        stdout: sink('stdout'),
        stderr: sink('stderr'),
      });
      expect(code).toBe(0);
      const report = JSON.parse(text.stdout);
      expect(report.mediator.bounce.pool.map_failures.full).toBeGreaterThan(1);
      const lines = text.stderr
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Rec);
      // Every failure of the run falls in one burst: one line.
      expect(lines).toEqual([
        expect.objectContaining({
          level: 40,
          pool: 'pool0',
          code: 'SWIOTLB_POOL_FULL',
          total: 128,
          policy: 'fail',
          msg: expect.stringMatching(
            /^swiotlb buffer is full \(sz: \d+ bytes\), total 128 \(slots\)/,
          ),
        }),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
