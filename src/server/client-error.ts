import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { errorBody } from './errors.js';

/**
 * The answer to a request Node's HTTP parser refused before any route ran (a bad
 * Content-Length, a header block over the size limit, a broken request line...):
 * Fastify's `clientErrorHandler`. There is no request or reply object, so the
 * answer, in the service's error format with code HTTP_BAD_REQUEST, is written
 * raw to the socket, and the connection is closed (the parser cannot go on
 * reading it).
 */

/** What Node reports on a `clientError`: llhttp's HPE_* code and reason, or a socket error. */
export interface ClientError extends Error {
  code?: string;
  /** llhttp's words for what it refused, e.g. "Invalid character in Content-Length". */
  reason?: string;
}

/**
 * How long a closed-for-writing connection may stay open for the client to read
 * the answer and close its side, before it is destroyed.
 */
const CLOSE_GRACE_MS = 2000;

/** The status and message of a refused request (statuses as Node's own default answer). */
export function clientProblem(err: ClientError): { status: number; message: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        message: `the request line and headers are larger than the server accepts (${maxHeaderSize} bytes)`,
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, message: 'the chunk extensions of the request body are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, message: 'the request did not arrive in full in time' };
  }
  const what = err.reason ?? err.message;
  return {
    status: 400,
    message: `malformed HTTP request: ${what}${err.code ? ` (${err.code})` : ''}`,
  };
}

/** The raw HTTP/1.1 answer: status line, headers, JSON error body. */
export function clientErrorResponse(err: ClientError): string {
  const { status, message } = clientProblem(err);
  const body = JSON.stringify(errorBody(status, 'HTTP_BAD_REQUEST', message));
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

/** Fastify's `clientErrorHandler` for the service, logging through `log`. */
export function clientErrorHandler(log: FastifyBaseLogger) {
  return (err: ClientError, socket: Socket): void => {
    // A reset connection is gone already (Node's docs for 'clientError').
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // Answered already: the parser refuses every later chunk of the connection too.
    if (socket.writableEnded) return;
    const { status, message } = clientProblem(err);
    log.debug({ code: 'HTTP_BAD_REQUEST', status, parserCode: err.code }, message);
    // As Node's default: no answer when the socket cannot take one, or when an
    // answer on it has begun (a second one would corrupt it).
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    // end(), not destroy(): closing a socket with unread input (the rest of an
    // oversized header) makes the kernel send RST, which can drop the answer
    // before the client reads it. end() sends it and a FIN; the socket goes when
    // the client closes its side, or after the grace period.
    socket.end(clientErrorResponse(err));
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}
