// Rows of a struct-of-arrays table found by a text key that the rows hold
// themselves (a pod by namespace and name, by uid): open addressing with
// linear probing over one Int32Array of row numbers. A Map keyed by the
// same strings costs a hash table entry per key (~40 bytes at 100k pods,
// beside the key string the row holds anyway); a slot here is 4 bytes, at
// most half the slots in use. The key is not stored: a probe asks the
// table whether a row holds it (`holds`), and the hash of a row's key is
// made again from the row (`keyOf`) when deletion moves entries back
// (no tombstones, so probes stay short under churn). Why by hand: no
// library indexes rows by a key they hold, and at 100k pods per agent the
// entries are what costs.

import { NO_ROW } from './rows.ts';

const MIN_CAPACITY = 64;

/** What a key is made of: one or two strings (e.g. namespace and name). */
export interface RowKeys {
  /** Whether the row holds the key. */
  holds(row: number, first: string, second: string): boolean;
  /** The hash of the row's key, as keyHash(first, second) of it. */
  hashOf(row: number): number;
}

/** FNV-1a over both strings' UTF-16 code units, with a separator between them. */
export function keyHash(first: string, second: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < first.length; i++) hash = Math.imul(hash ^ first.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ 0xffff, 0x01000193);
  for (let i = 0; i < second.length; i++) hash = Math.imul(hash ^ second.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

export class RowIndex {
  readonly #keys: RowKeys;
  #slots = new Int32Array(MIN_CAPACITY).fill(NO_ROW);
  #mask = MIN_CAPACITY - 1;
  #size = 0;

  constructor(keys: RowKeys) {
    this.#keys = keys;
  }

  get size(): number {
    return this.#size;
  }

  /** The row holding the key, or NO_ROW. */
  get(first: string, second = ''): number {
    return this.#slots[this.#find(first, second, keyHash(first, second))]!;
  }

  /** Indexes row under the key it holds (replacing the row indexed under that key, if any). */
  set(row: number, first: string, second = ''): void {
    const slot = this.#find(first, second, keyHash(first, second));
    if (this.#slots[slot] === NO_ROW) {
      this.#size++;
      if (this.#size * 2 > this.#slots.length) {
        this.#slots[slot] = row;
        this.#grow();
        return;
      }
    }
    this.#slots[slot] = row;
  }

  /** Removes the key's entry; false if there was none. Call it while the row still holds the key. */
  delete(first: string, second = ''): boolean {
    let slot = this.#find(first, second, keyHash(first, second));
    if (this.#slots[slot] === NO_ROW) return false;
    this.#size--;
    // Move back each following entry that may not stay behind the hole (its probe would end there).
    const slots = this.#slots;
    const mask = this.#mask;
    let next = slot;
    for (;;) {
      next = (next + 1) & mask;
      const row = slots[next]!;
      if (row === NO_ROW) break;
      const home = this.#keys.hashOf(row) & mask;
      if (((next - home) & mask) >= ((next - slot) & mask)) {
        slots[slot] = row;
        slot = next;
      }
    }
    slots[slot] = NO_ROW;
    return true;
  }

  /** Every indexed row, in no particular order. */
  *rows(): IterableIterator<number> {
    for (const row of this.#slots) if (row !== NO_ROW) yield row;
  }

  /** The slot of the key's row, or the free slot where it would go. */
  #find(first: string, second: string, hash: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const row = slots[slot]!;
      if (row === NO_ROW || this.#keys.holds(row, first, second)) return slot;
    }
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Int32Array(old.length * 2).fill(NO_ROW);
    this.#mask = this.#slots.length - 1;
    for (const row of old) {
      if (row === NO_ROW) continue;
      let slot = this.#keys.hashOf(row) & this.#mask;
      while (this.#slots[slot] !== NO_ROW) slot = (slot + 1) & this.#mask;
      this.#slots[slot] = row;
    }
  }
}
