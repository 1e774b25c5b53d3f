/**
 * Policy `requeue` against the kernel's source (Linux 6.1.192 and 6.12.117): a
 * request submitted to a hardware queue that holds requests put back is inserted
 * behind them and runs that queue at once. blk_mq_submit_bio() (block/blk-mq.c):
 * `blk_mq_insert_request(rq, 0); blk_mq_run_hw_queue(hctx, true);` (6.12.117;
 * 6.1.192: `blk_mq_sched_insert_request(rq, false, true, true)`), and the async run
 * is `kblockd_mod_delayed_work_on(..., &hctx->run_work, 0)`, which brings a pending
 * BLK_MQ_RESOURCE_DELAY run forward to now. The run retries the requests put back
 * first (__blk_mq_sched_dispatch_requests() in block/blk-mq-sched.c).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediatorError } from '../src/errors.js';
import { BLK_MQ_RESOURCE_DELAY_MS } from '../src/mediator/defaults.js';
import { PoolGate } from '../src/mediator/pool-gate.js';
import { SwiotlbPool } from '../src/swiotlb/pool.js';
import { fullError, Slots } from './helpers/slots.js';

function setup() {
  vi.useFakeTimers();
  const slots = new Slots(0);
  const gate = new PoolGate(SwiotlbPool.create({ slots: 128, areas: 1, area: 0 }), {
    policy: 'requeue',
  });
  const order: string[] = [];
  const admit = (name: string, n: number, q: string) => {
    const p = gate.admit(slots.request(name, n), fullError, 'd', q);
    if (p === undefined) order.push(name);
    else void p.then(() => order.push(name)).catch(() => undefined);
  };
  return { slots, gate, order, admit };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('policy requeue: a request submitted to a queue with requests put back', () => {
  it('waits behind them untried, and runs the queue at once: they are retried then, not 3 ms later', async () => {
    const { slots, gate, order, admit } = setup();
    admit('big', 4, 'q0');
    await vi.advanceTimersByTimeAsync(0); // the rerun at once fails: the 3 ms run is armed
    expect(slots.tries.get('big')).toBe(2);
    slots.free = 5;
    gate.released('q1'); // another queue's slots came back: q0 is not run
    expect(slots.tries.get('big')).toBe(2);
    admit('small', 1, 'q0');
    expect(slots.tries.get('small')).toBeUndefined();
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 2, waiting: 2 });
    await vi.advanceTimersByTimeAsync(0); // blk_mq_run_hw_queue(hctx, true)
    expect(order).toEqual(['big', 'small']);
    expect(slots.tries.get('big')).toBe(3);
    expect(gate.stats()).toMatchObject({ requeues: 1, waits: 2, waiting: 0 });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('its run replaces the pending BLK_MQ_RESOURCE_DELAY run (mod_delayed_work): the next is 3 ms after it', async () => {
    const { slots, gate, admit } = setup();
    admit('big', 4, 'q0');
    await vi.advanceTimersByTimeAsync(0);
    expect(slots.tries.get('big')).toBe(2); // next run armed for t = 3 ms
    await vi.advanceTimersByTimeAsync(1);
    admit('small', 1, 'q0'); // t = 1 ms
    await vi.advanceTimersByTimeAsync(0);
    expect(slots.tries.get('big')).toBe(3); // run at once, failed: next at t = 4 ms
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(BLK_MQ_RESOURCE_DELAY_MS - 1); // t = 3 ms
    expect(slots.tries.get('big')).toBe(3);
    await vi.advanceTimersByTimeAsync(1); // t = 4 ms
    expect(slots.tries.get('big')).toBe(4);
    expect(slots.tries.get('small')).toBeUndefined();
    gate.rejectAll(new MediatorError('MEDIATOR_CLOSED', 'closing'));
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a request of another queue that is placed at once runs nothing', async () => {
    const { slots, gate, order, admit } = setup();
    admit('big', 4, 'q0');
    await vi.advanceTimersByTimeAsync(0);
    slots.free = 5;
    admit('other', 1, 'q1'); // q1 has nothing put back: placed, q0 not run
    await vi.advanceTimersByTimeAsync(0);
    expect(order).toEqual(['other']);
    expect(slots.tries.get('big')).toBe(2);
    await vi.advanceTimersByTimeAsync(BLK_MQ_RESOURCE_DELAY_MS);
    expect(order).toEqual(['other', 'big']);
    expect(gate.stats()).toMatchObject({ requeues: 1, waiting: 0 });
  });
});
