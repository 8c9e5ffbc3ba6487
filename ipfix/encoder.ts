// IPFIX (RFC 7011) message packer for one observation domain of one
// transport session: sets, sequence numbers, template and options messages,
// and flow records packed into messages of at most maxMessageBytes. Pure: no
// sockets, no timers; the export time comes from an injected clock. Which
// templates there are is templates.ts's; how a flow record is laid out and
// written, flow-template.ts's (its strings: string-blocks.ts; its per-flow
// feature fields: feature-writer.ts).
//
// IPFIX is hand-written here: it sits on the hot path, and no maintained
// TypeScript library encodes RFC 7011 with enterprise elements.
//
// Hot path (encode). `./run bench export`'s encode-only case (1M pod-to-pod
// records of ~603 bytes, 1452-byte messages, 2-core EPYC, Node 24) runs at
// 3.0-3.3 M records/s, 4.0 M/s with frozen identities as the enricher makes
// them; encoding every string per record and copying each message out ran at
// 0.49 M/s. Each choice's share is noted where it is made.
// - A record's strings are copied in as blocks encoded once per identity
//   (string-blocks.ts). An identity seen only once costs a cache entry and a
//   block: ~0.2 M records/s if no identity is ever shared.
// - With every block's length known, a record's size is known before it is
//   written: it goes into the current message or opens the next one, and is
//   never moved.
// - Messages are carved one after the other out of a slab that is never
//   written again where a message was returned: each returned Uint8Array is
//   the caller's to keep or queue, without a copy per message. A message is a
//   view (byteOffset may be > 0); a slab lives as long as any message in it.
import { PodflowError } from '../common/errors.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import { CESNET_PEN, FEATURE_ENCODINGS, FLOWMON_PEN, type FeatureElementSet, type FeatureEncoding, type FeatureName } from './feature-elements.ts';
import { FeatureFieldWriter } from './feature-writer.ts';
import { checkFlowWriter, FLOW_FIXED_BYTES, FLOW_STRING_FIELDS, flowRecordBytes, writeFlowRecord } from './flow-template.ts';
import {
  DataTypeCode,
  DEFAULT_ENTERPRISE_NUMBER,
  type InformationElement,
  InformationElementRegistry,
  naturalLength,
  SemanticsCode,
  UnitsCode,
  VARIABLE_LENGTH,
} from './registry.ts';
import { StringBlocks } from './string-blocks.ts';
import { buildTemplates, featureSets, type Template, templateRecordBytes, TemplateId } from './templates.ts';
import { FIRST_DATA_SET_ID, IPFIX_VERSION, MAX_MESSAGE_BYTES, MESSAGE_HEADER_BYTES, SET_HEADER_BYTES, SetId, TWO_32, writeU16, writeU32, writeUnsigned } from './wire.ts';

/**
 * Strings longer than this many UTF-8 bytes are cut (never inside a
 * character). Kubernetes names are at most 253 bytes; the limit mainly bounds
 * the labels string, and keeps a record well inside a UDP message.
 */
export const DEFAULT_MAX_STRING_BYTES = 512;

export interface IpfixEncoderOptions {
  observationDomainId: number;
  /** PEN of podflow's elements; default 32473 (documentation only, RFC 5612): set your own. */
  enterpriseNumber?: number;
  /**
   * Largest message returned, header included, 512..65535; default
   * MAX_MESSAGE_BYTES (65535). The transport decides it: UDP passes its
   * path MTU's (DEFAULT_UDP_MAX_MESSAGE_BYTES), a stream the default.
   */
  maxMessageBytes?: number;
  /** Longest string field in UTF-8 bytes, 1..65535; longer ones are truncated and counted. Default 512. */
  maxStringBytes?: number;
  /** Milliseconds since the epoch, for the export time; default Date.now. */
  clock?: () => number;
  /**
   * Per-flow features whose fields are exported (templates are made for
   * them); a record's feature not listed here is not encoded. Default: every
   * feature podflow has.
   */
  features?: readonly FeatureName[];
  /**
   * 'ipfixprobe': the application features' fields (DNS, TLS, QUIC, HTTP)
   * go out in the elements CESNET's ipfixprobe exports for them
   * (IPFIXPROBE_ELEMENTS, CESNET's and Flowmon's enterprise numbers), so
   * collectors set up for ipfixprobe read them. Default 'podflow'.
   */
  featureElements?: FeatureElementSet;
}

/** Counts since construction; plain numbers, read them at scrape time. */
export interface EncoderStats {
  /** Messages returned by any method, and their octets. */
  messages: number;
  octets: number;
  /** Flow data records encoded. */
  flowRecords: number;
  /** Options data records encoded (statistics, type information). */
  optionsRecords: number;
  /** Flow records dropped because one alone does not fit maxMessageBytes. */
  recordsTooLarge: number;
  /** String fields cut at maxStringBytes. */
  stringsTruncated: number;
}

/** Input of reliabilityStatsMessage: what the exporting process could not send (RFC 7011 §4.3). */
export interface ReliabilityStats {
  exportingProcessId: number;
  notSentFlowTotalCount: number;
  notSentPacketTotalCount: number;
  notSentOctetTotalCount: number;
  /** observationTimeMilliseconds of the first and of the last flow not sent (0 when none). */
  firstNotSentMilliseconds: number;
  lastNotSentMilliseconds: number;
  /** What was sent to this collector; default: this encoder's messages, octets and flow records. */
  exportedMessageTotalCount?: number;
  exportedOctetTotalCount?: number;
  exportedFlowRecordTotalCount?: number;
}

const utf8 = new TextEncoder();

interface SetItem {
  setId: number;
  bytes: Uint8Array;
}

/**
 * Messages are carved out of slabs of this size (or 4 messages, if larger):
 * ~45 UDP messages per allocation. Copying each message out instead (a fresh
 * 1452-byte ArrayBuffer per message) ran at 0.83 M records/s against 2.8 M/s;
 * 256 KiB slabs measured the same as 64 KiB, which keep less memory alive.
 */
const SLAB_BYTES = 64 * 1024;

export class IpfixEncoder {
  readonly observationDomainId: number;
  readonly registry: InformationElementRegistry;
  readonly maxMessageBytes: number;
  readonly maxStringBytes: number;
  readonly stats: EncoderStats = {
    messages: 0,
    octets: 0,
    flowRecords: 0,
    optionsRecords: 0,
    recordsTooLarge: 0,
    stringsTruncated: 0,
  };

  /** Every template this encoder announces, in templateMessages() order. */
  readonly templates: readonly Template[];

  readonly #clock: () => number;
  /** Each template record encoded once, at construction. */
  readonly #templateItems: SetItem[];
  /** The RFC 5610 type information options template among them. */
  readonly #typeTemplateItem: SetItem;
  /** Reused buffer of #pack (templates, options records: not the hot path), copied out per message. */
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  /** Data records sent in this domain before the next message (RFC 7011 §3.1 sequence number). */
  #sequence = 0;
  /** The flow records' string fields, each identity's encoded once. */
  readonly #strings: StringBlocks;
  /** The slab data messages are carved from, and where the next one starts. */
  #slab: Uint8Array = new Uint8Array(0);
  #slabPos = 0;
  #slabView: DataView = new DataView(new ArrayBuffer(0));
  /** The features exported, in template field order; bit i of a record's feature mask is features[i]. */
  readonly #features: readonly FeatureEncoding[];
  /** Template id by feature mask * 2 + (IPv6 ? 1 : 0). */
  readonly #featureTemplateIds: number[] = [];
  /** The enterprise elements the RFC 5610 type records describe: podflow's, and ipfixprobe's in its templates. */
  readonly #describedElements: readonly InformationElement[];
  /** Writes a record's feature fields (only records that carry a feature pass through it). */
  readonly #featureWriter: FeatureFieldWriter;

  constructor(options: IpfixEncoderOptions) {
    const { observationDomainId, enterpriseNumber = DEFAULT_ENTERPRISE_NUMBER } = options;
    const maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    const maxStringBytes = options.maxStringBytes ?? DEFAULT_MAX_STRING_BYTES;
    if (!Number.isInteger(observationDomainId) || observationDomainId < 0 || observationDomainId > 0xffffffff) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `observationDomainId must be an integer from 0 to 2^32-1, got ${observationDomainId}`);
    }
    // 512 bytes: room for the largest template message (~380 bytes) in one piece.
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 512 || maxMessageBytes > MAX_MESSAGE_BYTES) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `maxMessageBytes must be an integer from 512 to ${MAX_MESSAGE_BYTES}, got ${maxMessageBytes}`);
    }
    if (!Number.isInteger(maxStringBytes) || maxStringBytes < 1 || maxStringBytes > 65535) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `maxStringBytes must be an integer from 1 to 65535, got ${maxStringBytes}`);
    }
    this.observationDomainId = observationDomainId;
    this.registry = new InformationElementRegistry(enterpriseNumber);
    this.maxMessageBytes = maxMessageBytes;
    this.maxStringBytes = maxStringBytes;
    this.#clock = options.clock ?? Date.now;
    const features = options.features ?? FEATURE_ENCODINGS.map((f) => f.name);
    const ipfixprobe = options.featureElements === 'ipfixprobe';
    this.#features = FEATURE_ENCODINGS.filter((f) => features.includes(f.name)).map((f) => (ipfixprobe && f.ipfixprobe ? { ...f, ...f.ipfixprobe } : f));
    this.templates = buildTemplates(this.registry, this.#features);
    const foreignElements = new Set(this.templates.flatMap((t) => t.fields.map((f) => f.element)).filter((e) => e.enterprise === CESNET_PEN || e.enterprise === FLOWMON_PEN));
    this.#describedElements = [...this.registry.enterpriseElements, ...foreignElements];
    let featureTemplate: number = TemplateId.FIRST_FEATURE;
    for (const mask of featureSets(this.#features)) {
      this.#featureTemplateIds[mask * 2] = featureTemplate++;
      this.#featureTemplateIds[mask * 2 + 1] = featureTemplate++;
    }
    // nfacctd reads enterprise elements by id alone (registry.ts,
    // DESTINATION_FIRST_ID): podflow's own elements never share an id in a
    // template. ipfixprobe's do share ids with them (its DNS_ID is 8057/10,
    // the source end's type 10): a collector for ipfixprobe tells them apart
    // by enterprise number, nfacctd 1.7.7 does not (docs/ipfix-elements.md).
    for (const t of ipfixprobe ? [] : this.templates) {
      const ids = t.fields.filter((f) => f.element.enterprise !== 0).map((f) => f.element.id);
      if (new Set(ids).size !== ids.length) throw new Error(`template ${t.id} holds two enterprise elements with one id`);
    }
    checkFlowWriter(4, this.#template(TemplateId.FLOW_IPV4).fields.map((f) => f.length));
    checkFlowWriter(6, this.#template(TemplateId.FLOW_IPV6).fields.map((f) => f.length));
    this.#templateItems = this.templates.map((t) => ({
      setId: t.scopeCount > 0 ? SetId.OPTIONS_TEMPLATE : SetId.TEMPLATE,
      bytes: templateRecordBytes(t),
    }));
    this.#typeTemplateItem = this.#templateItems.find((_, i) => this.templates[i]!.id === TemplateId.TYPE_INFORMATION)!;
    const maxRecord = FLOW_FIXED_BYTES[6] + FLOW_STRING_FIELDS * (3 + maxStringBytes);
    this.#buf = new Uint8Array(maxMessageBytes + SET_HEADER_BYTES + maxRecord);
    this.#strings = new StringBlocks(maxStringBytes);
    const featureFieldLengths = this.#features.flatMap((f) => f.fields).map((name) => naturalLength(this.registry.get(name).dataType));
    this.#featureWriter = new FeatureFieldWriter(this.#features, featureFieldLengths, maxStringBytes);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Sequence number the next message will carry (data records sent so far, modulo 2^32). */
  get sequenceNumber(): number {
    return this.#sequence % TWO_32;
  }

  /**
   * Every template and options template but the type information one
   * (typeInformationMessages() carries that), in as few messages as fit. Send
   * them before any data, after the type information: once per TCP/SCTP
   * session, and periodically on UDP (RFC 7011 §8.4). Each call returns fresh
   * messages with the current header.
   */
  templateMessages(): Uint8Array[] {
    return this.#pack(this.#templateItems.filter((item) => item !== this.#typeTemplateItem));
  }

  /**
   * The flow records as data messages, each at most maxMessageBytes, records
   * in order (IPv4 and IPv6 records share messages, one set per run of a
   * version). A record that alone does not fit a message is dropped, counted
   * in stats.recordsTooLarge and handed to onTooLarge. Each returned message is the caller's to
   * keep or queue: a view (byteOffset may be > 0) of a slab that no later call
   * writes to.
   *
   * Each EndpointIdentity's strings are encoded once and cached by object:
   * an identity must not be changed once exported (make a new object, as the
   * enricher does; its labels array included). A frozen identity is trusted
   * as is; for any other a reassigned field is noticed and re-encoded.
   */
  encode(records: readonly ExportRecord[], onTooLarge?: (record: ExportRecord) => void): Uint8Array[] {
    const out: Uint8Array[] = [];
    const limit = this.maxMessageBytes;
    let msgStart = this.#messageStart(this.#slabPos);
    let buf = this.#slab;
    let view = this.#slabView;
    let pos = msgStart + MESSAGE_HEADER_BYTES;
    let setStart = -1;
    let setId = 0;
    let inMessage = 0;
    let encoded = 0;
    let cuts = 0;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const v6 = record.flow.ipVersion === 6;
      let id: number = v6 ? TemplateId.FLOW_IPV6 : TemplateId.FLOW_IPV4;
      const head = this.#strings.head(record.interfaceName, record.clusterName);
      const source = this.#strings.identity(record.source);
      const destination = this.#strings.identity(record.destination);
      cuts += head.cuts + source.cuts + destination.cuts;
      let size = flowRecordBytes(v6, head, source, destination);
      let tail = 0;
      if (this.#features.length !== 0) {
        tail = this.#featureWriter.write(record.flow);
        if (tail !== 0) {
          id = this.#featureTemplateIds[this.#featureWriter.mask * 2 + (v6 ? 1 : 0)]!;
          size += tail;
          cuts += this.#featureWriter.cuts;
        }
      }
      if (size + MESSAGE_HEADER_BYTES + SET_HEADER_BYTES > limit) {
        this.stats.recordsTooLarge++;
        onTooLarge?.(record);
        continue;
      }
      let newSet = id !== setId;
      if (pos - msgStart + (newSet ? SET_HEADER_BYTES : 0) + size > limit) {
        out.push(this.#finishSlabMessage(buf, msgStart, pos, setStart, inMessage));
        // The next message starts where this one ends: returned bytes are never written again.
        msgStart = this.#messageStart(pos);
        buf = this.#slab;
        view = this.#slabView;
        pos = msgStart + MESSAGE_HEADER_BYTES;
        setStart = -1;
        inMessage = 0;
        newSet = true;
      }
      if (newSet) {
        if (setStart >= 0) writeU16(buf, setStart + 2, pos - setStart);
        setStart = pos;
        setId = id;
        buf[pos] = id >> 8;
        buf[pos + 1] = id;
        pos += SET_HEADER_BYTES;
      }
      pos = writeFlowRecord(buf, view, pos, record, head, source, destination);
      if (tail !== 0) {
        buf.set(this.#featureWriter.bytes.subarray(0, tail), pos);
        pos += tail;
      }
      inMessage++;
      encoded++;
    }
    if (inMessage > 0) {
      out.push(this.#finishSlabMessage(buf, msgStart, pos, setStart, inMessage));
      msgStart = pos;
    }
    this.#slabPos = msgStart;
    this.stats.flowRecords += encoded;
    this.stats.stringsTruncated += cuts;
    return out;
  }

  /**
   * One message with the RFC 7011 §4.3 Exporting Process Reliability
   * Statistics record and the §4.1 statistics record of this observation
   * domain. The exported* counts exclude this message, as the elements define.
   */
  reliabilityStatsMessage(stats: ReliabilityStats): Uint8Array {
    const reliability = this.#optionsRecord(TemplateId.EXPORTING_RELIABILITY, [
      stats.exportingProcessId,
      stats.notSentFlowTotalCount,
      stats.notSentPacketTotalCount,
      stats.notSentOctetTotalCount,
      stats.firstNotSentMilliseconds,
      stats.lastNotSentMilliseconds,
    ]);
    const domain = this.#optionsRecord(TemplateId.DOMAIN_STATISTICS, [
      this.observationDomainId,
      stats.exportedMessageTotalCount ?? this.stats.messages,
      stats.exportedFlowRecordTotalCount ?? this.stats.flowRecords,
      stats.exportedOctetTotalCount ?? this.stats.octets,
    ]);
    return this.#pack([reliability, domain])[0]!;
  }

  /**
   * The RFC 5610 type information options template and a type record for
   * every podflow enterprise element, so a collector can name and type them
   * without configuration. Send them before templateMessages(): a collector
   * may bind names when it receives a template (libfixbuf does), so an element
   * described only after the data templates stays unnamed there. Like the
   * templates, once per TCP session or periodically on UDP.
   */
  typeInformationMessages(): Uint8Array[] {
    return this.#pack([
      this.#typeTemplateItem,
      ...this.#describedElements.map((e) =>
        this.#optionsRecord(TemplateId.TYPE_INFORMATION, [
          e.id,
          e.enterprise,
          DataTypeCode[e.dataType],
          SemanticsCode[e.semantics],
          UnitsCode[e.units],
          // No range given.
          0,
          0,
          e.name,
          e.description,
        ]),
      ),
    ]);
  }

  #template(id: number): Template {
    return this.templates.find((t) => t.id === id)!;
  }

  /** Header and last set length into the reused buffer, then a copy out. */
  #finishMessage(pos: number, setStart: number, dataRecords: number): Uint8Array {
    if (setStart >= 0) writeU16(this.#buf, setStart + 2, pos - setStart);
    this.#header(pos);
    this.#sequence += dataRecords;
    this.stats.messages++;
    this.stats.octets += pos;
    return this.#buf.slice(0, pos);
  }

  #header(length: number): void {
    const v = this.#view;
    v.setUint16(0, IPFIX_VERSION);
    v.setUint16(2, length);
    v.setUint32(4, Math.floor(this.#clock() / 1000) % TWO_32);
    v.setUint32(8, this.#sequence % TWO_32);
    v.setUint32(12, this.observationDomainId);
  }

  /**
   * Packs set items (template records or options data records, not on the
   * hot path) into messages within maxMessageBytes, one set per run of the
   * same set id. Data records (set id >= 256) count for the sequence number.
   */
  #pack(items: SetItem[]): Uint8Array[] {
    const out: Uint8Array[] = [];
    const buf = this.#buf;
    let pos = MESSAGE_HEADER_BYTES;
    let setStart = -1;
    let setId = -1;
    let dataRecords = 0;
    const flush = () => {
      out.push(this.#finishMessage(pos, setStart, dataRecords));
      pos = MESSAGE_HEADER_BYTES;
      setStart = -1;
      setId = -1;
      dataRecords = 0;
    };
    for (const item of items) {
      // One options template per set: pmacct's nfacctd (1.7.7) misreads the
      // second options template of a set ("unable to read Options Template
      // Flowset (malformed)") and drops it, and with it the records it describes.
      const newSet = () => item.setId !== setId || item.setId === SetId.OPTIONS_TEMPLATE;
      if (pos + (newSet() ? SET_HEADER_BYTES : 0) + item.bytes.length > this.maxMessageBytes && pos > MESSAGE_HEADER_BYTES) flush();
      if (newSet()) {
        if (setStart >= 0) writeU16(buf, setStart + 2, pos - setStart);
        setStart = pos;
        setId = item.setId;
        writeU16(buf, pos, setId);
        pos += SET_HEADER_BYTES;
      }
      buf.set(item.bytes, pos);
      pos += item.bytes.length;
      if (item.setId >= FIRST_DATA_SET_ID) dataRecords++;
    }
    if (pos > MESSAGE_HEADER_BYTES) flush();
    return out;
  }

  /** An options data record by its template; numbers and strings in field order. */
  #optionsRecord(templateId: number, values: ReadonlyArray<number | string>): SetItem {
    const fields = this.#template(templateId).fields;
    const parts: Uint8Array[] = fields.map((f, i) => {
      const value = values[i]!;
      if (f.length === VARIABLE_LENGTH) {
        const text = utf8.encode(String(value));
        const bytes = text.length > this.maxStringBytes ? utf8.encode(cutUtf8(String(value), this.maxStringBytes)) : text;
        const head = bytes.length < 255 ? [bytes.length] : [255, bytes.length >> 8, bytes.length & 0xff];
        return Uint8Array.of(...head, ...bytes);
      }
      const b = new Uint8Array(f.length);
      writeUnsigned(b, 0, f.length, Number(value));
      return b;
    });
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      bytes.set(p, o);
      o += p.length;
    }
    this.stats.optionsRecords++;
    return { setId: templateId, bytes };
  }

  /** Header and last set length of the message at msgStart..end of a slab; the message itself, not a copy. */
  #finishSlabMessage(buf: Uint8Array, msgStart: number, end: number, setStart: number, dataRecords: number): Uint8Array {
    writeU16(buf, setStart + 2, end - setStart);
    const length = end - msgStart;
    const exportTime = Math.floor(this.#clock() / 1000) % TWO_32;
    const sequence = this.#sequence % TWO_32;
    const domain = this.observationDomainId;
    buf[msgStart] = IPFIX_VERSION >> 8;
    buf[msgStart + 1] = IPFIX_VERSION;
    buf[msgStart + 2] = length >> 8;
    buf[msgStart + 3] = length;
    writeU32(buf, msgStart + 4, exportTime);
    writeU32(buf, msgStart + 8, sequence);
    writeU32(buf, msgStart + 12, domain);
    this.#sequence += dataRecords;
    this.stats.messages++;
    this.stats.octets += length;
    return buf.subarray(msgStart, end);
  }

  /** Where the next message starts: at `from` of the current slab, or at 0 of a new one when less than maxMessageBytes is left. */
  #messageStart(from: number): number {
    if (this.#slab.length - from >= this.maxMessageBytes) return from;
    this.#slab = new Uint8Array(Math.max(SLAB_BYTES, 4 * this.maxMessageBytes));
    this.#slabView = new DataView(this.#slab.buffer);
    return 0;
  }

}

/** The longest prefix of `s` whose UTF-8 fits `max` bytes, never splitting a character. */
function cutUtf8(s: string, max: number): string {
  const buf = new Uint8Array(max);
  const { read } = utf8.encodeInto(s, buf);
  return s.slice(0, read);
}
