/**
 * What an open status page asks of the service, in a process of its own (as the
 * browser would be): every `intervalMs`, the page's reads (/v1/pools,
 * /v1/devices, /v1/copy and each pool's /v1/pools/:name/slots) at once, the
 * answers parsed. Driven by bench/status.bench.ts over IPC: `open` starts the
 * reads, `close` stops them and answers with what was done.
 */

export type PollerCommand =
  | { cmd: 'open'; url: string; pools: string[]; intervalMs: number }
  | { cmd: 'close' }
  | { cmd: 'exit' };

export interface PollerReport {
  reads: number;
  bytes: number;
  /** Milliseconds each read took, all requests of it answered. */
  readMs: number[];
}

let timer: NodeJS.Timeout | undefined;
let report: PollerReport = { reads: 0, bytes: 0, readMs: [] };
let inFlight: Promise<void> = Promise.resolve();

async function readOnce(url: string, pools: string[]): Promise<void> {
  const paths = [
    '/v1/pools',
    '/v1/devices',
    '/v1/copy',
    ...pools.map((p) => `/v1/pools/${encodeURIComponent(p)}/slots`),
  ];
  const t0 = performance.now();
  const bodies = await Promise.all(
    paths.map(async (p) => {
      const res = await fetch(`${url}${p}`);
      if (!res.ok) throw new Error(`${p}: HTTP ${res.status}`);
      return res.text();
    }),
  );
  for (const b of bodies) {
    JSON.parse(b);
    report.bytes += b.length;
  }
  report.readMs.push(performance.now() - t0);
  report.reads++;
}

process.on('message', (m: PollerCommand) => {
  if (m.cmd === 'open') {
    report = { reads: 0, bytes: 0, readMs: [] };
    const tick = () => {
      inFlight = readOnce(m.url, m.pools);
    };
    tick();
    timer = setInterval(tick, m.intervalMs);
  } else if (m.cmd === 'close') {
    clearInterval(timer);
    timer = undefined;
    void inFlight.then(() => process.send!(report));
  } else {
    clearInterval(timer);
    process.disconnect();
  }
});
process.send!('ready');
