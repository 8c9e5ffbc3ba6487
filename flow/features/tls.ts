// TLS hello reader (RFC 8446 4.1.2-4.1.3, RFC 5246 7.4.1): the ClientHello's
// server name, ALPN list, versions and the values JA3 and JA4 fingerprint,
// and the ServerHello's chosen version and ALPN; plus the bounded reassembly
// of a hello that TCP split over several segments.
//
// Hand-written: no maintained npm package parses a ClientHello from captured
// bytes (TLS libraries parse their own connections), and this runs on the
// first packets of every TLS flow. It never throws: bad bytes give a status.
// JA3 (github.com/salesforce/ja3) and JA4 (FoxIO, technical_details/JA4.md)
// are computed from the parsed values with node:crypto's MD5 and SHA-256.
import { createHash } from 'node:crypto';
import { latin1, u16 } from './bytes.ts';

/** Why a hello could not be read (OK: a step of the reading succeeded; the parse functions return the hello instead). */
export const TlsStatus = {
  OK: 0,
  /** The bytes end before the hello does: more segments may bring the rest. */
  INCOMPLETE: 1,
  /** Not a TLS handshake record, or not a ClientHello/ServerHello. */
  NOT_HELLO: 2,
  /** A length or a list that cannot be right. */
  MALFORMED: 3,
  /** The hello is longer than MAX_HELLO_BYTES: not reassembled. */
  TOO_LONG: 4,
} as const;
export type TlsStatus = (typeof TlsStatus)[keyof typeof TlsStatus];

/**
 * The most hello bytes (records included) reassembled for one flow direction.
 * A ClientHello is a few hundred bytes to ~2 KiB (a post-quantum key share);
 * one TLS record holds at most 16 KiB of it.
 */
export const MAX_HELLO_BYTES = 16384 + 5;
/** The longest server name kept (RFC 1035 names fit in 253). */
export const MAX_SERVER_NAME_CHARS = 255;
/** The longest ALPN list text kept ("h2,http/1.1" is 11). */
export const MAX_ALPN_CHARS = 255;

const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const HANDSHAKE_SERVER_HELLO = 2;
const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;

export const TlsExtension = {
  SERVER_NAME: 0x0000,
  SUPPORTED_GROUPS: 0x000a,
  EC_POINT_FORMATS: 0x000b,
  SIGNATURE_ALGORITHMS: 0x000d,
  ALPN: 0x0010,
  SUPPORTED_VERSIONS: 0x002b,
} as const;

export interface ClientHello {
  /** legacy_version of the hello (0x0303 for TLS 1.2 and 1.3). */
  version: number;
  /** In the order sent, GREASE included (the fingerprints drop it). */
  cipherSuites: number[];
  extensions: number[];
  /** The first host_name of the server_name extension; '' without one. */
  serverName: string;
  hasServerName: boolean;
  /** Protocols offered, in order. */
  alpn: string[];
  supportedGroups: number[];
  pointFormats: number[];
  signatureAlgorithms: number[];
  supportedVersions: number[];
}

export interface ServerHello {
  version: number;
  cipherSuite: number;
  /** The supported_versions extension's choice (TLS 1.3), 0 without one. */
  selectedVersion: number;
  /** The protocol chosen; '' when the hello does not say (TLS 1.3 sends it encrypted). */
  alpn: string;
}

export type Hello = { kind: 'client'; hello: ClientHello } | { kind: 'server'; hello: ServerHello };

/** RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa. */
export function isGrease(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}

/**
 * Reads one handshake message (type, 24-bit length, body) at buf[start, end):
 * a ClientHello or ServerHello, from TLS records or a QUIC CRYPTO stream.
 * Returns the hello, or a status (a number) saying why there is none.
 */
export function parseHelloMessage(buf: Uint8Array, start: number, end: number): Hello | TlsStatus {
  if (end - start < HANDSHAKE_HEADER) return TlsStatus.INCOMPLETE;
  const type = buf[start]!;
  if (type !== HANDSHAKE_CLIENT_HELLO && type !== HANDSHAKE_SERVER_HELLO) return TlsStatus.NOT_HELLO;
  const length = (buf[start + 1]! << 16) | (buf[start + 2]! << 8) | buf[start + 3]!;
  if (length + HANDSHAKE_HEADER > MAX_HELLO_BYTES) return TlsStatus.TOO_LONG;
  const body = start + HANDSHAKE_HEADER;
  if (body + length > end) return TlsStatus.INCOMPLETE;
  return type === HANDSHAKE_CLIENT_HELLO ? readClientHello(buf, body, body + length) : readServerHello(buf, body, body + length);
}

/**
 * Reads the hello at the start of a TLS byte stream buf[start, end) (TLS
 * records, from the first byte one direction sent). The handshake message
 * may span records; when it does its bytes are copied out of them.
 */
export function parseHelloRecords(buf: Uint8Array, start: number, end: number): Hello | TlsStatus {
  const first = recordAt(buf, start, end);
  if (first !== TlsStatus.OK) return first;
  const firstLength = u16(buf, start + 3);
  const firstEnd = start + RECORD_HEADER + firstLength;
  if (firstEnd <= end) {
    const result = parseHelloMessage(buf, start + RECORD_HEADER, firstEnd);
    if (result !== TlsStatus.INCOMPLETE) return result;
  }
  // The message goes on in the next record(s), or this one is cut: join the record bodies.
  const joined = new Uint8Array(Math.min(end - start, MAX_HELLO_BYTES));
  let length = 0;
  for (let at = start; at < end; ) {
    const status = recordAt(buf, at, end);
    if (status !== TlsStatus.OK) return status;
    const body = Math.min(u16(buf, at + 3), end - at - RECORD_HEADER);
    if (length + body > joined.length) return TlsStatus.TOO_LONG;
    joined.set(buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + body), length);
    length += body;
    at += RECORD_HEADER + body;
  }
  return parseHelloMessage(joined, 0, length);
}

/** Whether buf[at] starts a TLS handshake record (as much of its header as is there). */
function recordAt(buf: Uint8Array, at: number, end: number): TlsStatus {
  if (at >= end) return TlsStatus.INCOMPLETE;
  if (buf[at] !== CONTENT_HANDSHAKE) return TlsStatus.NOT_HELLO;
  if (at + 1 < end && buf[at + 1] !== 3) return TlsStatus.NOT_HELLO;
  if (at + RECORD_HEADER > end) return TlsStatus.INCOMPLETE;
  if (u16(buf, at + 3) === 0) return TlsStatus.MALFORMED;
  return TlsStatus.OK;
}

/** Whether a payload starts like a TLS handshake record: what starts a flight worth reassembling. */
export function startsTlsHandshake(buf: Uint8Array, start: number, end: number): boolean {
  return end - start >= 3 && buf[start] === CONTENT_HANDSHAKE && buf[start + 1] === 3 && buf[start + 2]! <= 4;
}

function readClientHello(buf: Uint8Array, start: number, end: number): Hello | TlsStatus {
  // legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2> compression<1..2^8-1> extensions<..>
  if (end - start < 2 + 32 + 1) return TlsStatus.MALFORMED;
  const hello: ClientHello = {
    version: u16(buf, start),
    cipherSuites: [],
    extensions: [],
    serverName: '',
    hasServerName: false,
    alpn: [],
    supportedGroups: [],
    pointFormats: [],
    signatureAlgorithms: [],
    supportedVersions: [],
  };
  let at = start + 34;
  at += 1 + buf[at]!;
  if (at + 2 > end) return TlsStatus.MALFORMED;
  const suitesLength = u16(buf, at);
  at += 2;
  if (suitesLength % 2 !== 0 || at + suitesLength > end) return TlsStatus.MALFORMED;
  for (let p = at; p < at + suitesLength; p += 2) hello.cipherSuites.push(u16(buf, p));
  at += suitesLength;
  if (at >= end) return TlsStatus.MALFORMED;
  at += 1 + buf[at]!;
  if (at > end) return TlsStatus.MALFORMED;
  if (at < end) {
    const status = readExtensions(buf, at, end, (type, from, to) => {
      hello.extensions.push(type);
      return readClientExtension(hello, type, buf, from, to);
    });
    if (status !== TlsStatus.OK) return status;
  }
  return { kind: 'client', hello };
}

function readServerHello(buf: Uint8Array, start: number, end: number): Hello | TlsStatus {
  // legacy_version(2) random(32) session_id<0..32> cipher_suite(2) compression(1) extensions<..>
  if (end - start < 2 + 32 + 1) return TlsStatus.MALFORMED;
  const hello: ServerHello = { version: u16(buf, start), cipherSuite: 0, selectedVersion: 0, alpn: '' };
  let at = start + 34;
  at += 1 + buf[at]!;
  if (at + 3 > end) return TlsStatus.MALFORMED;
  hello.cipherSuite = u16(buf, at);
  at += 3;
  if (at < end) {
    const status = readExtensions(buf, at, end, (type, from, to) => {
      if (type === TlsExtension.SUPPORTED_VERSIONS && to - from >= 2) hello.selectedVersion = u16(buf, from);
      if (type === TlsExtension.ALPN) {
        const names: string[] = [];
        if (!readAlpn(buf, from, to, names)) return false;
        hello.alpn = names[0] ?? '';
      }
      return true;
    });
    if (status !== TlsStatus.OK) return status;
  }
  return { kind: 'server', hello };
}

/** Calls `each` for every extension of the block at buf[at, end) (its 2-byte length first); MALFORMED when a length overruns or `each` says so. */
function readExtensions(buf: Uint8Array, at: number, end: number, each: (type: number, from: number, to: number) => boolean): TlsStatus {
  if (at + 2 > end) return TlsStatus.MALFORMED;
  const stop = at + 2 + u16(buf, at);
  if (stop > end) return TlsStatus.MALFORMED;
  for (let p = at + 2; p < stop; ) {
    if (p + 4 > stop) return TlsStatus.MALFORMED;
    const type = u16(buf, p);
    const to = p + 4 + u16(buf, p + 2);
    if (to > stop) return TlsStatus.MALFORMED;
    if (!each(type, p + 4, to)) return TlsStatus.MALFORMED;
    p = to;
  }
  return TlsStatus.OK;
}

function readClientExtension(hello: ClientHello, type: number, buf: Uint8Array, from: number, to: number): boolean {
  switch (type) {
    case TlsExtension.SERVER_NAME:
      return readServerName(hello, buf, from, to);
    case TlsExtension.ALPN:
      return readAlpn(buf, from, to, hello.alpn);
    case TlsExtension.SUPPORTED_GROUPS:
      return readList16(buf, from, to, 2, hello.supportedGroups);
    case TlsExtension.SIGNATURE_ALGORITHMS:
      return readList16(buf, from, to, 2, hello.signatureAlgorithms);
    case TlsExtension.SUPPORTED_VERSIONS:
      return readList16(buf, from, to, 1, hello.supportedVersions);
    case TlsExtension.EC_POINT_FORMATS: {
      if (from >= to || from + 1 + buf[from]! > to) return false;
      for (let p = from + 1; p < from + 1 + buf[from]!; p++) hello.pointFormats.push(buf[p]!);
      return true;
    }
    default:
      return true;
  }
}

/** A list of 16-bit values after a length of `lengthBytes` bytes. */
function readList16(buf: Uint8Array, from: number, to: number, lengthBytes: 1 | 2, into: number[]): boolean {
  if (from + lengthBytes > to) return false;
  const length = lengthBytes === 1 ? buf[from]! : u16(buf, from);
  const start = from + lengthBytes;
  if (length % 2 !== 0 || start + length > to) return false;
  for (let p = start; p < start + length; p += 2) into.push(u16(buf, p));
  return true;
}

/** RFC 6066 3: a list of (type, name); the first host_name (type 0) is kept. */
function readServerName(hello: ClientHello, buf: Uint8Array, from: number, to: number): boolean {
  hello.hasServerName = true;
  if (from + 2 > to) return from === to; // an empty extension is what a server echoes; from a client it is still "has SNI"
  const stop = from + 2 + u16(buf, from);
  if (stop > to) return false;
  for (let p = from + 2; p + 3 <= stop; ) {
    const nameType = buf[p]!;
    const length = u16(buf, p + 1);
    if (p + 3 + length > stop) return false;
    if (nameType === 0 && hello.serverName === '') hello.serverName = latin1(buf, p + 3, p + 3 + Math.min(length, MAX_SERVER_NAME_CHARS));
    p += 3 + length;
  }
  return true;
}

/** RFC 7301 3.1: a list of length-prefixed protocol names. */
function readAlpn(buf: Uint8Array, from: number, to: number, into: string[]): boolean {
  if (from + 2 > to) return false;
  const stop = from + 2 + u16(buf, from);
  if (stop > to) return false;
  let chars = 0;
  for (let p = from + 2; p < stop; ) {
    const length = buf[p]!;
    if (p + 1 + length > stop) return false;
    if (chars + length <= MAX_ALPN_CHARS) into.push(latin1(buf, p + 1, p + 1 + length));
    chars += length + 1;
    p += 1 + length;
  }
  return true;
}


/** JA3's input string: version,ciphers,extensions,groups,point formats; GREASE left out. */
export function ja3String(hello: ClientHello): string {
  const list = (values: number[]) => values.filter((v) => !isGrease(v)).join('-');
  return `${hello.version},${list(hello.cipherSuites)},${list(hello.extensions)},${list(hello.supportedGroups)},${hello.pointFormats.join('-')}`;
}

/** JA3: the MD5 of ja3String, 32 lowercase hex digits. */
export function ja3(hello: ClientHello): string {
  return createHash('md5').update(ja3String(hello)).digest('hex');
}

const JA4_VERSIONS: Record<number, string> = {
  0x0304: '13',
  0x0303: '12',
  0x0302: '11',
  0x0301: '10',
  0x0300: 's3',
  0x0002: 's2',
  0xfeff: 'd1',
  0xfefd: 'd2',
  0xfefc: 'd3',
};

/**
 * JA4 (FoxIO's technical_details/JA4.md): transport, version, SNI or not,
 * cipher and extension counts (GREASE left out of both), ALPN's first and
 * last character, then truncated SHA-256s of the sorted ciphers and of the
 * sorted extensions (without SNI and ALPN) with the signature algorithms.
 */
export function ja4(hello: ClientHello, transport: 'tcp' | 'quic'): string {
  const ciphers = hello.cipherSuites.filter((v) => !isGrease(v));
  const extensions = hello.extensions.filter((v) => !isGrease(v));
  const versions = hello.supportedVersions.filter((v) => !isGrease(v));
  const version = versions.length > 0 ? Math.max(...versions) : hello.version;
  const a =
    (transport === 'quic' ? 'q' : 't') +
    (JA4_VERSIONS[version] ?? '00') +
    (hello.hasServerName ? 'd' : 'i') +
    twoDigits(ciphers.length) +
    twoDigits(extensions.length) +
    ja4Alpn(hello.alpn[0]);
  const hex4 = (v: number) => v.toString(16).padStart(4, '0');
  const b = ciphers.length === 0 ? '000000000000' : sha256_12([...ciphers].sort((x, y) => x - y).map(hex4).join(','));
  const hashed = extensions.filter((v) => v !== TlsExtension.SERVER_NAME && v !== TlsExtension.ALPN).sort((x, y) => x - y);
  let c = '000000000000';
  if (hashed.length > 0) {
    const signatures = hello.signatureAlgorithms.filter((v) => !isGrease(v));
    const input = hashed.map(hex4).join(',') + (signatures.length > 0 ? '_' + signatures.map(hex4).join(',') : '');
    c = sha256_12(input);
  }
  return `${a}_${b}_${c}`;
}

function twoDigits(n: number): string {
  return String(Math.min(n, 99)).padStart(2, '0');
}

/** JA4's ALPN part: first and last character when both are ASCII alphanumerics, else the first and last hex digit of the value's bytes; "00" without one. */
function ja4Alpn(first: string | undefined): string {
  if (first === undefined || first === '') return '00';
  const alnum = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  const head = first.charCodeAt(0);
  const tail = first.charCodeAt(first.length - 1);
  if (alnum(head) && alnum(tail)) return first[0]! + first[first.length - 1]!;
  return head.toString(16).padStart(2, '0')[0]! + tail.toString(16).padStart(2, '0')[1]!;
}

function sha256_12(input: string): string {
  return createHash('sha256').update(input).digest('hex').slice(0, 12);
}
