// Rows of struct-of-arrays tables (the lease table's leases and holders,
// the pod table's pods): a row is an index into typed arrays that grow by
// doubling, and released rows are taken again before new ones.

/** No row. */
export const NO_ROW = -1;

/** Rows of a struct-of-arrays table: a free list of released rows, and growth by doubling. */
export class Rows {
  capacity: number;
  #used = 0;
  readonly #free: number[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** A free row; grow(newCapacity) is called first when there is none. */
  take(grow: (capacity: number) => void): number {
    const row = this.#free.pop();
    if (row !== undefined) return row;
    if (this.#used === this.capacity) {
      this.capacity *= 2;
      grow(this.capacity);
    }
    return this.#used++;
  }

  /** Rows taken and not released. */
  get inUse(): number {
    return this.#used - this.#free.length;
  }

  release(row: number): void {
    this.#free.push(row);
  }
}

/** array copied into a new one of capacity elements (the rest fill, or 0). */
export function grown<T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(array: T, capacity: number, fill?: number): T {
  const bigger = new (array.constructor as new (n: number) => T)(capacity);
  if (fill !== undefined) bigger.fill(fill);
  bigger.set(array);
  return bigger;
}
