/**
 * A compact series of pool use over a stream of unknown length: at most
 * `2 * maxPoints` buckets, each the maximum of the samples it covers. When the
 * buckets fill, neighbours merge in pairs and each bucket covers twice as many
 * samples from then on, so memory stays bounded whatever the trace length and
 * the peaks survive.
 *
 *   samples:  s0 s1 s2 s3 s4 s5 ...
 *   buckets:  [s0 s1][s2 s3][s4 s5] ...   (width 2 after one merge)
 */
export interface SeriesPoint {
  /** Trace line of the bucket's first sample. */
  line: number;
  /** Trace time of the bucket's first sample. */
  ts: number;
  /** Highest model use (slots) in the bucket. */
  used: number;
  /** Highest use the kernel's own placements show (slots), in the bucket. */
  kernel_used: number;
}

export class UsageSeries {
  private points: SeriesPoint[] = [];
  private width = 1;
  private inLast = 0;

  constructor(private readonly maxPoints = 64) {}

  add(line: number, ts: number, used: number, kernelUsed: number): void {
    const last = this.points[this.points.length - 1];
    if (last !== undefined && this.inLast < this.width) {
      if (used > last.used) last.used = used;
      if (kernelUsed > last.kernel_used) last.kernel_used = kernelUsed;
      this.inLast++;
      return;
    }
    if (this.points.length >= 2 * this.maxPoints) this.merge();
    this.points.push({ line, ts, used, kernel_used: kernelUsed });
    this.inLast = 1;
  }

  /** The series, at most `2 * maxPoints` points. */
  result(): SeriesPoint[] {
    return this.points.map((p) => ({ ...p }));
  }

  private merge(): void {
    const merged: SeriesPoint[] = [];
    for (let i = 0; i < this.points.length; i += 2) {
      const a = this.points[i]!;
      const b = this.points[i + 1];
      merged.push(
        b === undefined
          ? a
          : {
              line: a.line,
              ts: a.ts,
              used: Math.max(a.used, b.used),
              kernel_used: Math.max(a.kernel_used, b.kernel_used),
            },
      );
    }
    this.points = merged;
    this.width *= 2;
    // The last merged bucket is full (two full buckets) unless it was a lone one.
    this.inLast = this.width;
  }
}
