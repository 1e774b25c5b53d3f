/**
 * bench:stability `--experiment pages`: does the size of the pages behind the
 * pool decide what a copy into it costs? 4 KiB pages as allocated, against 2 MiB
 * ones (glibc's hugetlb tunable: bench/huge-pages.ts).
 *
 * Each round runs one child process each way (4 KiB pages, then with the tunable),
 * and each child copies into a 32 MiB area the way next-fit walks a pool area
 * (4 KiB and 64 KiB copies), back to back and with other memory work between
 * them (as a request's bookkeeping sits between its copies), and says how much
 * of the area huge pages back (AnonHugePages of /proc/self/smaps_rollup).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { anonHugeMiB, glibcTunables, HUGETLB_TUNABLE, thpMode } from './huge-pages.js';
import { type Figure, figure } from './stability-figure.js';

const MiB = 2 ** 20;
const AREA = 32 * MiB;
const CHILD_ENV = 'SWIOTLB_STABILITY_PAGES';

/** What one child measured: microseconds per copy by case, and the huge pages it got. */
interface PagesSample {
  hugeMiB: number | null;
  usPerCopy: Record<string, number>;
}

/** The copies of one child, each case for `windowMs`. */
function measure(windowMs: number): PagesSample {
  const src = new Uint8Array(new SharedArrayBuffer(2 * MiB)).fill(1);
  const area = new Uint8Array(new SharedArrayBuffer(AREA));
  const other = new Float64Array(new SharedArrayBuffer(4 * MiB));
  for (let i = 0; i < area.length; i += 4096) area[i] = 2;
  other.fill(1);
  const hugeMiB = anonHugeMiB();
  const usPerCopy: Record<string, number> = {};
  let sink = 0;
  for (const size of [4096, 65536]) {
    for (const work of [false, true]) {
      const slots = AREA / size;
      const s = src.subarray(0, size);
      let n = 0;
      const t0 = performance.now();
      let t = t0;
      while (t - t0 < windowMs) {
        for (let k = 0; k < 64; k++) {
          // Every other slot, as a request's header and status slots sit between
          // its data buffers in a next-fit walk.
          area.set(s, ((n * 2 + 1) % slots) * size);
          n++;
          if (work) {
            for (let j = 0; j < 64; j++) sink += other[(n * 4099 + j * 613) & (other.length - 1)]!;
          }
        }
        t = performance.now();
      }
      usPerCopy[`${size / 1024}K${work ? ' with work between' : ' back to back'}`] =
        ((t - t0) * 1000) / n;
    }
  }
  if (sink < 0) console.error(sink);
  return { hugeMiB, usPerCopy };
}

/** Runs the experiment: `rounds` alternated pairs of children. */
export function pagesExperiment(
  rounds: number,
  windowMs: number,
  log: (line: string) => void,
  show: (unit: string, f: Figure) => void,
): Figure[] {
  const script = fileURLToPath(import.meta.url);
  const samples = { small: [] as PagesSample[], huge: [] as PagesSample[] };
  for (let r = 0; r < rounds; r++) {
    for (const way of ['small', 'huge'] as const) {
      const stdout = execFileSync(process.execPath, [...process.execArgv, script], {
        encoding: 'utf8',
        env: {
          ...process.env,
          [CHILD_ENV]: String(windowMs),
          GLIBC_TUNABLES: glibcTunables(way === 'huge'),
        },
      });
      samples[way].push(JSON.parse(stdout.trim().split('\n').pop()!) as PagesSample);
    }
  }
  log(
    `pages: copies into a 32 MiB area walked as next-fit walks it, us per copy (THP: ${thpMode()}; one child process each way per round):`,
  );
  const out: Figure[] = [];
  for (const way of ['small', 'huge'] as const) {
    const label = way === 'small' ? 'as allocated' : `with ${HUGETLB_TUNABLE}`;
    const got = samples[way].map((s) => s.hugeMiB);
    const hugeFig = got.every((g) => g !== null)
      ? figure(`${label}: area on huge pages, MiB`, got as number[])
      : undefined;
    if (hugeFig) {
      show('MiB', hugeFig);
      out.push(hugeFig);
    } else {
      log(`  ${label}: huge pages unknown (no /proc/self/smaps_rollup)`);
    }
    for (const c of Object.keys(samples[way][0]!.usPerCopy)) {
      const f = figure(
        `${label}: ${c}`,
        samples[way].map((s) => s.usPerCopy[c]!),
      );
      show('us', f);
      out.push(f);
    }
  }
  return out;
}

// A child: measure, print one JSON line, exit.
const child = process.env[CHILD_ENV];
if (child !== undefined) console.log(JSON.stringify(measure(Number(child))));
