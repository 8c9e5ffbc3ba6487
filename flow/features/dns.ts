// DNS message reader (RFC 1035, EDNS0 RFC 6891): the header, the first
// question and the first answer of one message, as flow features need them.
//
// Hand-written rather than a DNS library: it runs for every DNS packet a node
// captures, reads only what a flow record carries (a library decodes every
// record of every section into objects and throws on bad bytes), and must
// never throw: a malformed or cut message returns a status and what was read
// before the fault stays filled in. Everything is bounded: names by RFC 1035's
// 255 bytes and 127 labels, compression pointers by a hop count, text by
// MAX_DATA_CHARS.
import { formatIPv4, formatIPv6 } from '../address.ts';
import { latin1, u16 } from './bytes.ts';
import { readU32BE } from '../records.ts';

/** How far a message could be read. */
export const DnsStatus = {
  /** Header, question, answers and the EDNS OPT record all read. */
  OK: 0,
  /** Shorter than the 12-byte header: nothing filled in. */
  TOO_SHORT: 1,
  /** The message ends inside a section (a cut capture, a fragment): what came before is filled in. */
  TRUNCATED: 2,
  /** A name or record that cannot be right (label > 63, a pointer loop, a name > 255 bytes): what came before is filled in. */
  MALFORMED: 3,
} as const;
export type DnsStatus = (typeof DnsStatus)[keyof typeof DnsStatus];

export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  HINFO: 13,
  MINFO: 14,
  MX: 15,
  TXT: 16,
  ISDN: 20,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  DS: 43,
  RRSIG: 46,
  DNSKEY: 48,
} as const;

/** The response codes people read in a table; the number for others. */
export const DnsRcodeName: Readonly<Record<number, string>> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
};

/** The longest rendering of a first answer's data kept (the rest is cut). */
export const MAX_DATA_CHARS = 255;
/** RFC 1035 2.3.4: a name is at most 255 bytes on the wire. */
const MAX_NAME_BYTES = 255;
const MAX_LABELS = 127;
const HEADER_BYTES = 12;

/** One DNS message as a flow feature reads it. Reused: parseDns() overwrites every field. */
export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  /** RCODE of the header (4 bits; EDNS extended bits not added). */
  rcode: number;
  questionCount: number;
  answerCount: number;
  /** The first question's name in presentation form without the final dot ('' for the root); '' when no question was read. */
  queryName: string;
  queryType: number;
  queryClass: number;
  /** The first answer's type, 0 when the message has none (or it could not be read). */
  answerType: number;
  answerTtl: number;
  /** The first answer's data as text (docs/ipfix-elements.md lists the forms), at most MAX_DATA_CHARS. */
  answerData: string;
  /** EDNS: the UDP payload size the sender offers; 0 without an OPT record. */
  ednsPayloadSize: number;
  /** EDNS DO bit (DNSSEC OK). */
  dnssecOk: boolean;
}

export function emptyDnsMessage(): DnsMessage {
  return {
    id: 0,
    response: false,
    opcode: 0,
    rcode: 0,
    questionCount: 0,
    answerCount: 0,
    queryName: '',
    queryType: 0,
    queryClass: 0,
    answerType: 0,
    answerTtl: 0,
    answerData: '',
    ednsPayloadSize: 0,
    dnssecOk: false,
  };
}

// The result of a name read: the name and where the bytes after it start.
// Module state instead of a returned object: no allocation per name.
let nameText = '';
let nameEnd = 0;
/** Why the last name read failed. */
let nameFault: DnsStatus = DnsStatus.OK;

/**
 * Reads the DNS message buf[start, end) into `out`. Never throws; returns how
 * far it got (fields past a fault keep their reset values).
 */
export function parseDns(buf: Uint8Array, start: number, end: number, out: DnsMessage): DnsStatus {
  reset(out);
  if (end - start < HEADER_BYTES) return DnsStatus.TOO_SHORT;
  out.id = u16(buf, start);
  const flags = u16(buf, start + 2);
  out.response = (flags & 0x8000) !== 0;
  out.opcode = (flags >> 11) & 0x0f;
  out.rcode = flags & 0x0f;
  out.questionCount = u16(buf, start + 4);
  out.answerCount = u16(buf, start + 6);
  const authorityCount = u16(buf, start + 8);
  const additionalCount = u16(buf, start + 10);

  let at = start + HEADER_BYTES;
  for (let i = 0; i < out.questionCount; i++) {
    if (!readName(buf, start, at, end, i === 0)) return nameFault;
    at = nameEnd;
    if (at + 4 > end) return DnsStatus.TRUNCATED;
    if (i === 0) {
      out.queryName = nameText;
      out.queryType = u16(buf, at);
      out.queryClass = u16(buf, at + 2);
    }
    at += 4;
  }

  const records = out.answerCount + authorityCount + additionalCount;
  for (let i = 0; i < records; i++) {
    if (!readName(buf, start, at, end, false)) return nameFault;
    at = nameEnd;
    if (at + 10 > end) return DnsStatus.TRUNCATED;
    const type = u16(buf, at);
    const klass = u16(buf, at + 2);
    const ttl = readU32BE(buf, at + 4);
    const length = u16(buf, at + 8);
    const data = at + 10;
    if (data + length > end) return DnsStatus.TRUNCATED;
    if (i === 0 && out.answerCount > 0) {
      out.answerType = type;
      out.answerTtl = ttl;
      out.answerData = renderData(buf, start, type, data, length);
    } else if (i >= out.answerCount + authorityCount && type === DnsType.OPT) {
      out.ednsPayloadSize = klass;
      out.dnssecOk = (ttl & 0x8000) !== 0;
    }
    at = data + length;
  }
  return DnsStatus.OK;
}

function reset(out: DnsMessage): void {
  out.id = 0;
  out.response = false;
  out.opcode = 0;
  out.rcode = 0;
  out.questionCount = 0;
  out.answerCount = 0;
  out.queryName = '';
  out.queryType = 0;
  out.queryClass = 0;
  out.answerType = 0;
  out.answerTtl = 0;
  out.answerData = '';
  out.ednsPayloadSize = 0;
  out.dnssecOk = false;
}

/**
 * Reads the (possibly compressed) name at `at` of the message starting at
 * `message`; sets nameEnd to the byte after it in place, and nameText when
 * `render`. Returns false with nameFault set when it cannot be read.
 */
function readName(buf: Uint8Array, message: number, at: number, end: number, render: boolean): boolean {
  let text = '';
  let wireBytes = 0;
  let labels = 0;
  let after = -1;
  let p = at;
  for (;;) {
    if (p >= end) return fault(DnsStatus.TRUNCATED);
    const len = buf[p]!;
    if ((len & 0xc0) === 0xc0) {
      if (p + 1 >= end) return fault(DnsStatus.TRUNCATED);
      if (after < 0) after = p + 2;
      const target = message + (((len & 0x3f) << 8) | buf[p + 1]!);
      // A pointer must point backwards: this alone rules out loops.
      if (target >= p) return fault(DnsStatus.MALFORMED);
      p = target;
      continue;
    }
    if ((len & 0xc0) !== 0) return fault(DnsStatus.MALFORMED); // 0x40 / 0x80: extended label types, obsolete
    if (len === 0) break;
    wireBytes += len + 1;
    if (++labels > MAX_LABELS || wireBytes + 1 > MAX_NAME_BYTES) return fault(DnsStatus.MALFORMED);
    if (p + 1 + len > end) return fault(DnsStatus.TRUNCATED);
    if (render) text = appendLabel(text, buf, p + 1, p + 1 + len);
    p += 1 + len;
  }
  nameEnd = after < 0 ? p + 1 : after;
  nameText = text;
  return true;
}

function fault(status: DnsStatus): false {
  nameFault = status;
  return false;
}

/** Appends one label in presentation form (RFC 1035 5.1): '.' and '\' escaped, bytes outside printable ASCII as \DDD. */
function appendLabel(text: string, buf: Uint8Array, from: number, to: number): string {
  let label = text === '' ? '' : '.';
  let plainFrom = from;
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) continue;
    label += latin1(buf, plainFrom, i) + (c === 0x2e || c === 0x5c ? '\\' + String.fromCharCode(c) : '\\' + String(c).padStart(3, '0'));
    plainFrom = i + 1;
  }
  return text + label + latin1(buf, plainFrom, to);
}


/** A name inside record data, rendered; '' when it cannot be read. */
function nameAt(buf: Uint8Array, message: number, at: number, end: number): string {
  return readName(buf, message, at, end, true) ? nameText : '';
}

/**
 * The first answer's data as text, in the forms ipfixprobe's DNS plugin
 * writes where it has one (so its DNS_RDATA and ours compare): addresses, names,
 * "preference name" for MX, SOA's seven fields, TXT strings joined by spaces;
 * RFC 3597's generic "\# length hex" for the others. Bounded by MAX_DATA_CHARS.
 */
function renderData(buf: Uint8Array, message: number, type: number, data: number, length: number): string {
  const stop = data + length;
  let text: string;
  switch (type) {
    case DnsType.A:
      text = length === 4 ? formatIPv4(buf.subarray(data, stop)) : generic(buf, data, length);
      break;
    case DnsType.AAAA:
      text = length === 16 ? formatIPv6(buf.subarray(data, stop)) : generic(buf, data, length);
      break;
    case DnsType.NS:
    case DnsType.CNAME:
    case DnsType.PTR:
    case DnsType.DNAME:
      text = nameAt(buf, message, data, stop);
      break;
    case DnsType.MX:
      text = length >= 3 ? `${u16(buf, data)} ${nameAt(buf, message, data + 2, stop)}` : generic(buf, data, length);
      break;
    case DnsType.SOA: {
      const mname = readName(buf, message, data, stop, true) ? nameText : undefined;
      const afterM = nameEnd;
      const rname = mname !== undefined && readName(buf, message, afterM, stop, true) ? nameText : undefined;
      const numbers = nameEnd;
      if (mname === undefined || rname === undefined || numbers + 20 > stop) {
        text = generic(buf, data, length);
        break;
      }
      text = `${mname} ${rname} ${readU32BE(buf, numbers)} ${readU32BE(buf, numbers + 4)} ${readU32BE(buf, numbers + 8)} ${readU32BE(buf, numbers + 12)} ${readU32BE(buf, numbers + 16)}`;
      break;
    }
    case DnsType.SRV:
      // RFC 2782 presentation order: priority weight port target.
      text = length >= 7 ? `${u16(buf, data)} ${u16(buf, data + 2)} ${u16(buf, data + 4)} ${nameAt(buf, message, data + 6, stop)}` : generic(buf, data, length);
      break;
    case DnsType.TXT: {
      const strings: string[] = [];
      let chars = 0;
      for (let p = data; p < stop && chars < MAX_DATA_CHARS; ) {
        const n = buf[p]!;
        const to = Math.min(p + 1 + n, stop);
        strings.push(latin1(buf, p + 1, to));
        chars += to - p;
        p = to;
      }
      text = strings.join(' ');
      break;
    }
    case DnsType.RRSIG:
      text = length >= 18 ? `${u16(buf, data)} ${buf[data + 2]} ${buf[data + 3]} ${readU32BE(buf, data + 4)} ${readU32BE(buf, data + 8)} ${readU32BE(buf, data + 12)} ${u16(buf, data + 16)} <key>` : generic(buf, data, length);
      break;
    case DnsType.DNSKEY:
      text = length >= 4 ? `${u16(buf, data)} ${buf[data + 2]} ${buf[data + 3]} <key>` : generic(buf, data, length);
      break;
    case DnsType.DS:
      text = length >= 4 ? `${u16(buf, data)} ${buf[data + 2]} ${buf[data + 3]} <key>` : generic(buf, data, length);
      break;
    default:
      text = generic(buf, data, length);
  }
  return text.length > MAX_DATA_CHARS ? text.slice(0, MAX_DATA_CHARS) : text;
}

/** RFC 3597 3: "\# length hex", the hex cut so the text stays within MAX_DATA_CHARS. */
function generic(buf: Uint8Array, data: number, length: number): string {
  let text = `\\# ${length}`;
  if (length > 0) text += ' ';
  const bytes = Math.min(length, (MAX_DATA_CHARS - text.length) >> 1);
  for (let i = 0; i < bytes; i++) text += buf[data + i]!.toString(16).padStart(2, '0');
  return text;
}
