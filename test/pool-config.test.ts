/**
 * Pools declared in the kernel's terms, on every command that takes one: the
 * config's `swiotlb`, `restricted`, `size`, `slots`/`areas` and `kernel`; serve's
 * --kernel, --swiotlb and --restricted; the fio job options kernel=, swiotlb=,
 * restricted= and backpressure=. And the pools' placement (`placement`, serve's
 * --placement, the job option placement=, bounce-tuned). Each form builds the pool the kernel builds
 * (hand-worked against round_up_default_nslabs() and rmem_swiotlb_device_init()),
 * and each combination the kernel has no words for is one clear error.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { serveCommand } from '../src/cli/serve.js';
import { parseConfig, toMediatorSpec } from '../src/config/index.js';
import { poolGeometryOptions } from '../src/config/schema.js';
import { isMediatorError } from '../src/errors.js';
import { defaultSpinMicrosFor, serviceDeviceSpinMicros } from '../src/mediator/defaults.js';
import { Mediator } from '../src/mediator/mediator.js';
import { describeService } from '../src/server/run.js';
import { computeGeometry, defaultAreaCount } from '../src/swiotlb/geometry.js';
import { parseJobFile } from '../src/workload/fio-job.js';
import { jobConfig, jobPool, jobPoolGeometry } from '../src/workload/job-config.js';

const MiB = 2 ** 20;

function refusal(fn: () => unknown, code = 'MEDIATOR_BAD_CONFIG'): string {
  try {
    fn();
  } catch (err) {
    expect(isMediatorError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    return (err as Error).message;
  }
  throw new Error('accepted');
}

/** The geometry the (first) pool of a config builds. */
const geometryOf = (raw: unknown) =>
  computeGeometry(poolGeometryOptions(parseConfig(raw).pools[0]!));

describe("config: a pool in the kernel's terms", () => {
  it('"swiotlb": "3000,3" is swiotlb=3000,3: 4096 slots in 4 areas, with the kernel\'s lines', () => {
    const c = parseConfig({ pools: [{ swiotlb: '3000,3' }] });
    // Resolved as the same kernel parameter: slots and areas before the rounding.
    expect(c.pools[0]).toMatchObject({ slots: 3000, areas: 3 });
    expect(c.pools[0]!.size).toBeUndefined();
    const g = geometryOf({ pools: [{ swiotlb: 'swiotlb=3000,3' }] });
    expect([g.kind, g.nslabs, g.nareas, g.areaNslabs]).toEqual(['default', 4096, 4, 1024]);
    expect(g.log).toEqual([
      'software IO TLB: area num 4.',
      'software IO TLB: SWIOTLB bounce buffer size roundup to 8MB',
      'software IO TLB: mapped [mem 0x0000000000000000-0x0000000000800000] (8MB)',
    ]);
  });

  it('"swiotlb": "640,8" builds 1024 slots in 8 areas of 128; ",4" only sets the areas', () => {
    const g = geometryOf({ pools: [{ swiotlb: '640,8' }] });
    expect([g.nslabs, g.nareas, g.areaNslabs]).toEqual([1024, 8, 128]);
    const areasOnly = geometryOf({ pools: [{ swiotlb: ',4' }] });
    expect([areasOnly.nslabs, areasOnly.nareas]).toEqual([32768, 4]);
  });

  it("slots/areas are the same parameter; size is swiotlb_adjust_size(); nothing is Linux's default", () => {
    expect(geometryOf({ pools: [{ slots: 10240, areas: 2 }] }).nslabs).toBe(16384);
    const sized = geometryOf({ pools: [{ size: '10MiB', areas: 2 }] });
    // ALIGN(10 MiB, 2 KiB) = 5120 slots, already whole segments, then a power of two.
    expect(sized.nslabs).toBe(8192);
    expect(sized.log).toContain('software IO TLB: SWIOTLB bounce buffer size adjusted to 16MB');
    const dflt = geometryOf({});
    expect([dflt.nslabs, dflt.nareas]).toEqual([32768, defaultAreaCount()]);
    expect(dflt.log.some((l) => l.includes('adjusted'))).toBe(false);
  });

  it('"restricted": a restricted-dma-pool of exact slots in one area, never rounded', () => {
    const c = parseConfig({ pools: [{ restricted: '400KiB', base: '0x50000000' }] });
    expect(c.pools[0]).toMatchObject({ restricted: 400 * 1024, base: 0x5000_0000 });
    expect(c.pools[0]!.areas).toBeUndefined();
    const g = geometryOf({ pools: [{ restricted: '400KiB', base: '0x50000000' }] });
    expect([g.kind, g.nslabs, g.nareas]).toEqual(['restricted', 200, 1]);
    expect(g.log).toEqual([
      'software IO TLB: Reserved memory: created restricted DMA pool at 0x0000000050000000, size 0 MiB',
    ]);
    const spec = toMediatorSpec(c).pools[0]!;
    expect(spec).toMatchObject({ restricted: true, size: 400 * 1024, kernel: '6.10' });
  });

  it("kernel: every pool follows the config's kernel", () => {
    const c = parseConfig({ kernel: '6.1', pools: [{ swiotlb: '1024,1' }] });
    expect(c.kernel).toBe('6.1');
    expect(toMediatorSpec(c).pools[0]!.kernel).toBe('6.1');
    expect(refusal(() => parseConfig({ kernel: '6.8' }))).toBe(
      'config: kernel: "6.8" is not allowed; expected one of "6.1", "6.6", "6.10"',
    );
  });

  it("a Mediator built from it runs the pool the kernel builds, with the kernel's rules", async () => {
    const c = parseConfig({
      kernel: '6.6',
      // The kernel's own placement, so that the pools run as 6.6 runs them.
      placement: 'linux',
      pools: [{ swiotlb: '3000,3' }, { name: 'rmem', restricted: '1MiB', base: '0x10000000' }],
      devices: [
        { id: 'a', capacity: '1MiB', maxRequestBytes: '64KiB' },
        { id: 'b', pool: 'rmem', capacity: '1MiB', maxRequestBytes: '64KiB' },
      ],
      copy: { workers: 0 },
    });
    const m = new Mediator(toMediatorSpec(c));
    try {
      const a = m.pools.get('pool0')!.pool;
      const b = m.pools.get('rmem')!.pool;
      expect([a.kernel, a.geometry.nslabs, a.geometry.nareas]).toEqual(['6.6', 4096, 4]);
      expect([b.kernel, b.geometry.kind, b.geometry.nslabs, b.geometry.nareas]).toEqual([
        '6.6',
        'restricted',
        512,
        1,
      ]);
      expect(describeService(c)).toMatch(
        /bounce mode, Linux 6\.6 swiotlb rules; pools: pool0 8MiB \(4096 slots, 4 areas; requeue-bounded, at most 5000 ms\), rmem 1MiB \(restricted-dma-pool, 512 slots, 1 area; requeue-bounded, at most 5000 ms\)/,
      );
    } finally {
      await m.close();
    }
  });

  it.each([
    [
      'restricted with swiotlb',
      { pools: [{ restricted: '4MiB', swiotlb: '2048,1' }] },
      'config: pools[0].swiotlb: "2048,1" is not allowed; expected nothing beside "restricted": a restricted-dma-pool is given by its size alone (exact slots, one area), and swiotlb is for a default pool (swiotlb=)',
    ],
    [
      'swiotlb with slots',
      { pools: [{ swiotlb: '2048,1', slots: 4096 }] },
      'config: pools[0].slots: 4096 is not allowed; expected either "swiotlb" or "slots"/"areas": "swiotlb": "N,A" is slots N and areas A',
    ],
    [
      'size with slots',
      { pools: [{ size: '8MiB', slots: 4096 }] },
      'config: pools[0].size: "8MiB" is not allowed; expected no size beside a slot count: swiotlb_adjust_size() leaves a swiotlb=<nslabs> as given, unless it is 32768 (the default count, which it resizes); give one of them',
    ],
    [
      'swiotlb force',
      { pools: [{ swiotlb: '2048,1,force' }] },
      'config: pools[0].swiotlb: "2048,1,force" is not allowed; expected the kernel parameter\'s value, "<nslabs>[,<nareas>]" (e.g. "8192,2", "swiotlb=8192,2" or ",4"), as setup_io_tlb_npages() reads it, without "force" or "noforce": in bounce mode every I/O is bounced (force), and a pool that bounces nothing (noforce) has nothing to run',
    ],
    [
      'swiotlb not a parameter',
      { pools: [{ swiotlb: '8MiB' }] },
      'config: pools[0].swiotlb: "8MiB" is not allowed; expected the kernel parameter\'s value, "<nslabs>[,<nareas>]" (e.g. "8192,2", "swiotlb=8192,2" or ",4"), as setup_io_tlb_npages() reads it',
    ],
    [
      'dynamic',
      { pools: [{ dynamic: true }] },
      'config: pools[0].dynamic: true is not allowed; expected false: the service\'s pools never grow (a device thread is handed one fixed region at start); "size --dynamic" and "replay --dynamic" show what CONFIG_SWIOTLB_DYNAMIC changes',
    ],
    [
      'a pool over 1 GiB',
      { pools: [{ swiotlb: '600000,1' }] },
      'config: pools[0].swiotlb: "600000,1" is not allowed; expected a pool geometry that works: pool of 1048576 slots exceeds the limit of 524288 slots (1 GiB)',
    ],
  ])('%s is refused in one message', (_name, raw, message) => {
    expect(refusal(() => parseConfig(raw))).toBe(message);
  });
});

describe('config: placement', () => {
  it('"warm" unless said (the service\'s default); the top-level value is every pool\'s default, a pool may set its own', async () => {
    const plain = parseConfig({});
    expect(plain.placement).toBe('warm');
    expect(plain.pools.map((p) => p.placement)).toEqual(['warm', 'warm']);
    const kernelLike = parseConfig({ placement: 'linux' });
    expect(kernelLike.pools.map((p) => p.placement)).toEqual(['linux', 'linux']);
    const c = parseConfig({
      placement: 'warm',
      pools: [
        {},
        { name: 'kernel-like', placement: 'linux', restricted: '1MiB', base: '0x10000000' },
      ],
      devices: [
        { id: 'a', capacity: '1MiB', maxRequestBytes: '64KiB' },
        { id: 'b', pool: 'kernel-like', capacity: '1MiB', maxRequestBytes: '64KiB' },
      ],
      copy: { workers: 0 },
    });
    expect(c.pools.map((p) => [p.name, p.placement])).toEqual([
      ['pool0', 'warm'],
      ['kernel-like', 'linux'],
    ]);
    expect(toMediatorSpec(c).pools.map((p) => p.placement)).toEqual(['warm', 'linux']);
    const areas = defaultAreaCount();
    expect(describeService(c)).toContain(
      `pools: pool0 64MiB (32768 slots, ${areas} area${areas > 1 ? 's' : ''}; requeue-bounded, at most 5000 ms; warm placement, not the kernel's), ` +
        'kernel-like 1MiB (restricted-dma-pool, 512 slots, 1 area; requeue-bounded, at most 5000 ms)',
    );
    const m = new Mediator(toMediatorSpec(c));
    try {
      expect(m.pools.get('pool0')!.pool.placement).toBe('warm');
      expect(m.pools.get('kernel-like')!.pool.placement).toBe('linux');
      // Only the main thread maps (devices and copy workers get the data alone):
      // every pool is exclusive, so its maps take no lock.
      expect([...m.pools.values()].map((p) => p.pool.exclusive)).toEqual([true, true]);
    } finally {
      await m.close();
    }
    expect(parseConfig(JSON.parse(JSON.stringify(c)))).toEqual(c);
    expect(refusal(() => parseConfig({ pools: [{ placement: 'hot' }] }))).toBe(
      'config: pools[0].placement: "hot" is not allowed; expected one of "linux", "warm"',
    );
  });
});

describe('config: back-pressure policies', () => {
  it('default requeue-bounded; "wait" is its old name; requeue has no waitMs', () => {
    expect(parseConfig({}).pools[0]!.backpressure).toEqual({
      policy: 'requeue-bounded',
      waitMs: 5000,
    });
    expect(
      parseConfig({ pools: [{ backpressure: { policy: 'wait', waitMs: 10 } }] }).pools[0]!
        .backpressure,
    ).toEqual({ policy: 'requeue-bounded', waitMs: 10 });
    expect(
      parseConfig({ pools: [{ backpressure: { policy: 'requeue' } }] }).pools[0]!.backpressure,
    ).toEqual({ policy: 'requeue' });
  });

  it.each([
    [
      { pools: [{ backpressure: { policy: 'requeue', waitMs: 100 } }] },
      'config: pools[0].backpressure.waitMs: 100 is not allowed; expected no waitMs with policy "requeue", which has no time limit (as Linux\'s virtio-blk); "requeue-bounded" takes one',
    ],
    [
      { pools: [{ backpressure: { policy: 'block' } }] },
      'config: pools[0].backpressure.policy: "block" is not allowed; expected one of "requeue", "requeue-bounded", "fail" ("wait" is the old name of "requeue-bounded")',
    ],
  ])('%j is refused', (raw, message) => {
    expect(refusal(() => parseConfig(raw))).toBe(message);
  });

  it('a resolved config parses back to itself (--print-config round trip)', () => {
    for (const raw of [
      { pools: [{ swiotlb: '3000,3', backpressure: { policy: 'requeue' } }] },
      { pools: [{ restricted: '4MiB', base: '0x40000000' }] },
      { pools: [{ size: '16MiB' }] },
    ]) {
      const c = parseConfig(raw);
      expect(parseConfig(JSON.parse(JSON.stringify(c)))).toEqual(c);
    }
  });
});

describe('serve: --kernel, --placement, --swiotlb and --restricted', () => {
  async function printConfig(args: string[]): Promise<ReturnType<typeof parseConfig>> {
    let out = '';
    const stdout = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    expect(await serveCommand(['--print-config', ...args], { stdout, stderr: stdout })).toBe(0);
    return JSON.parse(out) as ReturnType<typeof parseConfig>;
  }

  it('declare the first pool, replacing the declaration it had', async () => {
    const c = await printConfig(['--kernel', '6.1', '--swiotlb', '8192,2']);
    expect(c.kernel).toBe('6.1');
    expect(c.pools[0]).toMatchObject({ name: 'pool0', slots: 8192, areas: 2 });
    const r = await printConfig(['--restricted', '4MiB']);
    expect(r.pools[0]).toMatchObject({ name: 'pool0', restricted: 4 * MiB });
    expect(r.pools[0]!.areas).toBeUndefined();
  });

  it('on the embedded default, each device keeps a pool of its own; the second starts where the first ends', async () => {
    const own = (c: ReturnType<typeof parseConfig>) =>
      c.devices.map((d) => [d.id, d.pool, c.pools.find((p) => p.name === d.pool)!.base]);
    // --swiotlb 65536: a 128 MiB first pool, over the 64 MiB where the second lay.
    expect(own(await printConfig(['--swiotlb', '65536']))).toEqual([
      ['blk0', 'pool0', 0],
      ['null0', 'pool1', 128 * MiB],
    ]);
    expect(own(await printConfig(['--restricted', '4MiB']))).toEqual([
      ['blk0', 'pool0', 0],
      ['null0', 'pool1', 4 * MiB],
    ]);
    expect(own(await printConfig([]))).toEqual([
      ['blk0', 'pool0', 0],
      ['null0', 'pool1', 64 * MiB],
    ]);
  });

  it("--placement sets the pools' default; a pool of the file that sets its own keeps it", async () => {
    const c = await printConfig(['--placement', 'warm']);
    expect(c.placement).toBe('warm');
    expect(c.pools.map((p) => p.placement)).toEqual(['warm', 'warm']);
    const sink = new Writable({ write: (_c, _e, done) => done() });
    await expect(
      serveCommand(['--print-config', '--placement', 'lifo'], { stdout: sink, stderr: sink }),
    ).rejects.toThrow(
      'config: placement (--placement): "lifo" is not allowed; expected one of "linux", "warm"',
    );
  });

  it('a bad value names its flag; both flags at once are refused', async () => {
    const sink = new Writable({ write: (_c, _e, done) => done() });
    await expect(
      serveCommand(['--print-config', '--swiotlb', 'lots'], { stdout: sink, stderr: sink }),
    ).rejects.toThrow(/^config: pools\[0\]\.swiotlb \(--swiotlb\): "lots" is not allowed/);
    await expect(
      serveCommand(['--print-config', '--kernel', '5.15'], { stdout: sink, stderr: sink }),
    ).rejects.toThrow(/^config: kernel \(--kernel\): "5\.15" is not allowed/);
    await expect(
      serveCommand(['--swiotlb', '1024', '--restricted', '4MiB'], { stdout: sink, stderr: sink }),
    ).rejects.toMatchObject({ code: 'CLI_USAGE' });
  });
});

describe('fio job options: kernel=, swiotlb=, restricted=, backpressure=, placement=', () => {
  const job = (global: string) => parseJobFile(`[global]\n${global}\n[j]\nrw=read\nnumjobs=2\n`);

  it('placement=warm puts the pool on warm placement; bounce-tuned always runs it, shared unless told', () => {
    expect(job('').settings.placement).toBe(undefined);
    const placementOf = (global: string, mode: Parameters<typeof jobConfig>[1]) =>
      parseConfig(jobConfig(job(global), mode)).pools[0]!.placement;
    expect(placementOf('', 'bounce')).toBe('linux');
    expect(placementOf('placement=warm', 'bounce')).toBe('warm');
    expect(placementOf('', 'bounce-tuned')).toBe('warm');
    expect(placementOf('placement=linux', 'bounce-tuned')).toBe('warm');
    // Shared mode as the service runs it, unless the job says otherwise.
    expect(placementOf('', 'shared')).toBe('warm');
    expect(placementOf('placement=linux', 'shared')).toBe('linux');
  });

  it("a job's device threads poll as a closed loop's do, not as the HTTP service's", () => {
    // numjobs=2: two queues, two device threads.
    const devices = parseConfig(jobConfig(job(''), 'bounce')).devices;
    expect(devices.map((d) => d.spinMicros)).toEqual([defaultSpinMicrosFor([{ queues: 2 }])]);
    // On 2 CPUs the two rules part: 50 against 0 (with 4, 200 against 200).
    expect(defaultSpinMicrosFor([{ queues: 2 }], 2)).toBe(50);
    expect(serviceDeviceSpinMicros([{ queues: 2 }], 2)).toBe(0);
    expect(refusal(() => job('placement=fifo'), 'JOB_BAD_FILE')).toBe(
      'job file:2: [j] placement=fifo: must be linux or warm',
    );
    expect(() => parseJobFile('[a]\nplacement=warm\n[b]\nplacement=linux\n')).toThrow(
      /"placement" differs between jobs/,
    );
  });

  it('swiotlb=10240,2 runs on the pool the kernel builds: 16384 slots, with its log', () => {
    const jf = job('swiotlb=10240,2\nkernel=6.6\nbackpressure=requeue');
    expect(jf.settings).toMatchObject({
      slots: 10240,
      areas: 2,
      kernel: '6.6',
      backpressure: 'requeue',
    });
    const g = jobPoolGeometry(jf);
    expect([g.nslabs, g.nareas]).toEqual([16384, 2]);
    expect(g.log).toContain('software IO TLB: SWIOTLB bounce buffer size roundup to 32MB');
    const c = parseConfig(jobConfig(jf, 'bounce'));
    expect(c.kernel).toBe('6.6');
    expect(c.pools[0]!.backpressure).toEqual({ policy: 'requeue' });
  });

  it("restricted=4m is a restricted-dma-pool; the default pool takes the job's areas", () => {
    expect(jobPool(job('restricted=4m'))).toEqual({ restricted: 4 * MiB });
    expect(jobPoolGeometry(job('restricted=4m'))).toMatchObject({
      kind: 'restricted',
      nslabs: 2048,
      nareas: 1,
    });
    // No pool option: Linux's default pool, areas = the largest numjobs.
    expect(jobPool(job(''))).toEqual({ areas: 2 });
    expect(jobPoolGeometry(job('')).nslabs).toBe(32768);
    // backpressure=wait: the old name.
    expect(job('backpressure=wait').settings.backpressure).toBe('requeue-bounded');
  });

  it.each([
    ['kernel=5.10', /kernel=5\.10: must be 6\.1, 6\.6, 6\.10/],
    ['swiotlb=8192,2,force', /swiotlb=8192,2,force: must be <nslabs>\[,<nareas>\]/],
    ['swiotlb=8192,2\nareas=4', /gives the areas, and so does areas=/],
    ['swiotlb=8192\npool_size=16m', /the kernel ignores the size \(swiotlb_adjust_size\(\)\)/],
    ['restricted=4m\nareas=2', /a restricted-dma-pool is given by its size alone.*no areas=/],
    ['backpressure=block', /must be requeue \(Linux's virtio-blk\), requeue-bounded/],
  ])('%s is refused (JOB_BAD_FILE)', (opts, message) => {
    expect(refusal(() => job(opts), 'JOB_BAD_FILE')).toMatch(message);
  });
});
