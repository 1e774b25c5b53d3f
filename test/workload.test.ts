import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { isMediatorError } from '../src/errors.js';
import { deviceGuestLayout } from '../src/mediator/blk-options.js';
import { maxMappingSize } from '../src/swiotlb/dma-rules.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { wrapDelta32 } from '../src/util/wrap32.js';
import { type JobMode, modesOf, parseFioTime, parseJobFile } from '../src/workload/fio-job.js';
import { renderHtml } from '../src/workload/html.js';
import { jobConfig, queueSizeFor } from '../src/workload/job-config.js';
import { Progress } from '../src/workload/progress.js';
import { buildReport } from '../src/workload/report.js';
import { busyShare, windowDeltas } from '../src/workload/results.js';
import { runJobFile } from '../src/workload/runner.js';
import type { CounterSnapshot } from '../src/workload/sampling.js';
import { openRig } from '../src/workload/setup.js';
import { adviseSize, roundedSlots, simulate } from '../src/workload/sizing.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;

function caught(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('fio job files', () => {
  it('parses fio syntax: comments, sizes, bssplit, bare time_based, sections inheriting [global]', () => {
    const jf = parseJobFile(`
; comment
# another comment
[global]
bs=4k
iodepth=16
size=1m
time_based
runtime=2m ; inline comment
ioengine=libaio
group_reporting

[a]
rw=randread

[b]
rw=readwrite
bssplit=4k/50:64k/50
rwmixread=70
numjobs=3
size=1g

[global]
iodepth=4

[c]
rw=randwrite
bs=512,8k
number_ios=100
time_based=0
`);
    expect(jf.jobs.map((j) => j.name)).toEqual(['a', 'b', 'c']);
    const [a, b, c] = jf.jobs as [(typeof jf.jobs)[0], (typeof jf.jobs)[0], (typeof jf.jobs)[0]];
    expect(a.rw).toBe('randread');
    expect(a.bs.read).toEqual([{ size: 4096, percent: 100 }]);
    expect(a.iodepth).toBe(16);
    expect(a.size).toBe(2 ** 20);
    expect(a.timeBased).toBe(true);
    expect(a.runtime).toBe(120);
    expect(b.rw).toBe('rw');
    expect(b.bs.read).toEqual([
      { size: 4096, percent: 50 },
      { size: 65536, percent: 50 },
    ]);
    expect(b.rwmixread).toBe(70);
    expect(b.numjobs).toBe(3);
    expect(b.size).toBe(2 ** 30);
    // A later [global] applies to the jobs after it only.
    expect(b.iodepth).toBe(16);
    expect(c.iodepth).toBe(4);
    expect(c.bs.read[0]!.size).toBe(512);
    expect(c.bs.write[0]!.size).toBe(8192);
    expect(c.numberIos).toBe(100);
    expect(c.timeBased).toBe(false);
    // libaio keeps the depth as in fio: nothing to warn of; direct unset (buffered in fio) is.
    expect(jf.warnings.join('\n')).not.toMatch(/ioengine/);
    expect(jf.warnings.join('\n')).toMatch(/direct unset/);
    // group_reporting is honoured now (one merged entry per group): no warning.
    expect(jf.warnings.join('\n')).not.toMatch(/group_reporting/);
    expect(parseFioTime('500ms')).toBe(0.5);
    expect(parseFioTime('30s')).toBe(30);
    expect(parseFioTime('10')).toBe(10);
  });

  it('bssplit entries without a percentage share the rest; read,write splits', () => {
    const jf = parseJobFile('[x]\nrw=randrw\nbssplit=4k/50:8k:16k,64k/100\n');
    expect(jf.jobs[0]!.bs.read.map((e) => [e.size, e.percent])).toEqual([
      [4096, 50],
      [8192, 25],
      [16384, 25],
    ]);
    expect(jf.jobs[0]!.bs.write).toEqual([{ size: 65536, percent: 100 }]);
  });

  it('rwmixread and rwmixwrite both given: the later line wins, as fio says', () => {
    const mix = (text: string) => parseJobFile(text).jobs[0]!.rwmixread;
    expect(mix('[x]\nrw=randrw\nrwmixread=70\nrwmixwrite=70\n')).toBe(30);
    expect(mix('[x]\nrw=randrw\nrwmixwrite=70\nrwmixread=70\n')).toBe(70);
    // A job's own line comes after its [global]'s.
    expect(mix('[global]\nrwmixread=90\n[x]\nrw=randrw\nrwmixwrite=40\n')).toBe(60);
    expect(() => mix('[x]\nrw=randrw\nrwmixwrite=70\nrwmixread=170\n')).toThrow();
    expect(() => mix('[x]\nrw=randrw\nrwmixread=70\nrwmixwrite=170\n')).toThrow();
  });

  it('takes every mode, mode=all, and from_device_bounce; the job config says what runs', () => {
    // No mode=: the service's bounce (warm placement, reads without the copy-in);
    // mode=bounce is Linux's, its reads bounced as Linux bounces them.
    expect(parseJobFile('[x]\n').settings).toMatchObject({
      mode: 'bounce-tuned',
      fromDeviceBounce: 'linux',
    });
    for (const mode of ['bounce', 'bounce-tuned', 'shared', 'direct', 'both', 'all'] as const) {
      expect(parseJobFile(`[global]\nmode=${mode}\n[x]\n`).settings.mode).toBe(mode);
    }
    expect(modesOf('all')).toEqual(['bounce', 'bounce-tuned', 'shared', 'direct']);
    expect(modesOf('both')).toEqual(['bounce', 'direct']);
    const jf = parseJobFile('[global]\nfrom_device_bounce=used-length\n[x]\n');
    expect(jf.settings.fromDeviceBounce).toBe('used-length');
    const config = (mode: JobMode, j = jf) => parseConfig(jobConfig(j, mode));
    expect(config('bounce')).toMatchObject({ mode: 'bounce', fromDeviceBounce: 'used-length' });
    const linux = parseJobFile('[x]\n');
    expect(config('bounce', linux).devices[0]!.fromDeviceBounce).toBe('linux');
    // bounce-tuned: bounce with reads without the copy-in, whatever the job says.
    expect(config('bounce-tuned', linux)).toMatchObject({ mode: 'bounce' });
    expect(config('bounce-tuned', linux).devices[0]!.fromDeviceBounce).toBe('used-length');
    expect(config('shared', linux).mode).toBe('shared');
  });

  it('reports unsupported options by name, all of them', () => {
    const err = caught(() =>
      parseJobFile('[global]\nverify=crc32c\n[x]\nrw=read\nrate=10m\nfsync=1\n', 'j.fio'),
    );
    expect(isMediatorError(err, 'JOB_UNSUPPORTED_OPTION')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toMatch(/verify \(line 2\)/);
    expect(msg).toMatch(/rate \(line 5\)/);
    expect(msg).toMatch(/fsync \(line 6\)/);
  });

  it('rejects values that do not parse, with JOB_BAD_FILE', () => {
    for (const text of [
      '[x]\nrw=trim\n',
      '[x]\nbs=4q\n',
      '[x]\nbs=1000\n',
      '[x]\nbssplit=4k/60:8k/60\n',
      '[x]\ntime_based\n',
      '[x]\nmode=sideways\n',
      '[x]\nfrom_device_bounce=skip\n',
      '[a]\nfrom_device_bounce=linux\n[b]\nfrom_device_bounce=used-length\n',
      '[x]\nmin_align_mask=4000\n',
      'rw=read\n',
      '[global]\nbs=4k\n',
      '[a]\nmode=bounce\n[b]\nmode=direct\n',
    ]) {
      const err = caught(() => parseJobFile(text));
      expect(isMediatorError(err, 'JOB_BAD_FILE'), text).toBe(true);
    }
  });
});

const SHORT_JOB = `
[global]
ioengine=libaio
size=32m
iodepth=4
number_ios=400
copy_workers=0
pool_size=4m

[reader]
rw=randread
bs=4k
numjobs=2

[writer]
rw=write
bssplit=4k/50:64k/50
`;

function checkDirection(d: Record<string, unknown>) {
  for (const k of ['iops', 'bw_bytes', 'io_bytes', 'runtime', 'total_ios', 'lat_ns']) {
    expect(d, k).toHaveProperty(k);
  }
  const lat = d.lat_ns as Record<string, unknown>;
  for (const k of ['min', 'max', 'mean']) expect(lat).toHaveProperty(k);
  // fio leaves the percentiles out of a direction without I/O (stat.c add_ddir_lat_json()).
  if (d.total_ios === 0) return;
  const pct = lat.percentile as Record<string, number>;
  for (const k of ['50.000000', '90.000000', '99.000000', '99.900000']) {
    expect(pct).toHaveProperty(k);
  }
}

describe('the max mapping size, one rule for the pool, the driver and the runner', () => {
  it('is 256 KiB less roundup(min_align_mask, 2 KiB), by hand', () => {
    expect(maxMappingSize(0)).toBe(256 * 1024);
    expect(maxMappingSize(511)).toBe(254 * 1024);
    expect(maxMappingSize(4095)).toBe(252 * 1024);
    expect(maxMappingSize(65535)).toBe(192 * 1024);
    const pool = SwiotlbPool.create({ size: 2 ** 20, areas: 1, area: 0 });
    for (const mask of [0, 1, 511, 2047, 4095, 8191, 65535]) {
      expect(pool.maxMappingSize(mask), `mask ${mask}`).toBe(maxMappingSize(mask));
    }
  });

  it("splits the driver's requests and sizes the runner's queues", () => {
    const shape = { queues: 1, queueSize: 1024, depth: 1, maxRequestBytes: 256 * 1024 };
    // NVMe's 4095: 252 KiB segments, so 256 KiB takes two data descriptors, not one.
    expect(deviceGuestLayout({ ...shape, minAlignMask: 0 }, 'bounce')).toMatchObject({
      segmentBytes: 256 * 1024,
      maxDescs: 3,
    });
    expect(deviceGuestLayout({ ...shape, minAlignMask: 4095 }, 'bounce')).toMatchObject({
      segmentBytes: 252 * 1024,
      maxDescs: 4,
    });
    // 85 requests of 3 descriptors fit 256; of 4 they need 512.
    const job = (mask: number) =>
      parseJobFile(`[x]\nioengine=libaio\nbs=256k\niodepth=85\nmin_align_mask=${mask}\n`).jobs[0]!;
    expect(queueSizeFor(job(0), 256 * 1024)).toBe(256);
    expect(queueSizeFor(job(4095), 256 * 1024)).toBe(512);
  });
});

describe('bench runner', () => {
  it('runs a short job in bounce, direct, both and all; numbers agree with the counters', async () => {
    for (const mode of ['bounce', 'direct', 'both', 'all'] as const) {
      const jf = parseJobFile(SHORT_JOB.replace('[global]', `[global]\nmode=${mode}`));
      const results = await runJobFile(jf);
      const report = JSON.parse(JSON.stringify(buildReport(jf, results, 'test')));
      const modes = modesOf(mode);
      expect(report.jobs).toHaveLength(3 * modes.length);
      for (const job of report.jobs) {
        expect(typeof job.jobname).toBe('string');
        checkDirection(job.read);
        checkDirection(job.write);
        expect(job.error).toBe(0);
        const d = job.jobname === 'reader' ? job.read : job.write;
        expect(d.total_ios).toBe(400);
        // IOPS × runtime ≈ I/Os (runtime is rounded to the ms)
        expect(Math.abs((d.iops * d.runtime) / 1000 - d.total_ios)).toBeLessThanOrEqual(
          d.total_ios * 0.01 + 1,
        );
        expect(d.lat_ns.min).toBeLessThanOrEqual(d.lat_ns.percentile['50.000000']);
        expect(d.lat_ns.percentile['99.000000']).toBeLessThanOrEqual(d.lat_ns.max);
      }
      for (const m of modes) {
        const total = report.total[m];
        expect(total.read.total_ios).toBe(800);
        expect(total.write.total_ios).toBe(400);
        expect(total.all.total_ios).toBe(1200);
        const med = report.mediator[m];
        expect(med.pool).toHaveProperty('used_hiwater_slots');
        expect(med.pool).toHaveProperty('used_hiwater_percent');
        expect(med.pool.map_failures).toEqual({
          full: 0,
          too_large: 0,
          invalid: 0,
          kernel_defect: 0,
        });
        expect(med.backpressure).toHaveProperty('waits');
        expect(med.backpressure).toHaveProperty('wait_seconds');
        // Each device's threads did some work in the window, never more than all of it.
        for (const dev of med.devices) {
          expect(dev.busy).not.toBeNull();
          expect(dev.busy).toBeGreaterThanOrEqual(0);
          expect(dev.busy).toBeLessThanOrEqual(1);
        }
        if (m === 'bounce' || m === 'bounce-tuned') {
          // Reads copy back what was read; writes copy the data in.
          expect(med.bounced_bytes.from_device).toBeGreaterThanOrEqual(total.read.io_bytes);
          expect(med.bounced_bytes.to_device).toBeGreaterThanOrEqual(total.write.io_bytes);
          expect(med.pool.used_hiwater_slots).toBeGreaterThan(med.pool.queue_slots);
          if (m === 'bounce') {
            // Linux copies every read buffer in as well.
            expect(med.bounced_bytes.to_device).toBeGreaterThanOrEqual(
              total.write.io_bytes + total.read.io_bytes,
            );
          } else {
            // Reads without the copy-in: only the data written and 16-byte headers go in.
            expect(med.bounced_bytes.to_device).toBeLessThanOrEqual(
              total.write.io_bytes + 16 * total.all.total_ios,
            );
          }
        } else {
          expect(med.bounced_bytes).toEqual({ to_device: 0, from_device: 0 });
        }
      }
      if (mode === 'both' || mode === 'all') {
        const c = report.comparison.bounce_over_direct;
        expect(report.comparison.over_direct.bounce).toEqual(c);
        expect(Object.keys(report.comparison.over_direct)).toEqual(
          modes.filter((m) => m !== 'direct'),
        );
        expect(c.all.iops).toBeGreaterThan(0);
        expect(c.all.bw_bytes).toBeGreaterThan(0);
        expect(c.all.lat_p99_ns).toBeGreaterThan(0);
        const html = renderHtml(report, 'test');
        expect(html).toMatch(/<svg/);
        expect(html).not.toMatch(/https?:\/\//);
        // The page's parts in their order: one table row and one ratio per mode,
        // then the charts (no slot map: the run did not capture one).
        expect(html.match(/<tr><td>[a-z-]+<\/td>/g)).toEqual(modes.map((m) => `<tr><td>${m}</td>`));
        // Each row ends with its devices' threads' busy share, as the report has it.
        for (const m of modes) {
          const busy = report.mediator[m]!.devices.map(
            (d: { id: string; busy: number | null }) =>
              `${d.id} ${d.busy === null ? 'n/a' : `${(d.busy * 100).toFixed(1)}%`}`,
          );
          expect(html).toContain(`<td>${busy.join(', ')}</td></tr>`);
        }
        expect(html.match(/<b>[a-z-]+ ÷ direct<\/b>/g)).toEqual(
          modes.filter((m) => m !== 'direct').map((m) => `<b>${m} ÷ direct</b>`),
        );
        expect(html.match(/<h3>[A-Z][a-z]+ [a-z]+/g)).toEqual([
          '<h3>Throughput over',
          '<h3>Total latency',
          '<h3>Pool occupancy',
          '<h3>Bounce vs',
          '<h3>Bounce vs',
        ]);
        expect(html.indexOf('</table>')).toBeLessThan(html.indexOf('<h3>'));
      } else {
        expect(report.comparison).toBeUndefined();
      }
    }
  });
});

describe('counters that wrap at 2^32', () => {
  const W = 2 ** 32;

  it('wrapDelta32 counts across the wrap, by hand', () => {
    expect(wrapDelta32(10, 3)).toBe(7);
    expect(wrapDelta32(0x10, 0xffff_fff0)).toBe(0x20);
    expect(wrapDelta32(0, W - 1)).toBe(1);
    expect(wrapDelta32(5, 5)).toBe(0);
    // Sums of several wrapping words (the pool's per-area maps) go past 2^32.
    expect(wrapDelta32(W + 7, W - 3)).toBe(10);
    expect(wrapDelta32(3, 2 * W - 1)).toBe(4);
  });

  it('wrapDelta32 gives back any step below 2^32, from anywhere', () => {
    fc.assert(
      fc.property(fc.nat(W - 1), fc.nat(W - 1), fc.nat(64), (start, step, areas) => {
        // One word, and a sum of `areas` words whose total moved by `step`.
        expect(wrapDelta32((start + step) % W, start)).toBe(step);
        const before = start + areas * (W - 1);
        expect(wrapDelta32(before + step, before)).toBe(step);
      }),
    );
  });

  it("the runner counts the pool's maps and failures across the wrap", () => {
    const pool = SwiotlbPool.create({ size: 2 ** 20, areas: 1, area: 0 });
    const gate = { waits: 1, requeues: 1, waitSeconds: 0.5, timeouts: 0, waiting: 0 };
    const engine = (bytes: number) => ({
      to_device: { bytes, copies: bytes / 4096, seconds: 0 },
      from_device: { bytes: 0, copies: 0, seconds: 0 },
    });
    const at = (maps: number, full: number, copied: number): CounterSnapshot => ({
      at: 0,
      deviceIdleMs: [],
      engine: engine(copied),
      gate,
      pool: {
        ...pool.stats(),
        maps,
        map_failures: { full, too_large: 0, invalid: 1, kernel_defect: 0 },
      },
    });
    const d = windowDeltas(at(W - 100, W - 1, 2 ** 40), at(900, 2, 2 ** 40 + 8192));
    expect(d.maps).toBe(1000);
    expect(d.map_failures).toEqual({ full: 3, too_large: 0, invalid: 0, kernel_defect: 0 });
    // The copy engine's counters are Float64: plain differences beyond 2^32.
    expect(d.bounced_bytes.to_device).toBe(8192);
    expect(d.copies.to_device).toBe(2);
    expect(d.backpressure).toEqual({ requeues: 0, waits: 0, wait_seconds: 0, timeouts: 0 });
  });
});

describe("the devices' busy share in the mediator view (busyShare)", () => {
  it('is 1 less the idle share of all the threads, to 3 decimals', () => {
    // Two threads, 1000 ms: 500 ms idle of 2000 thread-ms.
    expect(busyShare([100, 200], [400, 400], 1000)).toBe(0.75);
    expect(busyShare([5], [5], 10)).toBe(1);
    expect(busyShare([0], [1, 2], 10)).toBeNull();
  });

  it('an idle stretch that began before the window counts whole in it: never below 0', () => {
    expect(busyShare([0], [1200], 1000)).toBe(0);
  });

  it('is null when a clock went back, is no number, or there is no interval', () => {
    expect(busyShare([10], [5], 100)).toBeNull();
    expect(busyShare([Number.NaN], [5], 100)).toBeNull();
    expect(busyShare([0], [5], 0)).toBeNull();
    expect(busyShare([], [], 100)).toBeNull();
  });
});

describe('progress', () => {
  const snap = {
    mode: 'bounce' as const,
    ramping: false,
    elapsedMs: 1500,
    fraction: 0.5,
    ios: 1000,
    bytes: 4096000,
    iops: 2000,
    bwBytes: 8192000,
  };
  it('draws a bar in place on a terminal, plain lines otherwise', () => {
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    let out = '';
    tty.on('data', (b: Buffer) => {
      out += b.toString();
    });
    const p = new Progress(tty);
    p.update(snap);
    p.done('finished');
    expect(out.startsWith('\r\u001b[K')).toBe(true);
    expect(out).toMatch(/\[#{12}-{12}\]/);
    const plain = new PassThrough();
    let lines = '';
    plain.on('data', (b: Buffer) => {
      lines += b.toString();
    });
    const q = new Progress(plain);
    q.update(snap);
    q.update({ ...snap, elapsedMs: 1600 }); // within a second: no new line
    q.done('finished');
    expect(lines).toBe('bench: bounce 1.5s 50%: 2000 IOPS, 7.8MiB/s, 1000 I/Os done\nfinished\n');
  });
});

describe('pool sizing', () => {
  const FILLING = `
[global]
areas=1
[mix]
rw=randrw
bssplit=4k/50:64k/30:256k/20
iodepth=32
numjobs=4
min_align_mask=4095
`;

  it('the recommended default pool is one the kernel builds as written, runs clean, and the next smaller one does not or has no margin', () => {
    const jf = parseJobFile(FILLING);
    const advice = adviseSize(jf, { steps: 3000, seed: 7 });
    const rec = advice.recommended_slots!;
    // swiotlb=<rec>,1 is kept as written: a power of two, no "roundup" line.
    expect(roundedSlots(rec, 1)).toBe(rec);
    expect(rec & (rec - 1)).toBe(0);
    const at = simulate(jf, { slots: rec, areas: 1, steps: 3000, seed: 7, queuesInPool: false });
    expect(at.requeues).toBe(0);
    expect(at.waits).toBe(0);
    expect(at.used_hiwater * 1.25).toBeLessThanOrEqual(rec);
    // The kernel builds default pools of a power of two (round_up_default_nslabs()):
    // the next one below the recommendation is half of it, and it either requeues
    // or leaves less than the margin.
    const under = simulate(jf, {
      slots: rec / 2,
      areas: 1,
      steps: 3000,
      seed: 7,
      queuesInPool: false,
    });
    expect(under.requeues > 0 || under.used_hiwater * 1.25 > rec / 2).toBe(true);
    // Deterministic: the same seed gives the same answer.
    expect(
      simulate(jf, { slots: rec / 2, areas: 1, steps: 3000, seed: 7, queuesInPool: false }),
    ).toEqual(under);
  });

  it('a pool far smaller than the load requeues requests and never fails one', () => {
    const jf = parseJobFile(FILLING);
    const r = simulate(jf, { slots: 1024, areas: 1, steps: 2000, seed: 3 });
    expect(r.requeues).toBeGreaterThan(0);
    expect(r.waits).toBeGreaterThanOrEqual(r.requeues);
    expect(r.stalled).toBe(false);
    expect(r.kernel_defects).toBe(0);
  });
});

describe('CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'workload-test-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const cli = (args: string[]) =>
    run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      maxBuffer: 64 * 2 ** 20,
    });

  it('bench --json prints only the report on stdout; progress stays on stderr', async () => {
    const job = join(dir, 'short.fio');
    writeFileSync(
      job,
      '[global]\nioengine=psync\nmode=both\ncopy_workers=0\nsize=4m\n[j]\nrw=randread\nbs=4k\niodepth=2\ntime_based\nruntime=1500ms\n',
    );
    const html = join(dir, 'out.html');
    const { stdout, stderr } = await cli(['bench', '--job', job, '--json', '--html', html]);
    const report = JSON.parse(stdout);
    expect(report.jobs[0].jobname).toBe('j');
    expect(report.jobs[0].read.lat_ns.percentile['99.000000']).toBeGreaterThan(0);
    expect(report.comparison.bounce_over_direct).toHaveProperty('all');
    expect(stderr).toMatch(/ioengine/);
    expect(stderr).toMatch(/bench: bounce /);
    // The kernel's lines for the job's pool (Linux's default: 32768 slots, 1 area).
    expect(stderr).toMatch(/^software IO TLB: area num 1\.$/m);
    expect(stderr).toMatch(
      /^bench: pool default pool of 32768 slots in 1 area\(s\), Linux 6\.10 rules, policy requeue-bounded when full$/m,
    );
    expect(report.mediator.bounce.backpressure).toMatchObject({
      policy: 'requeue-bounded',
      requeues: 0,
    });
    // Not a terminal: plain lines, no carriage returns nor escape sequences.
    expect(stderr.includes('\r')).toBe(false);
    expect(stderr.includes('\u001b[')).toBe(false);
    expect(readFileSync(html, 'utf8')).toMatch(/<svg/);
  });

  it('a ram-blk disk the machine cannot allocate is a config error, not a crash', async () => {
    const jf = parseJobFile(
      '[global]\ndevice=ram-blk\nsize=1t\n[j]\nrw=read\nbs=4k\nnumber_ios=1\n',
    );
    const err = await openRig(jf, 'direct').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMediatorError(err, 'MEDIATOR_BAD_CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(
      /^job file: the mediator cannot be built for mode direct: .*size=/,
    );
  });

  it('bench --html to a path it could not write is refused before the run (exit 2)', async () => {
    const job = join(dir, 'never.fio');
    writeFileSync(job, '[global]\ndevice=null\nsize=4m\n[j]\nrw=read\nbs=4k\nruntime=1m\n');
    for (const [html, why] of [
      [dir, 'is a directory'],
      [join(dir, 'no-such-dir', 'x.html'), 'which does not exist'],
    ] as const) {
      const r = await cli(['bench', '--job', job, '--html', html]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--html: "${html}" `);
      expect(r.stderr).toContain(why);
      // Refused at once: the one-minute job never started.
      expect(r.stderr).not.toMatch(/bench: \S+ done/);
    }
  });

  it("bench says which modes run on warm placement, not the kernel's", async () => {
    const job = join(dir, 'tuned.fio');
    writeFileSync(
      job,
      '[global]\nmode=bounce-tuned\ncopy_workers=0\nsize=4m\n[j]\nrw=randwrite\nbs=64k\niodepth=4\nnumber_ios=200\n',
    );
    const { stderr } = await cli(['bench', '--job', job, '--json']);
    expect(stderr).toMatch(
      /^bench: pool default pool of 32768 slots in 1 area\(s\), Linux 6\.10 rules, policy requeue-bounded when full; warm placement \(not the kernel's\) in bounce-tuned$/m,
    );
    // Every mode: bounce on the kernel's search, shared on warm as the service runs it.
    const all = await cli(['bench', '--job', job, '--json', '--mode', 'all']);
    expect(all.stderr).toMatch(/; warm placement \(not the kernel's\) in bounce-tuned, shared$/m);
  });

  it('bench reports an unsupported option with its code and exit status 2', async () => {
    const job = join(dir, 'bad.fio');
    writeFileSync(job, '[j]\nrw=read\nverify=md5\n');
    const err = await cli(['bench', '--job', job]).catch((e: unknown) => e);
    expect((err as { code: number }).code).toBe(2);
    expect((err as { stderr: string }).stderr).toMatch(/JOB_UNSUPPORTED_OPTION.*verify/);
  });

  it('size says what an oversized pool costs when the advice is far below Linux default', async () => {
    const { stdout } = await cli(['size', '--job', 'examples/jobs/database.fio']);
    const recommended = /Recommended: swiotlb=(\d+),/.exec(stdout);
    expect(recommended).not.toBeNull();
    const times = Math.floor(32768 / Number(recommended![1]));
    expect(times).toBeGreaterThanOrEqual(4);
    expect(stdout).toContain(`Linux's default pool (64.0MiB) is ${times}x this.`);
    expect(stdout).toMatch(/next-fit search walks the whole area/);
    expect(stdout).toContain("to keep Linux's 64 MiB, swiotlb=32768,16 gives areas of 4.0MiB.");
  });

  it('size --json gives swiotlb=, a restricted-dma-pool node and a config', async () => {
    const { stdout } = await cli(['size', '--job', 'examples/jobs/database.fio', '--json']);
    const advice = JSON.parse(stdout);
    expect(advice.kernel_parameter).toMatch(/^swiotlb=\d+,\d+$/);
    expect(advice.device_tree).toMatch(/compatible = "restricted-dma-pool"/);
    expect(advice.device_tree).not.toMatch(/^\s*(no-map|reusable);/m);
    expect(advice.config.pools[0].swiotlb).toBe(
      `${advice.service_pool.recommended_slots},${advice.areas}`,
    );
    expect(advice.kernel_parameter_forced).toBe(`${advice.kernel_parameter},force`);
  });
});
