import { IO_TLB_SIZE } from '../../swiotlb/constants.js';
import type { LiveRec, Placed } from './live-table.js';
import type { ReplayState } from './replay-state.js';
import { hex } from './replay-verdicts.js';
import { nrSlots } from './traced-pool.js';

/**
 * A mapping the kernel bounced outside the pool replayed (a swiotlb_bounced line
 * announced it, see replay-bounced.ts): with CONFIG_SWIOTLB_DYNAMIC a transient
 * pool or a grown one, else another pool (a restricted one). Its kernel slots
 * are counted apart (nr_slots(size + its bounce offset)). With a growable model
 * (--dynamic) it is placed and compared by the kind of pool it lands in: the
 * model outside its default pool too is counted in dynamic.both_outside, not as a
 * placement agreement (the addresses cannot be compared: the kernel's growth runs
 * from a workqueue, the model's at once); the model in its default pool, or
 * nowhere, is a disagreement. The kernel placing in its default pool where the
 * model grew is replay-maps.ts's.
 */
export function placeOutside(s: ReplayState, x: Placed): LiveRec {
  const d = s.counts.dev(x.device);
  s.counts.maps.outside_bounced++;
  d.outside_bounced++;
  d.bytes_bounced += x.size;
  const kSlots = nrSlots(x.size + (x.kAddr & (IO_TLB_SIZE - 1)));
  const rec = s.table.newRec(x, -1, kSlots);
  if (s.p.dynamic) {
    s.counts.maps.replayed++;
    s.counts.dyn.kernel_outside++;
    const area = s.startArea(x.cpu);
    const mask = s.maskFor(x.device);
    const res = s.p.map(x.phys, x.size, x.dir, { cpu: x.cpu, minAlignMask: mask });
    if (!('addr' in res)) {
      s.counts.dyn.model_failed++;
      s.counts.countFailure(res);
      s.verdicts.disagreed(d, x, area, res.failure, s.verdicts.whyFailed(res, x.size, mask));
    } else {
      s.modelPlaced(rec, res);
      if (res.part === 'default') {
        s.counts.dyn.model_in_pool++;
        s.verdicts.disagreed(
          d,
          x,
          area,
          hex(res.addr),
          'the kernel bounced it outside its default pool (a transient or grown pool: the default pool had no room), the model found room in the default pool: the model holds fewer mappings (an earlier disagreement, mappings made before the trace, or lost maps)',
        );
      } else {
        s.counts.dyn.both_outside++;
      }
    }
  }
  s.take(rec, x.ts);
  s.observe('onMap', x, rec.id, {
    bounced: true,
    sg: x.kind === 'sg',
    slots: kSlots,
    outside: true,
  });
  return rec;
}
