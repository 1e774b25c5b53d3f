import { MediatorError } from '../../errors.js';
import { IO_TLB_SEGSIZE, IO_TLB_SHIFT } from '../../swiotlb/constants.js';
import { parseHexAddr } from './dma-events.js';

/**
 * What the boot log (dmesg, `journalctl -k`) says about the swiotlb pools. The
 * lines, from kernel/dma/swiotlb.c (pr_fmt "software IO TLB: "):
 *
 *   swiotlb_adjust_nareas():  "area num %d."   (the requested count, rounded up to
 *                              a power of two; the pool gets limit_nareas() of it:
 *                              no more areas than nslabs / IO_TLB_SEGSIZE)
 *   swiotlb_print_info():     "mapped [mem %pa-%pa] (%luMB)"   (mem->start and
 *                              mem->end = start + nslabs << IO_TLB_SHIFT, so the end
 *                              is exclusive; %pa prints 0x and 16 hex digits on 64-bit)
 *   rmem_swiotlb_setup():     "Reserved memory: created restricted DMA pool at %pa, size %ld MiB"
 *   swiotlb_tbl_map_single(): dev_warn_ratelimited(dev, "swiotlb buffer is full (sz: %zd
 *                              bytes), total %lu (slots), used %lu (slots)"), so the line
 *                              starts with the driver and device names
 *
 * Lines may carry a dmesg timestamp "[    1.234567] " or a journal prefix; the
 * parser looks for the text anywhere in the line.
 */

export interface BootPool {
  /** First byte (io_tlb_pool.start). */
  base: number;
  /** One past the last byte (io_tlb_pool.end). */
  end: number;
  nslabs: number;
  /** 1-based line of the boot log. */
  line: number;
}

export interface FullWarning {
  line: number;
  /** dmesg seconds since boot, when the line has them (the trace's default clock is close to it). */
  ts: number | undefined;
  driver: string;
  device: string;
  /** The size the kernel failed to place ("sz"). */
  size: number;
  total: number;
  used: number;
}

export interface BootLog {
  /** The default pool (the last "mapped [mem ...]" line: a log of several boots ends with the traced one). */
  pool: BootPool | undefined;
  /** How many "mapped" lines there were (more than one: several boots). */
  poolLines: number;
  /** "area num N." as printed (before limit_nareas()). */
  areaNum: { n: number; line: number } | undefined;
  restricted: { base: number; bytes: number; line: number }[];
  fullWarnings: FullWarning[];
  /** Sum of "N callbacks suppressed" of swiotlb_tbl_map_single (rate-limited warnings). */
  suppressedWarnings: number;
  lines: number;
}

const PREFIX = 'software IO TLB: ';
const MAPPED_RE = /mapped \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] \((\d+)MB\)/i;
const AREA_RE = /area num (\d+)\./;
const RESTRICTED_RE = /created restricted DMA pool at (0x[0-9a-f]+), size (\d+) MiB/i;
const FULL_RE =
  /(?:^|\s)(\S+) (\S+): swiotlb buffer is full \(sz: (\d+) bytes\), total (\d+) \(slots\), used (\d+) \(slots\)/;
const DMESG_TS_RE = /^\s*\[\s*(\d+\.\d+)\]/;
const SUPPRESSED_RE = /swiotlb_tbl_map_single: (\d+) callbacks suppressed/;

/** An incremental boot-log reader: feed lines, then {@link BootLogReader.result}. */
export class BootLogReader {
  private readonly log: BootLog = {
    pool: undefined,
    poolLines: 0,
    areaNum: undefined,
    restricted: [],
    fullWarnings: [],
    suppressedWarnings: 0,
    lines: 0,
  };

  /** Reads one line (1-based numbering is kept here). */
  line(text: string): void {
    const n = ++this.log.lines;
    if (text.includes('swiotlb buffer is full')) {
      const m = FULL_RE.exec(text);
      if (m) {
        const ts = DMESG_TS_RE.exec(text)?.[1];
        this.log.fullWarnings.push({
          line: n,
          ts: ts === undefined ? undefined : Number(ts),
          driver: m[1]!,
          device: m[2]!,
          size: Number(m[3]),
          total: Number(m[4]),
          used: Number(m[5]),
        });
      }
      return;
    }
    const sup = SUPPRESSED_RE.exec(text);
    if (sup) {
      this.log.suppressedWarnings += Number(sup[1]);
      return;
    }
    const at = text.indexOf(PREFIX);
    if (at < 0) return;
    const rest = text.slice(at + PREFIX.length);
    const mapped = MAPPED_RE.exec(rest);
    if (mapped) {
      const base = parseHexAddr(mapped[1]!, 'the pool start');
      const end = parseHexAddr(mapped[2]!, 'the pool end');
      if (end > base && Number.isFinite(end)) {
        this.log.pool = { base, end, nslabs: (end - base) / 2 ** IO_TLB_SHIFT, line: n };
        this.log.poolLines++;
      }
      return;
    }
    const area = AREA_RE.exec(rest);
    if (area) {
      this.log.areaNum = { n: Number(area[1]), line: n };
      return;
    }
    const restricted = RESTRICTED_RE.exec(rest);
    if (restricted) {
      this.log.restricted.push({
        base: parseHexAddr(restricted[1]!, 'the pool base'),
        bytes: Number(restricted[2]) * 2 ** 20,
        line: n,
      });
    }
  }

  result(): BootLog {
    return this.log;
  }
}

/** Parses a whole boot log text. */
export function parseBootLog(text: string): BootLog {
  const r = new BootLogReader();
  for (const line of text.split(/\r?\n/)) r.line(line);
  return r.result();
}

/** limit_nareas(): a pool of nslabs slots has at most nslabs / IO_TLB_SEGSIZE areas. */
export function limitNareas(nareas: number, nslabs: number): number {
  return nslabs < nareas * IO_TLB_SEGSIZE ? Math.floor(nslabs / IO_TLB_SEGSIZE) : nareas;
}

/** The default pool as the boot log gives it: base, slots, areas. */
export interface PoolFromLog {
  base: number;
  nslabs: number;
  /** undefined when the log has no "area num" line (the caller needs --areas then). */
  nareas: number | undefined;
  /** True when it is the log's only restricted-dma-pool (one area, Linux's rmem_swiotlb_device_init()). */
  restricted: boolean;
  notes: string[];
}

/**
 * The pool to replay against: the default pool when the log has one, else its
 * single restricted pool.
 * @throws TRACE_BAD_BOOT_LOG when neither is there
 */
export function poolFromBootLog(log: BootLog, source: string): PoolFromLog {
  const notes: string[] = [];
  if (log.pool) {
    if (log.poolLines > 1) {
      notes.push(
        `${source} has ${log.poolLines} "software IO TLB: mapped" lines (several boots?): using the last, line ${log.pool.line}`,
      );
    }
    let nareas: number | undefined;
    if (log.areaNum) {
      nareas = limitNareas(log.areaNum.n, log.pool.nslabs);
      if (nareas !== log.areaNum.n) {
        notes.push(
          `area num ${log.areaNum.n} limited to ${nareas}: a pool of ${log.pool.nslabs} slots has at most one area per ${IO_TLB_SEGSIZE}-slot segment (limit_nareas())`,
        );
      }
    }
    return { base: log.pool.base, nslabs: log.pool.nslabs, nareas, restricted: false, notes };
  }
  if (log.restricted.length === 1) {
    const r = log.restricted[0]!;
    notes.push(
      `${source} has no default pool; using its restricted DMA pool at 0x${r.base.toString(16)} (line ${r.line}), one area`,
    );
    return {
      base: r.base,
      nslabs: r.bytes / 2 ** IO_TLB_SHIFT,
      nareas: 1,
      restricted: true,
      notes,
    };
  }
  const what =
    log.restricted.length > 1
      ? `${log.restricted.length} restricted DMA pools and no default pool: choose one with --restricted SIZE --base ADDR`
      : 'no line "software IO TLB: mapped [mem 0x...-0x...] (NMB)"';
  throw new MediatorError(
    'TRACE_BAD_BOOT_LOG',
    `${source}: ${what} among its ${log.lines} lines; expected the boot log of the traced guest (journalctl -k -b keeps the early lines), or give the pool with --base/--slots/--areas`,
    { lines: log.lines },
  );
}
