/**
 * Every error this project raises carries a stable code from this table, following
 * Fastify's model: one module defines the codes, docs/errors.md lists each one with
 * its meaning and fix (`npm run docs:errors` writes it; test/errors.test.ts checks that
 * the two agree), and callers match on `err.code`, never on the message.
 */

export interface ErrorSpec {
  /** What went wrong, for the docs table. */
  readonly meaning: string;
  /** What the user should do about it, for the docs table. */
  readonly fix: string;
  /** HTTP status the service answers with when this error reaches a client. */
  readonly status: number;
}

export const ERROR_SPECS = {
  SWIOTLB_POOL_FULL: {
    meaning:
      'No area of the pool has a free run of slots that fits the mapping with its alignment (the kernel logs "swiotlb buffer is full").',
    fix: 'Grow the pool (`--pool-size`, `swiotlb=<nslabs>`), lower queue depth, or enable back-pressure waiting.',
    status: 503,
  },
  SWIOTLB_MAPPING_TOO_LARGE: {
    meaning:
      'The map (or coherent allocation) searches for more than one 128-slot segment (256 KiB), the offset kept before the data and any alignment round-up included: no pool of any size can place it. The kernel\'s search fails the same way: a map logs "swiotlb buffer is full" (quoted in the message), swiotlb_alloc() returns NULL. Maps above swiotlb_max_mapping_size() that fit a segment are not refused: the kernel places them.',
    fix: 'Split the I/O into pieces no larger than dma_max_mapping_size() (swiotlb_max_mapping_size(): 256 KiB less roundup(min_align_mask, 2 KiB)), as Linux drivers do.',
    status: 413,
  },
  SWIOTLB_NOT_MAPPED: {
    meaning: 'unmap or sync was given an address that is not a live mapping of this pool.',
    fix: 'Pass the exact address map returned, and unmap each mapping once.',
    status: 400,
  },
  SWIOTLB_BUFFER_OVERFLOW: {
    meaning:
      'unmap or sync asked for more bytes than the mapping holds; nothing was changed. The pool API refuses it where the kernel warns "Buffer overflow detected" and carries on; `replay` carries on too and prints the warning, and refuses only a sync that starts past the mapping.',
    fix: 'Use the size the mapping was created with, or a range inside it.',
    status: 400,
  },
  SWIOTLB_INVALID_DIRECTION: {
    meaning:
      'The DMA direction is not one of bidirectional, to_device, from_device, or (pool API) differs from the direction of the mapping: what CONFIG_DMA_API_DEBUG reports, refused here. `replay` makes such a call as the kernel does and prints the report.',
    fix: 'Use the direction the buffer was mapped with; only bidirectional mappings take any sync direction.',
    status: 400,
  },
  SWIOTLB_INVALID_ARGUMENT: {
    meaning:
      'An address, size, mask or area number is not a non-negative integer in range (size 0 included).',
    fix: 'Check the value named in the message.',
    status: 400,
  },
  SWIOTLB_KERNEL_WOULD_HANG: {
    meaning:
      'The pool follows Linux 6.1, whose swiotlb_do_find_slots() loops `while (index != wrap)`: for this min_align_mask request on this pool state the search would step past its start for ever, spinning with the area lock held (fixed upstream by 7c3940bf81e5 in 6.3, never taken into 6.1.y). No placement is invented; nothing was allocated.',
    fix: 'This is what a 6.1 guest would do: avoid it there with a larger pool (fewer full areas), fewer areas, or a kernel of 6.6 or later; `--kernel 6.6`/`6.10` shows the placement a fixed kernel makes.',
    status: 503,
  },
  SWIOTLB_KERNEL_OVERRUN: {
    meaning:
      "The pool follows Linux 6.1, which would place the request partly outside the pool: its list[] counts the missing slots of a restricted pool's partial last segment as free, and its swiotlb_alloc() aligns slot indexes, not addresses. Nothing was allocated.",
    fix: 'Give a restricted pool a size that is a multiple of 256 KiB and a page-aligned base (as a 6.1 guest must), or use the 6.6 or 6.10 profile.',
    status: 500,
  },
  SWIOTLB_INVALID_GEOMETRY: {
    meaning: 'The pool size, slot count, area count or base address cannot form a pool.',
    fix: 'Use a size of at least one 128-slot segment, a base aligned to 2 KiB, and a positive area count.',
    status: 500,
  },
  DMA_BAD_ADDRESS: {
    meaning:
      "A guest buffer given to the DMA API is not entirely inside that guest's private memory (or the memory size is not valid).",
    fix: 'Pass a guest-physical address and length inside the guest memory (base, size) you configured.',
    status: 400,
  },
  COPY_ENGINE_CLOSED: {
    meaning: 'A copy was asked of a copy engine that is closing or closed.',
    fix: 'Stop submitting I/O before close(); create a new engine to continue.',
    status: 503,
  },
  COPY_WORKER_CRASHED: {
    meaning:
      'The copy worker that held this copy died before finishing it; the mapping was released and the worker replaced.',
    fix: "Retry the I/O. If it repeats, look for the worker's error in the log.",
    status: 500,
  },
  MEDIATOR_BAD_CONFIG: {
    meaning:
      'A guest, pool, device or queue setting cannot be used (a queue size that is not a power of two, guest memory too small for the devices, an unknown device kind...).',
    fix: 'Correct the setting named in the message.',
    status: 500,
  },
  MEDIATOR_DEVICE_FAULT: {
    meaning:
      "The device backend broke the virtio contract for this request (a used length larger than its chain's device-writable buffers, or a status byte that is no virtio-blk status); the request failed and the fault was counted. Faults that name no request in flight (a used id out of range or not in flight, a completion twice) are counted only.",
    fix: 'The device backend is buggy or hostile: check its fault counters; reset it or take it out of service.',
    status: 502,
  },
  MEDIATOR_DEVICE_TIMEOUT: {
    meaning: 'The device did not complete the request in time; the device is reset.',
    fix: 'Check the device backend; raise the request timeout if it is only slow.',
    status: 504,
  },
  MEDIATOR_DEVICE_RESET: {
    meaning: 'The device was reset while this request was in flight; the request did not complete.',
    fix: 'Retry the request.',
    status: 503,
  },
  MEDIATOR_IO_ERROR: {
    meaning:
      'The request failed with an I/O error, as Linux fails it with BLK_STS_IOERR (-EIO): either the driver refused a read or write beyond the device capacity before mapping or sending anything ("attempt to access beyond end of device", as the block layer\'s bio_check_eod() refuses it; the error\'s details carry the capacity), or the device completed the request with VIRTIO_BLK_S_IOERR (its backing store failed, or the device found the range past its disk).',
    fix: 'Keep the sector range within the device capacity (GET /v1/devices gives it); when it is in range, the log has a "backing store error" line saying what the disk answered. Over HTTP the refusal of a range past the device is a 416 with Content-Range, the I/O error of the device a 500.',
    status: 500,
  },
  MEDIATOR_UNSUPPORTED: {
    meaning:
      'The device completed the request with VIRTIO_BLK_S_UNSUPP: it does not implement that request type.',
    fix: 'Use a request type the device supports.',
    status: 501,
  },
  MEDIATOR_BACKPRESSURE_TIMEOUT: {
    meaning:
      'The request waited for pool slots (back-pressure) longer than the configured wait and gave up; nothing was mapped.',
    fix: 'Retry later, lower the offered load, or grow the pool; the pool metrics show how full it ran.',
    status: 503,
  },
  MEDIATOR_REQUEST_TOO_LARGE: {
    meaning:
      'The request can never fit: it is larger than the device allows per request, or than the whole pool.',
    fix: 'Split the I/O into smaller requests.',
    status: 413,
  },
  MEDIATOR_CLOSED: {
    meaning: 'The device or mediator is shutting down and takes no new requests.',
    fix: 'Send the request to a running instance.',
    status: 503,
  },
  BLK_BAD_SECTOR: {
    meaning:
      'A block request (read, write, flush) was given a starting sector that is not a non-negative integer; nothing was sent to the device.',
    fix: 'Pass the sector (lba, in 512-byte units) as a non-negative integer.',
    status: 400,
  },
  BLK_BAD_LENGTH: {
    meaning:
      'A block request was given a length that is not a non-negative integer multiple of 512 (virtio-blk moves whole sectors); nothing was sent to the device.',
    fix: 'Pass the length in bytes as a whole number of 512-byte sectors.',
    status: 400,
  },
  BLK_BAD_QUEUE: {
    meaning:
      'A block request asked for a virtqueue the device does not have (queues are numbered from 0 to queues - 1); nothing was sent to the device.',
    fix: "Use a queue index below the device's queue count (GET /v1/devices gives it), or leave the queue out to let the driver pick one.",
    status: 400,
  },
  HTTP_NOT_FOUND: {
    meaning: 'No route of the HTTP API matches the method and path.',
    fix: 'See docs/http-api.md (every path starts with /v1/, except /metrics, /healthz, /readyz and the status page at / and /status/).',
    status: 404,
  },
  HTTP_METHOD_NOT_ALLOWED: {
    meaning:
      'The path is one of the HTTP API, but not with this method (a DELETE on a block, a GET on /flush...); the Allow header of the answer lists the methods it takes.',
    fix: 'Use a method from the Allow header; docs/http-api.md lists the routes.',
    status: 405,
  },
  HTTP_UNKNOWN_DEVICE: {
    meaning: 'The device id in the URL is not one of the configured devices.',
    fix: 'GET /v1/devices lists the devices; check the id against the config.',
    status: 404,
  },
  HTTP_UNKNOWN_POOL: {
    meaning: 'The pool name in the URL is not one of the configured pools.',
    fix: 'GET /v1/pools lists the pools; check the name against the config.',
    status: 404,
  },
  HTTP_INVALID_PARAMETER: {
    meaning:
      'A path, query or JSON parameter is missing or not valid: lba must be a non-negative integer, count an integer of at least 1, op "read" or "write", size a positive multiple of 512.',
    fix: 'Correct the parameter named in the message; nothing was done.',
    status: 400,
  },
  HTTP_BAD_BODY: {
    meaning:
      'The request body cannot be used: block data must be a non-empty multiple of 512 bytes, and a JSON body must parse.',
    fix: 'Send whole 512-byte sectors (or valid JSON); nothing was written.',
    status: 400,
  },
  HTTP_OUT_OF_RANGE: {
    meaning:
      'The sectors asked for (lba plus count, or lba plus the body length) go past the end of the device.',
    fix: 'Stay below the device capacity: GET /v1/devices gives it, and the Content-Range header of the answer gives it in bytes.',
    status: 416,
  },
  HTTP_BODY_TOO_LARGE: {
    meaning: 'The request body is larger than the configured limit (http.bodyLimit).',
    fix: 'Send less per request, or raise http.bodyLimit in the config.',
    status: 413,
  },
  HTTP_UNSUPPORTED_MEDIA_TYPE: {
    meaning:
      'The Content-Type does not fit the route: block writes take application/octet-stream, synthetic I/O takes application/json.',
    fix: 'Set the Content-Type the route expects (curl: -H "Content-Type: application/octet-stream").',
    status: 415,
  },
  HTTP_BAD_REQUEST: {
    meaning: 'The HTTP request itself is malformed (a bad URL encoding, a bad Content-Length...).',
    fix: 'Fix the client; the message says what the HTTP layer refused.',
    status: 400,
  },
  HTTP_NOT_READY: {
    meaning:
      'The service is starting (its device threads are not serving yet), or shutting down (only a request on a connection already open sees it: the listener closes at once).',
    fix: 'Wait for GET /readyz to answer 200, or send the request to another instance.',
    status: 503,
  },
  HTTP_INTERNAL: {
    meaning: 'An unexpected error inside the service; it was logged with its stack.',
    fix: 'Report it with the log line; the service keeps running.',
    status: 500,
  },
  CLI_USAGE: {
    meaning:
      'The command line has an unknown command, an unknown flag, or a flag value that does not parse.',
    fix: 'Run `swiotlb-mediator --help` or `swiotlb-mediator <command> --help`.',
    status: 400,
  },
  SERVE_CANNOT_LISTEN: {
    meaning:
      "serve could not listen on http.host:http.port (the port is in use, the address is not this machine's, or a port below 1024 without the privilege); the mediator it had built was closed again.",
    fix: "Pick another --port (0: any free port) or --host, or stop what holds the port; the message carries the system's reason (EADDRINUSE, EADDRNOTAVAIL, EACCES).",
    status: 500,
  },
  REPLAY_BAD_LINE: {
    meaning:
      'A replay input line is not a JSON object with a known `op` and valid fields; the line is reported and the replay goes on.',
    fix: 'Fix the line named by its number; see the replay format in docs/cli.md.',
    status: 400,
  },
  TRACE_NOT_A_TRACE: {
    meaning:
      'The trace input has no line in the layout of the tracefs `trace` / `trace_pipe` file (`<task>-<pid> [<cpu>] <flags> <secs>.<usecs>: <event>: <fields>`) or of `trace-cmd report` (which starts with `cpus=N`).',
    fix: 'Pass the text of a trace: `trace-cmd report trace.dat > trace.txt`, or a copy of /sys/kernel/tracing/trace; not the binary trace.dat.',
    status: 400,
  },
  TRACE_NO_DMA_EVENTS: {
    meaning:
      'The trace parses but holds no dma:* event (dma_map_*, dma_unmap_*, dma_sync_*), so no mapping can be replayed; the message lists the events it does hold.',
    fix: 'Record with `trace-cmd record -e dma -e swiotlb` (or enable events/dma in tracefs) on a kernel that has the dma events (6.12 or later).',
    status: 400,
  },
  TRACE_BAD_EVENT: {
    meaning:
      'No dma:* line of the trace could be read (the message gives the first, with its line number and what was expected); when some lines read, the bad ones are only counted in the report.',
    fix: 'Check that the file is unedited trace text; report the line if it comes from a kernel or trace-cmd version that prints these events differently.',
    status: 400,
  },
  TRACE_BAD_BOOT_LOG: {
    meaning:
      'The boot log lacks the swiotlb pool lines (`software IO TLB: mapped [mem 0x...-0x...] (NMB)`, `software IO TLB: area num N.`), so the pool cannot be placed.',
    fix: 'Pass the whole log of the traced boot (`journalctl -k -b` keeps the early lines that the dmesg ring buffer may have dropped), or give the pool with --base/--slots/--areas (or --restricted SIZE --base ADDR).',
    status: 400,
  },
  TRACE_UNSUPPORTED_KERNEL: {
    meaning:
      "The traced kernel (from `--kernel` or the boot log's `Linux version` line) belongs to no line whose swiotlb rules the project models: 6.1 (6.1.y), 6.6 (6.6.y) and 6.10 (6.10 and later) are; 6.2-6.5, 6.7-6.9 and kernels before 6.1 are not.",
    fix: 'Replay under the rules of a modelled line anyway with `--kernel 6.1`, `--kernel 6.6` or `--kernel 6.10` (docs/kernels.md tells what differs), knowing that placements may disagree.',
    status: 400,
  },
  JOB_BAD_FILE: {
    meaning:
      'A fio job file cannot be used: a line is not INI syntax, a value does not parse (a size, a number, an rw or bssplit value), or a setting is out of range.',
    fix: 'Correct the line or option named in the message; see "bench" in docs/cli.md for the options understood.',
    status: 400,
  },
  JOB_UNSUPPORTED_OPTION: {
    meaning:
      'The fio job file uses options this runner cannot honour (for example rate, verify, fsync, offset); they are listed by name, nothing was run.',
    fix: 'Remove the options named in the message, or replace them with what the runner understands (device, mode, pool_size...); see "bench" in docs/cli.md.',
    status: 400,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_SPECS;

/** An error with a stable `code` from {@link ERROR_SPECS}. */
export class MediatorError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'MediatorError';
    this.code = code;
    this.status = ERROR_SPECS[code].status;
    this.details = details;
  }
}

export function isMediatorError(err: unknown, code?: ErrorCode): err is MediatorError {
  return err instanceof MediatorError && (code === undefined || err.code === code);
}
