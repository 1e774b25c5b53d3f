import { DATA_MIN_BYTES, type DeviceProfile } from './profile.js';

/**
 * A traced device's profile (profile.ts) as the shape of a fio job for this
 * project's runner (bssplit, rwmixread, iodepth, numjobs), and that shape as
 * job-file text that parseJobFile() reads. trace-job.ts assembles the whole job
 * file from these sections.
 */

/** A fio job's shape for one device's traffic. */
export interface JobShape {
  /** [size, percent] for the device's reads (FROM_DEVICE data) and writes (TO_DEVICE, BIDIRECTIONAL). */
  read: [number, number][];
  write: [number, number][];
  rwmixread: number;
  iodepth: number;
  numjobs: number;
}

const SPLIT_ENTRIES = 16;
/** fio's and this runner's limits: numjobs (queues) and iodepth. */
const MAX_NUMJOBS = 64;
const MAX_IODEPTH = 4096;
/** The runner's largest block size (fio-job.ts). */
const MAX_BS = 16 * 2 ** 20;

/** Integer percentages (largest remainder) of the most frequent sizes, summing to 100. */
function split(sizes: Map<number, number>): [number, number][] {
  const merged = new Map<number, number>();
  for (const [size, n] of sizes) {
    if (size < DATA_MIN_BYTES) continue;
    const s = Math.min(MAX_BS, Math.ceil(size / 512) * 512);
    merged.set(s, (merged.get(s) ?? 0) + n);
  }
  const data = [...merged.entries()].sort((a, b) => b[1] - a[1]).slice(0, SPLIT_ENTRIES);
  const total = data.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return [];
  const raw = data.map(([size, n]) => ({ size, exact: (n * 100) / total }));
  const out = raw.map((r) => ({ size: r.size, pct: Math.floor(r.exact), rem: r.exact % 1 }));
  let left = 100 - out.reduce((s, r) => s + r.pct, 0);
  for (const r of [...out].sort((a, b) => b.rem - a.rem)) {
    if (left-- <= 0) break;
    r.pct++;
  }
  return out.filter((r) => r.pct > 0).map((r) => [r.size, r.pct]);
}

function count(m: Map<number, number>): number {
  let n = 0;
  for (const [s, c] of m) if (s >= DATA_MIN_BYTES) n += c;
  return n;
}

/**
 * The fio-job shape of a device's traced traffic: I/O sizes (rounded up to 512
 * bytes, the 16 most frequent) by direction, the share of reads, the CPUs that
 * mapped as numjobs and the most I/Os live at once, shared among them, as
 * iodepth. A profile without I/Os (built by hand) uses its mapping sizes.
 */
export function jobShape(p: DeviceProfile): JobShape {
  const haveIos = p.ioSizes.read.size + p.ioSizes.write.size > 0;
  let readSizes = p.ioSizes.read;
  let writeSizes = p.ioSizes.write;
  if (!haveIos) {
    readSizes = p.sizes.fromDevice;
    writeSizes = new Map(p.sizes.toDevice);
    for (const [s, n] of p.sizes.bidirectional) writeSizes.set(s, (writeSizes.get(s) ?? 0) + n);
  }
  const reads = count(readSizes);
  const writes = count(writeSizes);
  const numjobs = Math.min(MAX_NUMJOBS, Math.max(1, p.cpus.size));
  const live = haveIos ? p.liveIosMax : p.liveMax;
  return {
    read: split(readSizes),
    write: split(writeSizes),
    rwmixread: reads + writes === 0 ? 50 : Math.round((reads * 100) / (reads + writes)),
    iodepth: Math.min(MAX_IODEPTH, Math.max(1, Math.ceil(live / numjobs))),
    numjobs,
  };
}

/** A fio job section (INI text) for the shape; `name` must be a valid section name. */
export function fioJobText(name: string, shape: JobShape, minAlignMask = 0): string {
  const fmt = (s: [number, number][]) => s.map(([size, pct]) => `${size}/${pct}`).join(':');
  const rw =
    shape.read.length > 0 && shape.write.length > 0
      ? 'randrw'
      : shape.read.length > 0
        ? 'randread'
        : 'randwrite';
  const lines = [`[${name}]`, `rw=${rw}`];
  if (rw === 'randrw') {
    lines.push(`bssplit=${fmt(shape.read)},${fmt(shape.write)}`, `rwmixread=${shape.rwmixread}`);
  } else {
    const s = rw === 'randread' ? shape.read : shape.write;
    if (s.length > 0) lines.push(`bssplit=${fmt(s)}`);
  }
  // An asynchronous engine and O_DIRECT, as the traced guest's I/O reached the device:
  // without ioengine fio (and the runner) would run psync, capped at depth 1.
  lines.push('ioengine=libaio', 'direct=1');
  lines.push(`iodepth=${shape.iodepth}`, `numjobs=${shape.numjobs}`);
  if (minAlignMask) lines.push(`min_align_mask=${minAlignMask}`);
  return `${lines.join('\n')}\n`;
}
