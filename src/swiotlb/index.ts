export { type Bouncer, NO_COPY } from './bouncer.js';
export {
  type CopyDirection,
  DmaAttr,
  DmaDirection,
  directionName,
  IO_TLB_DEFAULT_SIZE,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  PAGE_SIZE,
  parseDirection,
} from './constants.js';
export { MAP_COPY, syncForCpuCopies, syncForDeviceCopies, unmapCopies } from './dma-rules.js';
export {
  type DynamicPartKind,
  type DynamicPartStats,
  DynamicPool,
  type DynamicPoolOptions,
  type DynamicPoolStats,
} from './dynamic.js';
export {
  computeGeometry,
  defaultAreaCount,
  type Geometry,
  type GeometryOptions,
  parseSwiotlbParameter,
  type SwiotlbParameter,
} from './geometry.js';
export {
  DEFAULT_KERNEL,
  isKernelVersion,
  KERNEL_SOURCES,
  KERNEL_VERSIONS,
  type KernelVersion,
} from './kernel.js';
export {
  type AllocOptions,
  type AreaStats,
  type AttachOptions,
  type MapFailureReason,
  type MapOptions,
  type PoolOptions,
  type PoolStats,
  type SgEntry,
  type SharedPool,
  SwiotlbPool,
} from './pool.js';
export {
  type AllocRequest,
  type MapRequest,
  ReplayEngine,
  type ReplayOptions,
  type ReplayOutput,
  type ReplayResult,
  type ReplayStats,
} from './replay.js';
export {
  DEFAULT_PLACEMENT,
  isPlacement,
  PLACEMENTS,
  type Placement,
} from './warm.js';
