import { STATUS_CODES } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, isMediatorError, MediatorError } from '../errors.js';

/** The JSON body of every error answer. */
export interface ErrorBody {
  statusCode: number;
  code: ErrorCode;
  /** The HTTP reason phrase of statusCode. */
  error: string;
  message: string;
}

export interface Problem {
  status: number;
  code: ErrorCode;
  message: string;
  headers: Record<string, string>;
  /** Not one of ours: an unexpected error, worth a log line with its stack. */
  unexpected: boolean;
}

/** Codes whose 503 means "try again shortly". */
const RETRYABLE: ReadonlySet<string> = new Set([
  'MEDIATOR_BACKPRESSURE_TIMEOUT',
  'SWIOTLB_POOL_FULL',
  'MEDIATOR_DEVICE_RESET',
  'MEDIATOR_CLOSED',
  'COPY_ENGINE_CLOSED',
  'HTTP_NOT_READY',
]);

export function httpError(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
): MediatorError {
  return new MediatorError(code, message, details);
}

/** What an error answer needs to know of the server's settings. */
export interface ProblemContext {
  /** The Retry-After of a 503 (http.retryAfterSeconds). */
  retryAfterSeconds: number;
  /** http.bodyLimit, quoted when a body is too large. */
  bodyLimit: number;
}

/**
 * What the client is told about an error, in the stable codes of src/errors.ts.
 * `contentType` is the request's, named when Fastify refuses it (its own message
 * is the bare status text).
 */
export function toProblem(err: unknown, ctx: ProblemContext, contentType?: string): Problem {
  const { retryAfterSeconds } = ctx;
  const headers: Record<string, string> = {};
  if (isMediatorError(err)) {
    if (err.status === 503 || RETRYABLE.has(err.code)) {
      headers['retry-after'] = String(retryAfterSeconds);
    }
    const capacity = err.details?.capacity;
    // MEDIATOR_IO_ERROR is the service's failure (500: the device's disk failed the
    // request), but for the driver's refusal of a range past the device, the one
    // that carries the capacity: that is the client's, 416 with Content-Range.
    const status =
      err.code === 'MEDIATOR_IO_ERROR' && typeof capacity === 'number' ? 416 : err.status;
    if (status === 416 && typeof capacity === 'number') {
      headers['content-range'] = `bytes */${capacity}`;
    }
    return { status, code: err.code, message: err.message, headers, unexpected: false };
  }
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        status: 413,
        code: 'HTTP_BODY_TOO_LARGE',
        message: `the request body is larger than http.bodyLimit (${ctx.bodyLimit} bytes)`,
        headers,
        unexpected: false,
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      // A route with no parser for this type (the body-less POSTs take JSON or
      // text, and ignore it); the routes with a body say what they take themselves.
      return {
        status: 415,
        code: 'HTTP_UNSUPPORTED_MEDIA_TYPE',
        message: `Content-Type ${contentType ? JSON.stringify(contentType) : '(none)'} is not accepted here; this route takes no body, or one of application/json or text/plain, which it ignores`,
        headers,
        unexpected: false,
      };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: 'HTTP_BAD_BODY', message, headers, unexpected: false };
  }
  if (err instanceof SyntaxError && status === 400) {
    return {
      status: 400,
      code: 'HTTP_BAD_BODY',
      message: `the body is not valid JSON: ${message}`,
      headers,
      unexpected: false,
    };
  }
  if (status >= 400 && status < 500) {
    return { status, code: 'HTTP_BAD_REQUEST', message, headers, unexpected: false };
  }
  return {
    status: 500,
    code: 'HTTP_INTERNAL',
    message: 'internal error (logged)',
    headers,
    unexpected: true,
  };
}

export function errorBody(status: number, code: ErrorCode, message: string): ErrorBody {
  return { statusCode: status, code, error: STATUS_CODES[status] ?? 'Error', message };
}

/** Sends an error answer; logs only what is unexpected (nothing per request at info). */
export function sendProblem(
  err: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  ctx: ProblemContext,
): FastifyReply {
  const p = toProblem(err, ctx, request.headers['content-type']);
  if (p.unexpected)
    request.log.error({ err }, `unexpected error on ${request.method} ${request.url}`);
  else request.log.debug({ code: p.code, status: p.status }, p.message);
  return reply
    .code(p.status)
    .headers(p.headers)
    .type('application/json; charset=utf-8')
    .send(errorBody(p.status, p.code, p.message));
}
