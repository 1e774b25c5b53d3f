/**
 * One benchmark thread of bench/swiotlb.bench.ts: attaches to the shared pool,
 * waits for the start flag, then does unmap+map pairs until told to stop and
 * reports how many it did while the phase was MEASURE.
 *
 * Also exports the pair loop itself, which the main thread uses for the
 * single-thread case, so both measure exactly the same work.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { DmaDirection, type SharedPool, SwiotlbPool } from '../src/swiotlb/index.js';

/** Mappings each thread keeps live, so that the next-fit search meets used slots. */
export const RING = 16;
/** Pairs between two looks at the clock or the phase flag. */
export const BATCH = 64;

/** Values of phase[0], the Int32 the main thread flips to drive the workers. */
export const Phase = { IDLE: 0, WARM: 1, MEASURE: 2, STOP: 3 } as const;

export interface WorkerInput {
  shared: SharedPool;
  /** One Int32: the phase. */
  control: SharedArrayBuffer;
  size: number;
  area: number;
  /** Distinguishes the threads' original addresses. */
  index: number;
}

/** Messages a worker posts: 'ready' once its ring is mapped, then its result. */
export type WorkerMessage = 'ready' | { pairs: number };

/** RING live TO_DEVICE mappings of `size` bytes; each pair unmaps the oldest and maps a new one. */
export class PairLoop {
  private readonly ring: number[] = [];
  private next = 0;
  private n = 0;

  constructor(
    private readonly pool: SwiotlbPool,
    private readonly size: number,
    /** Original addresses of this thread start here and vary over 1024 buffers. */
    private readonly origBase: number,
  ) {
    for (let i = 0; i < RING; i++) this.ring.push(this.mapOne());
  }

  private mapOne(): number {
    const orig = this.origBase + (this.n++ & 1023) * this.size;
    return this.pool.map(orig, this.size, DmaDirection.TO_DEVICE);
  }

  /** Does `count` unmap+map pairs. */
  run(count: number): void {
    for (let i = 0; i < count; i++) {
      const k = this.next;
      this.pool.unmap(this.ring[k]!, this.size, DmaDirection.TO_DEVICE);
      this.ring[k] = this.mapOne();
      this.next = k + 1 === RING ? 0 : k + 1;
    }
  }

  /** Unmaps everything still live (the main thread then checks the pool is empty). */
  drain(): void {
    for (const tlb of this.ring) this.pool.unmap(tlb, this.size, DmaDirection.TO_DEVICE);
    this.ring.length = 0;
  }
}

/** Thread `index` maps guest buffers at 1 GiB * (index + 1) onwards. */
export function origBaseOf(index: number): number {
  return 2 ** 30 * (index + 1);
}

function workerMain(input: WorkerInput): void {
  const pool = SwiotlbPool.attach(input.shared, { area: input.area });
  const control = new Int32Array(input.control);
  const loop = new PairLoop(pool, input.size, origBaseOf(input.index));

  parentPort!.postMessage('ready' satisfies WorkerMessage);
  Atomics.wait(control, 0, Phase.IDLE);

  // Counted pairs are those of batches started while the phase was MEASURE.
  let pairs = 0;
  for (;;) {
    const phase = Atomics.load(control, 0);
    if (phase === Phase.STOP) break;
    loop.run(BATCH);
    if (phase === Phase.MEASURE) pairs += BATCH;
  }
  loop.drain();
  parentPort!.postMessage({ pairs } satisfies WorkerMessage);
}

if (!isMainThread && parentPort) workerMain(workerData as WorkerInput);
