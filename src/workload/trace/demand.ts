import type { DmaDirection } from '../../swiotlb/constants.js';
import { kernelPlacement, type PlacementSpec } from './placement.js';
import type { ReplayObserver, TracedOp } from './replay-types.js';

/**
 * The traced demand on the pool, kept to replay it against other pools: every
 * mapping the kernel bounced (in the pool, outside it, or failed), in the order
 * the trace replay handed them to its model, with the CPU that searched, and
 * each release. `size --trace` replays it against pools of other sizes and area
 * counts (trace-sizing.ts): the same requests, in the same order, from the same
 * CPUs, so a pool "without failures" held exactly this workload.
 *
 * Storage: one row per operation in growable typed arrays (a trace of millions
 * of maps stays a few tens of MB):
 *
 *   row:   op   id    phys   size  dir  cpu  mask
 *          MAP  17    0x..   4096  1    2    0xfff     a map (or ALLOC, or FAILED: the kernel failed it)
 *          UNMAP 17   -      -     -    -    -         its release
 *
 * Rules: an UNMAP row names an id of an earlier MAP or ALLOC row; a FAILED row
 * has no UNMAP (the kernel made no mapping).
 */

const MAP = 1;
const ALLOC = 2;
const FAILED = 3;
const UNMAP = 4;

export class TraceDemand implements ReplayObserver {
  private n = 0;
  private op = new Uint8Array(1024);
  private id = new Float64Array(1024);
  private phys = new Float64Array(1024);
  private size = new Uint32Array(1024);
  private dir = new Uint8Array(1024);
  private cpu = new Uint32Array(1024);
  private mask = new Uint32Array(1024);

  /** Rows recorded. */
  get length(): number {
    return this.n;
  }

  /** Maps, allocations and the kernel's failures recorded. */
  get requests(): number {
    let k = 0;
    for (let i = 0; i < this.n; i++) if (this.op[i] !== UNMAP) k++;
    return k;
  }

  onMap(o: TracedOp): void {
    if (!o.bounced) return;
    this.row(o.failed ? FAILED : o.kind === 'alloc' ? ALLOC : MAP, o);
  }

  onUnmap(o: TracedOp): void {
    if (o.bounced) this.row(UNMAP, o);
  }

  /**
   * Replays the demand against the pool `spec` describes (never growing): the
   * maps that find no room there, and the pool's high water.
   */
  replay(spec: PlacementSpec): DemandResult {
    const { placement: p } = kernelPlacement({ ...spec, dynamic: false });
    const live = new Map<number, number>(); // id -> row of its map, while placed
    const addr = new Map<number, number>();
    const r: DemandResult = {
      nslabs: p.geometry.nslabs,
      nareas: p.geometry.nareas,
      requests: 0,
      failures: 0,
      full: 0,
      kernel_defects: 0,
      too_large: 0,
      used_hiwater: 0,
    };
    for (let i = 0; i < this.n; i++) {
      const op = this.op[i]!;
      const id = this.id[i]!;
      if (op === UNMAP) {
        const at = live.get(id);
        if (at === undefined) continue;
        live.delete(id);
        if (this.op[at] === ALLOC) p.free(addr.get(id)!, this.size[at]!);
        else p.unmap(addr.get(id)!, this.size[at]!, this.dir[at]! as DmaDirection);
        addr.delete(id);
        continue;
      }
      r.requests++;
      const cpu = this.cpu[i]!;
      const res =
        op === ALLOC
          ? p.alloc(this.size[i]!, { cpu })
          : p.map(this.phys[i]!, this.size[i]!, this.dir[i]! as DmaDirection, {
              cpu,
              minAlignMask: this.mask[i]!,
            });
      if ('addr' in res) {
        if (op === FAILED) {
          // The kernel made no mapping, so none is released later: give it back now.
          p.unmap(res.addr, this.size[i]!, this.dir[i]! as DmaDirection);
        } else {
          live.set(id, i);
          addr.set(id, res.addr);
        }
      } else if (res.failure === 'too_large' || res.failure === 'invalid') {
        r.too_large++; // no pool size places it
      } else {
        r.failures++;
        if (res.failure === 'full') r.full++;
        else r.kernel_defects++;
      }
    }
    r.used_hiwater = p.stats().used_hiwater;
    return r;
  }

  private row(op: number, o: TracedOp): void {
    if (this.n === this.op.length) this.grow();
    const i = this.n++;
    this.op[i] = op;
    this.id[i] = o.id;
    this.phys[i] = o.phys;
    this.size[i] = o.size;
    this.dir[i] = o.dir;
    this.cpu[i] = o.cpu;
    this.mask[i] = o.minAlignMask;
  }

  private grow(): void {
    const n = this.op.length * 2;
    const widen = <T extends Uint8Array | Uint32Array | Float64Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.op = widen(this.op, (k) => new Uint8Array(k));
    this.id = widen(this.id, (k) => new Float64Array(k));
    this.phys = widen(this.phys, (k) => new Float64Array(k));
    this.size = widen(this.size, (k) => new Uint32Array(k));
    this.dir = widen(this.dir, (k) => new Uint8Array(k));
    this.cpu = widen(this.cpu, (k) => new Uint32Array(k));
    this.mask = widen(this.mask, (k) => new Uint32Array(k));
  }
}

/** The traced demand against one pool. */
export interface DemandResult {
  nslabs: number;
  nareas: number;
  /** Maps and allocations placed or tried. */
  requests: number;
  /** Requests that found no room (`full`) or that the profile's kernel would hang on or overrun. */
  failures: number;
  full: number;
  kernel_defects: number;
  /** Larger than any mapping can be (or refused): no pool size places them; not in `failures`. */
  too_large: number;
  used_hiwater: number;
}
