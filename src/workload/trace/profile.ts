import { DmaDirection } from '../../swiotlb/constants.js';
import type { ReplayObserver, TracedOp } from './replay.js';

/**
 * The traced workload, as the later `size --trace` and `bench --trace` need it:
 * a {@link ReplayObserver} that sees every map and unmap the replay reads (of
 * the devices kept) and keeps, per device, the mapping sizes by direction, the
 * concurrency (mappings and bounced bytes live at once) and the CPUs that
 * mapped. {@link jobShape} turns a device's profile into the shape of a fio job
 * (bssplit, rwmixread, iodepth, numjobs) and {@link fioJobText} into job-file
 * text that parseJobFile() reads, so sizing.ts and the runner take a traced
 * workload the way they take a fio job.
 */

export interface DeviceProfile {
  device: string;
  maps: number;
  bounced: number;
  sgEntries: number;
  /** size -> count, per direction of the mapping. */
  sizes: {
    toDevice: Map<number, number>;
    fromDevice: Map<number, number>;
    bidirectional: Map<number, number>;
  };
  /** Most mappings live at once (bounced or not). */
  liveMax: number;
  /** Most bounced bytes live at once. */
  liveBouncedBytesMax: number;
  cpus: Set<number>;
  firstTs: number;
  lastTs: number;
}

export class TraceProfile implements ReplayObserver {
  private readonly devices = new Map<string, DeviceProfile & { live: number; liveBytes: number }>();

  onMap(op: TracedOp): void {
    const d = this.device(op);
    d.maps++;
    if (op.bounced) d.bounced++;
    if (op.sg) d.sgEntries++;
    const bySize =
      op.dir === DmaDirection.TO_DEVICE
        ? d.sizes.toDevice
        : op.dir === DmaDirection.FROM_DEVICE
          ? d.sizes.fromDevice
          : d.sizes.bidirectional;
    bySize.set(op.size, (bySize.get(op.size) ?? 0) + 1);
    d.cpus.add(op.cpu);
    d.live++;
    if (d.live > d.liveMax) d.liveMax = d.live;
    if (op.bounced) {
      d.liveBytes += op.size;
      if (d.liveBytes > d.liveBouncedBytesMax) d.liveBouncedBytesMax = d.liveBytes;
    }
  }

  onUnmap(op: TracedOp): void {
    const d = this.device(op);
    // Unmaps of mappings made before the trace would take the counts below zero.
    if (d.live > 0) d.live--;
    if (op.bounced) d.liveBytes = Math.max(0, d.liveBytes - op.size);
  }

  result(): DeviceProfile[] {
    return [...this.devices.values()].map(({ live: _l, liveBytes: _b, ...p }) => p);
  }

  private device(op: TracedOp): DeviceProfile & { live: number; liveBytes: number } {
    let d = this.devices.get(op.device);
    if (!d) {
      d = {
        device: op.device,
        maps: 0,
        bounced: 0,
        sgEntries: 0,
        sizes: { toDevice: new Map(), fromDevice: new Map(), bidirectional: new Map() },
        liveMax: 0,
        liveBouncedBytesMax: 0,
        cpus: new Set(),
        firstTs: op.ts,
        lastTs: op.ts,
        live: 0,
        liveBytes: 0,
      };
      this.devices.set(op.device, d);
    }
    d.lastTs = op.ts;
    return d;
  }
}

/** A fio job's shape for one device's traffic. */
export interface JobShape {
  /** [size, percent] for the device's reads (FROM_DEVICE maps) and writes (TO_DEVICE). */
  read: [number, number][];
  write: [number, number][];
  rwmixread: number;
  iodepth: number;
  numjobs: number;
}

/**
 * Mappings smaller than this are control structures, not data: virtio-blk maps
 * a 16-byte request header and a 1-byte status around each request's data.
 */
export const DATA_MIN_BYTES = 512;
const SPLIT_ENTRIES = 16;

/** Integer percentages (largest remainder) of the most frequent sizes, summing to 100. */
function split(sizes: Map<number, number>): [number, number][] {
  const data = [...sizes.entries()]
    .filter(([size]) => size >= DATA_MIN_BYTES)
    .map(([size, n]): [number, number] => [Math.ceil(size / 512) * 512, n])
    .sort((a, b) => b[1] - a[1])
    .slice(0, SPLIT_ENTRIES);
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

/**
 * The fio-job shape of a device's traced traffic: data sizes (mappings of at
 * least {@link DATA_MIN_BYTES}) by direction, the share of reads, the most data
 * mappings live at once as iodepth, the CPUs that mapped as numjobs.
 */
export function jobShape(p: DeviceProfile): JobShape {
  const count = (m: Map<number, number>) =>
    [...m.entries()].filter(([s]) => s >= DATA_MIN_BYTES).reduce((s, [, n]) => s + n, 0);
  const reads = count(p.sizes.fromDevice);
  const writes = count(p.sizes.toDevice) + count(p.sizes.bidirectional);
  const both = new Map(p.sizes.toDevice);
  for (const [s, n] of p.sizes.bidirectional) both.set(s, (both.get(s) ?? 0) + n);
  return {
    read: split(p.sizes.fromDevice),
    write: split(both),
    rwmixread: reads + writes === 0 ? 50 : Math.round((reads * 100) / (reads + writes)),
    iodepth: Math.max(1, p.liveMax),
    numjobs: Math.max(1, p.cpus.size),
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
  lines.push(`iodepth=${shape.iodepth}`, `numjobs=${shape.numjobs}`);
  if (minAlignMask) lines.push(`min_align_mask=${minAlignMask}`);
  return `${lines.join('\n')}\n`;
}
