/**
 * Reading a callgrind output file (callgrind_format, valgrind 3.x): the total of
 * its events, from its `totals:` line, or its `summary:` line when a file has no
 * totals. With --separate-threads=yes each thread has a file of its own, so the
 * total of the file ending in "-01" is the main thread's.
 */
export function mainThreadInstructions(text: string): number {
  const m = /^totals:\s+(\d+)/m.exec(text) ?? /^summary:\s+(\d+)/m.exec(text);
  if (m === null) throw new Error('callgrind output without a totals or summary line');
  return Number(m[1]);
}
