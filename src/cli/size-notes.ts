/**
 * What a guest needs before the pools `size` advises are used at all, each point
 * read in the kernel's source (the release named in each note; docs/kernels.md
 * "Before the pool is used" has the quotes).
 */
import { hasDynamicPools, type KernelVersion } from '../swiotlb/kernel.js';
import { ARCH_POOL_SIZES } from '../workload/sizing.js';

/**
 * The notes for `size`'s advice (from a job or a trace), one sentence or two
 * each: `kernel` is the profile the advice was made by, `dynamic` whether it
 * already models CONFIG_SWIOTLB_DYNAMIC.
 */
export function requirementNotes(advice: { kernel: KernelVersion; dynamic: boolean }): string[] {
  const notes = [
    // drivers/virtio/virtio_ring.c vring_use_dma_api(), 6.1 to 7.2; virtio_has_dma_quirk()
    // in include/linux/virtio_config.h; virtio_features_ok() in drivers/virtio/virtio.c.
    'virtio: the device must negotiate VIRTIO_F_ACCESS_PLATFORM. Without it virtio bypasses the DMA API (vring_use_dma_api() in drivers/virtio/virtio_ring.c is false, except in a Xen guest) and no pool is used; a guest that restricts virtio memory access refuses such a device ("device must provide VIRTIO_F_ACCESS_PLATFORM", virtio_features_ok()).',
    // kernel/dma/swiotlb.c swiotlb_init_remap() and setup_io_tlb_npages(), 6.12; arch/x86/kernel/pci-dma.c
    // pci_swiotlb_detect(); arch/arm64/mm/init.c arch_mm_preinit() (realms: in 7.2, not in 6.12);
    // drivers/iommu/dma-iommu.c dev_use_swiotlb() (6.1.192: dev_is_untrusted(dev); 6.12.117:
    // dev_is_untrusted(dev) || dma_kmalloc_needs_bounce(dev, size, dir)).
    'Default pool: Linux sets it up only when a device needs it or it is forced (swiotlb_init_remap(): "if (!addressing_limit && !swiotlb_force_bounce) return;"), and bounces every DMA only when forced: confidential guests force it themselves (x86 SEV and TDX: pci_swiotlb_detect() sets SWIOTLB_FORCE when cc_platform_has(CC_ATTR_GUEST_MEM_ENCRYPT); arm64 realms in recent kernels: arch_mm_preinit() in 7.2, not in 6.12); elsewhere add ",force" (swiotlb=N,A,force). Forcing does not reach a device whose DMA an IOMMU translates (the dma-iommu ops): it bounces only untrusted devices (and, in 6.12, small buffers a non-coherent device writes: dma_kmalloc_needs_bounce()), dev_use_swiotlb() in drivers/iommu/dma-iommu.c.',
    // kernel/dma/swiotlb.c swiotlb_adjust_size(), 6.1.192 and 6.12.117:
    // "if (default_nslabs != IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT) return;".
    `swiotlb=<nslabs> sizes the one default pool every device without a pool of its own shares, in place of the size an architecture picks (swiotlb_adjust_size() returns once swiotlb= changed default_nslabs from 32768): ${ARCH_POOL_SIZES}. So a guest's other devices bounce in it too; and on those guests 32768 slots (64 MiB) cannot be asked for: the kernel takes it for no swiotlb= and resizes it.`,
    // drivers/of/device.c of_dma_configure_id(): 6.1 "if (!iommu)", 6.12 and 7.2 "if (ret)".
    'Restricted pool: needs CONFIG_DMA_RESTRICTED_POOL=y (depends on OF, OF_RESERVED_MEM and SWIOTLB) and a device described in the device tree; it is ignored for a device behind an IOMMU (of_dma_configure_id() in drivers/of/device.c sets it up only when of_iommu_configure() found none). It bounces that device\'s DMA by itself (force_bounce), no "force" needed.',
    // dt-schema: dtschema/schemas/reserved-memory/shared-dma-pool.yaml (since v2023.09);
    // Linux 6.1 has Documentation/devicetree/bindings/reserved-memory/shared-dma-pool.yaml, 6.12 and 7.2 do not.
    "The restricted-dma-pool binding lives in dtschema (github.com/devicetree-org/dt-schema, schemas/reserved-memory/shared-dma-pool.yaml); the kernel's Documentation/devicetree/bindings/reserved-memory/shared-dma-pool.yaml is gone (present in 6.1, absent from 6.12 on).",
  ];
  if (!advice.dynamic && hasDynamicPools(advice.kernel)) {
    notes.push(
      'With CONFIG_SWIOTLB_DYNAMIC=y (6.6 and later, default n) the default pool grows instead of filling; "size --dynamic" shows what it would do. Restricted pools never grow.',
    );
  }
  return notes;
}
