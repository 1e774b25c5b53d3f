#!/usr/bin/env node
import { isMediatorError } from '../errors.js';
import { packageVersion } from '../util/package-version.js';
import { usageLine } from './args.js';
import { benchCommand } from './bench.js';
import { replayCommand } from './replay-command.js';
import { serveCommand } from './serve.js';
import { sizeCommand } from './size.js';

const HELP = `Usage: swiotlb-mediator <command> [options]

Commands:
  serve                 run the mediator as an HTTP service (embedded default, or --config FILE)
  replay [FILE|-]       replay map/unmap/sync JSON lines against a Linux-faithful swiotlb pool
  replay --trace FILE   replay a kernel DMA trace (tracefs, trace-cmd report) and check the pool against it
  bench --job FILE      run a fio job file in-process; IOPS, latency, pool use (--json: fio-shaped)
  bench --trace FILE    run a traced guest's workload, bounce and direct
  size --job FILE       pool sizing advice for a fio job (swiotlb=, device tree, service config)
  size --trace FILE     pool sizing advice from a traced guest's DMA demand

Run "swiotlb-mediator <command> --help" for a command's options.
  -h, --help            this help
  -v, --version         print the version

Exit status: 0 on success, 1 when a command fails (its help says when), 2 on a
bad command line: no or an unknown command, a bad flag (CLI_USAGE).`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
  try {
    switch (command) {
      case 'serve':
        return await serveCommand(rest, io);
      case 'replay':
        return await replayCommand(rest, io);
      case 'bench':
        return await benchCommand(rest, io);
      case 'size':
        return await sizeCommand(rest, io);
      case undefined:
        // A usage error (exit 2), as an unknown command: on stderr, so that
        // `swiotlb-mediator > out` in a script that lost its arguments writes no help there.
        process.stderr.write(`${HELP}\n`);
        return 2;
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(`${HELP}\n`);
        return 0;
      case '-v':
      case '--version':
        process.stdout.write(`${packageVersion()}\n`);
        return 0;
      default:
        process.stderr.write(`swiotlb-mediator: unknown command "${command}"\n\n${HELP}\n`);
        return 2;
    }
  } catch (err) {
    if (isMediatorError(err) && err.code === 'CLI_USAGE') {
      process.stderr.write(`swiotlb-mediator ${usageLine(command ?? '', err)}\n`);
      return 2;
    }
    if (isMediatorError(err)) {
      process.stderr.write(`swiotlb-mediator: ${err.code}: ${err.message}\n`);
      return err.code === 'CLI_USAGE' || err.code.startsWith('JOB_') ? 2 : 1;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `swiotlb-mediator: internal error: ${(err as Error).stack ?? String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
