/**
 * The status page's arithmetic, without the DOM (test/status-model.test.ts runs it
 * under Node): the slot map's encoding, rates from two reads of a counter,
 * percentiles from two reads of a histogram, where each slot is drawn, and how
 * numbers are written. Types: model.d.ts beside this file.
 */

/** Slot states, in the 2-bit order of GET /v1/pools/:name/slots (src/swiotlb/slot-map.ts). */
export const FREE = 0;
export const IN_USE = 1;
export const PADDING = 2;
export const COHERENT = 3;

/** Counters the allocator keeps as Uint32 and lets wrap (maps, failures, contention). */
const TWO_POW_32 = 2 ** 32;

/** The map's bytes from its base64. */
export function decodeMap(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** State of slot `s`: byte s >> 2, bits 2 * (s & 3). */
export function slotState(bits, s) {
  return (bits[s >> 2] >> ((s & 3) << 1)) & 3;
}

/**
 * Growth of a counter between two reads. A 32-bit counter that wrapped gives
 * its true growth; a counter that went down (a reset, a restart) gives 0.
 */
export function counterDelta(before, after, wraps = false) {
  const d = after - before;
  if (d >= 0) return d;
  if (wraps && before < TWO_POW_32 && after < TWO_POW_32) return d + TWO_POW_32;
  return 0;
}

/** Per second between two reads `seconds` apart; undefined without an interval. */
export function ratePerSecond(before, after, seconds, wraps = false) {
  if (!(seconds > 0) || before === undefined || after === undefined) return undefined;
  return counterDelta(before, after, wraps) / seconds;
}

/**
 * How busy `threads` threads were between two reads `seconds` apart, from their
 * idle time summed (seconds, a counter): 1 less the idle share, between 0 and 1;
 * undefined without an interval, a reading or a thread, and when the idle time
 * went back (a restart: no idle time is not all busy).
 */
export function busyShare(idleBefore, idleAfter, seconds, threads) {
  if (!(seconds > 0) || !(threads > 0) || idleBefore === undefined || idleAfter === undefined) {
    return undefined;
  }
  if (idleAfter < idleBefore) return undefined;
  const idle = (idleAfter - idleBefore) / (threads * seconds);
  return Math.min(1, Math.max(0, 1 - idle));
}

/**
 * The q-quantile (0..1) of the observations between two reads of a histogram,
 * as Prometheus' histogram_quantile() computes it: find the bucket where the
 * rank falls and interpolate linearly inside it (from 0 for the first bucket);
 * in the +Inf bucket, the highest finite bound. `bounds` are the buckets' upper
 * bounds; `before` and `after` are per-bucket counts (not cumulative) with one
 * more entry than `bounds`, for +Inf. Undefined when nothing was observed.
 */
export function windowQuantile(bounds, before, after, q) {
  const n = bounds.length + 1;
  const delta = new Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    delta[i] = Math.max(0, (after[i] ?? 0) - (before?.[i] ?? 0));
    total += delta[i];
  }
  if (total === 0) return undefined;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    const prev = cumulative;
    cumulative += delta[i];
    if (cumulative >= rank && delta[i] > 0) {
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((rank - prev) / delta[i]);
    }
  }
  return bounds[bounds.length - 1];
}

/**
 * Where each slot of a pool is drawn: every area a block of rows (an area never
 * shares a row with another), `cols` slots a row (whole segments), a pixel of
 * space between segments and `areaGap` pixels between areas. Picks the largest
 * cell (8 px down to 1) whose map fits `maxWidth` x `maxHeight`; below 1 px a
 * slot the map is taller than asked.
 */
export function slotMapLayout(nslabs, nareas, areaNslabs, maxWidth, maxHeight, segment = 128) {
  const areaGap = 6;
  let best;
  for (const cell of [8, 6, 5, 4, 3, 2, 1]) {
    const fit = Math.floor((maxWidth + 1) / (cell * segment + 1));
    const cols = Math.max(1, Math.min(fit, Math.ceil(areaNslabs / segment))) * segment;
    const segmentsPerRow = cols / segment;
    const width = cols * cell + segmentsPerRow - 1;
    const rowsPerArea = Math.ceil(areaNslabs / cols);
    const height = nareas * rowsPerArea * cell + (nareas - 1) * areaGap;
    best = { cell, cols, rowsPerArea, width, height, areaGap, segment, nslabs, nareas, areaNslabs };
    if (width <= maxWidth && height <= maxHeight) break;
  }
  return best;
}

/** Top-left pixel of slot `s` in a layout. */
export function slotXY(layout, s) {
  const { cell, cols, rowsPerArea, areaGap, segment, areaNslabs } = layout;
  const area = Math.floor(s / areaNslabs);
  const within = s - area * areaNslabs;
  const row = Math.floor(within / cols);
  const col = within % cols;
  return {
    x: col * cell + Math.floor(col / segment),
    y: area * (rowsPerArea * cell + areaGap) + row * cell,
  };
}

/** The slot drawn at pixel (x, y), or -1 (a gap, or past the pool). */
export function slotAt(layout, x, y) {
  const { cell, cols, rowsPerArea, areaGap, segment, areaNslabs, nareas } = layout;
  if (x < 0 || y < 0) return -1;
  const blockHeight = rowsPerArea * cell + areaGap;
  const area = Math.floor(y / blockHeight);
  const yIn = y - area * blockHeight;
  if (area >= nareas || yIn >= rowsPerArea * cell) return -1;
  const segWidth = segment * cell + 1;
  const seg = Math.floor(x / segWidth);
  const xIn = x - seg * segWidth;
  if (xIn >= segment * cell) return -1;
  const col = seg * segment + Math.floor(xIn / cell);
  if (col >= cols) return -1;
  const within = Math.floor(yIn / cell) * cols + col;
  return within < areaNslabs ? area * areaNslabs + within : -1;
}

/** 1234567 -> "1,234,567". */
export function formatInteger(n) {
  return Math.round(n).toLocaleString('en-US');
}

/** Three significant digits with a k / M / G suffix: 12345 -> "12.3k". */
export function formatCount(n) {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  for (const [scale, suffix] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ]) {
    if (abs >= scale) return `${trim(n / scale)}${suffix}`;
  }
  return abs >= 100 || Number.isInteger(n) ? String(Math.round(n)) : trim(n);
}

/** Bytes per second in decimal units (kB/s, MB/s, GB/s), as copy rates are quoted. */
export function formatRate(bytesPerSecond) {
  if (bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return '–';
  const units = ['B/s', 'kB/s', 'MB/s', 'GB/s', 'TB/s'];
  let u = 0;
  let v = bytesPerSecond;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? Math.round(v) : trim(v)} ${units[u]}`;
}

/** A size in binary units (KiB, MiB), as pools are configured. */
export function formatSize(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let u = 0;
  let v = bytes;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${trim(v)} ${units[u]}`;
}

/** Seconds as µs / ms / s with three significant digits. */
export function formatSeconds(s) {
  if (s === undefined || !Number.isFinite(s)) return '–';
  if (s >= 1) return `${trim(s)} s`;
  if (s >= 1e-3) return `${trim(s * 1e3)} ms`;
  return `${trim(s * 1e6)} µs`;
}

/** `part` of `whole` as a percentage with one decimal. */
export function formatPercent(part, whole) {
  if (!(whole > 0)) return '–';
  return `${((part / whole) * 100).toFixed(1)}%`;
}

function trim(v) {
  const abs = Math.abs(v);
  // Three significant digits, judged after rounding (9.999 is "10.0", not "10.00").
  const digits = abs >= 99.95 ? 0 : abs >= 9.995 ? 1 : 2;
  return v.toFixed(digits);
}
