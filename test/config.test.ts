/**
 * The configuration: defaults, the embedded default, overrides, and one clear
 * message for every kind of wrong config.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveCommand } from '../src/cli/serve.js';
import { loadConfig, parseConfig, toMediatorSpec } from '../src/config/index.js';
import { isMediatorError } from '../src/errors.js';
import {
  BACKPRESSURE_DEFAULTS,
  DEVICE_DEFAULTS,
  defaultCopyWorkers,
  defaultCopyWorkersFor,
  defaultDeviceSpinMicros,
  defaultEnginePollMicros,
  defaultInlineThreshold,
  defaultSpinMicrosFor,
  defaultSplitInline,
  defaultSplitThreshold,
  SERVICE_DEFAULTS,
  serviceDeviceSpinMicros,
} from '../src/mediator/defaults.js';
import { startServer } from '../src/server/index.js';
import { defaultAreaCount } from '../src/swiotlb/geometry.js';
import { OCTET, randomBytes } from './helpers/http.js';

const MiB = 2 ** 20;

/**
 * The one-line message of a refused config: MEDIATOR_BAD_CONFIG, or CLI_USAGE
 * when the value at fault came from a flag (`code`).
 */
function refusal(fn: () => unknown, code = 'MEDIATOR_BAD_CONFIG'): string {
  try {
    fn();
  } catch (err) {
    expect(isMediatorError(err, code as 'CLI_USAGE'), String(err)).toBe(true);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('the config was accepted');
}

describe('the embedded default', () => {
  it('is one guest, ram-blk blk0 of 256 MiB and null0 each on a 64 MiB pool of its own, bounce mode, 127.0.0.1:8080', () => {
    const c = parseConfig({});
    expect(c.mode).toBe('bounce');
    // The service's two departures from Linux (SERVICE_DEFAULTS).
    expect(c.fromDeviceBounce).toBe('used-length');
    expect(c.placement).toBe('warm');
    expect(c.logLevel).toBe('info');
    expect(c.http).toEqual({
      host: '127.0.0.1',
      port: 8080,
      bodyLimit: MiB,
      shutdownTimeoutMs: 10_000,
      retryAfterSeconds: 1,
    });
    // The CPUs the main thread and the two devices' threads leave (none on 2 CPUs).
    expect(c.copy.workers).toBe(Math.max(0, Math.min(4, availableParallelism() - 3)));
    // The default workers leave the main thread a core: split.
    expect(c.copy.splitThreshold).toBe(128 * 1024);
    const spec = toMediatorSpec(c);
    expect(spec.mode).toBe('bounce');
    // One pool per device, each Linux's default pool: no swiotlb=, no size asked for (32768 slots).
    expect(spec.pools).toEqual([
      {
        name: 'pool0',
        kernel: '6.10',
        placement: 'warm',
        areas: defaultAreaCount(),
        base: 0,
        backpressure: { policy: 'requeue-bounded', waitMs: 5000 },
      },
      {
        name: 'pool1',
        kernel: '6.10',
        placement: 'warm',
        areas: defaultAreaCount(),
        base: 64 * MiB,
        backpressure: { policy: 'requeue-bounded', waitMs: 5000 },
      },
    ]);
    expect(spec.guests).toHaveLength(1);
    expect(spec.guests[0]).toMatchObject({ name: 'guest0', base: 2 ** 32 });
    // "auto": the request buffers of both devices (2 x 32 x 1 MiB) and their headers.
    expect(spec.guests[0]!.size).toBe(65 * MiB);
    expect(spec.devices.map((d) => [d.id, d.kind, d.capacity, d.guest, d.pool])).toEqual([
      ['blk0', 'ram-blk', 256 * MiB, 'guest0', 'pool0'],
      ['null0', 'null', 256 * MiB, 'guest0', 'pool1'],
    ]);
    expect(spec.devices[0]).toMatchObject({
      fromDeviceBounce: 'used-length',
      queues: 1,
      queueSize: 256,
      depth: 32,
      maxRequestBytes: MiB,
      timeoutMs: 5000,
      minAlignMask: 0,
    });
  });

  it('gives the default devices their own pools only when the file names neither pools nor devices', () => {
    const pools = (raw: object) => {
      const c = parseConfig(raw);
      return {
        pools: c.pools.map((p) => p.name),
        devices: c.devices.map((d) => `${d.id}:${d.pool}`),
      };
    };
    expect(pools({ mode: 'direct' })).toEqual({
      pools: ['pool0', 'pool1'],
      devices: ['blk0:pool0', 'null0:pool1'],
    });
    // Devices given: one default pool, which devices without a pool use.
    expect(pools({ devices: [{ id: 'a' }, { id: 'b' }] })).toEqual({
      pools: ['pool0'],
      devices: ['a:pool0', 'b:pool0'],
    });
    // Pools given: the default devices on the first of them.
    expect(pools({ pools: [{ name: 'only' }] })).toEqual({
      pools: ['only'],
      devices: ['blk0:only', 'null0:only'],
    });
  });

  it('takes shared mode and fromDeviceBounce (service-wide, and per device)', () => {
    const c = parseConfig({
      mode: 'shared',
      fromDeviceBounce: 'used-length',
      devices: [{ id: 'a' }, { id: 'b', fromDeviceBounce: 'linux' }],
    });
    expect(c.mode).toBe('shared');
    expect(c.devices.map((d) => d.fromDeviceBounce)).toEqual(['used-length', 'linux']);
    expect(toMediatorSpec(c).devices.map((d) => d.fromDeviceBounce)).toEqual([
      'used-length',
      'linux',
    ]);
    // Shared mode keeps no request buffers in guest memory: "auto" is the 1 MiB floor.
    expect(c.guests[0]!.memory).toBe(MiB);
    expect(refusal(() => parseConfig({ devices: [{ id: 'a', fromDeviceBounce: 'skip' }] }))).toBe(
      'config: devices[0].fromDeviceBounce: "skip" is not allowed; expected one of "linux", "used-length"',
    );
    expect(
      refusal(
        () =>
          parseConfig(
            {},
            {
              overrides: [{ path: ['fromDeviceBounce'], value: 'x', flag: '--from-device-bounce' }],
            },
          ),
        'CLI_USAGE',
      ),
    ).toBe(
      'config: fromDeviceBounce (--from-device-bounce): "x" is not allowed; expected one of "linux", "used-length"',
    );
    expect(
      refusal(() => parseConfig({ mode: 'shared', devices: [{ id: 'a', queueSize: 16384 }] })),
    ).toBe(
      'config: devices[0].queueSize: 16384 is not allowed; expected at most 8192 in shared mode (a virtqueue must fit one 256 KiB pool segment)',
    );
  });

  it('device threads poll 200 us when they and the main thread have a CPU each, else 50', () => {
    expect(defaultDeviceSpinMicros(1, 2)).toBe(200);
    expect(defaultDeviceSpinMicros(2, 2)).toBe(50);
    expect(defaultDeviceSpinMicros(3, 4)).toBe(200);
    expect(defaultSpinMicrosFor([{ queues: 2 }, {}], 4)).toBe(200);
    expect(defaultSpinMicrosFor([{ queues: 2 }, {}], 3)).toBe(50);
  });

  it("the service's device threads poll only with a CPU left for the network stack, else sleep at once", () => {
    expect(serviceDeviceSpinMicros([{}], 2)).toBe(0);
    expect(serviceDeviceSpinMicros([{}, {}], 2)).toBe(0);
    expect(serviceDeviceSpinMicros([{}], 3)).toBe(200);
    expect(serviceDeviceSpinMicros([{ queues: 2 }, {}], 4)).toBe(0);
    expect(serviceDeviceSpinMicros([{ queues: 2 }, {}], 5)).toBe(200);
    const cpus = availableParallelism();
    // Every queue of every device is a thread.
    const spin = (devices: object[]) => parseConfig({ devices }).devices.map((d) => d.spinMicros);
    expect(spin([{ id: 'a', queues: 64 }])).toEqual([cpus >= 66 ? 200 : 0]);
    expect(spin([{ id: 'a' }])).toEqual([cpus >= 3 ? 200 : 0]);
    expect(spin([{ id: 'a' }, { id: 'b' }])).toEqual(cpus >= 4 ? [200, 200] : [0, 0]);
    expect(spin([{ id: 'a', spinMicros: 7 }])).toEqual([7]);
  });

  it('gives copy workers only the CPUs the main thread and the device threads leave', () => {
    expect(defaultCopyWorkersFor([{}], 2)).toBe(0);
    expect(defaultCopyWorkersFor([{ queues: 2 }, {}], 4)).toBe(0);
    expect(defaultCopyWorkersFor([{}], 4)).toBe(2);
    expect(defaultCopyWorkersFor([{}], 64)).toBe(4);
    expect(defaultCopyWorkersFor([], 2)).toBe(1);
    const cpus = availableParallelism();
    const devices = [{ id: 'a', queues: 2 }];
    expect(parseConfig({ devices }).copy.workers).toBe(Math.max(0, Math.min(4, cpus - 3)));
    expect(parseConfig({ devices, copy: { workers: 3 } }).copy.workers).toBe(3);
  });

  it('splits copies by default only while the workers leave the main thread a core', () => {
    const cpus = availableParallelism();
    const split = (copy: object) => parseConfig({ copy }).copy.splitThreshold;
    const many = Math.min(64, cpus);
    expect(split({ workers: many })).toBe(many < cpus ? 128 * 1024 : 0);
    expect(split({ workers: 0 })).toBe(128 * 1024);
    expect(split({ workers: many, splitThreshold: '256KiB' })).toBe(256 * 1024);
    expect(split({ splitThreshold: 0 })).toBe(0);
    expect(toMediatorSpec(parseConfig({ copy: { splitThreshold: 0 } })).copy?.splitThreshold).toBe(
      0,
    );
  });

  it('copy engine defaults turn on whether the calling thread keeps a core', () => {
    // 2 CPUs: a worker has no core of its own, so copies up to 128 KiB stay inline.
    expect(defaultInlineThreshold(2)).toBe(128 * 1024);
    expect(defaultInlineThreshold(4)).toBe(32 * 1024);
    for (const [workers, cpus, hasCore] of [
      [1, 2, true],
      [2, 2, false],
      [3, 2, false],
      [3, 4, true],
    ] as const) {
      const what = `${workers} workers on ${cpus} CPUs`;
      expect(defaultSplitThreshold(workers, cpus), what).toBe(hasCore ? 128 * 1024 : 0);
      expect(defaultSplitInline(workers, cpus), what).toBe(hasCore);
      expect(defaultEnginePollMicros(workers, cpus), what).toBe(hasCore ? 200 : 0);
    }
    expect([1, 2, 4, 5, 64].map((cpus) => defaultCopyWorkers(cpus))).toEqual([1, 1, 3, 4, 4]);
  });

  it('fills in the runtime defaults (src/mediator/defaults.ts), not copies of them', () => {
    const c = parseConfig({ devices: [{ id: 'a' }] });
    // fromDeviceBounce: the service's default, not the runtime's (SERVICE_DEFAULTS).
    const {
      pollMicros: _poll,
      recordLatency: _record,
      fromDeviceBounce: _fdb,
      ...configured
    } = DEVICE_DEFAULTS;
    expect(c.devices[0]).toMatchObject({
      ...configured,
      fromDeviceBounce: SERVICE_DEFAULTS.fromDeviceBounce,
    });
    expect(c.pools[0]!.placement).toBe(SERVICE_DEFAULTS.placement);
    expect(c.pools[0]!.backpressure).toEqual(BACKPRESSURE_DEFAULTS);
  });

  it('starts and serves I/O', async () => {
    const server = await startServer(parseConfig({ http: { port: 0 }, logLevel: 'silent' }));
    try {
      await server.service.started;
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      const data = randomBytes(4096, 3);
      const put = await fetch(`${server.url}/v1/devices/blk0/blocks/10`, {
        method: 'PUT',
        headers: OCTET,
        body: data,
      });
      expect(put.status).toBe(200);
      const back = await fetch(`${server.url}/v1/devices/blk0/blocks/10?count=8`);
      expect(Buffer.compare(Buffer.from(await back.arrayBuffer()), data)).toBe(0);
      const pool = (await (await fetch(`${server.url}/v1/pool`)).json()) as { nslabs: number };
      expect(pool.nslabs).toBe(32768);
    } finally {
      expect(await server.shutdown()).toBe(true);
    }
  });
});

describe('sizes, addresses and defaults', () => {
  it('sizes accept "64MiB"-style strings and numbers; addresses hex strings', () => {
    const c = parseConfig({
      http: { bodyLimit: '4M' },
      copy: { inlineThreshold: '16k', workers: 0 },
      pools: [{ name: 'p', size: '8MiB', base: '0x80000000', areas: 1 }],
      guests: [{ name: 'g', memory: '1.5GiB', base: '0x200000000' }],
      devices: [{ capacity: 1_048_576, maxRequestBytes: '128KiB' }],
    });
    expect(c.http.bodyLimit).toBe(4 * MiB);
    expect(c.copy.inlineThreshold).toBe(16 * 1024);
    expect(c.pools[0]).toMatchObject({ name: 'p', size: 8 * MiB, base: 0x8000_0000, areas: 1 });
    expect(c.guests[0]).toMatchObject({ memory: 1.5 * 1024 * MiB, base: 2 ** 33 });
    expect(c.devices[0]).toMatchObject({
      id: 'dev0',
      kind: 'ram-blk',
      guest: 'g',
      pool: 'p',
      capacity: MiB,
      maxRequestBytes: 128 * 1024,
      serial: 'dev0',
    });
  });

  it('"auto" guest memory follows the devices; file-blk gets a file next to the config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    try {
      const path = join(dir, 'c.json');
      writeFileSync(
        path,
        JSON.stringify({
          mode: 'direct',
          devices: [
            { id: 'a', kind: 'file-blk', queues: 2, depth: 4, maxRequestBytes: '256KiB' },
            { id: 'b', kind: 'file-blk', file: 'sub/b.img', depth: 2 },
            { id: 'c', kind: 'chaos', chaos: { seed: 9, drop: 0.5 } },
          ],
        }),
      );
      const c = loadConfig({ file: path });
      expect(c.devices[0]!.file).toBe(join(dir, 'a.img'));
      expect(c.devices[1]!.file).toBe(join(dir, 'sub', 'b.img'));
      expect(c.devices[0]!.sync).toBe('durable');
      expect(c.devices[2]!.chaos).toMatchObject({ seed: 9, drop: 0.5, double: 0.03 });
      // a: 2 x 4 x 256 KiB, b: 2 x 1 MiB, c: 32 x 1 MiB, plus headers and queues.
      expect(c.guests[0]!.memory).toBe(37 * MiB);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('command-line values override the file and are named in errors', () => {
    const c = parseConfig(
      { http: { port: 1234, host: '0.0.0.0' }, mode: 'bounce' },
      {
        overrides: [
          { path: ['http', 'port'], value: 0, flag: '--port' },
          { path: ['mode'], value: 'direct', flag: '--mode' },
          { path: ['copy', 'workers'], value: 1, flag: '--copy-workers' },
        ],
      },
    );
    expect(c.http).toMatchObject({ port: 0, host: '0.0.0.0' });
    expect(c.mode).toBe('direct');
    expect(c.copy.workers).toBe(1);
    expect(
      refusal(
        () =>
          parseConfig({}, { overrides: [{ path: ['mode'], value: 'isolated', flag: '--mode' }] }),
        // A flag's value: the command line's mistake, exit 2 like any usage error.
        'CLI_USAGE',
      ),
    ).toBe(
      'config: mode (--mode): "isolated" is not allowed; expected one of "bounce", "direct", "shared"',
    );
  });

  it('serve --print-config prints the resolved configuration', async () => {
    let out = '';
    const stdout = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    const code = await serveCommand(
      [
        '--print-config',
        '--port',
        '9999',
        '--body-limit',
        '2MiB',
        '--mode',
        'shared',
        '--from-device-bounce',
        'used-length',
      ],
      { stdout, stderr: stdout },
    );
    expect(code).toBe(0);
    const printed = JSON.parse(out) as ReturnType<typeof parseConfig>;
    expect(printed.http).toMatchObject({ port: 9999, bodyLimit: 2 * MiB });
    expect(printed).toMatchObject({ mode: 'shared', fromDeviceBounce: 'used-length' });
    expect(printed.devices.map((d) => [d.id, d.pool, d.fromDeviceBounce])).toEqual([
      ['blk0', 'pool0', 'used-length'],
      ['null0', 'pool1', 'used-length'],
    ]);
  });
});

describe('what parsing a config loads', () => {
  // Modules a config must not pull in: the copy engine and its thread pool, and
  // the device driver with its device threads. Checked in a child process whose
  // module resolution refuses them (test/fixtures/forbid-modules.mjs).
  const FORBIDDEN = [
    '/node_modules/piscina/',
    '/src/workers/copy-engine.',
    '/src/mediator/blk-driver.',
    '/src/mediator/device-thread.',
  ];
  const root = fileURLToPath(new URL('..', import.meta.url));
  const hooks = new URL('./fixtures/forbid-modules.mjs', import.meta.url).href;

  /** Runs `body` (ESM, with `mod` imported from `module`) under the forbidding hooks. */
  function runChild(module: string, body: string) {
    const code = [
      "import { register } from 'node:module';",
      `register(${JSON.stringify(hooks)}, { data: { forbidden: ${JSON.stringify(FORBIDDEN)} } });`,
      `const mod = await import(${JSON.stringify(new URL(module, `file://${root}`).href)});`,
      body,
    ].join('\n');
    return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    });
  }

  it('neither piscina, the copy engine nor BlkDriver and its device threads', () => {
    const child = runChild(
      'src/config/index.ts',
      `const c = mod.parseConfig({ copy: { workers: 1 }, devices: [
         { id: 'a', kind: 'chaos', queues: 2 }, { id: 'b', kind: 'file-blk' } ] });
       process.stdout.write(JSON.stringify({ workers: c.copy.workers, ids: c.devices.map((d) => d.id) }));`,
    );
    expect(child.stderr).not.toContain('forbidden module');
    expect(child.status, child.stderr).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ workers: 1, ids: ['a', 'b'] });
  });

  it('(the check itself refuses the Mediator, which loads them)', () => {
    const child = runChild('src/mediator/mediator.ts', '');
    expect(child.status).not.toBe(0);
    expect(child.stderr).toMatch(
      /forbidden module \S+\/src\/(workers\/copy-engine|mediator\/blk-driver)\.ts/,
    );
  });
});

describe('docs/configuration.md', () => {
  it('the config of its "Example" section is valid', () => {
    const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    const section = doc.split(/^## Example$/m)[1]!.split(/^## /m)[0]!;
    const json = /```json\n([\s\S]*?)```/.exec(section)![1]!;
    const c = parseConfig(JSON.parse(json), { baseDir: '/srv' });
    expect(c.pools.map((p) => p.name)).toEqual(['ram', 'nvme', 'null']);
    expect(c.devices.map((d) => [d.id, d.kind, d.pool, d.guest])).toEqual([
      ['blk0', 'ram-blk', 'ram', 'vm0'],
      ['disk', 'file-blk', 'nvme', 'vm0'],
      ['null0', 'null', 'null', 'vm0'],
    ]);
    expect(c.devices[1]).toMatchObject({ file: '/srv/disk.img', minAlignMask: 4095 });
  });
});

describe('a wrong config gets one message: the field, the value, what is allowed', () => {
  const cases: [string, unknown, string][] = [
    ['not an object', [], 'config: [] is not allowed; expected a JSON object'],
    [
      'unknown top-level field',
      { port: 80 },
      'config: port: unknown field; the fields of the config are kernel, mode, fromDeviceBounce, placement, logLevel, http, copy, pools, guests, devices',
    ],
    [
      'unknown nested field',
      { http: { prot: 80 } },
      'config: http.prot: unknown field; the fields of http are host, port, bodyLimit, shutdownTimeoutMs, retryAfterSeconds',
    ],
    [
      'wrong type',
      { http: { port: '80' } },
      'config: http.port: "80" is not allowed; expected an integer from 0 to 65535',
    ],
    [
      'out of range',
      { http: { port: 70000 } },
      'config: http.port: 70000 is not allowed; expected an integer from 0 to 65535',
    ],
    [
      'bad enum',
      { mode: 'isolated' },
      'config: mode: "isolated" is not allowed; expected one of "bounce", "direct", "shared"',
    ],
    [
      'unknown device kind',
      { devices: [{ kind: 'nvme' }] },
      'config: devices[0].kind: "nvme" is not allowed; expected one of "null", "ram-blk", "file-blk", "chaos"',
    ],
    [
      'size that does not parse',
      { pools: [{ size: '64 parsecs' }] },
      'config: pools[0].size: "64 parsecs" is not allowed; expected a size such as "64MiB" or a number of bytes, from 256KiB to 1GiB',
    ],
    [
      'size too small',
      { pools: [{ size: '64KiB' }] },
      'config: pools[0].size: "64KiB" is not allowed; expected a size such as "64MiB" or a number of bytes, from 256KiB to 1GiB',
    ],
    [
      'size not a multiple of 512',
      { devices: [{ capacity: '1000' }] },
      'config: devices[0].capacity: "1000" is not allowed; expected a size such as "64MiB" or a number of bytes, from 512 bytes to 1024TiB, a multiple of 512',
    ],
    [
      'queue size not a power of two',
      { devices: [{ queueSize: 100 }] },
      'config: devices[0].queueSize: 100 is not allowed; expected a power of two from 2 to 32768',
    ],
    [
      'queue size not a power of two, direct mode: named as in bounce mode',
      { mode: 'direct', devices: [{ queueSize: 100 }] },
      'config: devices[0].queueSize: 100 is not allowed; expected a power of two from 2 to 32768',
    ],
    [
      'a value out of range is reported once, not again by the cross-field rules',
      { devices: [{ queueSize: 65536 }] },
      'config: devices[0].queueSize: 65536 is not allowed; expected a power of two from 2 to 32768',
    ],
    [
      'queue too large for the pool in bounce mode',
      { devices: [{ queueSize: 16384 }] },
      'config: devices[0].queueSize: 16384 is not allowed; expected at most 8192 in bounce mode (a virtqueue must fit one 256 KiB pool segment)',
    ],
    [
      'bad min_align_mask',
      { devices: [{ minAlignMask: 4096 }] },
      'config: devices[0].minAlignMask: 4096 is not allowed; expected a DMA alignment mask: 0 or 2^k - 1 (1, 3, 7... 4095...), at most 65535',
    ],
    [
      'pool base not 2 KiB aligned',
      { pools: [{ base: '0x801' }] },
      'config: pools[0].base: "0x801" is not allowed; expected an address (a number, or a string such as "0x80000000") from 0 to 2^52, a multiple of 2048',
    ],
    [
      'bad name',
      { devices: [{ id: 'my disk' }] },
      'config: devices[0].id: "my disk" is not allowed; expected a name of 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
    ],
    [
      'duplicate device id',
      { devices: [{ id: 'a' }, { id: 'a', kind: 'null' }] },
      'config: devices[1].id: "a" is not allowed; expected a name no other entry of devices has ("a" is devices[0])',
    ],
    [
      'unknown pool',
      { devices: [{ pool: 'p9' }] },
      'config: devices[0].pool: "p9" is not allowed; expected the name of a configured pool ("pool0")',
    ],
    [
      'unknown guest',
      { guests: [{ name: 'g' }], devices: [{ guest: 'h' }] },
      'config: devices[0].guest: "h" is not allowed; expected the name of a configured guest ("g")',
    ],
    [
      'a file for a device that has none',
      { devices: [{ kind: 'ram-blk', file: 'x.img' }] },
      'config: devices[0].file: "x.img" is not allowed; expected no file: only a file-blk device has a backing file (this one is ram-blk)',
    ],
    [
      'chaos settings on a device that is not chaos',
      { devices: [{ kind: 'null', chaos: { drop: 1 } }] },
      'config: devices[0].chaos: {"drop":1} is not allowed; expected no chaos settings: only a chaos device takes them (this one is null)',
    ],
    [
      'a chaos rate out of range',
      { devices: [{ kind: 'chaos', chaos: { drop: 2 } }] },
      'config: devices[0].chaos.drop: 2 is not allowed; expected a number from 0 to 1',
    ],
    [
      'guest memory too small',
      { guests: [{ memory: '8MiB' }] },
      'config: guests[0].memory: "8MiB" is not allowed; expected at least 65MiB (or "auto"): its devices need 67117056 bytes for request buffers and queues (blk0: 1 queue x 32 requests x 1MiB; null0: 1 queue x 32 requests x 1MiB)',
    ],
    [
      'guest memory "auto" beyond what a guest can have',
      { devices: [{ queues: 64, depth: 64, maxRequestBytes: '2MiB', queueSize: 1024 }] },
      'config: guests[0].memory: "auto" is not allowed; expected a guest memory of at most 4194240KiB, but its devices need 8590196736 bytes for request buffers and queues (dev0: 64 queues x 64 requests x 2MiB): lower their depth, maxRequestBytes or queues, or spread them over more guests',
    ],
    [
      'guest memory overlapping a pool',
      { guests: [{ base: 0 }] },
      'config: guests[0].base: 0 is not allowed; expected an address range clear of pool "pool0" (0x0-0x3ffffff); guest memory is 0x0-0x40fffff (and 1 more: guests[0].base)',
    ],
    [
      'no pools',
      { pools: [] },
      'config: pools: [] is not allowed; expected a list of 1 to 64 entries',
    ],
    [
      'several problems: the first, and where the others are',
      { mode: 'x', logLevel: 'loud', http: { port: -1 } },
      'config: mode: "x" is not allowed; expected one of "bounce", "direct", "shared" (and 2 more: logLevel, http.port)',
    ],
  ];

  it.each(cases)('%s', (_name, raw, message) => {
    expect(refusal(() => parseConfig(raw))).toBe(message);
  });

  describe('files', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('a missing file', () => {
      const path = join(dir, 'missing.json');
      expect(refusal(() => loadConfig({ file: path }))).toMatch(
        new RegExp(`^config file ${path}: cannot be read: ENOENT`),
      );
    });

    it('a file that is not JSON says where', () => {
      const path = join(dir, 'broken.json');
      writeFileSync(path, '{\n  "mode": "bounce",\n  "http": { port: 80 }\n}\n');
      expect(refusal(() => loadConfig({ file: path }))).toMatch(
        new RegExp(`^config file ${path}: is not valid JSON \\(line 3, column 13\\): `),
      );
    });

    it('a wrong value in a file names the file and the field', () => {
      const path = join(dir, 'wrong.json');
      writeFileSync(
        path,
        JSON.stringify({ devices: [{ id: 'd', kind: 'file-blk', sync: 'sometimes' }] }),
      );
      expect(refusal(() => loadConfig({ file: path }))).toBe(
        `config file ${path}: devices[0].sync: "sometimes" is not allowed; expected one of "durable", "none"`,
      );
    });
  });
});
