/**
 * Setting a job up: the Mediator a job file runs on (one per mode), its devices
 * once they serve, and the clones (one per numjobs clone of each job section)
 * that the measured window drives, each with its I/O picker (where its next I/O
 * goes, by fio's io_u.c rules) made before any I/O.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, toMediatorSpec } from '../config/load.js';
import { isMediatorError, MediatorError } from '../errors.js';
import type { BlkDriver } from '../mediator/blk-driver.js';
import { Mediator } from '../mediator/mediator.js';
import type { PoolGate } from '../mediator/pool-gate.js';
import type { SwiotlbPool } from '../swiotlb/pool.js';
import type { Logger } from '../util/logger.js';
import {
  type BsSplitEntry,
  type FioJob,
  type JobFile,
  type JobMode,
  jobDirections,
  prng,
} from './fio-job.js';
import { deviceIds, jobConfig, POOL_NAME } from './job-config.js';
import { LatencyRecorder } from './stats.js';

/** A job file's Mediator for one mode, with what the run reads of it. */
export interface JobRig {
  mediator: Mediator;
  /** The one pool and its back-pressure gate. */
  pool: SwiotlbPool;
  gate: PoolGate;
  /** One device per job section, in section order, and their ids. */
  devices: BlkDriver[];
  ids: string[];
  /** Closes the Mediator and removes the file-blk images. */
  close(): Promise<void>;
}

/**
 * Builds the Mediator of {@link jobConfig} for `mode` (file-blk images in a fresh
 * temporary folder) and waits until every device serves.
 * @throws MEDIATOR_BAD_CONFIG when the job's configuration cannot run
 */
export async function openRig(jf: JobFile, mode: JobMode, log?: Logger): Promise<JobRig> {
  const needsDir = jf.jobs.some((j) => j.device === 'file-blk');
  const fileDir = needsDir ? mkdtempSync(join(tmpdir(), 'swiotlb-bench-')) : undefined;
  const removeDir = () => {
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  };
  let mediator: Mediator;
  try {
    const config = parseConfig(jobConfig(jf, mode, fileDir ? { fileDir } : {}), {
      source: 'job file',
    });
    mediator = new Mediator({ ...toMediatorSpec(config), ...(log ? { log } : {}) });
  } catch (err) {
    removeDir();
    if (isMediatorError(err)) throw err;
    // What the config cannot foresee: memory the machine will not give (a
    // ram-blk disk of the job's size=, guest memory), as serve reports it.
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `job file: the mediator cannot be built for mode ${mode}: ${(err as Error).message} (the devices' size= and the pool are allocated in memory)`,
      { cause: (err as { code?: string }).code ?? (err as Error).name },
    );
  }
  const close = async () => {
    try {
      await mediator.close();
    } finally {
      removeDir();
    }
  };
  try {
    const ids = deviceIds(jf.jobs);
    const devices = ids.map((id) => mediator.device(id)!);
    await Promise.all(devices.map((d) => d.ready()));
    const { pool, gate } = mediator.pools.get(POOL_NAME)!;
    return { mediator, pool, gate, devices, ids, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What one direction of a clone did in the measured window. */
export interface DirAcc {
  ios: number;
  bytes: number;
  lat: LatencyRecorder;
}

/**
 * One direction's block sizes as fio draws them, in typed arrays made once.
 * fio orders a bssplit by percentage (options.c bssplit_ddir(): `qsort(...,
 * bs_cmp)`, and bs_cmp() compares `perc`), ascending; ties keep the order written.
 */
export class BlockSplit {
  readonly sizes: Float64Array;
  /** Cumulative percentages, in the same order. */
  readonly cum: Float64Array;
  /** fio's min_bs[ddir] and max_bs[ddir]. */
  readonly min: number;
  readonly max: number;

  constructor(split: readonly BsSplitEntry[]) {
    const sorted = split
      .map((e, i) => ({ ...e, i }))
      .sort((a, b) => a.percent - b.percent || a.i - b.i);
    this.sizes = Float64Array.from(sorted, (e) => e.size);
    this.cum = new Float64Array(sorted.length);
    let acc = 0;
    sorted.forEach((e, i) => {
      acc += e.percent;
      this.cum[i] = acc;
    });
    this.min = Math.min(...this.sizes);
    this.max = Math.max(...this.sizes);
  }

  /**
   * A block length for an I/O with `room` bytes before the region's end, 0 when
   * not even the smallest fits: io_u.c get_next_buflen(). A single size is
   * returned unchecked (`if (minbs == maxbs) return minbs;`: fill_io_u() then
   * refuses it past the end). Otherwise fio draws an entry, takes the first one
   * at or after it that fits (`if ((r / perc <= frand_max / 100ULL) &&
   * io_u_fits(td, io_u, buflen)) break;`) and draws again while none does
   * (`} while (!io_u_fits(td, io_u, buflen));`): the same as drawing `x` below
   * the cumulative share of the last entry that fits. The length is then rounded
   * down to a multiple of min_bs (`buflen &= ~(minbs - 1)`, or `buflen -= buflen
   * % minbs`: no bs_unaligned here).
   */
  pick(r: number, room: number): number {
    if (this.min === this.max) return this.min;
    if (this.min > room) return 0;
    const n = this.sizes.length;
    let lastFit = 0;
    for (let i = 0; i < n; i++) if (this.sizes[i]! <= room) lastFit = i;
    const x = r * this.cum[lastFit]!;
    let len = this.sizes[lastFit]!;
    for (let i = 0; i <= lastFit; i++) {
      if (x < this.cum[i]! && this.sizes[i]! <= room) {
        len = this.sizes[i]!;
        break;
      }
    }
    return len - (len % this.min);
  }
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit(w: number): number {
  return 31 - Math.clz32(w & -w);
}

/**
 * fio's random map (lib/axmap.c) of one clone: a bit per block of the job's
 * smallest block size over [0, size) (filesetup.c init_random_map(): `blocks =
 * fsize / td->o.rw_min_bs; ... f->io_axmap = axmap_new(blocks);`), set when an
 * I/O covers the block. One flat bitmap: fio's levels only make the search faster.
 */
export class RandomMap {
  private readonly words: Uint32Array;
  /** Blocks still free in this pass. */
  free: number;

  constructor(readonly nbits: number) {
    this.words = new Uint32Array(Math.ceil(nbits / 32));
    this.free = nbits;
  }

  isSet(b: number): boolean {
    return (this.words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }

  /** The first free block in [start, end), or -1. */
  private findFree(start: number, end: number): number {
    if (start >= end) return -1;
    let w = start >>> 5;
    let free = ~this.words[w]! & (-1 << (start & 31));
    for (;;) {
      if (free !== 0) {
        const b = w * 32 + lowestBit(free);
        return b < end ? b : -1;
      }
      w++;
      if (w * 32 >= end) return -1;
      free = ~this.words[w]!;
    }
  }

  /**
   * The next free block after `b`, wrapping to the start, or -1 when the map is
   * full: lib/axmap.c axmap_next_free() (`next_bit = bit_nr + 1`, `If at the end
   * of the map, wrap-around`, then `axmap_find_first_free(axmap, 0)`).
   */
  nextFree(b: number): number {
    const next = b + 1 >= this.nbits ? 0 : b + 1;
    const found = this.findFree(next, this.nbits);
    return found >= 0 || next === 0 ? found : this.findFree(0, next);
  }

  /**
   * Marks up to `nr` blocks from `b`, stopping at the first one already set;
   * returns how many it marked: lib/axmap.c axmap_set_nr() (`only sets contig
   * regions`), as io_u.c mark_random_map() calls it.
   */
  setRun(b: number, nr: number): number {
    let k = 0;
    for (; k < nr && b + k < this.nbits; k++) {
      const bit = b + k;
      const mask = 1 << (bit & 31);
      const w = bit >>> 5;
      if ((this.words[w]! & mask) !== 0) break;
      this.words[w] = this.words[w]! | mask;
    }
    this.free -= k;
    return k;
  }

  /** A new pass: every block free again (filesetup.c fio_file_reset(): axmap_reset()). */
  reset(): void {
    this.words.fill(0);
    this.free = this.nbits;
  }
}

/**
 * A clone's random map: size / unit bits (fio's costs as much, filesetup.c
 * init_random_map()), refused as a bad configuration when the machine will not
 * give that memory (fio: "failed allocating random map ... try the 'norandommap'
 * option").
 */
function randomMapFor(job: FioJob, unit: number): RandomMap {
  const nbits = Math.floor(job.size / unit);
  try {
    return new RandomMap(nbits);
  } catch (err) {
    throw new MediatorError(
      'MEDIATOR_BAD_CONFIG',
      `job file: [${job.name}] the random map of ${nbits} blocks (size / ${unit} bytes, ${Math.ceil(nbits / 8)} bytes per clone) cannot be allocated: ${(err as Error).message}; set norandommap, as fio says`,
      { cause: (err as Error).name },
    );
  }
}

/**
 * Where a clone's next I/O goes, as fio's io_u.c picks it: its direction (the
 * rwmix share, drawn per I/O), its offset and its length. The pick is left in
 * `read`, `len`, `offset` (no object per I/O). The PRNG is this runner's
 * (mulberry32, seeded from randseed), not fio's tausworthe or LFSR: the sequence
 * of offsets is not fio's, the rules that shape it are.
 */
export class IoPicker {
  read = false;
  len = 0;
  offset = 0;
  /** Sequential jobs: the next offset of each direction, reads [0] and writes [1] (fio's f->last_pos[ddir]). */
  private readonly pos = new Float64Array(2);
  private readonly split: readonly [BlockSplit, BlockSplit];
  private readonly dirs: { read: boolean; write: boolean };
  private readonly random: boolean;
  /** The map's block: the smallest block size of reads and writes (init.c: `o->rw_min_bs = min(o->rw_min_bs, o->min_bs[ddir])`). */
  readonly unit: number;
  /** Undefined for sequential jobs and under `norandommap`. */
  readonly map: RandomMap | undefined;
  /** A sequential direction at the region's end starts over from 0 (else the pass ends). */
  private readonly wrapAtEnd: boolean;
  private readonly size: number;
  private readonly rwmixread: number;

  constructor(
    job: FioJob,
    private readonly rand: () => number,
  ) {
    this.split = [new BlockSplit(job.bs.read), new BlockSplit(job.bs.write)];
    this.dirs = jobDirections(job.rw);
    this.random = job.rw.startsWith('rand');
    this.unit = Math.min(this.split[0].min, this.split[1].min);
    this.size = job.size;
    this.rwmixread = job.rwmixread;
    this.map = this.random && !job.norandommap ? randomMapFor(job, this.unit) : undefined;
    // io_u.c get_next_seq_offset(): back to the start when `o->time_based`, and
    // for writes when `o->io_size > o->size`; otherwise the offset fails and the
    // pass ends.
    this.wrapAtEnd = job.timeBased || (this.dirs.write && job.ioSize > job.size);
  }

  /** Picks the next I/O; false when the pass ends (no offset, or no length that fits). */
  next(): boolean {
    this.read = this.dirs.read && (!this.dirs.write || this.rand() * 100 < this.rwmixread);
    const d = this.read ? 0 : 1;
    return this.random ? this.nextRandom(this.split[d]) : this.nextSequential(d, this.split[d]);
  }

  /**
   * io_u.c get_next_seq_offset(), one position per direction (`f->last_pos[ddir]`),
   * then get_next_buflen() for the room left; fill_io_u() refuses an I/O past the
   * end (`io_u->offset + io_u->buflen > io_u->file->real_file_size`).
   */
  private nextSequential(d: number, split: BlockSplit): boolean {
    let pos = this.pos[d]!;
    if (pos >= this.size) {
      if (!this.wrapAtEnd) return false;
      pos = 0;
    }
    const len = split.pick(this.rand(), this.size - pos);
    if (len === 0 || pos + len > this.size) return false;
    this.offset = pos;
    this.len = len;
    this.pos[d] = pos + len;
    return true;
  }

  /**
   * io_u.c __get_next_rand_offset(): a random block below last_block() (`*b =
   * lastb * (r / (rand_max(&td->offset_state) + 1.0))`); with the map, a block
   * already done moves to the next free one (`if (random_map_free(f, *b)) goto
   * ret; ... *b = axmap_next_free(f->io_axmap, *b);`), a full map ends the pass.
   * The offset is the block times the block alignment (get_next_block(): `b *
   * td->o.ba[ddir]`, ba defaulting to min_bs, init.c); with the map that is the
   * map's block (see the report's notes where reads and writes differ). Then
   * the length (get_next_buflen()), and mark_random_map() marks the blocks the I/O
   * covers, shortening it to the free run it found (`if ((nr_blocks * min_bs) <
   * buflen) buflen = nr_blocks * min_bs;`).
   */
  private nextRandom(split: BlockSplit): boolean {
    const map = this.map;
    const ba = map ? this.unit : split.min;
    // last_block(): `if (td->o.min_bs[ddir] > td->o.ba[ddir]) max_size -=
    // td->o.min_bs[ddir] - td->o.ba[ddir]; max_blocks = max_size / ba`.
    const lastb = Math.floor((this.size - (split.min - ba)) / ba);
    if (lastb <= 0) return false;
    let b = Math.floor(this.rand() * lastb);
    if (map?.isSet(b)) {
      b = map.nextFree(b);
      if (b < 0) return false;
    }
    const offset = b * ba;
    const len = split.pick(this.rand(), this.size - offset);
    if (len === 0 || offset + len > this.size) return false;
    this.offset = offset;
    this.len = map ? Math.min(len, map.setRun(b, Math.ceil(len / ba)) * ba) : len;
    return true;
  }

  /**
   * A new pass over the region: each direction back to the start and the map
   * cleared (filesetup.c fio_file_reset(): `f->last_pos[i] = f->file_offset;` for
   * every direction, `axmap_reset(f->io_axmap)`).
   */
  newPass(): void {
    this.pos.fill(0);
    this.map?.reset();
  }
}

/**
 * One numjobs clone of a job section: queue `clone` of its device, driven by
 * `iodepth` submitters (capped at the device's depth) that share its picker,
 * PRNG and counters.
 */
export interface Clone {
  job: FioJob;
  clone: number;
  device: BlkDriver;
  deviceId: string;
  /** Where the next I/O goes (offsets, lengths, the random map). */
  picker: IoPicker;
  /** performance.now() at which this clone's own ramp_time ends (time.c ramp_period_check(), per job). */
  rampEnd: number;
  /** Past its ramp: its I/Os are counted. */
  measuring: boolean;
  /** performance.now() when its measurement started (= rampEnd). */
  measureStart: number;
  /**
   * I/Os issued, as fio's exceeds_number_ios() counts them: `ddir_rw_sum(td->io_blocks)
   * + td->io_u_queued + td->io_u_in_flight`, io_blocks zeroed at the end of the
   * ramp (libfio.c reset_all_stats()): from the ramp's end, with the I/Os then in flight.
   */
  issued: number;
  /** Bytes issued since the run started, ramp included (fio's td->io_issue_bytes: never reset at the ramp's end). */
  issuedBytes: number;
  /** issuedBytes when the ramp ended (keep_running() counts td->io_bytes, zeroed then). */
  rampBytes: number;
  inFlight: number;
  /** fio's td_max_bs(): the largest block of reads and writes. */
  maxBs: number;
  /** io_size / io_limit written (keep_running(): `if (fio_files_done(td) && !td->o.io_size) return false;`). */
  ioSizeGiven: boolean;
  done: boolean;
  /** performance.now() past which the clone stops (runtime, from its ramp's end); Infinity without one. */
  deadline: number;
  lastCompletion: number;
  read: DirAcc;
  write: DirAcc;
  /** Failed I/Os by error code. */
  errors: Map<string, number>;
}

function acc(): DirAcc {
  return { ios: 0, bytes: 0, lat: new LatencyRecorder() };
}

/** The clones of every job section, each seeded from the job's randseed, section and clone. */
export function makeClones(jf: JobFile, rig: JobRig): Clone[] {
  const clones: Clone[] = [];
  jf.jobs.forEach((job, j) => {
    for (let c = 0; c < job.numjobs; c++) {
      clones.push({
        job,
        clone: c,
        device: rig.devices[j]!,
        deviceId: rig.ids[j]!,
        picker: new IoPicker(job, prng((job.randseed + j * 7919 + c * 104729) >>> 0)),
        rampEnd: 0,
        measuring: false,
        measureStart: 0,
        issued: 0,
        issuedBytes: 0,
        rampBytes: 0,
        inFlight: 0,
        maxBs: Math.max(...job.bs.read.map((e) => e.size), ...job.bs.write.map((e) => e.size)),
        ioSizeGiven: job.options.io_size !== undefined || job.options.io_limit !== undefined,
        done: false,
        deadline: Number.POSITIVE_INFINITY,
        lastCompletion: 0,
        read: acc(),
        write: acc(),
        errors: new Map(),
      });
    }
  });
  return clones;
}

/** One warning per device whose queue size capped the job's iodepth. */
export function depthWarnings(jf: JobFile, rig: JobRig): string[] {
  const warnings: string[] = [];
  rig.devices.forEach((d, i) => {
    const job = jf.jobs[i]!;
    if (d.depth < job.iodepth) {
      warnings.push(
        `[${job.name}] iodepth ${job.iodepth} capped to ${d.depth} by the queue size (${d.queueSize} descriptors)`,
      );
    }
  });
  return warnings;
}
