import { fdatasyncSync, readSync, writeSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';

/**
 * A device backend's own storage: the only thing besides the device-visible memory
 * that a device thread holds. Offsets are byte offsets on the disk; `mem` is the
 * device-visible memory and `memOffset` where in it the data lies.
 */
export interface BlockStore {
  readonly capacity: number;
  read(mem: Buffer, memOffset: number, diskOffset: number, length: number): void;
  write(mem: Buffer, memOffset: number, diskOffset: number, length: number): void;
  /**
   * After the last write of one request (its data may come in several pieces): a
   * store that acknowledges only what is on stable storage syncs here, once.
   */
  writeDone(): void;
  /** Makes completed writes durable (VIRTIO_BLK_T_FLUSH). */
  flush(): void;
  close(): void;
}

/** A disk in memory: a SharedArrayBuffer the host created, so it outlives a device reset. */
export class RamStore implements BlockStore {
  readonly capacity: number;
  private readonly bytes: Buffer;

  constructor(backing: SharedArrayBuffer) {
    this.bytes = Buffer.from(backing);
    this.capacity = backing.byteLength;
  }

  read(mem: Buffer, memOffset: number, diskOffset: number, length: number): void {
    this.bytes.copy(mem, memOffset, diskOffset, diskOffset + length);
  }

  write(mem: Buffer, memOffset: number, diskOffset: number, length: number): void {
    mem.copy(this.bytes, diskOffset, memOffset, memOffset + length);
  }

  writeDone(): void {}

  flush(): void {}

  close(): void {}
}

/**
 * A disk backed by a file. The host opens the file and owns the descriptor (it
 * outlives a device thread that is reset); the device thread only reads, writes
 * and syncs through it. With `durable`, every write request is fdatasync()ed
 * once, after its last piece, before it completes (a write acknowledged is on
 * stable storage); otherwise only FLUSH syncs, as a disk with a volatile write
 * cache.
 *
 * A failed fdatasync() fails every later one, on every queue's thread (they share
 * the descriptor, and `syncFailed`), as QEMU's block/file-posix.c
 * handle_aiocb_flush() makes bdrv_flush() fail permanently: Linux reports a
 * writeback error once per open file (errseq_t) and marks the pages clean, so the
 * next fdatasync() would succeed with the data still not on disk, and a FLUSH of
 * another queue, or the shutdown's, would acknowledge writes that are lost.
 */
export class FileStore implements BlockStore {
  readonly capacity: number;
  private readonly fd: number;
  private readonly durable: boolean;
  /** The errno of the first failed fdatasync() on this file (0: none), shared. */
  private readonly syncFailed: Int32Array;

  constructor(fd: number, capacity: number, durable: boolean, syncFailed: SharedArrayBuffer) {
    this.fd = fd;
    this.durable = durable;
    this.capacity = capacity;
    this.syncFailed = new Int32Array(syncFailed, 0, 1);
  }

  /** fdatasync(), unless one failed before on this file: then it fails too, saying why. */
  private sync(): void {
    const failed = Atomics.load(this.syncFailed, 0);
    if (failed !== 0) {
      throw new Error(
        `an earlier fdatasync() of the backing file failed (${getSystemErrorName(-failed)}): what it held may not be on disk, so no later sync can succeed`,
      );
    }
    try {
      fdatasyncSync(this.fd);
    } catch (err) {
      const errno = (err as { errno?: unknown }).errno;
      Atomics.compareExchange(
        this.syncFailed,
        0,
        0,
        typeof errno === 'number' && errno < 0 ? -errno : 5, // EIO
      );
      throw err;
    }
  }

  read(mem: Buffer, memOffset: number, diskOffset: number, length: number): void {
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, mem, memOffset + done, length - done, diskOffset + done);
      if (n === 0) {
        mem.fill(0, memOffset + done, memOffset + length);
        return;
      }
      done += n;
    }
  }

  write(mem: Buffer, memOffset: number, diskOffset: number, length: number): void {
    let done = 0;
    while (done < length) {
      done += writeSync(this.fd, mem, memOffset + done, length - done, diskOffset + done);
    }
  }

  writeDone(): void {
    if (this.durable) this.sync();
  }

  flush(): void {
    this.sync();
  }

  close(): void {}
}
