/**
 * Byte sizes as people write them: "64MiB", "64M", "4k", "2048", "1.5GiB".
 * Binary multiples throughout, as the kernel's memparse() and fio read "k/m/g":
 * K = 1024. A plain number is bytes.
 */
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** Parses a size string or number into whole bytes; returns undefined when it does not parse. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  }
  const m = SIZE_RE.exec(input);
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) return undefined;
  return bytes;
}

/** Formats bytes the way the kernel log does for swiotlb: whole MiB when exact, else KiB or bytes. */
export function formatSize(bytes: number): string {
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}
