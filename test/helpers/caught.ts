import { isMediatorError } from '../../src/errors.js';

/** The code and message of the MediatorError `fn` throws, or code "no error" when it throws none. */
export function caught(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (isMediatorError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  return { code: 'no error', message: '' };
}
