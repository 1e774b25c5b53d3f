/**
 * A pool's slot map as a PNG, for the self-contained `bench --html` page (no
 * script there, so the picture is made here): every slot a cell, each state a
 * colour and a texture as on the status page (static/status/slot-map.js), each
 * area framed, its next-fit cursor boxed with a mark in the left margin.
 *
 *   margin | area 0: rows of `cols` slots (whole segments, a pixel apart)
 *   ▶ at   |   ...
 *   cursor | area 1: ...
 *
 * An indexed-colour PNG: one byte a pixel, deflated; the default pool (32768
 * slots, 2 px a slot) is a few kilobytes.
 */
import { crc32, deflateSync } from 'node:zlib';
import { IO_TLB_SEGSIZE } from '../swiotlb/constants.js';
import { SLOT_COHERENT, SLOT_IN_USE, SLOT_PADDING, slotStateAt } from '../swiotlb/slot-map.js';

const BG = 0;
const FREE = 1;
const IN_USE = 2;
const PADDING = 3;
const PADDING_STRIPE = 4;
const COHERENT = 5;
const COHERENT_DOT = 6;
const FRAME = 7;
const CURSOR = 8;
const PALETTE: readonly (readonly [number, number, number])[] = [
  [0xff, 0xff, 0xff],
  [0xee, 0xf0, 0xf3],
  [0x1d, 0x4e, 0x89],
  [0xf2, 0xa1, 0x33],
  [0x5a, 0x32, 0x00],
  [0x7b, 0x2d, 0x8e],
  [0xff, 0xff, 0xff],
  [0x33, 0x33, 0x33],
  [0xd6, 0x27, 0x28],
];

/** The colours the PNG uses, by state, for a legend beside it (CSS hex). */
export const SLOT_COLOURS = {
  free: '#eef0f3',
  in_use: '#1d4e89',
  padding: '#f2a133',
  coherent: '#7b2d8e',
  cursor: '#d62728',
} as const;

export interface SlotMapPicture {
  png: Buffer;
  width: number;
  height: number;
  cell: number;
  cols: number;
}

const LEFT = 10; // margin for the cursor marks
const PAD = 2; // between a frame and its cells
const AREA_GAP = 6;

/** Pixel colour of a slot in `state` at canvas pixel (x, y): textures on the picture's grid. */
function colourAt(state: number, x: number, y: number): number {
  switch (state) {
    case SLOT_IN_USE:
      return IN_USE;
    case SLOT_PADDING:
      return (x + y) % 4 === 0 ? PADDING_STRIPE : PADDING;
    case SLOT_COHERENT:
      return x % 2 === 0 && y % 2 === 0 ? COHERENT_DOT : COHERENT;
    default:
      return FREE;
  }
}

/**
 * Draws the map (`bits`, 2 bits a slot) no wider than `maxWidth` pixels where it
 * can: the largest cell (4 px down to 1) that keeps it under `maxWidth` x
 * `maxHeight`, `cols` a whole number of segments.
 */
export function slotMapPicture(
  bits: Uint8Array,
  geometry: { nslabs: number; nareas: number; areaNslabs: number },
  cursors: readonly number[],
  maxWidth = 640,
  maxHeight = 420,
): SlotMapPicture {
  const { nslabs, nareas, areaNslabs } = geometry;
  const seg = IO_TLB_SEGSIZE;
  let cell = 1;
  let cols = seg;
  for (const c of [4, 3, 2, 1]) {
    const room = maxWidth - LEFT - 2 * PAD - 2;
    const segs = Math.max(1, Math.min(Math.floor((room + 1) / (c * seg + 1)), areaNslabs / seg));
    cell = c;
    cols = segs * seg;
    const rows = Math.ceil(areaNslabs / cols);
    if (nareas * (rows * c + 2 * PAD + 2) + (nareas - 1) * AREA_GAP <= maxHeight) break;
  }
  const segsPerRow = cols / seg;
  const rows = Math.ceil(areaNslabs / cols);
  const innerW = cols * cell + segsPerRow - 1;
  const blockH = rows * cell + 2 * PAD + 2;
  const width = LEFT + innerW + 2 * PAD + 2;
  const height = nareas * blockH + (nareas - 1) * AREA_GAP;
  const px = new Uint8Array(width * height).fill(BG);
  const put = (x: number, y: number, c: number) => {
    if (x >= 0 && y >= 0 && x < width && y < height) px[y * width + x] = c;
  };
  const cellXY = (s: number) => {
    const area = Math.floor(s / areaNslabs);
    const within = s - area * areaNslabs;
    const col = within % cols;
    return {
      x: LEFT + 1 + PAD + col * cell + Math.floor(col / seg),
      y: area * (blockH + AREA_GAP) + 1 + PAD + Math.floor(within / cols) * cell,
    };
  };
  for (let s = 0; s < nslabs; s++) {
    const state = slotStateAt(bits, s);
    const { x, y } = cellXY(s);
    for (let dy = 0; dy < cell; dy++) {
      for (let dx = 0; dx < cell; dx++) put(x + dx, y + dy, colourAt(state, x + dx, y + dy));
    }
  }
  for (let a = 0; a < nareas; a++) {
    const top = a * (blockH + AREA_GAP);
    for (let x = LEFT; x < width; x++) {
      put(x, top, FRAME);
      put(x, top + blockH - 1, FRAME);
    }
    for (let y = top; y < top + blockH; y++) {
      put(LEFT, y, FRAME);
      put(width - 1, y, FRAME);
    }
    const cursor = cursors[a];
    if (cursor === undefined) continue;
    const { x, y } = cellXY(cursor);
    for (let d = -2; d <= cell + 1; d++) {
      put(x + d, y - 2, CURSOR);
      put(x + d, y + cell + 1, CURSOR);
      put(x - 2, y + d, CURSOR);
      put(x + cell + 1, y + d, CURSOR);
    }
    // A triangle in the margin, pointing at the cursor's row.
    const mid = y + Math.floor(cell / 2);
    for (let dx = 0; dx < 6; dx++) {
      for (let dy = -(5 - dx); dy <= 5 - dx; dy++) put(1 + dx + 1, mid + dy, CURSOR);
    }
  }
  return { png: encodePng(width, height, px), width, height, cell, cols };
}

/** An 8-bit indexed-colour PNG (RFC 2083): IHDR, PLTE, one IDAT, IEND. */
function encodePng(width: number, height: number, pixels: Uint8Array): Buffer {
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0; // filter: none
    raw.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 3; // indexed colour
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
    return Buffer.concat([head, data, crc]);
  };
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('PLTE', Buffer.from(PALETTE.flat())),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
