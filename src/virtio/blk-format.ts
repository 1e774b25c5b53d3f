/**
 * The virtio-blk request format (VIRTIO 1.2, section 5.2.6), shared by the guest
 * driver (src/mediator/blk-*.ts) and the device backend (src/devices/blk-backend.ts).
 *
 *   struct virtio_blk_req {
 *     le32 type;        // IN 0, OUT 1, FLUSH 4, GET_ID 8 (the types served here)
 *     le32 reserved;    // Linux: `ioprio`, see below
 *     le64 sector;      // 512-byte units, whatever blk_size says
 *     u8 data[];        // device-writable for IN and GET_ID, readable for OUT
 *     u8 status;        // OK 0, IOERR 1, UNSUPP 2 (device-writable)
 *   };
 *
 * Sources: the spec's device-types/blk/description.tex ("Device Operation"), and
 * Linux 6.12.117 include/uapi/linux/virtio_blk.h, whose values these are.
 * - Types: the spec also defines GET_LIFETIME 10, DISCARD 11, WRITE_ZEROES 13 and
 *   SECURE_ERASE 14 (and, with VIRTIO_BLK_F_ZONED, ZONE_* 15 to 26); Linux 6.12's
 *   header has all but GET_LIFETIME. The device here offers none of their features
 *   and answers each with VIRTIO_BLK_S_UNSUPP ("a request unsupported by device"),
 *   as QEMU's virtio_blk_handle_request() answers a type it has no case for (its
 *   switch's `default:`, GET_LIFETIME among them); QEMU has cases for DISCARD and
 *   WRITE_ZEROES and serves them.
 * - `reserved` "was previously called ioprio" (spec, "Legacy Interface: Device
 *   Operation"); Linux 6.12 still fills it (virtblk_setup_cmd(): `out_hdr.ioprio =
 *   cpu_to_virtio32(vdev, req_get_ioprio(req))`). This driver writes 0, QEMU reads
 *   neither.
 * - `sector` is in 512-byte units "(always 512 bytes)" whatever VIRTIO_BLK_F_BLK_SIZE
 *   says (spec, "Device Initialization"), and is 0 for FLUSH and GET_ID (a driver
 *   "MUST set sector to 0 for a VIRTIO_BLK_T_FLUSH request"; virtblk_get_id() sets 0).
 * - GET_ID's data is 20 bytes ("MUST be 20 bytes"): "a NUL-padded ASCII string up
 *   to 20 bytes long. If the string is 20 bytes long then there is no NUL
 *   terminator."
 * - Status: the spec's zoned statuses 3 to 6 are not used here. Linux's
 *   virtblk_result() maps UNSUPP to BLK_STS_NOTSUPP, OK to BLK_STS_OK and every
 *   other byte, unknown ones included, to BLK_STS_IOERR; this driver counts a byte
 *   that is no status as a device fault instead (src/mediator/blk-request.ts).
 *
 * The driver lays a request out as one readable header descriptor, data
 * descriptors, one writable 1-byte status descriptor; the device takes any
 * arrangement of descriptors (VIRTIO 1.2 §2.7.4.1: see BlkBackend).
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
