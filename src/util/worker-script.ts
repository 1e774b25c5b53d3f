import { fileURLToPath } from 'node:url';

export interface WorkerScript {
  /** Absolute path of the module a worker thread loads. */
  filename: string;
  /** Environment the worker needs (set only when running from TypeScript sources). */
  env: Record<string, string | undefined> | undefined;
}

/**
 * Where the worker module `src/<name>` (e.g. `workers/copy-worker`) is for the code that is running now.
 * From dist/ (production) it is the compiled `.js` beside us. From the TypeScript
 * sources (tests, benchmarks under tsx) it is scripts/tsx-worker-entry.mjs, which
 * registers tsx inside the worker and then loads `<name>.ts`.
 */
export function workerScript(name: string): WorkerScript {
  const here = import.meta.url;
  if (here.endsWith('.js')) {
    return { filename: fileURLToPath(new URL(`../${name}.js`, here)), env: undefined };
  }
  return {
    filename: fileURLToPath(new URL('../../scripts/tsx-worker-entry.mjs', here)),
    env: { ...process.env, SWIOTLB_TS_WORKER: new URL(`../${name}.ts`, here).href },
  };
}
