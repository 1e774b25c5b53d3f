/**
 * Draws a pool's slot map on a canvas: every slot a cell, each state a colour
 * AND a texture, so that the map reads without colour too:
 *
 *   free      very light grey, flat
 *   mapped    dark blue, flat (in use by a mapping)
 *   padding   orange with dark diagonal stripes
 *   coherent  purple with white dots (the virtqueues)
 *
 * Each area is a block of rows with a frame and its name on the left; its
 * next-fit cursor is a boxed cell with a triangle in the left margin, pointing
 * at its row. Pixels are written into an ImageData (32768 slots: half a million
 * pixels, a few ms), then frames and cursors are stroked over it.
 */
import { COHERENT, FREE, IN_USE, PADDING, slotState, slotXY } from './model.js';

/** Left margin for the area names and cursor triangles, and the space around. */
export const GUTTER = 80;
export const MARGIN = 4;

const RGB = {
  free: [0xee, 0xf0, 0xf3],
  inUse: [0x1d, 0x4e, 0x89],
  padding: [0xf2, 0xa1, 0x33],
  paddingStripe: [0x5a, 0x32, 0x00],
  coherent: [0x7b, 0x2d, 0x8e],
  coherentDot: [0xff, 0xff, 0xff],
};
const CURSOR = '#d62728';

/**
 * The colour of pixel (x, y) of a slot in `state`. Textures are laid on the
 * canvas' own grid, so that neighbouring padding slots form one run of stripes.
 */
export function pixelColour(state, x, y) {
  switch (state) {
    case IN_USE:
      return RGB.inUse;
    case PADDING:
      return (x + y) % 4 === 0 ? RGB.paddingStripe : RGB.padding;
    case COHERENT:
      return x % 2 === 0 && y % 2 === 0 ? RGB.coherentDot : RGB.coherent;
    default:
      return RGB.free;
  }
}

/** Fills a legend swatch (a small canvas) with the texture of `state`. */
export function drawSwatch(canvas, state) {
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < canvas.width; x++) {
      const edge = x === 0 || y === 0 || x === canvas.width - 1 || y === canvas.height - 1;
      const c = edge ? [0x55, 0x55, 0x55] : pixelColour(state, x, y);
      const i = (y * canvas.width + x) * 4;
      img.data[i] = c[0];
      img.data[i + 1] = c[1];
      img.data[i + 2] = c[2];
      img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** Canvas size for a layout (see model.js slotMapLayout). */
export function canvasSize(layout) {
  return { width: GUTTER + layout.width + 2 * MARGIN, height: layout.height + 2 * MARGIN };
}

/**
 * Draws the whole map. `bits` is the decoded map, `cursors` each area's cursor
 * slot, `usedByArea` the slots in use per area (the area's label).
 */
export function drawSlotMap(canvas, layout, bits, cursors, usedByArea) {
  const { width, height } = canvasSize(layout);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  const img = ctx.createImageData(layout.width, layout.height);
  const data = img.data;
  const { cell, nslabs } = layout;
  for (let s = 0; s < nslabs; s++) {
    const state = slotState(bits, s);
    const { x: x0, y: y0 } = slotXY(layout, s);
    for (let dy = 0; dy < cell; dy++) {
      const y = y0 + dy;
      let i = (y * layout.width + x0) * 4;
      for (let dx = 0; dx < cell; dx++, i += 4) {
        const c = state === FREE ? RGB.free : pixelColour(state, x0 + dx, y);
        data[i] = c[0];
        data[i + 1] = c[1];
        data[i + 2] = c[2];
        data[i + 3] = 255;
      }
    }
  }
  const ox = GUTTER + MARGIN;
  const oy = MARGIN;
  ctx.putImageData(img, ox, oy);

  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  for (let a = 0; a < layout.nareas; a++) {
    const top = slotXY(layout, a * layout.areaNslabs);
    const blockHeight = layout.rowsPerArea * cell;
    // The area's frame.
    ctx.strokeStyle = '#333333';
    ctx.lineWidth = 1;
    ctx.strokeRect(ox - 1.5, oy + top.y - 1.5, layout.width + 3, blockHeight + 3);
    ctx.fillStyle = '#222222';
    ctx.fillText(`area ${a}`, 2, oy + top.y);
    if (usedByArea?.[a] !== undefined) {
      ctx.fillStyle = '#555555';
      ctx.fillText(`${usedByArea[a]} used`, 2, oy + top.y + 13);
    }
    // Its next-fit cursor: a boxed cell, and a triangle in the margin at its row.
    const cursor = cursors?.[a];
    if (cursor === undefined) continue;
    const at = slotXY(layout, cursor);
    const size = Math.max(cell, 3);
    ctx.strokeStyle = CURSOR;
    ctx.lineWidth = 2;
    ctx.strokeRect(ox + at.x - 2, oy + at.y - 2, size + 4, size + 4);
    const my = oy + at.y + cell / 2;
    ctx.fillStyle = CURSOR;
    ctx.beginPath();
    ctx.moveTo(GUTTER - 10, my - 5);
    ctx.lineTo(GUTTER - 1, my);
    ctx.lineTo(GUTTER - 10, my + 5);
    ctx.closePath();
    ctx.fill();
  }
}

/** The slot under a mouse event, or -1. */
export function slotUnder(canvas, layout, event, slotAt) {
  const rect = canvas.getBoundingClientRect();
  const scaleX = canvas.width / rect.width;
  const scaleY = canvas.height / rect.height;
  const x = Math.floor((event.clientX - rect.left) * scaleX) - GUTTER - MARGIN;
  const y = Math.floor((event.clientY - rect.top) * scaleY) - MARGIN;
  return slotAt(layout, x, y);
}

export const STATE_LABELS = {
  [FREE]: 'free',
  [IN_USE]: 'mapped (bounce buffers)',
  [PADDING]: 'padding',
  [COHERENT]: 'virtqueue / coherent',
};
