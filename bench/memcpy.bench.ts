/**
 * What V8 charges for copying shared memory. Every bounce copy of the mediator is
 * between SharedArrayBuffers (guest memory and the pool are shared with the copy
 * workers and the device threads), and V8 copies those with base::Relaxed_Memcpy
 * (src/base/atomicops.h, V8 11.3 of Node 20; TypedArray.prototype.set and
 * Buffer.copy both end there): one relaxed 8-byte load and store at a time once
 * the destination is 8-aligned, and one byte at a time for the whole copy when
 * the source is not aligned with it modulo 8. Between ArrayBuffers the same call
 * is the C library's memmove, which moves 32 bytes and more per instruction.
 * Buffer.prototype.fill with a buffer as its value is one memcpy: the route the
 * guest side takes from 16 KiB on (src/workers/shared-copy.ts).
 *
 * For each size and working set, in one process, windows alternated round by round:
 *   unshared   TypedArray.set, ArrayBuffer -> ArrayBuffer
 *   shared     TypedArray.set, SharedArrayBuffer -> SharedArrayBuffer (V8's
 *              relaxed copy)
 *   shared+1   the same with the source one byte off the destination's alignment
 *              (a caller's buffer at an odd offset: a byte at a time)
 *   fill       Buffer.prototype.fill, SharedArrayBuffer -> SharedArrayBuffer
 * Working sets: `hot` (1 MiB each side, in the core's L2) and `cold` (--cold-mib
 * each side, far larger than the caches). Each window copies through its source
 * and destination in `size` steps, wrapping. Every buffer is written once before
 * the first window (no zero page, no first-touch fault in a window).
 *
 * Prints GB/s (medians of --rounds windows), shared ÷ unshared and fill ÷ shared.
 * Never asserts speed. Options: `npm run bench:memcpy -- --help`.
 */
import { performance } from 'node:perf_hooks';
import { formatSize, parseSize } from '../src/util/size.js';
import { benchArgs, intFlag, listFlag, positiveFlag, usageError } from './cli.js';
import { median } from './median.js';

const USAGE = `Usage: npm run bench:memcpy -- [options]
What V8 charges for copying shared memory: TypedArray.set on SharedArrayBuffers vs
ArrayBuffers, and Buffer.fill's memcpy (the copy engine's route), hot and cold.

  --sizes LIST     copy sizes (default 4k,64k)
  --duration S     seconds per window (default 0.2)
  --rounds N       windows per kind, alternated; medians printed (default 7)
  --cold-mib N     the cold working set, MiB on each side, 2 to 1024 (default 256)
  --json           print {"results":[...]} as the last line
  -h, --help       this help`;

const MiB = 2 ** 20;
const HOT_BYTES = MiB;
const KINDS = ['unshared', 'shared', 'shared+1', 'fill'] as const;
type Kind = (typeof KINDS)[number];

interface Result {
  size: number;
  working_set: 'hot' | 'cold';
  /** Bytes on each side. */
  working_set_bytes: number;
  unshared_gbps: number;
  shared_gbps: number;
  /** Shared, the source one byte off the destination's alignment. */
  shared_misaligned_gbps: number;
  /** Buffer.prototype.fill (memcpy) between SharedArrayBuffers. */
  fill_gbps: number;
  shared_over_unshared: number;
  fill_over_shared: number;
}

const options = benchArgs(
  'bench:memcpy',
  USAGE,
  {
    options: {
      sizes: { type: 'string', default: '4k,64k' },
      duration: { type: 'string', default: '0.2' },
      rounds: { type: 'string', default: '7' },
      'cold-mib': { type: 'string', default: '256' },
      json: { type: 'boolean', default: false },
    },
  },
  (v) => {
    const coldMiB = intFlag('cold-mib', v['cold-mib']);
    if (coldMiB < 2 || coldMiB > 1024) {
      throw usageError(`--cold-mib: "${v['cold-mib']}" must be from 2 to 1024`);
    }
    const sizes = listFlag('sizes', v.sizes, (e) => parseSize(e) || undefined, 'a size such as 4k');
    for (const size of sizes) {
      if (size < 8 || size > MiB / 2) {
        throw usageError(`--sizes: ${size} must be from 8 bytes to 512 KiB`);
      }
    }
    const rounds = intFlag('rounds', v.rounds);
    if (rounds < 1) throw usageError(`--rounds: "${v.rounds}" must be at least 1`);
    return {
      sizes,
      windowMs: positiveFlag('duration', v.duration) * 1000,
      rounds,
      coldBytes: coldMiB * MiB,
      json: v.json,
    };
  },
);

/** One working set: a source and a destination of `bytes` each, in each kind of memory. */
interface Memories {
  bytes: number;
  unshared: { src: Uint8Array; dst: Uint8Array };
  shared: { src: Uint8Array; dst: Buffer };
}

function memories(bytes: number): Memories {
  const unshared = { src: new Uint8Array(bytes + 8), dst: new Uint8Array(bytes) };
  const shared = {
    src: new Uint8Array(new SharedArrayBuffer(bytes + 8)),
    dst: Buffer.from(new SharedArrayBuffer(bytes)),
  };
  // Written once: no zero page and no first-touch fault inside a window.
  for (const a of [unshared.src, unshared.dst, shared.src, shared.dst]) a.fill(1);
  return { bytes, unshared, shared };
}

/** Copies `size` bytes at a time through the working set for `ms`; returns GB/s. */
function copyWindow(m: Memories, kind: Kind, size: number, ms: number): number {
  const steps = Math.floor(m.bytes / size);
  // Look at the clock every ~256 KiB copied: a clock read costs as much as a small copy.
  const batch = Math.max(1, Math.floor(262144 / size));
  const { src, dst } = kind === 'unshared' ? m.unshared : m.shared;
  const skew = kind === 'shared+1' ? 1 : 0;
  const fill = kind === 'fill';
  const t0 = performance.now();
  const end = t0 + ms;
  let step = 0;
  let copies = 0;
  let t = t0;
  while (t < end) {
    for (let i = 0; i < batch; i++) {
      const at = step * size;
      const from = src.subarray(at + skew, at + skew + size);
      if (fill) (dst as Buffer).fill(from, at, at + size);
      else dst.set(from, at);
      if (++step === steps) step = 0;
    }
    copies += batch;
    t = performance.now();
  }
  return (copies * size) / ((t - t0) / 1000) / 1e9;
}

function measure(m: Memories, size: number, set: 'hot' | 'cold'): Result {
  const gbps: Record<Kind, number[]> = { unshared: [], shared: [], 'shared+1': [], fill: [] };
  for (const kind of KINDS) copyWindow(m, kind, size, options.windowMs / 4); // warm-up
  for (let r = 0; r < options.rounds; r++) {
    // Rotated each round, so that no kind always follows the same one.
    for (let k = 0; k < KINDS.length; k++) {
      const kind = KINDS[(k + r) % KINDS.length]!;
      gbps[kind].push(copyWindow(m, kind, size, options.windowMs));
    }
  }
  const med = (kind: Kind) => median(gbps[kind]);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    size,
    working_set: set,
    working_set_bytes: m.bytes,
    unshared_gbps: round(med('unshared')),
    shared_gbps: round(med('shared')),
    shared_misaligned_gbps: round(med('shared+1')),
    fill_gbps: round(med('fill')),
    shared_over_unshared: round(med('shared') / med('unshared')),
    fill_over_shared: round(med('fill') / med('shared')),
  };
}

const results: Result[] = [];
for (const [set, bytes] of [
  ['hot', HOT_BYTES],
  ['cold', options.coldBytes],
] as const) {
  console.error(`memcpy bench: ${set} working set, ${formatSize(bytes)} on each side...`);
  const m = memories(bytes);
  for (const size of options.sizes) results.push(measure(m, size, set));
}

const row = (cells: string[]) =>
  cells.map((c, i) => (i < 2 ? c.padEnd(7) : c.padStart(10))).join(' ');
console.log('GB/s, medians of %d windows per kind', options.rounds);
console.log(row(['size', 'set', 'unshared', 'shared', 'shared+1', 'fill', 'sh/unsh', 'fill/sh']));
for (const r of results) {
  console.log(
    row([
      formatSize(r.size),
      r.working_set,
      r.unshared_gbps.toFixed(2),
      r.shared_gbps.toFixed(2),
      r.shared_misaligned_gbps.toFixed(2),
      r.fill_gbps.toFixed(2),
      r.shared_over_unshared.toFixed(3),
      r.fill_over_shared.toFixed(3),
    ]),
  );
}
console.log(
  "(shared: TypedArray.set, V8's relaxed copy; shared+1: a source off the destination's alignment, a byte at a time; fill: Buffer.fill's memcpy, the copy engine's route from 16 KiB)",
);
if (options.json) console.log(JSON.stringify({ results }));
