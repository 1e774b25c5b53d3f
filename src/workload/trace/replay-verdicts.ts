import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { DMA_MAPPING_ERROR } from './dma-events.js';
import type { Placed } from './live-table.js';
import type { PlaceFailure, Placement } from './placement.js';
import type { DeviceStats } from './replay-counts.js';
import type { Disagreement, KernelFailure, TraceReport } from './report-types.js';
import type { TracedPool } from './traced-pool.js';

export function hex(n: number): string {
  return Number.isFinite(n) ? `0x${n.toString(16)}` : 'out of range';
}

/**
 * Whether the model agreed with the kernel, mapping by mapping: the counts, the
 * first `keep` disagreements and kernel failures with their details, and the
 * likely reason of each disagreement in words (an offset that needs
 * --min-align-mask, another area, the pools drifting apart, a search the 6.1
 * rules never end). Devices whose bounce addresses keep their buffers' offsets
 * are remembered for the report's hints.
 */
export class ReplayVerdicts {
  agree = 0;
  disagree = 0;
  readonly disagreements: Disagreement[] = [];
  readonly kernelFailures: KernelFailure[] = [];
  /** Devices whose bounce offsets show a min_align_mask the replay was not given. */
  readonly offsetHints = new Set<string>();

  constructor(
    private readonly p: Placement,
    private readonly pool: TracedPool,
    private readonly keep: number,
  ) {}

  agreed(d: DeviceStats): void {
    this.agree++;
    d.agree++;
  }

  /** `kernel`: what the kernel did, when the traced dma_addr does not say it. */
  disagreed(
    d: DeviceStats,
    x: Omit<Placed, 'kind' | 'dir' | 'ts'>,
    area: number,
    model: string,
    reason: string,
    kernel?: string,
  ): void {
    this.disagree++;
    d.disagree++;
    if (this.disagreements.length >= this.keep) return;
    this.disagreements.push({
      line: x.line,
      device: x.device,
      cpu: x.cpu,
      area,
      size: x.size,
      phys: hex(x.phys),
      kernel:
        kernel ??
        (x.kAddr === DMA_MAPPING_ERROR
          ? 'failed'
          : this.pool.contains(x.kAddr)
            ? hex(x.kAddr)
            : `${hex(x.kAddr)} (outside the pool)`),
      model,
      reason,
    });
  }

  /** Keeps a kernel failure's details (the first `keep`). */
  kernelFailed(f: KernelFailure): void {
    if (this.kernelFailures.length < this.keep) this.kernelFailures.push(f);
  }

  /** Why the model placed a mapping at `mAddr` (in its area `mArea`) where the kernel did not. */
  whyElsewhere(x: Placed, mAddr: number, mArea: number): string {
    const kOff = x.kAddr & (IO_TLB_SIZE - 1);
    const mOff = mAddr & (IO_TLB_SIZE - 1);
    if (kOff !== mOff) {
      if (kOff !== 0 && kOff === (x.phys & (IO_TLB_SIZE - 1))) {
        this.offsetHints.add(x.device);
        return `the kernel kept the buffer's offset 0x${kOff.toString(16)} in the slot: the device has a min_align_mask the replay was not given (--min-align-mask ${x.device}=0xfff for NVMe)`;
      }
      return `bounce offsets differ (kernel 0x${kOff.toString(16)}, model 0x${mOff.toString(16)}): check --min-align-mask for ${x.device}`;
    }
    const kArea = this.pool.areaAt(x.kAddr);
    if (kArea !== mArea) {
      return `the kernel placed it in area ${kArea}, the model in area ${mArea} (the search started in area ${x.cpu & (this.p.geometry.nareas - 1)})`;
    }
    return 'another slot of the same area: the pools differ (an earlier disagreement, mappings made before the trace, or lost events)';
  }

  /** Why the model failed a request of `size` bytes with min_align_mask `mask` that the kernel placed. */
  whyFailed(res: PlaceFailure, size: number, mask: number): string {
    if (res.failure === 'invalid') return `the model refuses it: ${res.message}`;
    if (res.failure === 'kernel_hang') {
      return `the ${this.p.profile} rules never end this search (swiotlb_do_find_slots() without 7c3940bf81e5: it would spin with the area lock held), but the kernel returned from it: not a 6.1.y search, or the pools differ (an earlier disagreement)`;
    }
    if (res.failure === 'kernel_overrun') {
      return `the ${this.p.profile} rules would place it past the pool's end (a run into the missing slots of a partial last segment, or swiotlb_alloc() in a pool that is not page aligned), which the kernel did not: not a 6.1.y search, or the pools differ`;
    }
    if (res.failure === 'too_large') {
      return `the model refuses ${size} bytes with min_align_mask 0x${mask.toString(16)}: its search, padding included, is for more than one 128-slot segment, which no pool places`;
    }
    return 'the model found no room where the kernel did: it holds mappings the kernel had released (an earlier disagreement or a lost unmap)';
  }

  /** The disagreements kept, in trace order, and the first one's line. */
  report(): TraceReport['placements'] {
    return {
      agree: this.agree,
      disagree: this.disagree,
      first_disagreement_line:
        this.disagreements.length === 0 ? null : Math.min(...this.disagreements.map((x) => x.line)),
      disagreements: this.disagreements.sort((a, b) => a.line - b.line),
    };
  }
}
