import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from '../config/schema.js';

/**
 * The service's one logger: pino JSON lines. It is created once (by `serve`, or
 * by startServer from the config's `logLevel`) and shared by Fastify (its
 * `loggerInstance`) and the mediator (which sees it through the small Logger
 * interface of ../util/logger.ts and never imports pino).
 */
export type ServerLogger = Logger;

export interface LoggerOptions {
  /**
   * The lowest level written.
   * @default 'info'
   */
  level?: LogLevel;
  /**
   * Where the JSON lines go.
   * @default stdout, written synchronously (nothing is lost at exit)
   */
  stream?: DestinationStream;
}

export function createLogger(opts: LoggerOptions = {}): ServerLogger {
  return pino(
    { level: opts.level ?? 'info' },
    opts.stream ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** A logger that writes nothing (and opens no stream). */
export function silentLogger(): ServerLogger {
  return pino({ level: 'silent' }, { write: () => undefined });
}
