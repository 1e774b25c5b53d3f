import { availableParallelism } from 'node:os';

/**
 * The copy engine's defaults, stated once: CopyEngine reads them, and the service
 * config shows them through src/mediator/defaults.ts. A light module (no piscina,
 * no threads) so that parsing a config does not load the engine.
 *
 * The rules that depend on the CPU count all turn on one question: does the
 * thread that maps and polls (the caller) keep a core of its own? Copy workers,
 * device threads and the caller each need a core; where one has to share, a
 * hand-off to it costs more than the work it takes over (docs/performance.md has
 * the measurements).
 */

/** Fixed defaults of {@link CopyEngineOptions} (src/workers/copy-engine.ts). */
export const COPY_DEFAULTS = {
  /** Descriptors per worker ring (a power of two). */
  ringCapacity: 1024,
  /** How long an idle worker polls its ring before it sleeps, in microseconds. */
  spinMicros: 20,
  /** Memory regions (guest memories and pools) an engine can register. */
  maxRegions: 64,
  /** Bytes queued on a worker before further copies go to the next worker. */
  spillBytes: 256 * 1024,
  /** Count and time inline copies. */
  accounting: true,
} as const;

/** Whether the calling thread keeps a core of its own next to `workers` copy workers. */
export function callerHasCore(workers: number, cpus: number = availableParallelism()): boolean {
  return workers < cpus;
}

/**
 * Copy workers of an engine built on its own (a Mediator asks
 * defaultCopyWorkersFor instead, which also counts device threads): every CPU but
 * the caller's, at least 1, at most 4.
 */
export function defaultCopyWorkers(cpus: number = availableParallelism()): number {
  return Math.max(1, Math.min(4, cpus - 1));
}

/**
 * The split threshold: 128 KiB while the workers leave the caller a core; 0
 * (never split) otherwise, since then no core is idle for a part and each part
 * costs a worker wake-up.
 */
export function defaultSplitThreshold(
  workers: number,
  cpus: number = availableParallelism(),
): number {
  return callerHasCore(workers, cpus) ? 128 * 1024 : 0;
}

/**
 * The inline threshold: 32 KiB; 128 KiB on 2 CPUs or fewer, where a copy worker
 * has no core of its own (it shares one with the device threads, and handing it a
 * copy costs the device its core).
 */
export function defaultInlineThreshold(cpus: number = availableParallelism()): number {
  return cpus <= 2 ? 128 * 1024 : 32 * 1024;
}

/**
 * Whether the caller copies one part of a split copy itself: only with a core of
 * its own (so one worker on 2 CPUs splits too).
 */
export function defaultSplitInline(
  workers: number,
  cpus: number = availableParallelism(),
): boolean {
  return callerHasCore(workers, cpus);
}

/**
 * How long the engine polls for completions after one, in microseconds: 200 with
 * a core of its own; 0 otherwise, where polling takes the core the workers need.
 */
export function defaultEnginePollMicros(
  workers: number,
  cpus: number = availableParallelism(),
): number {
  return callerHasCore(workers, cpus) ? 200 : 0;
}
