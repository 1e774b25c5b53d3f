/**
 * The command line and config as a kernel engineer holds them to their own tools:
 * a flag given twice, a number too large, a pool the flags cannot form, a flag
 * that would be dropped, each refused as a usage error (CLI_USAGE, exit 2) that
 * names it, never run with a silent pick; config messages that name each problem once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { intFlag, parseCommand } from '../src/cli/args.js';
import { benchTraceCommand } from '../src/cli/bench-trace.js';
import { replayTraceCommand } from '../src/cli/replay-trace.js';
import { serveCommand } from '../src/cli/serve.js';
import { sizeCommand } from '../src/cli/size.js';
import { sizeTraceCommand } from '../src/cli/size-trace.js';
import { loadConfig, parseConfig } from '../src/config/index.js';
import { isMediatorError } from '../src/errors.js';
import { runCli } from './helpers/run-cli.js';
import { DmaDirection, KernelSim, render } from './helpers/trace-gen.js';

const NVME = new URL('../examples/jobs/nvme.fio', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'cli-config-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The code and message of what `fn` rejects with (a MediatorError), or a failure. */
async function rejection(fn: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await fn();
  } catch (err) {
    if (isMediatorError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected an error');
}

function sink(): Writable & { text: string } {
  const out = new Writable({
    write(chunk, _enc, cb) {
      out.text += String(chunk);
      cb();
    },
  }) as Writable & { text: string };
  out.text = '';
  return out;
}

function io() {
  return { stdin: new PassThrough(), stdout: sink(), stderr: sink() };
}

/** Two bounced maps of one device in a 512-slot, 2-area pool at 0x80000000. */
function traceFile(): string {
  const sim = new KernelSim({ base: 0x8000_0000, slots: 512, areas: 2 });
  const a = sim.map('0000:00:04.0', 0, 0x1_0000_0000, 4096, DmaDirection.TO_DEVICE);
  const b = sim.map('0000:00:04.0', 1, 0x1_0001_0000, 65536, DmaDirection.FROM_DEVICE);
  const text = render(
    [
      { t: 'map', cpu: 0, m: a },
      { t: 'map', cpu: 1, m: b },
      { t: 'unmap', cpu: 0, m: a },
      { t: 'unmap', cpu: 1, m: b },
    ],
    { layout: 'trace-cmd', arrays: 'kernel', naming: 'mainline' },
  ).text;
  return file('trace.txt', text);
}

describe('a flag given twice', () => {
  const options = {
    job: { type: 'string' },
    json: { type: 'boolean' },
    device: { type: 'string', multiple: true },
  } as const;
  const parse = (args: string[]) =>
    parseCommand('x', 'x [--job F] [--json] [--device N]', { args, options });

  it('with two values is refused, naming both: parseArgs would keep the last unseen', async () => {
    expect(await rejection(() => parse(['--job', 'a.fio', '--job=b.fio']))).toEqual({
      code: 'CLI_USAGE',
      message: '--job given twice ("a.fio", then "b.fio"): give it once',
    });
  });

  it('with the same value, a boolean, or a flag that repeats is taken', () => {
    expect(parse(['--job', 'a', '--job', 'a', '--json', '--json'])?.values).toEqual({
      job: 'a',
      json: true,
    });
    expect(parse(['--device', 'vda', '--device', 'vdb'])?.values).toEqual({
      device: ['vda', 'vdb'],
    });
  });

  it('bench --job a --job b runs neither (process: exit 2, one line)', async () => {
    const { code, stdout, stderr } = await runCli(['bench', '--job', NVME, '--job', 'other.fio']);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      `swiotlb-mediator bench: --job given twice ("${NVME}", then "other.fio"): give it once (--help lists the options)\n`,
    );
    expect(code).toBe(2);
  }, 30_000);
});

describe('integers', () => {
  it('past a bound, or past 2^53, are "too large", not "not an integer >= 0"', async () => {
    expect((await rejection(() => intFlag('base', '99999999999999999'))).message).toBe(
      '--base: "99999999999999999" is too large: at most 9007199254740991',
    );
    expect((await rejection(() => intFlag('areas', '0', 1, 1024))).message).toBe(
      '--areas: "0" must be an integer from 1 to 1024',
    );
    expect(intFlag('areas', '1024', 1, 1024)).toBe(1024);
  });

  it("size --areas stops at 1024, as a job's areas= does, not at a geometry error (exit 1)", async () => {
    expect(
      await rejection(() => sizeCommand(['--job', NVME, '--areas', '99999999'], io())),
    ).toEqual({ code: 'CLI_USAGE', message: '--areas: "99999999" is too large: at most 1024' });
  });

  it('size --seed stops below 2^32: the PRNG keeps 32 bits, 2^32 + 1 would run as 1', async () => {
    expect(
      await rejection(() => sizeCommand(['--job', NVME, '--seed', '4294967297'], io())),
    ).toEqual({
      code: 'CLI_USAGE',
      message: '--seed: "4294967297" is too large: at most 4294967295',
    });
  });

  it('serve --port shows a huge value as written, once, and takes 0x as other integer flags', async () => {
    const huge = await rejection(() =>
      serveCommand(['--port', '99999999999999999999', '--print-config'], io()),
    );
    expect(huge).toEqual({
      code: 'CLI_USAGE',
      message:
        'config: http.port (--port): "99999999999999999999" is not allowed; expected an integer from 0 to 65535',
    });
    const out = io();
    expect(await serveCommand(['--port', '0x50', '--print-config'], out)).toBe(0);
    expect(JSON.parse(out.stdout.text).http.port).toBe(80);
  });
});

describe('trace commands: the pool of the flags', () => {
  const trace = traceFile();
  const pool = ['--base', '0x80000000', '--slots', '512', '--quiet'];

  it.each([
    [
      'replay',
      () => replayTraceCommand(['--trace', trace, ...pool, '--areas', '99999999'], io()),
      'the pool of the flags (--base, --slots, --areas): area count 99999999 must be at most 65536',
    ],
    [
      'replay',
      () => replayTraceCommand(['--trace', trace, '--base', '0x80000001', '--areas', '2'], io()),
      'the pool of the flags (--base, --areas): base address 2147483649 must be a non-negative multiple of 2048',
    ],
    [
      'size',
      () => sizeTraceCommand(['--trace', trace, ...pool, '--pool-areas', '65536'], io()),
      'the pool of the flags (--base, --slots, --pool-areas): pool of 8388608 slots exceeds the limit of 524288 slots (1 GiB)',
    ],
    [
      'bench',
      () => benchTraceCommand(['--trace', trace, '--base', '0', '--restricted', '2GiB'], io()),
      'the pool of the flags (--base, --restricted): pool of 1048576 slots exceeds the limit of 524288 slots (1 GiB)',
    ],
  ])(
    '%s --trace: a pool the flags cannot form is CLI_USAGE (exit 2), not SWIOTLB_INVALID_GEOMETRY (exit 1)',
    async (_c, fn, message) => {
      expect(await rejection(fn)).toEqual({ code: 'CLI_USAGE', message });
    },
  );

  it('bench --trace refuses pool flags it would drop without --base or --dmesg', async () => {
    const r = await rejection(() =>
      benchTraceCommand(['--trace', trace, '--slots', '512', '--areas', '2', '--quiet'], io()),
    );
    expect(r).toEqual({
      code: 'CLI_USAGE',
      message:
        '--slots, --areas describe the traced pool, which needs --base ADDR or --dmesg FILE (without either, every map counts as not bounced)',
    });
  });

  it('--device "" (a name that matches nothing) is refused, not replayed as nothing', async () => {
    const r = await rejection(() =>
      replayTraceCommand(['--trace', trace, ...pool, '--areas', '2', '--device', ''], io()),
    );
    expect(r).toEqual({ code: 'CLI_USAGE', message: '--device: "" is empty' });
  });

  it('size --trace --areas stops at 1024 (it exited 1 with an advice for 2^27 areas)', async () => {
    const r = await rejection(() =>
      sizeTraceCommand(
        ['--trace', trace, ...pool, '--pool-areas', '2', '--areas', '99999999'],
        io(),
      ),
    );
    expect(r).toEqual({
      code: 'CLI_USAGE',
      message: '--areas: "99999999" is too large: at most 1024',
    });
  });
});

describe('config files', () => {
  it('a value that breaks two checks saying the same thing is one problem, not "1 more"', async () => {
    const r = await rejection(() => parseConfig({ http: { port: 1e20 } }));
    expect(r).toEqual({
      code: 'MEDIATOR_BAD_CONFIG',
      message:
        'config: http.port: 100000000000000000000 is not allowed; expected an integer from 0 to 65535',
    });
  });

  it('a byte-order mark before the JSON is skipped (it is invisible in the error)', () => {
    const path = file('bom.json', '\uFEFF{"http": {"port": 8181}}');
    expect(loadConfig({ file: path }).http.port).toBe(8181);
  });

  it('a JSON error after a byte-order mark says the line and column the editor shows', async () => {
    const path = file('bom-broken.json', '\uFEFF{\n  "http": { port: 1 }\n}\n');
    expect((await rejection(() => loadConfig({ file: path }))).message).toMatch(
      /: is not valid JSON \(line 2, column 13\): /,
    );
  });

  it('serve --config "" (an unset variable) is a usage error, not an unreadable file', async () => {
    expect(await rejection(() => serveCommand(['--config', '', '--print-config'], io()))).toEqual({
      code: 'CLI_USAGE',
      message: '--config: "" is empty',
    });
  });
});

describe('swiotlb-mediator without a command', () => {
  it('prints the command list on stderr, exit 2 (stdout stays empty)', async () => {
    const { code, stdout, stderr } = await runCli([]);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^Usage: swiotlb-mediator <command> \[options\]\n/);
    expect(stderr).toMatch(/Exit status: 0 on success, 1 when a command fails/);
    expect(code).toBe(2);
  }, 30_000);
});
