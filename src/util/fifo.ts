/**
 * A growable FIFO on a circular array: push and shift are O(1) and allocate
 * nothing until the ring has to grow (it doubles, and never shrinks), so a queue
 * that reaches its working size stops allocating.
 *
 *    head                    tail
 *     v                       v
 *   [ a  b  c  d  .  .  .  .  ]      length = tail - head (mod capacity)
 *
 * Rules: capacity is a power of two; head == tail means empty; one slot always
 * stays free so that full and empty differ; shifted slots are cleared so the
 * queue keeps no reference to what it handed out.
 */
export class Fifo<T> {
  private items: (T | undefined)[];
  private head = 0;
  private tail = 0;
  private mask: number;

  constructor(initialCapacity = 16) {
    let cap = 2;
    while (cap < initialCapacity) cap *= 2;
    this.items = new Array<T | undefined>(cap);
    this.mask = cap - 1;
  }

  get length(): number {
    return (this.tail - this.head) & this.mask;
  }

  isEmpty(): boolean {
    return this.head === this.tail;
  }

  push(item: T): void {
    this.items[this.tail] = item;
    this.tail = (this.tail + 1) & this.mask;
    if (this.tail === this.head) this.grow();
  }

  peek(): T | undefined {
    return this.head === this.tail ? undefined : this.items[this.head];
  }

  /** The item `index` places behind the oldest (0 = peek()), or undefined past the end. */
  at(index: number): T | undefined {
    return index >= 0 && index < this.length
      ? this.items[(this.head + index) & this.mask]
      : undefined;
  }

  shift(): T | undefined {
    if (this.head === this.tail) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    return item;
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  private grow(): void {
    const old = this.items;
    const cap = old.length;
    // head == tail: the ring is full; unroll it from head into a twice larger array.
    const next = new Array<T | undefined>(cap * 2);
    for (let i = 0; i < cap; i++) next[i] = old[(this.head + i) & this.mask];
    this.items = next;
    this.head = 0;
    this.tail = cap;
    this.mask = cap * 2 - 1;
  }
}
