import {
  BLK_HEADER_BYTES,
  SECTOR_SIZE,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../virtio/blk-format.js';
import type { BlockStore } from './block-store.js';

/** One chain as the device walked it: offsets in device-visible memory. */
export interface Chain {
  count: number;
  offsets: Float64Array;
  lens: Uint32Array;
  writable: Uint8Array;
}

/** What serves requests on a device thread. */
export interface RequestHandler {
  /**
   * Handles one request; returns the used length (bytes written into the chain,
   * counted from its first device-writable buffer).
   */
  handle(mem: Buffer, chain: Chain): number;
}

/**
 * The used length of a request whose device wrote `dataWritten` bytes into its
 * writable buffers before the status (the chain's last byte), then the status.
 * VIRTIO 1.2 §2.7.8.2: "The device MUST write at least len bytes to descriptor,
 * beginning at the first device-writable buffer", and len may be an
 * underestimate. The status counts only when every writable byte before it was
 * written; otherwise the length stops at the data written (a read the device did
 * not fill, an error: 0), so it never claims bytes it left alone.
 */
function usedLength(chain: Chain, statusAt: number, dataWritten: number): number {
  let before = 0;
  for (let i = 0; i < statusAt; i++) if (chain.writable[i]) before += chain.lens[i]!;
  return dataWritten === before ? dataWritten + 1 : dataWritten;
}

/** A virtio-blk device on a store. `serial` answers GET_ID (up to 20 bytes, NUL padded). */
export class BlkBackend implements RequestHandler {
  private readonly id: Buffer;

  constructor(
    private readonly store: BlockStore | undefined,
    serial: string,
  ) {
    this.id = Buffer.alloc(VIRTIO_BLK_ID_BYTES);
    this.id.write(serial.slice(0, VIRTIO_BLK_ID_BYTES), 'latin1');
  }

  /** Completes a request whose handling threw with IOERR; returns the used length. */
  fail(mem: Buffer, chain: Chain): number {
    const last = chain.count - 1;
    if (last < 0 || !chain.writable[last] || chain.lens[last]! < 1) return 0;
    mem[chain.offsets[last]!] = VIRTIO_BLK_S_IOERR;
    return usedLength(chain, last, 0);
  }

  handle(mem: Buffer, chain: Chain): number {
    const n = chain.count;
    if (n < 2) return 0;
    const statusAt = n - 1;
    if (!chain.writable[statusAt] || chain.lens[statusAt]! < 1) return 0;
    const statusOff = chain.offsets[statusAt]!;
    if (chain.writable[0] || chain.lens[0]! < BLK_HEADER_BYTES) {
      mem[statusOff] = VIRTIO_BLK_S_IOERR;
      return usedLength(chain, statusAt, 0);
    }
    const h = chain.offsets[0]!;
    const type = mem.readUInt32LE(h);
    const sector = mem.readUInt32LE(h + 8) + mem.readUInt32LE(h + 12) * 2 ** 32;
    let status = VIRTIO_BLK_S_OK;
    let written = 0;
    switch (type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT: {
        const isRead = type === VIRTIO_BLK_T_IN;
        let total = 0;
        for (let i = 1; i < statusAt; i++) {
          if ((chain.writable[i] === 1) !== isRead) status = VIRTIO_BLK_S_IOERR;
          total += chain.lens[i]!;
        }
        const store = this.store;
        const start = sector * SECTOR_SIZE;
        if (status !== VIRTIO_BLK_S_OK || total % SECTOR_SIZE !== 0) {
          status = VIRTIO_BLK_S_IOERR;
        } else if (store !== undefined) {
          if (!Number.isSafeInteger(start) || start + total > store.capacity) {
            status = VIRTIO_BLK_S_IOERR;
          } else {
            let pos = start;
            for (let i = 1; i < statusAt; i++) {
              const len = chain.lens[i]!;
              if (isRead) store.read(mem, chain.offsets[i]!, pos, len);
              else store.write(mem, chain.offsets[i]!, pos, len);
              pos += len;
            }
            if (isRead) written = total;
          }
        }
        break;
      }
      case VIRTIO_BLK_T_FLUSH:
        this.store?.flush();
        break;
      case VIRTIO_BLK_T_GET_ID: {
        if (statusAt < 2 || !chain.writable[1]) {
          status = VIRTIO_BLK_S_IOERR;
          break;
        }
        const len = Math.min(VIRTIO_BLK_ID_BYTES, chain.lens[1]!);
        this.id.copy(mem, chain.offsets[1]!, 0, len);
        written = len;
        break;
      }
      default:
        status = VIRTIO_BLK_S_UNSUPP;
    }
    mem[statusOff] = status;
    return usedLength(chain, statusAt, written);
  }
}
