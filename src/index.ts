export { loadConfig, parseConfig, type ServiceConfig } from './config/index.js';
export { ERROR_SPECS, type ErrorCode, isMediatorError, MediatorError } from './errors.js';
export { type BackpressureOptions, PoolGate } from './mediator/backpressure.js';
export {
  BlockDevice,
  type BlockDeviceOptions,
  type DeviceKind,
  type DeviceStats,
} from './mediator/blk-device.js';
export { CopyEngine, type CopyEngineOptions } from './mediator/copy-engine.js';
export { BounceDma, DirectDma, type GuestDma } from './mediator/dma.js';
export { GuestMemory, type GuestMemoryOptions } from './mediator/guest-memory.js';
export { Mediator, type MediatorSpec } from './mediator/mediator.js';
export { createMetrics, type MetricsOptions } from './metrics/metrics.js';
export { type RunningServer, startServer } from './server/index.js';
export * from './swiotlb/index.js';
export { formatSize, parseSize } from './util/size.js';
