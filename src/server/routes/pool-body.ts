import type { FastifyRequest } from 'fastify';
import type { PoolBuffer } from '../../mediator/blk-driver.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { httpError } from '../errors.js';
import type { Service } from '../service.js';
import { type BlockParams, checkRange, deviceOf, lbaOf } from './common.js';

/** What the body parser hands the route: pool buffers (Content-Length known) or a Buffer. */
export type BlockBody = PoolBuffer | Buffer;

/** Node's `Readable` as far as the parser uses it (the request payload stream). */
type Payload = NodeJS.ReadableStream & { destroyed?: boolean };

/**
 * Shared mode's body parser for block writes: the body goes straight into pool
 * buffers the device allocated for the write (BlkDriver.allocBuffer), chunk by
 * chunk as it arrives, with no Buffer in between. The size comes from
 * Content-Length and is checked first (a non-empty multiple of 512, within
 * http.bodyLimit and the device), so no pool slot is taken for a body that would
 * be refused. Without Content-Length (chunked), the body is collected into one
 * Buffer as in the other modes. Whatever ends the body (an error, an abort, a
 * length that does not match), the buffers are released; once parsed, the route
 * writes them (which frees them) and an onResponse hook releases any left over.
 */
export function poolBodyParser(service: Service, bodyLimit: number) {
  return (
    request: FastifyRequest,
    payload: Payload,
    done: (err: Error | null, body?: BlockBody) => void,
  ): void => {
    const header = request.headers['content-length'];
    if (header === undefined) {
      collect(payload, bodyLimit, done);
      return;
    }
    const length = Number(header);
    try {
      if (length > bodyLimit) {
        throw Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE' });
      }
      if (!Number.isSafeInteger(length) || length === 0 || length % SECTOR_SIZE !== 0) {
        throw httpError(
          'HTTP_BAD_BODY',
          `the body is ${header} bytes: block data must be a non-empty multiple of ${SECTOR_SIZE} bytes`,
        );
      }
      const params = request.params as BlockParams;
      const device = deviceOf(service, params.id);
      checkRange(device, lbaOf(params.lba), length / SECTOR_SIZE, params.lba);
      void device.allocBuffer(length).then(
        (buffer) => stream(payload, buffer, done),
        (err: Error) => done(err),
      );
    } catch (err) {
      done(err as Error);
    }
  };
}

/** Copies the payload into `buffer` as it arrives; exactly buffer.length bytes or an error. */
function stream(
  payload: Payload,
  buffer: PoolBuffer,
  done: (err: Error | null, body?: BlockBody) => void,
): void {
  let at = 0;
  let finished = false;
  const finish = (err: Error | null) => {
    if (finished) return;
    finished = true;
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    payload.removeListener('close', onClose);
    if (err) {
      buffer.release();
      done(err);
    } else done(null, buffer);
  };
  const mismatch = () =>
    httpError(
      'HTTP_BAD_BODY',
      `the body does not match its Content-Length (${buffer.length} bytes)`,
    );
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (at + bytes.length > buffer.length) {
      finish(mismatch());
      return;
    }
    buffer.write(bytes, at);
    at += bytes.length;
  };
  const onEnd = () => finish(at === buffer.length ? null : mismatch());
  const onError = (err: Error) =>
    finish(Object.assign(err, { statusCode: (err as { statusCode?: number }).statusCode ?? 400 }));
  const onClose = () => finish(httpError('HTTP_BAD_BODY', 'the client closed the body early'));
  if (payload.destroyed) {
    finish(httpError('HTTP_BAD_BODY', 'the client closed the body early'));
    return;
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.on('close', onClose);
  payload.resume();
}

/** A body without Content-Length: into one Buffer, within the limit. */
function collect(
  payload: Payload,
  limit: number,
  done: (err: Error | null, body?: BlockBody) => void,
): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let finished = false;
  const finish = (err: Error | null) => {
    if (finished) return;
    finished = true;
    payload.removeAllListeners('data');
    if (err) done(err);
    else done(null, Buffer.concat(chunks, received));
  };
  payload.on('data', (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
    received += bytes.length;
    if (received > limit) {
      finish(Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE' }));
      return;
    }
    chunks.push(bytes);
  });
  payload.on('end', () => finish(null));
  payload.on('error', (err: Error) => finish(Object.assign(err, { statusCode: 400 })));
  payload.resume();
}
