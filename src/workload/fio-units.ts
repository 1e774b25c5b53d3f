/**
 * fio's units in job files, as fio reads them (parse.c, fio 3.42): sizes with its
 * default kb_base=1024 and times. Forms fio takes but reads in a way nobody means
 * are refused (undefined), not followed.
 */

const SIZE_POWERS: Readonly<Record<string, number>> = { k: 1, m: 2, g: 3, t: 4, p: 5 };

/**
 * A fio size as fio reads it with its default kb_base=1024 (parse.c
 * str_to_decimal() and __get_mult_bytes()): a decimal number of bytes, or with a
 * suffix, case-insensitive: `k`/`kb` 1024, `m`/`mb` 2^20, `g`, `t`, `p` (`b`:
 * bytes), and the IEC `kib`/`mib`/`gib`/`tib`/`pib` POWERS OF 10 (`else if
 * (kb_base == 1024) mult = 1000;`; HOWTO "kb_base": "the unit prefixes are
 * opposite from those specified in the SI and IEC 80000-13 standards"): `4KiB` is
 * 4000 bytes, `1MiB` 1000000. `0x...` is hexadecimal (str_to_decimal(): base 16).
 *
 * Forms fio takes but whose meaning would surprise are refused (undefined), not
 * followed: a fraction (strtoll() stops at the `.`, and __get_mult_bytes() then
 * sees no suffix: fio reads `1.5g` as 1 byte), a space before the suffix (`4 k`
 * is 4 in fio), an unknown suffix (fio ignores it: `4q` is 4, `4kfoo` 4096),
 * `ki`/`mi`... without the `b` (fio's code reads `1mi` as 2^20 where its HOWTO
 * says 10^6), a hexadecimal number with a suffix, and `%` or zone (`z`) sizes.
 */
export function parseFioSize(value: string): number | undefined {
  const v = value.trim();
  if (/^0x[0-9a-f]+$/i.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  const m = /^(\d+)([a-z]*)$/i.exec(v);
  if (!m) return undefined;
  const suffix = m[2]!.toLowerCase();
  let mult = 1;
  if (suffix !== '' && suffix !== 'b') {
    const unit = /^([kmgtp])(b|ib)?$/.exec(suffix);
    if (!unit) return undefined;
    mult = (unit[2] === 'ib' ? 1000 : 1024) ** SIZE_POWERS[unit[1]!]!;
  }
  const bytes = Number(m[1]) * mult;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** An IEC suffix (`KiB`...), which fio reads as a power of 10. */
export function isIecSize(value: string): boolean {
  return /^\d+\s*[kmgtp]ib$/i.test(value.trim());
}

/**
 * A fio time in seconds, as parse.c get_mult_time() reads it: a whole number,
 * seconds unless suffixed `us`/`usec`, `ms`/`msec`, `s`, `m` (minutes), `h`, `d`.
 * Refused (undefined): a fraction (str_to_decimal()'s strtoll() stops at the `.`:
 * fio reads `0.5` as 0, which for `runtime` means no limit, and `1.5s` as 1 s),
 * and `sec` / `min`, which fio's exact comparisons (`!strcmp("s", c)`, `!strcmp("m",
 * c)`) do not match, so it reads `30sec` and `30min` as 30 µs.
 */
export function parseFioTime(value: string): number | undefined {
  const m = /^\s*(\d+)\s*(us|usec|ms|msec|s|m|h|d)?\s*$/i.exec(value);
  if (!m) return undefined;
  const scale: Record<string, number> = {
    us: 1e-6,
    usec: 1e-6,
    ms: 1e-3,
    msec: 1e-3,
    s: 1,
    m: 60,
    h: 3600,
    d: 86400,
  };
  return Number(m[1]) * scale[(m[2] ?? 's').toLowerCase()]!;
}
