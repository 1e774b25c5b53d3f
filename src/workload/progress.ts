import type { Writable } from 'node:stream';
import { formatBytes, formatCount } from './report.js';
import type { ProgressSnapshot } from './runner.js';

/**
 * Progress on stderr: on a terminal, one bar redrawn in place (elapsed time,
 * live IOPS and throughput); otherwise a plain line at most every `lineEveryMs`.
 * Never writes to stdout, so `--json` output stays clean.
 */
export class Progress {
  private readonly tty: boolean;
  private lastLine = 0;
  private drawn = false;

  constructor(
    private readonly out: Writable & { isTTY?: boolean; columns?: number },
    private readonly lineEveryMs = 1000,
  ) {
    this.tty = out.isTTY === true;
  }

  update(p: ProgressSnapshot): void {
    const elapsed = `${(p.elapsedMs / 1000).toFixed(1)}s`;
    const pct = p.fraction === undefined ? '' : `${Math.round(p.fraction * 100)}%`;
    const what = `${p.mode}${p.ramping ? ' (ramp)' : ''}`;
    const rates = `${formatCount(p.iops)} IOPS, ${formatBytes(p.bwBytes)}/s`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((p.fraction ?? 0) * width);
      const bar =
        p.fraction === undefined
          ? ''
          : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${pct.padStart(4)} `;
      this.out.write(`\r\x1b[K${what} ${bar}${elapsed}  ${rates}`);
      this.drawn = true;
      return;
    }
    if (p.elapsedMs - this.lastLine < this.lineEveryMs) return;
    this.lastLine = p.elapsedMs;
    this.out.write(
      `bench: ${what} ${elapsed}${pct ? ` ${pct}` : ''}: ${rates}, ${p.ios} I/Os done\n`,
    );
  }

  /** Ends a mode's progress (clears the bar on a terminal). */
  done(message: string): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
    this.lastLine = 0;
    this.out.write(`${message}\n`);
  }
}
