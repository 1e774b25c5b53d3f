import type { FastifyPluginAsync } from 'fastify';
import type { PoolEntry } from '../../mediator/mediator.js';
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from '../../swiotlb/constants.js';
import { SLOT_STATE_NAMES, SlotMapReader, slotMapBytes } from '../../swiotlb/slot-map.js';
import { defaultPoolOf, type PoolParams, poolOf, type RouteOptions } from './common.js';

/**
 * GET /v1/pools/:name/slots and /v1/pool/slots: a pool's slot map, 2 bits a slot
 * (free, in use, padding, coherent: src/swiotlb/slot-map.ts), base64, with each
 * area's next-fit cursor. Read from the shared metadata at request time without
 * taking an area lock, so a reader never holds up an I/O; 32768 slots are 8 KiB
 * of map (about 11 KiB of base64).
 */
export const slotRoutes: FastifyPluginAsync<RouteOptions> = async (app, { service }) => {
  const readers = new Map<string, { reader: SlotMapReader; buffer: Uint8Array }>();
  for (const entry of service.mediator.pools.values()) {
    const reader = new SlotMapReader(entry.pool.share());
    readers.set(entry.name, {
      reader,
      buffer: new Uint8Array(slotMapBytes(reader.geometry.nslabs)),
    });
  }
  const view = (entry: PoolEntry) => {
    const { reader, buffer } = readers.get(entry.name)!;
    const map = reader.read(service.queueMemoryOf(entry.name), buffer);
    return {
      name: entry.name,
      mode: service.mediator.mode,
      nslabs: map.nslabs,
      nareas: map.nareas,
      area_nslabs: map.areaNslabs,
      segment_slots: IO_TLB_SEGSIZE,
      slot_bytes: IO_TLB_SIZE,
      bits_per_slot: 2,
      states: SLOT_STATE_NAMES,
      counts: map.counts,
      cursors: map.cursors,
      map: Buffer.from(map.bits.buffer, map.bits.byteOffset, map.bits.byteLength).toString(
        'base64',
      ),
    };
  };
  app.get('/v1/pool/slots', async () => view(defaultPoolOf(service)));
  app.get<{ Params: PoolParams }>('/v1/pools/:name/slots', async (request) =>
    view(poolOf(service, request.params.name)),
  );
};
