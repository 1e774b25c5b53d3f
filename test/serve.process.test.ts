/**
 * The real CLI in its own process: start-up line, durability across SIGKILL,
 * graceful shutdown on SIGTERM/SIGINT under load, refusal of a wrong config.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NO_FAULTS } from './helpers/chaos.js';
import { OCTET, randomBytes } from './helpers/http.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const KiB = 1024;

interface Cli {
  child: ChildProcess;
  url: string;
  /** Every log line so far (parsed JSON). */
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

const running = new Set<ChildProcess>();

function spawnCli(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], {
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
  return { child, exited, stderr: () => stderr };
}

/** Starts `serve`, waits for its start-up line and for /readyz to answer 200. */
async function startCli(args: string[]): Promise<Cli> {
  const { child, exited, stderr } = spawnCli(args);
  const logs: Record<string, unknown>[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        reject(new Error(`not a JSON log line: ${line}`));
        return;
      }
      logs.push(entry);
      const m = /listening on (http:\/\/[^\s:]+:\d+)/.exec(String(entry.msg));
      if (m) resolve(m[1]!);
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`serve exited (${code ?? signal}) before listening: ${stderr()}`)),
    );
  });
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => undefined);
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, url, logs, exited, stderr };
}

function writeConfig(dir: string, sync: 'durable' | 'none'): string {
  const path = join(dir, `serve-${sync}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      http: { port: 0, shutdownTimeoutMs: 8000 },
      copy: { workers: 1 },
      pools: [{ size: '4MiB', areas: 1 }],
      devices: [
        {
          id: 'disk',
          kind: 'file-blk',
          file: 'disk.img', // relative to the config file's folder
          capacity: '16MiB',
          sync,
          maxRequestBytes: '64KiB',
          depth: 8,
        },
      ],
    }),
  );
  return path;
}

async function put(url: string, lba: number, data: Buffer): Promise<number> {
  const res = await fetch(`${url}/v1/devices/disk/blocks/${lba}`, {
    method: 'PUT',
    headers: OCTET,
    body: data,
  });
  await res.arrayBuffer();
  return res.status;
}

async function get(url: string, lba: number, bytes: number): Promise<Buffer> {
  const res = await fetch(`${url}/v1/devices/disk/blocks/${lba}?count=${bytes / 512}`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function stop(cli: Cli, signal: NodeJS.Signals = 'SIGTERM') {
  cli.child.kill(signal);
  return await cli.exited;
}

describe('swiotlb-mediator serve, as a process', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'serve-proc-'));
  });
  afterEach(() => {
    for (const child of running) child.kill('SIGKILL');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the embedded default, logs its start-up, and exits 0 on SIGINT', async () => {
    const cli = await startCli(['--port', '0']);
    // The kernel's two lines for each pool (Linux's default pool, one per device),
    // then the listening line; no shared-pool line (no pool is shared).
    for (let t = 0; t < 100 && cli.logs.length < 5; t++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(cli.logs).toHaveLength(5);
    expect(cli.logs.slice(0, 4)).toEqual([
      expect.objectContaining({
        level: 30,
        pool: 'pool0',
        kernel: '6.10',
        msg: expect.stringMatching(/^software IO TLB: area num \d+\.$/),
      }),
      expect.objectContaining({
        level: 30,
        pool: 'pool0',
        msg: 'software IO TLB: mapped [mem 0x0000000000000000-0x0000000004000000] (64MB)',
      }),
      expect.objectContaining({
        level: 30,
        pool: 'pool1',
        kernel: '6.10',
        msg: expect.stringMatching(/^software IO TLB: area num \d+\.$/),
      }),
      expect.objectContaining({
        level: 30,
        pool: 'pool1',
        msg: 'software IO TLB: mapped [mem 0x0000000004000000-0x0000000008000000] (64MB)',
      }),
    ]);
    expect(cli.logs[4]).toMatchObject({ level: 30 });
    expect(String(cli.logs[4]!.msg)).toMatch(
      /listening on http:\/\/127\.0\.0\.1:\d+: bounce mode, Linux 6\.10 swiotlb rules.*; pools: pool0 64MiB \(32768 slots, \d+ areas?; requeue-bounded, at most 5000 ms; warm placement, not the kernel's\), pool1 64MiB \(32768 slots, \d+ areas?; requeue-bounded, at most 5000 ms; warm placement, not the kernel's\); guests: guest0 \d+MiB; devices: blk0 \(ram-blk, 256MiB, fromDeviceBounce used-length\), null0 \(null, 256MiB, fromDeviceBounce used-length\)/,
    );
    const data = randomBytes(8 * KiB, 1);
    const res = await fetch(`${cli.url}/v1/devices/blk0/blocks/64`, {
      method: 'PUT',
      headers: OCTET,
      body: data,
    });
    expect(res.status).toBe(200);
    const back = await fetch(`${cli.url}/v1/devices/blk0/blocks/64?count=16`);
    expect(Buffer.compare(Buffer.from(await back.arrayBuffer()), data)).toBe(0);
    const devices = (await (await fetch(`${cli.url}/v1/devices`)).json()) as {
      devices: { id: string }[];
    };
    expect(devices.devices.map((d) => d.id)).toEqual(['blk0', 'null0']);
    // Nothing was logged per request.
    expect(cli.logs).toHaveLength(5);
    expect(await stop(cli, 'SIGINT')).toEqual({ code: 0, signal: null });
    expect(cli.logs.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^software IO TLB: area num/),
      expect.stringMatching(/^software IO TLB: mapped/),
      expect.stringMatching(/^software IO TLB: area num/),
      expect.stringMatching(/^software IO TLB: mapped/),
      expect.stringMatching(/listening on/),
      expect.stringMatching(/^SIGINT: shutting down/),
      'stopped',
    ]);
  });

  it('file-blk with durable sync: every acknowledged write survives SIGKILL right after its 200', async () => {
    const config = writeConfig(dir, 'durable');
    const n = 48;
    const blocks = Array.from({ length: n }, (_, i) => ({
      lba: i * 40 + 1,
      data: randomBytes(512 * (1 + (i % 16)), 500 + i),
    }));
    const first = await startCli(['--config', config]);
    // Eight clients at once; the last 200 is followed at once by SIGKILL.
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < n; i = next++) {
          expect(await put(first.url, blocks[i]!.lba, blocks[i]!.data)).toBe(200);
        }
      }),
    );
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const second = await startCli(['--config', config]);
    for (const b of blocks) {
      expect(
        Buffer.compare(await get(second.url, b.lba, b.data.length), b.data),
        `lba ${b.lba}`,
      ).toBe(0);
    }
    expect(await stop(second)).toEqual({ code: 0, signal: null });
  });

  it('SIGTERM under load: exit status 0, and every acknowledged write is there after a restart', async () => {
    const config = writeConfig(dir, 'none');
    const cli = await startCli(['--config', config]);
    const acked: { lba: number; data: Buffer }[] = [];
    const refused = new Map<string, number>();
    let signalled = false;
    const clients = Array.from({ length: 6 }, async (_, c) => {
      // 16 MiB disk: 6 clients x 600 blocks of 4 KiB fit.
      for (let k = 0; k < 600; k++) {
        const lba = (c * 600 + k) * 8;
        const data = randomBytes(4 * KiB, c * 100_000 + k + 1);
        let status: number | string;
        try {
          status = await put(cli.url, lba, data);
        } catch (err) {
          status = (err as { cause?: { code?: string } }).cause?.code ?? 'network error';
        }
        if (status === 200) {
          acked.push({ lba, data });
          if (acked.length === 60 && !signalled) {
            signalled = true;
            cli.child.kill('SIGTERM');
          }
          continue;
        }
        // After SIGTERM: refused whole (503 while draining) or the connection
        // is closed. Nothing else.
        expect({ signalled, status }).toEqual({ signalled: true, status });
        refused.set(String(status), (refused.get(String(status)) ?? 0) + 1);
        return;
      }
    });
    await Promise.all(clients);
    const { code, signal } = await cli.exited;
    expect({ code, signal, stderr: cli.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
    // The writes in flight when the signal came were finished and acknowledged too.
    expect(acked.length).toBeGreaterThanOrEqual(60);
    for (const status of refused.keys())
      expect(['503', 'ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'network error']).toContain(
        status,
      );
    expect(cli.logs.map((l) => l.msg)).toContain('stopped');

    const again = await startCli(['--config', config]);
    for (const w of acked) {
      expect(
        Buffer.compare(await get(again.url, w.lba, w.data.length), w.data),
        `lba ${w.lba}`,
      ).toBe(0);
    }
    expect(await stop(again)).toEqual({ code: 0, signal: null });
  });

  it('a wrong config is refused at start-up with one message naming the field', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ devices: [{ id: 'x', kind: 'ram-blk', queueSize: 100 }] }));
    // A bad file exits 1; a bad flag value is a usage error, exit 2, which the
    // systemd unit's RestartPreventExitStatus=2 does not restart.
    const cases: [string[], number, RegExp][] = [
      [
        ['--config', bad],
        1,
        /^swiotlb-mediator: MEDIATOR_BAD_CONFIG: config file .*bad\.json: devices\[0\]\.queueSize: 100 is not allowed; expected a power of two from 2 to 32768\n$/,
      ],
      [
        ['--port', '99999'],
        2,
        /^swiotlb-mediator serve: config: http\.port \(--port\): 99999 is not allowed; expected an integer from 0 to 65535 \(--help lists the options\)\n$/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const { exited, stderr } = spawnCli(args);
      expect(await exited).toEqual({ code, signal: null });
      expect(stderr()).toMatch(message);
    }
    const { exited, stderr } = spawnCli(['--bogus']);
    expect((await exited).code).toBe(2);
    expect(stderr()).toMatch(/--bogus/);
  });

  it('a port in use: SERVE_CANNOT_LISTEN with the system reason, exit 1', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as AddressInfo;
    try {
      const { exited, stderr } = spawnCli(['--port', String(port), '--log-level', 'silent']);
      expect(await exited).toEqual({ code: 1, signal: null });
      expect(stderr()).toMatch(
        new RegExp(
          `^swiotlb-mediator: SERVE_CANNOT_LISTEN: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`,
        ),
      );
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('a second signal exits at once', async () => {
    // A device that never answers keeps the shutdown waiting for its in-flight request.
    const path = join(dir, 'stall.json');
    writeFileSync(
      path,
      JSON.stringify({
        http: { port: 0, shutdownTimeoutMs: 60_000 },
        copy: { workers: 0 },
        pools: [{ size: '1MiB', areas: 1 }],
        devices: [
          {
            id: 'stall',
            kind: 'chaos',
            capacity: '1MiB',
            maxRequestBytes: '64KiB',
            timeoutMs: 60_000,
            chaos: { ...NO_FAULTS, drop: 1 },
          },
        ],
      }),
    );
    const cli = await startCli(['--config', path]);
    const pending = fetch(`${cli.url}/v1/devices/stall/blocks/0`).catch(() => undefined);
    for (;;) {
      const s = (await (await fetch(`${cli.url}/v1/devices/stall`)).json()) as {
        inFlight: number;
      };
      if (s.inFlight > 0) break;
    }
    cli.child.kill('SIGTERM');
    // Wait until the first one is being handled, then send the second.
    for (;;) {
      if (cli.logs.some((l) => /^SIGTERM: shutting down/.test(String(l.msg)))) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 400));
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toEqual({ code: 128 + 15, signal: null });
    await pending;
  });
});
