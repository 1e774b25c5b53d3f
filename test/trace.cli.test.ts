import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { BENCH_TRACE_HELP } from '../src/cli/bench-trace.js';
import {
  isTraceReplay,
  parseMaskFlags,
  REPLAY_TRACE_HELP,
  replayTraceCommand,
} from '../src/cli/replay-trace.js';
import { SIZE_TRACE_HELP } from '../src/cli/size-trace.js';
import { isMediatorError } from '../src/errors.js';
import { bootLog, DmaDirection, type GenEvent, KernelSim, render } from './helpers/trace-gen.js';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'trace-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function run(
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

const G = { base: 0x8000_0000, slots: 512, areas: 2 };

/** A small trace: cpu 0 and 1 map, sync and unmap; one mapping predates the trace. */
function smallTrace(): string {
  const sim = new KernelSim(G);
  const a = sim.map('0000:00:04.0', 0, 0x1_0000_0000, 4096, DmaDirection.TO_DEVICE);
  const b = sim.map('0000:00:04.0', 1, 0x1_0001_0000, 65536, DmaDirection.FROM_DEVICE);
  const d = sim.map('0000:00:05.0', 1, 0x1_0002_0000, 1500, DmaDirection.TO_DEVICE, {
    bounce: false,
  });
  const events: GenEvent[] = [
    { t: 'bounced', cpu: 0, m: a },
    { t: 'map', cpu: 0, m: a },
    { t: 'map', cpu: 1, m: b },
    { t: 'map', cpu: 1, m: d },
    { t: 'other', cpu: 0, name: 'sched_switch', body: 'prev_comm=fio' },
    { t: 'sync', cpu: 1, m: b, offset: 0, size: 65536, forDevice: false },
    { t: 'unmap', cpu: 0, m: a },
    { t: 'unmap', cpu: 1, m: b },
    { t: 'unmap', cpu: 1, m: { ...a, dmaAddr: G.base + 100 * 2048 } },
  ];
  return render(events, { layout: 'trace-cmd', arrays: 'kernel', naming: 'mainline' }).text;
}

const TIMEOUT = 30_000;

describe('replay --trace (process)', () => {
  const trace = file('trace.txt', smallTrace());
  const dmesg = file(
    'dmesg.txt',
    bootLog(G, [
      '[  200.000100] virtio-pci 0000:00:04.0: swiotlb buffer is full (sz: 4096 bytes), total 512 (slots), used 510 (slots)',
    ]),
  );

  it(
    '--json prints the report, then the summary as the last line',
    async () => {
      const { code, stdout, stderr } = await run([
        'replay',
        '--trace',
        trace,
        '--dmesg',
        dmesg,
        '--json',
      ]);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const lines = stdout.trim().split('\n');
      expect(lines).toHaveLength(2);
      const report = JSON.parse(lines[0]!);
      expect(report.input.layout).toBe('trace-cmd');
      expect(report.boot_log.full_warnings_total).toBe(1);
      expect(JSON.parse(lines[1]!)).toEqual({
        events: 8,
        replayed: 2,
        placements: { agree: 2, disagree: 0 },
        full: 0,
        used_hiwater: 34,
        nslabs: 512,
        kernel_full: 0,
        observed_used_hiwater: 34,
        first_disagreement_line: null,
        unmaps_before_trace: 1,
        lost_events: null,
        profile: '6.10',
        outside_bounced: 0,
        kernel_hangs: 0,
      });
    },
    TIMEOUT,
  );

  it(
    'reads the trace from stdin (-) and prints text by default',
    async () => {
      const { code, stdout } = await run(
        ['replay', '--trace', '-', '--base', '0x80000000', '--slots', '512', '--areas', '2'],
        smallTrace(),
      );
      expect(code).toBe(0);
      expect(stdout).toMatch(/^swiotlb trace replay: stdin \(trace-cmd report\)\n/);
      expect(stdout).toMatch(/placements: 2 replayed, 2 agree, 0 disagree/);
      expect(stdout).toMatch(/unmaps: 2 replayed, 1 of mappings made before the trace/);
    },
    TIMEOUT,
  );

  it(
    'TRACE_NOT_A_TRACE: exit 1, one line naming the line it read',
    async () => {
      const notTrace = file('notes.txt', 'my notes\nabout the guest\n');
      const { code, stdout, stderr } = await run(['replay', '--trace', notTrace, '--dmesg', dmesg]);
      expect(stdout).toBe('');
      expect(code).toBe(1);
      expect(stderr).toMatch(
        /^swiotlb-mediator: TRACE_NOT_A_TRACE: .*notes\.txt is not a trace: line 1 reads "my notes"/,
      );
      expect(stderr.trim().split('\n')).toHaveLength(1);
    },
    TIMEOUT,
  );

  it(
    'TRACE_NO_DMA_EVENTS and TRACE_BAD_BOOT_LOG: exit 1',
    async () => {
      const sched = file(
        'sched.txt',
        '# tracer: nop\n   fio-1     [000] .....  1.000000: sched_switch: prev_comm=fio\n',
      );
      const noDma = await run(['replay', '--trace', sched, '--dmesg', dmesg]);
      expect(noDma.code).toBe(1);
      expect(noDma.stderr).toMatch(/TRACE_NO_DMA_EVENTS: .* its 1 events are sched_switch \(1\)/);

      const badLog = file('dmesg-late.txt', '[ 9000.0] eth0: link up\n');
      const noPool = await run(['replay', '--trace', trace, '--dmesg', badLog]);
      expect(noPool.code).toBe(1);
      expect(noPool.stderr).toMatch(
        /TRACE_BAD_BOOT_LOG: .*dmesg-late\.txt: no line "software IO TLB: mapped/,
      );
    },
    TIMEOUT,
  );

  it(
    'a usage error: one line, exit 2',
    async () => {
      const { code, stdout, stderr } = await run(['replay', '--trace', trace]);
      expect(stdout).toBe('');
      expect(code).toBe(2);
      expect(stderr.trim()).toBe(
        'swiotlb-mediator replay: without --dmesg FILE, give the pool with --base ADDR and --areas N (and --slots N, default 32768), or --restricted SIZE --base ADDR (--help lists the options)',
      );
      // size --trace takes the traced pool's areas as --pool-areas (its --areas is
      // the count to recommend for), and says so.
      const size = await run(['size', '--trace', trace, '--base', '0x1000000', '--areas', '2']);
      expect(size.code).toBe(2);
      expect(size.stderr.trim()).toBe(
        'swiotlb-mediator size: without --dmesg FILE, give the pool with --base ADDR and --pool-areas N (and --slots N, default 32768), or --restricted SIZE --base ADDR (--help lists the options)',
      );
    },
    TIMEOUT,
  );

  it('usage errors name the flag: both inputs on stdin, a bad mask, a bad version, a missing file', async () => {
    const io = { stdin: Readable.from([]), stdout: new PassThrough(), stderr: new PassThrough() };
    const cases: [string[], RegExp][] = [
      [['--trace', '-', '--dmesg', '-'], /--dmesg and --trace cannot both read stdin/],
      [
        ['--trace', trace, '--dmesg', dmesg, '--min-align-mask', 'nvme0=0x1000'],
        /must be 2\^k - 1/,
      ],
      [
        ['--trace', trace, '--dmesg', dmesg, '--kernel', 'latest'],
        /--kernel latest: not a kernel version like 6\.12/,
      ],
      [
        ['--trace', trace, '--dmesg', dmesg, '--kernel', '6.8.12'],
        /--kernel 6\.8\.12: no swiotlb profile for Linux 6\.8; the modelled lines are 6\.1 \(6\.1\.y\), 6\.6 \(6\.6\.y\) and 6\.10 \(6\.10 and later\)/,
      ],
      [['--trace', trace, '--restricted', 'log'], /--restricted log needs --dmesg FILE/],
      [
        ['--trace', trace, '--dmesg', dmesg, '--dynamic', '--kernel', '6.1.100'],
        /--dynamic: Linux 6\.1 has no CONFIG_SWIOTLB_DYNAMIC/,
      ],
      [
        ['--trace', join(dir, 'missing.txt'), '--dmesg', dmesg],
        /--trace: cannot read .*missing\.txt/,
      ],
      [['--trace', trace, 'stray'], /takes no arguments, got "stray"/],
    ];
    for (const [args, re] of cases) {
      await expect(replayTraceCommand(args, io), args.join(' ')).rejects.toSatisfy(
        (err: unknown) => isMediatorError(err, 'CLI_USAGE') && re.test((err as Error).message),
      );
    }
  });

  it(
    '--help prints the trace replay usage',
    async () => {
      const { code, stdout } = await run(['replay', '--trace', '-', '--help']);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^Usage: swiotlb-mediator replay --trace FILE\|-/);
    },
    TIMEOUT,
  );
});

describe('the trace commands in docs/cli.md', () => {
  const doc = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');
  it.each([
    ['replay --trace', REPLAY_TRACE_HELP],
    ['size --trace', SIZE_TRACE_HELP],
    ['bench --trace', BENCH_TRACE_HELP],
  ])('names every flag of %s --help', (_command, help) => {
    const flags = [...new Set([...help.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]))];
    expect(flags.length).toBeGreaterThan(5);
    expect(flags.filter((f) => f !== '--help' && !doc.includes(f))).toEqual([]);
  });
});

describe('replay --trace flags', () => {
  it('--trace selects the trace replay only before "--"', () => {
    expect(isTraceReplay(['--trace', 'x'])).toBe(true);
    expect(isTraceReplay(['--trace=x'])).toBe(true);
    expect(isTraceReplay(['file.jsonl'])).toBe(false);
    expect(isTraceReplay(['--', '--trace'])).toBe(false);
  });

  it('--min-align-mask takes MASK for every device and NAME=MASK per device', () => {
    const m = parseMaskFlags(['0x7ff', 'nvme0=0xfff', '0000:00:04.0=4095']);
    expect(m.all).toBe(0x7ff);
    expect([...m.byDevice]).toEqual([
      ['nvme0', 0xfff],
      ['0000:00:04.0', 0xfff],
    ]);
    try {
      parseMaskFlags(['=0xfff']);
      throw new Error('expected CLI_USAGE');
    } catch (err) {
      expect(isMediatorError(err, 'CLI_USAGE')).toBe(true);
    }
  });
});
