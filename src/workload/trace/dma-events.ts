import { DmaDirection } from '../../swiotlb/constants.js';
import {
  EventParseError,
  hexNum,
  type ParseState,
  parseArray,
  parseDec,
  parseHexAddr,
  parseRawNumber,
  splitFields,
} from './trace-values.js';

// What the events' fields may hold, and what parseDmaEvent() throws, are trace-values.ts's.
export { ADDR_OUT_OF_RANGE, DMA_MAPPING_ERROR, EventParseError } from './trace-values.js';

/**
 * The dma:* and swiotlb:* trace events, read from the text the kernel (or
 * libtraceevent) prints for them. Formats, from include/trace/events/dma.h
 * (v6.12, and mainline which renames and extends some):
 *
 *   dma_map_page, dma_map_resource (6.12) / dma_map_phys (mainline):
 *     "%s dir=%s dma_addr=%llx size=%zu phys_addr=%llx attrs=%s"
 *   dma_unmap_page, dma_unmap_resource / dma_unmap_phys:
 *     "%s dir=%s dma_addr=%llx size=%zu attrs=%s"
 *   dma_map_sg: "%s dir=%s dma_addrs=%s sizes=%s phys_addrs=%s attrs=%s" (still
 *     read; it is the layout before nents/ents were added, not checked against a
 *     source here: 6.12.117's dma.h TRACE_EVENT(dma_map_sg) already prints them)
 *     6.12.117 and mainline: "%s dir=%s nents=%d/%d ents=%d/%d%s dma_addrs=..." where %s is
 *     " [TRUNCATED]" when a list is longer than DMA_TRACE_MAX_ENTRIES (128) and
 *     only the first 128 entries are printed
 *   dma_map_sg_err (6.12.117 and mainline): "%s dir=%s dma_addrs=%s err=%d attrs=%s" (the
 *     array holds the buffers' physical addresses)
 *   dma_unmap_sg: "%s dir=%s phys_addrs=%s attrs=%s" (the original buffers)
 *   dma_sync_single_for_cpu/_for_device: "%s dir=%s dma_addr=%llx size=%zu"
 *   dma_sync_sg_for_cpu/_for_device: "%s dir=%s dma_addrs=%s sizes=%s"
 *   dma_alloc (and dma_alloc_pages, 6.12.117 and mainline):
 *     "%s dir=%s dma_addr=%llx size=%zu virt_addr=%p flags=%s attrs=%s"
 *     A failed allocation is traced too, with a NULL virt_addr and the caller's
 *     handle as it was (kernel/dma/mapping.c, dma_alloc_attrs(): the trace after
 *     dma_direct_alloc() or ops->alloc() runs whatever they returned, and one
 *     with `NULL, 0` when the device has no allocator at all).
 *   dma_free (and dma_free_pages): "%s dir=%s dma_addr=%llx size=%zu virt_addr=%p attrs=%s"
 *     dma_free_attrs() traces a free of NULL too, then returns ("if (!cpu_addr)
 *     return;"): nothing was freed.
 * and include/trace/events/swiotlb.h:
 *   swiotlb_bounced: "dev_name: %s dma_mask=%llx dev_addr=%llx size=%zu %s"
 *     ending FORCE or NORMAL; dev_addr = phys_to_dma(dev, paddr) of the ORIGINAL
 *     buffer (kernel/dma/swiotlb.c swiotlb_map()), which carries the memory
 *     encryption bit in an SEV guest.
 *
 * Directions print as __print_symbolic names (BIDIRECTIONAL, TO_DEVICE,
 * FROM_DEVICE, NONE), attrs as __print_flags names joined by "|" (empty for 0).
 * Numbers and arrays are read in each of the styles a trace may print them:
 * the kernel's, older libtraceevent's, and "[FAILED TO PARSE]" raw fields
 * (trace-values.ts).
 */

interface Common {
  /** 1-based line number in the trace. */
  line: number;
  cpu: number;
  pid: number;
  /** Seconds (or raw clock counts with a counter trace clock). */
  ts: number;
  device: string;
}

export interface MapEvent extends Common {
  kind: 'map';
  dir: DmaDirection;
  dmaAddr: number;
  size: number;
  phys: number;
}
export interface UnmapEvent extends Common {
  kind: 'unmap';
  dir: DmaDirection;
  dmaAddr: number;
  size: number;
}
export interface MapSgEvent extends Common {
  kind: 'map_sg';
  dir: DmaDirection;
  dmaAddrs: number[];
  sizes: number[];
  phys: number[];
  /** The full entry counts (6.12.117 and mainline print them; older kernels print whole lists). */
  nents: number;
  ents: number;
  /** The kernel (6.12.117, mainline) printed only the first 128 entries. */
  truncated: boolean;
}
export interface MapSgErrEvent extends Common {
  kind: 'map_sg_err';
  dir: DmaDirection;
  phys: number[];
  err: number;
}
export interface UnmapSgEvent extends Common {
  kind: 'unmap_sg';
  dir: DmaDirection;
  phys: number[];
}
export interface SyncEvent extends Common {
  kind: 'sync';
  forDevice: boolean;
  dir: DmaDirection;
  dmaAddr: number;
  size: number;
}
export interface SyncSgEvent extends Common {
  kind: 'sync_sg';
  forDevice: boolean;
  dir: DmaDirection;
  dmaAddrs: number[];
  sizes: number[];
}
export interface AllocEvent extends Common {
  kind: 'alloc';
  dmaAddr: number;
  size: number;
  /**
   * virt_addr is NULL: the allocation failed, and dma_addr is whatever the
   * caller's handle held (see {@link isNullPointer}).
   */
  failed: boolean;
}
export interface FreeEvent extends Common {
  kind: 'free';
  dmaAddr: number;
  size: number;
  /** virt_addr is NULL: dma_free_attrs() traced it and freed nothing. */
  nothing: boolean;
}
export interface BouncedEvent extends Common {
  kind: 'bounced';
  /** phys_to_dma() of the original buffer. */
  devAddr: number;
  size: number;
  force: boolean;
}

export type DmaEvent =
  | MapEvent
  | UnmapEvent
  | MapSgEvent
  | MapSgErrEvent
  | UnmapSgEvent
  | SyncEvent
  | SyncSgEvent
  | AllocEvent
  | FreeEvent
  | BouncedEvent;

type Kind = DmaEvent['kind'] | 'ignored';

/** Event name -> what it is. Events of the dma system this replay has no use for are 'ignored'. */
const EVENT_KINDS: Readonly<Record<string, Kind>> = {
  dma_map_page: 'map',
  dma_map_resource: 'map',
  dma_map_phys: 'map',
  dma_unmap_page: 'unmap',
  dma_unmap_resource: 'unmap',
  dma_unmap_phys: 'unmap',
  dma_map_sg: 'map_sg',
  dma_map_sg_err: 'map_sg_err',
  dma_unmap_sg: 'unmap_sg',
  dma_sync_single_for_cpu: 'sync',
  dma_sync_single_for_device: 'sync',
  dma_sync_sg_for_cpu: 'sync_sg',
  dma_sync_sg_for_device: 'sync_sg',
  dma_alloc: 'alloc',
  dma_alloc_pages: 'alloc',
  dma_free: 'free',
  dma_free_pages: 'free',
  // scatter-gather allocations come from the IOMMU or pages, never a swiotlb pool.
  dma_alloc_sgt: 'ignored',
  dma_alloc_sgt_err: 'ignored',
  dma_free_sgt: 'ignored',
  swiotlb_bounced: 'bounced',
};

/**
 * True for the names of dma:* and swiotlb:* events (known or not). The dma_fence
 * system's events (include/trace/events/dma_fence.h, 6.12: dma_fence_emit,
 * dma_fence_init, dma_fence_signaled, ...) share the prefix but are GPU fences,
 * not DMA mappings: they are other systems' events.
 */
export function isDmaEventName(name: string): boolean {
  if (name.startsWith('dma_fence_')) return false;
  return name.startsWith('dma_') || name.startsWith('swiotlb_');
}

/** What the replay does with an event name: undefined = not a DMA event it knows. */
export function eventKind(name: string): Kind | undefined {
  return EVENT_KINDS[name];
}

const DIRECTIONS: Readonly<Record<string, DmaDirection>> = {
  BIDIRECTIONAL: DmaDirection.BIDIRECTIONAL,
  TO_DEVICE: DmaDirection.TO_DEVICE,
  FROM_DEVICE: DmaDirection.FROM_DEVICE,
  NONE: DmaDirection.NONE,
  // The raw fields of [FAILED TO PARSE] print the enum in decimal; __print_symbolic
  // falls back to "0x%lx" (6.12 kernel/trace/trace_output.c trace_print_symbols_seq(),
  // libtraceevent's "0x%llx") for a value it has no name for.
  '0': DmaDirection.BIDIRECTIONAL,
  '1': DmaDirection.TO_DEVICE,
  '2': DmaDirection.FROM_DEVICE,
  '3': DmaDirection.NONE,
  '0x0': DmaDirection.BIDIRECTIONAL,
  '0x1': DmaDirection.TO_DEVICE,
  '0x2': DmaDirection.FROM_DEVICE,
  '0x3': DmaDirection.NONE,
};

function parseDir(text: string | undefined): DmaDirection {
  const dir = text === undefined ? undefined : DIRECTIONS[text];
  if (dir === undefined) {
    throw new EventParseError(
      `expected dir=BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE or NONE, got ${text === undefined ? 'no dir=' : `"dir=${text}"`}`,
    );
  }
  return dir;
}

// The exact kernel texts of the frequent events, read with one match and no
// intermediate objects (a trace has millions of them); anything else (a device
// name with spaces, raw fields, old layouts) takes the general path.
const FAST_MAP =
  /^(\S+) dir=([A-Z_]+) dma_addr=([0-9a-f]{1,16}) size=(\d{1,15}) phys_addr=([0-9a-f]{1,16}) attrs=/;
const FAST_UNMAP = /^(\S+) dir=([A-Z_]+) dma_addr=([0-9a-f]{1,16}) size=(\d{1,15}) attrs=/;
const FAST_SYNC = /^(\S+) dir=([A-Z_]+) dma_addr=([0-9a-f]{1,16}) size=(\d{1,15})$/;
const FAST_BOUNCED =
  /^dev_name: (\S+) dma_mask=[0-9a-f]+ dev_addr=([0-9a-f]{1,16}) size=(\d{1,15}) (FORCE|NORMAL)$/;

type At = { line: number; cpu: number; pid: number; ts: number };

/** The fast path of {@link parseDmaEvent}; undefined when the text is not the exact kernel one. */
function parseFast(name: string, kind: Kind, body: string, at: At): DmaEvent | undefined {
  switch (kind) {
    case 'map': {
      const m = FAST_MAP.exec(body);
      const dir = m ? DIRECTIONS[m[2]!] : undefined;
      if (!m || dir === undefined) return undefined;
      return {
        line: at.line,
        cpu: at.cpu,
        pid: at.pid,
        ts: at.ts,
        device: m[1]!,
        kind,
        dir,
        dmaAddr: hexNum(m[3]!),
        size: Number(m[4]),
        phys: hexNum(m[5]!),
      };
    }
    case 'unmap':
    case 'sync': {
      const m = (kind === 'unmap' ? FAST_UNMAP : FAST_SYNC).exec(body);
      const dir = m ? DIRECTIONS[m[2]!] : undefined;
      if (!m || dir === undefined) return undefined;
      const device = m[1]!;
      const dmaAddr = hexNum(m[3]!);
      const size = Number(m[4]);
      if (kind === 'unmap') {
        return {
          line: at.line,
          cpu: at.cpu,
          pid: at.pid,
          ts: at.ts,
          device,
          kind,
          dir,
          dmaAddr,
          size,
        };
      }
      const forDevice = name.endsWith('_for_device');
      return {
        line: at.line,
        cpu: at.cpu,
        pid: at.pid,
        ts: at.ts,
        device,
        kind,
        forDevice,
        dir,
        dmaAddr,
        size,
      };
    }
    case 'bounced': {
      const m = FAST_BOUNCED.exec(body);
      if (!m) return undefined;
      return {
        line: at.line,
        cpu: at.cpu,
        pid: at.pid,
        ts: at.ts,
        device: m[1]!,
        kind,
        devAddr: hexNum(m[2]!),
        size: Number(m[3]),
        force: m[4] === 'FORCE',
      };
    }
    default:
      return undefined;
  }
}

function need(fields: Map<string, string>, key: string, expected: string): string {
  const v = fields.get(key);
  if (v === undefined) throw new EventParseError(`expected ${key}= (${expected})`);
  return v;
}

/** The device and the key=value fields of an event's text, in any of the three styles. */
function eventHead(
  kind: string,
  body: string,
  st: ParseState,
): { device: string; fields: Map<string, string>; raw: boolean } {
  const raw = body.startsWith('[FAILED TO PARSE]');
  if (kind === 'bounced' && !raw) {
    const m = /^dev_name: (.*?) dma_mask=/.exec(body);
    if (!m) throw new EventParseError('expected "dev_name: <device> dma_mask=<hex> ..."');
    return {
      device: m[1]!,
      fields: splitFields(body.slice(m[0].length - 'dma_mask='.length)),
      raw,
    };
  }
  if (raw) {
    st.arrays ??= 'raw';
    const fields = splitFields(body.slice('[FAILED TO PARSE]'.length));
    const device = fields.get('device') ?? fields.get('dev_name') ?? '';
    if (device === '') throw new EventParseError('expected device= in the raw fields');
    return { device, fields, raw };
  }
  const at = body.indexOf(' dir=');
  if (at <= 0) throw new EventParseError('expected "<device> dir=<direction> ..."');
  return { device: body.slice(0, at), fields: splitFields(body.slice(at + 1)), raw };
}

/** The dma_addrs and sizes arrays of an sg event (the raw style names sizes `lengths`), checked to pair up. */
function sgArrays(
  fields: Map<string, string>,
  st: ParseState,
): { dmaAddrs: number[]; sizes: number[] } {
  const dmaAddrs = parseArray(need(fields, 'dma_addrs', 'an array'), 'dma_addrs', 8, st);
  const sizes = parseArray(
    fields.get('sizes') ?? need(fields, 'lengths', 'an array'),
    'sizes',
    4,
    st,
  );
  if (sizes.length !== dmaAddrs.length) {
    throw new EventParseError(
      `expected as many sizes as dma_addrs, got ${sizes.length} and ${dmaAddrs.length}`,
    );
  }
  return { dmaAddrs, sizes };
}

/**
 * Whether a `%p` field printed a NULL pointer. The kernel prints NULL (and error
 * pointers) as the value itself, zero-padded to 16 digits, where any other
 * pointer prints as a hash or "(____ptrval____)" (lib/vsprintf.c, 6.12.117:
 * ptr_to_id(), "Print the real pointer value for NULL and error pointers");
 * libtraceevent and the raw style print it as 0 or 0x0, and a C library's %p
 * as "(nil)". A hashed pointer is never 0.
 */
export function isNullPointer(text: string): boolean {
  return /^(?:0x)?0+$/i.test(text) || text === '(nil)' || text === '(null)';
}

/**
 * Parses the text of a dma:* or swiotlb:* event. Returns undefined for the events
 * the replay ignores. The `raw` style (FAILED TO PARSE) names some fields as the
 * kernel's struct does: `addr` for the unmap address, `lengths` for sizes. One case
 * per event format of dma.h and swiotlb.h, side by side, so that each format is
 * read in one place.
 * @throws EventParseError with what was expected
 */
export function parseDmaEvent(
  name: string,
  body: string,
  at: At,
  st: ParseState = {},
): DmaEvent | undefined {
  const kind = EVENT_KINDS[name];
  if (kind === undefined || kind === 'ignored') return undefined;
  const fast = parseFast(name, kind, body, at);
  if (fast === undefined && body.endsWith(LINE_TOO_BIG)) throw lineTooBig();
  if (fast !== undefined) return fast;
  const { device, fields, raw } = eventHead(kind, body, st);
  const num = raw ? parseRawNumber : parseHexAddr;
  const dec = raw ? parseRawNumber : parseDec;
  const base = { line: at.line, cpu: at.cpu, pid: at.pid, ts: at.ts, device };
  const dir = () => parseDir(fields.get('dir'));

  switch (kind) {
    case 'map':
      return {
        ...base,
        kind,
        dir: dir(),
        dmaAddr: num(need(fields, 'dma_addr', 'the mapped DMA address'), 'dma_addr'),
        size: dec(need(fields, 'size', 'the mapping size'), 'size'),
        phys: num(need(fields, 'phys_addr', "the buffer's physical address"), 'phys_addr'),
      };
    case 'unmap':
      return {
        ...base,
        kind,
        dir: dir(),
        dmaAddr: num(fields.get('dma_addr') ?? need(fields, 'addr', 'the DMA address'), 'dma_addr'),
        size: dec(need(fields, 'size', 'the mapping size'), 'size'),
      };
    case 'map_sg': {
      const { dmaAddrs, sizes } = sgArrays(fields, st);
      const phys = parseArray(need(fields, 'phys_addrs', 'an array'), 'phys_addrs', 8, st);
      const counts = sgCounts(fields, raw, phys.length, dmaAddrs.length);
      return { ...base, kind, dir: dir(), dmaAddrs, sizes, phys, ...counts };
    }
    case 'map_sg_err': {
      const list = fields.get('dma_addrs') ?? need(fields, 'phys_addrs', 'an array');
      const phys = parseArray(list, 'dma_addrs', 8, st);
      return { ...base, kind, dir: dir(), phys, err: Number(fields.get('err') ?? Number.NaN) };
    }
    case 'unmap_sg': {
      const list = fields.get('phys_addrs') ?? need(fields, 'addrs', 'an array');
      return { ...base, kind, dir: dir(), phys: parseArray(list, 'phys_addrs', 8, st) };
    }
    case 'sync':
      return {
        ...base,
        kind,
        forDevice: name.endsWith('_for_device'),
        dir: dir(),
        dmaAddr: num(need(fields, 'dma_addr', 'the DMA address'), 'dma_addr'),
        size: dec(need(fields, 'size', 'the size synced'), 'size'),
      };
    case 'sync_sg':
      return {
        ...base,
        kind,
        forDevice: name.endsWith('_for_device'),
        dir: dir(),
        ...sgArrays(fields, st),
      };
    case 'alloc':
    case 'free': {
      const dmaAddr = num(need(fields, 'dma_addr', 'the DMA address'), 'dma_addr');
      const size = dec(need(fields, 'size', 'the size'), 'size');
      // A line without virt_addr (no kernel prints one) is taken as not NULL.
      const virt = fields.get('virt_addr');
      const isNull = virt !== undefined && isNullPointer(virt);
      return kind === 'alloc'
        ? { ...base, kind, dmaAddr, size, failed: isNull }
        : { ...base, kind, dmaAddr, size, nothing: isNull };
    }
    case 'bounced': {
      const tail = need(fields, 'size', 'the mapping size and FORCE or NORMAL');
      const m = raw ? /^(\S+)/.exec(tail) : /^(\d+) (FORCE|NORMAL|NO_FORCE)\s*$/.exec(tail);
      if (!m) throw new EventParseError(`expected "size=<bytes> FORCE|NORMAL", got "size=${tail}"`);
      return {
        ...base,
        kind,
        devAddr: num(need(fields, 'dev_addr', "the original buffer's DMA address"), 'dev_addr'),
        size: dec(m[1]!, 'size'),
        force: raw ? (fields.get('force') ?? '0') !== '0' : m[2] === 'FORCE',
      };
    }
  }
}

/**
 * What the tracefs `trace` and `trace_pipe` files print instead of an event whose
 * text does not fit the 8 KiB trace_seq (6.12 include/linux/trace_seq.h
 * TRACE_SEQ_SIZE; kernel/trace/trace.c s_show() and tracing_read_pipe()): a
 * dma_unmap_sg, dma_sync_sg_* or dma_map_sg_err of several hundred entries (at
 * 11-30 characters an entry; their arrays are not capped at DMA_TRACE_MAX_ENTRIES
 * as dma_map_sg's are).
 */
const LINE_TOO_BIG = '[LINE TOO BIG]';

function lineTooBig(): EventParseError {
  return new EventParseError(
    'the kernel printed [LINE TOO BIG] instead of the event: its text exceeds the 8 KiB trace_seq (include/linux/trace_seq.h); record with trace-cmd, whose report prints it whole',
  );
}

/** nents/ents of a dma_map_sg line: 6.12.117 and mainline print "nents=%d/%d ents=%d/%d[ [TRUNCATED]]". */
function sgCounts(
  fields: Map<string, string>,
  raw: boolean,
  listedNents: number,
  listedEnts: number,
): { nents: number; ents: number; truncated: boolean } {
  if (raw) {
    const nents = Number(fields.get('full_nents') ?? listedNents);
    const ents = Number(fields.get('full_ents') ?? listedEnts);
    return { nents, ents, truncated: (fields.get('truncated') ?? '0') !== '0' };
  }
  const n = fields.get('nents');
  const e = fields.get('ents');
  if (n === undefined && e === undefined) {
    return { nents: listedNents, ents: listedEnts, truncated: false };
  }
  const nm = /^(\d+)\/(\d+)$/.exec(n ?? '');
  const em = /^(\d+)\/(\d+)(\s+\[TRUNCATED\])?$/.exec(e ?? '');
  if (!nm || !em) {
    throw new EventParseError(
      `expected "nents=<shown>/<total> ents=<shown>/<total>[ [TRUNCATED]]", got "nents=${n ?? ''} ents=${e ?? ''}"`,
    );
  }
  return { nents: Number(nm[2]), ents: Number(em[2]), truncated: em[3] !== undefined };
}
