// The first bytes of a byte stream put together from pieces that may come out
// of order, repeat or overlap: a TLS hello over TCP segments, a QUIC
// ClientHello over the CRYPTO frames of several Initials. Bounded: bytes past
// `capacity` and pieces past MAX_GAPS holes are refused, never buffered.

/** Holes tracked at most; a stream more broken than that is not worth the state. */
const MAX_GAPS = 8;

export class StreamPrefix {
  readonly bytes: Uint8Array;
  /** Received ranges beyond the contiguous prefix, as [from, to) pairs, sorted, disjoint. */
  readonly #ranges: number[] = [];
  #contiguous = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }

  /** Bytes [0, contiguous) are all here. */
  get contiguous(): number {
    return this.#contiguous;
  }

  /**
   * Puts src[from, to) at stream offset `offset`. Returns false when it
   * reaches past the capacity or would leave too many holes (nothing is kept
   * then); a piece wholly inside what is already here is accepted and ignored.
   */
  add(offset: number, src: Uint8Array, from: number, to: number): boolean {
    const end = offset + (to - from);
    if (offset < 0 || end > this.bytes.length) return false;
    if (end <= this.#contiguous) return true;
    const ranges = this.#ranges;
    if (offset > this.#contiguous && ranges.length >= 2 * MAX_GAPS && !this.#inside(offset, end)) return false;
    this.bytes.set(src.subarray(from, to), offset);
    if (offset <= this.#contiguous) {
      this.#contiguous = end;
    } else {
      ranges.push(offset, end);
      this.#sortAndMerge();
    }
    // Pieces that arrived earlier may now join the prefix.
    while (ranges.length > 0 && ranges[0]! <= this.#contiguous) {
      this.#contiguous = Math.max(this.#contiguous, ranges[1]!);
      ranges.splice(0, 2);
    }
    return true;
  }

  #inside(from: number, to: number): boolean {
    const ranges = this.#ranges;
    for (let i = 0; i < ranges.length; i += 2) if (ranges[i]! <= from && to <= ranges[i + 1]!) return true;
    return false;
  }

  #sortAndMerge(): void {
    const pairs: [number, number][] = [];
    for (let i = 0; i < this.#ranges.length; i += 2) pairs.push([this.#ranges[i]!, this.#ranges[i + 1]!]);
    pairs.sort((a, b) => a[0] - b[0]);
    this.#ranges.length = 0;
    for (const [from, to] of pairs) {
      const last = this.#ranges.length - 1;
      if (last > 0 && from <= this.#ranges[last]!) this.#ranges[last] = Math.max(this.#ranges[last]!, to);
      else this.#ranges.push(from, to);
    }
  }
}
