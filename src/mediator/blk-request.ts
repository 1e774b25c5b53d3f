import { MediatorError } from '../errors.js';
import { DmaDirection } from '../swiotlb/constants.js';
import {
  BLK_HEADER_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from '../virtio/blk-format.js';
import type { BlkOp, Outcome } from './blk-options.js';
import type { RequestSlot } from './blk-queue.js';

/**
 * A virtio-blk request as the guest driver lays it out (VIRTIO 1.2, 5.2.6):
 *
 *   ctlAddr:       struct virtio_blk_req header, 16 bytes, device-readable
 *                  le32 type | le32 reserved | le64 sector
 *   dataAddr ...:  the data, in segments of at most the max mapping size
 *                  (device-readable for OUT, device-writable for IN and GET_ID)
 *   ctlAddr + 16:  u8 status, device-writable
 *
 * one descriptor per piece, in that order.
 */

export function opOf(type: number): BlkOp {
  return type === VIRTIO_BLK_T_IN
    ? 'read'
    : type === VIRTIO_BLK_T_OUT
      ? 'write'
      : type === VIRTIO_BLK_T_FLUSH
        ? 'flush'
        : 'get_id';
}

/** The byte the driver presets the status to: no virtio-blk status, so a device that never writes it is caught. */
export const STATUS_PRESET = 0xff;

/**
 * Writes the request header where the slot's control block lies (`view` is the
 * memory it is in, whose first byte is at address `base`: guest memory, or the
 * pool in shared mode), presets the status byte to {@link STATUS_PRESET}, and
 * lists the chain's buffers in the slot's batch: addresses, sizes, DMA
 * directions, presets, and which ones the device writes. Data segments start at
 * `dataAddr`; -1 leaves them to be allocated (shared mode: tryPlace allocates
 * each in the pool).
 */
export function layOutRequest(
  view: DataView,
  base: number,
  req: RequestSlot,
  type: number,
  sector: number,
  length: number,
  segmentBytes: number,
  dataAddr: number,
): void {
  const ctl = req.ctlAddr - base;
  view.setUint32(ctl, type, true);
  view.setUint32(ctl + 4, 0, true);
  view.setUint32(ctl + 8, sector % 2 ** 32, true);
  view.setUint32(ctl + 12, Math.floor(sector / 2 ** 32), true);
  view.setUint8(ctl + BLK_HEADER_BYTES, STATUS_PRESET);

  const b = req.batch;
  const dataDir = type === VIRTIO_BLK_T_OUT ? DmaDirection.TO_DEVICE : DmaDirection.FROM_DEVICE;
  let n = 0;
  b.addrs[n] = req.ctlAddr;
  b.sizes[n] = BLK_HEADER_BYTES;
  b.dirs[n] = DmaDirection.TO_DEVICE;
  b.presets[n] = -1;
  req.writes[n++] = 0;
  for (let off = 0; off < length; off += segmentBytes) {
    b.addrs[n] = dataAddr < 0 ? -1 : dataAddr + off;
    b.sizes[n] = Math.min(segmentBytes, length - off);
    b.dirs[n] = dataDir;
    b.presets[n] = -1;
    req.writes[n++] = dataDir === DmaDirection.FROM_DEVICE ? 1 : 0;
  }
  b.addrs[n] = req.ctlAddr + BLK_HEADER_BYTES;
  b.sizes[n] = 1;
  b.dirs[n] = DmaDirection.FROM_DEVICE;
  b.presets[n] = STATUS_PRESET;
  req.writes[n++] = 1;
  req.n = n;
}

/**
 * Bytes of a request's data that the device wrote, by its used length: the data
 * buffers are the chain's first device-writable buffers (VIRTIO 1.2 §2.7.8.2:
 * len counts from the first device-writable buffer), so the first
 * min(length, usedLen) bytes. The driver hands back no byte past it, as the
 * spec's driver requirement asks ("MUST NOT make assumptions about data in
 * device-writable buffers beyond the first len bytes, and SHOULD ignore this
 * data"). Linux 6.12's virtio-blk ignores len (virtblk_done() and virtblk_poll()
 * in drivers/block/virtio_blk.c read it into a local they never use) and hands
 * back the whole buffer; QEMU reports every device-writable byte as used
 * (hw/block/virtio-blk.c, virtio_blk_req_complete()), so both agree on QEMU.
 */
export function dataWritten(length: number, usedLen: number): number {
  return Math.max(0, Math.min(length, usedLen));
}

/**
 * The error a completed request's status byte stands for, or undefined for
 * VIRTIO_BLK_S_OK. A byte that is no virtio-blk status is a device fault (the
 * driver presets the byte to {@link STATUS_PRESET}, so a device that never wrote
 * it is caught too). Linux 6.12's virtblk_result() (drivers/block/virtio_blk.c)
 * maps VIRTIO_BLK_S_UNSUPP to BLK_STS_NOTSUPP and every other byte but OK (the
 * zoned statuses 5 and 6 aside) to BLK_STS_IOERR, `default:` included, and
 * presets nothing.
 */
export function statusError(
  status: number,
  deviceId: string,
  type: number,
  sector: number,
  length: number,
): MediatorError | undefined {
  if (status === VIRTIO_BLK_S_OK) return undefined;
  if (status === VIRTIO_BLK_S_IOERR) {
    return new MediatorError(
      'MEDIATOR_IO_ERROR',
      `device ${deviceId}: I/O error at sector ${sector} (+${length} bytes)`,
      { sector, length },
    );
  }
  if (status === VIRTIO_BLK_S_UNSUPP) {
    return new MediatorError(
      'MEDIATOR_UNSUPPORTED',
      `device ${deviceId}: request type ${type} not supported`,
    );
  }
  return new MediatorError(
    'MEDIATOR_DEVICE_FAULT',
    `device ${deviceId}: status byte ${status} is not a virtio-blk status`,
    { kind: 'bad_status' },
  );
}

/** How a request ended, for the per-outcome counters, from the error it failed with. */
export function outcomeOf(err: unknown): Outcome {
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'MEDIATOR_IO_ERROR':
      return 'ioerr';
    case 'MEDIATOR_UNSUPPORTED':
      return 'unsupp';
    case 'MEDIATOR_DEVICE_FAULT':
      return 'fault';
    case 'MEDIATOR_DEVICE_TIMEOUT':
      return 'timeout';
    case 'MEDIATOR_DEVICE_RESET':
      return 'reset';
    case 'SWIOTLB_POOL_FULL':
    case 'MEDIATOR_BACKPRESSURE_TIMEOUT':
      return 'full';
    default:
      return 'error';
  }
}
