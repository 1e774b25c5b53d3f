export { loadConfig, parseConfig, type ServiceConfig } from './config/index.js';
export { ERROR_SPECS, type ErrorCode, isMediatorError, MediatorError } from './errors.js';
export {
  BlkDriver,
  type BlkDriverOptions,
  type DeviceStats,
  type PoolBuffer,
} from './mediator/blk-driver.js';
export {
  FROM_DEVICE_BOUNCES,
  type FromDeviceBounce,
  MODES,
  type Mode,
} from './mediator/defaults.js';
export { type BatchDma, BounceDma, DirectDma, type GuestDma } from './mediator/dma.js';
export { GuestMemory, type GuestMemoryOptions } from './mediator/guest-memory.js';
export { Mediator, type MediatorSpec } from './mediator/mediator.js';
export { type BackpressureOptions, PoolGate } from './mediator/pool-gate.js';
export { SharedDma } from './mediator/shared-dma.js';
export { createMetrics, type MetricsOptions } from './metrics/metrics.js';
export { type RunningServer, startServer } from './server/index.js';
export * from './swiotlb/index.js';
export type { Logger } from './util/logger.js';
export { formatSize, parseSize } from './util/size.js';
export type { DeviceKind } from './virtio/device-spec.js';
export { CopyEngine, type CopyEngineOptions } from './workers/copy-engine.js';
