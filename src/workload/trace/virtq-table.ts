import { DmaDirection } from '../../swiotlb/constants.js';
import { SECTOR_SIZE } from '../../virtio/blk-format.js';
import { DESC_SIZE } from '../../virtio/virtqueue-layout.js';
import type { TracedOp } from './replay-types.js';

/**
 * The indirect descriptor table of a virtqueue buffer other than a virtio-blk
 * request (profile.ts groups those from their header and status): a virtio-net
 * packet, a receive buffer of big-packets mode, a control command.
 *
 * What the kernel maps (drivers/virtio/virtio_ring.c, 6.12.117; 6.1.192 the same
 * but for premapped mode, which 6.1's vring_map_one_sg() does not know):
 * virtqueue_add_outbuf() / virtqueue_add_inbuf() / virtqueue_add_sgs() ->
 * virtqueue_add_split() (virtqueue_add_packed() alike) maps the buffer's sg
 * entries one by one, the readable ones (out_sgs, DMA_TO_DEVICE) before the
 * writable ones (in_sgs, DMA_FROM_DEVICE), each with vring_map_one_sg() ->
 * dma_map_page() (traced as dma_map_page); then, when virtqueue_use_indirect()
 * (`vq->indirect && total_sg > 1 && vq->vq.num_free`, `vq->indirect` being
 * VIRTIO_RING_F_INDIRECT_DESC `&& !context`), "Now that the indirect table is
 * filled in, map it": vring_map_single(vq, desc, total_sg * sizeof(struct
 * vring_desc), DMA_TO_DEVICE), a dma_map_single() of the table that
 * alloc_indirect_split() got from kmalloc_array(total_sg, sizeof(struct
 * vring_desc)) (16 bytes each; struct vring_packed_desc too), traced as one more
 * dma_map_page. Little can come between on that CPU: start_xmit() runs with
 * bottom halves off under the tx queue's lock, try_fill_recv() in the queue's NAPI
 * poll (a softirq), and no virtio-net map or unmap runs in hard interrupts (netpoll aside); only
 * the refills that run in process context with that queue's NAPI disabled
 * (refill_work(), virtnet_open(), with GFP_KERNEL) can be interrupted by another
 * queue's softirq, whose maps then come between (profile.ts leaves such a buffer
 * ungrouped when they are of another kind).
 *
 * drivers/net/virtio_net.c (6.12.117, 6.1.192): xmit_skb() adds the virtio-net
 * header (unless pushed into the skb's headroom: `can_push`), the linear part and
 * one entry per fragment (sq->sg holds MAX_SKB_FRAGS + 2) with
 * virtqueue_add_outbuf(), so a packet with a fragment or a separate header has a
 * table; so has an XDP frame with fragments (__virtnet_xdp_xmit_one()).
 * add_recvbuf_big() adds big_packets_num_skbfrags + 2 entries (the header, the
 * rest of the first page, one page each), FROM_DEVICE: a table. The small and
 * mergeable receive buffers are one entry each, on queues made with a context
 * (`vqs_info[rxq2vq(i)].ctx = true` unless big packets without mergeable
 * buffers), so never indirect. virtnet_send_command_reply() adds the control
 * header, the command's data, the status and its reply with virtqueue_add_sgs().
 * 6.12.117's premapped receive (rq->do_dma, virtnet_rq_alloc() mapping a whole
 * page frag with virtqueue_dma_map_single_attrs()) is never enabled: virtio_net.c
 * never sets do_dma nor calls virtqueue_set_dma_premapped().
 *
 * The trace carries no queue, no driver and no buffer boundary, so a map is
 * taken for such a table only when (see {@link tableEntries}):
 *   - it is a single map (not dma_map_sg), TO_DEVICE, of 16 x k bytes, 2 <= k <=
 *     {@link MAX_TABLE_ENTRIES}: below 512 bytes, so never the size of a block
 *     I/O's data, whole 512-byte sectors (an NVMe or SCSI single-segment write
 *     after a burst of others on its CPU is no table);
 *   - its address is aligned as kmalloc() aligns the table: "at least the largest
 *     power-of-two divisor of @size" (include/linux/slab.h, kmalloc(), 6.12.117),
 *     16 or more; a packet's headers, 2 bytes off a 4-byte boundary, are not;
 *   - its k entries are the last k maps of the same device on the same CPU still
 *     pending (profile.ts: single, live, in no other I/O), readable ones before
 *     writable ones.
 */

/**
 * Most entries of a table taken as one: 31 (496 bytes), below a sector. Enough for
 * virtio-net's largest buffers with the default CONFIG_MAX_SKB_FRAGS (17: 19
 * entries, a 304-byte table); with 30 fragments or more (net/Kconfig allows up to
 * 45) a buffer of more than 31 entries keeps its table as an I/O of its own.
 */
export const MAX_TABLE_ENTRIES = Math.floor((SECTOR_SIZE - 1) / DESC_SIZE);

/** A map that may be an entry of a buffer whose table is to come. */
export interface Entry {
  size: number;
  dir: DmaDirection;
}

/**
 * How many of `run`'s last entries (the pending maps of op's device and CPU, in
 * map order) `op` is the indirect table of; 0 when it is not a table of theirs.
 */
export function tableEntries(run: readonly Entry[], op: TracedOp): number {
  if (op.kind !== 'map' || op.sg || op.dir !== DmaDirection.TO_DEVICE) return 0;
  const k = op.size / DESC_SIZE;
  if (!Number.isInteger(k) || k < 2 || k > MAX_TABLE_ENTRIES || k > run.length) return 0;
  // The largest power of two dividing the size (sizes are below 2^31 here).
  const align = op.size & -op.size;
  if (op.phys % align !== 0) return 0;
  let writable = false;
  for (let i = run.length - k; i < run.length; i++) {
    const dir = run[i]!.dir;
    if (dir === DmaDirection.FROM_DEVICE) writable = true;
    else if (dir !== DmaDirection.TO_DEVICE || writable) return 0;
  }
  return k;
}
