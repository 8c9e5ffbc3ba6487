// The per-flow feature fields of one record (feature-elements.ts), written
// after the flow template's fields into a reused buffer sized for the
// longest: the features a record carries pick its template.
import type { FlowRecord } from '../flow/types.ts';
import type { FeatureEncoding, FieldWriter } from './feature-elements.ts';
import { VARIABLE_LENGTH } from './registry.ts';
import { writeU32, writeUnsigned } from './wire.ts';

const utf8 = new TextEncoder();

export class FeatureFieldWriter implements FieldWriter {
  readonly bytes: Uint8Array;
  /** Bytes written for the current record. */
  length = 0;
  /** Strings cut at maxStringBytes in the current record. */
  cuts = 0;
  /** The features the current record carries, as a mask over the features given (bit i: features[i]). */
  mask = 0;
  readonly #features: readonly FeatureEncoding[];
  readonly #maxStringBytes: number;

  /** `fieldLengths`: the encoded length of every field of `features`, VARIABLE_LENGTH for strings and octet arrays. */
  constructor(features: readonly FeatureEncoding[], fieldLengths: readonly number[], maxStringBytes: number) {
    this.#features = features;
    this.bytes = new Uint8Array(fieldLengths.reduce((n, length) => n + (length === VARIABLE_LENGTH ? 3 + maxStringBytes : length), 0));
    this.#maxStringBytes = maxStringBytes;
  }

  /** Writes the fields of the features `flow` carries, in the features' order; returns their bytes (0: none). */
  write(flow: FlowRecord): number {
    const features = this.#features;
    this.length = 0;
    this.cuts = 0;
    let mask = 0;
    let application = false;
    for (let i = 0; i < features.length; i++) {
      const feature = features[i]!;
      // One application feature per record (FlowFeatures gives no more): the first.
      if (!feature.present(flow) || (application && feature.layer === 'application')) continue;
      application ||= feature.layer === 'application';
      mask |= 1 << i;
      feature.write(flow, this);
    }
    this.mask = mask;
    return this.length;
  }

  unsigned(length: 1 | 2 | 4 | 8, value: number): void {
    writeUnsigned(this.bytes, this.length, length, value);
    this.length += length;
  }

  unsigned64(high: number, low: number): void {
    writeU32(this.bytes, this.length, high);
    writeU32(this.bytes, this.length + 4, low);
    this.length += 8;
  }

  /** A variable-length string (RFC 7011 §7): 1-byte length below 255, else 255 and a u16. */
  string(text: string): void {
    const o = this.length;
    const { read, written } = utf8.encodeInto(text, this.bytes.subarray(o + 3, o + 3 + this.#maxStringBytes));
    if (read < text.length) this.cuts++;
    this.#closeVariable(o, written);
  }

  /** A variable-length octetArray, cut like a string at maxStringBytes. */
  octets(bytes: Uint8Array): void {
    const o = this.length;
    const written = Math.min(bytes.length, this.#maxStringBytes);
    if (written < bytes.length) this.cuts++;
    this.bytes.set(bytes.subarray(0, written), o + 3);
    this.#closeVariable(o, written);
  }

  /** The length prefix of a variable-length field whose `written` bytes are at o + 3: moved up behind a 1-byte length below 255. */
  #closeVariable(o: number, written: number): void {
    const b = this.bytes;
    if (written < 255) {
      b.copyWithin(o + 1, o + 3, o + 3 + written);
      b[o] = written;
      this.length = o + 1 + written;
    } else {
      b[o] = 255;
      b[o + 1] = written >> 8;
      b[o + 2] = written;
      this.length = o + 3 + written;
    }
  }
}
