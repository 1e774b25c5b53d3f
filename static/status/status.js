/**
 * The status page: reads the JSON API once a second while the page is visible
 * and shows pools (slot map, occupancy, failures, waits), devices (rates,
 * latency, faults) and the copy engine. Rates come from two successive reads.
 *
 * Every number shown sits in an element with data-k (what it is, e.g.
 * "pool:pool0:used") and data-v (the raw value behind the text), so that a test
 * or a script can read what the page shows without parsing the text. A figure
 * taken from two reads (a rate, a percentile) also keeps what it was computed
 * from (see keepFrom). body[data-reads] counts the reads shown so far;
 * body[data-reading] is "true" while a read is under way; body[data-state] is
 * "ok" or "error". Rule: every value written has a cell built for it; a key
 * written without one is a bug of this file, listed in body[data-unshown] (the
 * browser test fails on it) instead of vanishing.
 */
import * as M from './model.js';
import { drawSlotMap, drawSwatch, GUTTER, MARGIN, STATE_LABELS, slotUnder } from './slot-map.js';

const INTERVAL_MS = 1000;
const MAX_MAP_HEIGHT = 560;

const page = {
  /** The previous read: rates are taken against it. */
  prev: undefined,
  paused: false,
  timer: undefined,
  reading: false,
  reads: 0,
  /** Shape of what was built (pools, devices): rebuilt when it changes. */
  shape: '',
  /** key -> element holding that value. */
  cells: new Map(),
  /** Keys written that have no cell (see the rule at the head): body[data-unshown]. */
  unshown: new Set(),
  /** pool name -> { canvas, layout, bits, cursors, usedByArea, readout }. */
  maps: new Map(),
};

/**
 * Whether devices go through the pools in this mode: all but `direct` (where
 * they are handed guest memory), so that a mode added later is drawn too.
 */
function usesPool(mode) {
  return mode !== undefined && mode !== 'direct';
}

// ---------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/** An element that shows the value `key`. */
function cell(key, tag = 'span', attrs = {}) {
  const e = el(tag, { ...attrs, 'data-k': key, text: '…' });
  page.cells.set(key, e);
  return e;
}

/** Shows `text` for `key`, keeping the raw value in data-v. */
function set(key, value, text, warn = false) {
  const e = page.cells.get(key);
  if (!e) {
    page.unshown.add(key);
    document.body.dataset.unshown = [...page.unshown].join(' ');
    return;
  }
  e.dataset.v = value === undefined ? '' : String(value);
  e.textContent = text ?? (value === undefined ? '–' : M.formatCount(value));
  e.classList.toggle('warn', warn);
}

/** The data attributes keepFrom writes (dataset names). */
const FROM = ['t0', 't1', 'before', 'after', 'bounds', 'q'];

/**
 * Keeps beside a figure of two reads what it was computed from, so that a test
 * or a script can check each reading against the service's own counters and
 * redo the arithmetic (model.js):
 *
 *   data-t0, data-t1         the two reads' times, in seconds (the page's clock)
 *   data-before, data-after  the counter readings of each read: one number, or a
 *                            comma list (several counters, a histogram's buckets)
 *   data-bounds, data-q      a percentile's bucket upper bounds and quantile
 *
 * Numbers are written with String(), which gives back the same double. Without a
 * previous read (or a counter the previous read lacked), the attributes go.
 */
function keepFrom(key, from) {
  const e = page.cells.get(key);
  if (!e) return;
  for (const name of FROM) delete e.dataset[name];
  if (!from) return;
  for (const [name, v] of Object.entries(from)) {
    e.dataset[name] = Array.isArray(v) ? v.join(',') : String(v);
  }
}

/**
 * Shows a counter's growth per second between the reads of `win` ({t0, t1},
 * undefined at the first read), with its readings (keepFrom); `format` writes
 * the text (default: formatCount).
 */
function setRate(key, win, before, after, { wraps = false, format } = {}) {
  const r = win ? M.ratePerSecond(before, after, win.t1 - win.t0, wraps) : undefined;
  set(key, r, format?.(r));
  keepFrom(key, r === undefined ? undefined : { t0: win.t0, t1: win.t1, before, after });
}

function sum(values) {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

async function getJSON(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) {
    const body = await res.json().catch(() => undefined);
    throw new Error(
      `${path}: HTTP ${res.status}${body?.code ? ` ${body.code}` : ''}${body?.message ? `: ${body.message}` : ''}`,
    );
  }
  return res.json();
}

/**
 * One read of everything the page shows; `t` in seconds (the rates' clock).
 * The slot maps are read alongside the rest once the pools are known (after the
 * first read), so that map and counters are of nearly the same instant.
 */
async function readAll(known) {
  const slotsOf = (names) =>
    Promise.all(names.map((n) => getJSON(`/v1/pools/${encodeURIComponent(n)}/slots`)));
  const early = usesPool(known?.mode) ? known.pools.map((p) => p.name) : [];
  const t0 = performance.now();
  const [pools, devices, copy, earlySlots] = await Promise.all([
    getJSON('/v1/pools'),
    getJSON('/v1/devices'),
    getJSON('/v1/copy'),
    slotsOf(early),
  ]);
  const t = (t0 + performance.now()) / 2 / 1000;
  const names = usesPool(pools.mode) ? pools.pools.map((p) => p.name) : [];
  const slots = names.join('\n') === early.join('\n') ? earlySlots : await slotsOf(names);
  return {
    t,
    at: new Date(),
    mode: pools.mode,
    pools: pools.pools,
    devices: devices.devices,
    copy,
    slots,
  };
}

// ---------------------------------------------------------------------------
// Building the page for a configuration
// ---------------------------------------------------------------------------

function build(snap) {
  page.cells.clear();
  page.maps.clear();
  page.unshown.clear();
  delete document.body.dataset.unshown;
  buildPools(snap);
  buildDevices(snap);
  buildCopy(snap);
}

function buildPools(snap) {
  const list = document.getElementById('pool-list');
  list.replaceChildren();
  if (!usesPool(snap.mode)) {
    list.append(
      el('p', {
        class: 'note',
        'data-k': 'direct-note',
        text: `Direct mode: the devices are handed guest memory and nothing is bounced, so no pool is in use and there is no slot map to draw (${snap.pools.length === 1 ? 'pool' : 'pools'} ${snap.pools.map((p) => p.name).join(', ')} configured but unused). Start the service with --mode bounce to see the pool.`,
      }),
    );
    return;
  }
  for (const p of snap.pools) list.append(buildPool(p));
}

/** A label and its value(s), with what it means on hover. */
function stat(label, title, ...children) {
  return el('div', { title }, el('dt', { text: label }), el('dd', {}, ...children));
}

/** The pool's counters: used, high-water (with its reset), free run, maps, failures, waits. */
function poolStats(p, k) {
  const reset = el('button', {
    type: 'button',
    text: 'Reset',
    title: `POST /v1/pools/${p.name}/hiwater/reset: high-water back to 0, as writing 0 to debugfs io_tlb_used_hiwater`,
  });
  reset.addEventListener('click', () => void resetHiwater(p.name, reset));
  return el(
    'dl',
    { class: 'stats' },
    stat(
      'used',
      'debugfs io_tlb_used: slots taken, the virtqueues included',
      cell(k('used')),
      ' slots (',
      cell(k('used_percent')),
      ')',
    ),
    stat(
      'high-water',
      'debugfs io_tlb_used_hiwater: the most slots taken at once since start or the last reset',
      cell(k('hiwater')),
      ' slots (',
      cell(k('hiwater_percent')),
      ') ',
      reset,
    ),
    stat(
      'largest free run',
      'the biggest mapping the pool can place now: fragmentation shows here before "swiotlb buffer is full" does',
      cell(k('largest_free_run')),
      ' slots (',
      cell(k('largest_free_bytes')),
      ')',
    ),
    stat('maps/s', 'mappings placed per second', cell(k('maps_per_s'))),
    stat(
      'map failures',
      'maps that failed since start: full is "swiotlb buffer is full"; kernel defect: what the 6.1 kernel would hang on or place past the pool',
      'full ',
      cell(k('fail_full')),
      ' · too large ',
      cell(k('fail_too_large')),
      ' · invalid ',
      cell(k('fail_invalid')),
      ' · kernel defect ',
      cell(k('fail_kernel_defect')),
    ),
    stat(
      'back-pressure',
      'requests that waited for slots (requeued when the pool was full, as virtio-blk does), waiting now, and gave up (policy requeue-bounded)',
      'waits ',
      cell(k('waits')),
      ' (',
      cell(k('waits_per_s')),
      '/s) · waiting ',
      cell(k('waiting')),
      ' · timeouts ',
      cell(k('bp_timeouts')),
    ),
  );
}

/** The legend: each state's texture, name and count; the cursor's mark; the areas. */
function poolLegend(p, k) {
  const legend = el('ul', { class: 'legend', 'aria-label': 'legend' });
  for (const [state, name] of [
    [M.IN_USE, 'in_use'],
    [M.PADDING, 'padding'],
    [M.COHERENT, 'coherent'],
    [M.FREE, 'free'],
  ]) {
    const swatch = el('canvas', { width: '16', height: '16', 'aria-hidden': 'true' });
    drawSwatch(swatch, state);
    legend.append(
      el('li', {}, swatch, `${STATE_LABELS[state]}: `, cell(k(`slots_${name}`)), ' slots'),
    );
  }
  legend.append(
    el(
      'li',
      {},
      el('span', { class: 'cursor-key', 'aria-hidden': 'true' }),
      'next-fit cursor (▶ its row)',
    ),
    el('li', {
      class: 'muted',
      text: `${p.nareas} area${p.nareas === 1 ? '' : 's'} of ${p.area_nslabs} slots, framed`,
    }),
  );
  return legend;
}

/** Per area: slots used, cursor, largest free run, lock contention per second. */
function areaTable(p, k) {
  const areaRows = p.areas.map((_, a) =>
    el(
      'tr',
      {},
      el('th', { scope: 'row', text: `area ${a}` }),
      cell(k(`area${a}_used`), 'td', { class: 'num' }),
      cell(k(`area${a}_cursor`), 'td', { class: 'num' }),
      cell(k(`area${a}_largest_free_run`), 'td', { class: 'num' }),
      cell(k(`area${a}_contended_per_s`), 'td', { class: 'num' }),
    ),
  );
  return el(
    'table',
    { class: 'areas' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', { scope: 'col', text: 'area' }),
        el('th', { scope: 'col', class: 'num', text: 'used' }),
        el('th', { scope: 'col', class: 'num', text: 'cursor (slot)' }),
        el('th', { scope: 'col', class: 'num', text: 'largest free run' }),
        el('th', { scope: 'col', class: 'num', text: 'lock contended/s' }),
      ),
    ),
    el('tbody', {}, ...areaRows),
  );
}

/** A pool's card: title, counters, legend, the slot map, the areas. */
function buildPool(p) {
  const k = (name) => `pool:${p.name}:${name}`;
  const canvas = el('canvas', { class: 'map', role: 'img', 'data-k': k('map') });
  const readout = el('p', {
    class: 'readout',
    'aria-live': 'off',
    text: 'Point at a slot to see what it holds.',
  });
  const card = el(
    'article',
    { class: 'pool', 'data-pool': p.name },
    el(
      'h3',
      {},
      p.name,
      ' ',
      el(
        'small',
        {},
        `${M.formatSize(p.bytes)} · `,
        cell(k('nslabs')),
        ` slots · base ${p.base} · devices ${p.devices.join(', ') || 'none'}`,
      ),
    ),
    poolStats(p, k),
    poolLegend(p, k),
    el('div', { class: 'map-row' }, canvas),
    readout,
    el(
      'details',
      p.nareas <= 8 ? { open: '' } : {},
      el('summary', { text: `areas: cursors, largest free runs, lock contention` }),
      areaTable(p, k),
    ),
  );
  const entry = {
    canvas,
    readout,
    layout: undefined,
    bits: undefined,
    cursors: undefined,
    usedByArea: undefined,
    nslabs: p.nslabs,
    nareas: p.nareas,
    areaNslabs: p.area_nslabs,
  };
  page.maps.set(p.name, entry);
  canvas.addEventListener('mousemove', (event) => showSlot(p, entry, event));
  canvas.addEventListener('mouseleave', () => {
    readout.textContent = 'Point at a slot to see what it holds.';
  });
  return card;
}

function buildDevices(snap) {
  const tbody = document.querySelector('#device-table tbody');
  tbody.replaceChildren();
  // Bounce bytes are counted per guest: devices of one guest share those cells.
  const byGuest = new Map();
  for (const d of snap.devices) byGuest.set(d.guest, [...(byGuest.get(d.guest) ?? []), d.id]);
  const shownGuest = new Set();
  for (const d of snap.devices) {
    const k = (name) => `device:${d.id}:${name}`;
    const num = (name) => cell(k(name), 'td', { class: 'num' });
    const row = el(
      'tr',
      { 'data-device': d.id },
      el('th', { scope: 'row', text: d.id }),
      el('td', { text: d.kind }),
      el('td', { text: `${usesPool(snap.mode) ? d.pool : '(direct)'} · ${d.guest}` }),
      num('requests_per_s'),
      num('read_bytes_per_s'),
      num('written_bytes_per_s'),
    );
    if (!shownGuest.has(d.guest)) {
      shownGuest.add(d.guest);
      const span = String(byGuest.get(d.guest).length);
      const g = (name) =>
        cell(`guest:${d.guest}:${name}`, 'td', {
          class: 'num',
          rowspan: span,
          title: `guest ${d.guest}: ${byGuest.get(d.guest).join(', ')}`,
        });
      row.append(g('to_device_bytes_per_s'), g('from_device_bytes_per_s'));
    }
    row.append(
      num('p50'),
      num('p99'),
      num('in_flight'),
      num('device_busy'),
      num('requests'),
      num('failed'),
      num('faults'),
      num('timeouts'),
      num('resets'),
    );
    tbody.append(row);
  }
}

function buildCopy(snap) {
  const body = document.getElementById('copy-body');
  const stats = el(
    'dl',
    { class: 'stats' },
    stat(
      'bounced',
      'bytes copied between guest memory and the pools per second, both ways',
      cell('copy:bytes_per_s'),
      ' (to device ',
      cell('copy:to_device_bytes_per_s'),
      ', from device ',
      cell('copy:from_device_bytes_per_s'),
      ')',
    ),
    stat(
      'copies/s',
      'bounce copies per second; the share the main thread did itself (copies below the inline threshold)',
      cell('copy:copies_per_s'),
      ' (',
      cell('copy:inline_percent'),
      ' inline on the main thread)',
    ),
    stat(
      'workers',
      'copy worker threads running, of those configured',
      cell('copy:live_workers'),
      ' running of ',
      cell('copy:workers'),
    ),
    stat(
      'worker utilization',
      'share of each second each worker spent copying',
      cell('copy:utilization'),
    ),
    stat('pending', 'copies handed to workers and not finished', cell('copy:pending')),
    stat('worker crashes', 'copy workers that died and were replaced', cell('copy:crashes')),
  );
  const note = el('p', { class: 'muted', 'data-k': 'copy:note' });
  if (!usesPool(snap.mode))
    note.textContent = 'Direct mode: nothing is bounced, so the copy engine stays idle.';
  else if (snap.copy.workers === 0) {
    note.textContent = `No copy workers: every copy is done inline on the main thread (the default on 2 CPUs or fewer, where a worker would take a device thread's core).`;
  }
  body.replaceChildren(stats, note);
}

// ---------------------------------------------------------------------------
// Showing a read
// ---------------------------------------------------------------------------

function show(snap, prev) {
  // The window of the figures of two reads: this read and the previous one.
  const win = prev ? { t0: prev.t, t1: snap.t } : undefined;
  const dt = win ? win.t1 - win.t0 : undefined;
  document.getElementById('mode').textContent = `${snap.mode} mode`;
  document.getElementById('updated').textContent =
    `read at ${snap.at.toLocaleTimeString()}${dt ? ` · ${dt.toFixed(2)} s since the previous read` : ''}`;
  if (usesPool(snap.mode)) {
    snap.pools.forEach((p, i) => {
      showPool(
        p,
        prev?.pools.find((q) => q.name === p.name),
        snap.slots[i],
        win,
      );
    });
  }
  showDevices(snap, prev, win);
  showCopy(snap, prev, win);
}

function showPool(p, prev, slots, win) {
  const k = (name) => `pool:${p.name}:${name}`;
  // The allocator's counters are 32-bit and wrap; the gate's do not.
  const rate = (key, a, b, wraps = true) => setRate(k(key), win, a, b, { wraps });
  set(k('nslabs'), p.nslabs, M.formatInteger(p.nslabs));
  set(k('used'), p.used, M.formatInteger(p.used));
  set(k('used_percent'), p.used / p.nslabs, M.formatPercent(p.used, p.nslabs));
  set(k('hiwater'), p.used_hiwater, M.formatInteger(p.used_hiwater));
  set(k('hiwater_percent'), p.used_hiwater / p.nslabs, M.formatPercent(p.used_hiwater, p.nslabs));
  set(k('largest_free_run'), p.largest_free_run, M.formatInteger(p.largest_free_run));
  set(k('largest_free_bytes'), p.largest_free_run * 2048, M.formatSize(p.largest_free_run * 2048));
  rate('maps_per_s', prev?.maps, p.maps);
  const f = p.map_failures;
  set(k('fail_full'), f.full, M.formatInteger(f.full), f.full > 0);
  set(k('fail_too_large'), f.too_large, M.formatInteger(f.too_large), f.too_large > 0);
  set(k('fail_invalid'), f.invalid, M.formatInteger(f.invalid), f.invalid > 0);
  set(
    k('fail_kernel_defect'),
    f.kernel_defect,
    M.formatInteger(f.kernel_defect),
    f.kernel_defect > 0,
  );
  const bp = p.backpressure;
  set(k('waits'), bp.waits, M.formatInteger(bp.waits));
  rate('waits_per_s', prev?.backpressure.waits, bp.waits, false);
  set(k('waiting'), bp.waiting, M.formatInteger(bp.waiting));
  set(k('bp_timeouts'), bp.timeouts, M.formatInteger(bp.timeouts), bp.timeouts > 0);
  p.areas.forEach((a, i) => {
    set(k(`area${i}_used`), a.used, M.formatInteger(a.used));
    set(
      k(`area${i}_cursor`),
      i * p.area_nslabs + a.index,
      M.formatInteger(i * p.area_nslabs + a.index),
    );
    set(k(`area${i}_largest_free_run`), a.largest_free_run, M.formatInteger(a.largest_free_run));
    rate(`area${i}_contended_per_s`, prev?.areas[i]?.contended, a.contended);
  });
  if (!slots) return;
  const c = slots.counts;
  set(k('slots_in_use'), c.in_use, M.formatInteger(c.in_use));
  set(k('slots_padding'), c.padding, M.formatInteger(c.padding));
  set(k('slots_coherent'), c.coherent, M.formatInteger(c.coherent));
  set(k('slots_free'), c.free, M.formatInteger(c.free));
  const entry = page.maps.get(p.name);
  entry.bits = M.decodeMap(slots.map);
  entry.cursors = slots.cursors;
  entry.usedByArea = p.areas.map((a) => a.used);
  drawMap(entry);
  entry.canvas.setAttribute(
    'aria-label',
    `slot map of ${p.name}: ${c.in_use} slots mapped, ${c.padding} padding, ${c.coherent} virtqueue, ${c.free} free; cursors at slots ${slots.cursors.join(', ')}`,
  );
  entry.canvas.dataset.v = slots.map;
  entry.canvas.dataset.cursors = slots.cursors.join(',');
}

function drawMap(entry) {
  if (!entry.bits) return;
  // The layout follows the room the map has (laid out again when it changes).
  const room = entry.canvas.parentElement?.clientWidth || 1000;
  if (!entry.layout || entry.room !== room) {
    entry.room = room;
    const width = Math.max(300, Math.min(1200, room)) - GUTTER - 2 * MARGIN - 2;
    entry.layout = M.slotMapLayout(
      entry.nslabs,
      entry.nareas,
      entry.areaNslabs,
      width,
      MAX_MAP_HEIGHT,
    );
  }
  drawSlotMap(entry.canvas, entry.layout, entry.bits, entry.cursors, entry.usedByArea);
}

function showSlot(p, entry, event) {
  if (!entry.layout || !entry.bits) return;
  const s = slotUnder(entry.canvas, entry.layout, event, M.slotAt);
  if (s < 0) {
    entry.readout.textContent = 'Point at a slot to see what it holds.';
    return;
  }
  const area = Math.floor(s / p.area_nslabs);
  const state = M.slotState(entry.bits, s);
  const cursor = entry.cursors?.[area] === s ? ' · the area’s next-fit cursor' : '';
  entry.readout.textContent = `slot ${M.formatInteger(s)} · area ${area} · segment ${Math.floor(s / 128)} · pool offset 0x${(s * 2048).toString(16)} · ${STATE_LABELS[state]}${cursor}`;
}

function showDevices(snap, prev, win) {
  for (const d of snap.devices) {
    const k = (name) => `device:${d.id}:${name}`;
    const pd = prev?.devices.find((x) => x.id === d.id);
    const finished = (dev) =>
      sum(Object.values(dev.requests).flatMap((byOutcome) => Object.values(byOutcome)));
    const ok = (dev) => sum(Object.values(dev.requests).map((byOutcome) => byOutcome.ok));
    const total = finished(d);
    set(k('requests'), total, M.formatInteger(total));
    setRate(k('requests_per_s'), win, pd && finished(pd), total);
    const bytes = { format: M.formatRate };
    setRate(k('read_bytes_per_s'), win, pd?.bytesRead, d.bytesRead, bytes);
    setRate(k('written_bytes_per_s'), win, pd?.bytesWritten, d.bytesWritten, bytes);
    showLatency(k, d.latency, pd?.latency, win);
    set(k('in_flight'), d.inFlight, M.formatInteger(d.inFlight));
    showDeviceBusy(k, d, pd, win);
    const failed = total - ok(d);
    set(k('failed'), failed, M.formatInteger(failed), failed > 0);
    const faults = sum(Object.values(d.faults));
    set(k('faults'), faults, M.formatInteger(faults), faults > 0);
    set(k('timeouts'), d.timeouts, M.formatInteger(d.timeouts), d.timeouts > 0);
    set(k('resets'), d.resets, M.formatInteger(d.resets), d.resets > 0);
  }
  // A guest that drives no device has no row to show its bytes in.
  const driving = new Set(snap.devices.map((d) => d.guest));
  for (const g of snap.copy.guests) {
    if (!driving.has(g.name)) continue;
    const pg = prev?.copy.guests.find((x) => x.name === g.name);
    const format = usesPool(snap.mode) ? M.formatRate : () => '– (direct)';
    for (const dir of ['to_device', 'from_device']) {
      setRate(`guest:${g.name}:${dir}_bytes_per_s`, win, pg?.[dir].bytes, g[dir].bytes, {
        format,
      });
    }
  }
}

/** The device's threads' idle seconds summed, or undefined while one of them tells no number. */
function idleOf(dev) {
  if (!dev || dev.queues.some((q) => q.idleSeconds === null)) return undefined;
  return sum(dev.queues.map((q) => q.idleSeconds));
}

/** How busy the device's threads were between the two reads (their own idle clocks), with its readings. */
function showDeviceBusy(k, d, pd, win) {
  const before = idleOf(pd);
  const after = idleOf(d);
  const b = win ? M.busyShare(before, after, win.t1 - win.t0, d.queues.length) : undefined;
  set(k('device_busy'), b, b === undefined ? '–' : M.formatPercent(b, 1));
  keepFrom(
    k('device_busy'),
    b === undefined ? undefined : { t0: win.t0, t1: win.t1, before, after },
  );
}

/** p50 and p99 of the requests finished between the two reads, with the buckets they came from. */
function showLatency(k, lat, before, win) {
  for (const [name, q] of [
    ['p50', 0.5],
    ['p99', 0.99],
  ]) {
    const v = before ? M.windowQuantile(lat.bounds, before.counts, lat.counts, q) : undefined;
    set(k(name), v, M.formatSeconds(v));
    keepFrom(
      k(name),
      win && before
        ? {
            t0: win.t0,
            t1: win.t1,
            bounds: lat.bounds,
            before: before.counts,
            after: lat.counts,
            q,
          }
        : undefined,
    );
  }
}

function showCopy(snap, prev, win) {
  const c = snap.copy;
  const pc = prev?.copy;
  const bytes = { format: M.formatRate };
  const both = (x) => x.totals.to_device.bytes + x.totals.from_device.bytes;
  setRate('copy:bytes_per_s', win, pc && both(pc), both(c), bytes);
  for (const dir of ['to_device', 'from_device']) {
    setRate(`copy:${dir}_bytes_per_s`, win, pc?.totals[dir].bytes, c.totals[dir].bytes, bytes);
  }
  const copies = (x) => x.inline.copies + x.worker.copies;
  setRate('copy:copies_per_s', win, pc && copies(pc), copies(c));
  const inlineNow = pc ? M.counterDelta(pc.inline.copies, c.inline.copies) : 0;
  const allNow = pc ? M.counterDelta(copies(pc), copies(c)) : 0;
  set(
    'copy:inline_percent',
    allNow > 0 ? inlineNow / allNow : undefined,
    allNow > 0 ? M.formatPercent(inlineNow, allNow) : '–',
  );
  keepFrom(
    'copy:inline_percent',
    win && pc
      ? {
          t0: win.t0,
          t1: win.t1,
          before: [pc.inline.copies, copies(pc)],
          after: [c.inline.copies, copies(c)],
        }
      : undefined,
  );
  set('copy:workers', c.workers, String(c.workers));
  set('copy:live_workers', c.liveWorkers, String(c.liveWorkers));
  set('copy:pending', c.pending, M.formatInteger(c.pending));
  set('copy:crashes', c.crashes, M.formatInteger(c.crashes), c.crashes > 0);
  const dt = win ? win.t1 - win.t0 : undefined;
  const busy = c.workerBusySeconds.map((s, i) => M.ratePerSecond(pc?.workerBusySeconds[i], s, dt));
  set(
    'copy:utilization',
    busy.length && busy.every((b) => b !== undefined) ? sum(busy) / busy.length : undefined,
    busy.length === 0
      ? 'no workers'
      : busy.map((b, i) => `#${i} ${b === undefined ? '–' : M.formatPercent(b, 1)}`).join(' · '),
  );
  keepFrom(
    'copy:utilization',
    win && pc
      ? { t0: win.t0, t1: win.t1, before: pc.workerBusySeconds, after: c.workerBusySeconds }
      : undefined,
  );
}

// ---------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------

async function refresh() {
  if (page.reading) return;
  page.reading = true;
  document.body.dataset.reading = 'true';
  const started = performance.now();
  try {
    const snap = await readAll(page.prev);
    const shape = JSON.stringify([
      snap.mode,
      snap.pools.map((p) => [p.name, p.nslabs, p.nareas]),
      snap.devices.map((d) => [d.id, d.guest, d.pool]),
    ]);
    if (shape !== page.shape) {
      page.shape = shape;
      page.prev = undefined;
      build(snap);
    }
    show(snap, page.prev);
    page.prev = snap;
    page.reads++;
    document.body.dataset.reads = String(page.reads);
    document.body.dataset.state = 'ok';
    document.getElementById('error').hidden = true;
  } catch (err) {
    document.body.dataset.state = 'error';
    const box = document.getElementById('error');
    box.hidden = false;
    box.textContent = `Cannot read the service (${err.message}); the numbers below are from ${page.prev ? page.prev.at.toLocaleTimeString() : 'no read yet'}. Retrying every second.`;
  } finally {
    page.reading = false;
    document.body.dataset.reading = 'false';
    schedule(Math.max(0, INTERVAL_MS - (performance.now() - started)));
  }
}

function schedule(delay) {
  clearTimeout(page.timer);
  page.timer = undefined;
  if (page.paused || document.visibilityState === 'hidden') return;
  page.timer = setTimeout(() => void refresh(), delay);
}

async function resetHiwater(pool, button) {
  button.disabled = true;
  try {
    await fetch(`/v1/pools/${encodeURIComponent(pool)}/hiwater/reset`, { method: 'POST' }).then(
      (res) => {
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
      },
    );
    button.title = `high-water reset at ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    const box = document.getElementById('error');
    box.hidden = false;
    box.textContent = `Resetting the high-water of ${pool} failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
  await refresh();
}

const pause = document.getElementById('pause');
pause.addEventListener('click', () => {
  page.paused = !page.paused;
  pause.setAttribute('aria-pressed', String(page.paused));
  pause.textContent = page.paused ? 'Resume updates' : 'Pause updates';
  if (page.paused) schedule(0);
  else void refresh();
});
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && !page.paused) void refresh();
  else schedule(0);
});
window.addEventListener('resize', () => {
  for (const entry of page.maps.values()) drawMap(entry);
});
void refresh();
