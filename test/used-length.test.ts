/**
 * Reads without the copy-in (`fromDeviceBounce: "used-length"`): the map copies no
 * guest byte of a DMA_FROM_DEVICE buffer into the pool, the unmap copies back only
 * what the device's used length says it wrote, and a used length past the chain's
 * writable bytes still fails the request. Linux's rule (`linux`) is the control.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isMediatorError } from '../src/errors.js';
import type { FromDeviceBounce } from '../src/mediator/defaults.js';
import { BounceDma, createBatch, type DmaBatch } from '../src/mediator/dma.js';
import { GuestMemory } from '../src/mediator/guest-memory.js';
import { Mediator, type MediatorSpec } from '../src/mediator/mediator.js';
import { DmaDirection as D } from '../src/swiotlb/constants.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { CopyEngine } from '../src/workers/copy-engine.js';
import { NO_FAULTS } from './helpers/chaos.js';

const MiB = 2 ** 20;
/** A 16-byte pattern no device or allocator writes: a guest byte we can look for. */
const MARKER = Buffer.from('GUEST-PRIVATE-1!');

function fillMarker(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = MARKER[i % MARKER.length]!;
}

describe('BounceDma batch path, DMA_FROM_DEVICE buffers', () => {
  const engine = new CopyEngine({ workers: 0 });
  afterAll(() => engine.close());

  function rig(fromDevice: FromDeviceBounce, placement: 'linux' | 'warm' = 'linux') {
    const guest = new GuestMemory({ size: 4 * MiB });
    const pool = SwiotlbPool.create({ size: 4 * MiB, areas: 1, area: 0, placement });
    const dma = new BounceDma(
      {
        guest,
        guestRegion: engine.registerRegion(guest.buffer),
        pool,
        poolRegion: engine.registerRegion(pool.share().data),
        engine,
      },
      { fromDevice },
    );
    return { guest, pool, dma };
  }

  /** A virtio-blk read's chain: header (to the device), data segments, status (preset 0xff). */
  function readBatch(guestBase: number, segments: number[]): { b: DmaBatch; n: number } {
    const b = createBatch(segments.length + 2);
    let n = 0;
    b.addrs[n] = guestBase;
    b.sizes[n] = 16;
    b.dirs[n++] = D.TO_DEVICE;
    let at = guestBase + 4096;
    for (const size of segments) {
      b.addrs[n] = at;
      b.sizes[n] = size;
      b.dirs[n++] = D.FROM_DEVICE;
      at += size;
    }
    b.addrs[n] = guestBase + 64;
    b.sizes[n] = 1;
    b.dirs[n] = D.FROM_DEVICE;
    b.presets[n++] = 0xff;
    return { b, n };
  }

  const poolBytes = (pool: SwiotlbPool, addr: number, size: number) =>
    pool.data.subarray(pool.offsetOf(addr), pool.offsetOf(addr) + size);
  const guestBytes = (guest: GuestMemory, addr: number, size: number) =>
    guest.bytes.subarray(addr - guest.base, addr - guest.base + size);

  it('used-length: the map puts no guest byte of a read buffer in the pool; the status is preset there', () => {
    const { guest, pool, dma } = rig('used-length');
    fillMarker(guest.bytes);
    guest.bytes.fill(0, 0, 16); // the request header: sent to the device, not the marker
    guest.bytes[64] = 0xff; // the driver's status preset, in guest memory too
    pool.data.fill(0x11);
    const { b, n } = readBatch(guest.base, [8192, 4096]);
    expect(dma.tryPlace(n, b)).toBe(true);
    expect(dma.copyIn(n, b)).toBeUndefined();
    // The header is bounced (the device must read it)...
    expect(Buffer.from(poolBytes(pool, b.out[0]!, 16))).toEqual(Buffer.alloc(16));
    // ...the read buffers are not: their slots hold what the pool held.
    for (let i = 1; i < n - 1; i++) {
      expect(poolBytes(pool, b.out[i]!, b.sizes[i]!).every((x) => x === 0x11)).toBe(true);
    }
    expect(poolBytes(pool, b.out[n - 1]!, 1)[0]).toBe(0xff);
    expect(Buffer.from(pool.data).indexOf(MARKER.subarray(0, 8))).toBe(-1);
    dma.release(n, b, 0, 0);
  });

  it('linux (the control): the map copies the read buffer into the pool', () => {
    const { guest, pool, dma } = rig('linux');
    fillMarker(guest.bytes);
    const { b, n } = readBatch(guest.base, [8192]);
    expect(dma.tryPlace(n, b)).toBe(true);
    dma.copyIn(n, b);
    expect(Buffer.from(poolBytes(pool, b.out[1]!, 8192))).toEqual(
      Buffer.from(guestBytes(guest, b.addrs[1]!, 8192)),
    );
    dma.release(n, b, 0, 0);
  });

  it('used-length: the unmap copies back the used length, in chain order; the rest of the guest buffer is unchanged', () => {
    const { guest, pool, dma } = rig('used-length');
    fc.assert(
      fc.property(
        fc.array(
          fc.integer({ min: 1, max: 16 }).map((k) => k * 512),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        fc.nat(),
        (segments, pick) => {
          fillMarker(guest.bytes);
          guest.bytes[64] = 0xff;
          const { b, n } = readBatch(guest.base, segments);
          expect(dma.tryPlace(n, b)).toBe(true);
          dma.copyIn(n, b);
          const dataBytes = segments.reduce((a, c) => a + c, 0);
          const writable = dataBytes + 1;
          const used = pick % (writable + 1);
          // The device writes `used` bytes from the first writable buffer, and the status.
          let left = used;
          for (let i = 1; i < n - 1; i++) {
            const w = Math.min(b.sizes[i]!, left);
            poolBytes(pool, b.out[i]!, b.sizes[i]!).fill(0xd0 + i, 0, w);
            left -= w;
          }
          poolBytes(pool, b.out[n - 1]!, 1)[0] = 0;
          dma.release(n, b, 0, used);
          let seen = 0;
          for (let i = 1; i < n - 1; i++) {
            const got = guestBytes(guest, b.addrs[i]!, b.sizes[i]!);
            for (let k = 0; k < got.length; k++) {
              const off = b.addrs[i]! - guest.base + k;
              const want = seen + k < used ? 0xd0 + i : MARKER[off % MARKER.length]!;
              if (got[k] !== want) {
                throw new Error(`segment ${i} byte ${k}: ${got[k]} != ${want} (used ${used})`);
              }
            }
            seen += b.sizes[i]!;
          }
          // The status byte comes back whatever the used length.
          expect(guest.bytes[64]).toBe(0);
        },
      ),
      { numRuns: 200, seed: 17 },
    );
    expect(pool.used()).toBe(0);
  });

  it('warm pool: used-length read buffers take the kernel search, the header and the status their freed slots', () => {
    // Nothing is copied into a used-length read buffer, so warm slots buy nothing
    // there (MapOptions.kernelSearch); the header (copied in) and the status (its
    // preset written at map) still reuse their slots.
    for (const [fromDevice, dataWarm] of [
      ['used-length', false],
      ['linux', true],
    ] as const) {
      const { guest, dma } = rig(fromDevice, 'warm');
      const base = guest.reserve(128 * 1024, 4096);
      const first = readBatch(base, [65536]);
      expect(dma.tryPlace(first.n, first.b)).toBe(true);
      const placed = Array.from(first.b.out.subarray(0, first.n));
      void dma.release(first.n, first.b, 0, 65536 + 1);
      const second = readBatch(base, [65536]);
      expect(dma.tryPlace(second.n, second.b)).toBe(true);
      const again = Array.from(second.b.out.subarray(0, second.n));
      // The request's runs are freed last first, so the header's own is on top.
      expect(again[0], `${fromDevice}: header`).toBe(placed[0]);
      expect(again[1] === placed[1], `${fromDevice}: data`).toBe(dataWarm);
      // The status is written at map under both rules (copied in, or preset): warm.
      expect(again[2], `${fromDevice}: status`).toBe(placed[2]);
      void dma.release(second.n, second.b, 0, 65536 + 1);
    }
  });

  it('warm pool: requests completed together give the next ones their runs back whole, newest first', () => {
    // Writes (header, 4 KiB data, status preset), four in flight, completed in
    // order, then four more placed. Each request's runs are freed last buffer
    // first, so the ring's top is always the run the next map wants, whole (no
    // walk, no split). The status is warm under both rules: Linux's copies it in,
    // used-length writes its preset there.
    for (const fromDevice of ['used-length', 'linux'] as const) {
      const { guest, pool, dma } = rig(fromDevice, 'warm');
      const batches = Array.from({ length: 4 }, () => {
        const base = guest.reserve(8192, 4096);
        const { b, n } = readBatch(base, [4096]);
        b.dirs[1] = D.TO_DEVICE;
        b.presets[1] = -1;
        return { b, n };
      });
      const place = () =>
        batches.map(({ b, n }) => {
          expect(dma.tryPlace(n, b)).toBe(true);
          return Array.from(b.out.subarray(0, n));
        });
      const first = place();
      for (const { b, n } of batches) void dma.release(n, b, 0, 1);
      const second = place();
      for (let k = 0; k < 4; k++) {
        expect(second[k], `${fromDevice}: request ${k}`).toEqual(first[3 - k]);
      }
      for (const { b, n } of batches) void dma.release(n, b, 0, 1);
      expect(pool.used()).toBe(0);
    }
  });

  it('used-length: a failed request (SKIP_CPU_SYNC) copies nothing back', () => {
    const { guest, pool, dma } = rig('used-length');
    fillMarker(guest.bytes);
    const { b, n } = readBatch(guest.base, [4096]);
    dma.tryPlace(n, b);
    dma.copyIn(n, b);
    poolBytes(pool, b.out[1]!, 4096).fill(0xee);
    dma.release(n, b, 1 << 5, 4097);
    expect(guestBytes(guest, b.addrs[1]!, 4096).every((x, k) => x === MARKER[k % 16])).toBe(true);
  });
});

describe('used-length reads through the pipeline', () => {
  const spec = (
    fromDeviceBounce: FromDeviceBounce,
    kind: 'null' | 'ram-blk' | 'chaos',
    chaos?: MediatorSpec['devices'][number]['chaos'],
  ): MediatorSpec => ({
    mode: 'bounce',
    copy: { workers: 0 },
    pools: [{ name: 'p', size: 4 * MiB, areas: 1 }],
    guests: [{ name: 'g', size: 16 * MiB }],
    devices: [
      {
        id: 'd',
        kind,
        guest: 'g',
        pool: 'p',
        capacity: 4 * MiB,
        depth: 8,
        maxRequestBytes: 64 * 1024,
        timeoutMs: 2000,
        fromDeviceBounce,
        ...(chaos ? { chaos } : {}),
      },
    ],
  });

  /** Reads through a null device (it writes no data, only the status) with guest memory marked. */
  async function nullReads(fromDeviceBounce: FromDeviceBounce) {
    const m = new Mediator(spec(fromDeviceBounce, 'null'));
    try {
      const dev = m.device('d')!;
      await dev.ready();
      const guest = m.guests.get('g')!.memory;
      fillMarker(guest.bytes);
      const got = await Promise.all(
        Array.from({ length: 16 }, (_, i) => dev.read(i * 128, 64 * 1024)),
      );
      const pool = Buffer.from(m.pools.get('p')!.pool.share().data);
      return { got, poolHasMarker: pool.indexOf(MARKER) >= 0, guest: Buffer.from(guest.bytes) };
    } finally {
      await m.close();
    }
  }

  it('the device side never sees a guest byte of a read buffer (linux mode shows it, as the control)', async () => {
    const tuned = await nullReads('used-length');
    expect(tuned.poolHasMarker).toBe(false);
    const linux = await nullReads('linux');
    expect(linux.poolHasMarker).toBe(true);
    // The null device wrote no data: its used length is 0 and the caller gets zeros,
    // in both modes (no byte past the used length is handed back).
    for (const r of [...tuned.got, ...linux.got]) expect(r!.every((x) => x === 0)).toBe(true);
  });

  it('guest bytes past the used length are left as they were', async () => {
    const { guest } = await nullReads('used-length');
    // Only the request headers (16 bytes each) and status bytes were written: every
    // data buffer still holds the marker.
    const reserved = guest.length;
    let marked = 0;
    for (let off = 0; off + 16 <= reserved; off += 16) {
      if (guest.subarray(off, off + 16).equals(MARKER)) marked++;
    }
    expect(marked).toBeGreaterThanOrEqual((8 * 64 * 1024) / 16);
  });

  it('ram-blk data comes back whole', async () => {
    const m = new Mediator(spec('used-length', 'ram-blk'));
    try {
      const dev = m.device('d')!;
      const data = Buffer.alloc(64 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
      await dev.write(256, data);
      const back = await dev.read(256, data.length);
      expect(back!.equals(data)).toBe(true);
      expect(await dev.getId()).toBe('d');
    } finally {
      await m.close();
    }
  });

  it('a used length past the writable bytes still fails the request, and nothing is copied back', async () => {
    const m = new Mediator(spec('used-length', 'chaos', { ...NO_FAULTS, seed: 3, badLen: 1 }));
    try {
      const dev = m.device('d')!;
      await dev.ready();
      const guest = m.guests.get('g')!.memory;
      fillMarker(guest.bytes);
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => dev.read(i * 128, 32 * 1024)),
      );
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason;
        expect(isMediatorError(err, 'MEDIATOR_DEVICE_FAULT')).toBe(true);
      }
      expect(dev.stats().faults.used_len).toBe(8);
      // The device wrote its (zero) disk data into the pool; none of it came back.
      const slots = Buffer.from(guest.bytes);
      let marked = 0;
      for (let off = 0; off + 16 <= slots.length; off += 16) {
        if (slots.subarray(off, off + 16).equals(MARKER)) marked++;
      }
      expect(marked).toBeGreaterThanOrEqual((8 * 64 * 1024) / 16);
    } finally {
      await m.close();
    }
  });
});
