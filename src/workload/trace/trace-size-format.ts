import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { formatBytes } from '../report.js';
import type { TraceSizeReport } from './trace-advice.js';

/** `size --trace`'s advice as text for a terminal. */

function slots(n: number | undefined): string {
  return n === undefined ? 'none up to 1 GiB' : `${n} slots (${formatBytes(n * IO_TLB_SIZE)})`;
}

function sizes(list: [number, number][]): string {
  return list.length === 0
    ? '-'
    : list
        .slice(0, 4)
        .map(([s, p]) => `${formatBytes(s)} ${p}%`)
        .join(', ') + (list.length > 4 ? ', ...' : '');
}

function demandSection(r: TraceSizeReport): string[] {
  const out = ['What each device asked of the pool (peaks are of what was live at once):'];
  for (const d of r.devices) {
    out.push(
      `  ${d.device}: ${d.maps} maps (${d.bounced} bounced${d.outside > 0 ? `, ${d.outside} outside the pool` : ''}${d.failed > 0 ? `, ${d.failed} failed` : ''}), ${d.ios} I/Os${d.flushes > 0 ? ` + ${d.flushes} without data` : ''}${d.aborted > 0 ? ` + ${d.aborted} cut short by a failed map` : ''}; peak ${d.peak_live_ios} I/Os, ${formatBytes(d.peak_bounced_bytes)} bounced in ${d.peak_bounced_slots} slots; largest map ${formatBytes(d.largest)}`,
    );
    out.push(
      `    reads ${d.rwmixread}%: ${sizes(d.read_sizes)}; writes: ${sizes(d.write_sizes)}; CPUs ${d.cpus.join(',') || '-'} (areas ${d.areas.join(',') || '-'}); min_align_mask 0x${d.min_align_mask.toString(16)}, ${d.unaligned_percent}% of buffers not page aligned`,
    );
  }
  return out;
}

function tableSection(r: TraceSizeReport): string[] {
  const s = r.sizing;
  const out = [
    `At ${s.areas} area${s.areas > 1 ? 's' : ''}:`,
    '     slots      size   failures  high-water',
  ];
  for (const row of s.table) {
    const marks = [
      row.traced ? 'the traced pool' : '',
      row.nslabs === s.recommended_slots ? 'recommended' : '',
    ].filter(Boolean);
    out.push(
      `${String(row.nslabs).padStart(10)} ${formatBytes(row.bytes).padStart(9)} ${String(row.failures).padStart(10)}  ${row.used_hiwater} (${row.used_hiwater_percent}%)${marks.length > 0 ? `  <- ${marks.join(', ')}` : ''}`,
    );
  }
  return out;
}

export function formatTraceSize(r: TraceSizeReport): string {
  const p = r.pool;
  const s = r.sizing;
  const out: string[] = [
    `Sizing from ${r.trace}: its ${s.requests} bounced requests replayed, in trace order and from the traced CPUs, against pools of each size (${p.rules}).`,
    `Traced pool: ${p.nslabs} slots (${formatBytes(p.bytes)}) in ${p.nareas} area${p.nareas > 1 ? 's' : ''} at ${p.base}${p.restricted ? ' (restricted)' : ''}; its high water as the kernel placed: ${r.replay.observed_used_hiwater} slots; the kernel's failures: ${r.replay.kernel_full}; placements ${r.replay.placements.agree} agree, ${r.replay.placements.disagree} disagree (replay --trace tells why).`,
    '',
    ...demandSection(r),
    '',
    'Smallest default pool without failures, by area count:',
    ...s.by_areas.map(
      (b) =>
        `  ${String(b.areas).padStart(3)} area${b.areas > 1 ? 's' : ' '}: ${slots(b.minimal_slots)}`,
    ),
    `  restricted-dma-pool (one area): ${slots(s.restricted.minimal_slots)}`,
    '',
    ...tableSection(r),
    '',
  ];
  if (s.recommended_slots === undefined) {
    out.push('No pool up to 1 GiB holds this trace without failures.');
  } else {
    out.push(
      `Recommended: ${slots(s.recommended_slots)}, ${s.areas} area${s.areas > 1 ? 's' : ''}: the smallest pool without failures (${s.minimal_slots} slots) + ${Math.round(s.margin * 100)}% margin, ${(s.minimal_slots ?? 0) * (1 + s.margin) > s.recommended_slots ? 'past the 1 GiB a pool can be here: the largest pool instead.' : 'rounded as swiotlb= rounds it.'}`,
      '',
      'Kernel command line:',
      `  ${r.kernel_parameter}          a confidential guest (SEV, TDX) bounces every DMA by itself`,
      `  ${r.kernel_parameter_forced}    any other guest: without force Linux bounces only what a device cannot reach`,
    );
  }
  out.push('', 'Device tree (restricted DMA pool, one area):');
  out.push(r.device_tree ?? '  no one-area pool up to 1 GiB works');
  if (r.service) {
    out.push(
      '',
      `This service (serve --config FILE): the traced workload as a fio job, sized as "size --job" sizes it (its pool also holds the virtqueues): ${slots(r.service.recommended_slots)}, ${r.service.areas} area${r.service.areas > 1 ? 's' : ''}.`,
    );
    if (r.service.config) out.push(JSON.stringify(r.service.config, null, 2));
  }
  if (r.notes.length > 0)
    out.push('', 'What this sizing cannot see:', ...r.notes.map((n) => `  - ${n}`));
  return `${out.join('\n')}\n`;
}
