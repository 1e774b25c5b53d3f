import type { LiveRec } from './live-table.js';
import type { AreaReport } from './report-types.js';
import { UsageSeries } from './series.js';
import type { TracedPool } from './traced-pool.js';

interface AreaUse {
  maps: number;
  used: number;
  hiwater: number;
}

/**
 * The slots the live mappings hold, on both sides: the kernel's (from the traced
 * addresses) and the model's (where it placed them), in all and per area, with
 * their high waters and the use over time.
 *
 *   kernel: used = sum of kSlots of live in-pool mappings   per area: kArea[area of kSlot]
 *           outside = sum of kSlots of live mappings outside the pool (grown, transient)
 *   model:  used = sum of mSlots of live mappings it placed  per area: mArea[rec.mArea]
 *
 * Rules: every change of a live mapping goes through {@link took} and
 * {@link released}, so the sums above hold; the model's `used` equals the
 * placement's own used() (the property test checks both against the generator).
 */
export class ReplayOccupancy {
  private mUsed = 0;
  private mHiwater = 0;
  private kUsed = 0;
  private kHiwater = 0;
  private kOutsideUsed = 0;
  private kOutsideHiwater = 0;
  private readonly mArea: AreaUse[];
  private readonly kArea: AreaUse[];
  private readonly series = new UsageSeries();

  /** `modelAreas`: the model's default pool's areas. */
  constructor(
    private readonly pool: TracedPool,
    modelAreas: number,
  ) {
    const area = () => ({ maps: 0, used: 0, hiwater: 0 });
    this.mArea = Array.from({ length: modelAreas }, area);
    this.kArea = Array.from({ length: pool.nareas }, area);
  }

  /** Slots the model holds now. */
  get modelUsed(): number {
    return this.mUsed;
  }

  get modelHiwater(): number {
    return this.mHiwater;
  }

  /** Slots the kernel's live in-pool mappings hold now. */
  get kernelUsed(): number {
    return this.kUsed;
  }

  get kernelHiwater(): number {
    return this.kHiwater;
  }

  /** Most kernel slots held outside the pool at once (grown, transient or other pools). */
  get outsideHiwater(): number {
    return this.kOutsideHiwater;
  }

  /** A mapping became live (the model's part when it placed it). */
  took(rec: LiveRec, ts: number): void {
    if (rec.kSlot >= 0) {
      this.kUsed += rec.kSlots;
      if (this.kUsed > this.kHiwater) this.kHiwater = this.kUsed;
      const ka = this.kArea[this.pool.areaOfSlot(rec.kSlot)]!;
      ka.maps++;
      ka.used += rec.kSlots;
      if (ka.used > ka.hiwater) ka.hiwater = ka.used;
    } else {
      this.kOutsideUsed += rec.kSlots;
      if (this.kOutsideUsed > this.kOutsideHiwater) this.kOutsideHiwater = this.kOutsideUsed;
    }
    if (rec.mAddr >= 0) {
      this.mUsed += rec.mSlots;
      if (this.mUsed > this.mHiwater) this.mHiwater = this.mUsed;
      if (rec.mArea >= 0) {
        const ma = this.mArea[rec.mArea]!;
        ma.maps++;
        ma.used += rec.mSlots;
        if (ma.used > ma.hiwater) ma.hiwater = ma.used;
      }
    }
    this.series.add(rec.line, ts, this.mUsed, this.kUsed);
  }

  /** A live mapping was released (at trace line `line`). */
  released(rec: LiveRec, line: number, ts: number): void {
    if (rec.kSlot >= 0) {
      this.kUsed -= rec.kSlots;
      this.kArea[this.pool.areaOfSlot(rec.kSlot)]!.used -= rec.kSlots;
    } else {
      this.kOutsideUsed -= rec.kSlots;
    }
    if (rec.mAddr >= 0) {
      this.mUsed -= rec.mSlots;
      if (rec.mArea >= 0) this.mArea[rec.mArea]!.used -= rec.mSlots;
    }
    this.series.add(line, ts, this.mUsed, this.kUsed);
  }

  seriesResult(): ReturnType<UsageSeries['result']> {
    return this.series.result();
  }

  /** Both sides per area (the longer list of areas; the other side's missing ones are 0). */
  areas(): AreaReport[] {
    const areas: AreaReport[] = [];
    const n = Math.max(this.mArea.length, this.kArea.length);
    for (let a = 0; a < n; a++) {
      areas.push({
        area: a,
        maps: this.mArea[a]?.maps ?? 0,
        used_hiwater: this.mArea[a]?.hiwater ?? 0,
        kernel_maps: this.kArea[a]?.maps ?? 0,
        kernel_used_hiwater: this.kArea[a]?.hiwater ?? 0,
      });
    }
    return areas;
  }
}
