import { type ErrorCode, isMediatorError, MediatorError } from '../errors.js';
import { DmaDirection, parseDirection } from './constants.js';
import { type DynamicPartKind, DynamicPool, type DynamicPoolStats } from './dynamic.js';
import type { Geometry, GeometryOptions } from './geometry.js';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel.js';
import { SwiotlbPool } from './pool.js';
import type { AllocOptions, MapOptions, PoolStats } from './pool-types.js';
import { type KernelWarning, syncWarnings, unmapWarnings } from './replay-warnings.js';
import { DEFAULT_PLACEMENT, type Placement } from './warm.js';

/**
 * The replay engine: what a kernel would do with a trace of DMA calls, on a
 * placement-only pool (no copies). Two ways in:
 *
 * - calls: {@link ReplayEngine.map}, unmap, sync, alloc, free, stats, each
 *   answered with a {@link ReplayResult} (a trace parser drives it this way);
 * - JSON lines: {@link ReplayEngine.handle}, one object in, one object out (the
 *   `replay` command):
 *
 *   {"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device",
 *    "min_align_mask":4095,"alloc_align_mask":0,"alloc_size":100,"area":0,"attrs":0}
 *       ("cpu":N instead of "area": the area is cpu & (nareas - 1), as the kernel takes it)
 *       -> {"id":"a","ok":true,"tlb_addr":"0x...","slots":N}    (+ "pool" with dynamic)
 *   {"op":"unmap","id":"a"}                      -> {"id":"a","ok":true}
 *       optional "size" (default: the mapped size), "dir" (default: the mapped one)
 *   {"op":"sync_for_device"|"sync_for_cpu","id":"a","offset":0,"size":N}
 *       An unmap or a sync with another size or direction than the mapping's is
 *       made as the kernel makes it (the unmap releases the mapping), and its
 *       answer carries what the kernel prints for it: "warnings":[{"source":
 *       "swiotlb"|"dma-debug","message":"..."}] (replay-warnings.ts).
 *   {"op":"alloc","id":"q","size":6784,"area":0,"min_align_mask":0}   ("cpu" as for map)
 *       -> {"id":"q","ok":true,"tlb_addr":"0x...","slots":N}
 *   {"op":"free","id":"q"}                       -> {"id":"q","ok":true}
 *   {"op":"stats"}                               -> the debugfs-equivalent stats
 *   {"op":"reset_hiwater"}                       -> {"ok":true}
 *
 * Errors: {"id":..,"ok":false,"code":"SWIOTLB_...","error":"..."}; a line that is
 * not valid gets {"line":N,"ok":false,"code":"REPLAY_BAD_LINE","error":"..."} and
 * the run goes on. Not valid: a field its op does not take ({@link OP_FIELDS}: a
 * typo such as "min_allign_mask" would otherwise place with the default), a number
 * given as a string ("size":"100"; only "orig" may be a "0x..." hex string), a
 * value out of range. A blank line (empty or whitespace) is skipped: no output.
 *
 * Rules: an id names one live mapping or allocation at a time; an id that was
 * unmapped or freed may be used again.
 */

/** The pool a replay runs on, in the kernel's terms. */
export interface ReplayOptions {
  /**
   * A default pool (`slots`/`areas` as `swiotlb=N,A`, or `size`) or a
   * restricted-dma-pool (`restricted: true` and `size`), and its `base`.
   * @default the default pool of 64 MiB with one area per CPU
   */
  pool?: GeometryOptions;
  /**
   * Whose rules: '6.1', '6.6' or '6.10'.
   * @default '6.10'
   */
  kernel?: KernelVersion;
  /**
   * CONFIG_SWIOTLB_DYNAMIC: the default pool grows (6.6 and later; never a restricted pool).
   * @default false
   */
  dynamic?: boolean;
  /**
   * Which free slots a map takes: `linux` (the kernel's search) or `warm`
   * (recently freed runs first: not a kernel behaviour, see src/swiotlb/warm.ts).
   * @default 'linux'
   */
  placement?: Placement;
}

/** One map as a trace gives it. */
export interface MapRequest {
  orig: number;
  size: number;
  dir: DmaDirection;
  /** The device's min_align_mask. @default 0 */
  minAlignMask?: number;
  /** @default 0 */
  allocAlignMask?: number;
  /** 6.1/6.6's alloc_size. @default size */
  allocSize?: number;
  /** The area to start in. @default 0, or the CPU's area when `cpu` is given */
  area?: number;
  /**
   * The CPU that maps (raw_smp_processor_id()): the search starts in area
   * cpu & (nareas - 1); a growable pool masks it per pool. Ignored when `area` is given.
   */
  cpu?: number;
  /** @default 0 */
  attrs?: number;
}

/** One coherent allocation (dma_alloc_coherent()). */
export interface AllocRequest {
  size: number;
  /** @default 0, or the CPU's area when `cpu` is given */
  area?: number;
  /** As {@link MapRequest.cpu}. */
  cpu?: number;
  /** @default 0 */
  minAlignMask?: number;
}

/** What a map or an allocation got: its bounce address and slots, or the error's code. */
export type ReplayResult =
  | { ok: true; tlbAddr: number; slots: number; part?: DynamicPartKind }
  | { ok: false; code: ErrorCode; error: string };

/** An unmap, sync or free that was made, with what the kernel prints for it, if anything. */
export interface ReplayDone {
  ok: true;
  warnings?: KernelWarning[];
}

/** Stats as `{"op":"stats"}` prints them (debugfs names). */
export interface ReplayStats {
  nslabs: number;
  used: number;
  used_hiwater: number;
  transient_nslabs: number;
  areas: { used: number; index: number; largest_free_run: number }[];
  largest_free_run: number;
  map_failures: PoolStats['map_failures'];
  growths?: number;
  pending_growth?: boolean;
  pools?: DynamicPoolStats['pools'];
}

export type ReplayOutput = Record<string, unknown>;

interface Live {
  kind: 'map' | 'alloc';
  tlbAddr: number;
  size: number;
  dir: DmaDirection;
  /** The alloc_size swiotlb_bounce() reads at tlbAddr (maps; 0 for allocations). */
  bounceLimit: number;
}

/** What the engine needs of a pool: SwiotlbPool and DynamicPool both have it. */
interface Target {
  readonly geometry: Geometry;
  map(orig: number, size: number, dir: DmaDirection, opts: MapOptions): number;
  unmap(tlb: number, size: number, dir: DmaDirection, attrs: number, owner: number): void;
  syncForDevice(tlb: number, size: number, dir: DmaDirection, owner: number): void;
  syncForCpu(tlb: number, size: number, dir: DmaDirection, owner: number): void;
  alloc(size: number, opts: AllocOptions): number;
  free(tlb: number, size: number, owner: number): void;
  mapSlots(orig: number, size: number, opts: MapOptions): number;
  bounceLimit(orig: number, size: number, opts: MapOptions): number;
  allocSlots(size: number): number;
  stats(): PoolStats;
  resetHiwater(): void;
}

class BadLine extends Error {}

/**
 * The fields each op takes: any other field makes the line a REPLAY_BAD_LINE
 * (a misspelt optional field would otherwise be dropped, and its default used).
 */
export const OP_FIELDS: ReadonlyMap<string, readonly string[]> = new Map([
  [
    'map',
    [
      'op',
      'id',
      'orig',
      'size',
      'dir',
      'min_align_mask',
      'alloc_align_mask',
      'alloc_size',
      'area',
      'cpu',
      'attrs',
    ],
  ],
  ['unmap', ['op', 'id', 'size', 'dir', 'attrs']],
  ['sync_for_device', ['op', 'id', 'offset', 'size', 'dir']],
  ['sync_for_cpu', ['op', 'id', 'offset', 'size', 'dir']],
  ['alloc', ['op', 'id', 'size', 'area', 'cpu', 'min_align_mask']],
  ['free', ['op', 'id']],
  ['stats', ['op']],
  ['reset_hiwater', ['op']],
]);

/** The line's op, once it is known and the line has no field the op does not take. */
function checkFields(rec: Record<string, unknown>): string {
  const op = rec.op;
  const fields = typeof op === 'string' ? OP_FIELDS.get(op) : undefined;
  if (fields === undefined) {
    throw new BadLine(
      `"op" must be one of ${[...OP_FIELDS.keys()].join(', ')}; got ${JSON.stringify(op)}`,
    );
  }
  const unknown = Object.keys(rec).filter((k) => !fields.includes(k));
  if (unknown.length > 0) {
    throw new BadLine(
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; op "${op as string}" takes ${fields.join(', ')}`,
    );
  }
  return op as string;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function failure(err: unknown): ReplayResult {
  if (isMediatorError(err)) return { ok: false, code: err.code, error: err.message };
  throw err;
}

export class ReplayEngine {
  readonly kernel: KernelVersion;
  readonly dynamic: boolean;
  readonly placement: Placement;
  private readonly target: Target;
  private readonly dyn: DynamicPool | undefined;
  private readonly live = new Map<string, Live>();

  /** @throws SWIOTLB_INVALID_GEOMETRY, SWIOTLB_INVALID_ARGUMENT (a kernel without dynamic pools) */
  constructor(opts: ReplayOptions = {}) {
    this.kernel = opts.kernel ?? DEFAULT_KERNEL;
    this.dynamic = opts.dynamic === true;
    this.placement = opts.placement ?? DEFAULT_PLACEMENT;
    const placement = this.placement;
    if (this.dynamic) {
      if (opts.pool?.restricted === true) {
        throw new MediatorError(
          'SWIOTLB_INVALID_GEOMETRY',
          'a restricted-dma-pool never grows: a growable pool is a default pool',
          {},
        );
      }
      this.dyn = new DynamicPool({ ...opts.pool, kernel: this.kernel, placement });
      this.target = this.dyn;
    } else {
      this.target = SwiotlbPool.create({
        ...opts.pool,
        kernel: this.kernel,
        placement,
        area: 0,
        exclusive: true,
      });
    }
  }

  get geometry(): Geometry {
    return this.target.geometry;
  }

  /** The kernel's log lines: the pool's construction, then any growth that failed. */
  log(): string[] {
    return [...this.geometry.log, ...(this.dyn?.log ?? [])];
  }

  /** Ids still live (mappings and allocations), in the order they were made. */
  liveIds(): string[] {
    return [...this.live.keys()];
  }

  /** Places a map (swiotlb_tbl_map_single()); `id` names it for unmap and sync. */
  map(id: string, req: MapRequest): ReplayResult {
    if (this.live.has(id)) return alreadyLive(id);
    const opts: MapOptions = {
      minAlignMask: req.minAlignMask ?? 0,
      allocAlignMask: req.allocAlignMask ?? 0,
      attrs: req.attrs ?? 0,
      area: this.startArea(req),
    };
    if (req.allocSize !== undefined) opts.allocSize = req.allocSize;
    try {
      const tlbAddr = this.target.map(req.orig, req.size, req.dir, opts);
      const bounceLimit = this.target.bounceLimit(req.orig, req.size, opts);
      this.live.set(id, { kind: 'map', tlbAddr, size: req.size, dir: req.dir, bounceLimit });
      return this.placed(tlbAddr, this.target.mapSlots(req.orig, req.size, opts));
    } catch (err) {
      return failure(err);
    }
  }

  /** Places a coherent allocation (dma_alloc_coherent() -> swiotlb_alloc()). */
  alloc(id: string, req: AllocRequest): ReplayResult {
    if (this.live.has(id)) return alreadyLive(id);
    try {
      const tlbAddr = this.target.alloc(req.size, {
        area: this.startArea(req),
        minAlignMask: req.minAlignMask ?? 0,
      });
      const live: Live = {
        kind: 'alloc',
        tlbAddr,
        size: req.size,
        dir: DmaDirection.NONE,
        bounceLimit: 0,
      };
      this.live.set(id, live);
      return this.placed(tlbAddr, this.target.allocSlots(req.size));
    } catch (err) {
      return failure(err);
    }
  }

  /**
   * Unmaps `id`; `size` and `dir` default to the mapping's. Another size or
   * direction does what it does in the kernel: the slots are released all the
   * same (swiotlb_release_slots() takes the alloc_size the map stored), and the
   * answer carries the kernel's warnings.
   */
  unmap(
    id: string,
    opts: { size?: number; dir?: DmaDirection; attrs?: number } = {},
  ): ReplayResult | ReplayDone {
    const m = this.live.get(id);
    if (m?.kind !== 'map') return this.notLive(id, m, 'mapping');
    const attrs = opts.attrs ?? 0;
    const warnings = unmapWarnings(m, opts.size ?? m.size, opts.dir ?? m.dir, attrs);
    try {
      this.target.unmap(m.tlbAddr, m.size, m.dir, attrs, 0);
      this.live.delete(id);
      return done(warnings);
    } catch (err) {
      return failure(err);
    }
  }

  /** Frees the allocation `id` (dma_free_coherent() -> swiotlb_free()). */
  free(id: string): ReplayResult | ReplayDone {
    const m = this.live.get(id);
    if (m?.kind !== 'alloc') return this.notLive(id, m, 'allocation');
    try {
      this.target.free(m.tlbAddr, m.size, 0);
      this.live.delete(id);
      return { ok: true };
    } catch (err) {
      return failure(err);
    }
  }

  /**
   * Syncs [offset, offset + size) of mapping `id` for the device or the CPU
   * (`size` defaults to the rest of the mapping, `dir` to its direction). A size
   * past the mapping or another direction is made as the kernel makes it, with
   * its warnings; an offset past the mapping is refused (SWIOTLB_BUFFER_OVERFLOW):
   * the kernel would bounce from whatever slot lies there.
   */
  sync(
    id: string,
    forDevice: boolean,
    opts: { offset?: number; size?: number; dir?: DmaDirection } = {},
  ): ReplayResult | ReplayDone {
    const m = this.live.get(id);
    if (m?.kind !== 'map') return this.notLive(id, m, 'mapping');
    const offset = opts.offset ?? 0;
    if (offset >= m.size) {
      return {
        ok: false,
        code: 'SWIOTLB_BUFFER_OVERFLOW',
        error: `sync offset ${offset} lies past the mapping's ${m.size} bytes: the kernel would bounce from the slot there (swiotlb_bounce() reads the slot at tlb_addr + offset: the mapping's padding, or a slot it does not hold), which a replay does not model`,
      };
    }
    const size = opts.size ?? m.size - offset;
    const dir = opts.dir ?? m.dir;
    const warnings = syncWarnings(m, offset, size, dir, forDevice, this.kernel);
    // The pool counts the sync; the range and direction it is given are the
    // mapping's own (a replay copies nothing, so what the kernel clamps changes nothing here).
    const inside = Math.min(size, m.size - offset);
    try {
      if (forDevice) this.target.syncForDevice(m.tlbAddr + offset, inside, m.dir, 0);
      else this.target.syncForCpu(m.tlbAddr + offset, inside, m.dir, 0);
      return done(warnings);
    } catch (err) {
      return failure(err);
    }
  }

  stats(): ReplayStats {
    const s = this.target.stats();
    const out: ReplayStats = {
      nslabs: s.nslabs,
      used: s.used,
      used_hiwater: s.used_hiwater,
      transient_nslabs: s.transient_nslabs,
      areas: s.areas.map((a) => ({
        used: a.used,
        index: a.index,
        largest_free_run: a.largest_free_run,
      })),
      largest_free_run: s.largest_free_run,
      map_failures: s.map_failures,
    };
    if (this.dyn !== undefined) {
      const d = s as DynamicPoolStats;
      out.growths = d.growths;
      out.pending_growth = d.pending_growth;
      out.pools = d.pools;
    }
    return out;
  }

  resetHiwater(): void {
    this.target.resetHiwater();
  }

  /** Handles one JSON input line (1-based `lineNo`); returns undefined for a blank line. */
  handle(line: string, lineNo: number): ReplayOutput | undefined {
    if (line.trim() === '') return undefined;
    let input: unknown;
    try {
      input = JSON.parse(line);
    } catch (err) {
      return badLine(lineNo, `not JSON: ${(err as Error).message}`);
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return badLine(lineNo, 'not a JSON object');
    }
    const rec = input as Record<string, unknown>;
    const id = rec.id;
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      return badLine(lineNo, '"id" must be a string or a number');
    }
    const key = id === undefined ? undefined : String(id);
    try {
      return this.dispatch(rec, key);
    } catch (err) {
      if (err instanceof BadLine) return badLine(lineNo, err.message, key);
      throw err;
    }
  }

  private dispatch(rec: Record<string, unknown>, key: string | undefined): ReplayOutput {
    const op = checkFields(rec);
    switch (op) {
      case 'map':
        return this.answer(requireId(key), this.map(this.newId(key), readMap(rec)));
      case 'alloc':
        return this.answer(requireId(key), this.alloc(this.newId(key), readAlloc(rec)));
      case 'unmap': {
        // The fields are read (and refused when bad) whether or not the id is mapped.
        const opts = readUnmap(rec);
        return this.answer(requireId(key), this.unmap(requireId(key), opts));
      }
      case 'free':
        return this.answer(requireId(key), this.free(requireId(key)));
      case 'sync_for_device':
      case 'sync_for_cpu': {
        const opts = readSync(rec);
        const r = this.sync(requireId(key), op === 'sync_for_device', opts);
        return this.answer(requireId(key), r);
      }
      case 'stats':
        return { ...this.stats() };
      case 'reset_hiwater':
        this.resetHiwater();
        return { ok: true };
      default:
        throw new Error(`replay: op ${op} is in OP_FIELDS but has no case here`);
    }
  }

  /** The area a request starts in: its `area`, else its CPU's (growable pools mask per pool). */
  private startArea(req: { area?: number; cpu?: number }): number {
    if (req.area !== undefined || req.cpu === undefined) return req.area ?? 0;
    return this.dyn !== undefined ? req.cpu : req.cpu & (this.geometry.nareas - 1);
  }

  /** The id of a new mapping or allocation: REPLAY_BAD_LINE when it is live already. */
  private newId(key: string | undefined): string {
    const id = requireId(key);
    if (this.live.has(id)) throw new BadLine(`id ${JSON.stringify(id)} is already live`);
    return id;
  }

  /** A result as a JSON output line. */
  private answer(id: string, r: ReplayResult | ReplayDone): ReplayOutput {
    if (!r.ok) return { id, ok: false, code: r.code, error: r.error };
    if (!('tlbAddr' in r))
      return r.warnings ? { id, ok: true, warnings: r.warnings } : { id, ok: true };
    const out: ReplayOutput = { id, ok: true, tlb_addr: hex(r.tlbAddr), slots: r.slots };
    if (r.part !== undefined) out.pool = r.part;
    return out;
  }

  private placed(tlbAddr: number, slots: number): ReplayResult {
    const r: ReplayResult = { ok: true, tlbAddr, slots };
    if (this.dyn !== undefined) r.part = this.dyn.partOf(tlbAddr);
    return r;
  }

  private notLive(id: string, m: Live | undefined, what: 'mapping' | 'allocation'): ReplayResult {
    const error =
      m === undefined
        ? `id ${JSON.stringify(id)} is not mapped`
        : `id ${JSON.stringify(id)} is ${m.kind === 'map' ? 'a streaming mapping' : 'a coherent allocation'}, not ${what === 'mapping' ? 'a mapping' : 'an allocation'}`;
    return { ok: false, code: 'SWIOTLB_NOT_MAPPED', error };
  }
}

function badLine(lineNo: number, error: string, id?: string): ReplayOutput {
  return {
    line: lineNo,
    ...(id === undefined ? {} : { id }),
    ok: false,
    code: 'REPLAY_BAD_LINE',
    error: `line ${lineNo}: ${error}`,
  };
}

function done(warnings: KernelWarning[]): ReplayDone {
  return warnings.length > 0 ? { ok: true, warnings } : { ok: true };
}

function alreadyLive(id: string): ReplayResult {
  return {
    ok: false,
    code: 'REPLAY_BAD_LINE',
    error: `id ${JSON.stringify(id)} is already live`,
  };
}

function requireId(id: string | undefined): string {
  if (id === undefined) throw new BadLine('"id" is required for this op');
  return id;
}

// ---------------------------------------------------------------------------
// Reading the fields of one line
// ---------------------------------------------------------------------------

/**
 * "orig": a hex string ("0x1a34") or a JSON number. A string without 0x is
 * refused, "6708" as much as "1a34": it could be meant either way, and the low
 * bits of orig decide the placement under a min_align_mask.
 */
function parseAddress(value: unknown, field: string): number {
  const expected = `"${field}" must be a hex string like "0x1234" or a JSON number`;
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
  } else if (typeof value === 'string') {
    const text = value.trim();
    if (/^0x[0-9a-f]+$/i.test(text)) {
      const n = Number.parseInt(text.slice(2), 16);
      if (Number.isSafeInteger(n)) return n;
    } else if (/^\d+$/.test(text)) {
      throw new BadLine(
        `${expected}: ${JSON.stringify(value)} has no 0x (write "0x${text}" or ${Number(text)})`,
      );
    }
  }
  throw new BadLine(`${expected}, non-negative and below 2^53, got ${JSON.stringify(value)}`);
}

/**
 * A count, size, mask or index: a non-negative JSON number (`fallback` when the
 * field is absent and there is one). A string is refused, even "100": a hex
 * string says what to write instead.
 */
function parseInteger(value: unknown, field: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    const text = value.trim();
    const hex = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text.slice(2), 16) : Number.NaN;
    throw new BadLine(
      `"${field}" must be a JSON number, not a string: got ${JSON.stringify(value)}${Number.isSafeInteger(hex) ? ` (write ${hex})` : ''}`,
    );
  }
  throw new BadLine(`"${field}" must be a non-negative integer, got ${JSON.stringify(value)}`);
}

function parseDir(value: unknown, fallback?: DmaDirection): DmaDirection {
  if (value === undefined && fallback !== undefined) return fallback;
  const dir = typeof value === 'string' ? parseDirection(value) : undefined;
  if (dir === undefined) {
    throw new BadLine(
      `"dir" must be "to_device", "from_device" or "bidirectional", got ${JSON.stringify(value)}`,
    );
  }
  return dir;
}

function readMap(rec: Record<string, unknown>): MapRequest {
  const req: MapRequest = {
    orig: parseAddress(rec.orig, 'orig'),
    size: parseInteger(rec.size, 'size'),
    dir: parseDir(rec.dir, undefined),
    minAlignMask: parseInteger(rec.min_align_mask, 'min_align_mask', 0),
    allocAlignMask: parseInteger(rec.alloc_align_mask, 'alloc_align_mask', 0),
    attrs: parseInteger(rec.attrs, 'attrs', 0),
  };
  if (rec.area !== undefined) req.area = parseInteger(rec.area, 'area');
  if (rec.cpu !== undefined) req.cpu = parseInteger(rec.cpu, 'cpu');
  if (rec.alloc_size !== undefined) req.allocSize = parseInteger(rec.alloc_size, 'alloc_size');
  return req;
}

function readAlloc(rec: Record<string, unknown>): AllocRequest {
  const req: AllocRequest = {
    size: parseInteger(rec.size, 'size'),
    minAlignMask: parseInteger(rec.min_align_mask, 'min_align_mask', 0),
  };
  if (rec.area !== undefined) req.area = parseInteger(rec.area, 'area');
  if (rec.cpu !== undefined) req.cpu = parseInteger(rec.cpu, 'cpu');
  return req;
}

/** An unmap's optional fields; those absent default to the mapping's (see ReplayEngine.unmap). */
function readUnmap(rec: Record<string, unknown>): {
  size?: number;
  dir?: DmaDirection;
  attrs?: number;
} {
  const opts: { size?: number; dir?: DmaDirection; attrs?: number } = {};
  if (rec.size !== undefined) opts.size = parseInteger(rec.size, 'size');
  if (rec.dir !== undefined) opts.dir = parseDir(rec.dir);
  if (rec.attrs !== undefined) opts.attrs = parseInteger(rec.attrs, 'attrs');
  return opts;
}

/** A sync's optional fields; those absent default as ReplayEngine.sync says. */
function readSync(rec: Record<string, unknown>): {
  offset?: number;
  size?: number;
  dir?: DmaDirection;
} {
  const opts: { offset?: number; size?: number; dir?: DmaDirection } = {};
  if (rec.offset !== undefined) opts.offset = parseInteger(rec.offset, 'offset');
  if (rec.size !== undefined) opts.size = parseInteger(rec.size, 'size');
  if (rec.dir !== undefined) opts.dir = parseDir(rec.dir);
  return opts;
}
