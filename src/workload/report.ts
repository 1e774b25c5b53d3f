/**
 * The bench report: fio-shaped JSON (`jobs[].read` / `jobs[].write` with `iops`,
 * `bw_bytes`, `io_bytes`, `runtime`, `lat_ns`...) plus `total`, `mediator`,
 * `comparison` (when direct ran beside another mode), `timeline` and
 * `latency_histogram`, keyed by mode; and the same as text.
 *
 * jobs[] stays one flat array, as fio's: each mode is one group, as fio's
 * stonewalled groups are (`groupid` is the mode's place in the run, `mode` names
 * it), so fio's tools read it, and a sum over one mode selects it first
 * (`[.jobs[] | select(.mode == "bounce") | .read.iops] | add`, or `total.bounce`).
 */
import { JOB_MODES, type JobFile, type JobMode, type RunMode } from './fio-job.js';
import type { DirectionResult, MediatorView, ModeResult, Sample, TotalResult } from './runner.js';
import { latPercentile } from './stats.js';

export interface FioJobEntry {
  jobname: string;
  /** The mode's place in the run (0 = the first mode run): each mode is one fio group. */
  groupid: number;
  /** Clone number within the section (fio numbers clones of one section the same way); a group's first. */
  jobnum: number;
  mode: JobMode;
  /** Clones in this entry: 1, or a group's under group_reporting. */
  members: number;
  device: string;
  queue: number;
  /** 0, or 5 (EIO) when any I/O failed; `errors` counts them by code. */
  error: number;
  errors: Record<string, number>;
  'job options': Record<string, string>;
  read: DirectionResult;
  write: DirectionResult;
  job_runtime: number;
}

export interface ModeRatios {
  all: Ratio;
  read: Ratio;
  write: Ratio;
}

export interface Ratio {
  iops: number | null;
  bw_bytes: number | null;
  /** Of p99 lat (submission to completion). */
  lat_p99_ns: number | null;
}

export interface BenchReport {
  'fio version': string;
  timestamp: number;
  timestamp_ms: number;
  time: string;
  'global options': Record<string, string>;
  mode: RunMode;
  jobs: FioJobEntry[];
  total: Partial<Record<JobMode, TotalResult>>;
  mediator: Partial<Record<JobMode, MediatorView>>;
  /**
   * When direct ran beside other modes: each of them ÷ direct (below 1 for IOPS
   * and bandwidth is what that mode costs). `bounce_over_direct` is
   * `over_direct.bounce`, under the name it always had.
   */
  comparison?: {
    bounce_over_direct?: ModeRatios;
    over_direct: Partial<Record<Exclude<JobMode, 'direct'>, ModeRatios>>;
  };
  timeline: Partial<Record<JobMode, Sample[]>>;
  latency_histogram: Partial<Record<JobMode, { le_ns: number; count: number }[]>>;
  warnings: string[];
}

function ratio(a: number, b: number): number | null {
  if (!(b > 0)) return null;
  return Math.round((a / b) * 10000) / 10000;
}

function dirRatio(b: DirectionResult, d: DirectionResult): Ratio {
  return {
    iops: ratio(b.iops, d.iops),
    bw_bytes: ratio(b.bw_bytes, d.bw_bytes),
    lat_p99_ns: ratio(latPercentile(b.lat_ns, '99.000000'), latPercentile(d.lat_ns, '99.000000')),
  };
}

export function buildReport(jf: JobFile, results: ModeResult[], version: string): BenchReport {
  const now = Date.now();
  const report: BenchReport = {
    'fio version': `swiotlb-mediator-${version}`,
    timestamp: Math.floor(now / 1000),
    timestamp_ms: now,
    time: new Date(now).toString(),
    'global options': jf.globalOptions,
    mode: jf.settings.mode,
    jobs: [],
    total: {},
    mediator: {},
    timeline: {},
    latency_histogram: {},
    warnings: [...jf.warnings],
  };
  results.forEach((r, groupid) => {
    for (const c of r.jobs) {
      const errors = Object.values(c.errors).reduce((s, n) => s + n, 0);
      report.jobs.push({
        jobname: c.jobname,
        groupid,
        jobnum: c.clone,
        mode: r.mode,
        members: c.members,
        device: c.device,
        queue: c.queue,
        error: errors > 0 ? 5 : 0,
        errors: c.errors,
        'job options': jf.jobs[c.job]!.options,
        read: c.read,
        write: c.write,
        job_runtime: Math.round(c.jobRuntimeMs),
      });
    }
    report.total[r.mode] = r.total;
    report.mediator[r.mode] = r.mediator;
    report.timeline[r.mode] = r.timeline;
    report.latency_histogram[r.mode] = r.histogram;
    for (const w of r.warnings) report.warnings.push(`${r.mode}: ${w}`);
  });
  const d = report.total.direct;
  if (d) {
    const over: NonNullable<BenchReport['comparison']>['over_direct'] = {};
    for (const mode of JOB_MODES) {
      const b = report.total[mode];
      if (mode === 'direct' || !b) continue;
      over[mode] = {
        all: {
          iops: ratio(b.all.iops, d.all.iops),
          bw_bytes: ratio(b.all.bw_bytes, d.all.bw_bytes),
          lat_p99_ns: ratio(
            latPercentile(b.all.lat_ns, '99.000000'),
            latPercentile(d.all.lat_ns, '99.000000'),
          ),
        },
        read: dirRatio(b.read, d.read),
        write: dirRatio(b.write, d.write),
      };
    }
    if (Object.keys(over).length > 0) {
      report.comparison = {
        ...(over.bounce ? { bounce_over_direct: over.bounce } : {}),
        over_direct: over,
      };
    }
  }
  return report;
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 || u === 0 ? v.toFixed(0) : v.toFixed(1)}${units[u]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(n >= 100 ? 0 : 1);
}

export function formatNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)}s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)}ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)}us`;
  return `${Math.round(ns)}ns`;
}

/**
 * What "swiotlb buffer is full" did to the requests: requeued (virtio-blk's
 * BLK_STS_RESOURCE, under the requeue policies) or failed (policy fail).
 */
function requeueText(b: { policy: string; requeues: number }): string {
  return b.policy === 'fail'
    ? `${b.requeues} requests failed ("swiotlb buffer is full", policy fail)`
    : `${b.requeues} requeues ("swiotlb buffer is full": virtio-blk requeues the request)`;
}

function dirLine(label: string, d: DirectionResult): string[] {
  if (d.total_ios === 0) return [];
  const l = d.lat_ns;
  const p = (k: string) => formatNs(latPercentile(l, k));
  return [
    `  ${label}: IOPS=${formatCount(d.iops)}, BW=${formatBytes(d.bw_bytes)}/s (${formatBytes(d.io_bytes)}/${d.runtime}msec), ios=${d.total_ios}`,
    `    lat: min=${formatNs(l.min)}, mean=${formatNs(l.mean)}, p50=${p('50.000000')}, p90=${p('90.000000')}, p99=${p('99.000000')}, p99.9=${p('99.900000')}, max=${formatNs(l.max)}`,
  ];
}

/** What the latency lines measure, printed once above them. */
export const LAT_NOTE =
  "lat: from the submission (before the buffers are mapped and bounced) to the completion, as fio's lat (not its clat)";

/** Each device's threads' busy share, "id 12.3%" ("n/a" where unknown), comma-separated. */
export function formatBusy(devices: readonly { id: string; busy: number | null }[]): string {
  return devices
    .map((d) => `${d.id} ${d.busy === null ? 'n/a' : `${(d.busy * 100).toFixed(1)}%`}`)
    .join(', ');
}

export function formatReport(report: BenchReport): string {
  const out: string[] = [];
  for (const w of report.warnings) out.push(`warning: ${w}`);
  if (report.warnings.length) out.push('');
  out.push(LAT_NOTE, '');
  for (const mode of JOB_MODES) {
    const total = report.total[mode];
    const med = report.mediator[mode];
    if (!total || !med) continue;
    out.push(`=== ${mode} mode ===`);
    for (const j of report.jobs.filter((x) => x.mode === mode)) {
      const who =
        j.members > 1
          ? `groupid=${j.groupid}, jobs=${j.members}`
          : `clone ${j.jobnum}, ${j.device} queue ${j.queue}`;
      out.push(
        `${j.jobname}: (${who}): err=${j.error}${j.error ? ` ${JSON.stringify(j.errors)}` : ''}`,
      );
      out.push(...dirLine('read ', j.read), ...dirLine('write', j.write));
    }
    out.push('total:');
    out.push(...dirLine('read ', total.read), ...dirLine('write', total.write));
    out.push(
      `  all  : IOPS=${formatCount(total.all.iops)}, BW=${formatBytes(total.all.bw_bytes)}/s, p99=${formatNs(latPercentile(total.all.lat_ns, '99.000000'))}`,
    );
    const p = med.pool;
    out.push('mediator:');
    out.push(
      `  pool ${p.name}: ${p.nslabs} slots (${formatBytes(p.bytes)}), ${p.nareas} areas; high-water ${p.used_hiwater_slots} slots (${p.used_hiwater_percent}%, queues hold ${p.queue_slots}); map failures full=${p.map_failures.full} too_large=${p.map_failures.too_large}`,
    );
    out.push(
      `  bounced: to_device ${formatBytes(med.bounced_bytes.to_device)} (${med.copies.to_device} copies), from_device ${formatBytes(med.bounced_bytes.from_device)} (${med.copies.from_device} copies); copy workers ${med.copy_workers}`,
    );
    out.push(
      `  pool full: ${requeueText(med.backpressure)}, ${med.backpressure.waits} waits, ${(med.backpressure.wait_seconds * 1000).toFixed(1)} ms waited, ${med.backpressure.timeouts} timeouts (policy ${med.backpressure.policy})`,
    );
    out.push(
      `  device threads busy: ${formatBusy(med.devices)} (near 100%: the device bounds the job; low: the guest side does)`,
    );
    out.push('');
  }
  const f = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
  for (const [mode, c] of Object.entries(report.comparison?.over_direct ?? {})) {
    out.push(
      mode === 'bounce'
        ? 'bounce / direct (the cost of isolation):'
        : `${mode} / direct (the cost of ${mode === 'shared' ? 'sharing the buffers with the device' : 'isolation, tuned'}):`,
    );
    out.push(`  all  : IOPS ${f(c.all.iops)}, BW ${f(c.all.bw_bytes)}, p99 ${f(c.all.lat_p99_ns)}`);
    if (c.read.iops !== null) {
      out.push(
        `  read : IOPS ${f(c.read.iops)}, BW ${f(c.read.bw_bytes)}, p99 ${f(c.read.lat_p99_ns)}`,
      );
    }
    if (c.write.iops !== null) {
      out.push(
        `  write: IOPS ${f(c.write.iops)}, BW ${f(c.write.bw_bytes)}, p99 ${f(c.write.lat_p99_ns)}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}
