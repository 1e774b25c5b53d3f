import { DmaDirection } from '../../swiotlb/constants.js';
import { DMA_MAPPING_ERROR } from './dma-events.js';
import { physKey } from './lookahead.js';
import type { ReplayState } from './replay-state.js';
import { hex } from './replay-verdicts.js';
import type { KernelHang } from './report-types.js';

/**
 * 6.1's endless search: swiotlb_do_find_slots() without 7c3940bf81e5 never ends
 * some searches (its loop never ends for some min_align_mask requests), spinning
 * with the area lock held, so the CPU writes nothing more and the map line never
 * comes. A traced map line the model says never ends is a disagreement (the
 * kernel returned from it: replay-maps.ts). A swiotlb_bounced with no map line
 * (replay-bounced.ts) whose CPU has nothing ahead in the window is tried here,
 * and a request that never ends is judged at the end: hung (agreement) when its
 * CPU wrote no later event, a disagreement when it did.
 *
 * Rules: `hangs` holds, in trace order, every request tried that the model says
 * never ends; each is judged once, by {@link judge}, when the trace has ended.
 * The only evidence weighed is the CPU's own last event line (the reader's, over
 * every event of the trace, DMA or not): 6.1's swiotlb_do_find_slots()
 * (kernel/dma/swiotlb.c) loops `do { ... } while (index != wrap)` inside
 * spin_lock_irqsave(&area->lock, flags), so a CPU caught in it runs nothing else
 * and any later line of that CPU means it returned.
 */
export class KernelHangs {
  private readonly hangs: KernelHang[] = [];

  constructor(private readonly s: ReplayState) {}

  /**
   * A swiotlb_bounced with no map line: under 6.1, the kernel may have hung in
   * swiotlb_do_find_slots(). When that CPU has no event ahead in the window, the
   * model tries the request: a WOULD_HANG answer is judged at the end against the
   * CPU's last event. The try is placement-only; one that fits is released at
   * once (the failed map took nothing in the kernel; the model's next-fit cursor
   * moved, which is the price of asking).
   */
  probe(device: string, cpu: number, devAddr: number, size: number, line: number): void {
    const s = this.s;
    if (s.p.profile !== '6.1' || s.window.hasEventOfCpu(cpu)) return;
    const phys = physKey(devAddr);
    const res = s.p.map(phys, size, DmaDirection.TO_DEVICE, {
      cpu,
      minAlignMask: s.maskFor(device),
    });
    if ('addr' in res) {
      s.p.unmap(res.addr, size, DmaDirection.TO_DEVICE);
      return;
    }
    if (res.failure !== 'kernel_hang') return;
    s.counts.maps.replayed++;
    s.counts.failures.kernelHang++;
    this.hangs.push({ line, device, cpu, size, phys: hex(phys), kernel: 'hung' });
  }

  /**
   * Judges every request the model says never ends: the kernel hung if its CPU
   * wrote nothing after it. `lastEventLine(cpu)`: the line of the CPU's last event.
   */
  judge(lastEventLine: (cpu: number) => number): void {
    for (const h of this.hangs) this.judgeOne(h, lastEventLine(h.cpu));
  }

  private judgeOne(h: KernelHang, lastLine: number): void {
    const s = this.s;
    const d = s.counts.dev(h.device);
    if (lastLine > h.line) {
      h.kernel = 'went on';
      h.next_line = lastLine;
      s.verdicts.disagreed(
        d,
        { ...h, phys: Number(h.phys), kAddr: DMA_MAPPING_ERROR },
        s.startArea(h.cpu),
        'kernel_hang',
        `the 6.1 rules never end this search (swiotlb_do_find_slots() without 7c3940bf81e5), but CPU ${h.cpu} went on (its last event is at line ${lastLine}): the kernel's search is not 6.1.y's, or the pools differ`,
        'no map line; the CPU went on',
      );
    } else {
      h.kernel = 'hung';
      s.verdicts.agreed(d);
    }
  }

  /** The requests tried, as the report gives them. */
  list(): KernelHang[] {
    return this.hangs.map((h) => ({ ...h }));
  }

  /** The requests judged hung. */
  hung(): KernelHang[] {
    return this.hangs.filter((h) => h.kernel === 'hung');
  }
}
