import { isMediatorError } from '../errors.js';
import { type DmaDirection, IO_TLB_SIZE, parseDirection } from '../swiotlb/constants.js';
import type { MapOptions, SwiotlbPool } from '../swiotlb/pool.js';

/**
 * The replay command's engine: one JSON object per input line, one JSON object
 * per output line, on a placement-only pool (no copies). Users reproduce what the
 * kernel's allocator would do for a trace; tests drive the pool through it.
 *
 *   {"op":"map","id":"a","orig":"0x1234","size":100,"dir":"to_device",
 *    "min_align_mask":4095,"alloc_align_mask":0,"area":0,"attrs":0}
 *       -> {"id":"a","ok":true,"tlb_addr":"0x...","slots":N}
 *   {"op":"unmap","id":"a"}                      -> {"id":"a","ok":true}
 *       optional "size" (default: the mapped size), "dir" (default: the mapped one)
 *   {"op":"sync_for_device"|"sync_for_cpu","id":"a","offset":0,"size":N}
 *   {"op":"stats"}                               -> the debugfs-equivalent stats
 *   {"op":"reset_hiwater"}                       -> {"ok":true}
 *
 * Errors: {"id":..,"ok":false,"code":"SWIOTLB_...","error":"..."}; a line that is
 * not valid gets {"line":N,"ok":false,"code":"REPLAY_BAD_LINE","error":"..."} and
 * the run goes on.
 */

interface LiveMapping {
  tlbAddr: number;
  size: number;
  dir: DmaDirection;
}

export type ReplayOutput = Record<string, unknown>;

class BadLine extends Error {}

function parseAddress(value: unknown, field: string): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
  } else if (typeof value === 'string') {
    const text = value.trim();
    const n = /^0x[0-9a-f]+$/i.test(text)
      ? Number.parseInt(text.slice(2), 16)
      : /^\d+$/.test(text)
        ? Number(text)
        : Number.NaN;
    if (Number.isSafeInteger(n) && n >= 0) return n;
  }
  throw new BadLine(
    `"${field}" must be a hex string like "0x1234" or a non-negative integer below 2^53, got ${JSON.stringify(value)}`,
  );
}

function parseInteger(value: unknown, field: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(value.trim())) {
    return parseAddress(value, field);
  }
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
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

function notMapped(id: string): ReplayOutput {
  return {
    id,
    ok: false,
    code: 'SWIOTLB_NOT_MAPPED',
    error: `id ${JSON.stringify(id)} is not mapped`,
  };
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export class Replayer {
  private readonly live = new Map<string, LiveMapping>();

  constructor(private readonly pool: SwiotlbPool) {}

  /** Handles one input line (1-based `lineNo`); returns undefined for a blank line. */
  handle(line: string, lineNo: number): ReplayOutput | undefined {
    if (line.trim() === '') return undefined;
    let input: unknown;
    try {
      input = JSON.parse(line);
    } catch (err) {
      return this.badLine(lineNo, `not JSON: ${(err as Error).message}`);
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return this.badLine(lineNo, 'not a JSON object');
    }
    const rec = input as Record<string, unknown>;
    const id = rec.id;
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      return this.badLine(lineNo, '"id" must be a string or a number');
    }
    const key = id === undefined ? undefined : String(id);
    try {
      switch (rec.op) {
        case 'map':
          return this.map(rec, this.requireId(key));
        case 'unmap':
          return this.unmap(rec, this.requireId(key));
        case 'sync_for_device':
        case 'sync_for_cpu':
          return this.sync(rec, this.requireId(key), rec.op);
        case 'stats':
          return this.stats();
        case 'reset_hiwater':
          this.pool.resetHiwater();
          return { ok: true };
        default:
          throw new BadLine(
            `"op" must be one of map, unmap, sync_for_device, sync_for_cpu, stats, reset_hiwater; got ${JSON.stringify(rec.op)}`,
          );
      }
    } catch (err) {
      if (err instanceof BadLine) return this.badLine(lineNo, err.message, key);
      if (isMediatorError(err)) {
        return {
          ...(key === undefined ? {} : { id: key }),
          ok: false,
          code: err.code,
          error: err.message,
        };
      }
      throw err;
    }
  }

  /** Mappings still live (ids in map order). */
  liveIds(): string[] {
    return [...this.live.keys()];
  }

  private requireId(id: string | undefined): string {
    if (id === undefined) throw new BadLine('"id" is required for this op');
    return id;
  }

  private map(rec: Record<string, unknown>, id: string): ReplayOutput {
    if (this.live.has(id)) throw new BadLine(`id ${JSON.stringify(id)} is already mapped`);
    const orig = parseAddress(rec.orig, 'orig');
    const size = parseInteger(rec.size, 'size');
    const dir = parseDir(rec.dir, undefined);
    const opts: MapOptions = {
      minAlignMask: parseInteger(rec.min_align_mask, 'min_align_mask', 0),
      allocAlignMask: parseInteger(rec.alloc_align_mask, 'alloc_align_mask', 0),
      attrs: parseInteger(rec.attrs, 'attrs', 0),
    };
    if (rec.area !== undefined) opts.area = parseInteger(rec.area, 'area');
    const tlbAddr = this.pool.map(orig, size, dir, opts);
    this.live.set(id, { tlbAddr, size, dir });
    const slots = Math.ceil(this.pool.paddedSize(orig, size, opts) / IO_TLB_SIZE);
    return { id, ok: true, tlb_addr: hex(tlbAddr), slots };
  }

  private unmap(rec: Record<string, unknown>, id: string): ReplayOutput {
    const m = this.live.get(id);
    if (!m) return notMapped(id);
    const size = parseInteger(rec.size, 'size', m.size);
    const dir = parseDir(rec.dir, m.dir);
    const attrs = parseInteger(rec.attrs, 'attrs', 0);
    this.pool.unmap(m.tlbAddr, size, dir, attrs);
    this.live.delete(id);
    return { id, ok: true };
  }

  private sync(
    rec: Record<string, unknown>,
    id: string,
    op: 'sync_for_device' | 'sync_for_cpu',
  ): ReplayOutput {
    const m = this.live.get(id);
    if (!m) return notMapped(id);
    const offset = parseInteger(rec.offset, 'offset', 0);
    const size = parseInteger(rec.size, 'size', m.size - offset);
    const dir = parseDir(rec.dir, m.dir);
    if (op === 'sync_for_device') this.pool.syncForDevice(m.tlbAddr + offset, size, dir);
    else this.pool.syncForCpu(m.tlbAddr + offset, size, dir);
    return { id, ok: true };
  }

  private stats(): ReplayOutput {
    const s = this.pool.stats();
    return {
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
  }

  private badLine(lineNo: number, error: string, id?: string): ReplayOutput {
    return {
      line: lineNo,
      ...(id === undefined ? {} : { id }),
      ok: false,
      code: 'REPLAY_BAD_LINE',
      error: `line ${lineNo}: ${error}`,
    };
  }
}
