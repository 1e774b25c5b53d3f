/**
 * Synthetic writes fill their buffers as fio does (src/mediator/write-fill.ts):
 * fio's default scramble stamps one or two cache lines of every 512-byte block,
 * refill rewrites the buffer, and the job options map to a fill by fio's rules.
 */
import { describe, expect, it } from 'vitest';
import type { Mode } from '../src/mediator/defaults.js';
import { Mediator } from '../src/mediator/mediator.js';
import { WriteFill, WriteFiller } from '../src/mediator/write-fill.js';
import { parseJobFile } from '../src/workload/fio-job.js';

const KiB = 1024;
const MiB = 2 ** 20;

/** The 64-byte lines of each 512-byte block of `bytes` that hold a non-zero byte. */
function touchedLines(bytes: Uint8Array): number[][] {
  const out: number[][] = [];
  for (let b = 0; b < bytes.length; b += 512) {
    const lines: number[] = [];
    for (let l = 0; l < 8; l++) {
      const at = b + l * 64;
      if (bytes.subarray(at, at + 64).some((x) => x !== 0)) lines.push(l);
    }
    out.push(lines);
  }
  return out;
}

describe('WriteFiller', () => {
  it("scrambles as small_content_scramble(): the block's offset in one line, the stamp at the end of line 0", () => {
    const f = new WriteFiller();
    for (let i = 0; i < 16; i++) {
      const bytes = new Uint8Array(8 * KiB);
      const offset = (1000 + i) * 512;
      const stamp = f.nextStamp();
      f.fill(WriteFill.SCRAMBLE, bytes, 0, bytes.length, offset, stamp);
      const line = (stamp ^ offset) & 7;
      const view = new DataView(bytes.buffer);
      for (const [block, lines] of touchedLines(bytes).entries()) {
        expect(lines).toEqual(line === 0 ? [0] : [0, line]);
        const p = block * 512;
        expect(view.getUint32(p + line * 64, true)).toBe(offset + p);
        expect(view.getUint32(p + 48, true)).toBe(stamp);
      }
      // Only those bytes: 8 of the offset, 16 of the stamp, per block.
      const nonZeroMax = bytes.length / 512;
      expect(bytes.filter((x) => x !== 0).length).toBeLessThanOrEqual(nonZeroMax * 24);
    }
  });

  it('writes inside its range only, and at a byte offset into a larger buffer', () => {
    const f = new WriteFiller();
    const bytes = new Uint8Array(16 * KiB);
    f.fill(WriteFill.SCRAMBLE, bytes.subarray(4 * KiB), 1024, 2 * KiB, 0, f.nextStamp());
    const touched = [...bytes.keys()].filter((i) => bytes[i] !== 0);
    expect(touched.length).toBeGreaterThan(0);
    expect(Math.min(...touched)).toBeGreaterThanOrEqual(5 * KiB);
    expect(Math.max(...touched)).toBeLessThan(7 * KiB);
  });

  it('refills the whole range, and the next write gets other bytes', () => {
    const f = new WriteFiller();
    const a = new Uint8Array(64 * KiB);
    const b = new Uint8Array(64 * KiB);
    f.fill(WriteFill.REFILL, a, 0, a.length, 0, f.nextStamp());
    f.fill(WriteFill.REFILL, b, 0, b.length, 0, f.nextStamp());
    // Every line rewritten (random bytes: a zero line has odds of 2^-512).
    expect(touchedLines(a).every((lines) => lines.length === 8)).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    // Longer than the random block: still every byte's line rewritten.
    const big = new Uint8Array(MiB + 64 * KiB);
    f.fill(WriteFill.REFILL, big, 0, big.length, 0, f.nextStamp());
    expect(touchedLines(big.subarray(MiB)).every((lines) => lines.length === 8)).toBe(true);
  });

  it('leaves the buffer as it is with NONE', () => {
    const f = new WriteFiller();
    const bytes = new Uint8Array(4 * KiB);
    f.fill(WriteFill.NONE, bytes, 0, bytes.length, 0, f.nextStamp());
    expect(bytes.every((x) => x === 0)).toBe(true);
  });
});

describe('synthetic writes reach the device filled, in every mode', () => {
  async function written(mode: Mode, fill: WriteFill): Promise<Buffer> {
    const m = new Mediator({
      mode,
      copy: { workers: 0 },
      pools: [{ name: 'p', size: 4 * MiB, areas: 1 }],
      guests: [{ name: 'g', size: 16 * MiB }],
      devices: [
        {
          id: 'd',
          kind: 'ram-blk',
          guest: 'g',
          pool: 'p',
          capacity: 4 * MiB,
          depth: 4,
          maxRequestBytes: 64 * KiB,
          timeoutMs: 2000,
        },
      ],
    });
    try {
      const dev = m.device('d')!;
      await dev.ready();
      await dev.write(64, 32 * KiB, undefined, fill);
      return (await dev.read(64, 32 * KiB))!;
    } finally {
      await m.close();
    }
  }

  for (const mode of ['bounce', 'direct', 'shared'] as const) {
    it(`${mode}: scrambled blocks carry their device offsets; NONE writes the buffer as it was`, async () => {
      const data = await written(mode, WriteFill.SCRAMBLE);
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      for (const [block, lines] of touchedLines(data).entries()) {
        expect(lines[0]).toBe(0);
        const line = lines[1] ?? 0;
        expect(view.getUint32(block * 512 + line * 64, true)).toBe(64 * 512 + block * 512);
      }
      const plain = await written(mode, WriteFill.NONE);
      expect(plain.every((x) => x === 0)).toBe(true);
    });
  }
});

describe('fio buffer options', () => {
  const fillOf = (options: string): WriteFill =>
    parseJobFile(`[j]\nrw=write\n${options}\n`).jobs[0]!.writeFill;

  it.each([
    ['', WriteFill.SCRAMBLE],
    ['scramble_buffers=1', WriteFill.SCRAMBLE],
    ['scramble_buffers=0', WriteFill.NONE],
    ['zero_buffers', WriteFill.NONE],
    ['zero_buffers=0', WriteFill.SCRAMBLE],
    ['zero_buffers\nscramble_buffers=1', WriteFill.SCRAMBLE],
    ['refill_buffers', WriteFill.REFILL],
    ['refill_buffers\nscramble_buffers=0', WriteFill.REFILL],
    ['refill_buffers=0', WriteFill.SCRAMBLE],
  ])('%j gives fill %i (init.c init_flags(), io_u.c get_io_u())', (options, fill) => {
    expect(fillOf(options)).toBe(fill);
  });

  it('refuses a value that is not a bool', () => {
    expect(() => fillOf('scramble_buffers=maybe')).toThrow(/scramble_buffers/);
  });
});
