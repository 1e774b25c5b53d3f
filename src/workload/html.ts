/**
 * A self-contained HTML page for a bench report: inline SVG charts drawn here
 * (no scripts, no network): throughput over time, latency distribution, pool
 * occupancy over time (scaled to what was used), the pool's slot map at the
 * run's peak (a PNG made here), and bounce vs direct side by side.
 */

import { JOB_MODES, type JobMode } from './fio-job.js';
import type { SlotMapAtPeak } from './peak-slot-map.js';
import type { BenchReport } from './report.js';
import { formatBusy, formatBytes, formatCount, formatNs } from './report.js';
import type { TotalResult } from './runner.js';
import { SLOT_COLOURS, slotMapPicture } from './slot-map-png.js';
import { latPercentile } from './stats.js';

const W = 640;
const H = 220;
const PAD = { l: 64, r: 16, t: 16, b: 32 };
const COLORS = {
  bounce: '#c0392b',
  'bounce-tuned': '#d68910',
  shared: '#7d3c98',
  direct: '#2471a3',
} as const;

function esc(s: string): string {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c,
  );
}

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

function lineChart(
  title: string,
  series: Series[],
  fmtX: (x: number) => string,
  fmtY: (y: number) => string,
  opts: { logX?: boolean; yMax?: number; refLines?: { y: number; label: string }[] } = {},
): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<h3>${esc(title)}</h3><p>no data</p>`;
  const tx = (x: number) => (opts.logX ? Math.log10(Math.max(x, 1)) : x);
  const xs = all.map((p) => tx(p[0]));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs, xMin + 1e-9);
  const yMax = opts.yMax ?? Math.max(...all.map((p) => p[1]), 1e-9);
  const sx = (x: number) => PAD.l + ((tx(x) - xMin) / (xMax - xMin)) * (W - PAD.l - PAD.r);
  const sy = (y: number) => H - PAD.b - (y / yMax) * (H - PAD.t - PAD.b);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    parts.push(
      `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${sy(y)}" y2="${sy(y)}" stroke="#ddd"/>`,
      `<text x="${PAD.l - 4}" y="${sy(y) + 4}" text-anchor="end">${esc(fmtY(y))}</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    const xv = xMin + ((xMax - xMin) * i) / 4;
    const x = opts.logX ? 10 ** xv : xv;
    parts.push(
      `<text x="${sx(x)}" y="${H - PAD.b + 16}" text-anchor="middle">${esc(fmtX(x))}</text>`,
    );
  }
  for (const r of opts.refLines ?? []) {
    if (r.y > yMax) continue;
    parts.push(
      `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${sy(r.y)}" y2="${sy(r.y)}" stroke="#555" stroke-dasharray="4 3"/>`,
      `<text x="${PAD.l + 4}" y="${sy(r.y) - 3}" fill="#555">${esc(r.label)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const d = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${d}"/>`);
    parts.push(
      `<text x="${W - PAD.r - 4}" y="${PAD.t + 14 * (i + 1)}" text-anchor="end" fill="${s.color}">${esc(s.name)}</text>`,
    );
  });
  return `<h3>${esc(title)}</h3><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-size="11" font-family="sans-serif">${parts.join('')}</svg>`;
}

function barChart(title: string, groups: { label: string; bounce: number; direct: number }[]) {
  const max = Math.max(1e-9, ...groups.flatMap((g) => [g.bounce, g.direct]));
  const bw = (W - PAD.l - PAD.r) / Math.max(1, groups.length);
  const parts: string[] = [];
  groups.forEach((g, i) => {
    const x0 = PAD.l + i * bw;
    (['bounce', 'direct'] as const).forEach((m, k) => {
      const h = (g[m] / max) * (H - PAD.t - PAD.b);
      const x = x0 + bw * 0.15 + k * bw * 0.35;
      parts.push(
        `<rect x="${x}" y="${H - PAD.b - h}" width="${bw * 0.3}" height="${h}" fill="${COLORS[m]}"/>`,
      );
    });
    parts.push(
      `<text x="${x0 + bw / 2}" y="${H - PAD.b + 16}" text-anchor="middle">${esc(g.label)}</text>`,
    );
  });
  parts.push(
    `<text x="${W - PAD.r}" y="${PAD.t + 12}" text-anchor="end" fill="${COLORS.bounce}">bounce</text>`,
  );
  parts.push(
    `<text x="${W - PAD.r}" y="${PAD.t + 26}" text-anchor="end" fill="${COLORS.direct}">direct</text>`,
  );
  return `<h3>${esc(title)}</h3><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-size="11" font-family="sans-serif">${parts.join('')}</svg>`;
}

/**
 * Top of the occupancy chart's axis: a round number above the peak (with a
 * fifth of room), never above the pool.
 */
export function occupancyAxis(peak: number, nslabs: number): number {
  const want = Math.max(1, peak * 1.2);
  const step = 10 ** Math.floor(Math.log10(want));
  const nice = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]
    .map((m) => m * step)
    .find((v) => v >= want)!;
  return Math.min(nslabs, nice);
}

/** The slot map at the peak: the picture, a legend in words and textures, the cursors. */
function slotMapSection(m: SlotMapAtPeak): string {
  const pic = slotMapPicture(
    Buffer.from(m.map, 'base64'),
    { nslabs: m.nslabs, nareas: m.nareas, areaNslabs: m.area_nslabs },
    m.cursors,
  );
  const swatch = (style: string) =>
    `<span style="display:inline-block;width:12px;height:12px;border:1px solid #555;vertical-align:-2px;${style}"></span>`;
  const c = SLOT_COLOURS;
  const legend = [
    `${swatch(`background:${c.in_use}`)} in use ${m.counts.in_use}`,
    `${swatch(`background:repeating-linear-gradient(135deg,#5a3200 0 1px,${c.padding} 1px 4px)`)} padding ${m.counts.padding}`,
    `${swatch(`background:radial-gradient(#fff 35%,transparent 40%) 0 0/3px 3px,${c.coherent}`)} virtqueue / coherent ${m.counts.coherent}`,
    `${swatch(`background:${c.free}`)} free ${m.counts.free}`,
    `${swatch(`background:#fff;border:2px solid ${c.cursor}`)} next-fit cursor (▶ its row)`,
  ].join(' &nbsp; ');
  const cursors = m.cursors
    .map((s, a) => `area ${a}: slot ${s - a * m.area_nslabs} of ${m.area_nslabs}`)
    .join('; ');
  const alt = `slot map of ${m.nslabs} slots at ${(m.t_ms / 1000).toFixed(2)} s: ${m.counts.in_use} in use, ${m.counts.padding} padding, ${m.counts.coherent} virtqueue, ${m.counts.free} free`;
  return `<h3>Slot map at the peak (${m.used_slots} of ${m.nslabs} slots in use, ${(m.t_ms / 1000).toFixed(2)} s into the measured window)</h3>
<p style="font-size:13px">${legend}</p>
<img src="data:image/png;base64,${pic.png.toString('base64')}" width="${pic.width}" height="${pic.height}" alt="${esc(alt)}" style="image-rendering:pixelated">
<p style="font-size:13px">${m.nareas} area${m.nareas === 1 ? '' : 's'} of ${m.area_nslabs} slots, each framed, ${pic.cols} slots a row, ${pic.cell} px a slot, segments of 128 a pixel apart. Cursors: ${cursors}. The highest occupancy the runner saw between its calls into the driver; the pool's high-water counter can be a little higher.</p>`;
}

/** Throughput of each mode over the measured window. */
function throughputSection(report: BenchReport, modes: readonly JobMode[]): string {
  return lineChart(
    'Throughput over time',
    modes.map((m) => ({
      name: m,
      color: COLORS[m],
      points: (report.timeline[m] ?? []).map(
        (s) => [s.t_ms / 1000, s.bw_bytes] as [number, number],
      ),
    })),
    (x) => `${x.toFixed(1)}s`,
    (y) => `${formatBytes(y)}/s`,
  );
}

/** Each mode's latency histogram (fio's lat: submission to completion), as shares of its I/Os (log time axis). */
function latencySection(report: BenchReport, modes: readonly JobMode[]): string {
  return lineChart(
    'Total latency distribution (submission to completion, share of I/Os per bin)',
    modes.map((m) => {
      const bins = report.latency_histogram[m] ?? [];
      const total = bins.reduce((s, b) => s + b.count, 0) || 1;
      return {
        name: m,
        color: COLORS[m],
        points: bins.map((b) => [b.le_ns, (b.count / total) * 100] as [number, number]),
      };
    }),
    (x) => formatNs(x),
    (y) => `${y.toFixed(1)}%`,
    { logX: true },
  );
}

/** Bounce mode's pool: occupancy over time, then the slot map at the peak when captured. */
function poolSections(report: BenchReport): string[] {
  const bounceMed = report.mediator.bounce;
  if (!bounceMed) return [];
  const pool = bounceMed.pool;
  const points = (report.timeline.bounce ?? []).map(
    (s) => [s.t_ms / 1000, s.pool_used_slots] as [number, number],
  );
  // Scaled to what was used: a peak of 264 of 32768 slots would be a flat line.
  const peak = Math.max(pool.used_hiwater_slots, pool.queue_slots, ...points.map((p) => p[1]));
  const sections = [
    lineChart(
      `Pool occupancy over time (bounce; peak ${peak} of ${pool.nslabs} slots, ${pool.used_hiwater_percent}%)`,
      [{ name: 'used slots (peak per interval)', color: COLORS.bounce, points }],
      (x) => `${x.toFixed(1)}s`,
      (y) => `${Math.round(y)}`,
      {
        yMax: occupancyAxis(peak, pool.nslabs),
        refLines:
          pool.queue_slots > 0
            ? [{ y: pool.queue_slots, label: `virtqueues: ${pool.queue_slots} slots` }]
            : [],
      },
    ),
  ];
  if (bounceMed.slot_map_at_peak) sections.push(slotMapSection(bounceMed.slot_map_at_peak));
  return sections;
}

/** IOPS and p99 of bounce beside direct, when both ran. */
function bounceVsDirectSections(report: BenchReport): string[] {
  const b = report.total.bounce;
  const d = report.total.direct;
  if (!b || !d) return [];
  const p99 = (t: TotalResult, dir: 'read' | 'write' | 'all') =>
    latPercentile(t[dir].lat_ns, '99.000000');
  return [
    barChart('Bounce vs direct: IOPS', [
      { label: 'read', bounce: b.read.iops, direct: d.read.iops },
      { label: 'write', bounce: b.write.iops, direct: d.write.iops },
      { label: 'all', bounce: b.all.iops, direct: d.all.iops },
    ]),
    barChart(
      'Bounce vs direct: p99 latency (submission to completion)',
      (['read', 'write', 'all'] as const).map((dir) => ({
        label: dir,
        bounce: p99(b, dir),
        direct: p99(d, dir),
      })),
    ),
  ];
}

/** The summary table: one row per mode, client-side figures then the mediator's. */
function summaryTable(report: BenchReport, modes: readonly JobMode[]): string {
  const rows = modes
    .map((m) => {
      const t = report.total[m]!;
      const med = report.mediator[m]!;
      return `<tr><td>${m}</td><td>${formatCount(t.all.iops)}</td><td>${formatBytes(t.all.bw_bytes)}/s</td><td>${formatNs(latPercentile(t.all.lat_ns, '50.000000'))}</td><td>${formatNs(latPercentile(t.all.lat_ns, '99.000000'))}</td><td>${med.pool.used_hiwater_slots} (${med.pool.used_hiwater_percent}%)</td><td>${med.pool.map_failures.full}</td><td>${formatBytes(med.bounced_bytes.to_device)} / ${formatBytes(med.bounced_bytes.from_device)}</td><td>${med.backpressure.requeues}</td><td>${med.backpressure.waits}</td><td>${esc(formatBusy(med.devices))}</td></tr>`;
    })
    .join('');
  return `<table><tr><th>mode</th><th>IOPS</th><th>bandwidth</th><th>p50</th><th>p99</th><th>pool high-water</th><th>map failures</th><th>bounced to/from device</th><th>requeues (pool full)</th><th>back-pressure waits</th><th>device threads busy</th></tr>${rows}</table>`;
}

/** Each mode ÷ direct, one paragraph a mode (none when direct did not run). */
function ratioParagraphs(report: BenchReport): string {
  return Object.entries(report.comparison?.over_direct ?? {})
    .map(
      ([m, r]) =>
        `<p><b>${esc(m)} ÷ direct</b>: IOPS ${r.all.iops ?? 'n/a'}, bandwidth ${r.all.bw_bytes ?? 'n/a'}, p99 ${r.all.lat_p99_ns ?? 'n/a'}</p>`,
    )
    .join('\n');
}

/** The report's warnings as a list, or nothing. */
function warningList(report: BenchReport): string {
  return report.warnings.length
    ? `<ul>${report.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`
    : '';
}

/**
 * The whole page: title and run line, warnings, the summary table, the ratios to
 * direct, then the charts in a fixed order (throughput, latency, pool, bounce vs
 * direct).
 */
export function renderHtml(report: BenchReport, title: string): string {
  const modes = JOB_MODES.filter((m) => report.total[m]);
  const sections = [
    throughputSection(report, modes),
    latencySection(report, modes),
    ...poolSections(report),
    ...bounceVsDirectSections(report),
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:720px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>${esc(report.time)} — ${esc(report['fio version'])}, mode ${report.mode}</p>
${warningList(report)}
${summaryTable(report, modes)}
${ratioParagraphs(report)}
${sections.join('\n')}
</body></html>
`;
}
