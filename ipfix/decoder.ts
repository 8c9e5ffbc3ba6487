// IPFIX (RFC 7011) decoder for the collector view and the tests. One
// IpfixSession per transport session keeps templates per observation domain
// (withdrawal, redefinition, options templates). Bad input never throws and
// never ends the session: each problem is counted by reason and the damaged
// part skipped (the set, or the message when its header is bad).
//
// RFC 5610 type records received in a session name and type enterprise
// elements this side does not know (another agent's PEN).
import {
  DataTypeCode,
  type DataType,
  DEFAULT_ENTERPRISE_NUMBER,
  InformationElementRegistry,
  unknownElementName,
  VARIABLE_LENGTH,
} from './registry.ts';
import { formatIPv6 } from '../flow/address.ts';
import { FIRST_DATA_SET_ID, IPFIX_VERSION, MESSAGE_HEADER_BYTES, SET_HEADER_BYTES, SetId, TWO_32 } from './wire.ts';

export const DecodeProblem = {
  /** Fewer than 16 bytes, or fewer than the header's length field says. */
  TRUNCATED: 'truncated',
  WRONG_VERSION: 'wrong-version',
  /** Length field below 16 or not the size of the bytes given. */
  BAD_LENGTH: 'bad-length',
  /** A set header whose length is below 4 or runs past the message; the rest of the message is skipped. */
  BAD_SET_LENGTH: 'bad-set-length',
  /** Set id 0, 1 or 4..255. */
  RESERVED_SET_ID: 'reserved-set-id',
  /** A template or options template record that does not parse; the rest of its set is skipped. */
  BAD_TEMPLATE: 'bad-template',
  /** A data set whose template this domain has not received (or withdrew). */
  UNKNOWN_TEMPLATE: 'unknown-template',
  /** A data record cut inside a field; the rest of its set is skipped. */
  BAD_RECORD: 'bad-record',
  /** A message of one more observation domain than the session keeps (maxDomains); skipped. */
  DOMAIN_LIMIT: 'domain-limit',
  /** A template beyond the fields the session keeps (maxTemplateFields); refused, its data sets then unknown-template. */
  TEMPLATE_LIMIT: 'template-limit',
} as const;
export type DecodeProblem = (typeof DecodeProblem)[keyof typeof DecodeProblem];

export type FieldValue = number | bigint | string;

export interface DecodedRecord {
  templateId: number;
  /** True for records of an options template (statistics, type information). */
  options: boolean;
  /**
   * Values by element name (IANA names, RFC 5103 reverse names, podflow's or
   * RFC 5610-announced enterprise names, else `e<pen>id<id>`). Unsigned
   * integers and timestamps are numbers (bigint above 2^53), addresses are
   * text, strings are strings, anything else is lower-case hex. A name that
   * repeats in a template gets `#2`, `#3`... on its later fields.
   */
  fields: Record<string, FieldValue>;
}

export interface DecodedMessage {
  /** 'ok', or the first problem met (the others are in `problems`). */
  status: 'ok' | DecodeProblem;
  problems: DecodeProblem[];
  exportTime: number;
  sequenceNumber: number;
  observationDomainId: number;
  records: DecodedRecord[];
}

export interface SessionStats {
  messages: number;
  records: number;
  templates: number;
  /** A template id reused with a different definition without withdrawal. */
  templatesRedefined: number;
  withdrawals: number;
  /** Messages whose sequence number was not the expected one (loss or reordering; informational). */
  sequenceMismatches: number;
  problems: Record<DecodeProblem, number>;
}

interface DecodedField {
  name: string;
  length: number;
  type: DataType;
  /** Set while the element is unnamed, so a later RFC 5610 type record can name it. */
  unknown?: { pen: number; id: number; occurrence: number };
}

interface SessionTemplate {
  options: boolean;
  /** Bytes of the fixed fields plus one per variable-length field: the shortest record. */
  minLength: number;
  fields: DecodedField[];
  /** The raw definition, to tell a refresh from a redefinition. */
  key: string;
}

const utf8 = new TextDecoder();

/**
 * Bounds of one session's state: valid template sets for ever-new
 * observation domains took 2.25 MiB of heap per 64 KB message before
 * (361 such datagrams: 73 to 1,287 MiB). podflow itself uses one domain and
 * ~550 template fields per session with every per-flow feature on (a
 * template per IP version and set of features); other exporters a few
 * hundred. The fields bound leaves room for DEFAULT_MAX_DOMAINS of podflow's.
 */
export const DEFAULT_MAX_DOMAINS = 16;
export const DEFAULT_MAX_TEMPLATE_FIELDS = 16_384;

export interface IpfixSessionOptions {
  /** PEN of podflow's own elements, to name them; default 32473. */
  enterpriseNumber?: number;
  /** Observation domains kept; messages of more are counted (domain-limit) and skipped. Default DEFAULT_MAX_DOMAINS. */
  maxDomains?: number;
  /** Fields of all templates kept, over every domain; templates beyond are counted (template-limit) and refused. Default DEFAULT_MAX_TEMPLATE_FIELDS. */
  maxTemplateFields?: number;
}

export class IpfixSession {
  readonly stats: SessionStats = {
    messages: 0,
    records: 0,
    templates: 0,
    templatesRedefined: 0,
    withdrawals: 0,
    sequenceMismatches: 0,
    problems: {
      truncated: 0,
      'wrong-version': 0,
      'bad-length': 0,
      'bad-set-length': 0,
      'reserved-set-id': 0,
      'bad-template': 0,
      'unknown-template': 0,
      'bad-record': 0,
      'domain-limit': 0,
      'template-limit': 0,
    },
  };

  readonly registry: InformationElementRegistry;
  readonly #maxDomains: number;
  readonly #maxTemplateFields: number;
  /** Fields of every template kept now. */
  #templateFields = 0;
  /** observation domain → template id → template. */
  readonly #domains = new Map<number, Map<number, SessionTemplate>>();
  /** observation domain → expected next sequence number. */
  readonly #nextSequence = new Map<number, number>();
  /** Enterprise elements announced by RFC 5610 type records, by `pen:id`. */
  readonly #announced = new Map<string, { name: string; type: DataType }>();

  constructor(options: IpfixSessionOptions = {}) {
    this.registry = new InformationElementRegistry(options.enterpriseNumber ?? DEFAULT_ENTERPRISE_NUMBER);
    this.#maxDomains = options.maxDomains ?? DEFAULT_MAX_DOMAINS;
    this.#maxTemplateFields = options.maxTemplateFields ?? DEFAULT_MAX_TEMPLATE_FIELDS;
  }

  /** Template ids known in a domain (for tests and the collector view). */
  templateIds(observationDomainId: number): number[] {
    return [...(this.#domains.get(observationDomainId)?.keys() ?? [])];
  }

  /** Decodes one message (one UDP datagram, or one message split from a stream). Never throws. */
  decodeMessage(bytes: Uint8Array): DecodedMessage {
    const result: DecodedMessage = {
      status: 'ok',
      problems: [],
      exportTime: 0,
      sequenceNumber: 0,
      observationDomainId: 0,
      records: [],
    };
    const problem = (p: DecodeProblem) => {
      this.stats.problems[p]++;
      result.problems.push(p);
      if (result.status === 'ok') result.status = p;
    };
    if (bytes.length < MESSAGE_HEADER_BYTES) {
      problem(DecodeProblem.TRUNCATED);
      return result;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint16(0) !== IPFIX_VERSION) {
      problem(DecodeProblem.WRONG_VERSION);
      return result;
    }
    const length = view.getUint16(2);
    if (length > bytes.length) {
      problem(DecodeProblem.TRUNCATED);
      return result;
    }
    if (length < MESSAGE_HEADER_BYTES || length !== bytes.length) {
      problem(DecodeProblem.BAD_LENGTH);
      return result;
    }
    this.stats.messages++;
    result.exportTime = view.getUint32(4);
    result.sequenceNumber = view.getUint32(8);
    const domainId = view.getUint32(12);
    result.observationDomainId = domainId;
    const expected = this.#nextSequence.get(domainId);
    if (expected !== undefined && expected !== result.sequenceNumber) this.stats.sequenceMismatches++;
    let templates = this.#domains.get(domainId);
    if (!templates) {
      if (this.#domains.size >= this.#maxDomains) {
        problem(DecodeProblem.DOMAIN_LIMIT);
        return result;
      }
      templates = new Map();
      this.#domains.set(domainId, templates);
    }
    let o = MESSAGE_HEADER_BYTES;
    while (o < length) {
      if (length - o < SET_HEADER_BYTES) {
        problem(DecodeProblem.BAD_SET_LENGTH);
        break;
      }
      const setId = view.getUint16(o);
      const setLength = view.getUint16(o + 2);
      if (setLength < SET_HEADER_BYTES || o + setLength > length) {
        problem(DecodeProblem.BAD_SET_LENGTH);
        break;
      }
      const start = o + SET_HEADER_BYTES;
      const end = o + setLength;
      if (setId === SetId.TEMPLATE || setId === SetId.OPTIONS_TEMPLATE) {
        this.#templateSet(view, start, end, setId === SetId.OPTIONS_TEMPLATE, templates, problem);
      } else if (setId >= FIRST_DATA_SET_ID) {
        const template = templates.get(setId);
        if (template) this.#dataSet(bytes, view, start, end, setId, template, result.records, problem);
        else problem(DecodeProblem.UNKNOWN_TEMPLATE);
      } else {
        problem(DecodeProblem.RESERVED_SET_ID);
      }
      o = end;
    }
    let dataRecords = 0;
    for (const r of result.records) {
      dataRecords++;
      if (r.options) this.#learnType(r.fields);
    }
    this.stats.records += dataRecords;
    this.#nextSequence.set(domainId, (result.sequenceNumber + dataRecords) % TWO_32);
    return result;
  }

  #templateSet(
    view: DataView,
    start: number,
    end: number,
    options: boolean,
    templates: Map<number, SessionTemplate>,
    problem: (p: DecodeProblem) => void,
  ): void {
    let o = start;
    // Fewer than 4 bytes left is padding (RFC 7011 §3.3.1).
    while (end - o >= 4) {
      const id = view.getUint16(o);
      const count = view.getUint16(o + 2);
      if (count === 0) {
        // Withdrawal (RFC 7011 §8.1): one template, or all of the set's kind (id 2 or 3).
        if (id === (options ? SetId.OPTIONS_TEMPLATE : SetId.TEMPLATE)) {
          for (const [tid, t] of templates) if (t.options === options) this.#forget(templates, tid);
        } else if (id >= FIRST_DATA_SET_ID) this.#forget(templates, id);
        else {
          problem(DecodeProblem.BAD_TEMPLATE);
          return;
        }
        this.stats.withdrawals++;
        o += 4;
        continue;
      }
      if (id < FIRST_DATA_SET_ID) {
        problem(DecodeProblem.BAD_TEMPLATE);
        return;
      }
      let p = o + 4;
      let scopeCount = 0;
      if (options) {
        if (end - p < 2) {
          problem(DecodeProblem.BAD_TEMPLATE);
          return;
        }
        scopeCount = view.getUint16(p);
        p += 2;
        if (scopeCount === 0 || scopeCount > count) {
          problem(DecodeProblem.BAD_TEMPLATE);
          return;
        }
      }
      const fields: DecodedField[] = [];
      const seen = new Map<string, number>();
      let minLength = 0;
      for (let i = 0; i < count; i++) {
        if (end - p < 4) {
          problem(DecodeProblem.BAD_TEMPLATE);
          return;
        }
        const rawId = view.getUint16(p);
        const length = view.getUint16(p + 2);
        p += 4;
        let pen = 0;
        if (rawId & 0x8000) {
          if (end - p < 4) {
            problem(DecodeProblem.BAD_TEMPLATE);
            return;
          }
          pen = view.getUint32(p);
          p += 4;
        }
        if (length === 0) {
          problem(DecodeProblem.BAD_TEMPLATE);
          return;
        }
        const { name: base, type, known } = this.#describe(pen, rawId & 0x7fff);
        const n = (seen.get(base) ?? 0) + 1;
        seen.set(base, n);
        const field: DecodedField = { name: occurrenceName(base, n), length, type };
        if (!known) field.unknown = { pen, id: rawId & 0x7fff, occurrence: n };
        fields.push(field);
        minLength += length === VARIABLE_LENGTH ? 1 : length;
      }
      const key = `${scopeCount}:${new Uint8Array(view.buffer, view.byteOffset + o, p - o).join(',')}`;
      const previous = templates.get(id);
      o = p;
      if (this.#templateFields + fields.length - (previous?.fields.length ?? 0) > this.#maxTemplateFields) {
        problem(DecodeProblem.TEMPLATE_LIMIT);
        continue;
      }
      if (previous && previous.key !== key) this.stats.templatesRedefined++;
      this.#forget(templates, id);
      templates.set(id, { options, minLength, fields, key });
      this.#templateFields += fields.length;
      this.stats.templates++;
    }
  }

  #forget(templates: Map<number, SessionTemplate>, id: number): void {
    const t = templates.get(id);
    if (!t) return;
    this.#templateFields -= t.fields.length;
    templates.delete(id);
  }

  #dataSet(
    bytes: Uint8Array,
    view: DataView,
    start: number,
    end: number,
    templateId: number,
    template: SessionTemplate,
    out: DecodedRecord[],
    problem: (p: DecodeProblem) => void,
  ): void {
    let o = start;
    // Fewer bytes than the shortest record is padding (RFC 7011 §3.3.1).
    while (end - o >= template.minLength) {
      const fields: Record<string, FieldValue> = {};
      for (const f of template.fields) {
        let length = f.length;
        if (length === VARIABLE_LENGTH) {
          if (o >= end) {
            problem(DecodeProblem.BAD_RECORD);
            return;
          }
          length = bytes[o]!;
          o++;
          if (length === 255) {
            if (end - o < 2) {
              problem(DecodeProblem.BAD_RECORD);
              return;
            }
            length = view.getUint16(o);
            o += 2;
          }
        }
        if (end - o < length) {
          problem(DecodeProblem.BAD_RECORD);
          return;
        }
        fields[f.name] = decodeValue(bytes, view, o, length, f.type);
        o += length;
      }
      out.push({ templateId, options: template.options, fields });
    }
  }

  #describe(pen: number, id: number): { name: string; type: DataType; known: boolean } {
    const e = this.registry.byId(pen, id);
    if (e) return { name: e.name, type: e.dataType, known: true };
    const announced = this.#announced.get(`${pen}:${id}`);
    if (announced) return { ...announced, known: true };
    return { name: unknownElementName(pen, id), type: 'octetArray', known: false };
  }

  /** Remembers an RFC 5610 type record for enterprise elements the registry lacks. */
  #learnType(f: Record<string, FieldValue>): void {
    const { informationElementId: id, privateEnterpriseNumber: pen, informationElementName: name } = f;
    const code = f.informationElementDataType;
    if (typeof id !== 'number' || typeof pen !== 'number' || pen === 0 || typeof name !== 'string' || name === '') return;
    if (this.registry.byId(pen, id & 0x7fff)) return;
    const type = (Object.keys(DataTypeCode) as DataType[]).find((t) => DataTypeCode[t] === code) ?? 'octetArray';
    const eid = id & 0x7fff;
    this.#announced.set(`${pen}:${eid}`, { name, type });
    // Templates usually arrive before the type records: name their fields now.
    for (const templates of this.#domains.values()) {
      for (const t of templates.values()) {
        for (const field of t.fields) {
          if (field.unknown?.pen !== pen || field.unknown.id !== eid) continue;
          field.name = occurrenceName(name, field.unknown.occurrence);
          field.type = type;
          delete field.unknown;
        }
      }
    }
  }
}

function occurrenceName(base: string, n: number): string {
  return n === 1 ? base : `${base}#${n}`;
}

function decodeValue(bytes: Uint8Array, view: DataView, o: number, length: number, type: DataType): FieldValue {
  switch (type) {
    case 'string':
      return utf8.decode(bytes.subarray(o, o + length));
    case 'ipv4Address':
      if (length === 4) return `${bytes[o]}.${bytes[o + 1]}.${bytes[o + 2]}.${bytes[o + 3]}`;
      break;
    case 'ipv6Address':
      if (length === 16) return formatIPv6(bytes.subarray(o, o + 16));
      break;
    case 'unsigned8':
    case 'unsigned16':
    case 'unsigned32':
    case 'unsigned64':
    case 'dateTimeSeconds':
    case 'dateTimeMilliseconds':
    case 'boolean':
      // Reduced-size encoding (RFC 7011 §6.2) allows any length up to the type's.
      if (length <= 8) return readUnsigned(view, o, length);
      break;
    case 'float64':
      if (length === 8) return view.getFloat64(o);
      break;
    case 'float32':
      if (length === 4) return view.getFloat32(o);
      break;
  }
  return hex(bytes, o, length);
}

function readUnsigned(view: DataView, o: number, length: number): number | bigint {
  if (length <= 6) {
    let v = 0;
    for (let i = 0; i < length; i++) v = v * 256 + view.getUint8(o + i);
    return v;
  }
  let v = 0n;
  for (let i = 0; i < length; i++) v = (v << 8n) | BigInt(view.getUint8(o + i));
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function hex(bytes: Uint8Array, o: number, length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += bytes[o + i]!.toString(16).padStart(2, '0');
  return s;
}

/**
 * Splits a byte stream (TCP, a file of concatenated messages) into messages
 * by the header's length field. Bytes that cannot start a message (version
 * not 10, or length below 16) are skipped one at a time until a plausible
 * header, and counted in garbageBytes. A garbage byte pair that looks like a
 * header makes one bad message, which the decoder then counts.
 */
export class IpfixStreamSplitter {
  garbageBytes = 0;
  messages = 0;
  #pending: Uint8Array = new Uint8Array(0);

  /** Bytes held back waiting for the rest of a message. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** The complete messages the stream holds so far, as copies. */
  push(chunk: Uint8Array): Uint8Array[] {
    let data = chunk;
    if (this.#pending.length > 0) {
      data = new Uint8Array(this.#pending.length + chunk.length);
      data.set(this.#pending);
      data.set(chunk, this.#pending.length);
    }
    const out: Uint8Array[] = [];
    let o = 0;
    while (data.length - o >= 4) {
      const length = (data[o + 2]! << 8) | data[o + 3]!;
      if (data[o] !== 0 || data[o + 1] !== IPFIX_VERSION || length < MESSAGE_HEADER_BYTES) {
        this.garbageBytes++;
        o++;
        continue;
      }
      if (data.length - o < length) break;
      out.push(data.slice(o, o + length));
      this.messages++;
      o += length;
    }
    this.#pending = data.slice(o);
    return out;
  }
}

/** Splits a whole buffer (e.g. a file); bytes of an incomplete last message are `trailingBytes`. */
export function splitMessages(bytes: Uint8Array): { messages: Uint8Array[]; garbageBytes: number; trailingBytes: number } {
  const splitter = new IpfixStreamSplitter();
  const messages = splitter.push(bytes);
  return { messages, garbageBytes: splitter.garbageBytes, trailingBytes: splitter.pendingBytes };
}
