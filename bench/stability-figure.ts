import { median } from './median.js';

/** One figure of a bench:stability experiment: the median of its rounds and their range. */
export interface Figure {
  name: string;
  median: number;
  min: number;
  max: number;
}

export const figure = (name: string, values: number[]): Figure => ({
  name,
  median: +median(values).toFixed(3),
  min: +Math.min(...values).toFixed(3),
  max: +Math.max(...values).toFixed(3),
});
