/**
 * fio's I/O engines as far as the runner needs them: how each queues, which
 * decides the depth a job runs at (fio 3.42, engines/*.c; backend.c
 * thread_main()).
 */

/**
 * How an fio engine queues, from its `struct ioengine_ops` (`.flags`, `->queue`):
 * - `sync`: FIO_SYNCIO, each I/O complete when `->queue` returns: one I/O in
 *   flight, whatever iodepth says (backend.c thread_main(): "note: both iodepth
 *   >= 1 and synchronous I/O engine are selected, queue depth will be capped at
 *   1"; HOWTO "iodepth": "increasing iodepth beyond 1 will not affect
 *   synchronous ioengines");
 * - `async`: no FIO_SYNCIO: iodepth I/Os in flight;
 * - `batching`: FIO_SYNCIO, yet `->queue` can return FIO_Q_QUEUED and hold more
 *   than one I/O: fio prints the note, but the depth is not 1 and not modelled;
 * - `no-io`: FIO_NOIO or FIO_FAKEIO: fio does no data I/O at all.
 */
export type EngineKind = 'sync' | 'async' | 'batching' | 'no-io';

/** fio 3.42's engines (engines/*.c), by how they queue; the reason for the odd ones. */
export const FIO_ENGINES: Readonly<Record<string, EngineKind>> = {
  // FIO_SYNCIO, ->queue completes each I/O
  sync: 'sync', // engines/sync.c
  psync: 'sync',
  pvsync: 'sync',
  pvsync2: 'sync',
  mmap: 'sync', // engines/mmap.c
  splice: 'sync',
  netsplice: 'sync', // engines/net.c
  net: 'sync',
  e4defrag: 'sync',
  falloc: 'sync',
  gfapi: 'sync', // engines/glusterfs_sync.c
  libhdfs: 'sync',
  ime_psync: 'sync', // engines/ime.c
  'dev-dax': 'sync',
  libpmem: 'sync',
  http: 'sync',
  libzbc: 'sync',
  mtd: 'sync',
  page_fault: 'sync',
  libcufile: 'sync',
  libhipfile: 'sync',
  // FIO_SYNCIO, but ->queue may return FIO_Q_QUEUED
  vsync: 'batching', // sync.c fio_vsyncio_queue(): up to iodepth contiguous I/Os in one readv()/writev()
  ime_psyncv: 'batching', // ime.c: the same, vectored
  sg: 'batching', // sg.c: asynchronous on a /dev/sg character device unless direct=1 or sync=1
  libiscsi: 'batching', // libiscsi.c: iscsi_scsi_command_async()
  // FIO_NOIO / FIO_FAKEIO
  cpuio: 'no-io',
  exec: 'no-io',
  ftruncate: 'no-io',
  filecreate: 'no-io', // engines/fileoperations.c
  filestat: 'no-io',
  filedelete: 'no-io',
  dircreate: 'no-io',
  dirstat: 'no-io',
  dirdelete: 'no-io',
  // no FIO_SYNCIO
  libaio: 'async',
  io_uring: 'async',
  io_uring_cmd: 'async',
  posixaio: 'async',
  solarisaio: 'async',
  windowsaio: 'async',
  null: 'async', // null.c null_init(): FIO_SYNCIO only when iodepth is 1
  rbd: 'async',
  rados: 'async',
  rdma: 'async',
  nbd: 'async',
  nfs: 'async',
  dfs: 'async',
  gfapi_async: 'async',
  ime_aio: 'async',
  libblkio: 'async',
  xnvme: 'async',
};

/** fio's default engine on Linux (os/os.h `#define FIO_PREFERRED_ENGINE "psync"`; options.c "ioengine" `.def`). */
export const FIO_DEFAULT_ENGINE = 'psync';

/** fio's note, word for word (backend.c thread_main()). */
export const FIO_SYNC_DEPTH_NOTE =
  'note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth will be capped at 1';

/**
 * The name fio loads for `ioengine=`: names starting "aio" or "linuxaio" are
 * libaio (ioengines.c __load_ioengine()); "external:PATH" is "external".
 */
export function engineName(value: string): string {
  const v = value.trim();
  if (v.startsWith('aio') || v.startsWith('linuxaio')) return 'libaio';
  return v.startsWith('external:') ? 'external' : v;
}
