import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from './constants.js';
import { AREA_HINT_COUNT, AREA_HINT_TOP, AREA_STRIDE, WARM_HINTS } from './layout.js';
import type { MapPlan } from './plan.js';
import { NOT_FOUND, skipsCandidate } from './search.js';
import { allUsed, freeRun } from './slot-bitmap.js';

/**
 * Placement policies of a pool:
 * - `linux`: the kernel's search alone (the area's next-fit cursor walks the
 *   whole area, so a slot is handed out again only once the cursor has been
 *   round the area: with a 32 MiB area, long after it left the CPU caches);
 * - `warm`: the runs freed most recently are handed out first, so a steady
 *   workload keeps reusing the same few slots; the kernel's search when none fits.
 *   Not a kernel behaviour (docs/kernels.md), but every placement it makes is one
 *   the pool's kernel profile makes too, from some position of its cursor.
 */
export const PLACEMENTS = ['linux', 'warm'] as const;
export type Placement = (typeof PLACEMENTS)[number];

/** What `replay`, every kernel profile and the service use unless told otherwise. */
export const DEFAULT_PLACEMENT: Placement = 'linux';

export function isPlacement(value: unknown): value is Placement {
  return typeof value === 'string' && (PLACEMENTS as readonly string[]).includes(value);
}

/** The G_PLACEMENT word's values (layout.ts). */
export const PLACEMENT_LINUX = 0;
export const PLACEMENT_WARM = 1;

export function placementCode(placement: Placement): number {
  return placement === 'warm' ? PLACEMENT_WARM : PLACEMENT_LINUX;
}

/**
 * The warm hint ring of one area: the runs freed last, newest on top.
 *
 *   control words (the area's cache line):  HINT_TOP = t, HINT_COUNT = n
 *   hints[area * WARM_HINTS + i], i = 0 .. WARM_HINTS - 1:
 *
 *     position:  t-n+1  ...  t-2    t-1     t          (modulo WARM_HINTS)
 *              [ oldest ] ... [ e ][  0  ][ newest ]
 *                                    ^ tombstone: an entry taken whole
 *     entry e = first slot * RUN_SPAN + slots   (slots 1 .. 128; 0 = none)
 *
 *   unmap (swiotlb_release_slots()): push the freed run [index, index + nslots),
 *     pad slots included, on top; a push on a full ring overwrites the oldest.
 *     A run placed by the kernel's search on request (MapOptions.kernelSearch,
 *     noHint in layout.ts) is not pushed: only warm maps' runs are on the ring.
 *     Runs are not merged: a run keeps the shape of the allocation it came from,
 *     so the next request of that shape takes it whole (LIFO: a request mapped
 *     after one completed takes that one's runs; the guest side frees a
 *     request's runs last buffer first, so each of its maps finds its run on top).
 *   map: look at the WARM_SCAN newest entries, newest first; in each, walk as the
 *     kernel's search walks from a cursor at the entry's first slot (6.1: from the
 *     stride grid point at or before it), over the candidates that start before
 *     the entry's end, and take the first that fits. The entry keeps what is left of it
 *     after the placement (its tail, else its head), or becomes a tombstone.
 *     Tombstones on top are popped.
 *
 * Rules:
 * - An entry is a hint, never a claim: the used-slot bitmap alone says what is
 *   free. An entry may be stale (its slots since taken by the kernel's search, or
 *   by another entry's placement, or freed and pushed twice): a candidate is taken
 *   only when freeRun() says the whole run is free, so a stale entry costs a look,
 *   never a double allocation. An entry found wholly used becomes a tombstone.
 *   Free neighbours count: freeRun() sees the coalesced free run, so a request
 *   larger than the entry fits when the slots after it are free too.
 * - An area's ring names slots of that area only, and changes only under its lock.
 * - A warm placement is the slot the kernel's search of that area returns when
 *   its cursor stands where the walk began (6.6/6.10: every candidate's address
 *   checked against alloc_align_mask and iotlb_align_mask, as
 *   swiotlb_search_pool_area() checks it; 6.1: the walk of swiotlb_do_find_slots()
 *   from a stride grid point, giving up where 6.1 would overrun a partial last
 *   segment). Offset, pad slots and the recorded sizes are the plan's, as for
 *   any placement. It leaves the area's cursor (AREA_INDEX) alone: the cursor is
 *   where the kernel's search starts when no hint fits, and only that search
 *   moves it.
 * - A map looks at no more than WARM_SCAN entries and checks no more than
 *   WARM_BUDGET candidates; nothing is allocated.
 * - The usual map, one whose shape freed the newest entry (a steady workload:
 *   LIFO), is answered by {@link warmTop} before that walk: same slot, same ring
 *   afterwards, a fraction of the time.
 * - What it does not do: runs forgotten (pushed out of a full ring, or split by
 *   requests of other sizes until nothing in the ring fits) are found again only
 *   by the kernel's search, so a workload of mixed sizes still sends some maps to
 *   the cursor, which keeps walking the area (more slowly).
 */

/** Entries a map looks at, newest first. */
export const WARM_SCAN = 32;
/** Candidate slots a map checks over all the entries it looks at. */
export const WARM_BUDGET = 64;
/** entry = first slot * RUN_SPAN + slots: a run is at most a segment (128 slots). */
const RUN_SPAN = 256;
const RING_MASK = WARM_HINTS - 1;

/** Pushes the freed run [slot, slot + nslots) of `area` (its lock held). */
export function warmPush(
  c: Int32Array,
  hints: Int32Array,
  area: number,
  slot: number,
  nslots: number,
): void {
  const word = area * AREA_STRIDE;
  const ring = area * WARM_HINTS;
  const count = c[word + AREA_HINT_COUNT]!;
  const top = (c[word + AREA_HINT_TOP]! + 1) & RING_MASK;
  hints[ring + top] = slot * RUN_SPAN + nslots;
  c[word + AREA_HINT_TOP] = top;
  if (count < WARM_HINTS) c[word + AREA_HINT_COUNT] = count + 1;
}

/**
 * The shortcut of {@link warmFind} for its usual case: the newest entry is a run
 * of exactly the plan's slots, its first slot a candidate the kernel's search
 * takes (its address checked against alloc_align_mask and iotlb_align_mask as
 * warmFind checks it) and still free. Then warmFind would take that slot as its
 * first candidate and leave the entry a tombstone, popped; warmTop does the same
 * and returns the slot. Anything else, and every 6.1 map (its walk starts at a
 * stride grid point, not at the entry), returns NOT_FOUND having changed
 * nothing, and the caller runs warmFind. Why a second function: warmFind's
 * loops compile to a large body that the engine calls rather than inlines, and
 * this case measured about a tenth of a 4 KiB request's pool work faster on its
 * own (docs/performance.md).
 */
export function warmTop(
  c: Int32Array,
  hints: Int32Array,
  used: Int32Array,
  area: number,
  base: number,
  searchOrig: number,
  p: MapPlan,
): number {
  const word = area * AREA_STRIDE;
  if (p.wrapSearch || c[word + AREA_HINT_COUNT] === 0) return NOT_FOUND;
  const ring = area * WARM_HINTS;
  const top = c[word + AREA_HINT_TOP]!;
  const e = hints[ring + top]!;
  const nslots = p.nslots;
  if ((e & (RUN_SPAN - 1)) !== nslots) return NOT_FOUND;
  const start = (e / RUN_SPAN) | 0;
  const tlbAddr = base + start * IO_TLB_SIZE;
  const iotlbAlignMask = p.iotlbAlignMask;
  const origBits = (searchOrig & iotlbAlignMask) >>> 0;
  if (
    skipsCandidate(tlbAddr, p.allocAlignMask, iotlbAlignMask, searchOrig, origBits) ||
    freeRun(used, start) < nslots
  ) {
    return NOT_FOUND;
  }
  hints[ring + top] = 0;
  return finish(c, hints, word, ring, start);
}

/**
 * The warm lookup of one area (its lock held, its early exit on `used` passed),
 * after {@link warmTop} found nothing: the first slot of a run the plan fits in,
 * taken from the hint ring (the entry updated), or NOT_FOUND (then the caller
 * runs the kernel's search). The caller does the bookkeeping of a found run, all
 * but the cursor.
 */
export function warmFind(
  c: Int32Array,
  hints: Int32Array,
  used: Int32Array,
  area: number,
  slotBase: number,
  base: number,
  nslabs: number,
  searchOrig: number,
  p: MapPlan,
): number {
  const word = area * AREA_STRIDE;
  const count = c[word + AREA_HINT_COUNT]!;
  if (count === 0) return NOT_FOUND;
  const ring = area * WARM_HINTS;
  const top = c[word + AREA_HINT_TOP]!;
  const nslots = p.nslots;
  const stride = p.stride;
  const wrapSearch = p.wrapSearch;
  // 6.1 checks no candidate's address against alloc_align_mask (its stride does that).
  const alignMask = wrapSearch ? 0 : p.allocAlignMask;
  const iotlbAlignMask = p.iotlbAlignMask;
  const origBits = (searchOrig & iotlbAlignMask) >>> 0;
  const partialEnd = nslabs % IO_TLB_SEGSIZE !== 0;
  const scan = Math.min(count, WARM_SCAN);
  let budget = WARM_BUDGET;
  let found = NOT_FOUND;
  for (let k = 0; k < scan && found < 0; k++) {
    const at = ring + ((top - k) & RING_MASK);
    const e = hints[at]!;
    if (e === 0) continue;
    const start = (e / RUN_SPAN) | 0;
    const len = e & (RUN_SPAN - 1);
    const end = start - slotBase + len;
    let index = start - slotBase;
    // A start the kernel's ALIGN(area->index, stride) can give (its mask bits clear;
    // for a power-of-two stride the grid point at or before the entry).
    if (wrapSearch) index = (index & ~(stride - 1)) >>> 0;
    while (index < end) {
      if (budget-- === 0) return finish(c, hints, word, ring, NOT_FOUND);
      const candidate = slotBase + index;
      const tlbAddr = base + candidate * IO_TLB_SIZE;
      if (skipsCandidate(tlbAddr, alignMask, iotlbAlignMask, searchOrig, origBits)) {
        index++;
        continue;
      }
      let run = freeRun(used, candidate);
      // 6.1's list[] counts the missing slots of a partial last segment as free. Always
      // so here, also once the pool's G_TAIL_EXACT is set (search.ts findWrapped()):
      // an inflated run only ever gives a hint up (the kernel's search runs), never
      // places one the kernel would not.
      if (wrapSearch && partialEnd && candidate + run === nslabs) {
        run += IO_TLB_SEGSIZE - (nslabs % IO_TLB_SEGSIZE);
      }
      if (run >= nslots) {
        // Where 6.1 would overrun the pool, leave the request to its own search.
        if (candidate + nslots > nslabs) return finish(c, hints, word, ring, NOT_FOUND);
        found = candidate;
        const tail = candidate + nslots;
        const entryEnd = start + len;
        hints[at] =
          tail < entryEnd
            ? tail * RUN_SPAN + (entryEnd - tail)
            : candidate > start
              ? start * RUN_SPAN + (candidate - start)
              : 0;
        break;
      }
      index += stride;
    }
    if (found < 0 && allUsed(used, start, len)) hints[at] = 0;
  }
  return finish(c, hints, word, ring, found);
}

/** Pops the tombstones on top of the ring; returns `found`. */
function finish(
  c: Int32Array,
  hints: Int32Array,
  word: number,
  ring: number,
  found: number,
): number {
  let count = c[word + AREA_HINT_COUNT]!;
  let top = c[word + AREA_HINT_TOP]!;
  while (count > 0 && hints[ring + top] === 0) {
    top = (top - 1) & RING_MASK;
    count--;
  }
  c[word + AREA_HINT_COUNT] = count;
  c[word + AREA_HINT_TOP] = top;
  return found;
}
