// The string fields of flow records, encoded once and copied into each
// record: each EndpointIdentity's eleven string fields become one byte block
// (length prefixes and truncation included) cached per identity object
// (WeakMap), and interfaceName plus clusterName one block for the last pair
// seen. Identities are shared (one object per pod while the pod is
// unchanged) and must not be changed once exported: make a new object
// instead. An identity seen only once costs a WeakMap entry and a block.
import type { EndpointIdentity } from '../enrich/export-record.ts';
import { ENDPOINT_FIELDS } from './registry.ts';

/** The string fields of an EndpointIdentity in ENDPOINT_FIELDS order; labels follow them. */
const IDENTITY_STRINGS = [
  'type',
  'namespace',
  'podName',
  'podUid',
  'workloadKind',
  'workloadName',
  'nodeName',
  'serviceNamespace',
  'serviceName',
  'servicePortName',
] as const satisfies ReadonlyArray<keyof EndpointIdentity>;

const utf8 = new TextEncoder();

/** interfaceName and clusterName as they go on the wire (length prefixes included), for these values. */
export interface HeadBlock {
  interfaceName: string;
  clusterName: string;
  bytes: Uint8Array;
  /** Fields cut at maxStringBytes: counted again for every record that carries the block. */
  cuts: number;
}

/** An identity's ENDPOINT_FIELDS as they go on the wire, and the values they were encoded from. */
export interface IdentityBlock extends Readonly<EndpointIdentity> {
  readonly bytes: Uint8Array;
  /** Fields cut at maxStringBytes: counted again for every record that carries the block. */
  readonly cuts: number;
  /** The identity was frozen when encoded: it cannot have changed since. */
  readonly frozen: boolean;
}

export class StringBlocks {
  readonly #maxStringBytes: number;
  /** Set by #writeText when it cut the text at its limit. */
  #cut = false;
  /** Where encoded strings are built before they are cached: the string fields of one identity at most. */
  readonly #scratch: Uint8Array;
  /** Each identity's string fields, encoded once (identities are immutable once exported). */
  readonly #identities = new WeakMap<EndpointIdentity, IdentityBlock>();
  readonly #head: HeadBlock = { interfaceName: '', clusterName: '', bytes: Uint8Array.of(0, 0), cuts: 0 };

  /** `maxStringBytes`: longest string field in UTF-8 bytes; longer ones are cut, never inside a character. */
  constructor(maxStringBytes: number) {
    this.#maxStringBytes = maxStringBytes;
    this.#scratch = new Uint8Array(ENDPOINT_FIELDS.length * (3 + maxStringBytes));
  }

  /**
   * interfaceName and clusterName encoded as one block, cached for the last
   * pair seen (the same strings record after record): one copy per record
   * instead of two.
   */
  head(interfaceName: string, clusterName: string): HeadBlock {
    const cache = this.#head;
    if (interfaceName === cache.interfaceName && clusterName === cache.clusterName) return cache;
    let cuts = 0;
    this.#cut = false;
    let o = this.#writeString(interfaceName, 0);
    if (this.#cut) cuts++;
    this.#cut = false;
    o = this.#writeString(clusterName, o);
    if (this.#cut) cuts++;
    cache.interfaceName = interfaceName;
    cache.clusterName = clusterName;
    cache.bytes = this.#scratch.slice(0, o);
    cache.cuts = cuts;
    return cache;
  }

  /** The encoded ENDPOINT_FIELDS of one end, from the cache or encoded now and cached. */
  identity(e: EndpointIdentity): IdentityBlock {
    const cached = this.#identities.get(e);
    // A frozen identity (what the enricher hands out) cannot have changed. Any
    // other is checked field by field (reference compares) against what was
    // encoded, and re-encoded if a field was reassigned. That guard costs ~18%
    // of encode-only throughput (the bench's unfrozen identities: 3.3 M/s;
    // frozen: 4.0 M/s), so it is skipped where the language guarantees it.
    if (cached !== undefined && (cached.frozen || sameIdentity(cached, e))) return cached;
    const block = this.#encodeIdentity(e);
    this.#identities.set(e, block);
    return block;
  }

  #encodeIdentity(e: EndpointIdentity): IdentityBlock {
    let o = 0;
    let cuts = 0;
    for (const name of IDENTITY_STRINGS) {
      this.#cut = false;
      o = this.#writeString(e[name], o);
      if (this.#cut) cuts++;
    }
    this.#cut = false;
    o = this.#writeLabels(e.labels, o);
    if (this.#cut) cuts++;
    return {
      bytes: this.#scratch.slice(0, o),
      cuts,
      frozen: Object.isFrozen(e),
      type: e.type,
      namespace: e.namespace,
      podName: e.podName,
      podUid: e.podUid,
      workloadKind: e.workloadKind,
      workloadName: e.workloadName,
      nodeName: e.nodeName,
      serviceNamespace: e.serviceNamespace,
      serviceName: e.serviceName,
      servicePortName: e.servicePortName,
      labels: e.labels,
    };
  }

  /** A variable-length string field at `o` of the scratch buffer (RFC 7011 §7): 1-byte length, or 255 + u16 from 255 bytes on. */
  #writeString(s: string, o: number): number {
    if (s.length === 0) {
      this.#scratch[o] = 0;
      return o + 1;
    }
    this.#cut = false;
    return this.#closeString(o, this.#writeText(s, o + 1, o + 1 + this.#maxStringBytes));
  }

  /** Labels as "k1=v1,k2=v2", written piece by piece: no joined string is built. */
  #writeLabels(labels: EndpointIdentity['labels'], o: number): number {
    if (labels.length === 0) {
      this.#scratch[o] = 0;
      return o + 1;
    }
    const limit = o + 1 + this.#maxStringBytes;
    let p = o + 1;
    this.#cut = false;
    for (let i = 0; i < labels.length && !this.#cut; i++) {
      const label = labels[i]!;
      if (i > 0) p = this.#writeText(',', p, limit);
      p = this.#writeText(label[0], p, limit);
      p = this.#writeText('=', p, limit);
      p = this.#writeText(label[1], p, limit);
    }
    return this.#closeString(o, p);
  }

  /**
   * UTF-8 of `s` at `p` of the scratch buffer, stopping at `limit` without
   * splitting a character; returns the end and sets #cut when the text did not fit.
   */
  #writeText(s: string, p: number, limit: number): number {
    const b = this.#scratch;
    const n = s.length;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      if (p === limit) {
        this.#cut = true;
        return p;
      }
      b[p++] = c;
    }
    if (i === n) return p;
    const rest = i === 0 ? s : s.slice(i);
    const { read, written } = utf8.encodeInto(rest, b.subarray(p, limit));
    if (read < rest.length) this.#cut = true;
    return p + written;
  }

  /** Writes the length prefix of a string field whose text is at o+1..end of the scratch buffer. */
  #closeString(o: number, end: number): number {
    const b = this.#scratch;
    const length = end - o - 1;
    if (length < 255) {
      b[o] = length;
      return end;
    }
    b.copyWithin(o + 3, o + 1, end);
    b[o] = 255;
    b[o + 1] = length >> 8;
    b[o + 2] = length;
    return end + 2;
  }
}

/** Whether `e` still has the field values `block` was encoded from (labels: the same array). */
function sameIdentity(block: IdentityBlock, e: EndpointIdentity): boolean {
  return (
    block.type === e.type &&
    block.namespace === e.namespace &&
    block.podName === e.podName &&
    block.podUid === e.podUid &&
    block.workloadKind === e.workloadKind &&
    block.workloadName === e.workloadName &&
    block.nodeName === e.nodeName &&
    block.serviceNamespace === e.serviceNamespace &&
    block.serviceName === e.serviceName &&
    block.servicePortName === e.servicePortName &&
    block.labels === e.labels
  );
}
