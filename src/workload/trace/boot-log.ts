import { IO_TLB_SHIFT } from '../../swiotlb/constants.js';
import { parseHexAddr } from './trace-values.js';

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
 *                              (the size in whole MiB, rounded down: (unsigned long)rmem->size / SZ_1M)
 *   swiotlb_init_remap():     "SWIOTLB bounce buffer size adjusted %lu -> %lu slabs" (the memblock
 *                              allocation failed and the pool was halved; limit_nareas() then
 *                              lowers the areas, which 6.1.192 computes but neither allocates
 *                              nor uses: it allocates default_nareas areas and passes
 *                              default_nareas to swiotlb_init_io_tlb_mem())
 *   swiotlb_tbl_map_single(): dev_warn_ratelimited(dev, "swiotlb buffer is full (sz: %zd
 *                              bytes), total %lu (slots), used %lu (slots)"), so the line
 *                              starts with the driver and device names
 *
 * and, outside kernel/dma:
 *
 *   drivers/of/of_reserved_mem.c (pr_fmt "OF: reserved mem: "), fdt_init_reserved_mem_node()
 *                             in 6.12.117 (6.1.192 prints no such line, only "initialized node
 *                             %s, compatible id %s": a 6.1 log gives a restricted pool's size
 *                             in whole MiB alone):
 *                             "%pa..%pa (%lu KiB) %s %s %s" (base, base + size - 1: the end is
 *                              inclusive; then map/nomap, reusable/non-reusable, the node name;
 *                              newer kernels add dump/no-dump before the name): the exact size
 *                              of a restricted pool whose base it shares
 *   init/version.c linux_banner: "Linux version %s (...)" with UTS_RELEASE first; Debian's
 *                              UTS_VERSION ends "Debian 6.1.115-1 (date)", the stable release
 *
 * Lines may carry a dmesg timestamp "[    1.234567] " or a journal prefix; the
 * parser looks for the text anywhere in the line. Which pool the replay takes
 * from these lines is boot-pool.ts's.
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

/** A restricted-dma-pool of the log, with its exact size when an OF line gave it. */
export interface RestrictedPoolLine {
  base: number;
  /** Bytes: exact when `exact`, else the "size %ld MiB" of the swiotlb line (rounded down). */
  bytes: number;
  exact: boolean;
  line: number;
}

export interface BootLog {
  /** The default pool (the last "mapped [mem ...]" line: a log of several boots ends with the traced one). */
  pool: BootPool | undefined;
  /** How many "mapped" lines there were (more than one: several boots). */
  poolLines: number;
  /** "area num N." as printed (before limit_nareas()). */
  areaNum: { n: number; line: number } | undefined;
  /** As the swiotlb lines print them (whole MiB); see {@link restrictedPools} for exact sizes. */
  restricted: { base: number; bytes: number; line: number }[];
  /** OF reserved-memory regions: base, end (exclusive) and line. */
  reserved: { base: number; end: number; line: number }[];
  /** "SWIOTLB bounce buffer size adjusted A -> B slabs": the pool was halved at boot. */
  adjusted: { from: number; to: number; line: number } | undefined;
  /** The banner's release ("Linux version 6.12.0 ..."), or Debian's stable release from it. */
  kernel: { text: string; line: number } | undefined;
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
const RESERVED_RE =
  /OF: reserved mem: (0x[0-9a-f]+)\.\.(0x[0-9a-f]+) \(\d+ KiB\) (?:no)?map (?:non-)?reusable/i;
const ADJUSTED_RE = /SWIOTLB bounce buffer size adjusted (\d+) -> (\d+) slabs/;
const BANNER_RE = /Linux version (\S+) \(/;
const DEBIAN_RE = / Debian (\d+\.\d+\.\d+)[-+~ ]/;
const DMESG_TS_RE = /^\s*\[\s*(\d+\.\d+)\]/;
const SUPPRESSED_RE = /swiotlb_tbl_map_single: (\d+) callbacks suppressed/;

/** An incremental boot-log reader: feed lines, then {@link BootLogReader.result}. */
export class BootLogReader {
  private readonly log: BootLog = {
    pool: undefined,
    poolLines: 0,
    areaNum: undefined,
    restricted: [],
    reserved: [],
    adjusted: undefined,
    kernel: undefined,
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
    if (at < 0) {
      this.otherLine(text, n);
      return;
    }
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
    const adjusted = ADJUSTED_RE.exec(rest);
    if (adjusted) {
      this.log.adjusted = { from: Number(adjusted[1]), to: Number(adjusted[2]), line: n };
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

  /** Lines outside kernel/dma: the banner and the OF reserved-memory regions. */
  private otherLine(text: string, n: number): void {
    const banner = BANNER_RE.exec(text);
    if (banner) {
      // A log of several boots ends with the traced one: the last banner wins.
      this.log.kernel = { text: DEBIAN_RE.exec(text)?.[1] ?? banner[1]!, line: n };
      return;
    }
    const reserved = RESERVED_RE.exec(text);
    if (reserved) {
      const base = parseHexAddr(reserved[1]!, 'the region start');
      const last = parseHexAddr(reserved[2]!, 'the region end');
      if (last >= base && Number.isFinite(last)) {
        this.log.reserved.push({ base, end: last + 1, line: n });
      }
    }
  }

  result(): BootLog {
    return this.log;
  }
}

/**
 * The log's restricted pools, each with its exact size when an OF reserved-memory
 * line of the same base gives it (else the swiotlb line's whole MiB, rounded down).
 */
export function restrictedPools(log: BootLog): RestrictedPoolLine[] {
  return log.restricted.map((r) => {
    const of = log.reserved.find((x) => x.base === r.base);
    return of
      ? { base: r.base, bytes: of.end - of.base, exact: true, line: r.line }
      : { base: r.base, bytes: r.bytes, exact: false, line: r.line };
  });
}

/** Parses a whole boot log text. */
export function parseBootLog(text: string): BootLog {
  const r = new BootLogReader();
  for (const line of text.split(/\r?\n/)) r.line(line);
  return r.result();
}
