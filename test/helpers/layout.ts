/**
 * The layout rules of docs/internals.md ("Layout"): each folder of src/ (a "unit":
 * `errors` is src/errors.ts, `index` is src/index.ts) and what it may import.
 * test/architecture.test.ts enforces them on the import graph; test/docs.test.ts
 * checks that the table in docs/internals.md says the same.
 */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  util: ['errors'],
  swiotlb: ['util', 'errors'],
  virtio: ['util', 'errors'],
  workers: ['swiotlb', 'util', 'errors'],
  mediator: ['swiotlb', 'virtio', 'workers', 'util', 'errors'],
  devices: ['virtio', 'util', 'errors'],
  metrics: ['mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  config: ['mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  workload: ['config', 'metrics', 'mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  server: ['config', 'metrics', 'mediator', 'swiotlb', 'virtio', 'workers', 'util', 'errors'],
  cli: [
    'server',
    'workload',
    'config',
    'metrics',
    'mediator',
    'swiotlb',
    'virtio',
    'workers',
    'util',
    'errors',
  ],
  index: [
    'server',
    'workload',
    'config',
    'metrics',
    'mediator',
    'swiotlb',
    'virtio',
    'workers',
    'devices',
    'util',
    'errors',
  ],
};
