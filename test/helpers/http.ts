import { Writable } from 'node:stream';
import { expect } from 'vitest';
import { ERROR_SPECS } from '../../src/errors.js';

/** xorshift bytes: reproducible "random" data. */
export function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A pino destination that keeps the lines it gets. */
export function logCapture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      text.push(String(chunk));
      done();
    },
  });
  return {
    stream,
    lines: () =>
      text
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The JSON error format: {statusCode, code, error, message}, a known code. */
export function expectErrorBody(
  status: number,
  body: unknown,
  code: string,
  message?: RegExp,
): void {
  expect(body).toMatchObject({ statusCode: status, code });
  const b = body as { error: unknown; message: unknown };
  expect(typeof b.error).toBe('string');
  expect(typeof b.message).toBe('string');
  expect(Object.keys(ERROR_SPECS)).toContain(code);
  if (message) expect(b.message).toMatch(message);
}

export const OCTET = { 'content-type': 'application/octet-stream' } as const;
export const JSON_TYPE = { 'content-type': 'application/json' } as const;
