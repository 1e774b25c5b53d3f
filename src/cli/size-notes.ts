/**
 * What a guest needs before the pools `size` advises are used at all, each point
 * read in the kernel's source (the release named in each note; docs/kernels.md
 * "Before the pool is used" has the quotes).
 */
import { hasDynamicPools } from '../swiotlb/kernel.js';
import type { SizingAdvice } from '../workload/sizing.js';

/** The notes for `size`'s advice, one sentence or two each. */
export function requirementNotes(advice: SizingAdvice): string[] {
  const notes = [
    // drivers/virtio/virtio_ring.c vring_use_dma_api(), 6.1 to 7.2; virtio_has_dma_quirk()
    // in include/linux/virtio_config.h; virtio_features_ok() in drivers/virtio/virtio.c.
    'virtio: the device must negotiate VIRTIO_F_ACCESS_PLATFORM. Without it virtio bypasses the DMA API (vring_use_dma_api() in drivers/virtio/virtio_ring.c is false, except in a Xen guest) and no pool is used; a guest that restricts virtio memory access refuses such a device ("device must provide VIRTIO_F_ACCESS_PLATFORM", virtio_features_ok()).',
    // kernel/dma/swiotlb.c swiotlb_init_remap() and setup_io_tlb_npages(), 6.12; arch/x86/kernel/pci-dma.c
    // pci_swiotlb_detect(); arch/arm64/mm/init.c arch_mm_preinit() (realms: in 7.2, not in 6.12).
    'Default pool: Linux sets it up only when a device needs it or it is forced (swiotlb_init_remap(): "if (!addressing_limit && !swiotlb_force_bounce) return;"), and bounces every DMA only when forced: confidential guests force it themselves (x86 SEV and TDX: pci_swiotlb_detect() sets SWIOTLB_FORCE when cc_platform_has(CC_ATTR_GUEST_MEM_ENCRYPT); arm64 realms in recent kernels: arch_mm_preinit() in 7.2, not in 6.12); elsewhere add ",force" (swiotlb=N,A,force).',
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
