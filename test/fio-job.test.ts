/**
 * The job-file reader's fio rules, one test (or more) per rule, each checked
 * against fio 3.42's source (axboe/fio): the engine's effect on the depth
 * (backend.c, engines/), `direct`, aliases (options.c `.alias`), runtime=0
 * (backend.c runtime_exceeded()), sizes (parse.c __get_mult_bytes()), the comma
 * forms of bs/bssplit (parse.c handle_option(), options.c str_split_parse(),
 * bssplit_ddir()), the batch/randrepeat/name options, and comments (parse.c
 * strip_blank_end()).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type FioJob, parseFioSize, parseJobFile } from '../src/workload/fio-job.js';
import { caught } from './helpers/caught.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NOTE =
  'note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth will be capped at 1';

const job = (text: string): FioJob => parseJobFile(text).jobs[0]!;
const warnings = (text: string): string => parseJobFile(text).warnings.join('\n');
const sizes = (split: FioJob['bs']['read']) => split.map((e) => [e.size, e.percent]);

describe('ioengine: the engine decides the depth (backend.c thread_main(), engines/*.c)', () => {
  it('no ioengine is psync (os/os.h FIO_PREFERRED_ENGINE): iodepth capped at 1, with fio note', () => {
    const text = '[x]\nrw=randread\niodepth=32\n';
    expect(job(text).iodepth).toBe(1);
    const w = warnings(text);
    expect(w).toContain(NOTE);
    expect(w).toMatch(/\[x\] iodepth=32 runs at depth 1: no ioengine: fio's default, psync/);
  });

  it('every synchronous engine (FIO_SYNCIO) caps it; iodepth=1 warns of no cap', () => {
    for (const engine of ['sync', 'psync', 'pvsync', 'pvsync2', 'mmap', 'splice', 'net']) {
      const text = `[x]\nioengine=${engine}\ndirect=1\niodepth=8\n`;
      expect(job(text).iodepth, engine).toBe(1);
      expect(warnings(text), engine).toContain(NOTE);
    }
    expect(warnings('[x]\nioengine=psync\ndirect=1\niodepth=1\n')).not.toContain(NOTE);
  });

  it('asynchronous engines keep iodepth; "aio..." and "linuxaio" are libaio (ioengines.c __load_ioengine())', () => {
    for (const engine of ['libaio', 'io_uring', 'posixaio', 'null', 'aio', 'linuxaio', 'xnvme']) {
      const text = `[global]\nioengine=${engine}\ndirect=1\n[x]\niodepth=32\n`;
      expect(job(text).iodepth, engine).toBe(32);
      expect(warnings(text), engine).not.toContain(NOTE);
    }
    // Nothing differs from fio's depth: no warning.
    expect(parseJobFile('[x]\nioengine=libaio\ndirect=1\niodepth=4\n').warnings).toEqual([]);
  });

  it('a job section may set its own engine over [global]', () => {
    const jf = parseJobFile(
      '[global]\nioengine=libaio\ndirect=1\niodepth=16\n[a]\n[b]\nioengine=psync\n',
    );
    expect(jf.jobs.map((j) => j.iodepth)).toEqual([16, 1]);
  });

  it('an engine fio does not have is refused, as fio fails to load it', () => {
    const err = caught(() => job('[x]\nioengine=fancy\niodepth=4\n'));
    expect(err.code).toBe('JOB_BAD_FILE');
    expect(err.message).toMatch(/fio has no engine "fancy".*engine fancy not loadable/);
    expect(caught(() => job('[x]\nioengine=external:/tmp/e.so\n')).message).toMatch(/external/);
    // An engine that does no I/O (FIO_NOIO / FIO_FAKEIO).
    expect(caught(() => job('[x]\nioengine=cpuio\n')).code).toBe('JOB_BAD_FILE');
    // Synchronous yet queueing (vsync merges contiguous I/Os): refused above depth 1 only.
    expect(caught(() => job('[x]\nioengine=vsync\niodepth=4\n')).code).toBe('JOB_BAD_FILE');
    expect(job('[x]\nioengine=vsync\niodepth=1\n').iodepth).toBe(1);
  });

  it('every example job sets an asynchronous engine and direct=1, so runs at the depth it says', () => {
    const dir = join(ROOT, 'examples/jobs');
    const files = readdirSync(dir).filter((f) => f.endsWith('.fio'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      const jf = parseJobFile(text, f);
      const written = Number(/^iodepth=(\d+)$/m.exec(text)![1]);
      expect(
        jf.jobs.map((j) => j.iodepth),
        f,
      ).toEqual(jf.jobs.map(() => written));
      expect(jf.warnings.join('\n'), f).not.toMatch(/depth 1|page cache/);
    }
  });
});

describe('direct: warned of unless 1 (fio default 0 goes through the page cache)', () => {
  it('unset, direct=0 or buffered=1 warn of the page cache; direct=1 and buffered=0 do not', () => {
    const base = '[x]\nioengine=libaio\niodepth=4\n';
    expect(warnings(base)).toMatch(
      /direct unset \(fio's default, direct=0\) ignored: .*page cache/,
    );
    expect(warnings(base)).toMatch(/libaio and buffered I\/O does not reach iodepth/);
    expect(warnings(`${base}direct=0\n`)).toMatch(/direct=0 ignored: .*as with direct=1/);
    expect(warnings(`${base}buffered=1\n`)).toMatch(/buffered=1 ignored: .*page cache/);
    expect(warnings(`${base}direct=1\n`)).not.toMatch(/page cache/);
    expect(warnings(`${base}buffered=0\n`)).not.toMatch(/page cache/);
    // One option: the later line wins whichever spelling it uses.
    expect(warnings(`${base}direct=1\nbuffered=1\n`)).toMatch(/page cache/);
  });
});

describe('aliases are one option (options.c .alias): the later line wins', () => {
  it('a job section overrides [global] in the other spelling', () => {
    expect(job('[global]\nrw=randwrite\n[x]\nreadwrite=randread\n').rw).toBe('randread');
    expect(job('[global]\nreadwrite=randread\n[x]\nrw=write\n').rw).toBe('write');
    expect(job('[global]\nbs=8k\n[x]\nblocksize=16k\n').bs.read[0]!.size).toBe(16384);
    expect(job('[global]\nio_size=1m\n[x]\nio_limit=2m\n').ioSize).toBe(2 * 2 ** 20);
    expect(job('[global]\nruntime=10\n[x]\ntimeout=20\n').runtime).toBe(20);
  });

  it('within a section, the later line wins', () => {
    expect(job('[x]\nruntime=5\ntimeout=20\n').runtime).toBe(20);
    expect(job('[x]\nbs=8k\nblocksize=16k\n').bs.read[0]!.size).toBe(16384);
    expect(job('[x]\nio_size=1m\nio_limit=2m\n').ioSize).toBe(2 * 2 ** 20);
  });

  it("the report lists an alias under fio's name for the option", () => {
    expect(job('[x]\nreadwrite=randread\ntimeout=3\n').options).toEqual({
      rw: 'randread',
      runtime: '3',
    });
  });
});

describe('runtime=0 is no limit (backend.c runtime_exceeded(): if (!td->o.timeout) return false)', () => {
  it('runtime=0 and timeout=0 are unset; they undo a [global] runtime; time_based then refused', () => {
    expect(job('[x]\nruntime=0\n').runtime).toBeUndefined();
    expect(job('[x]\ntimeout=0\n').runtime).toBeUndefined();
    expect(job('[global]\nruntime=10\n[x]\nruntime=0\n').runtime).toBeUndefined();
    // time_based then has no runtime: refused, as when runtime is missing.
    expect(caught(() => job('[x]\ntime_based\nruntime=0\n')).code).toBe('JOB_BAD_FILE');
  });
});

describe('sizes as fio reads them with kb_base=1024 (parse.c __get_mult_bytes())', () => {
  it('k/m/g are powers of 2, kb/KB the same, b bytes, a bare number bytes, 0x hexadecimal', () => {
    expect(parseFioSize('4096')).toBe(4096);
    expect(parseFioSize('4k')).toBe(4096);
    expect(parseFioSize('4K')).toBe(4096);
    expect(parseFioSize('4kb')).toBe(4096);
    expect(parseFioSize('4KB')).toBe(4096);
    expect(parseFioSize('1m')).toBe(2 ** 20);
    expect(parseFioSize('1g')).toBe(2 ** 30);
    expect(parseFioSize('512b')).toBe(512);
    expect(parseFioSize('512B')).toBe(512);
    expect(parseFioSize('0x1000')).toBe(4096);
  });

  it('KiB/MiB/GiB are powers of 10 ("else if (kb_base == 1024) mult = 1000;")', () => {
    expect(parseFioSize('4KiB')).toBe(4000);
    expect(parseFioSize('1MiB')).toBe(1_000_000);
    expect(parseFioSize('1gib')).toBe(1_000_000_000);
    expect(job('[x]\nio_size=1MiB\n').ioSize).toBe(1_000_000);
    expect(warnings('[x]\nio_size=1MiB\n')).toMatch(/"1MiB" is 1000000 bytes, as fio reads it/);
    // 4000 bytes is no block size: refused, saying why.
    expect(caught(() => job('[x]\nbs=4KiB\n')).message).toMatch(/4000 bytes \(fio reads "4KiB"/);
  });

  it('forms fio misreads are refused: fractions, a space, unknown suffixes, "mi"', () => {
    for (const v of ['1.5g', '4 k', '4q', '4kfoo', '1mi', '0x10k', '-4k']) {
      expect(parseFioSize(v), v).toBeUndefined();
    }
    expect(caught(() => job('[x]\nsize=1.5g\n')).code).toBe('JOB_BAD_FILE');
  });

  it("this project's pool sizes refuse IEC suffixes rather than read them as 10^n", () => {
    expect(caught(() => parseJobFile('[global]\npool_size=64MiB\n[x]\n')).message).toMatch(
      /powers of 10.*write "64M"/,
    );
    expect(parseJobFile('[global]\npool_size=64m\n[x]\n').settings.poolSize).toBe(64 * 2 ** 20);
    expect(caught(() => parseJobFile('[global]\nrestricted=4MiB\n[x]\n')).code).toBe(
      'JOB_BAD_FILE',
    );
  });
});

describe('bs comma forms (HOWTO blocksize: "A value not terminated in a comma applies to subsequent types")', () => {
  const bs = (line: string, global = '') => {
    const j = job(`[global]\n${global}\n[x]\nrw=randrw\n${line}\n`);
    return [j.bs.read[0]!.size, j.bs.write[0]!.size];
  };

  it('8k, is reads only; ,8k writes only; 8k both; 4k,8k each', () => {
    expect(bs('bs=8k,')).toEqual([8192, 4096]);
    expect(bs('bs=,8k')).toEqual([4096, 8192]);
    expect(bs('bs=8k')).toEqual([8192, 8192]);
    expect(bs('bs=4k,8k')).toEqual([4096, 8192]);
    expect(bs('bs=4k,,')).toEqual([4096, 4096]);
    // No size at all is an error in fio too (handle_option(): no part parses).
    expect(caught(() => job('[x]\nbs=,\n')).code).toBe('JOB_BAD_FILE');
  });

  it('read,write,trim is accepted; the trim size is ignored with a warning', () => {
    expect(bs('bs=4k,64k,8k')).toEqual([4096, 65536]);
    expect(warnings('[x]\nbs=4k,64k,8k\n')).toMatch(/the trim size \(third value\) is ignored/);
    expect(caught(() => job('[x]\nbs=4k,8k,8k,8k\n')).code).toBe('JOB_BAD_FILE');
  });

  it('each line sets only the directions it names, over [global] and earlier lines', () => {
    expect(bs('bs=8k,', 'bs=,16k')).toEqual([8192, 16384]);
    expect(bs('bs=,8k\nbs=16k,')).toEqual([16384, 8192]);
  });
});

describe('bssplit as fio reads it (options.c split_parse_ddir(), bssplit_ddir())', () => {
  it('shares below 100: the rest goes to the largest share (sorted last); over 100 refused', () => {
    expect(sizes(job('[x]\nbssplit=4k/50:64k/40\n').bs.read)).toEqual([
      [4096, 60],
      [65536, 40],
    ]);
    // Over 100 is still refused (HOWTO bssplit: "it will error out").
    expect(caught(() => job('[x]\nbssplit=4k/60:8k/60\n')).code).toBe('JOB_BAD_FILE');
  });

  it('percentages are atoi()ed: 33.3 is 33, with a warning', () => {
    const text = '[x]\nbssplit=4k/33.3:8k/66.7\n';
    expect(sizes(job(text).bs.read)).toEqual([
      [4096, 33],
      [8192, 67],
    ]);
    expect(warnings(text)).toMatch(/"33\.3%" is 33%, as fio reads it \(atoi\(\)/);
  });

  it('/0 is a blank share; blanks share the rest in whole percents, the remainder to the last', () => {
    expect(sizes(job('[x]\nbssplit=4k/0:8k/50\n').bs.read)).toEqual([
      [4096, 50],
      [8192, 50],
    ]);
    expect(sizes(job('[x]\nbssplit=4k:8k:16k\n').bs.read)).toEqual([
      [4096, 33],
      [8192, 33],
      [16384, 34],
    ]);
  });

  it('comma forms as bs; a direction without a split keeps bs', () => {
    const j = job('[x]\nrw=randrw\nbs=8k\nbssplit=4k/50:16k/50,\n');
    expect(sizes(j.bs.read)).toEqual([
      [4096, 50],
      [16384, 50],
    ]);
    expect(sizes(j.bs.write)).toEqual([[8192, 100]]);
    expect(sizes(job('[x]\nrw=randrw\nbssplit=,4k/50:8k/50\n').bs.read)).toEqual([[4096, 100]]);
  });
});

describe('aliases behave alike; batch options warn only off their default 1', () => {
  it('iodepth_batch and iodepth_batch_submit: 1 is silent, 4 warns the same', () => {
    for (const key of ['iodepth_batch', 'iodepth_batch_submit']) {
      const quiet = `[x]\nioengine=libaio\ndirect=1\n${key}=1\n`;
      expect(parseJobFile(quiet).warnings.filter((w) => w.includes(key))).toEqual([]);
      expect(warnings(`[x]\n${key}=4\n`)).toMatch(
        new RegExp(`${key}=4 ignored: fio submits I/Os in batches`),
      );
    }
  });

  it('iodepth_batch_complete and iodepth_batch_complete_min: both read, both warn off 1', () => {
    for (const key of ['iodepth_batch_complete', 'iodepth_batch_complete_min']) {
      expect(warnings(`[x]\n${key}=8\n`)).toMatch(new RegExp(`${key}=8 ignored: fio waits`));
      expect(warnings(`[x]\n${key}=1\n`)).not.toMatch(new RegExp(key));
    }
  });

  it('randrepeat and allrandrepeat: both read; 0 warns (fio seeds from the system RNG)', () => {
    for (const key of ['randrepeat', 'allrandrepeat']) {
      expect(warnings(`[x]\n${key}=0\n`)).toMatch(/setup_random_seeds/);
      expect(warnings(`[x]\n${key}=1\n`)).not.toMatch(new RegExp(key));
    }
  });
});

describe('name= (HOWTO name: "may be used to override the name printed by fio")', () => {
  it("a job's name= is its name; [global]'s is not (init.c get_new_job())", () => {
    expect(job('[x]\nname=database\n').name).toBe('database');
    const jf = parseJobFile('[global]\nname=all\n[a]\n[b]\n');
    expect(jf.jobs.map((j) => j.name)).toEqual(['a', 'b']);
    expect(jf.warnings.join('\n')).toMatch(/"name" in \[global\] ignored/);
  });
});

describe('comments: a line is cut at any ; or # (parse.c strip_blank_end())', () => {
  it('without whitespace before them too, on option and section lines', () => {
    const jf = parseJobFile('[x]#the job\nbs=8k;8k blocks\nrw=randread#random\n');
    expect(jf.jobs[0]!.name).toBe('x');
    expect(jf.jobs[0]!.bs.read[0]!.size).toBe(8192);
    expect(jf.jobs[0]!.rw).toBe('randread');
  });
});

describe('group_reporting and norandommap: read by the runner, checked here', () => {
  it('take a bool or the bare flag, without a warning; any other value is refused', () => {
    for (const line of ['group_reporting', 'group_reporting=0', 'norandommap', 'norandommap=1']) {
      const text = `[x]\nrw=randread\nioengine=libaio\ndirect=1\n${line}\n`;
      expect(warnings(text)).toBe('');
      expect(job(text).options).toHaveProperty(line.split('=')[0]!);
    }
    expect(caught(() => job('[x]\nrw=randread\nnorandommap=maybe\n')).code).toBe('JOB_BAD_FILE');
  });
});

describe('times as fio reads them (parse.c get_mult_time())', () => {
  it('whole numbers with us/usec/ms/msec/s/m/h/d; fractions and sec/min refused', () => {
    expect(job('[x]\nrw=read\nruntime=90\n').runtime).toBe(90);
    expect(job('[x]\nrw=read\nruntime=2m\n').runtime).toBe(120);
    expect(job('[x]\nrw=read\nruntime=1500msec\n').runtime).toBe(1.5);
    for (const v of ['0.5', '1.5s', '30sec', '2min']) {
      const e = caught(() => job(`[x]\nrw=read\nruntime=${v}\n`));
      expect(e.code).toBe('JOB_BAD_FILE');
      expect(e.message).toMatch(/get_mult_time/);
    }
  });
});
