import type { FastifyRequest } from 'fastify';
import type { BlkDriver } from '../../mediator/blk-driver.js';
import type { PoolEntry } from '../../mediator/mediator.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import type { Service } from '../service.js';

/** What every route plugin is registered with. */
export interface RouteOptions {
  service: Service;
}

export type DeviceParams = { id: string };
export type BlockParams = { id: string; lba: string };
export type PoolParams = { name: string };

const DIGITS = /^\d+$/;

/** The device named in the path, or 404 HTTP_UNKNOWN_DEVICE. */
export function deviceOf(service: Service, id: string): BlkDriver {
  const device = service.device(id);
  if (!device) {
    throw httpError(
      'HTTP_UNKNOWN_DEVICE',
      `no device "${id}" (devices: ${[...service.mediator.devices.keys()].join(', ')})`,
    );
  }
  return device;
}

/** The pool named in the path, or 404 HTTP_UNKNOWN_POOL. */
export function poolOf(service: Service, name: string): PoolEntry {
  const pools = service.mediator.pools;
  const entry = pools.get(name);
  if (!entry) {
    throw httpError(
      'HTTP_UNKNOWN_POOL',
      `no pool "${name}" (pools: ${[...pools.keys()].join(', ')})`,
    );
  }
  return entry;
}

/** The first pool of the configuration: what /v1/pool answers for. */
export function defaultPoolOf(service: Service): PoolEntry {
  return [...service.mediator.pools.values()][0]!;
}

/** A sector number from the path; digits too long for a safe integer are past the end of any device (416). */
export function lbaOf(raw: string): number {
  if (!DIGITS.test(raw)) {
    throw httpError(
      'HTTP_INVALID_PARAMETER',
      `lba ${JSON.stringify(raw)} is not a non-negative integer (a 512-byte sector number)`,
    );
  }
  return Number(raw);
}

/**
 * 400 HTTP_INVALID_PARAMETER when the query of a block read has a parameter
 * other than count: a misspelt one (`?cnt=8`) would otherwise read one sector
 * with a 200, as the JSON body of POST .../io refuses an unknown field.
 */
export function onlyCount(query: Record<string, unknown>): void {
  for (const name in query) {
    if (name !== 'count') {
      throw httpError(
        'HTTP_INVALID_PARAMETER',
        `unknown query parameter ${JSON.stringify(name)}: a block read takes count only`,
      );
    }
  }
}

/** ?count=, in sectors: 1 when absent. */
export function countOf(raw: unknown): number {
  if (raw === undefined) return 1;
  if (typeof raw !== 'string' || !DIGITS.test(raw) || Number(raw) < 1) {
    throw httpError(
      'HTTP_INVALID_PARAMETER',
      `count ${JSON.stringify(raw)} is not an integer of at least 1 (a number of 512-byte sectors)`,
    );
  }
  return Number(raw);
}

/**
 * 416 unless [lba, lba + sectors) lies on the device. The texts are the digits the
 * client sent: the message quotes the range exactly even where the numbers lost
 * precision (more than 2^53).
 */
export function checkRange(
  device: BlkDriver,
  lba: number,
  sectors: number,
  lbaText = String(lba),
  sectorsText = String(sectors),
): void {
  const total = device.capacity / SECTOR_SIZE;
  if (!(lba + sectors <= total)) {
    const first = BigInt(lbaText);
    const last = first + BigInt(sectorsText) - 1n;
    throw httpError(
      'HTTP_OUT_OF_RANGE',
      `sectors ${first} to ${last} are past the end of ${device.id} (${total} sectors of 512 bytes: lba 0 to ${total - 1})`,
      { capacity: device.capacity },
    );
  }
}

function mediaType(request: FastifyRequest): string {
  const header = request.headers['content-type'];
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/** 415 HTTP_UNSUPPORTED_MEDIA_TYPE unless the body is of `type`. */
export function requireType(request: FastifyRequest, type: string): void {
  // The common case, the type exactly: nothing to take apart.
  if (request.headers['content-type'] === type) return;
  const got = mediaType(request);
  if (got !== type) {
    throw httpError(
      'HTTP_UNSUPPORTED_MEDIA_TYPE',
      `Content-Type ${got ? JSON.stringify(got) : '(none)'} is not accepted here; send ${type}`,
    );
  }
}

/**
 * An onRequest hook that runs `check` and fails the request with what it throws.
 * A callback hook, not an async one: no promise per request.
 */
export function checkFirst<P>(
  check: (request: FastifyRequest<{ Params: P }>) => void,
): (request: FastifyRequest<{ Params: P }>, reply: unknown, done: (err?: Error) => void) => void {
  return (request, _reply, done) => {
    try {
      check(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  };
}

/** 503 MEDIATOR_CLOSED while the service drains. */
export function refuseWhileDraining(service: Service): void {
  if (service.refusing) {
    throw httpError('MEDIATOR_CLOSED', 'the service is shutting down and takes no new I/O');
  }
}
