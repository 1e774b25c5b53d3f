import { DmaDirection } from '../swiotlb/constants.js';

/**
 * Copy accounting that costs nothing per copy beyond a few stores: every thread
 * that copies owns one block of a shared Float64Array and is its only writer, so
 * no atomics are needed to add. The main thread reads all blocks at scrape time.
 *
 *   Int32 seq words:  [seq of block 0] [seq of block 1] ... (one per block, padded)
 *   Float64 blocks:   block b = the writer b (0 = inline copies on the main thread,
 *                     1..W = copy worker W-1):
 *     per region r < maxRegions, per direction d (0 = to_device, 1 = from_device):
 *       [BYTES] [COPIES] [NANOS]
 *     per direction d: HISTOGRAM_BUCKETS copy counts by size (<= 32 B, 64 B, ...,
 *       256 KiB, 512 KiB, larger)
 *
 * Rules: a writer makes seq odd (Atomics.add) before it updates its block and even
 * after; a reader on another thread retries while seq is odd or changed (a
 * seqlock), so it never sees half an update. Float64 holds byte totals exactly up
 * to 2^53 (8 PiB). Counters only grow.
 */
export const HISTOGRAM_BUCKETS = 16;
/**
 * log2 of the lowest bound: 32 B, the copy engine's timing threshold (TINY_COPY in
 * copy-engine.ts: copies of 32 bytes or less are byte loops and are not timed), so
 * the first bucket holds exactly the untimed copies (1-byte status, 16-byte
 * virtio-blk headers), and copies of 33 B to 512 B have buckets of their own
 * (64, 128, 256, 512 B). Powers of two all the way: a copy's bucket stays a clz32.
 */
const LOWEST_BOUND_LOG2 = 5;
/** Upper bounds (bytes) of the histogram buckets, 32 B to 512 KiB; the last bucket has none (+Inf). */
export const HISTOGRAM_BOUNDS: readonly number[] = Array.from(
  { length: HISTOGRAM_BUCKETS - 1 },
  (_, i) => 2 ** (LOWEST_BOUND_LOG2 + i),
);

const FIELDS = 3;
const F_BYTES = 0;
const F_COPIES = 1;
const F_NANOS = 2;
const SEQ_STRIDE = 16; // one seq word per 64-byte line
/** Reads of a block whose seq stays odd or changes before a scrape takes it as it is. */
const SEQLOCK_TRIES = 100_000;

export function statsLayout(blocks: number, maxRegions: number) {
  const perBlock = maxRegions * 2 * FIELDS + 2 * HISTOGRAM_BUCKETS;
  const seqBytes = blocks * SEQ_STRIDE * 4;
  return { perBlock, seqBytes, bytes: seqBytes + blocks * perBlock * 8 };
}

/**
 * The bucket of a copy of `length` bytes (1 to 2^32 - 1): the first whose bound
 * holds it. On every copy's path: one compare, a clz32 and a min, no allocation.
 */
export function histogramBucket(length: number): number {
  // Literals on the copy path: 32 = 2^LOWEST_BOUND_LOG2, 5 = LOWEST_BOUND_LOG2.
  if (length <= 32) return 0;
  const b = 32 - Math.clz32(length - 1) - 5; // ceil(log2(length)) - LOWEST_BOUND_LOG2
  return Math.min(b, HISTOGRAM_BUCKETS - 1);
}

/** The writing side of one block. */
export class CopyStatsWriter {
  private readonly seq: Int32Array;
  private readonly values: Float64Array;
  private readonly seqIndex: number;
  private readonly base: number;
  private readonly histBase: number;

  constructor(buffer: SharedArrayBuffer, blocks: number, maxRegions: number, block: number) {
    const layout = statsLayout(blocks, maxRegions);
    this.seq = new Int32Array(buffer, 0, blocks * SEQ_STRIDE);
    this.values = new Float64Array(buffer, layout.seqBytes, blocks * layout.perBlock);
    this.seqIndex = block * SEQ_STRIDE;
    this.base = block * layout.perBlock;
    this.histBase = this.base + maxRegions * 2 * FIELDS;
  }

  /** Opens an update; pair with {@link end}. Cheap enough to do once per batch. */
  begin(): void {
    Atomics.add(this.seq, this.seqIndex, 1);
  }

  end(): void {
    Atomics.add(this.seq, this.seqIndex, 1);
  }

  /** Adds one copy (inside begin/end). `dir` is DmaDirection.TO_DEVICE or FROM_DEVICE. */
  add(region: number, dir: number, length: number, nanos: number): void {
    const d = dir === DmaDirection.TO_DEVICE ? 0 : 1;
    const v = this.values;
    const i = this.base + (region * 2 + d) * FIELDS;
    v[i + F_BYTES]! += length;
    v[i + F_COPIES]! += 1;
    v[i + F_NANOS]! += nanos;
    v[this.histBase + d * HISTOGRAM_BUCKETS + histogramBucket(length)]! += 1;
  }

  /** A writer that died mid-update leaves seq odd; the owner of the buffer closes it. */
  repairAfterCrash(): void {
    if (Atomics.load(this.seq, this.seqIndex) & 1) Atomics.add(this.seq, this.seqIndex, 1);
  }
}

export interface DirectionTotals {
  bytes: number;
  copies: number;
  seconds: number;
}

export interface CopyStatsSnapshot {
  /** Per region (guest) id: totals by direction. Only regions with copies appear. */
  byRegion: Map<number, { to_device: DirectionTotals; from_device: DirectionTotals }>;
  /** Per writer block (0 = inline on the main thread, 1.. = workers): bytes and copies. */
  byWriter: { bytes: number; copies: number; seconds: number }[];
  /** Copy counts by size bucket (bounds in HISTOGRAM_BOUNDS) per direction. */
  histogram: { to_device: number[]; from_device: number[] };
  totals: { to_device: DirectionTotals; from_device: DirectionTotals };
}

function zero(): DirectionTotals {
  return { bytes: 0, copies: 0, seconds: 0 };
}

/** Reads every block consistently (seqlock) and sums them. */
export function readCopyStats(
  buffer: SharedArrayBuffer,
  blocks: number,
  maxRegions: number,
): CopyStatsSnapshot {
  const layout = statsLayout(blocks, maxRegions);
  const seq = new Int32Array(buffer, 0, blocks * SEQ_STRIDE);
  const values = new Float64Array(buffer, layout.seqBytes, blocks * layout.perBlock);
  const copy = new Float64Array(layout.perBlock);
  const snapshot: CopyStatsSnapshot = {
    byRegion: new Map(),
    byWriter: [],
    histogram: {
      to_device: new Array<number>(HISTOGRAM_BUCKETS).fill(0),
      from_device: new Array<number>(HISTOGRAM_BUCKETS).fill(0),
    },
    totals: { to_device: zero(), from_device: zero() },
  };
  for (let b = 0; b < blocks; b++) {
    const base = b * layout.perBlock;
    // A writer that died mid-update leaves seq odd until its owner repairs it:
    // after enough tries take the values as they are rather than hang the scrape.
    // Taken, not skipped: `copy` still held the previous block, which was then
    // counted twice (a scrape between a worker's death and its repair).
    let consistent = false;
    for (let tries = 0; tries < SEQLOCK_TRIES && !consistent; tries++) {
      const s1 = Atomics.load(seq, b * SEQ_STRIDE);
      if (s1 & 1) continue;
      copy.set(values.subarray(base, base + layout.perBlock));
      consistent = Atomics.load(seq, b * SEQ_STRIDE) === s1;
    }
    if (!consistent) copy.set(values.subarray(base, base + layout.perBlock));
    const writer = { bytes: 0, copies: 0, seconds: 0 };
    for (let r = 0; r < maxRegions; r++) {
      for (let d = 0; d < 2; d++) {
        const i = (r * 2 + d) * FIELDS;
        const copies = copy[i + F_COPIES]!;
        if (copies === 0) continue;
        const bytes = copy[i + F_BYTES]!;
        const seconds = copy[i + F_NANOS]! / 1e9;
        let entry = snapshot.byRegion.get(r);
        if (!entry) {
          entry = { to_device: zero(), from_device: zero() };
          snapshot.byRegion.set(r, entry);
        }
        const key = d === 0 ? 'to_device' : 'from_device';
        for (const t of [entry[key], snapshot.totals[key]]) {
          t.bytes += bytes;
          t.copies += copies;
          t.seconds += seconds;
        }
        writer.bytes += bytes;
        writer.copies += copies;
        writer.seconds += seconds;
      }
    }
    const hist = maxRegions * 2 * FIELDS;
    for (let k = 0; k < HISTOGRAM_BUCKETS; k++) {
      snapshot.histogram.to_device[k]! += copy[hist + k]!;
      snapshot.histogram.from_device[k]! += copy[hist + HISTOGRAM_BUCKETS + k]!;
    }
    snapshot.byWriter.push(writer);
  }
  return snapshot;
}
