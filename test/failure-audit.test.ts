/**
 * Failure paths of the running service and library, each found by an audit:
 * a copy worker that dies during a split copy, a backing file the OS refuses to
 * write, a start-up that fails half-way, a flush or close that fails at
 * shutdown, and two devices given one backing file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { isMediatorError, MediatorError } from '../src/errors.js';
import { Mediator } from '../src/mediator/mediator.js';
import { startServer } from '../src/server/index.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { CopyEngine } from '../src/workers/copy-engine.js';
import { RING_HEAD, RING_SLEEPING, RING_THREAD } from '../src/workers/copy-ring.js';
import { expectErrorBody, logCapture, OCTET, randomBytes } from './helpers/http.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;

/** Polls `cond` every 5 ms; throws after `ms`. */
async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('copy engine: a worker that dies during a split copy', () => {
  it('fails the copy with COPY_WORKER_CRASHED only once no live worker still copies a part of it', async () => {
    // Two workers, no inline part: a 128 KiB copy is split in two 64 KiB parts,
    // one on each worker.
    const engine = new CopyEngine({
      workers: 2,
      inlineThreshold: 4 * KiB,
      splitThreshold: 8 * KiB,
      splitInline: false,
      pollMicros: 0,
    });
    let headers: Int32Array[] = [];
    try {
      const guest = new SharedArrayBuffer(256 * KiB);
      const pool = new SharedArrayBuffer(256 * KiB);
      new Uint8Array(guest).fill(7);
      const g = engine.registerRegion(guest);
      const p = engine.registerRegion(pool);
      headers = (engine as unknown as { rings: { header: Int32Array }[] }).rings.map(
        (r) => r.header,
      );
      // Both workers asleep on their rings; with SLEEPING cleared the engine does not
      // wake them, so the parts stay queued until this test says (a worker that is
      // slow, deterministically).
      await until('both workers asleep', () =>
        headers.every(
          (h) => Atomics.load(h, RING_THREAD) !== 0 && Atomics.load(h, RING_SLEEPING) === 1,
        ),
      );
      await new Promise((r) => setTimeout(r, 50));
      for (const h of headers) Atomics.store(h, RING_SLEEPING, 0);
      const copy = engine.copy(DmaDirection.TO_DEVICE, g, 0, p, 0, 128 * KiB);
      expect(copy).toBeInstanceOf(Promise);
      const poolBytes = new Uint8Array(pool);
      let settled: { pending: number; secondPart: boolean; err: unknown } | undefined;
      const record = (err: unknown) => {
        settled = {
          pending: engine.pendingCopies,
          // The part on the live worker: copied by the time the caller hears of the failure.
          secondPart: poolBytes.subarray(64 * KiB, 128 * KiB).every((b) => b === 7),
          err,
        };
      };
      copy!.then(() => record(undefined), record);
      // Worker 0 dies with its part; worker 1 still holds the other.
      await engine.crashWorker(0);
      await new Promise((r) => setTimeout(r, 50));
      // Failing it now would let the caller free the pool slots that worker 1 is
      // about to write (and another request take them).
      expect(settled).toBeUndefined();
      Atomics.notify(headers[1]!, RING_HEAD);
      await until('the copy settles', () => settled !== undefined);
      expect(settled!.pending).toBe(0);
      expect(settled!.secondPart).toBe(true);
      expect(isMediatorError(settled!.err, 'COPY_WORKER_CRASHED')).toBe(true);
      expect(engine.workerCrashes).toBe(1);
    } finally {
      // Wakes a worker left asleep on purpose, so that close() finds every copy done.
      for (const h of headers) Atomics.notify(h, RING_HEAD);
      await engine.close();
    }
  });
});

// -----------------------------------------------------------------------------
// The CLI in its own process
// -----------------------------------------------------------------------------

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
  /** stdout's JSON log lines so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the URL once the listening line is out. */
  listening: Promise<string>;
}

const running = new Set<ChildProcess>();

/**
 * `serve` with `args`; with `fileSizeLimitKiB`, under that RLIMIT_FSIZE (bash's
 * `ulimit -f`): a write past it fails with EFBIG (Node ignores SIGXFSZ).
 */
function serve(args: string[], fileSizeLimitKiB?: number): Proc {
  const node = [process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'serve', ...args];
  const child =
    fileSizeLimitKiB === undefined
      ? spawn(node[0]!, node.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('bash', ['-c', `ulimit -f ${fileSizeLimitKiB} && exec "$0" "$@"`, ...node], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  running.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  const logs: Record<string, unknown>[] = [];
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
      const m = /listening on (http:\/\/[^\s:]+:\d+)/.exec(String(logs.at(-1)!.msg));
      if (m) resolve(m[1]!);
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`serve exited (${code ?? signal}) before listening: ${stderr}`)),
    );
  });
  listening.catch(() => undefined);
  return { child, exited, stderr: () => stderr, logs, listening };
}

/** The exit of `p`, or undefined if it is still running after `ms`. */
function exitWithin(p: Proc, ms: number) {
  return Promise.race([
    p.exited,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms).unref()),
  ]);
}

describe('serve, failure paths, as a process', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'failure-audit-'));
  });
  afterEach(() => {
    for (const child of running) child.kill('SIGKILL');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a start that fails half-way (the second queue does not fit the pool): the error, exit 1, nothing left running', async () => {
    // Valid on paper; the driver starts queue 0's device thread, then finds no
    // room for queue 1.
    const path = join(dir, 'no-room.json');
    writeFileSync(
      path,
      JSON.stringify({
        http: { port: 0 },
        copy: { workers: 0 },
        pools: [{ size: '256KiB', areas: 1 }],
        devices: [{ id: 'a', kind: 'ram-blk', capacity: '1MiB', queues: 4, queueSize: 8192 }],
      }),
    );
    const p = serve(['--config', path, '--log-level', 'silent']);
    // Without the fix it printed the error and then hung for ever.
    const exit = await exitWithin(p, 20_000);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(p.stderr()).toMatch(
      /^swiotlb-mediator: MEDIATOR_BAD_CONFIG: config: device a: the pool has no room for a queue of 8192 descriptors/,
    );
  });

  it('a backing file the OS refuses to write (EFBIG): a 500 MEDIATOR_IO_ERROR, not acknowledged, not written, logged', async () => {
    const disk = join(dir, 'limited.img');
    writeFileSync(disk, '');
    truncateSync(disk, 4 * MiB); // full size already: the device does not grow it
    const path = join(dir, 'limited.json');
    writeFileSync(
      path,
      JSON.stringify({
        http: { port: 0, shutdownTimeoutMs: 8000 },
        copy: { workers: 1 },
        pools: [{ size: '4MiB', areas: 1 }],
        devices: [
          { id: 'disk', kind: 'file-blk', file: disk, capacity: '4MiB', maxRequestBytes: '64KiB' },
        ],
      }),
    );
    // Writes past 1 MiB of any file fail with EFBIG.
    const p = serve(['--config', path], 1024);
    const url = await p.listening;
    for (;;) {
      const res = await fetch(`${url}/readyz`).catch(() => undefined);
      if (res?.status === 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const below = randomBytes(4 * KiB, 1);
    const ok = await fetch(`${url}/v1/devices/disk/blocks/8`, {
      method: 'PUT',
      headers: OCTET,
      body: below,
    });
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
    // 2 MiB in: within the capacity, past the file size limit.
    const lba = (2 * MiB) / 512;
    const refused = await fetch(`${url}/v1/devices/disk/blocks/${lba}`, {
      method: 'PUT',
      headers: OCTET,
      body: randomBytes(4 * KiB, 2),
    });
    const body = await refused.json();
    // Before: 416 Range Not Satisfiable, the client's fault, for the disk's failure.
    expect(refused.status).toBe(500);
    expectErrorBody(500, body, 'MEDIATOR_IO_ERROR', /I\/O error at sector 4096/);
    expect(refused.headers.get('content-range')).toBeNull();
    const back = await fetch(`${url}/v1/devices/disk/blocks/${lba}?count=8`);
    expect(back.status).toBe(200);
    expect(Buffer.from(await back.arrayBuffer()).every((b) => b === 0)).toBe(true);
    const stats = (await (await fetch(`${url}/v1/devices/disk`)).json()) as {
      requests: { write: { ok: number; ioerr: number } };
    };
    expect(stats.requests.write).toMatchObject({ ok: 1, ioerr: 1 });
    p.child.kill('SIGTERM');
    expect(await exitWithin(p, 20_000)).toEqual({ code: 0, signal: null });
    expect(p.logs).toContainEqual(
      expect.objectContaining({
        level: 40,
        device: 'disk',
        code: 'MEDIATOR_IO_ERROR',
        msg: expect.stringMatching(/backing store error on queue 0: EFBIG/),
      }),
    );
    const onDisk = readFileSync(disk);
    expect(Buffer.compare(onDisk.subarray(8 * 512, 8 * 512 + below.length), below)).toBe(0);
    expect(onDisk.subarray(2 * MiB, 2 * MiB + 4 * KiB).every((b) => b === 0)).toBe(true);
  }, 60_000);
});

// -----------------------------------------------------------------------------
// Shutdown in process
// -----------------------------------------------------------------------------

describe('shutdown that fails', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'failure-audit-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (file: string) =>
    parseConfig({
      http: { port: 0, shutdownTimeoutMs: 10_000 },
      copy: { workers: 0 },
      pools: [{ size: '1MiB', areas: 1 }],
      devices: [{ id: 'disk', kind: 'file-blk', file, capacity: '1MiB', sync: 'none' }],
    });

  it('a flush of a file-backed device that fails: not clean (serve exits 1), and said at error', async () => {
    const logs = logCapture();
    const server = await startServer(config(join(dir, 'flush.img')), {
      logger: { level: 'info', stream: logs.stream },
    });
    await server.service.started;
    const device = server.service.device('disk')!;
    await device.write(0, randomBytes(4 * KiB, 3));
    // The disk answers the shutdown's flush with an error, as an fdatasync() EIO.
    vi.spyOn(device, 'flush').mockRejectedValue(
      new MediatorError('MEDIATOR_IO_ERROR', 'device disk: I/O error at sector 0 (+0 bytes)'),
    );
    // Before: true, and `serve` exited 0 though acknowledged writes may be lost.
    expect(await server.shutdown()).toBe(false);
    expect(server.service.failedFlushes).toEqual(['disk']);
    expect(server.service.state).toBe('closed');
    expect(logs.lines()).toContainEqual(
      expect.objectContaining({
        level: 50,
        device: 'disk',
        code: 'MEDIATOR_IO_ERROR',
        msg: expect.stringMatching(/^flush of disk failed at shutdown/),
      }),
    );
  });

  it('closing the mediator that fails: not clean, and said at error with its code', async () => {
    const logs = logCapture();
    const server = await startServer(config(join(dir, 'close.img')), {
      logger: { level: 'info', stream: logs.stream },
    });
    await server.service.started;
    const mediator = server.service.mediator;
    const close = mediator.close.bind(mediator);
    // Everything closes, then the backing file's close() reports a lost write (EIO).
    vi.spyOn(mediator, 'close').mockImplementation(async () => {
      await close();
      throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' });
    });
    // Before: true, and nothing was logged.
    expect(await server.shutdown()).toBe(false);
    expect(logs.lines()).toContainEqual(
      expect.objectContaining({
        level: 50,
        code: 'EIO',
        msg: 'shutdown: closing the service failed: EIO: i/o error, close',
      }),
    );
  });
});

describe('startServer that fails after the service is built', () => {
  it('an `extend` that throws: the error, and the mediator closed (no thread left to hold the process)', async () => {
    const closing = vi.spyOn(Mediator.prototype, 'close');
    try {
      const started = startServer(parseConfig({ http: { port: 0 }, copy: { workers: 1 } }), {
        logger: false,
        extend: () => {
          throw new Error('a route plugin failed');
        },
      });
      await expect(started).rejects.toThrow('a route plugin failed');
      // Before: never closed; its device and copy threads kept the process alive.
      expect(closing).toHaveBeenCalledTimes(1);
      await closing.mock.results[0]!.value;
    } finally {
      closing.mockRestore();
    }
  });
});

// -----------------------------------------------------------------------------
// Config
// -----------------------------------------------------------------------------

describe('config: backing files', () => {
  it('two file-blk devices on one file (once resolved) are refused, naming both', () => {
    const err = (() => {
      try {
        parseConfig(
          {
            devices: [
              { id: 'a', kind: 'file-blk', file: 'disk.img' },
              { id: 'b', kind: 'ram-blk' },
              { id: 'c', kind: 'file-blk', file: './sub/../disk.img' },
            ],
          },
          { baseDir: '/srv/data' },
        );
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    // Before: accepted, and both devices wrote the one file as their own disk.
    expect(isMediatorError(err, 'MEDIATOR_BAD_CONFIG')).toBe(true);
    expect((err as Error).message).toBe(
      'config: devices[2].file: "/srv/data/disk.img" is not allowed; expected a file of its own (it is the backing file of device a)',
    );
    // Files of their own, the default ones included, are fine.
    expect(
      parseConfig(
        {
          devices: [
            { id: 'a', kind: 'file-blk' },
            { id: 'b', kind: 'file-blk', file: 'b2.img' },
          ],
        },
        { baseDir: '/srv/data' },
      ).devices.map((d) => d.file),
    ).toEqual(['/srv/data/a.img', '/srv/data/b2.img']);
  });
});
