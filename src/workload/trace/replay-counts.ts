import type { Placed } from './live-table.js';
import type { PlaceFailure } from './placement.js';
import type { DeviceReport, MapCounts, TraceReport } from './report-types.js';

/** A device's counts, as the report gives them (the device's name and mask are added then). */
export type DeviceStats = Omit<DeviceReport, 'device' | 'min_align_mask'>;

/**
 * What the replay counted: maps, unmaps and syncs by how they were matched, the
 * model's failures by kind, the --dynamic comparison of mappings outside the
 * default pool, per device, and the largest mapping. Counts only: the slots held
 * are replay-occupancy.ts's, the agreements replay-verdicts.ts's.
 */
export class ReplayCounts {
  readonly maps: MapCounts = {
    replayed: 0,
    bounced: 0,
    direct: 0,
    outside_pool: 0,
    kernel_failed: 0,
    kernel_failed_other: 0,
    sg_lists: 0,
    sg_truncated: 0,
    sg_merged: 0,
    sg_errors: 0,
    allocs: 0,
    allocs_failed: 0,
    allocs_failed_other: 0,
    reordered: 0,
    bounced_unmatched: 0,
    outside_bounced: 0,
  };
  readonly unmaps: TraceReport['unmaps'] = {
    replayed: 0,
    before_trace: 0,
    sg_unknown: 0,
    implicit: 0,
    reordered: 0,
    size_mismatch: 0,
    null_frees: 0,
  };
  readonly syncs: TraceReport['syncs'] = {
    for_device: 0,
    for_cpu: 0,
    bytes_for_device: 0,
    bytes_for_cpu: 0,
    before_trace: 0,
  };
  /** Mappings outside the default pool, by where each side put them (the report adds the high water). */
  readonly dyn = {
    kernel_outside: 0,
    both_outside: 0,
    model_in_pool: 0,
    model_outside_kernel_in_pool: 0,
    model_failed: 0,
  };
  /** The model's failures, by PlaceFailure kind. */
  readonly failures = { full: 0, tooLarge: 0, invalid: 0, kernelHang: 0, kernelOverrun: 0 };
  /** Events of the devices left out. */
  filtered = 0;
  largest: { size: number; device: string; line: number } | null = null;
  private readonly devices = new Map<string, DeviceStats>();

  /** A device's counts (zeros the first time). */
  dev(name: string): DeviceStats {
    let d = this.devices.get(name);
    if (!d) {
      d = {
        maps: 0,
        bounced: 0,
        direct: 0,
        outside_pool: 0,
        outside_bounced: 0,
        kernel_failed: 0,
        bytes_bounced: 0,
        largest: 0,
        sg_lists: 0,
        syncs: 0,
        unmaps_before_trace: 0,
        agree: 0,
        disagree: 0,
      };
      this.devices.set(name, d);
    }
    return d;
  }

  /** A mapping the kernel bounced into its pool, replayed. */
  bouncedInPool(d: DeviceStats, x: Placed): void {
    this.maps.replayed++;
    if (x.kind === 'alloc') this.maps.allocs++;
    else this.maps.bounced++;
    d.bounced++;
    d.bytes_bounced += x.size;
    if (x.size > d.largest) d.largest = x.size;
    if (this.largest === null || x.size > this.largest.size) {
      this.largest = { size: x.size, device: x.device, line: x.line };
    }
  }

  /** A map the kernel did not bounce: direct (dma_addr == phys) or elsewhere. */
  notBounced(d: DeviceStats, dmaAddr: number, phys: number): void {
    if (dmaAddr === phys) {
      this.maps.direct++;
      d.direct++;
    } else {
      this.maps.outside_pool++;
      d.outside_pool++;
    }
  }

  countFailure(res: PlaceFailure): void {
    if (res.failure === 'full') this.failures.full++;
    else if (res.failure === 'too_large') this.failures.tooLarge++;
    else if (res.failure === 'kernel_hang') this.failures.kernelHang++;
    else if (res.failure === 'kernel_overrun') this.failures.kernelOverrun++;
    else this.failures.invalid++;
  }

  /** Every device seen, with its mask: the most bounced first, then by name. */
  deviceReports(maskFor: (device: string) => number): DeviceReport[] {
    return [...this.devices.entries()]
      .map(([device, s]) => ({ device, min_align_mask: maskFor(device), ...s }))
      .sort((a, b) => b.bounced - a.bounced || a.device.localeCompare(b.device));
  }
}
