import { MediatorError } from '../../errors.js';
import { KERNEL_SOURCES, type KernelVersion } from '../../swiotlb/kernel.js';

/**
 * Which kernel profile (src/swiotlb/kernel.ts, docs/kernels.md) a traced kernel
 * follows, from its version: `--kernel V`, or the boot log's banner
 * ("Linux version %s (...)", init/version.c's linux_banner: UTS_RELEASE first).
 *
 *   traced release      profile   why
 *   6.1.y               '6.1'     read in 6.1.192
 *   6.6.y               '6.6'     read in 6.6.y's stable patches up to 6.6.35
 *   6.10 and later      '6.10'    read in 6.12.117; no later change known
 *   6.2-6.5, 6.7-6.9    refused   docs/kernels.md does not say which line's rules
 *   before 6.1                    their swiotlb.c follows (6.3 took the 6.1
 *                                 deadlock fix, 6.9 the alignment series): no
 *                                 profile is known to place as they do
 *
 * The profile names themselves ("6.1", "6.6", "6.10") read as those lines.
 * Patch levels only add notes: 6.1.y before 6.1.84 and 6.6.y before 6.6.35 lack
 * patches the profile was read with (docs/kernels.md, "What was read").
 */

export interface TracedKernel {
  /** As given ("6.6.30", "6.1.0-27-amd64", "Debian 6.1.115-1" reads as 6.1.115). */
  text: string;
  major: number;
  minor: number;
  /**
   * The stable release (30 of 6.6.30); undefined when the text does not tell it:
   * a distribution's ABI name ("6.1.0-27-amd64" is some 6.1.y, not 6.1.0).
   */
  patch: number | undefined;
}

/** "6.12", "6.6.30", "v6.1-rc3", "6.1.0-27-amd64" -> the version; undefined when it is not one. */
export function parseKernelVersion(text: string): TracedKernel | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?(.*)$/.exec(text.trim());
  if (!m) return undefined;
  const rest = m[4]!;
  const patchText = m[3];
  let patch: number | undefined = patchText === undefined ? 0 : Number(patchText);
  // "6.1.0-27-amd64", "6.8.0-45-generic": a distribution's ABI name on x.y.0; the
  // stable release under it is unknown. "6.6.30-2-lts" keeps its 30.
  if (patch === 0 && patchText !== undefined && /^[-_+~]\w/.test(rest) && !/^-rc\d/.test(rest)) {
    patch = undefined;
  }
  return { text: text.trim(), major: Number(m[1]), minor: Number(m[2]), patch };
}

export const SUPPORTED_LINES = '6.1 (6.1.y), 6.6 (6.6.y) and 6.10 (6.10 and later)';

export interface ProfileChoice {
  profile: KernelVersion;
  /** What the report should say about the choice (older stable releases). */
  notes: string[];
}

/**
 * The profile a traced kernel follows, or undefined when none is known to
 * (see the table at the top of this file).
 */
export function profileFor(k: TracedKernel): ProfileChoice | undefined {
  const { major, minor, patch } = k;
  if (major > 6 || (major === 6 && minor >= 10)) return { profile: '6.10', notes: [] };
  if (major === 6 && minor === 6) {
    const notes: string[] = [];
    if (patch !== undefined && patch < 35) {
      notes.push(
        `Linux ${k.text}: the 6.6 profile was read with 6.6.y's stable patches up to 6.6.35 (the 6.9 alignment fixes, pad slots, page alignment of maps of a page or more); ${patch <= 23 ? '6.6.0-6.6.23 had none of them and searched differently' : 'this release lacks some of them'}, so maps of devices with a min_align_mask (NVMe) or of a page or more can disagree (docs/kernels.md)`,
      );
    }
    return { profile: '6.6', notes };
  }
  if (major === 6 && minor === 1) {
    const notes: string[] = [];
    if (patch !== undefined && patch < 84) {
      notes.push(
        `Linux ${k.text}: the 6.1 profile was read in 6.1.192; this release predates 6.1.84 ("swiotlb: Fix alignment checks when both allocation and DMA masks are present"), so maps of devices with a min_align_mask can disagree (docs/kernels.md)`,
      );
    }
    return { profile: '6.1', notes };
  }
  return undefined;
}

/** Where the version came from, for messages. */
export type VersionSource = { kind: 'flag' } | { kind: 'boot-log'; name: string; line: number };

/**
 * The profile for a version text, or the error that names the supported lines.
 * @throws CLI_USAGE (a --kernel that is not a version, or a line without a profile),
 *   TRACE_UNSUPPORTED_KERNEL (the boot log's kernel has no profile)
 */
export function chooseProfile(text: string, from: VersionSource): ProfileChoice {
  const where =
    from.kind === 'flag' ? `--kernel ${text}` : `${from.name}:${from.line}: Linux ${text}`;
  const k = parseKernelVersion(text);
  if (k === undefined) {
    throw new MediatorError(
      'CLI_USAGE',
      `${where}: not a kernel version like 6.12 or 6.6.30 (profiles: ${SUPPORTED_LINES})`,
    );
  }
  const choice = profileFor(k);
  if (choice !== undefined) return choice;
  const message = `${where}: no swiotlb profile for Linux ${k.major}.${k.minor}; the modelled lines are ${SUPPORTED_LINES}, and docs/kernels.md does not say which of them ${k.major}.${k.minor}'s kernel/dma/swiotlb.c places like. Replay under one line's rules anyway with --kernel 6.1, 6.6 or 6.10, knowing that placements may disagree`;
  if (from.kind === 'flag') throw new MediatorError('CLI_USAGE', message);
  throw new MediatorError('TRACE_UNSUPPORTED_KERNEL', message, {
    kernel: text,
    line: from.line,
  });
}

/** The report's words for the rules a profile follows. */
export function rulesText(profile: KernelVersion): string {
  return `Linux ${profile} profile: ${KERNEL_SOURCES[profile]}`;
}
