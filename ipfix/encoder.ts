// IPFIX (RFC 7011) message encoder for one observation domain of one
// transport session: templates, flow data records, options records. Pure: no
// sockets, no timers; the export time comes from an injected clock.
//
// IPFIX is hand-written here: it sits on the hot path, and no maintained
// TypeScript library encodes RFC 7011 with enterprise elements.
//
// Hot path (encode): records are written straight into one reused buffer by a
// hand-unrolled writer per template (IPv4, IPv6) whose order is the template's
// field list below; the constructor checks the two agree on the fixed length
// and the round-trip tests check every field. Strings are written as ASCII by
// a byte loop (short identity strings: faster than TextEncoder.encodeInto,
// which is kept for the non-ASCII rest). A finished message is copied out, so
// every returned Uint8Array is the caller's to keep or queue.
import { PodflowError } from '../common/errors.ts';
import type { FlowRecord } from '../flow/types.ts';
import {
  DataTypeCode,
  DEFAULT_ENTERPRISE_NUMBER,
  ENDPOINT_FIELDS,
  type InformationElement,
  InformationElementRegistry,
  naturalLength,
  SemanticsCode,
  UnitsCode,
  VARIABLE_LENGTH,
} from './registry.ts';
import type { EndpointIdentity, ExportRecord } from './types.ts';

export const IPFIX_VERSION = 10;
export const MESSAGE_HEADER_BYTES = 16;
export const SET_HEADER_BYTES = 4;
/** Set ids (RFC 7011 §3.3.2). */
export const SetId = { TEMPLATE: 2, OPTIONS_TEMPLATE: 3 } as const;

/** Template ids of this encoder (data sets carry them as set id). */
export const TemplateId = {
  FLOW_IPV4: 256,
  FLOW_IPV6: 257,
  /** RFC 7011 §4.3 Exporting Process Reliability Statistics. */
  EXPORTING_RELIABILITY: 258,
  /** RFC 7011 §4.1 Metering Process Statistics, scoped by observation domain. */
  DOMAIN_STATISTICS: 259,
  /** RFC 5610 Information Element Type Records. */
  TYPE_INFORMATION: 260,
} as const;

/** 1500-byte MTU minus IPv4 (20) and UDP (8) headers. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1472;
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
  /** Largest message returned, header included: 1472 (default) suits UDP over a 1500-byte MTU; TCP may use up to 65535. */
  maxMessageBytes?: number;
  /** Longest string field in UTF-8 bytes, 1..65535; longer ones are truncated and counted. Default 512. */
  maxStringBytes?: number;
  /** Milliseconds since the epoch, for the export time; default Date.now. */
  clock?: () => number;
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

export interface TemplateField {
  readonly element: InformationElement;
  /** Encoded length, VARIABLE_LENGTH for strings. */
  readonly length: number;
}

export interface Template {
  readonly id: number;
  /** Scope fields first; 0 for a data template. */
  readonly scopeCount: number;
  readonly fields: readonly TemplateField[];
}

const TWO_32 = 4294967296;
const utf8 = new TextEncoder();

function flowFieldNames(v6: boolean): string[] {
  const end = (prefix: string) => ENDPOINT_FIELDS.map(([suffix]) => `k8s${prefix}${suffix}`);
  return [
    v6 ? 'sourceIPv6Address' : 'sourceIPv4Address',
    v6 ? 'destinationIPv6Address' : 'destinationIPv4Address',
    'sourceTransportPort',
    'destinationTransportPort',
    'protocolIdentifier',
    'tcpControlBits',
    'reverseTcpControlBits',
    v6 ? 'icmpTypeCodeIPv6' : 'icmpTypeCodeIPv4',
    v6 ? 'reverseIcmpTypeCodeIPv6' : 'reverseIcmpTypeCodeIPv4',
    'vlanId',
    'flowDirection',
    'flowEndReason',
    'octetDeltaCount',
    'packetDeltaCount',
    'reverseOctetDeltaCount',
    'reversePacketDeltaCount',
    'flowStartMilliseconds',
    'flowEndMilliseconds',
    'observationPointId',
    'interfaceName',
    'k8sClusterName',
    ...end('Source'),
    ...end('Destination'),
  ];
}
/** Bytes of the fixed-length fields the writer puts before the strings. */
const FLOW_FIXED_BYTES = { 4: 81, 6: 105 } as const;
/** interfaceName, k8sClusterName, and the identity of both ends. */
const FLOW_STRING_FIELDS = 2 + 2 * ENDPOINT_FIELDS.length;

function buildTemplates(registry: InformationElementRegistry): Template[] {
  const field = (name: string): TemplateField => {
    const element = registry.get(name);
    return { element, length: naturalLength(element.dataType) };
  };
  const t = (id: number, scopeCount: number, names: string[]): Template => ({ id, scopeCount, fields: names.map(field) });
  return [
    t(TemplateId.FLOW_IPV4, 0, flowFieldNames(false)),
    t(TemplateId.FLOW_IPV6, 0, flowFieldNames(true)),
    t(TemplateId.EXPORTING_RELIABILITY, 1, [
      'exportingProcessId',
      'notSentFlowTotalCount',
      'notSentPacketTotalCount',
      'notSentOctetTotalCount',
      // RFC 7011 §4.3: time of the first and of the last flow not sent.
      'observationTimeMilliseconds',
      'observationTimeMilliseconds',
    ]),
    t(TemplateId.DOMAIN_STATISTICS, 1, [
      'observationDomainId',
      'exportedMessageTotalCount',
      'exportedFlowRecordTotalCount',
      'exportedOctetTotalCount',
    ]),
    // RFC 5610 §3.9: scope = (informationElementId, privateEnterpriseNumber).
    t(TemplateId.TYPE_INFORMATION, 2, [
      'informationElementId',
      'privateEnterpriseNumber',
      'informationElementDataType',
      'informationElementSemantics',
      'informationElementUnits',
      'informationElementName',
      'informationElementDescription',
    ]),
  ];
}

/** A template record (RFC 7011 §3.4.1 / §3.4.2.2) without set header. */
function templateRecordBytes(t: Template): Uint8Array {
  const size = (t.scopeCount > 0 ? 6 : 4) + t.fields.reduce((n, f) => n + (f.element.enterprise ? 8 : 4), 0);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint16(0, t.id);
  v.setUint16(2, t.fields.length);
  let o = 4;
  if (t.scopeCount > 0) {
    v.setUint16(4, t.scopeCount);
    o = 6;
  }
  for (const { element, length } of t.fields) {
    v.setUint16(o, element.enterprise ? element.id | 0x8000 : element.id);
    v.setUint16(o + 2, length);
    o += 4;
    if (element.enterprise) {
      v.setUint32(o, element.enterprise);
      o += 4;
    }
  }
  return b;
}

interface SetItem {
  setId: number;
  bytes: Uint8Array;
}

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
  /** Reused message buffer: maxMessageBytes plus room for one worst-case record past the limit. */
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  /** Data records sent in this domain before the next message (RFC 7011 §3.1 sequence number). */
  #sequence = 0;
  /** Set by #writeText when it cut the text at its limit. */
  #cut = false;

  constructor(options: IpfixEncoderOptions) {
    const { observationDomainId, enterpriseNumber = DEFAULT_ENTERPRISE_NUMBER } = options;
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const maxStringBytes = options.maxStringBytes ?? DEFAULT_MAX_STRING_BYTES;
    if (!Number.isInteger(observationDomainId) || observationDomainId < 0 || observationDomainId > 0xffffffff) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `observationDomainId must be an integer from 0 to 2^32-1, got ${observationDomainId}`);
    }
    // 512 bytes: room for the largest template message (~380 bytes) in one piece.
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 512 || maxMessageBytes > 65535) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `maxMessageBytes must be an integer from 512 to 65535, got ${maxMessageBytes}`);
    }
    if (!Number.isInteger(maxStringBytes) || maxStringBytes < 1 || maxStringBytes > 65535) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `maxStringBytes must be an integer from 1 to 65535, got ${maxStringBytes}`);
    }
    this.observationDomainId = observationDomainId;
    this.registry = new InformationElementRegistry(enterpriseNumber);
    this.maxMessageBytes = maxMessageBytes;
    this.maxStringBytes = maxStringBytes;
    this.#clock = options.clock ?? Date.now;
    this.templates = buildTemplates(this.registry);
    for (const [id, version] of [[TemplateId.FLOW_IPV4, 4], [TemplateId.FLOW_IPV6, 6]] as const) {
      const fields = this.#template(id).fields;
      const fixed = fields.reduce((n, f) => n + (f.length === VARIABLE_LENGTH ? 0 : f.length), 0);
      const strings = fields.filter((f) => f.length === VARIABLE_LENGTH).length;
      if (fixed !== FLOW_FIXED_BYTES[version] || strings !== FLOW_STRING_FIELDS) {
        throw new Error(`template ${id} and its record writer disagree`);
      }
    }
    this.#templateItems = this.templates.map((t) => ({
      setId: t.scopeCount > 0 ? SetId.OPTIONS_TEMPLATE : SetId.TEMPLATE,
      bytes: templateRecordBytes(t),
    }));
    const maxRecord = FLOW_FIXED_BYTES[6] + FLOW_STRING_FIELDS * (3 + maxStringBytes);
    this.#buf = new Uint8Array(maxMessageBytes + SET_HEADER_BYTES + maxRecord);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Sequence number the next message will carry (data records sent so far, modulo 2^32). */
  get sequenceNumber(): number {
    return this.#sequence % TWO_32;
  }

  /**
   * Every template and options template, in as few messages as fit. Send them
   * before any data: once per TCP/SCTP session, and periodically on UDP
   * (RFC 7011 §8.4). Each call returns fresh messages with the current header.
   */
  templateMessages(): Uint8Array[] {
    return this.#pack(this.#templateItems);
  }

  /**
   * Withdraws all templates and options templates (RFC 7011 §8.1, template ids
   * 2 and 3 with no fields). Only for a graceful end of a TCP or SCTP session;
   * never on UDP.
   */
  withdrawalMessage(): Uint8Array {
    const record = (id: number) => new Uint8Array([id >> 8, id, 0, 0]);
    return this.#pack([
      { setId: SetId.TEMPLATE, bytes: record(SetId.TEMPLATE) },
      { setId: SetId.OPTIONS_TEMPLATE, bytes: record(SetId.OPTIONS_TEMPLATE) },
    ])[0]!;
  }

  /**
   * The flow records as data messages, each at most maxMessageBytes, records
   * in order (IPv4 and IPv6 records share messages, one set per run of a
   * version). A record that alone does not fit a message is dropped and
   * counted in stats.recordsTooLarge. Returned messages are copies.
   */
  encode(records: readonly ExportRecord[]): Uint8Array[] {
    const out: Uint8Array[] = [];
    const buf = this.#buf;
    const limit = this.maxMessageBytes;
    let pos = MESSAGE_HEADER_BYTES;
    let setStart = -1;
    let setId = 0;
    let inMessage = 0;
    let encoded = 0;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const id = record.flow.ipVersion === 6 ? TemplateId.FLOW_IPV6 : TemplateId.FLOW_IPV4;
      const newSet = id !== setId;
      const start = newSet ? pos + SET_HEADER_BYTES : pos;
      let end = this.#writeFlow(record, start);
      if (end > limit) {
        const size = end - start;
        if (size + MESSAGE_HEADER_BYTES + SET_HEADER_BYTES > limit) {
          this.stats.recordsTooLarge++;
          continue;
        }
        if (inMessage > 0) out.push(this.#finishMessage(pos, setStart, inMessage));
        // The record becomes the first of the next message: move it behind a new set header.
        buf.copyWithin(MESSAGE_HEADER_BYTES + SET_HEADER_BYTES, start, end);
        pos = MESSAGE_HEADER_BYTES;
        setStart = pos;
        setId = id;
        end = pos + SET_HEADER_BYTES + size;
        buf[pos] = id >> 8;
        buf[pos + 1] = id;
        inMessage = 0;
      } else if (newSet) {
        if (setStart >= 0) writeU16(buf, setStart + 2, pos - setStart);
        setStart = pos;
        setId = id;
        buf[pos] = id >> 8;
        buf[pos + 1] = id;
      }
      pos = end;
      inMessage++;
      encoded++;
    }
    if (inMessage > 0) out.push(this.#finishMessage(pos, setStart, inMessage));
    this.stats.flowRecords += encoded;
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
   * RFC 5610 type records for every podflow enterprise element, so a
   * collector can name and type them without configuration. Send after the
   * templates, like them once per TCP session or periodically on UDP.
   */
  typeInformationMessages(): Uint8Array[] {
    return this.#pack(
      this.registry.enterpriseElements.map((e) =>
        this.#optionsRecord(TemplateId.TYPE_INFORMATION, [
          e.id,
          e.enterprise,
          DataTypeCode[e.dataType],
          SemanticsCode[e.semantics],
          UnitsCode[e.units],
          e.name,
          e.description,
        ]),
      ),
    );
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
      const newSet = item.setId !== setId;
      if (pos + (newSet ? SET_HEADER_BYTES : 0) + item.bytes.length > this.maxMessageBytes && pos > MESSAGE_HEADER_BYTES) flush();
      if (item.setId !== setId) {
        if (setStart >= 0) writeU16(buf, setStart + 2, pos - setStart);
        setStart = pos;
        setId = item.setId;
        writeU16(buf, pos, setId);
        pos += SET_HEADER_BYTES;
      }
      buf.set(item.bytes, pos);
      pos += item.bytes.length;
      if (item.setId >= 256) dataRecords++;
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

  /** Writes one flow record at `o` in the order of flowFieldNames(); returns the end offset. */
  #writeFlow(r: ExportRecord, o: number): number {
    const b = this.#buf;
    const f: FlowRecord = r.flow;
    const sa = f.sourceAddress;
    const da = f.destinationAddress;
    const v6 = f.ipVersion === 6;
    if (v6) {
      for (let i = 0; i < 16; i++) b[o + i] = sa[i]!;
      for (let i = 0; i < 16; i++) b[o + 16 + i] = da[i]!;
      o += 32;
    } else {
      b[o] = sa[0]!;
      b[o + 1] = sa[1]!;
      b[o + 2] = sa[2]!;
      b[o + 3] = sa[3]!;
      b[o + 4] = da[0]!;
      b[o + 5] = da[1]!;
      b[o + 6] = da[2]!;
      b[o + 7] = da[3]!;
      o += 8;
    }
    // Uint8Array stores keep the low 8 bits: no masking needed.
    b[o] = f.sourceTransportPort >> 8;
    b[o + 1] = f.sourceTransportPort;
    b[o + 2] = f.destinationTransportPort >> 8;
    b[o + 3] = f.destinationTransportPort;
    b[o + 4] = f.protocolIdentifier;
    b[o + 5] = f.tcpControlBits >> 8;
    b[o + 6] = f.tcpControlBits;
    b[o + 7] = f.reverseTcpControlBits >> 8;
    b[o + 8] = f.reverseTcpControlBits;
    b[o + 9] = f.icmpTypeCode >> 8;
    b[o + 10] = f.icmpTypeCode;
    b[o + 11] = f.reverseIcmpTypeCode >> 8;
    b[o + 12] = f.reverseIcmpTypeCode;
    b[o + 13] = f.vlanId >> 8;
    b[o + 14] = f.vlanId;
    b[o + 15] = r.flowDirection;
    b[o + 16] = f.flowEndReason;
    o += 17;
    writeU64(b, o, f.octetDeltaCount);
    writeU64(b, o + 8, f.packetDeltaCount);
    writeU64(b, o + 16, f.reverseOctetDeltaCount);
    writeU64(b, o + 24, f.reversePacketDeltaCount);
    writeU64(b, o + 32, f.flowStartMilliseconds);
    writeU64(b, o + 40, f.flowEndMilliseconds);
    writeU64(b, o + 48, f.observationPointId);
    o += 56;
    o = this.#writeString(r.interfaceName, o);
    o = this.#writeString(r.clusterName, o);
    o = this.#writeIdentity(r.source, o);
    return this.#writeIdentity(r.destination, o);
  }

  /** The ENDPOINT_FIELDS of one end, in that order. */
  #writeIdentity(e: EndpointIdentity, o: number): number {
    o = this.#writeString(e.type, o);
    o = this.#writeString(e.namespace, o);
    o = this.#writeString(e.podName, o);
    o = this.#writeString(e.podUid, o);
    o = this.#writeString(e.workloadKind, o);
    o = this.#writeString(e.workloadName, o);
    o = this.#writeString(e.nodeName, o);
    o = this.#writeString(e.serviceNamespace, o);
    o = this.#writeString(e.serviceName, o);
    o = this.#writeString(e.servicePortName, o);
    return this.#writeLabels(e.labels, o);
  }

  /** A variable-length string field at `o` (RFC 7011 §7): 1-byte length, or 255 + u16 from 255 bytes on. */
  #writeString(s: string, o: number): number {
    if (s.length === 0) {
      this.#buf[o] = 0;
      return o + 1;
    }
    this.#cut = false;
    return this.#closeString(o, this.#writeText(s, o + 1, o + 1 + this.maxStringBytes));
  }

  /** Labels as "k1=v1,k2=v2", written piece by piece: no joined string is built. */
  #writeLabels(labels: EndpointIdentity['labels'], o: number): number {
    if (labels.length === 0) {
      this.#buf[o] = 0;
      return o + 1;
    }
    const limit = o + 1 + this.maxStringBytes;
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
   * UTF-8 of `s` at `p`, stopping at `limit` without splitting a character;
   * returns the end and sets #cut when the text did not fit.
   */
  #writeText(s: string, p: number, limit: number): number {
    const b = this.#buf;
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

  /** Writes the length prefix of a string field whose text is at o+1..end; counts a cut. */
  #closeString(o: number, end: number): number {
    const b = this.#buf;
    if (this.#cut) this.stats.stringsTruncated++;
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

function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >> 8;
  b[o + 1] = v;
}

/** A non-negative integer below 2^53 as big-endian u64. */
function writeU64(b: Uint8Array, o: number, v: number): void {
  const hi = Math.floor(v / TWO_32);
  const lo = v >>> 0;
  b[o] = hi >>> 24;
  b[o + 1] = hi >>> 16;
  b[o + 2] = hi >>> 8;
  b[o + 3] = hi;
  b[o + 4] = lo >>> 24;
  b[o + 5] = lo >>> 16;
  b[o + 6] = lo >>> 8;
  b[o + 7] = lo;
}

function writeUnsigned(b: Uint8Array, o: number, length: number, v: number): void {
  let x = v;
  for (let i = length - 1; i >= 0; i--) {
    b[o + i] = x % 256;
    x = Math.floor(x / 256);
  }
}

/** The longest prefix of `s` whose UTF-8 fits `max` bytes, never splitting a character. */
function cutUtf8(s: string, max: number): string {
  const buf = new Uint8Array(max);
  const { read } = utf8.encodeInto(s, buf);
  return s.slice(0, read);
}
