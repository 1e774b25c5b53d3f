import type { TraceReport } from './report-types.js';
import type { SeriesPoint } from './series.js';

/** The replay report as text for a terminal. */

function pct(n: number, of: number): string {
  return of > 0 ? `${((n / of) * 100).toFixed(1)}%` : '-';
}

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

function table(rows: (string | number)[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, String(cell).length);
    });
  }
  return rows.map((row) =>
    `  ${row
      .map((cell, i) =>
        i === 0 ? String(cell).padEnd(widths[i]!) : String(cell).padStart(widths[i]!),
      )
      .join('  ')}`.trimEnd(),
  );
}

/** At most `n` points: the maximum of each group of neighbours. */
function thin(series: SeriesPoint[], n: number): SeriesPoint[] {
  if (series.length <= n) return series;
  const per = Math.ceil(series.length / n);
  const out: SeriesPoint[] = [];
  for (let i = 0; i < series.length; i += per) {
    const group = series.slice(i, i + per);
    out.push({
      line: group[0]!.line,
      ts: group[0]!.ts,
      used: Math.max(...group.map((p) => p.used)),
      kernel_used: Math.max(...group.map((p) => p.kernel_used)),
    });
  }
  return out;
}

export function formatTraceReport(r: TraceReport): string {
  const out = [
    ...inputSection(r),
    '',
    ...matchSection(r),
    '',
    ...useSection(r),
    '',
    ...deviceSection(r),
    ...bootLogSection(r),
  ];
  if (r.hints.length > 0) out.push('', 'hints:', ...r.hints.map((h) => `  - ${h}`));
  return `${out.join('\n')}\n`;
}

function inputSection(r: TraceReport): string[] {
  const out: string[] = [];
  const i = r.input;
  const arrays =
    i.arrays === 'kernel'
      ? ', arrays {0x..}'
      : i.arrays === 'decimal'
        ? ', arrays in decimal (libtraceevent < 1.8.4)'
        : i.arrays === 'raw'
          ? ', raw fields (libtraceevent could not parse some formats)'
          : '';
  out.push(
    `swiotlb trace replay: ${i.source} (${i.layout === 'trace-cmd' ? 'trace-cmd report' : 'tracefs'}${arrays})`,
  );
  out.push(
    `  ${i.lines} lines, ${i.dma_events} dma/swiotlb events (${i.swiotlb_bounced} swiotlb_bounced), ${i.unrelated_events} other events skipped${i.filtered_events > 0 ? `, ${i.filtered_events} of other devices (--device)` : ''}`,
  );
  if ((i.overwritten_events ?? 0) > 0) {
    out.push(
      `  ${i.overwritten_events} older events overwritten in the ring buffer before it was read (entries-written > entries-in-buffer)`,
    );
  }
  if (i.bad_lines.count > 0) {
    out.push(
      `  ${i.bad_lines.count} unreadable dma lines, e.g. ${i.bad_lines.first[0]?.message ?? ''}`,
    );
  }
  const p = r.pool;
  out.push(
    `pool: ${p.nslabs} slots (${bytes(p.bytes)}) at ${p.base} in ${p.nareas} area${p.nareas > 1 ? 's' : ''} of ${p.area_nslabs}, from the ${p.source}`,
  );
  out.push(
    `  model: ${p.rules}${p.exact ? '' : " (not the kernel's exact geometry: see the notes)"}`,
  );
  for (const note of p.notes) out.push(`  note: ${note}`);
  return out;
}

/** Agreements, the kernel's failures, and what was matched. */
function matchSection(r: TraceReport): string[] {
  const out: string[] = [];
  const pl = r.placements;
  out.push(
    `placements: ${r.maps.replayed} replayed, ${pl.agree} agree, ${pl.disagree} disagree${pl.first_disagreement_line === null ? '' : ` (first at line ${pl.first_disagreement_line})`}`,
  );
  for (const d of pl.disagreements) {
    out.push(
      `  line ${d.line}: ${d.device} cpu ${d.cpu} (area ${d.area}) ${d.size} bytes of ${d.phys}: kernel ${d.kernel}, model ${d.model}`,
    );
    out.push(`    ${d.reason}`);
  }
  const m = r.maps;
  if (m.kernel_failed > 0 || m.kernel_failed_other > 0) {
    out.push(
      `kernel failures (dma_addr=ffffffffffffffff): ${m.kernel_failed} of bouncing devices${m.kernel_failed_other > 0 ? `, ${m.kernel_failed_other} of other devices (not replayed)` : ''}`,
    );
  }
  if (m.allocs_failed > 0 || m.allocs_failed_other > 0) {
    out.push(
      `failed coherent allocations (virt_addr NULL): ${m.allocs_failed} of devices that allocate from the pool${m.allocs_failed_other > 0 ? `, ${m.allocs_failed_other} of other devices (not replayed)` : ''}`,
    );
  }
  if (r.kernel_failures.length > 0) {
    const modelFull = r.kernel_failures.filter((f) => f.model !== 'placed').length;
    for (const f of r.kernel_failures) {
      out.push(
        `  line ${f.line}: ${f.device} cpu ${f.cpu}, ${f.call === 'alloc' ? 'a coherent allocation of ' : ''}${f.size} bytes; model: ${f.model}`,
      );
    }
    if (modelFull < r.kernel_failures.length) {
      out.push(`  (${modelFull} of the ${r.kernel_failures.length} shown failed in the model too)`);
    }
  }
  for (const h of r.kernel_hangs) {
    out.push(
      `6.1's endless search at line ${h.line}: ${h.device} cpu ${h.cpu}, ${h.size} bytes of ${h.phys}, no map line; ${h.kernel === 'hung' ? 'the CPU wrote nothing after it: the kernel hung there' : `but the CPU went on (line ${h.next_line}): a disagreement`}`,
    );
  }
  out.push(
    `maps: ${m.bounced} bounced (${m.sg_lists} scatter-gather lists), ${m.direct} direct, ${m.outside_pool} outside the pool${m.outside_bounced > 0 ? `, ${m.outside_bounced} bounced outside it (swiotlb_bounced)` : ''}${m.allocs > 0 ? `, ${m.allocs} coherent allocations` : ''}; ${m.reordered} replayed at their swiotlb_bounced line`,
  );
  const dy = r.dynamic;
  if (dy) {
    out.push(
      `growable pool (CONFIG_SWIOTLB_DYNAMIC): the kernel bounced ${dy.kernel_outside} maps outside its default pool (at most ${dy.kernel_outside_used_hiwater} slots at once); the model put ${dy.both_outside} outside its own too, ${dy.model_in_pool} in its default pool, failed ${dy.model_failed}; ${dy.model_outside_kernel_in_pool} went outside in the model only; the model grew ${dy.growths} times (${dy.nslabs} slots)`,
    );
  }
  const u = r.unmaps;
  out.push(
    `unmaps: ${u.replayed} replayed, ${u.before_trace} of mappings made before the trace${u.sg_unknown > 0 ? `, ${u.sg_unknown} unknown sg buffers` : ''}, ${u.implicit} lost, ${u.reordered} replayed ahead of their line${u.null_frees > 0 ? `; ${u.null_frees} frees of NULL (nothing freed)` : ''}`,
  );
  const s = r.syncs;
  out.push(
    `syncs: ${s.for_device} for the device (${bytes(s.bytes_for_device)}), ${s.for_cpu} for the CPU (${bytes(s.bytes_for_cpu)})${s.before_trace > 0 ? `, ${s.before_trace} of mappings made before the trace` : ''}`,
  );
  return out;
}

/** Pool use over time and per area, and the largest mapping. */
function useSection(r: TraceReport): string[] {
  const out: string[] = [];
  const n = r.pool.nslabs;
  out.push(
    `pool use (slots): high water ${r.model.used_hiwater} of ${n} (${pct(r.model.used_hiwater, n)}) in the model, ${r.observed.used_hiwater} (${pct(r.observed.used_hiwater, n)}) as the kernel placed them; ${r.model.full} model failures (full)${r.model.too_large > 0 ? `, ${r.model.too_large} too large` : ''}${r.model.invalid > 0 ? `, ${r.model.invalid} refused as invalid` : ''}${r.model.kernel_hang > 0 ? `, ${r.model.kernel_hang} searched for ever (6.1)` : ''}${r.model.kernel_overrun > 0 ? `, ${r.model.kernel_overrun} past the pool's end (6.1)` : ''}`,
  );
  const series = thin(r.model.series, 16);
  if (series.length > 1) {
    out.push(
      ...table([
        ['from line', 'time', 'model', 'kernel'],
        ...series.map((pt) => [pt.line, pt.ts.toFixed(6), pt.used, pt.kernel_used]),
      ]),
    );
  }
  out.push('areas (high water in slots):');
  out.push(
    ...table([
      ['area', 'maps', 'high water', 'kernel maps', 'kernel high water'],
      ...r.model.areas.map((a) => [
        a.area,
        a.maps,
        a.used_hiwater,
        a.kernel_maps,
        a.kernel_used_hiwater,
      ]),
    ]),
  );
  if (r.largest) {
    out.push(
      `largest mapping: ${r.largest.size} bytes (${r.largest.device}, line ${r.largest.line})`,
    );
  }
  return out;
}

function deviceSection(r: TraceReport): string[] {
  const head = ['device', 'maps', 'bounced', 'direct', 'outside', 'failed', 'bounced bytes'];
  return [
    'devices:',
    ...table([
      [...head, 'largest', 'agree', 'disagree'],
      ...r.devices.map((d) => [
        d.device,
        d.maps,
        d.bounced,
        d.direct,
        d.outside_pool + d.outside_bounced,
        d.kernel_failed,
        bytes(d.bytes_bounced),
        d.largest,
        d.agree,
        d.disagree,
      ]),
    ]),
  ];
}

function bootLogSection(r: TraceReport): string[] {
  const b = r.boot_log;
  if (!b || (b.full_warnings_total === 0 && b.suppressed_warnings === 0)) return [];
  return [
    '',
    `boot log: ${b.full_warnings_total} "swiotlb buffer is full" warnings (${b.full_warnings_during_trace === null ? "the trace's times are not the log's: how many fell during it is unknown" : `${b.full_warnings_during_trace} during the trace`})${b.suppressed_warnings > 0 ? `, ${b.suppressed_warnings} more suppressed by the rate limit` : ''}`,
    ...b.full_warnings.map(
      (w) =>
        `  line ${w.line}${w.ts === undefined ? '' : ` [${w.ts.toFixed(6)}]`}: ${w.driver} ${w.device}: sz ${w.size} bytes, total ${w.total} slots, used ${w.used}`,
    ),
  ];
}
