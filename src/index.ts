export { ERROR_SPECS, type ErrorCode, isMediatorError, MediatorError } from './errors.js';
export * from './swiotlb/index.js';
export { formatSize, parseSize } from './util/size.js';
