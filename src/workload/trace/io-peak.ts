/**
 * The most I/Os live at once on one device, when the I/O some maps belong to is
 * not known yet (profile.ts): a map that may be an entry of a virtqueue buffer
 * whose indirect descriptor table is still to come (virtq-table.ts) is counted as
 * an I/O of its own until the table groups it with the buffer's other entries.
 * Counted so, the live count overshoots while a buffer is being mapped, by one for
 * each entry after its first; so while the device has such maps (pending maps),
 * the count right after each I/O starts is kept (a sample), a table lowers the
 * samples taken since its entries began, and a sample enters the peak only once no
 * pending map is older than it (no table can lower it any more).
 *
 * Invariants: for `head <= i < samples.length`, `samples[i]` is the live count
 * right after the start numbered `base + i`, as far as the tables seen so far
 * tell (entries below `head` are settled, dropped when they are half the array);
 * every pending map's own start is numbered `>= base + head`; `max` is the peak
 * over the starts numbered below `base + head` and over every start made while
 * nothing was pending and no sample waited.
 */
export class IoPeak {
  /** I/Os live now, each pending map counted as one. */
  live = 0;
  /** The peak over the samples already final. */
  max = 0;
  private samples: number[] = [];
  private base = 0;
  private head = 0;

  /**
   * An I/O starts. `pending`: the device has pending maps (this one included), so
   * the count is kept as a sample. Returns the start's number (for a pending map
   * to remember), -1 when not kept.
   */
  up(pending: boolean): number {
    this.live++;
    if (!pending && this.waiting === 0) {
      if (this.live > this.max) this.max = this.live;
      return -1;
    }
    this.samples.push(this.live);
    return this.base + this.samples.length - 1;
  }

  /** `n` I/Os end. */
  down(n = 1): void {
    this.live -= n;
  }

  /** Samples kept, waiting for the pending maps older than them. */
  get waiting(): number {
    return this.samples.length - this.head;
  }

  /** Number of the next start. */
  get next(): number {
    return this.base + this.samples.length;
  }

  /**
   * A table makes one I/O of the pending maps whose starts are numbered `starts`
   * (increasing): from the start of its entry j (0-based) on, the count was j too
   * high, and now is (k - 1) too high.
   */
  group(starts: readonly number[]): void {
    const k = starts.length;
    for (let j = 1; j < k; j++) {
      const end = (j + 1 < k ? starts[j + 1]! : this.next) - this.base;
      for (let i = starts[j]! - this.base; i < end; i++) this.samples[i]! -= j;
    }
    this.live -= k - 1;
  }

  /** The samples of starts numbered below `oldest` (the oldest pending map's; Infinity: none) are final. */
  settle(oldest: number): void {
    const end = Math.min(this.samples.length, oldest - this.base);
    if (end <= this.head) return;
    for (let i = this.head; i < end; i++) {
      if (this.samples[i]! > this.max) this.max = this.samples[i]!;
    }
    this.head = end;
    if (this.head === this.samples.length || this.head * 2 > this.samples.length) {
      this.samples = this.samples.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }
}
