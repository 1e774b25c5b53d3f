import { readFileSync } from 'node:fs';

/**
 * This package's version, from the nearest package.json above this module: two
 * levels up from src/ and dist/, three from the benchmarks' dist-bench/src/.
 * '0.0.0' when none can be read (a bundled copy, say).
 */
export function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'swiotlb-mediator' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: look one level further up
    }
  }
  return '0.0.0';
}
