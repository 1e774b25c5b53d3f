import type { KernelHangs } from './replay-hangs.js';
import type { ReplayState } from './replay-state.js';
import type { ReplayResult } from './replay-types.js';
import { hex } from './replay-verdicts.js';

/** The replay's result, from what it counted, held and judged. */
export function replayResult(s: ReplayState, hangs: KernelHangs): ReplayResult {
  const c = s.counts;
  const occ = s.occupancy;
  return {
    placements: s.verdicts.report(),
    maps: c.maps,
    unmaps: c.unmaps,
    syncs: c.syncs,
    model: {
      full: c.failures.full,
      too_large: c.failures.tooLarge,
      invalid: c.failures.invalid,
      kernel_hang: c.failures.kernelHang,
      kernel_overrun: c.failures.kernelOverrun,
      used_hiwater: occ.modelHiwater,
      used_end: occ.modelUsed,
      series: occ.seriesResult(),
      areas: occ.areas(),
    },
    observed: { used_hiwater: occ.kernelHiwater, used_end: occ.kernelUsed },
    largest: c.largest,
    kernel_failures: s.verdicts.kernelFailures,
    kernel_hangs: hangs.list(),
    dynamic: s.p.dynamic
      ? { ...c.dyn, kernel_outside_used_hiwater: occ.outsideHiwater, ...s.p.growth() }
      : null,
    devices: c.deviceReports((device) => s.maskFor(device)),
    hints: hints(s, hangs),
    filtered_events: c.filtered,
  };
}

/** What to do about what the replay saw, one sentence each. */
function hints(s: ReplayState, hangs: KernelHangs): string[] {
  const out: string[] = [];
  for (const device of s.verdicts.offsetHints) {
    out.push(
      `${device}: the kernel's bounce addresses keep the low bits of the buffers' addresses, so the device has a min_align_mask (NVMe sets 0xfff): replay with --min-align-mask ${device}=0xfff`,
    );
  }
  const m = s.counts.maps;
  const unmaps = s.counts.unmaps;
  if (m.bounced === 0 && m.allocs === 0 && m.outside_pool > 0) {
    out.push(
      `no dma_addr fell in the pool [${hex(s.pool.base)}, ${hex(s.pool.end)}) but ${m.outside_pool} were neither there nor the buffer's own address: is the boot log from the traced boot, or is the pool's base right?`,
    );
  }
  if (m.outside_pool > 0 && m.bounced > 0) {
    out.push(
      `${m.outside_pool} mappings went outside the pool and are not replayed: an IOMMU, a DMA offset, or pools the kernel grew (record swiotlb:swiotlb_bounced too: it tells bounced mappings apart)`,
    );
  }
  if (m.outside_bounced > 0 && !s.p.dynamic) {
    out.push(
      `${m.outside_bounced} mappings that swiotlb_bounced announced went outside the pool: transient or grown pools of CONFIG_SWIOTLB_DYNAMIC (replay with --dynamic), or another pool (a restricted-dma-pool: replay it with --restricted); they are counted, not replayed`,
    );
  }
  for (const h of hangs.hung()) {
    out.push(
      `line ${h.line}: ${h.device} on CPU ${h.cpu} asked for ${h.size} bytes that the 6.1 rules search for ever (swiotlb_do_find_slots() without 7c3940bf81e5), and CPU ${h.cpu} wrote nothing after it: the kernel hung there with the area's lock held. Linux 6.3 fixed it; 6.1.y has not taken the fix`,
    );
  }
  if (unmaps.before_trace > 0) {
    out.push(
      `${unmaps.before_trace} unmaps of mappings made before the trace started (counted, not errors): they held slots the model did not know of, so early placements can disagree`,
    );
  }
  if (unmaps.implicit > 0) {
    out.push(
      `${unmaps.implicit} mappings were released without their unmap (the kernel reused their slots): events were lost, or unmaps lie further ahead than the lookahead window`,
    );
  }
  if (m.sg_truncated > 0) {
    out.push(
      `${m.sg_truncated} scatter-gather lists were printed in part (more than 128 entries): their other entries are not replayed`,
    );
  }
  if (m.bounced_unmatched > 0) {
    out.push(
      `${m.bounced_unmatched} swiotlb_bounced lines have no map line: maps that failed without a dma event (dma_map_sg's errors are not traced) or lost events`,
    );
  }
  return out;
}
