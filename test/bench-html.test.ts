/**
 * `bench --html`'s pool pictures: the occupancy chart scaled to what was used,
 * and the slot map at the run's peak (captured by the runner, drawn as a PNG):
 * the PNG decodes, each slot's cell has its state's colour, and the capture
 * agrees with the run's own counters.
 */
import { crc32, inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { SlotMapReader, slotStateAt } from '../src/swiotlb/slot-map.js';
import { parseJobFile } from '../src/workload/fio-job.js';
import { occupancyAxis, renderHtml } from '../src/workload/html.js';
import { buildReport } from '../src/workload/report.js';
import { runJobFile } from '../src/workload/runner.js';
import { slotMapPicture } from '../src/workload/slot-map-png.js';

/** An indexed-colour PNG back to its pixels (palette indices), checking every CRC. */
function decodePng(png: Buffer): { width: number; height: number; px: Uint8Array } {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    expect(png.readUInt32BE(at + 8 + len)).toBe(crc32(png.subarray(at + 4, at + 8 + len)) >>> 0);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([data[8], data[9]]).toEqual([8, 3]);
    }
    if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  expect(raw.length).toBe((width + 1) * height);
  const px = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (width + 1)]).toBe(0);
    px.set(raw.subarray(y * (width + 1) + 1, (y + 1) * (width + 1)), y * width);
  }
  return { width, height, px };
}

describe('bench --html pool pictures', () => {
  it('scales the occupancy axis to the peak, with room, never past the pool', () => {
    for (const [peak, nslabs] of [
      [264, 32768],
      [100, 32768],
      [7, 1024],
      [30000, 32768],
      [0, 32768],
    ] as const) {
      const top = occupancyAxis(peak, nslabs);
      expect(top).toBeGreaterThanOrEqual(Math.min(nslabs, peak * 1.2));
      expect(top).toBeLessThanOrEqual(Math.max(2, peak * 2));
      expect(top).toBeLessThanOrEqual(nslabs);
    }
    expect(occupancyAxis(264, 32768)).toBe(400);
  });

  it('draws every slot in its state colour, areas framed, cursors boxed (PNG decoded)', () => {
    const pool = SwiotlbPool.create({ slots: 2048, areas: 2 });
    pool.map(0, 8192, DmaDirection.TO_DEVICE);
    pool.map(0x1800, 4096, DmaDirection.FROM_DEVICE, { minAlignMask: 4095, allocAlignMask: 4095 });
    const q = pool.tryAllocate(0, 6000, DmaDirection.BIDIRECTIONAL, {
      allocAlignMask: 4095,
      area: 1,
    });
    const map = new SlotMapReader(pool.share()).read([{ addr: q, bytes: 6000 }]);
    const g = { nslabs: 2048, nareas: 2, areaNslabs: 1024 };
    const pic = slotMapPicture(map.bits, g, map.cursors);
    const { width, height, px } = decodePng(pic.png);
    expect([width, height]).toEqual([pic.width, pic.height]);
    // Find each slot's cell as the picture lays it out: the first cell's pixel is
    // the top-left in-use pixel; cells follow at `cell` px, a pixel between segments.
    const first = px.indexOf(2);
    const x0 = first % width;
    const y0 = Math.floor(first / width);
    const colour = [1, 2, 3, 5]; // palette: free, in use, padding, coherent
    const areaStride = (pic.height + 6) / 2;
    const cellAt = (s: number) => {
      const area = Math.floor(s / 1024);
      const within = s % 1024;
      const col = within % pic.cols;
      return {
        x: x0 + col * pic.cell + Math.floor(col / 128),
        y: y0 + area * areaStride + Math.floor(within / pic.cols) * pic.cell,
      };
    };
    // The cursors' boxes are drawn over their neighbours' edges: those cells are not checked.
    const boxes = map.cursors.map(cellAt);
    const nearCursor = (x: number, y: number) =>
      boxes.some((b) => Math.abs(b.x - x) <= pic.cell + 2 && Math.abs(b.y - y) <= pic.cell + 2);
    let checked = 0;
    const seen = new Set<number>();
    const wrong: number[] = [];
    for (let s = 0; s < 2048; s++) {
      const { x, y } = cellAt(s);
      if (nearCursor(x, y)) continue;
      const state = slotStateAt(map.bits, s);
      // Textured states have their base colour at least at one pixel of the cell.
      const cellPx: number[] = [];
      for (let dy = 0; dy < pic.cell; dy++)
        for (let dx = 0; dx < pic.cell; dx++) cellPx.push(px[(y + dy) * width + x + dx]!);
      const ok =
        state === 0 || state === 1
          ? cellPx.every((c) => c === colour[state])
          : cellPx.includes(colour[state]!);
      if (!ok) wrong.push(s);
      seen.add(state);
      checked++;
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(2000);
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    // The states of the case: in use, padding, coherent and free all present.
    expect(map.counts.in_use * map.counts.padding * map.counts.coherent).toBeGreaterThan(0);
    // Frames (7) and cursor marks (8) are drawn.
    expect(px.includes(7)).toBe(true);
    expect(px.filter((c) => c === 8).length).toBeGreaterThan(10);
  });

  it('the runner keeps the map at the peak when asked; the page shows it', async () => {
    const jf = parseJobFile(`
[global]
mode=bounce
size=8m
ioengine=libaio
direct=1
iodepth=8
number_ios=300
pool_size=4m

[w]
rw=randwrite
bssplit=4k/50:64k/50
`);
    const [plain] = await runJobFile(jf);
    expect(plain!.mediator.slot_map_at_peak).toBeUndefined();
    const [r] = await runJobFile(jf, { slotMapAtPeak: true });
    const m = r!.mediator.slot_map_at_peak!;
    const pool = r!.mediator.pool;
    expect(m.nslabs).toBe(pool.nslabs);
    const c = m.counts;
    expect(c.free + c.in_use + c.padding + c.coherent).toBe(pool.nslabs);
    expect(c.in_use + c.padding + c.coherent).toBe(m.used_slots);
    expect(c.coherent).toBe(pool.queue_slots);
    // The runner's view of the peak is the pool's high-water counter or a little below.
    expect(m.used_slots).toBeLessThanOrEqual(pool.used_hiwater_slots);
    expect(m.used_slots).toBeGreaterThan(pool.queue_slots);
    const html = renderHtml(buildReport(jf, [r!], 'test'), 'test');
    expect(html).toMatch(/Slot map at the peak \(\d+ of \d+ slots in use/);
    const src = /<img src="data:image\/png;base64,([^"]+)"/.exec(html)![1]!;
    expect(decodePng(Buffer.from(src, 'base64')).width).toBeGreaterThan(200);
    expect(html).not.toMatch(/https?:\/\//);
  });
});
