/**
 * Values as trace lines print them: addresses and sizes, arrays, and the
 * `key=value` fields of an event's text, in the three styles a trace may use.
 *
 * Arrays print as the kernel's trace_print_array_seq(): "{0x..,0x..}", hex with
 * 0x for every element size, sizes (u32) included. libtraceevent prints them the
 * same way from 1.8.4 (commit "Print arrays like Linux does"); before that,
 * elements are decimal, separated by a space, without braces. When
 * libtraceevent cannot parse an event's print format it prints
 * "[FAILED TO PARSE]" and the raw fields (tep_print_fields()): " name=value",
 * numbers in decimal (0x for longs), arrays as "ARRAY[xx, xx, ...]" bytes (little
 * endian); those lines are read too.
 *
 * Addresses are JavaScript numbers: exact below 2^53, which holds every
 * guest-physical address this project models; ffffffffffffffff (%llx of
 * DMA_MAPPING_ERROR) and anything above 2^53 get the markers below.
 */

/** DMA_MAPPING_ERROR (~(dma_addr_t)0): dma_addr=ffffffffffffffff, a failed map. */
export const DMA_MAPPING_ERROR = -1;
/** An address above 2^53: outside any pool this project models. */
export const ADDR_OUT_OF_RANGE = Number.POSITIVE_INFINITY;

/** How arrays were printed, for the report. */
export type ArrayStyle = 'kernel' | 'decimal' | 'raw';

/** A dma:* line that does not parse; `message` says what was expected. */
export class EventParseError extends Error {}

const HEX_RE = /^(?:0x)?([0-9a-f]+)$/i;
const DEC_RE = /^\d+$/;
const TWO_POW_53 = 2n ** 53n;
const U64_MAX = 2n ** 64n - 1n;

function fromBig(v: bigint): number {
  if (v === U64_MAX) return DMA_MAPPING_ERROR;
  return v < TWO_POW_53 ? Number(v) : ADDR_OUT_OF_RANGE;
}

/** A %llx field (no 0x), or a 0x-prefixed one; ffffffffffffffff is DMA_MAPPING_ERROR. */
export function parseHexAddr(text: string, what: string): number {
  const m = HEX_RE.exec(text);
  if (!m) throw new EventParseError(`expected ${what} in hex, got "${text}"`);
  const digits = m[1]!;
  if (digits.length <= 13) return Number.parseInt(digits, 16);
  return fromBig(BigInt(`0x${digits}`));
}

export function parseDec(text: string, what: string): number {
  if (!DEC_RE.test(text)) throw new EventParseError(`expected ${what} in decimal, got "${text}"`);
  if (text.length <= 15) return Number(text);
  return fromBig(BigInt(text));
}

/** A number tep_print_fields() printed: decimal, or hex with 0x. */
export function parseRawNumber(text: string, what: string): number {
  return text.startsWith('0x') ? parseHexAddr(text, what) : parseDec(text, what);
}

/**
 * Splits `key=value key=value ...` where a value may hold spaces (old-style
 * arrays "1 2 3", " [TRUNCATED]", raw "ARRAY[00, 10]"): a key is an identifier
 * right after a space, followed by "=".
 */
export function splitFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /(?:^|\s)([a-z_][a-z0-9_]*)=/gi;
  let key: string | undefined;
  let start = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (key !== undefined) out.set(key, text.slice(start, m.index).trim());
    key = m[1]!;
    start = m.index + m[0].length;
  }
  if (key !== undefined) out.set(key, text.slice(start).trim());
  return out;
}

export interface ParseState {
  /** Set to the style of the first array seen. */
  arrays?: ArrayStyle;
}

/** Parses an array field in any of the three styles; `elBytes` is for raw byte dumps. */
export function parseArray(text: string, what: string, elBytes: 4 | 8, st: ParseState): number[] {
  if (text.startsWith('{')) {
    if (!text.endsWith('}'))
      throw new EventParseError(`expected ${what}={0x..,0x..}, got "${text}"`);
    st.arrays ??= 'kernel';
    const inner = text.slice(1, -1).trim();
    if (inner === '') return [];
    return inner.split(',').map((v) => parseHexAddr(v.trim(), `${what} elements`));
  }
  if (text.startsWith('ARRAY[')) {
    st.arrays ??= 'raw';
    return parseByteArray(text, what, elBytes);
  }
  st.arrays ??= 'decimal';
  if (text === '') return [];
  return text.split(/\s+/).map((v) => parseDec(v, `${what} elements`));
}

/** "ARRAY[00, 10, ...]": little-endian elements of `elBytes` bytes. */
function parseByteArray(text: string, what: string, elBytes: 4 | 8): number[] {
  const inner = text.slice('ARRAY['.length, text.endsWith(']') ? -1 : undefined).trim();
  const bytes = inner === '' ? [] : inner.split(/,\s*/).map((b) => Number.parseInt(b, 16));
  if (bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255) || bytes.length % elBytes) {
    throw new EventParseError(`expected ${what}=ARRAY[...] of ${elBytes}-byte elements`);
  }
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += elBytes) {
    let v = 0n;
    for (let b = elBytes - 1; b >= 0; b--) v = (v << 8n) | BigInt(bytes[i + b]!);
    out.push(fromBig(v));
  }
  return out;
}

/** The hex digits of a %llx field the fast path matched (at most 16). */
export function hexNum(digits: string): number {
  return digits.length <= 13 ? Number.parseInt(digits, 16) : parseHexAddr(digits, 'an address');
}
