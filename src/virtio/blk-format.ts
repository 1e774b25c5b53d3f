/**
 * The virtio-blk request format (VIRTIO 1.2, section 5.2.6), shared by the guest
 * driver (src/mediator/blk-*.ts) and the device backend (src/devices/blk-backend.ts).
 *
 *   struct virtio_blk_req {
 *     le32 type;        // IN 0, OUT 1, FLUSH 4, GET_ID 8
 *     le32 reserved;
 *     le64 sector;      // 512-byte units
 *     u8 data[];        // device-writable for IN and GET_ID, readable for OUT
 *     u8 status;        // OK 0, IOERR 1, UNSUPP 2 (device-writable)
 *   };
 *
 * Laid out by the driver as: one readable header descriptor, data descriptors,
 * one writable status descriptor.
 */
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;
export const BLK_HEADER_BYTES = 16;
