import { MediatorError } from '../../errors.js';
import { IO_TLB_SEGSIZE, IO_TLB_SHIFT } from '../../swiotlb/constants.js';
import type { KernelVersion } from '../../swiotlb/kernel.js';
import { type BootLog, type BootPool, restrictedPools } from './boot-log.js';

/**
 * The pool to replay against, from what the boot log says (boot-log.ts): the
 * default pool's base and slots from its "mapped" line and its areas from "area
 * num" after limit_nareas(), or a restricted-dma-pool's base and size (one area,
 * rmem_swiotlb_device_init()), each with the notes that say where the model's
 * pool may differ from the kernel's; a log that gives no pool is refused with
 * TRACE_BAD_BOOT_LOG.
 */

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
