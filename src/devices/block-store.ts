import { fdatasyncSync, readSync, writeSync } from 'node:fs';

/**
 * A device backend's own storage: the only thing besides the device-visible memory
 * that a device thread holds. Offsets are byte offsets on the disk; `mem` is the
 * device-visible memory and `memOffset` where in it the data lies.
 */
export interface BlockStore {
  readonly capacity: number;
  read(mem: Buffer, memOffset: number, diskOffset: number, length: number): void;
  write(mem: Buffer, memOffset: number, diskOffset: number, length: number): void;
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

  flush(): void {}

  close(): void {}
}

/**
 * A disk backed by a file. The host opens the file and owns the descriptor (it
 * outlives a device thread that is reset); the device thread only reads, writes
 * and syncs through it. With `durable`, every write is fdatasync()ed before the
 * request completes (a write acknowledged is on stable storage); otherwise only
 * FLUSH syncs, as a disk with a volatile write cache.
 */
export class FileStore implements BlockStore {
  readonly capacity: number;
  private readonly fd: number;
  private readonly durable: boolean;

  constructor(fd: number, capacity: number, durable: boolean) {
    this.fd = fd;
    this.durable = durable;
    this.capacity = capacity;
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
    if (this.durable) fdatasyncSync(this.fd);
  }

  flush(): void {
    fdatasyncSync(this.fd);
  }

  close(): void {}
}
