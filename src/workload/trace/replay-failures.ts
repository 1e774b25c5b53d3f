import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { type AllocEvent, DMA_MAPPING_ERROR, type MapEvent } from './dma-events.js';
import type { Placed } from './live-table.js';
import type { DeviceStats } from './replay-counts.js';
import type { ReplayState } from './replay-state.js';
import { hex } from './replay-verdicts.js';
import type { KernelFailure } from './report-types.js';
import { nrSlots } from './traced-pool.js';

/**
 * dma_addr=ffffffffffffffff: the kernel failed a map. It is replayed when the
 * device bounces (a swiotlb_bounced line announced it, or the device has bounced
 * before; else it is counted as another kind of failure, an IOMMU's say): both
 * failing is an agreement, the model placing it a disagreement (and its slots are
 * given back at once: no unmap follows a failed map). Under the 6.1 rules a
 * request the model would spin on or place past the pool's end is a disagreement
 * too: the kernel returned "swiotlb buffer is full" instead.
 */
export function replayKernelFailure(
  s: ReplayState,
  ev: MapEvent,
  cpu: number,
  viaBounced: boolean,
  d: DeviceStats,
): void {
  if (!viaBounced && d.bounced === 0 && d.outside_bounced === 0) {
    s.counts.maps.kernel_failed_other++;
    return;
  }
  s.counts.maps.kernel_failed++;
  s.counts.maps.replayed++;
  d.kernel_failed++;
  const area = s.startArea(cpu);
  const mask = s.maskFor(ev.device);
  const res = s.p.map(ev.phys, ev.size, ev.dir, { cpu, minAlignMask: mask });
  const x: Placed = { ...ev, kind: 'map', cpu, kAddr: DMA_MAPPING_ERROR };
  let model: KernelFailure['model'];
  if ('addr' in res) {
    model = 'placed';
    // The kernel has no such mapping, so no unmap will come: give the slots back now.
    s.p.unmap(res.addr, ev.size, ev.dir);
    s.verdicts.disagreed(
      d,
      x,
      area,
      hex(res.addr),
      'the kernel failed (swiotlb buffer is full) where the model found room: the model holds fewer mappings (mappings made before the trace, or lost maps)',
    );
  } else {
    model = res.failure;
    s.counts.countFailure(res);
    // The kernel failed; 6.1's rules would have spun or run past the pool's end instead.
    if (res.failure === 'kernel_hang' || res.failure === 'kernel_overrun') {
      s.verdicts.disagreed(d, x, area, res.failure, s.verdicts.whyFailed(res, ev.size, mask));
    } else s.verdicts.agreed(d);
  }
  if (s.observer?.onMap) {
    const slots = nrSlots(ev.size + (ev.phys & mask & (IO_TLB_SIZE - 1)));
    s.observe('onMap', x, s.table.newId(), { bounced: true, sg: false, slots, failed: true });
  }
  s.verdicts.kernelFailed({
    line: ev.line,
    device: ev.device,
    cpu,
    size: ev.size,
    call: 'map',
    model,
  });
}

/**
 * dma_alloc with a NULL virt_addr: the kernel failed a coherent allocation
 * (kernel/dma/mapping.c, 6.12.117 dma_alloc_attrs() traces the failure too; its
 * dma_addr is whatever the caller's handle held, so it says nothing). For a
 * device whose allocations come from the pool (`fromPool`: one of its
 * allocations landed there before; a restricted pool, where
 * dma_direct_alloc() -> __dma_direct_alloc_pages() takes
 * dma_direct_alloc_swiotlb() -> swiotlb_alloc() when is_swiotlb_for_alloc())
 * it is replayed as the kernel's "no room": the model failing too is an
 * agreement, the model finding room a disagreement (its slots are freed at
 * once, as no dma_free follows). Other devices' failures are counted only:
 * their memory comes from elsewhere.
 */
export function replayFailedAlloc(
  s: ReplayState,
  ev: AllocEvent,
  cpu: number,
  size: number,
  fromPool: boolean,
): void {
  if (!fromPool) {
    s.counts.maps.allocs_failed_other++;
    return;
  }
  const d = s.counts.dev(ev.device);
  d.maps++;
  d.kernel_failed++;
  s.counts.maps.allocs_failed++;
  s.counts.maps.replayed++;
  const area = s.startArea(cpu);
  const res = s.p.alloc(size, { cpu });
  const x: Placed = {
    kind: 'alloc',
    device: ev.device,
    line: ev.line,
    ts: ev.ts,
    cpu,
    size,
    dir: 0,
    phys: 0,
    kAddr: DMA_MAPPING_ERROR,
  };
  let model: KernelFailure['model'];
  if ('addr' in res) {
    model = 'placed';
    s.p.free(res.addr, size);
    s.verdicts.disagreed(
      d,
      x,
      area,
      hex(res.addr),
      'the kernel failed this coherent allocation (no room in the pool) where the model found room: the model holds fewer mappings (mappings made before the trace, or lost maps)',
    );
  } else {
    model = res.failure;
    s.counts.countFailure(res);
    s.verdicts.agreed(d);
  }
  s.verdicts.kernelFailed({ line: ev.line, device: ev.device, cpu, size, call: 'alloc', model });
}
