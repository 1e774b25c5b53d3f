// Development only: lets worker threads (raw or piscina) run a TypeScript module
// on Node 20, where `--import tsx` in a worker's execArgv does not take effect
// (loader hooks in worker execArgv arrive in Node 22.2: nodejs/node#47747).
// Production never loads this file: it runs the compiled .js workers in dist/.
import { register } from 'tsx/esm/api';

register();
const target = process.env.SWIOTLB_TS_WORKER;
if (!target) throw new Error('SWIOTLB_TS_WORKER is not set: which TypeScript worker should run?');
const mod = await import(target);
export default mod.default;
