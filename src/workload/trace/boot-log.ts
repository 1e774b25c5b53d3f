import { MediatorError } from '../../errors.js';
import { IO_TLB_SEGSIZE, IO_TLB_SHIFT } from '../../swiotlb/constants.js';
import type { KernelVersion } from '../../swiotlb/kernel.js';
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
 *                              (the size in whole MiB, rounded down: (unsigned long)rmem->size / SZ_1M)
 *   swiotlb_init_remap():     "SWIOTLB bounce buffer size adjusted %lu -> %lu slabs" (the memblock
 *                              allocation failed and the pool was halved; limit_nareas() then
 *                              lowers the areas, which 6.1.192 allocates but does not use: it
 *                              passes default_nareas to swiotlb_init_io_tlb_mem())
 *   swiotlb_tbl_map_single(): dev_warn_ratelimited(dev, "swiotlb buffer is full (sz: %zd
 *                              bytes), total %lu (slots), used %lu (slots)"), so the line
 *                              starts with the driver and device names
 *
 * and, outside kernel/dma:
 *
 *   drivers/of/of_reserved_mem.c (pr_fmt "OF: reserved mem: "):
 *                             "%pa..%pa (%lu KiB) %s %s %s" (base, base + size - 1: the end is
 *                              inclusive; then map/nomap, reusable/non-reusable, the node name;
 *                              newer kernels add dump/no-dump before the name): the exact size
 *                              of a restricted pool whose base it shares
 *   init/version.c linux_banner: "Linux version %s (...)" with UTS_RELEASE first; Debian's
 *                              UTS_VERSION ends "Debian 6.1.115-1 (date)", the stable release
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
  /** True when it is one of the log's restricted-dma-pools (one area, rmem_swiotlb_device_init()). */
  restricted: boolean;
  /** The pool's geometry is known exactly (a restricted pool's size may be known in whole MiB only). */
  exact: boolean;
  notes: string[];
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function badLog(log: BootLog, source: string, what: string): MediatorError {
  return new MediatorError(
    'TRACE_BAD_BOOT_LOG',
    `${source}: ${what} among its ${log.lines} lines; expected the boot log of the traced guest (journalctl -k -b keeps the early lines), or give the pool with --base/--slots/--areas (or --restricted SIZE --base ADDR)`,
    { lines: log.lines },
  );
}

/**
 * The default pool of the log: base and nslabs from the "mapped" line (already
 * rounded by the kernel: the model takes them as they are), the areas from "area
 * num" after limit_nareas() of a halved pool. 6.1.192 keeps default_nareas for a
 * halved pool (areas of fewer than 128 slots), which no model pool has: a note.
 */
function defaultPool(
  log: BootLog,
  pool: BootPool,
  source: string,
  profile: KernelVersion,
): PoolFromLog {
  const notes: string[] = [];
  if (log.poolLines > 1) {
    notes.push(
      `${source} has ${log.poolLines} "software IO TLB: mapped" lines (several boots?): using the last, line ${pool.line}`,
    );
  }
  let nareas: number | undefined;
  let exact = true;
  if (log.areaNum) {
    nareas = limitNareas(log.areaNum.n, pool.nslabs);
    if (nareas !== log.areaNum.n) {
      const halved = log.adjusted
        ? ` (line ${log.adjusted.line}: halved from ${log.adjusted.from} slots)`
        : '';
      if (profile === '6.1') {
        exact = false;
        notes.push(
          `area num ${log.areaNum.n} for a pool of ${pool.nslabs} slots${halved}: 6.1.192's swiotlb_init_remap() passes default_nareas to swiotlb_init_io_tlb_mem(), so the kernel's areas have ${pool.nslabs / log.areaNum.n} slots; the model's areas are whole segments and it uses ${nareas} (limit_nareas()): placements can differ`,
        );
      } else {
        notes.push(
          `area num ${log.areaNum.n} limited to ${nareas}${halved}: a pool of ${pool.nslabs} slots has at most one area per ${IO_TLB_SEGSIZE}-slot segment (limit_nareas())`,
        );
      }
    }
  }
  return { base: pool.base, nslabs: pool.nslabs, nareas, restricted: false, exact, notes };
}

/** Which restricted pool of the log, and its size when the user gives it. */
export interface RestrictedWanted {
  /** --restricted SIZE (bytes); undefined: the log's size. */
  bytes?: number;
  /** --base ADDR: the pool at that address. */
  base?: number;
}

/**
 * A restricted pool of the log (`--restricted log|SIZE`, or the log's only pool):
 * picked by --base when given, else by size, else the only one. Its size: the
 * flag's, else the OF reserved-memory line's (exact), else the swiotlb line's
 * whole MiB (rounded down by the kernel: a note says so).
 * @throws TRACE_BAD_BOOT_LOG
 */
export function restrictedFromBootLog(
  log: BootLog,
  source: string,
  want: RestrictedWanted,
): PoolFromLog {
  const notes: string[] = [];
  const all = restrictedPools(log);
  let pools = want.base === undefined ? all : all.filter((p) => p.base === want.base);
  if (pools.length > 1 && want.bytes !== undefined) {
    const bytes = want.bytes;
    const sameSize = pools.filter((p) =>
      p.exact ? p.bytes === bytes : p.bytes === Math.floor(bytes / 2 ** 20) * 2 ** 20,
    );
    if (sameSize.length > 0) pools = sameSize;
  }
  if (pools.length === 0) {
    if (want.bytes !== undefined && want.base !== undefined) {
      notes.push(
        `${source} has no restricted DMA pool at ${hex(want.base)}: the pool is the flags' alone`,
      );
      return restrictedPool(want.base, want.bytes, true, notes);
    }
    throw badLog(
      log,
      source,
      want.base === undefined
        ? 'no line "software IO TLB: Reserved memory: created restricted DMA pool at 0x..., size N MiB"'
        : `no restricted DMA pool at ${hex(want.base)} (it has ${all.length === 0 ? 'none' : all.map((p) => hex(p.base)).join(', ')})`,
    );
  }
  if (pools.length > 1) {
    throw badLog(
      log,
      source,
      `${pools.length} restricted DMA pools (at ${pools.map((p) => `${hex(p.base)}, line ${p.line}`).join('; ')}): choose one with --base ADDR`,
    );
  }
  const r = pools[0]!;
  notes.push(`the restricted DMA pool at ${hex(r.base)} (${source}:${r.line}), one area`);
  if (want.bytes !== undefined) {
    if (r.exact && r.bytes !== want.bytes) {
      notes.push(
        `--restricted ${want.bytes} overrides the ${r.bytes} bytes of the OF reserved-memory line`,
      );
    }
    return restrictedPool(r.base, want.bytes, true, notes);
  }
  if (!r.exact) {
    if (r.bytes === 0) {
      throw badLog(
        log,
        source,
        `the restricted DMA pool at ${hex(r.base)} (line ${r.line}) prints "size 0 MiB" (rounded down) and no "OF: reserved mem" line gives its size: pass --restricted SIZE (its reg size)`,
      );
    }
    notes.push(
      `its size comes from "size ${r.bytes / 2 ** 20} MiB", which rmem_swiotlb_setup() rounds down, and no "OF: reserved mem" line gives it exactly: the pool may be up to 1 MiB larger; pass --restricted SIZE (the reg size of its device-tree node) to be exact`,
    );
  }
  return restrictedPool(r.base, r.bytes, r.exact, notes);
}

function restrictedPool(base: number, bytes: number, exact: boolean, notes: string[]): PoolFromLog {
  return {
    base,
    nslabs: Math.floor(bytes / 2 ** IO_TLB_SHIFT),
    nareas: 1,
    restricted: true,
    exact,
    notes,
  };
}

/**
 * The pool to replay against: the default pool when the log has one, else its
 * single restricted pool.
 * @throws TRACE_BAD_BOOT_LOG when neither is there
 */
export function poolFromBootLog(
  log: BootLog,
  source: string,
  profile: KernelVersion = '6.10',
): PoolFromLog {
  if (log.pool) {
    const p = defaultPool(log, log.pool, source, profile);
    const others = restrictedPools(log);
    if (others.length > 0) {
      p.notes.push(
        `${source} also has ${others.length} restricted DMA pool${others.length > 1 ? 's' : ''} (at ${others.map((r) => hex(r.base)).join(', ')}): maps into ${others.length > 1 ? 'them' : 'it'} count as outside the pool; replay one with --restricted log [--base ADDR]`,
      );
    }
    return p;
  }
  if (log.restricted.length === 1) {
    const p = restrictedFromBootLog(log, source, {});
    p.notes.unshift(`${source} has no default pool`);
    return p;
  }
  throw badLog(
    log,
    source,
    log.restricted.length > 1
      ? `${log.restricted.length} restricted DMA pools and no default pool: choose one with --restricted log --base ADDR`
      : 'no line "software IO TLB: mapped [mem 0x...-0x...] (NMB)"',
  );
}
