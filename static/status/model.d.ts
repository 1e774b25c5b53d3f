// Types of model.js (the status page's arithmetic) for the tests that import it.

export declare const FREE: 0;
export declare const IN_USE: 1;
export declare const PADDING: 2;
export declare const COHERENT: 3;

export interface SlotMapLayout {
  cell: number;
  cols: number;
  rowsPerArea: number;
  width: number;
  height: number;
  areaGap: number;
  segment: number;
  nslabs: number;
  nareas: number;
  areaNslabs: number;
}

export declare function decodeMap(base64: string): Uint8Array;
export declare function slotState(bits: Uint8Array, s: number): 0 | 1 | 2 | 3;
export declare function counterDelta(before: number, after: number, wraps?: boolean): number;
export declare function ratePerSecond(
  before: number | undefined,
  after: number | undefined,
  seconds: number | undefined,
  wraps?: boolean,
): number | undefined;
export declare function busyShare(
  idleBefore: number | undefined,
  idleAfter: number | undefined,
  seconds: number | undefined,
  threads: number,
): number | undefined;
export declare function windowQuantile(
  bounds: readonly number[],
  before: readonly number[] | undefined,
  after: readonly number[],
  q: number,
): number | undefined;
export declare function slotMapLayout(
  nslabs: number,
  nareas: number,
  areaNslabs: number,
  maxWidth: number,
  maxHeight: number,
  segment?: number,
): SlotMapLayout;
export declare function slotXY(layout: SlotMapLayout, s: number): { x: number; y: number };
export declare function slotAt(layout: SlotMapLayout, x: number, y: number): number;
export declare function formatInteger(n: number): string;
export declare function formatCount(n: number | undefined): string;
export declare function formatRate(bytesPerSecond: number | undefined): string;
export declare function formatSize(bytes: number): string;
export declare function formatSeconds(s: number | undefined): string;
export declare function formatPercent(part: number, whole: number): string;
