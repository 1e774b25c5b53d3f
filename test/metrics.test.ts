/**
 * Each metric moves as its events happen, and every labelled series exists at zero
 * from start-up.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config/index.js';
import { toMediatorSpec } from '../src/config/load.js';
import { Mediator } from '../src/mediator/mediator.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { ScrapeCache } from '../src/metrics/registry.js';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { packageVersion } from '../src/util/package-version.js';
import { HISTOGRAM_BOUNDS } from '../src/workers/copy-stats.js';

const MiB = 2 ** 20;

/** metric{labels} -> value, from the text exposition format. */
async function scrape(registry: ReturnType<typeof createMetrics>): Promise<Map<string, number>> {
  const text = await registry.metrics();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function get(m: Map<string, number>, key: string): number {
  const v = m.get(key);
  if (v === undefined) throw new Error(`no series ${key}`);
  return v;
}

describe('metrics', () => {
  let med: Mediator;
  let registry: ReturnType<typeof createMetrics>;
  beforeAll(async () => {
    med = new Mediator({
      copy: { workers: 1, inlineThreshold: 8192 },
      pools: [{ name: 'p0', slots: 256, areas: 2, backpressure: { policy: 'fail' } }],
      guests: [{ name: 'g0', size: 32 * MiB }],
      devices: [
        {
          id: 'blk0',
          kind: 'ram-blk',
          guest: 'g0',
          pool: 'p0',
          capacity: 4 * MiB,
          maxRequestBytes: 256 * 1024,
          depth: 4,
        },
      ],
    });
    registry = createMetrics(med, { defaultMetrics: false });
    await med.device('blk0')!.ready();
  });
  afterAll(async () => {
    await med.close();
  });

  it('has every labelled series at zero before any I/O', async () => {
    const m = await scrape(registry);
    expect(get(m, 'mediator_requests_total{device="blk0",op="write",outcome="ok"}')).toBe(0);
    expect(get(m, 'mediator_device_faults_total{device="blk0",kind="used_len"}')).toBe(0);
    expect(get(m, 'swiotlb_map_failures_total{pool="p0",reason="full"}')).toBe(0);
    expect(get(m, 'mediator_bounce_bytes_total{guest="g0",direction="from_device"}')).toBe(0);
    expect(
      get(m, 'mediator_request_duration_seconds_bucket{device="blk0",op="read",le="+Inf"}'),
    ).toBe(0);
    expect(get(m, 'swiotlb_pool_slots{pool="p0"}')).toBe(256);
    expect(get(m, 'swiotlb_pool_area_used_slots{pool="p0",area="1"}')).toBe(0);
  });

  it('requests, bytes, copies and latency move with one write and one read', async () => {
    const before = await scrape(registry);
    const dev = med.device('blk0')!;
    await dev.write(0, Buffer.alloc(16 * 1024, 1));
    await dev.read(0, 4096);
    const after = await scrape(registry);
    const delta = (k: string) => get(after, k) - get(before, k);
    expect(delta('mediator_requests_total{device="blk0",op="write",outcome="ok"}')).toBe(1);
    expect(delta('mediator_requests_total{device="blk0",op="read",outcome="ok"}')).toBe(1);
    expect(delta('mediator_device_written_bytes_total{device="blk0"}')).toBe(16 * 1024);
    // write: header 16 + data 16384 + status 1 in; read: header 16 + data 4096 + status 1 in.
    expect(delta('mediator_bounce_bytes_total{guest="g0",direction="to_device"}')).toBe(
      16 + 16384 + 1 + 16 + 4096 + 1,
    );
    // back: status of the write; data and status of the read.
    expect(delta('mediator_bounce_bytes_total{guest="g0",direction="from_device"}')).toBe(
      1 + 4096 + 1,
    );
    expect(delta('mediator_bounce_copies_total{guest="g0",direction="to_device"}')).toBe(6);
    expect(delta('mediator_bounce_copies_by_path_total{path="worker"}')).toBe(1); // the 16 KiB copy
    expect(delta('mediator_request_duration_seconds_count{device="blk0",op="read"}')).toBe(1);
    expect(delta('mediator_bounce_copy_size_bytes_bucket{direction="to_device",le="16384"}')).toBe(
      6,
    );
    // The 16-byte headers and 1-byte status bytes, apart from the data (bucket 32 B:
    // the copies too small to time).
    const size = (direction: string, le: number) =>
      delta(`mediator_bounce_copy_size_bytes_bucket{direction="${direction}",le="${le}"}`);
    expect(size('to_device', 32)).toBe(4);
    expect(size('to_device', 64)).toBe(4);
    expect(size('to_device', 512)).toBe(4);
    expect(size('to_device', 4096)).toBe(5);
    expect(size('from_device', 32)).toBe(2);
    expect(size('from_device', 4096)).toBe(3);
    expect(delta('swiotlb_map_attempts_total{pool="p0"}')).toBe(6);
    expect(delta('swiotlb_unmaps_total{pool="p0"}')).toBe(6);
    expect(get(after, 'swiotlb_pool_used_hiwater_slots{pool="p0"}')).toBeGreaterThan(0);
  });

  it('one map failure moves the failure counter by one', async () => {
    const before = await scrape(registry);
    const dev = med.device('blk0')!;
    // 256 slots, some held by the queue: two 256 KiB requests at once cannot both fit.
    const results = await Promise.allSettled([dev.write(0, 256 * 1024), dev.write(0, 256 * 1024)]);
    const failed = results.filter((r) => r.status === 'rejected').length;
    expect(failed).toBe(1);
    const after = await scrape(registry);
    expect(
      get(after, 'swiotlb_map_failures_total{pool="p0",reason="full"}') -
        get(before, 'swiotlb_map_failures_total{pool="p0",reason="full"}'),
    ).toBe(1);
    expect(
      get(after, 'mediator_requests_total{device="blk0",op="write",outcome="full"}') -
        get(before, 'mediator_requests_total{device="blk0",op="write",outcome="full"}'),
    ).toBe(1);
  });

  /** Sets the thread clock to `ms` milliseconds and scrapes. */
  const scrapeWith = (clock: Float64Array, ms: number) => {
    clock[0] = ms;
    return scrape(registry);
  };

  it("a device thread's idle time grows while it has nothing to do; a scribbled clock shows no sample", async () => {
    const dev = med.device('blk0')!;
    // Timed from before the write after which the measured idle stretch begins.
    const t0 = performance.now();
    await dev.write(0, 4096);
    const key = 'mediator_device_thread_idle_seconds_total{device="blk0",queue="0"}';
    const before = get(await scrape(registry), key);
    const s0 = performance.now();
    await new Promise((r) => setTimeout(r, 100));
    const slept = (performance.now() - s0) / 1000;
    // The thread adds its idle stretch when it ends: a request ends it. The stretch
    // holds the sleep (the thread had finished the first write, and the second
    // came after) and lies within the whole, whatever the load on the machine.
    await dev.write(0, 4096);
    const idle = get(await scrape(registry), key) - before;
    const elapsed = (performance.now() - t0) / 1000;
    expect(idle).toBeGreaterThanOrEqual(slept * 0.99);
    expect(idle).toBeLessThanOrEqual(elapsed * 1.01);
    const clock = new Float64Array(dev.workerData(0).clock);
    const kept = clock[0]!;
    clock[0] = Number.NaN;
    expect((await scrape(registry)).has(key)).toBe(false);
    // A clock that went back (the untrusted thread's word) would read as a counter
    // reset: no sample until it passes the last value exported again.
    const exportedMs = get(await scrapeWith(clock, kept), key) * 1000;
    clock[0] = exportedMs / 2;
    expect((await scrape(registry)).has(key)).toBe(false);
    const ahead = exportedMs + 1000;
    expect(get(await scrapeWith(clock, ahead), key)).toBeGreaterThanOrEqual(ahead / 1000);
  });

  it('has one map failure series per reason of the pool stats, kernel_defect included', async () => {
    const m = await scrape(registry);
    const reasons = [...m.keys()]
      .filter((k) => k.startsWith('swiotlb_map_failures_total{pool="p0",'))
      .map((k) => /reason="(\w+)"/.exec(k)![1])
      .sort();
    expect(reasons).toEqual(Object.keys(med.pools.get('p0')!.pool.stats().map_failures).sort());
    expect(reasons).toContain('kernel_defect');
  });

  it('a hiwater reset shows at the next scrape', async () => {
    med.pools.get('p0')!.pool.resetHiwater();
    const m = await scrape(registry);
    expect(get(m, 'swiotlb_pool_used_hiwater_slots{pool="p0"}')).toBe(0);
  });
});

describe('swiotlb_mediator_build_info', () => {
  /** The build_info series of one scrape of the mediator a configuration describes. */
  async function buildInfo(config: unknown): Promise<{ text: string; series: string[] }> {
    const med = new Mediator(toMediatorSpec(parseConfig(config)));
    try {
      const text = await createMetrics(med, { defaultMetrics: false }).metrics();
      const series = text.split('\n').filter((l) => l.startsWith('swiotlb_mediator_build_info'));
      return { text, series };
    } finally {
      await med.close();
    }
  }

  it('is one gauge series at 1: package and Node versions, mode, kernel profile, placement', async () => {
    const { text, series } = await buildInfo({ devices: [] });
    expect(text).toContain('# TYPE swiotlb_mediator_build_info gauge');
    expect(series).toEqual([
      `swiotlb_mediator_build_info{version="${packageVersion()}",node_version="${process.version}",mode="bounce",kernel="6.10",placement="warm",from_device_bounce="none"} 1`,
    ]);
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('says what the configuration set: mode, kernel, and the placements of the pools', async () => {
    const { series } = await buildInfo({
      mode: 'shared',
      kernel: '6.6',
      placement: 'linux',
      pools: [
        { name: 'p0', size: '8MiB' },
        { name: 'p1', size: '8MiB', placement: 'warm' },
      ],
      devices: [],
    });
    expect(series).toHaveLength(1);
    expect(series[0]).toMatch(/\{version="[^"]+",node_version="v[^"]+",mode="shared",/);
    expect(series[0]).toContain('kernel="6.6",placement="linux,warm",from_device_bounce="none"} 1');
    const direct = await buildInfo({ mode: 'direct', placement: 'linux', devices: [] });
    expect(direct.series[0]).toContain(
      'mode="direct",kernel="6.10",placement="linux",from_device_bounce="none"} 1',
    );
  });
});

describe('mediator_bounce_copy_size_bytes buckets', () => {
  it('are powers of two from 32 B (copies not timed) to 512 KiB', () => {
    expect(HISTOGRAM_BOUNDS).toEqual(Array.from({ length: 15 }, (_, i) => 32 * 2 ** i));
  });
});

describe('kernel_defect: what a 6.1 kernel would do wrong, refused and counted', () => {
  let med: Mediator;
  let registry: ReturnType<typeof createMetrics>;
  beforeAll(() => {
    // A pool at 0x800: not page-aligned, which 6.1's swiotlb_alloc() does not check.
    med = new Mediator({
      copy: { workers: 1 },
      pools: [{ name: 'k61', slots: 256, areas: 1, base: 0x800, kernel: '6.1' }],
      guests: [],
      devices: [],
    });
    registry = createMetrics(med, { defaultMetrics: false });
  });
  afterAll(async () => {
    await med.close();
  });

  it('moves swiotlb_map_failures_total{reason="kernel_defect"} and the attempts with the pool stats', async () => {
    const pool = med.pools.get('k61')!.pool;
    const failures = 'swiotlb_map_failures_total{pool="k61",reason="kernel_defect"}';
    const attempts = 'swiotlb_map_attempts_total{pool="k61"}';
    const before = await scrape(registry);
    expect(get(before, failures)).toBe(0);
    // dma_alloc_coherent() on it: 6.1 would hand out an address past the pool.
    expect(() => pool.alloc(4096)).toThrow(
      expect.objectContaining({ code: 'SWIOTLB_KERNEL_OVERRUN' }),
    );
    expect(() => pool.alloc(4096)).toThrow(
      expect.objectContaining({ code: 'SWIOTLB_KERNEL_OVERRUN' }),
    );
    const stats = pool.stats();
    expect(stats.map_failures).toEqual({ full: 0, too_large: 0, invalid: 0, kernel_defect: 2 });
    const after = await scrape(registry);
    expect(get(after, failures)).toBe(stats.map_failures.kernel_defect);
    expect(get(after, attempts) - get(before, attempts)).toBe(2);
    for (const reason of ['full', 'too_large', 'invalid']) {
      expect(get(after, `swiotlb_map_failures_total{pool="k61",reason="${reason}"}`)).toBe(0);
    }
    // A map the pool can place goes on working, and counts as one more attempt.
    pool.unmap(pool.map(0x10_0000, 2048, D.TO_DEVICE), 2048, D.TO_DEVICE);
    expect(get(await scrape(registry), attempts) - get(before, attempts)).toBe(3);
  });
});

describe('one scrape reads each source once', () => {
  const SMALL = { depth: 2, maxRequestBytes: 64 * 1024 };
  let med: Mediator;
  beforeAll(async () => {
    med = new Mediator({
      copy: { workers: 1 },
      pools: [
        { name: 'a', slots: 256, areas: 1 },
        { name: 'b', slots: 512, areas: 2 },
      ],
      guests: [{ name: 'g0', size: 16 * MiB }],
      devices: [
        { id: 'd0', kind: 'ram-blk', guest: 'g0', pool: 'a', capacity: MiB, ...SMALL },
        { id: 'd1', kind: 'null', guest: 'g0', pool: 'b', capacity: MiB, ...SMALL },
      ],
    });
    await Promise.all([...med.devices.values()].map((d) => d.ready()));
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await med.close();
  });

  it('every pool, gate, device and the copy engine is read once per scrape, again at the next', async () => {
    const registry = createMetrics(med, { defaultMetrics: false });
    const spies: Record<string, { mock: { calls: unknown[] } }> = {
      ...Object.fromEntries(
        [...med.pools.values()].flatMap((p) => [
          [`pool ${p.name}`, vi.spyOn(p.pool, 'stats')],
          [`gate ${p.name}`, vi.spyOn(p.gate, 'stats')],
        ]),
      ),
      ...Object.fromEntries(
        [...med.devices.values()].map((d) => [`device ${d.id}`, vi.spyOn(d, 'stats')]),
      ),
      'engine stats': vi.spyOn(med.engine, 'stats'),
      'engine liveWorkers': vi.spyOn(med.engine, 'liveWorkers', 'get'),
      'engine workerCrashes': vi.spyOn(med.engine, 'workerCrashes', 'get'),
      'engine pendingCopies': vi.spyOn(med.engine, 'pendingCopies', 'get'),
    };
    const counts = () =>
      Object.fromEntries(Object.entries(spies).map(([k, s]) => [k, s.mock.calls.length]));
    const each = (n: number) => Object.fromEntries(Object.keys(spies).map((k) => [k, n]));

    const first = await scrape(registry);
    expect(counts()).toEqual(each(1));
    // The scrape is whole: the sources read once fed every series.
    expect(get(first, 'swiotlb_pool_slots{pool="b"}')).toBe(512);
    expect(get(first, 'swiotlb_pool_area_used_slots{pool="b",area="1"}')).toBeGreaterThanOrEqual(0);
    expect(get(first, 'mediator_requests_total{device="d1",op="read",outcome="ok"}')).toBe(0);
    expect(get(first, 'mediator_copy_workers')).toBe(1);

    // A later scrape reads afresh (a hiwater reset in between shows).
    await med.device('d0')!.write(0, 4096);
    med.pools.get('a')!.pool.resetHiwater();
    const second = await scrape(registry);
    expect(counts()).toEqual(each(2));
    expect(get(second, 'mediator_requests_total{device="d0",op="write",outcome="ok"}')).toBe(1);

    // The other exposition calls are scrapes too.
    await registry.getMetricsAsJSON();
    expect(counts()).toEqual(each(3));
    // Nothing has run since the write: the pool is as the second scrape saw it.
    expect(get(second, 'swiotlb_pool_used_hiwater_slots{pool="a"}')).toBe(
      med.pools.get('a')!.pool.stats().used_hiwater,
    );
  });
});

describe('ScrapeCache', () => {
  it('memoises within a scrape only, and a new scrape reads again', () => {
    const cache = new ScrapeCache();
    let reads = 0;
    const source = cache.memo(() => ++reads);
    // Outside a scrape: never a stale value.
    expect([source(), source()]).toEqual([1, 2]);
    cache.begin();
    expect([source(), source(), source()]).toEqual([3, 3, 3]);
    cache.end();
    expect(source()).toBe(4);
    // Overlapping scrapes: the later one opens a new generation; both stay cached until both end.
    cache.begin();
    expect(source()).toBe(5);
    cache.begin();
    expect([source(), source()]).toEqual([6, 6]);
    cache.end();
    expect(source()).toBe(6);
    cache.end();
    expect(source()).toBe(7);
  });
});
