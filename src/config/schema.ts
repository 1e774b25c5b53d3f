/**
 * The service's configuration: what a JSON config file may hold, every field with
 * its default, and the checks that refuse a config the mediator cannot run.
 *
 * The TypeScript interfaces below describe the configuration once resolved
 * (every default filled in, sizes in bytes). A config file may leave out any
 * field, and may write sizes as strings such as "64MiB" (src/util/size.ts) and
 * addresses as hex strings such as "0x80000000". An empty file (`{}`) is the
 * embedded default ({@link EMBEDDED_DEFAULT}): one guest, a ram-blk device `blk0`
 * of 256 MiB and a null device `null0`, each behind a 64 MiB pool of its own
 * (`pool0`, `pool1`), bounce mode, listening on 127.0.0.1:8080.
 */

import { z } from 'zod';
// Light modules only (defaults, layout rules, constants): parsing a config must
// not load the copy engine, piscina or the device code (test/config.test.ts).
import { deviceGuestLayout } from '../mediator/blk-options.js';
import {
  BACKPRESSURE_ALIASES,
  BACKPRESSURE_DEFAULTS,
  BACKPRESSURE_POLICIES,
  type BackpressurePolicy,
  backpressurePolicy,
  COPY_DEFAULTS,
  DEFAULT_MODE,
  DEVICE_DEFAULTS,
  defaultCopyWorkersFor,
  defaultInlineThreshold,
  defaultPoolAreas,
  defaultSplitThreshold,
  FROM_DEVICE_BOUNCES,
  type FromDeviceBounce,
  GUEST_DEFAULTS,
  MODES,
  type Mode,
  POOL_DEFAULTS,
  SERVICE_DEFAULTS,
  serviceDeviceSpinMicros,
} from '../mediator/defaults.js';
import {
  isMinAlignMask,
  LIMITS,
  MAX_GUEST_MEMORY_SIZE,
  MAX_MIN_ALIGN_MASK,
} from '../mediator/limits.js';
import { IO_TLB_SEGSIZE, IO_TLB_SIZE, PAGE_SIZE } from '../swiotlb/constants.js';
import {
  computeGeometry,
  type Geometry,
  type GeometryOptions,
  parseSwiotlbParameter,
} from '../swiotlb/geometry.js';
import { DEFAULT_KERNEL, KERNEL_VERSIONS, type KernelVersion } from '../swiotlb/kernel.js';
import { PLACEMENTS, type Placement } from '../swiotlb/warm.js';
import { formatSize, parseSize } from '../util/size.js';
import {
  DEFAULT_CHAOS,
  DEFAULT_CHAOS_SEED,
  DEVICE_KINDS,
  type DeviceKind,
} from '../virtio/device-spec.js';
import { MAX_QUEUE_SIZE, virtqueueBytes } from '../virtio/virtqueue-layout.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SECTOR = 512;
/** The largest mapping a pool can place: one 128-slot segment (256 KiB). */
const SEGMENT_BYTES = IO_TLB_SIZE * IO_TLB_SEGSIZE;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** HTTP settings. */
export interface HttpConfig {
  /**
   * Address to listen on. `0.0.0.0` or `::` listens on every interface.
   * @default "127.0.0.1"
   */
  host: string;
  /**
   * TCP port; 0 picks a free one (the start-up log line says which).
   * @default 8080
   */
  port: number;
  /**
   * Largest request body accepted, in bytes (a larger one gets 413).
   * @default 1048576 ("1MiB")
   */
  bodyLimit: number;
  /**
   * On SIGTERM/SIGINT, the longest the service takes to finish in-flight I/O,
   * flush file-backed devices and close; past it, it exits anyway (status 1).
   * @default 10000
   */
  shutdownTimeoutMs: number;
  /**
   * `Retry-After` (seconds) sent with 503 answers (back-pressure gave up, pool
   * full, draining).
   * @default 1
   */
  retryAfterSeconds: number;
}

/** The copy workers: the trusted DMA engine that bounces data between guests and pools. */
export interface CopyConfig {
  /**
   * Copy worker threads; 0 copies everything inline on the main thread.
   * @default the CPUs left once the main thread and every device thread (one per
   * queue) have one, at most 4; 0 when none is left, as on 2 CPUs
   * (defaultCopyWorkersFor)
   */
  workers: number;
  /**
   * Copies shorter than this are done inline on the main thread.
   * @default 32768 ("32KiB"); 131072 ("128KiB") on 2 CPUs or fewer, where a copy
   * worker would share a core with the device threads
   */
  inlineThreshold: number;
  /**
   * Copies of at least this size, with nothing else in flight, are split across
   * every worker and the main thread. 0 never splits.
   * @default 131072 ("128KiB"); 0 when workers >= the number of CPUs (no idle core)
   */
  splitThreshold: number;
  /**
   * Copy descriptors per worker ring (a power of two).
   * @default 1024
   */
  ringCapacity: number;
  /**
   * How long an idle copy worker polls before sleeping, in microseconds.
   * @default 20
   */
  spinMicros: number;
}

/**
 * What a request does when its pool has no room for its buffers. Linux's
 * virtio-blk never fails such a request: virtio_queue_rq() returns
 * BLK_STS_RESOURCE and blk-mq requeues it until slots come back
 * (BACKPRESSURE_POLICIES in src/mediator/defaults.ts quotes the code).
 */
export interface BackpressureConfig {
  /**
   * `requeue`: what Linux does: the request is requeued on its queue until
   * slots come back, retried when a request of that queue completes or a new one
   * comes to it, and 3 ms (BLK_MQ_RESOURCE_DELAY) after each failed try; no time limit.
   * `requeue-bounded`: requeued too, first come first served across the pool, for
   * up to `waitMs` (then 503 with Retry-After).
   * `fail`: the DMA API's answer, which virtio-blk never gives: the request fails
   * at once with "swiotlb buffer is full" (503).
   * The file may also say `wait`, the old name of `requeue-bounded`.
   * @default "requeue-bounded"
   */
  policy: BackpressurePolicy;
  /**
   * `requeue-bounded` (and `fail`, which ignores it): longest wait for pool slots
   * before the request gives up. Not allowed with `requeue`, which has no limit.
   * @default 5000 (absent under `requeue`)
   */
  waitMs?: number | undefined;
}

/**
 * A swiotlb pool: the only memory a device backend sees (in bounce and shared mode),
 * declared in the kernel's terms and built as that kernel builds it
 * (src/swiotlb/geometry.ts): a default pool (`swiotlb=<nslabs>[,<nareas>]`, or a
 * size an architecture asks for) or a device-tree restricted-dma-pool. In the file,
 * `"swiotlb": "8192,2"` is shorthand for `slots` 8192 and `areas` 2.
 */
export interface PoolConfig {
  /**
   * Name devices refer to.
   * @default "pool0" for the first pool, "pool1" for the second...
   */
  name: string;
  /**
   * A device-tree `restricted-dma-pool` of this many bytes: exactly `size >> 11`
   * slots in one area, never rounded, never grown (rmem_swiotlb_device_init()).
   * With it, `size`, `slots`, `areas` and `swiotlb` do not apply.
   * @default unset: a default pool
   */
  restricted?: number | undefined;
  /**
   * Default pool: the bytes an architecture asks for (swiotlb_adjust_size(), as SEV
   * and TDX guests size their pool): rounded to whole 128-slot segments, then up
   * to a power of two, as the kernel rounds nslabs. Not with `slots`
   * (swiotlb_adjust_size() leaves a `swiotlb=<nslabs>` as given, unless it is 32768).
   * @default unset: Linux's default pool, 64 MiB (32768 slots)
   */
  size?: number | undefined;
  /**
   * Default pool: the kernel's `swiotlb=<nslabs>`, slots of 2 KiB before the
   * kernel's rounding (aligned to 128, then up to a power of two, or to 128 x
   * areas when that is larger).
   * @default unset: 32768 (or from `size`)
   */
  slots?: number | undefined;
  /**
   * Default pool: the kernel's `swiotlb=<nslabs>,<nareas>`: areas (each with its own
   * lock and next-fit cursor), rounded up to a power of two. Absent for a
   * restricted pool, which has one.
   * @default the number of CPUs rounded up to a power of two (num_possible_cpus())
   */
  areas?: number | undefined;
  /**
   * Guest-physical address of the pool's first byte (a multiple of 2 KiB).
   * @default 0
   */
  base: number;
  /**
   * Which free slots a map takes: `linux` (the kernel's next-fit search, what the
   * kernel does) or `warm` (the runs freed most recently first, so that a steady
   * workload reuses the same, cache-warm slots; not a kernel behaviour, but every
   * placement keeps the kernel profile's alignment, offset and padding rules).
   * @default the top-level `placement` ("warm")
   */
  placement: Placement;
  /** Back-pressure: what a request does when the pool is full. */
  backpressure: BackpressureConfig;
}

/** A guest: a tenant with private memory that only the guest side touches. */
export interface GuestConfig {
  /**
   * Name devices refer to.
   * @default "guest0" for the first guest, "guest1" for the second...
   */
  name: string;
  /**
   * Size of the guest's private memory, in bytes. In the file, `"auto"` (the
   * default) sizes it to what its devices need: per queue, `depth` request
   * buffers of `maxRequestBytes` and their headers (and, in direct mode, the
   * virtqueues), rounded up to a MiB.
   * @default "auto"
   */
  memory: number;
  /**
   * Guest-physical address of its first byte; keep it clear of the pools.
   * @default 4294967296 ("0x100000000", 4 GiB)
   */
  base: number;
}

/** The hostile device's fault rates (kind `chaos` only). */
export interface ChaosConfig {
  /** @default 1 */
  seed: number;
  /** Probability that a request is never completed. @default 0.02 */
  drop: number;
  /** Probability that a request is completed twice. @default 0.03 */
  double: number;
  /** Probability that the used id names another chain. @default 0.03 */
  badId: number;
  /** Probability that the used length exceeds the chain's writable bytes. @default 0.03 */
  badLen: number;
  /** Probability of random writes anywhere in the device-visible memory. @default 0.05 */
  scribble: number;
  /** Probability that the chain's descriptors are overwritten. @default 0.05 */
  corruptDesc: number;
  /** Probability that used->idx jumps. @default 0.01 */
  jumpIdx: number;
}

/** A virtio-blk device, driven by a guest, seeing a pool. */
export interface DeviceConfig {
  /**
   * Device id, used in URLs (`/v1/devices/<id>/...`).
   * @default "dev0" for the first device, "dev1" for the second...
   */
  id: string;
  /**
   * `ram-blk` (a disk in memory), `file-blk` (a disk in a file), `null` (does no
   * data work: writes are dropped, reads leave the buffer as it was) or `chaos`
   * (a hostile ram-blk that breaks the virtio contract at the `chaos` rates).
   * @default "ram-blk"
   */
  kind: DeviceKind;
  /**
   * The guest that drives it.
   * @default the first guest
   */
  guest: string;
  /**
   * The pool it sees (bounce and shared mode).
   * @default the first pool
   */
  pool: string;
  /**
   * Disk size in bytes (a multiple of 512).
   * @default 268435456 ("256MiB")
   */
  capacity: number;
  /**
   * Virtqueues, each with its own device thread.
   * @default 1
   */
  queues: number;
  /**
   * Descriptors per virtqueue (a power of two; at most 8192 in bounce and shared
   * mode, where a queue must fit one 256 KiB pool segment).
   * @default 256
   */
  queueSize: number;
  /**
   * Requests in flight per queue (capped so every request's chain fits the queue).
   * @default 32
   */
  depth: number;
  /**
   * Largest data transfer of one request (a multiple of 512).
   * @default 1048576 ("1MiB")
   */
  maxRequestBytes: number;
  /**
   * A request not completed after this long fails (504) and the device is reset.
   * @default 5000
   */
  timeoutMs: number;
  /**
   * A device thread that has not started serving this long after its start fails
   * the requests waiting for it (504) and the device is reset; at least `timeoutMs`.
   * @default 10000
   */
  readyTimeoutMs: number;
  /**
   * file-blk: the backing file, created when missing and grown to `capacity`.
   * A relative path is relative to the config file's folder (the working folder
   * when there is no config file).
   * @default "<id>.img"
   */
  file?: string | undefined;
  /**
   * file-blk: `durable` syncs (fdatasync) every write before it is acknowledged;
   * `none` syncs only on flush (and at shutdown).
   * @default "durable"
   */
  sync: 'durable' | 'none';
  /**
   * The device's DMA min_align_mask (NVMe: 4095): 0 or 2^k - 1, at most 65535.
   * @default 0
   */
  minAlignMask: number;
  /**
   * The GET_ID answer (at most 20 characters).
   * @default the device id, its first 20 characters (an id may have 64)
   */
  serial: string;
  /**
   * How long a device thread polls its queue before sleeping, in microseconds.
   * @default 200 when every device thread (one per queue, all devices), the HTTP
   * thread and one CPU more have a CPU each, else 0 (serviceDeviceSpinMicros)
   */
  spinMicros: number;
  /**
   * After a completion, how long the driver keeps looking for the next one on
   * each event-loop turn before it sleeps until the device notifies (hybrid
   * polling), in microseconds. 0 never polls.
   * @default 200
   */
  pollMicros: number;
  /** kind `chaos`: seed and fault rates. */
  chaos?: ChaosConfig | undefined;
  /**
   * Bounce mode: what a read's map and unmap copy. `linux`: the map copies the
   * guest buffer into the pool (as swiotlb_tbl_map_single() does for every
   * direction) and the unmap copies the whole buffer back; `used-length`: nothing
   * is copied in, and only the bytes the device's used length says it wrote come
   * back (docs/configuration.md says what each keeps and costs).
   * @default the top-level `fromDeviceBounce` ("used-length")
   */
  fromDeviceBounce: FromDeviceBounce;
}

/** The whole service. */
export interface ServiceConfig {
  /**
   * Whose swiotlb rules every pool follows: the 6.1.y or 6.6.y longterm line, or
   * 6.10 and later (docs/kernels.md says what differs).
   * @default "6.10"
   */
  kernel: KernelVersion;
  /**
   * `bounce` isolates (devices see only their pool; data is copied);
   * `direct` hands devices guest memory (no isolation, no copies);
   * `shared` allocates each request's buffers in the device's pool (no copies;
   * the device sees the data while the request is in flight).
   * @default "bounce"
   */
  mode: Mode;
  /**
   * Bounce mode: the devices' `fromDeviceBounce` unless a device sets its own.
   * The service's default is not Linux's (SERVICE_DEFAULTS in src/mediator/defaults.ts).
   * @default "used-length"
   */
  fromDeviceBounce: FromDeviceBounce;
  /**
   * The pools' `placement` unless a pool sets its own: `linux` (the kernel's
   * search) or `warm` (recently freed slots first). The service's default is not
   * Linux's (SERVICE_DEFAULTS in src/mediator/defaults.ts).
   * @default "warm"
   */
  placement: Placement;
  /**
   * pino log level. Nothing is logged per request at `info`.
   * @default "info"
   */
  logLevel: LogLevel;
  http: HttpConfig;
  copy: CopyConfig;
  /**
   * @default one pool "pool0" of 64 MiB when `devices` is given; with neither
   * `pools` nor `devices`, one 64 MiB pool per default device ("pool0" at 0,
   * "pool1" at 64 MiB)
   */
  pools: PoolConfig[];
  /** @default one guest, "guest0", memory "auto" */
  guests: GuestConfig[];
  /**
   * @default a ram-blk "blk0" of 256 MiB and a null device "null0"; each on a
   * pool of its own when `pools` is not given either, else both on the first
   */
  devices: DeviceConfig[];
}

// ---------------------------------------------------------------------------
// Leaf schemas: each carries one description of what it allows, which is what
// an error message says.
// ---------------------------------------------------------------------------

function showSize(bytes: number): string {
  if (bytes >= 2 ** 40 && bytes % 2 ** 40 === 0) return `${bytes / 2 ** 40}TiB`;
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB}GiB`;
  const s = formatSize(bytes);
  return s.endsWith('iB') ? s : `${bytes} bytes`;
}

function sizeField(min: number, max: number, multipleOf = 1) {
  const allowed = `a size such as "64MiB" or a number of bytes, from ${showSize(min)} to ${showSize(max)}${multipleOf > 1 ? `, a multiple of ${multipleOf}` : ''}`;
  return z.union([z.number(), z.string()], { error: allowed }).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined || n < min || n > max || n % multipleOf !== 0) {
      ctx.issues.push({ code: 'custom', message: allowed, input: v });
      return z.NEVER;
    }
    return n;
  });
}

function intField(min: number, max: number) {
  return z
    .number({ error: `an integer from ${min} to ${max}` })
    .int()
    .min(min)
    .max(max);
}

function powerOfTwoField(min: number, max: number) {
  return z
    .number({ error: `a power of two from ${min} to ${max}` })
    .int()
    .min(min)
    .max(max)
    .refine((n) => (n & (n - 1)) === 0);
}

function numberField(min: number, max: number) {
  return z
    .number({ error: `a number from ${min} to ${max}` })
    .min(min)
    .max(max);
}

/** A guest-physical address: a number or a string ("0x80000000", "2147483648"). */
function addressField(multipleOf: number) {
  const allowed = `an address (a number, or a string such as "0x80000000") from 0 to 2^52, a multiple of ${multipleOf}`;
  return z.union([z.number(), z.string()], { error: allowed }).transform((v, ctx) => {
    const n =
      typeof v === 'number'
        ? v
        : /^\s*(0x[0-9a-f]+|\d+)\s*$/i.test(v)
          ? Number(v.trim())
          : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0 || n > 2 ** 52 || n % multipleOf !== 0) {
      ctx.issues.push({ code: 'custom', message: allowed, input: v });
      return z.NEVER;
    }
    return n;
  });
}

function enumField<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `one of ${values.map((v) => JSON.stringify(v)).join(', ')}` });
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
function nameField() {
  return z
    .string({
      error: 'a name of 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
    })
    .regex(NAME_RE);
}

/** An object that refuses fields it does not know, listing those it does. */
function objectField<T extends z.core.$ZodLooseShape>(shape: T) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? known : 'a JSON object'),
  });
}

function listField<T extends z.ZodType>(item: T, min: number, max: number) {
  return z
    .array(item, { error: `a list of ${min} to ${max} entries` })
    .min(min)
    .max(max);
}

// ---------------------------------------------------------------------------
// The file format.
// ---------------------------------------------------------------------------

const httpSchema = objectField({
  host: z.string({ error: 'a host name or IP address' }).min(1).max(255).default('127.0.0.1'),
  port: intField(0, 65535).default(8080),
  bodyLimit: sizeField(SECTOR, GiB).default(MiB),
  shutdownTimeoutMs: intField(100, 600_000).default(10_000),
  retryAfterSeconds: intField(0, 3600).default(1),
});

const copySchema = objectField({
  workers: intField(...LIMITS.copyWorkers).optional(),
  inlineThreshold: sizeField(0, GiB).optional(),
  splitThreshold: sizeField(0, GiB).optional(),
  ringCapacity: powerOfTwoField(2, 65536).default(COPY_DEFAULTS.ringCapacity),
  spinMicros: intField(0, 100_000).default(COPY_DEFAULTS.spinMicros),
});

const POLICY_NAMES = `one of ${BACKPRESSURE_POLICIES.map((p) => JSON.stringify(p)).join(', ')}${Object.entries(
  BACKPRESSURE_ALIASES,
)
  .map(([old, now]) => ` ("${old}" is the old name of "${now}")`)
  .join('')}`;

/** A policy name, or an old name for one (BACKPRESSURE_ALIASES), as the policy it means. */
const policyField = z.string({ error: POLICY_NAMES }).transform((v, ctx) => {
  const policy = backpressurePolicy(v);
  if (policy === undefined) {
    ctx.issues.push({ code: 'custom', message: POLICY_NAMES, input: v });
    return z.NEVER;
  }
  return policy;
});

const backpressureSchema = objectField({
  policy: policyField.default(BACKPRESSURE_DEFAULTS.policy),
  waitMs: intField(0, 600_000).optional(),
}).superRefine((b, ctx) => {
  if (b.policy === 'requeue' && b.waitMs !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['waitMs'],
      input: b.waitMs,
      message:
        'no waitMs with policy "requeue", which has no time limit (as Linux\'s virtio-blk); "requeue-bounded" takes one',
    });
  }
});

const SWIOTLB_ALLOWED =
  'the kernel parameter\'s value, "<nslabs>[,<nareas>]" (e.g. "8192,2", "swiotlb=8192,2" or ",4"), as setup_io_tlb_npages() reads it';

/** `swiotlb`: the kernel parameter, read as the kernel reads it (parseSwiotlbParameter). */
const swiotlbField = z
  .union([z.string(), z.number()], { error: SWIOTLB_ALLOWED })
  .transform((v, ctx) => {
    const text = String(v);
    const p = parseSwiotlbParameter(text);
    if (p === undefined || (p.slots === undefined && p.areas === undefined)) {
      ctx.issues.push({ code: 'custom', message: SWIOTLB_ALLOWED, input: v });
      return z.NEVER;
    }
    if (p.force || p.noforce) {
      ctx.issues.push({
        code: 'custom',
        input: v,
        message: `${SWIOTLB_ALLOWED}, without "force" or "noforce": in bounce mode every I/O is bounced (force), and a pool that bounces nothing (noforce) has nothing to run`,
      });
      return z.NEVER;
    }
    // The text as written, for messages.
    return { ...p, text };
  });

const poolSchema = objectField({
  name: nameField().optional(),
  swiotlb: swiotlbField.optional(),
  restricted: sizeField(2 * PAGE_SIZE, GiB).optional(),
  size: sizeField(SEGMENT_BYTES, GiB).optional(),
  slots: intField(0, GiB / IO_TLB_SIZE).optional(),
  areas: intField(...LIMITS.areas).optional(),
  dynamic: z.boolean({ error: 'false (or left out)' }).optional(),
  base: addressField(IO_TLB_SIZE).default(POOL_DEFAULTS.base),
  placement: enumField(PLACEMENTS).optional(),
  backpressure: backpressureSchema.prefault({}),
});

const guestSchema = objectField({
  name: nameField().optional(),
  memory: z
    .union([z.literal('auto'), sizeField(MiB, MAX_GUEST_MEMORY_SIZE)], {
      error: `"auto", or a size such as "512MiB" from 1MiB to ${showSize(MAX_GUEST_MEMORY_SIZE)}`,
    })
    .default('auto'),
  base: addressField(4096).default(GUEST_DEFAULTS.base),
});

const chaosSchema = objectField({
  seed: intField(0, 2 ** 32 - 1).optional(),
  drop: numberField(0, 1).optional(),
  double: numberField(0, 1).optional(),
  badId: numberField(0, 1).optional(),
  badLen: numberField(0, 1).optional(),
  scribble: numberField(0, 1).optional(),
  corruptDesc: numberField(0, 1).optional(),
  jumpIdx: numberField(0, 1).optional(),
});

const deviceSchema = objectField({
  id: nameField().optional(),
  kind: enumField(DEVICE_KINDS as readonly DeviceKind[] as [DeviceKind, ...DeviceKind[]]).default(
    'ram-blk',
  ),
  guest: nameField().optional(),
  pool: nameField().optional(),
  capacity: sizeField(SECTOR, 2 ** 50, SECTOR).default(DEVICE_DEFAULTS.capacity),
  queues: intField(...LIMITS.queues).default(DEVICE_DEFAULTS.queues),
  queueSize: powerOfTwoField(2, MAX_QUEUE_SIZE).default(DEVICE_DEFAULTS.queueSize),
  depth: intField(...LIMITS.depth).default(DEVICE_DEFAULTS.depth),
  maxRequestBytes: sizeField(SECTOR, 64 * MiB, SECTOR).default(DEVICE_DEFAULTS.maxRequestBytes),
  timeoutMs: intField(1, 3_600_000).default(DEVICE_DEFAULTS.timeoutMs),
  readyTimeoutMs: intField(1, 3_600_000).default(DEVICE_DEFAULTS.readyTimeoutMs),
  file: z.string({ error: 'a file path' }).min(1).optional(),
  sync: enumField(['durable', 'none']).default(DEVICE_DEFAULTS.sync),
  minAlignMask: z
    .number({
      error: `a DMA alignment mask: 0 or 2^k - 1 (1, 3, 7... 4095...), at most ${MAX_MIN_ALIGN_MASK}`,
    })
    .refine(isMinAlignMask)
    .default(DEVICE_DEFAULTS.minAlignMask),
  serial: z.string({ error: 'a string of at most 20 characters' }).max(20).optional(),
  spinMicros: intField(0, 100_000).optional(),
  pollMicros: intField(0, 100_000).default(DEVICE_DEFAULTS.pollMicros),
  chaos: chaosSchema.optional(),
  fromDeviceBounce: enumField(FROM_DEVICE_BOUNCES).optional(),
});

const DEFAULT_DEVICES = [
  { id: 'blk0', kind: 'ram-blk', capacity: DEVICE_DEFAULTS.capacity },
  { id: 'null0', kind: 'null' },
] as const;

/**
 * What a config that names neither pools nor devices runs: the default devices,
 * each behind a pool of its own (as a device-tree restricted-dma-pool gives one
 * device its own pool), so that no device can read or alter another's I/O. Both
 * pools are Linux's default size; their guest-physical ranges follow each other.
 */
export const EMBEDDED_DEFAULT = {
  pools: [
    { name: 'pool0', base: 0 },
    { name: 'pool1', base: POOL_DEFAULTS.size },
  ],
  devices: [
    { ...DEFAULT_DEVICES[0], pool: 'pool0' },
    { ...DEFAULT_DEVICES[1], pool: 'pool1' },
  ],
} as const;

const fileSchemaFields = objectField({
  kernel: enumField(KERNEL_VERSIONS).default(DEFAULT_KERNEL),
  mode: enumField(MODES).default(DEFAULT_MODE),
  fromDeviceBounce: enumField(FROM_DEVICE_BOUNCES).default(SERVICE_DEFAULTS.fromDeviceBounce),
  placement: enumField(PLACEMENTS).default(SERVICE_DEFAULTS.placement),
  logLevel: enumField(LOG_LEVELS).default('info'),
  http: httpSchema.prefault({}),
  copy: copySchema.prefault({}),
  pools: listField(poolSchema, 1, 64).prefault([{}]),
  guests: listField(guestSchema, 1, 32).prefault([{}]),
  devices: listField(deviceSchema, 0, 64).prefault([...DEFAULT_DEVICES]),
});

/**
 * The embedded default's pools and devices, fresh objects, for a config that names
 * neither: the file schema fills them in, and parseConfig (load.ts) does so before
 * the command line's flags redeclare the first pool, so the devices stay on pools
 * of their own.
 */
export function embeddedDefault(): {
  pools: Record<string, unknown>[];
  devices: Record<string, unknown>[];
} {
  return {
    pools: EMBEDDED_DEFAULT.pools.map((p) => ({ ...p })),
    devices: EMBEDDED_DEFAULT.devices.map((d) => ({ ...d })),
  };
}

/**
 * Moves the embedded default's second pool to where the first now ends, once a
 * flag (serve --swiotlb, --restricted) has redeclared the first: the two stay
 * apart at any size the flag gives. A first pool that does not form a geometry
 * is left as it is, for the config's checks to name.
 */
export function followFirstPool(pools: Record<string, unknown>[]): void {
  const second = pools[1];
  const parsed = poolSchema.safeParse(pools[0]);
  if (second === undefined || !parsed.success) return;
  try {
    const g = declaredGeometry(parsed.data);
    second.base = g.base + g.bytes;
  } catch {
    // Reported by checkPoolGeometries with the field and the flag that set it.
  }
}

/** The file format: {@link EMBEDDED_DEFAULT} fills `pools` and `devices` when both are absent. */
const fileSchema = z.preprocess((raw) => {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  if (r.pools !== undefined || r.devices !== undefined) return raw;
  return { ...r, ...embeddedDefault() };
}, fileSchemaFields);

/** A config file as written: every field optional. */
export type ConfigFile = z.input<typeof fileSchemaFields>;
type Parsed = z.output<typeof fileSchemaFields>;

// ---------------------------------------------------------------------------
// Cross-field checks and resolution of the defaults that depend on other fields.
// ---------------------------------------------------------------------------

/** How much guest memory one device reserves, as BlkDriver lays it out. */
export function deviceGuestBytes(
  d: Pick<DeviceConfig, 'queues' | 'queueSize' | 'depth' | 'maxRequestBytes' | 'minAlignMask'>,
  mode: Mode,
): { bytes: number; depth: number } {
  const layout = deviceGuestLayout(d, mode);
  return { bytes: layout.bytes, depth: layout.depth };
}

/** The largest queue size whose virtqueue fits one pool segment (bounce mode). */
export const MAX_BOUNCE_QUEUE_SIZE = (() => {
  let n = MAX_QUEUE_SIZE;
  while (n > 2 && virtqueueBytes(n) > SEGMENT_BYTES) n /= 2;
  return n;
})();

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

// Each rule below is one function that states its rule at its head and reports
// what breaks it through `issue` (the path of the offending field, its value, and
// what is allowed). serviceConfigSchema runs them in a fixed order, which is the
// order of the issues in an error message.

/** Reports one broken rule at `path`. */
type Report = (path: (string | number)[], input: unknown, message: string) => void;

/** The names entries go by: given, or "pool<i>", "guest<i>", "dev<i>". */
interface Names {
  pools: string[];
  guests: string[];
  devices: string[];
}

function namesOf(c: Parsed): Names {
  return {
    pools: c.pools.map((p, i) => p.name ?? `pool${i}`),
    guests: c.guests.map((g, i) => g.name ?? `guest${i}`),
    devices: c.devices.map((d, i) => d.id ?? `dev${i}`),
  };
}

/** Rule: no two entries of one list (pools, guests, devices) have the same name. */
function checkUniqueNames(list: keyof Names, names: readonly string[], issue: Report): void {
  const seen = new Map<string, number>();
  names.forEach((name, i) => {
    const first = seen.get(name);
    if (first !== undefined) {
      issue(
        [list, i, list === 'devices' ? 'id' : 'name'],
        name,
        `a name no other entry of ${list} has ("${name}" is ${list}[${first}])`,
      );
    } else seen.set(name, i);
  });
}

interface PoolRange {
  name: string;
  start: number;
  end: number;
}

type ParsedPool = Parsed['pools'][number];

/** A pool's declaration as the kernel's pieces: slots and areas from `swiotlb` or their own fields. */
/** The geometry a parsed pool entry declares (computeGeometry's checks throw). */
function declaredGeometry(p: ParsedPool): Geometry {
  return computeGeometry(
    poolGeometryOptions({
      restricted: p.restricted,
      size: p.size,
      ...declaredShape(p),
      base: p.base,
    }),
  );
}

function declaredShape(p: ParsedPool): { slots?: number; areas?: number } {
  return {
    ...(p.swiotlb?.slots !== undefined ? { slots: p.swiotlb.slots } : {}),
    ...(p.swiotlb?.areas !== undefined ? { areas: p.swiotlb.areas } : {}),
    ...(p.slots !== undefined ? { slots: p.slots } : {}),
    ...(p.areas !== undefined ? { areas: p.areas } : {}),
  };
}

/**
 * Rule: a pool is declared one way: a restricted-dma-pool by `restricted` alone;
 * a default pool by `swiotlb` or by `slots`/`areas`, not both, with `size` (the
 * architecture's swiotlb_adjust_size()) only when no nslabs is given (the kernel
 * ignores it then). `dynamic` is refused: the service's pools do not grow.
 * Returns whether the declaration is good.
 */
function checkPoolDeclaration(p: ParsedPool, i: number, issue: Report): boolean {
  const at = (field: string) => ['pools', i, field];
  const given = (['swiotlb', 'size', 'slots', 'areas'] as const).filter((f) => p[f] !== undefined);
  let ok = true;
  if (p.restricted !== undefined && given.length > 0) {
    const first = given[0]!;
    issue(
      at(first),
      first === 'swiotlb' ? p.swiotlb?.text : p[first],
      `nothing beside "restricted": a restricted-dma-pool is given by its size alone (exact slots, one area), and ${given.join(', ')} ${given.length > 1 ? 'are' : 'is'} for a default pool (swiotlb=)`,
    );
    ok = false;
  }
  if (p.swiotlb !== undefined && (p.slots !== undefined || p.areas !== undefined)) {
    issue(
      at(p.slots !== undefined ? 'slots' : 'areas'),
      p.slots ?? p.areas,
      'either "swiotlb" or "slots"/"areas": "swiotlb": "N,A" is slots N and areas A',
    );
    ok = false;
  }
  if (p.size !== undefined && declaredShape(p).slots !== undefined) {
    issue(
      at('size'),
      formatSize(p.size),
      'no size beside a slot count: swiotlb_adjust_size() leaves a swiotlb=<nslabs> as given, unless it is 32768 (the default count, which it resizes); give one of them',
    );
    ok = false;
  }
  if (p.dynamic === true) {
    issue(
      at('dynamic'),
      p.dynamic,
      'false: the service\'s pools never grow (a device thread is handed one fixed region at start); "size --dynamic" and "replay --dynamic" show what CONFIG_SWIOTLB_DYNAMIC changes',
    );
    ok = false;
  }
  return ok;
}

/** The pool a resolved (or parsed) pool entry declares, as computeGeometry takes it. */
export function poolGeometryOptions(
  p: Pick<PoolConfig, 'restricted' | 'size' | 'slots' | 'areas' | 'base'>,
): GeometryOptions {
  if (p.restricted !== undefined) return { restricted: true, size: p.restricted, base: p.base };
  return {
    ...(p.size !== undefined ? { size: p.size } : {}),
    ...(p.slots !== undefined ? { slots: p.slots } : {}),
    ...(p.areas !== undefined ? { areas: p.areas } : {}),
    base: p.base,
  };
}

/**
 * Rule: each pool is declared one way (checkPoolDeclaration) and forms a geometry
 * the kernel would set up (computeGeometry's checks). Returns the guest-physical
 * range of each pool that does, for the overlap rule.
 */
function checkPoolGeometries(
  pools: Parsed['pools'],
  names: readonly string[],
  issue: Report,
): PoolRange[] {
  const ranges: PoolRange[] = [];
  pools.forEach((p, i) => {
    if (!checkPoolDeclaration(p, i, issue)) return;
    try {
      const g = declaredGeometry(p);
      ranges.push({ name: names[i]!, start: g.base, end: g.base + g.bytes });
    } catch (err) {
      const field =
        p.restricted !== undefined
          ? 'restricted'
          : p.swiotlb !== undefined
            ? 'swiotlb'
            : p.slots !== undefined
              ? 'slots'
              : p.areas !== undefined
                ? 'areas'
                : 'size';
      const shown = field === 'swiotlb' ? p.swiotlb?.text : p[field];
      issue(['pools', i, field], shown, `a pool geometry that works: ${(err as Error).message}`);
    }
  });
  return ranges;
}

type ParsedDevice = Parsed['devices'][number];

/** Rule: a device's guest and pool (given, or the first ones) are configured. */
function checkDeviceRefs(d: ParsedDevice, i: number, names: Names, issue: Report): void {
  const guest = d.guest ?? names.guests[0]!;
  const pool = d.pool ?? names.pools[0]!;
  if (!names.guests.includes(guest)) {
    issue(
      ['devices', i, 'guest'],
      d.guest,
      `the name of a configured guest (${names.guests.map((n) => `"${n}"`).join(', ')})`,
    );
  }
  if (!names.pools.includes(pool)) {
    issue(
      ['devices', i, 'pool'],
      d.pool,
      `the name of a configured pool (${names.pools.map((n) => `"${n}"`).join(', ')})`,
    );
  }
}

/** Rule: only a file-blk device takes `file`, only a chaos device takes `chaos`. */
function checkKindOptions(d: ParsedDevice, i: number, issue: Report): void {
  if (d.file !== undefined && d.kind !== 'file-blk') {
    issue(
      ['devices', i, 'file'],
      d.file,
      `no file: only a file-blk device has a backing file (this one is ${d.kind})`,
    );
  }
  if (d.chaos !== undefined && d.kind !== 'chaos') {
    issue(
      ['devices', i, 'chaos'],
      d.chaos,
      `no chaos settings: only a chaos device takes them (this one is ${d.kind})`,
    );
  }
}

/**
 * Rule: in bounce and shared mode a virtqueue fits one 256 KiB pool segment (it
 * is one allocation from the pool), so queueSize is at most MAX_BOUNCE_QUEUE_SIZE.
 */
function checkBounceQueueSize(
  mode: Parsed['mode'],
  d: ParsedDevice,
  i: number,
  issue: Report,
): void {
  if (mode !== 'direct' && d.queueSize > MAX_BOUNCE_QUEUE_SIZE) {
    issue(
      ['devices', i, 'queueSize'],
      d.queueSize,
      `at most ${MAX_BOUNCE_QUEUE_SIZE} in ${mode} mode (a virtqueue must fit one 256 KiB pool segment)`,
    );
  }
}

/** What a guest's devices need of its memory, with one line per device for the message. */
interface GuestNeed {
  bytes: number;
  parts: string[];
}

/** Per guest name: the guest memory its devices reserve (deviceGuestLayout). */
function guestNeeds(c: Parsed, names: Names): Map<string, GuestNeed> {
  const needs = new Map<string, GuestNeed>();
  c.devices.forEach((d, i) => {
    const guest = d.guest ?? names.guests[0]!;
    const { bytes, depth } = deviceGuestBytes(d, c.mode);
    const need = needs.get(guest) ?? { bytes: 0, parts: [] };
    need.bytes += bytes;
    need.parts.push(
      `${names.devices[i]}: ${d.queues} queue${d.queues > 1 ? 's' : ''} x ${depth} requests x ${formatSize(d.maxRequestBytes)}`,
    );
    needs.set(guest, need);
  });
  return needs;
}

type ParsedGuest = Parsed['guests'][number];

/**
 * Rule: a guest's memory holds what its devices reserve (request buffers and
 * headers, and direct-mode queues) and is at most MAX_GUEST_MEMORY_SIZE; "auto"
 * is what they need, rounded up to a MiB. Returns the size when it is good.
 */
function checkGuestMemory(
  g: ParsedGuest,
  i: number,
  need: GuestNeed,
  issue: Report,
): number | undefined {
  const size = g.memory === 'auto' ? autoMemory(need.bytes) : g.memory;
  const why = `its devices need ${need.bytes} bytes for request buffers and queues (${need.parts.join('; ')})`;
  const shown = g.memory === 'auto' ? 'auto' : formatSize(g.memory);
  if (size > MAX_GUEST_MEMORY_SIZE) {
    issue(
      ['guests', i, 'memory'],
      shown,
      `a guest memory of at most ${showSize(MAX_GUEST_MEMORY_SIZE)}, but ${why}: lower their depth, maxRequestBytes or queues, or spread them over more guests`,
    );
    return undefined;
  }
  if (size < need.bytes) {
    issue(
      ['guests', i, 'memory'],
      shown,
      `at least ${formatSize(autoMemory(need.bytes))} (or "auto"): ${why}`,
    );
    return undefined;
  }
  return size;
}

/**
 * Rule: a guest's memory [base, base + size) overlaps no pool: both live in the
 * one guest-physical address space.
 */
function checkGuestClearOfPools(
  g: ParsedGuest,
  i: number,
  size: number,
  pools: readonly PoolRange[],
  issue: Report,
): void {
  for (const p of pools) {
    if (g.base < p.end && p.start < g.base + size) {
      issue(
        ['guests', i, 'base'],
        g.base,
        `an address range clear of pool "${p.name}" (${hex(p.start)}-${hex(p.end - 1)}); guest memory is ${hex(g.base)}-${hex(g.base + size - 1)}`,
      );
    }
  }
}

/** The cross-field rules, in the order their issues are reported. */
function checkConfig(c: Parsed, issue: Report): void {
  // Only lists that passed their own checks are cross-checked.
  if (c.pools.length === 0 || c.guests.length === 0) return;
  const names = namesOf(c);
  checkUniqueNames('pools', names.pools, issue);
  checkUniqueNames('guests', names.guests, issue);
  checkUniqueNames('devices', names.devices, issue);
  const poolRanges = checkPoolGeometries(c.pools, names.pools, issue);
  c.devices.forEach((d, i) => {
    checkDeviceRefs(d, i, names, issue);
    checkKindOptions(d, i, issue);
    checkBounceQueueSize(c.mode, d, i, issue);
  });
  const needs = guestNeeds(c, names);
  c.guests.forEach((g, i) => {
    const need = needs.get(names.guests[i]!) ?? { bytes: 0, parts: [] };
    const size = checkGuestMemory(g, i, need, issue);
    if (size !== undefined) checkGuestClearOfPools(g, i, size, poolRanges, issue);
  });
}

/** A device with every default filled in (spinMicros: the process-wide default). */
function resolveDevice(
  d: ParsedDevice,
  id: string,
  names: Names,
  spinMicros: number,
  fromDeviceBounce: FromDeviceBounce,
): DeviceConfig {
  const out: DeviceConfig = {
    id,
    kind: d.kind,
    guest: d.guest ?? names.guests[0]!,
    pool: d.pool ?? names.pools[0]!,
    capacity: d.capacity,
    queues: d.queues,
    queueSize: d.queueSize,
    depth: d.depth,
    maxRequestBytes: d.maxRequestBytes,
    timeoutMs: d.timeoutMs,
    readyTimeoutMs: d.readyTimeoutMs,
    sync: d.sync,
    minAlignMask: d.minAlignMask,
    serial: d.serial ?? id.slice(0, 20),
    spinMicros: d.spinMicros ?? spinMicros,
    pollMicros: d.pollMicros,
    fromDeviceBounce: d.fromDeviceBounce ?? fromDeviceBounce,
  };
  if (d.kind === 'file-blk') out.file = d.file ?? `${id}.img`;
  if (d.kind === 'chaos') out.chaos = { seed: DEFAULT_CHAOS_SEED, ...DEFAULT_CHAOS, ...d.chaos };
  return out;
}

/**
 * A pool with its defaults filled in: `swiotlb` becomes `slots`/`areas` (the same
 * kernel parameter), a default pool gets its areas (the CPUs, rounded), a
 * restricted pool none; `waitMs` only where the policy has a limit.
 */
function resolvePool(p: ParsedPool, name: string, topPlacement: Placement): PoolConfig {
  const { policy, waitMs } = p.backpressure;
  const backpressure: BackpressureConfig =
    policy === 'requeue' ? { policy } : { policy, waitMs: waitMs ?? BACKPRESSURE_DEFAULTS.waitMs };
  const placement = p.placement ?? topPlacement;
  if (p.restricted !== undefined) {
    return { name, restricted: p.restricted, base: p.base, placement, backpressure };
  }
  const shape = declaredShape(p);
  return {
    name,
    ...(p.size !== undefined ? { size: p.size } : {}),
    ...(shape.slots !== undefined ? { slots: shape.slots } : {}),
    areas: shape.areas ?? defaultPoolAreas(),
    base: p.base,
    placement,
    backpressure,
  };
}

/** The configuration with every default filled in, including those that depend on other fields. */
function resolveConfig(c: Parsed): ServiceConfig {
  const names = namesOf(c);
  const spinMicros = serviceDeviceSpinMicros(c.devices);
  const devices = c.devices.map((d, i) =>
    resolveDevice(d, names.devices[i]!, names, spinMicros, c.fromDeviceBounce),
  );
  const guests: GuestConfig[] = c.guests.map((g, i) => {
    const name = names.guests[i]!;
    const need = devices
      .filter((d) => d.guest === name)
      .reduce((sum, d) => sum + deviceGuestBytes(d, c.mode).bytes, 0);
    return { name, memory: g.memory === 'auto' ? autoMemory(need) : g.memory, base: g.base };
  });
  const workers = c.copy.workers ?? defaultCopyWorkersFor(c.devices);
  return {
    kernel: c.kernel,
    mode: c.mode,
    fromDeviceBounce: c.fromDeviceBounce,
    placement: c.placement,
    logLevel: c.logLevel,
    http: c.http,
    copy: {
      ...c.copy,
      workers,
      inlineThreshold: c.copy.inlineThreshold ?? defaultInlineThreshold(),
      splitThreshold: c.copy.splitThreshold ?? defaultSplitThreshold(workers),
    },
    pools: c.pools.map((p, i) => resolvePool(p, names.pools[i]!, c.placement)),
    guests,
    devices,
  };
}

export const serviceConfigSchema = fileSchema
  .superRefine(
    (c, ctx) =>
      checkConfig(c, (path, input, message) =>
        ctx.addIssue({ code: 'custom', path, input, message }),
      ),
    // The cross-field rules read every field as valid: a value out of range (which
    // zod does not abort on) is reported by its own check, not run through them.
    { when: (payload) => payload.issues.length === 0 },
  )
  .transform(resolveConfig);

/** Guest memory "auto": what the devices need, rounded up to a MiB, at least 1 MiB. */
function autoMemory(needed: number): number {
  return Math.max(MiB, Math.ceil(needed / MiB) * MiB);
}
