import type { Mediator } from '../mediator/mediator.js';
import { packageVersion } from '../util/package-version.js';
import type { Labels, ScrapeRegistry } from './registry.js';

/**
 * swiotlb_mediator_build_info: what a scraped instance runs, as Prometheus' "info"
 * pseudo-metric (the naming practice's `foobar_build_info`, "a pseudo-metric that
 * provides metadata about the running binary"): one gauge series at 1 whose labels
 * carry the facts, so that they are not repeated on every other series. Select or
 * label other series with it: `... and on (job, instance) swiotlb_mediator_build_info{mode="bounce"}`,
 * or `* on (job, instance) group_left (version) swiotlb_mediator_build_info`.
 *
 * Labels, each fixed for the life of the process (one series per instance):
 * - `version`: this package's version;
 * - `node_version`: the Node.js running it (process.version, as nodejs_version_info has it);
 * - `mode`: bounce, direct or shared, as configured;
 * - `kernel`: the kernel profile of the pools (`kernel` of the config);
 * - `placement`: the pools' placement (`linux` or `warm`);
 * - `from_device_bounce`: how the devices bounce DMA_FROM_DEVICE buffers (`linux`:
 *   copied in at map; `used-length`: nothing copied in, copied back by the used length).
 * With `placement` and `from_device_bounce` the bounce modes of bench:pipeline can
 * be told apart: Linux's `bounce` is linux/linux, `bounce-tuned` warm/used-length.
 * A configuration gives every pool the same kernel; pools may set their own
 * placement and each device its from_device_bounce: a label then lists the values,
 * sorted and comma-separated (`linux,warm`), and says `none` when there is no pool
 * (or device).
 */

/** The labels of swiotlb_mediator_build_info for `mediator`. */
export function buildInfoLabels(mediator: Mediator): Labels {
  const pools = [...mediator.pools.values()].map((p) => p.pool);
  const values = (of: string[]) => [...new Set(of)].sort().join(',') || 'none';
  return {
    version: packageVersion(),
    node_version: process.version,
    mode: mediator.mode,
    kernel: values(pools.map((p) => p.kernel)),
    placement: values(pools.map((p) => p.placement)),
    from_device_bounce: values([...mediator.devices.values()].map((d) => d.fromDeviceBounce)),
  };
}

export function registerBuildInfo(registry: ScrapeRegistry, mediator: Mediator): void {
  const labels = buildInfoLabels(mediator);
  registry.add(
    'swiotlb_mediator_build_info',
    "What this instance runs: always 1, with the package version, the Node.js version, the mode (bounce, direct, shared), the pools' kernel profile and placement, the devices' from_device_bounce as labels.",
    'gauge',
    () => [{ labels, value: 1 }],
  );
}
