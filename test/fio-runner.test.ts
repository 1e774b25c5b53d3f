/**
 * The bench runner's fio rules, one test (or more) per rule, each checked against
 * fio's source (axboe/fio): where the I/Os go (io_u.c), when a clone stops
 * (backend.c do_io() and keep_running()), each job's own ramp (time.c), and the
 * shape of the JSON (stat.c). Counts only: nothing here depends on how fast the
 * machine is.
 */
import { describe, expect, it } from 'vitest';
import { type FioJob, parseJobFile, prng } from '../src/workload/fio-job.js';
import { buildReport, formatReport } from '../src/workload/report.js';
import { runJobFile } from '../src/workload/runner.js';
import {
  keepRunning,
  measureWindow,
  pickNext,
  type StopState,
  stopReached,
} from '../src/workload/sampling.js';
import {
  BlockSplit,
  IoPicker,
  type JobRig,
  makeClones,
  openRig,
  RandomMap,
} from '../src/workload/setup.js';
import { fioDirection, fioRuntime } from '../src/workload/stats.js';

const K = 1024;

function job(text: string): FioJob {
  return parseJobFile(text).jobs[0]!;
}

function picker(text: string, seed = 1): IoPicker {
  return new IoPicker(job(text), prng(seed));
}

/** The picks until the pass ends (at most `max`). */
function drain(p: IoPicker, max = 10_000): { read: boolean; offset: number; len: number }[] {
  const out: { read: boolean; offset: number; len: number }[] = [];
  while (out.length < max && p.next()) out.push({ read: p.read, offset: p.offset, len: p.len });
  return out;
}

/** Runs a job file (direct mode on a null device unless it says otherwise) and its JSON report. */
async function report(text: string) {
  const jf = parseJobFile(text);
  const results = await runJobFile(jf);
  return JSON.parse(JSON.stringify(buildReport(jf, results, 'test')));
}

const FAST = '[global]\nmode=direct\ndevice=null\ncopy_workers=0\n';

describe('stop conditions (backend.c do_io(), keep_running())', () => {
  it('number_ios stops a job only before size does: io_bytes_exceeded() is bytes >= limit || exceeds_number_ios()', async () => {
    const r = await report(`${FAST}[j]\nrw=randread\nbs=4k\nsize=64k\nnumber_ios=1000\n`);
    expect(r.jobs[0].read.total_ios).toBe(16);
    const s = await report(`${FAST}[j]\nrw=randread\nbs=4k\nsize=64k\nnumber_ios=5\n`);
    expect(s.jobs[0].read.total_ios).toBe(5);
    // Sequential too: the pass ends at the region's end and keep_running() stops it.
    const q = await report(`${FAST}[j]\nrw=read\nbs=4k\nsize=64k\nnumber_ios=1000\n`);
    expect(q.jobs[0].read.total_ios).toBe(16);
  });

  it('io_size above size runs new passes, each covering the region again (keep_running(), fio_file_reset())', async () => {
    const jf = parseJobFile('[j]\nrw=randread\nbs=4k\nsize=64k\nio_size=128k\n');
    const rig = { devices: [{}], ids: ['j'] } as unknown as JobRig;
    const [c] = makeClones(jf, rig);
    c!.measuring = true;
    const offsets: number[] = [];
    // As the submitters do: check the stop, pick, count the I/O.
    while (!stopReached(c!, 0) && pickNext(c!)) {
      offsets.push(c!.picker.offset);
      c!.issued++;
      c!.issuedBytes += c!.picker.len;
    }
    expect(offsets).toHaveLength(32);
    expect(new Set(offsets.slice(0, 16)).size).toBe(16);
    expect(new Set(offsets.slice(16)).size).toBe(16);
    // The runner, end to end (a sequential read has no wrap of its own: keep_running()).
    const r = await report(`${FAST}[j]\nrw=randread\nbs=4k\nsize=64k\nio_size=128k\n`);
    expect(r.jobs[0].read.total_ios).toBe(32);
    const q = await report(`${FAST}[j]\nrw=read\nbs=4k\nsize=64k\nio_size=96k\n`);
    expect(q.jobs[0].read.total_ios).toBe(24);
  });

  const state = (text: string, over: Partial<StopState> = {}): StopState => {
    const j = job(text);
    return {
      job: j,
      measuring: true,
      deadline: Number.POSITIVE_INFINITY,
      issued: 0,
      issuedBytes: 0,
      rampBytes: 0,
      maxBs: 4096,
      ioSizeGiven: j.options.io_size !== undefined,
      ...over,
    };
  };

  it('time_based runs the whole runtime whatever number_ios and size say (do_io(): `|| td->o.time_based`)', () => {
    const tb = '[j]\nrw=randread\nsize=64k\nnumber_ios=5\ntime_based\nruntime=1\n';
    expect(stopReached(state(tb, { issued: 50, issuedBytes: 10 * 2 ** 20 }), 0)).toBe(false);
    expect(stopReached(state(tb, { deadline: 100 }), 100)).toBe(true);
    expect(keepRunning(state(tb, { issued: 50, issuedBytes: 10 * 2 ** 20 }))).toBe(true);
    // Not time_based: the same counts stop it.
    const nt = '[j]\nrw=randread\nsize=64k\nnumber_ios=5\n';
    expect(stopReached(state(nt, { issued: 5 }), 0)).toBe(true);
    expect(stopReached(state(nt, { issuedBytes: 64 * K }), 0)).toBe(true);
    expect(stopReached(state(nt, { issued: 4, issuedBytes: 60 * K }), 0)).toBe(false);
  });

  it('the runtime does not run during the ramp; the bytes issued in it count toward size (td->io_issue_bytes)', () => {
    const nt = '[j]\nrw=randread\nsize=64k\nramp_time=1\nruntime=1\n';
    expect(stopReached(state(nt, { measuring: false, deadline: 0 }), 10)).toBe(false);
    expect(stopReached(state(nt, { measuring: false, issuedBytes: 64 * K }), 0)).toBe(true);
  });

  it('at the end of a pass: stops without io_size, or when less than the largest block is left', () => {
    const noIo = '[j]\nrw=read\nsize=64k\n';
    expect(keepRunning(state(noIo, { issuedBytes: 32 * K }))).toBe(false);
    const io = '[j]\nrw=read\nsize=64k\nio_size=128k\n';
    expect(keepRunning(state(io, { issuedBytes: 64 * K }))).toBe(true);
    expect(keepRunning(state(io, { issuedBytes: 126 * K }))).toBe(false);
    // td->io_bytes is counted from the ramp's end.
    expect(keepRunning(state(io, { issuedBytes: 150 * K, rampBytes: 80 * K }))).toBe(true);
    expect(keepRunning(state(`${io}number_ios=3\n`, { issued: 3, issuedBytes: 12 * K }))).toBe(
      false,
    );
  });
});

describe('random offsets: the random map (io_u.c __get_next_rand_offset(), lib/axmap.c)', () => {
  it('covers every block once per pass, then the pass ends', () => {
    const picks = drain(picker('[j]\nrw=randread\nbs=4k\nsize=64k\n'));
    expect(picks).toHaveLength(16);
    expect(picks.map((p) => p.offset).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 16 }, (_, i) => i * 4096),
    );
  });

  it('time_based: a full map starts a new pass (get_next_rand_block(): fio_file_reset())', () => {
    const p = picker('[j]\nrw=randwrite\nbs=4k\nsize=64k\ntime_based\nruntime=1\n');
    for (let pass = 0; pass < 3; pass++) {
      const seen = new Set<number>();
      for (let i = 0; i < 16; i++) {
        if (!p.next()) {
          // Only at a pass's end: the map is full.
          expect(p.map!.free).toBe(0);
          p.newPass();
          expect(p.next()).toBe(true);
        }
        seen.add(p.offset);
      }
      expect(seen.size).toBe(16);
    }
  });

  it('a block already done moves to the next free one, wrapping (axmap_next_free())', () => {
    const m = new RandomMap(10);
    expect(m.setRun(5, 5)).toBe(5);
    expect(m.nextFree(7)).toBe(0);
    expect(m.nextFree(9)).toBe(0);
    expect(m.setRun(0, 3)).toBe(3);
    expect(m.nextFree(6)).toBe(3);
    // axmap_set_nr() only sets a contiguous free run.
    expect(m.setRun(3, 4)).toBe(2);
    expect(m.free).toBe(0);
    expect(m.nextFree(2)).toBe(-1);
    // Over word boundaries.
    const big = new RandomMap(100);
    expect(big.setRun(0, 70)).toBe(70);
    expect(big.nextFree(10)).toBe(70);
    expect(big.setRun(70, 30)).toBe(30);
    expect(big.nextFree(99)).toBe(-1);
  });

  it('multi-block I/Os mark all their blocks, shortened to the free run (mark_random_map()); offsets on the smallest block', () => {
    const picks = drain(picker('[j]\nrw=randread\nbssplit=4k/50:16k/50\nsize=256k\n', 7));
    expect(picks.reduce((s, p) => s + p.len, 0)).toBe(256 * K);
    const sorted = [...picks].sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const p of sorted) {
      expect(p.offset % 4096).toBe(0);
      expect(p.offset).toBe(end); // disjoint and no gap: each block exactly once
      end = p.offset + p.len;
    }
    expect(end).toBe(256 * K);
    expect(picks.some((p) => p.len === 16 * K)).toBe(true);
    expect(picks.some((p) => p.len !== 4 * K && p.len !== 16 * K)).toBe(true);
  });

  it('norandommap: no map, blocks repeat', () => {
    const p = picker('[j]\nrw=randread\nbs=4k\nsize=64k\nnorandommap\n');
    expect(p.map).toBeUndefined();
    const offsets = drain(p, 16).map((x) => x.offset);
    expect(offsets).toHaveLength(16);
    expect(new Set(offsets).size).toBeLessThan(16);
  });
});

describe('sequential offsets (io_u.c get_next_seq_offset(), get_next_buflen())', () => {
  it('rw=rw keeps one offset per direction (f->last_pos[ddir])', () => {
    const picks = drain(picker('[j]\nrw=rw\nbs=4k\nsize=64k\n'), 24);
    const reads = picks.filter((p) => p.read).map((p) => p.offset);
    const writes = picks.filter((p) => !p.read).map((p) => p.offset);
    expect(reads.length).toBeGreaterThan(3);
    expect(writes.length).toBeGreaterThan(3);
    expect(reads).toEqual(reads.map((_, i) => i * 4096));
    expect(writes).toEqual(writes.map((_, i) => i * 4096));
  });

  it('at the end of the region a bssplit takes a block that fits, then the pass ends (no wrap)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const picks = drain(picker('[j]\nrw=read\nbssplit=16k/50:4k/50\nsize=20k\n', seed));
      expect(picks.reduce((s, p) => s + p.len, 0)).toBe(20 * K);
      let at = 0;
      for (const p of picks) {
        expect(p.offset).toBe(at);
        at += p.len;
      }
    }
  });

  it('time_based: a direction at the end starts over from 0', () => {
    const picks = drain(picker('[j]\nrw=write\nbs=4k\nsize=16k\ntime_based\nruntime=1\n'), 6);
    expect(picks.map((p) => p.offset / 4096)).toEqual([0, 1, 2, 3, 0, 1]);
  });

  it('a split length is rounded down to a multiple of the smallest (buflen &= ~(minbs - 1))', () => {
    const picks = drain(picker('[j]\nrw=read\nbssplit=4k/50:6k/50\nsize=64k\n'));
    expect(new Set(picks.map((p) => p.len))).toEqual(new Set([4096]));
    // fio orders a split by percentage (bs_cmp()) and draws in that order.
    const split = new BlockSplit([
      { size: 65536, percent: 80 },
      { size: 4096, percent: 20 },
    ]);
    expect(Array.from(split.sizes)).toEqual([4096, 65536]);
    expect(split.pick(0.1, 1e9)).toBe(4096);
    expect(split.pick(0.5, 1e9)).toBe(65536);
    expect(split.pick(0.5, 8192)).toBe(4096);
  });
});

describe("each job's own ramp (time.c ramp_period_check())", () => {
  it('a job without ramp_time is measured from the start while another ramps', async () => {
    const jf = parseJobFile(
      `${FAST}[a]\nrw=read\nbs=4k\nsize=1m\niodepth=1\nnumber_ios=20\n[b]\nrw=read\nbs=4k\nsize=1m\nramp_time=300ms\ntime_based\nruntime=50ms\n`,
    );
    const rig = await openRig(jf, 'direct');
    try {
      const clones = makeClones(jf, rig);
      await measureWindow(jf, 'direct', rig, clones, {});
      const [a, b] = clones as [(typeof clones)[0], (typeof clones)[0]];
      // a issued its 20 I/Os and stopped: it did not run through b's ramp.
      expect(rig.devices[0]!.stats().bytesRead).toBe(20 * 4096);
      expect(a.read.ios).toBe(20);
      expect(b.measureStart - a.measureStart).toBeCloseTo(300, 6);
    } finally {
      await rig.close();
    }
  });
});

describe("the JSON report, shaped as fio's (stat.c)", () => {
  it('bw_bytes and bw are truncated, as add_ddir_status_json() divides integers', () => {
    const d = fioDirection(3, 5 * K, 3, new Float64Array([1, 2, 3]));
    expect(d.bw_bytes).toBe(1706666);
    expect(d.bw).toBe(1666);
    expect(d.iops).toBe(1000);
    // update_runtime(): (elapsed_us + 999) / 1000; no bytes, no runtime.
    expect(fioRuntime(1.0004, 1)).toBe(1);
    expect(fioRuntime(1.0011, 1)).toBe(2);
    expect(fioRuntime(5, 0)).toBe(0);
  });

  it('reports lat_ns (no clat_ns); a direction without I/O has runtime 0 and no percentile', async () => {
    const r = await report(`${FAST}[j]\nrw=randread\nbs=4k\nsize=64k\n`);
    const j = r.jobs[0];
    expect(j.read).not.toHaveProperty('clat_ns');
    expect(j.read.lat_ns.N).toBe(16);
    expect(j.read.lat_ns.percentile).toHaveProperty('99.000000');
    expect(j.read.runtime).toBeGreaterThan(0);
    expect(j.write).toMatchObject({ runtime: 0, bw_bytes: 0, bw: 0, iops: 0, total_ios: 0 });
    expect(j.write.lat_ns).not.toHaveProperty('percentile');
    expect(r.total.direct.write.lat_ns).not.toHaveProperty('percentile');
    expect(r.total.direct.all.lat_ns.N).toBe(16);
    const text = formatReport(r);
    expect(text).toMatch(/^ {4}lat: min=/m);
    expect(text).not.toMatch(/clat:/);
  });

  it('group_reporting merges the clones into one entry (sum_thread_stats()); without it one entry per clone', async () => {
    const body =
      '[a]\nrw=randread\nbs=4k\nsize=1m\nnumjobs=2\nnumber_ios=10\n[b]\nrw=randwrite\nbs=4k\nsize=1m\nnumber_ios=5\n';
    const g = await report(`${FAST}group_reporting\n${body}`);
    expect(g.jobs).toHaveLength(1);
    expect(g.jobs[0]).toMatchObject({ jobname: 'a', members: 3, groupid: 0, mode: 'direct' });
    expect(g.jobs[0].read.total_ios).toBe(20);
    expect(g.jobs[0].write.total_ios).toBe(5);
    expect(g.jobs[0].read.lat_ns.N).toBe(20);
    const n = await report(`${FAST}${body}`);
    expect(n.jobs.map((j: { jobname: string; members: number }) => [j.jobname, j.members])).toEqual(
      [
        ['a', 1],
        ['a', 1],
        ['b', 1],
      ],
    );
    // fio's loop: a job with group_reporting joins the entry before it, whoever's.
    const q = await report(
      `${FAST}[a]\nrw=randread\nbs=4k\nsize=1m\nnumber_ios=4\n[b]\ngroup_reporting\nrw=randread\nbs=4k\nsize=1m\nnumjobs=2\nnumber_ios=4\n`,
    );
    expect(q.jobs).toHaveLength(1);
    expect(q.jobs[0]).toMatchObject({ jobname: 'a', members: 3 });
  });

  it('several modes: one flat jobs[], each entry with its mode and groupid; select a mode to sum it', async () => {
    const r = await report(
      '[global]\nmode=both\ncopy_workers=0\npool_size=4m\n[j]\nrw=randread\nbs=4k\nsize=256k\nnumjobs=2\n',
    );
    expect(
      r.jobs.map((j: { mode: string; groupid: number; members: number }) => [
        j.mode,
        j.groupid,
        j.members,
      ]),
    ).toEqual([
      ['bounce', 0, 1],
      ['bounce', 0, 1],
      ['direct', 1, 1],
      ['direct', 1, 1],
    ]);
    for (const mode of ['bounce', 'direct']) {
      const ios = r.jobs
        .filter((j: { mode: string }) => j.mode === mode)
        .reduce((s: number, j: { read: { total_ios: number } }) => s + j.read.total_ios, 0);
      expect(ios).toBe(r.total[mode].read.total_ios);
      expect(ios).toBe(128);
    }
  });
});
