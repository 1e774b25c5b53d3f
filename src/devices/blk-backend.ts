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
 * The used length of a request whose device wrote `dataWritten` bytes from the
 * start of the chain's device-writable bytes, of the `dataRoom` bytes before the
 * status (the last writable byte), then the status. VIRTIO 1.2 §2.7.8.2
 * (split-ring.tex, "The Virtqueue Used Ring", device requirements): "The device
 * MUST write at least len bytes to descriptor, beginning at the first
 * device-writable buffer", and len may be an underestimate. The status counts only
 * when every writable byte before it was written; otherwise the length stops at
 * the data written (a read the device did not fill, an error: 0), so it never
 * claims bytes it left alone. QEMU reports all the writable bytes instead
 * (virtio_blk_req_complete(): virtqueue_push(..., req->in_len), in_len =
 * iov_size(in_iov, in_num)), which the spec's legacy note says devices did
 * "even when only the status byte was actually written".
 */
function usedLength(dataRoom: number, dataWritten: number): number {
  return dataWritten === dataRoom ? dataWritten + 1 : dataWritten;
}

/**
 * Moves `len` bytes between the disk at `diskPos` and one direction of the chain,
 * seen as a byte stream from its byte `from`: the device-writable bytes for a read
 * (`isRead`, the disk is read into them), else the device-readable ones.
 */
function transfer(
  mem: Buffer,
  chain: Chain,
  store: BlockStore,
  isRead: boolean,
  from: number,
  len: number,
  diskPos: number,
): void {
  const want = isRead ? 1 : 0;
  let skip = from;
  let left = len;
  let pos = diskPos;
  for (let i = 0; i < chain.count && left > 0; i++) {
    if (chain.writable[i] !== want) continue;
    const dlen = chain.lens[i]!;
    if (skip >= dlen) {
      skip -= dlen;
      continue;
    }
    const n = Math.min(dlen - skip, left);
    const off = chain.offsets[i]! + skip;
    if (isRead) store.read(mem, off, pos, n);
    else store.write(mem, off, pos, n);
    pos += n;
    left -= n;
    skip = 0;
  }
}

/**
 * Copies `len` bytes between `buf` and the start of one direction of the chain:
 * into the device-writable bytes (`toChain`), or out of the device-readable ones.
 */
function copyStream(mem: Buffer, chain: Chain, buf: Buffer, len: number, toChain: boolean): void {
  const want = toChain ? 1 : 0;
  let done = 0;
  for (let i = 0; i < chain.count && done < len; i++) {
    if (chain.writable[i] !== want) continue;
    const n = Math.min(chain.lens[i]!, len - done);
    const off = chain.offsets[i]!;
    if (toChain) buf.copy(mem, off, done, done + n);
    else mem.copy(buf, done, off, off + n);
    done += n;
  }
}

/**
 * A virtio-blk device on a store. `serial` answers GET_ID (up to 20 bytes, NUL padded).
 *
 * A request is read from its chain as two byte streams, whatever the descriptors
 * (VIRTIO 1.2 §2.7.4.1, split-ring.tex "Message Framing": "The device MUST NOT
 * make assumptions about the particular arrangement of descriptors"), as QEMU's
 * virtio_blk_handle_request() (hw/block/virtio-blk.c) reads it:
 *
 *   device-readable bytes:  header (16: le32 type, le32 reserved, le64 sector) | a write's data
 *   device-writable bytes:  a read's data (or GET_ID's) | status (the very last byte)
 *
 * A read's data is the writable bytes before the status, a write's the readable
 * bytes after the header; bytes of the other direction are ignored, as QEMU ignores
 * them. Where QEMU stops the whole device (virtio_error(): a header shorter than
 * 16 bytes, a readable buffer after a writable one, no writable byte), this device
 * fails the request alone: IOERR, or, with no byte to hold a status, a used length
 * of 0 and no status.
 */
export class BlkBackend implements RequestHandler {
  private readonly id: Buffer;
  /** The header when it spans descriptors (gathered here). */
  private readonly header = Buffer.alloc(BLK_HEADER_BYTES);
  // What frame() learnt of the chain last given: set per request, read by serve().
  /** Device-readable bytes of the chain. */
  private readable = 0;
  /** Device-writable bytes of the chain, the status byte included. */
  private writableBytes = 0;
  /** Offset in memory of the status byte (the chain's last device-writable byte). */
  private statusOff = -1;
  /** No device-readable buffer follows a device-writable one. */
  private ordered = true;
  /** Bytes the request wrote from the start of the writable bytes, before the status. */
  private written = 0;
  /** The disk's size in bytes: what a read or write must stay within. */
  private readonly capacity: number;

  /**
   * `capacity` is the disk's size in bytes, as configured (workerData.capacity);
   * a store bounds it too. The null device (no store) has only `capacity`, as
   * QEMU's null-co driver has its `size` (block/null.c, null_file_open():
   * `qemu_opt_get_size(opts, BLOCK_OPT_SIZE, 1 << 30)`, reported by
   * null_getlength()), which virtio_blk_sect_range_ok() checks sectors against
   * like any disk's.
   */
  constructor(
    private readonly store: BlockStore | undefined,
    serial: string,
    capacity = store?.capacity ?? 0,
  ) {
    this.id = Buffer.alloc(VIRTIO_BLK_ID_BYTES);
    this.id.write(serial.slice(0, VIRTIO_BLK_ID_BYTES), 'latin1');
    this.capacity = store === undefined ? capacity : Math.min(capacity, store.capacity);
  }

  /** Completes a request whose handling threw with IOERR; returns the used length. */
  fail(mem: Buffer, chain: Chain): number {
    if (!this.frame(chain)) return 0;
    mem[this.statusOff] = VIRTIO_BLK_S_IOERR;
    return usedLength(this.writableBytes - 1, 0);
  }

  handle(mem: Buffer, chain: Chain): number {
    if (!this.frame(chain)) return 0;
    this.written = 0;
    const ok = this.ordered && this.readable >= BLK_HEADER_BYTES;
    mem[this.statusOff] = ok ? this.serve(mem, chain) : VIRTIO_BLK_S_IOERR;
    return usedLength(this.writableBytes - 1, this.written);
  }

  /**
   * Measures the chain's two directions and finds its status byte; false when no
   * device-writable byte can hold one.
   */
  private frame(chain: Chain): boolean {
    let readable = 0;
    let writable = 0;
    let status = -1;
    let ordered = true;
    for (let i = 0; i < chain.count; i++) {
      const len = chain.lens[i]!;
      if (chain.writable[i]) {
        writable += len;
        if (len > 0) status = chain.offsets[i]! + len - 1;
      } else {
        if (writable > 0) ordered = false;
        readable += len;
      }
    }
    this.readable = readable;
    this.writableBytes = writable;
    this.statusOff = status;
    this.ordered = ordered;
    return status >= 0;
  }

  /** Serves a well-framed request; returns its status. */
  private serve(mem: Buffer, chain: Chain): number {
    let h = mem;
    let at = chain.offsets[0]!;
    if (chain.lens[0]! < BLK_HEADER_BYTES) {
      copyStream(mem, chain, this.header, BLK_HEADER_BYTES, false);
      h = this.header;
      at = 0;
    }
    const type = h.readUInt32LE(at);
    const sector = h.readUInt32LE(at + 8) + h.readUInt32LE(at + 12) * 2 ** 32;
    switch (type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT:
        return this.readWrite(mem, chain, type === VIRTIO_BLK_T_IN, sector);
      case VIRTIO_BLK_T_FLUSH:
        this.store?.flush();
        return VIRTIO_BLK_S_OK;
      case VIRTIO_BLK_T_GET_ID: {
        const len = Math.min(VIRTIO_BLK_ID_BYTES, this.writableBytes - 1);
        if (len < 1) return VIRTIO_BLK_S_IOERR;
        copyStream(mem, chain, this.id, len, true);
        this.written = len;
        return VIRTIO_BLK_S_OK;
      }
      default:
        return VIRTIO_BLK_S_UNSUPP;
    }
  }

  /**
   * A read or a write of whole sectors (512 bytes, whatever the block size) at
   * `sector`: IOERR when the data is not whole sectors or runs past the disk, as
   * QEMU's virtio_blk_sect_range_ok() (hw/block/virtio-blk.c) fails it: `if
   * (sector > total_sectors || nb_sectors > total_sectors - sector) return
   * false;` (so a request of no data at the very end passes, one past it fails).
   * The null device (no store) checks the same range, then moves nothing and
   * succeeds: one comparison, no allocation.
   */
  private readWrite(mem: Buffer, chain: Chain, isRead: boolean, sector: number): number {
    const total = isRead ? this.writableBytes - 1 : this.readable - BLK_HEADER_BYTES;
    if (total % SECTOR_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
    // Exact below 2^53; a sector whose byte offset is 2^53 or more (rounded or not)
    // is past any capacity (a safe integer) all the same.
    const start = sector * SECTOR_SIZE;
    if (start + total > this.capacity) return VIRTIO_BLK_S_IOERR;
    const store = this.store;
    if (store === undefined) return VIRTIO_BLK_S_OK;
    transfer(mem, chain, store, isRead, isRead ? 0 : BLK_HEADER_BYTES, total, start);
    if (isRead) this.written = total;
    else if (total > 0) store.writeDone(); // one sync per request, not per piece
    return VIRTIO_BLK_S_OK;
  }
}
