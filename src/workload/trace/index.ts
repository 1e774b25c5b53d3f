export {
  type BootLog,
  BootLogReader,
  type FullWarning,
  parseBootLog,
  restrictedPools,
} from './boot-log.js';
export { limitNareas, poolFromBootLog, restrictedFromBootLog } from './boot-pool.js';
export { type DemandResult, TraceDemand } from './demand.js';
export {
  ADDR_OUT_OF_RANGE,
  DMA_MAPPING_ERROR,
  type DmaEvent,
  EventParseError,
  parseDmaEvent,
} from './dma-events.js';
export { formatTraceReport } from './format.js';
export { fioJobText, type JobShape, jobShape } from './job-shape.js';
export {
  chooseProfile,
  parseKernelVersion,
  profileFor,
  SUPPORTED_LINES,
  type TracedKernel,
} from './kernel-version.js';
export {
  kernelPlacement,
  type Placement,
  type PlacementSetup,
  type PlacementSpec,
  poolPlacement,
} from './placement.js';
export { type DeviceProfile, TraceProfile } from './profile.js';
export { TraceReader } from './reader.js';
export { type ReplayObserver, type TracedOp, TraceReplay } from './replay.js';
export { summarize, type TraceReport, type TraceSummary } from './report-types.js';
export {
  type PoolFlags,
  resolveKernel,
  resolvePool,
  runTraceReplay,
  type TraceRunOptions,
} from './run.js';
export {
  adviseFromTrace,
  type DeviceDemand,
  restrictedPoolNode,
  type TraceSizeOptions,
  type TraceSizeReport,
} from './trace-advice.js';
export {
  TRACED_JOB_LIMITS,
  type TracedJob,
  type TracedJobOptions,
  tracedJob,
} from './trace-job.js';
export { parseTraceLine, type TraceLine } from './trace-line.js';
export { formatTraceSize } from './trace-size-format.js';
export { sizeFromTrace, type TraceSizing, type TraceSizingOptions } from './trace-sizing.js';
