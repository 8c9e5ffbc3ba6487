// Address → (integer, time) on typed arrays: open addressing with linear
// probing, IPv4 keys as one 32-bit word, IPv6 keys as four, each slot's key,
// value and time side by side (16 bytes for IPv4, 32 for IPv6, aligned: one
// slot is one cache line). The lease table's index of every address it knows
// (100k pods: 100k entries), looked up once per flow end: one hash and,
// mostly, one probe, where a Map keyed by number or string walks its buckets
// and entries. The time lets the lease table answer the common case (one
// open lease at the address) from the slot alone. Deletion shifts the
// following entries back (no tombstones), so lookups stay short under churn.
import type { IpKey } from './ip-keys.ts';

const EMPTY = -1;
const MIN_CAPACITY = 64;

/**
 * One table of fixed-width keys (1 word for IPv4, 4 for IPv6). A slot is
 * `stride` 32-bit words: the key's words, the value, and in its last two
 * words a float64, the time (NaN when none), read through a second view of
 * the same memory.
 */
class Table {
  readonly #width: number;
  readonly #stride: number;
  #capacity = MIN_CAPACITY;
  #mask = MIN_CAPACITY - 1;
  /** Value EMPTY: a free slot. */
  #slots: Int32Array;
  /** The same memory as #slots: a slot's time is element slot * stride / 2 + stride / 2 - 1. */
  #times: Float64Array;
  #size = 0;
  /** The time of the key last found by get(); NaN when it was absent. */
  foundTime = NaN;

  constructor(width: 1 | 4) {
    this.#width = width;
    this.#stride = width === 1 ? 4 : 8;
    this.#slots = emptySlots(MIN_CAPACITY, this.#stride);
    this.#times = new Float64Array(this.#slots.buffer);
  }

  get size(): number {
    return this.#size;
  }

  /** The slot holding the key in `words`, or the free slot where it would go. */
  #find(words: Int32Array, at = 0): number {
    const width = this.#width;
    const stride = this.#stride;
    const slots = this.#slots;
    let slot = hash(words, at, width) & this.#mask;
    for (;;) {
      const base = slot * stride;
      if (slots[base + width] === EMPTY) return slot;
      let same = slots[base] === words[at];
      for (let w = 1; same && w < width; w++) same = slots[base + w] === words[at + w];
      if (same) return slot;
      slot = (slot + 1) & this.#mask;
    }
  }

  get(words: Int32Array): number {
    const slot = this.#find(words);
    const value = this.#slots[slot * this.#stride + this.#width]!;
    // A free slot's time is whatever its last entry left.
    this.foundTime = value === EMPTY ? NaN : this.#times[((slot + 1) * this.#stride >> 1) - 1]!;
    return value;
  }

  set(words: Int32Array, value: number, time: number): void {
    const slot = this.#find(words);
    const base = slot * this.#stride;
    if (this.#slots[base + this.#width] === EMPTY) {
      for (let w = 0; w < this.#width; w++) this.#slots[base + w] = words[w]!;
      this.#size++;
    }
    this.#slots[base + this.#width] = value;
    this.#times[((slot + 1) * this.#stride >> 1) - 1] = time;
    // At most half full: probe sequences stay a slot or two long.
    if (this.#size * 2 > this.#capacity) this.#resize(this.#capacity * 2);
  }

  delete(words: Int32Array): void {
    let slot = this.#find(words);
    const width = this.#width;
    const stride = this.#stride;
    const slots = this.#slots;
    if (slots[slot * stride + width] === EMPTY) return;
    // Backward-shift deletion: move each later entry of the run into the gap unless its home slot forbids.
    let next = slot;
    for (;;) {
      next = (next + 1) & this.#mask;
      if (slots[next * stride + width] === EMPTY) break;
      const home = hash(slots, next * stride, width) & this.#mask;
      // The entry at `next` may move to `slot` unless its home lies cyclically in (slot, next].
      const stays = slot <= next ? home > slot && home <= next : home > slot || home <= next;
      if (stays) continue;
      // The whole slot: key, value and time.
      slots.copyWithin(slot * stride, next * stride, next * stride + stride);
      slot = next;
    }
    slots[slot * stride + width] = EMPTY;
    this.#size--;
    if (this.#capacity > MIN_CAPACITY && this.#size * 8 < this.#capacity) this.#resize(this.#capacity / 2);
  }

  #resize(capacity: number): void {
    const stride = this.#stride;
    const width = this.#width;
    const old = this.#slots;
    this.#capacity = capacity;
    this.#mask = capacity - 1;
    this.#slots = emptySlots(capacity, stride);
    this.#times = new Float64Array(this.#slots.buffer);
    for (let base = 0; base < old.length; base += stride) {
      if (old[base + width] === EMPTY) continue;
      const to = this.#find(old, base) * stride;
      this.#slots.set(old.subarray(base, base + stride), to);
    }
  }
}

function emptySlots(capacity: number, stride: number): Int32Array {
  const slots = new Int32Array(capacity * stride);
  // Value EMPTY where the key's words end (IPv4: word 1; IPv6: word 4).
  const width = stride === 4 ? 1 : 4;
  for (let value = width; value < slots.length; value += stride) slots[value] = EMPTY;
  return slots;
}

function hash(words: Int32Array, at: number, width: number): number {
  let h = Math.imul(words[at]!, 0x9e3779b1);
  for (let w = 1; w < width; w++) h = Math.imul(h ^ words[at + w]!, 0x85ebca6b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** IpKey (ip-keys.ts) → a non-negative integer and a time. */
export class AddressTable {
  readonly #v4 = new Table(1);
  readonly #v6 = new Table(4);
  /** The key being looked up, as words: reused, so a lookup allocates nothing. */
  readonly #words = new Int32Array(4);
  /** The time of the key last passed to get() (one probe answers both; no pair is allocated); NaN when it was absent. */
  foundTime = NaN;

  get size(): number {
    return this.#v4.size + this.#v6.size;
  }

  /** The value for key, or -1; its time is foundTime afterwards. */
  get(key: IpKey): number {
    const table = this.#table(key);
    const value = table.get(this.#words);
    this.foundTime = table.foundTime;
    return value;
  }

  /**
   * get() for a 16-byte IPv6 address in network order that is not IPv4-mapped (ip-keys.ts isIpv4Mapped: its
   * key is an IPv4 one), read from the bytes: no key string is made per lookup.
   */
  getIpv6(address: Uint8Array): number {
    const words = this.#words;
    for (let w = 0; w < 4; w++) words[w] = (address[4 * w]! << 24) | (address[4 * w + 1]! << 16) | (address[4 * w + 2]! << 8) | address[4 * w + 3]!;
    const value = this.#v6.get(words);
    this.foundTime = this.#v6.foundTime;
    return value;
  }

  /** value >= 0; time any number, NaN for none. */
  set(key: IpKey, value: number, time = NaN): void {
    this.#table(key).set(this.#words, value, time);
  }

  delete(key: IpKey): void {
    this.#table(key).delete(this.#words);
  }

  /** Loads key into #words; returns its table. */
  #table(key: IpKey): Table {
    const words = this.#words;
    if (typeof key === 'number') {
      words[0] = key;
      return this.#v4;
    }
    // An IPv6 key is eight UTF-16 code units, one per 16-bit group.
    for (let w = 0; w < 4; w++) words[w] = (key.charCodeAt(2 * w) << 16) | key.charCodeAt(2 * w + 1);
    return this.#v6;
  }
}
