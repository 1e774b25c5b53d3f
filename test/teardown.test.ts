/**
 * What a failure part-way through setting up or tearing down leaves behind:
 * nothing. A device whose later queue does not fit its pool gives back the
 * queues it placed and stops their threads; a backing file opened for it is
 * closed; a mediator whose device fails to close still closes the rest; a map
 * whose copies fail settles only once no copy still writes its slots; a failed
 * fdatasync() of a backing file fails every later sync of it.
 */
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlkBackend, type Chain } from '../src/devices/blk-backend.js';
import { FileStore, RamStore } from '../src/devices/block-store.js';
import { BlkDriver } from '../src/mediator/blk-driver.js';
import { BounceDma, createBatch } from '../src/mediator/dma.js';
import { GuestMemory } from '../src/mediator/guest-memory.js';
import { Mediator } from '../src/mediator/mediator.js';
import { DmaDirection } from '../src/swiotlb/constants.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { VIRTIO_BLK_S_OK, VIRTIO_BLK_T_OUT } from '../src/virtio/blk-format.js';
import type { CopyEngine } from '../src/workers/copy-engine.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = mkdtempSync(join(tmpdir(), 'teardown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const openFds = () => readdirSync('/proc/self/fd').length;

async function until(what: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('a device that fails part-way through its setup', () => {
  it('gives back the queues it placed, stops their threads and closes its backing file', async () => {
    const m = new Mediator({
      mode: 'bounce',
      copy: { workers: 0 },
      pools: [{ name: 'p', size: 256 * KiB, areas: 1 }],
      guests: [{ name: 'g', size: 16 * MiB }],
      devices: [],
    });
    try {
      const pool = m.pools.get('p')!;
      const guest = m.guests.get('g')!;
      const before = { used: pool.pool.stats().used, fds: openFds() };
      // Queue 0 (8192 descriptors: about 200 KiB of rings) fits the pool; queue 1 does not.
      expect(
        () =>
          new BlkDriver(
            {
              mode: 'bounce',
              guest: guest.memory,
              guestRegion: guest.region,
              pool: pool.pool,
              poolRegion: pool.region,
              gate: pool.gate,
              engine: m.engine,
            },
            {
              id: 'half',
              kind: 'file-blk',
              file: join(dir, 'half.img'),
              capacity: MiB,
              queues: 2,
              queueSize: 8192,
              depth: 4,
              maxRequestBytes: 64 * KiB,
            },
          ),
      ).toThrow(/no room for a queue of 8192 descriptors/);
      // Its file is closed, its thread stopped (a thread has descriptors of its own:
      // its event loop's) and its queue memory given back.
      expect(await until(() => openFds() === before.fds)).toBe(true);
      expect(await until(() => pool.pool.stats().used === before.used)).toBe(true);
    } finally {
      await m.close();
    }
  });
});

describe('Mediator.close()', () => {
  it('closes every device and the copy engine though one device fails to close, then throws its error', async () => {
    const m = new Mediator({
      mode: 'bounce',
      copy: { workers: 1 },
      pools: [{ name: 'p', size: 4 * MiB, areas: 1 }],
      guests: [{ name: 'g', size: 16 * MiB }],
      devices: [
        {
          id: 'a',
          kind: 'ram-blk',
          guest: 'g',
          pool: 'p',
          capacity: MiB,
          maxRequestBytes: 64 * KiB,
        },
        {
          id: 'b',
          kind: 'ram-blk',
          guest: 'g',
          pool: 'p',
          capacity: MiB,
          maxRequestBytes: 64 * KiB,
        },
      ],
    });
    await Promise.all([m.device('a')!.ready(), m.device('b')!.ready()]);
    const a = m.device('a')!;
    const realClose = a.close.bind(a);
    a.close = async () => {
      await realClose();
      throw new Error('the backing store would not close');
    };
    let bClosed = false;
    const b = m.device('b')!;
    const bClose = b.close.bind(b);
    b.close = async () => {
      await bClose();
      bClosed = true;
    };
    expect(m.engine.liveWorkers).toBe(1);
    await expect(m.close()).rejects.toThrow('the backing store would not close');
    expect(bClosed).toBe(true);
    expect(m.engine.liveWorkers).toBe(0);
  });
});

describe("a map's copies that fail", () => {
  it('settle only once every copy has: the slots are not freed under a copy still running', async () => {
    // Two buffers copied in by two "workers": the first fails at once, the second
    // is still writing its slots until `finish` is called.
    let finish!: () => void;
    const running = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const calls: Promise<void>[] = [Promise.reject(new Error('copy worker crashed')), running];
    calls[0]!.catch(() => undefined);
    let k = 0;
    const engine = { copy: () => calls[k++] } as unknown as CopyEngine;
    const guest = new GuestMemory({ size: MiB });
    const pool = SwiotlbPool.create({ slots: 128, areas: 1 });
    const dma = new BounceDma({ guest, guestRegion: 0, pool, poolRegion: 1, engine });
    const b = createBatch(2);
    for (let i = 0; i < 2; i++) {
      b.addrs[i] = guest.base + i * 64 * KiB;
      b.sizes[i] = 64 * KiB;
      b.dirs[i] = DmaDirection.TO_DEVICE;
      b.presets[i] = -1;
    }
    expect(dma.tryPlace(2, b)).toBe(true);
    let settled: string | undefined;
    void dma.copyIn(2, b)!.then(
      () => {
        settled = 'ok';
      },
      (err: Error) => {
        settled = err.message;
      },
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBeUndefined();
    finish();
    await new Promise((r) => setTimeout(r, 0));
    expect(settled).toBe('copy worker crashed');
  });
});

describe('a backing file whose fdatasync() failed', () => {
  it('fails every later sync, on every queue thread, as QEMU file-posix fails bdrv_flush() for good', () => {
    // Two queue threads' stores on one file share `syncFailed`. The first one's
    // descriptor is closed, so its fdatasync() fails (EBADF stands in for EIO);
    // the second one's is fine, and its FLUSH and durable write must fail anyway:
    // Linux reports a writeback error once per open file and then syncs clean.
    const path = join(dir, 'sticky.img');
    const fd = openSync(path, 'w+');
    const dead = openSync(path, 'r+');
    closeSync(dead);
    const shared = new SharedArrayBuffer(4);
    const broken = new FileStore(dead, MiB, false, shared);
    const other = new FileStore(fd, MiB, true, shared);
    const block = Buffer.alloc(4096, 7);
    try {
      other.flush(); // nothing failed yet: a sync succeeds
      expect(() => broken.flush()).toThrow(/EBADF/);
      expect(() => other.flush()).toThrow(
        /an earlier fdatasync\(\) of the backing file failed \(EBADF\)/,
      );
      // A durable write: its data is written, its sync (at the request's end) fails.
      other.write(block, 0, 0, block.length);
      expect(() => other.writeDone()).toThrow(/an earlier fdatasync/);
    } finally {
      closeSync(fd);
    }
  });
});

describe('a write request of several data pieces', () => {
  it('is synced once, after its last piece, not once per piece', () => {
    // header | 3 data descriptors of 4 KiB | status: a durable store syncs once.
    const lens = [16, 4096, 4096, 4096, 1];
    const chain: Chain = {
      count: lens.length,
      offsets: new Float64Array(lens.length),
      lens: new Uint32Array(lens),
      writable: new Uint8Array([0, 0, 0, 0, 1]),
    };
    let at = 0;
    lens.forEach((len, i) => {
      chain.offsets[i] = at;
      at += len;
    });
    const mem = Buffer.alloc(at);
    mem.writeUInt32LE(VIRTIO_BLK_T_OUT, 0);
    const calls: string[] = [];
    const ram = new RamStore(new SharedArrayBuffer(MiB));
    const store = Object.assign(Object.create(ram) as RamStore, {
      write: (...args: Parameters<RamStore['write']>) => {
        calls.push('write');
        ram.write(...args);
      },
      writeDone: () => calls.push('sync'),
    });
    new BlkBackend(store, 'serial').handle(mem, chain);
    expect(mem[at - 1]).toBe(VIRTIO_BLK_S_OK);
    expect(calls).toEqual(['write', 'write', 'write', 'sync']);
  });
});
