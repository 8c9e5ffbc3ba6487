// HTTP/1.x message head reader (RFC 9112 3-5): a request's method, target,
// Host and User-Agent, or a response's status code, from the first bytes of
// a TCP payload.
//
// Hand-written: Node's own HTTP parser (llhttp) is not reachable for bytes
// that are not a socket of ours, and this runs on the first segments of every
// TCP flow, so it looks at a few bytes before deciding a payload is not HTTP.
// It never throws; every text is bounded.
import { latin1 } from './bytes.ts';

export const HttpStatus = {
  /** The head was read to its empty line. */
  OK: 0,
  /** A request or status line was read; the payload ends before the head does (a split head, a short capture): the fields read so far are set. */
  INCOMPLETE: 1,
  /** Not an HTTP/1.x request or response. */
  NOT_HTTP: 2,
} as const;
export type HttpStatus = (typeof HttpStatus)[keyof typeof HttpStatus];

/** The longest method kept: the longest registered one, BASELINE-CONTROL, has 16 characters. */
export const MAX_METHOD_CHARS = 16;
/** The longest request target kept; longer ones are cut. */
export const MAX_TARGET_CHARS = 255;
/** The longest Host and User-Agent values kept. */
export const MAX_HEADER_CHARS = 255;

export interface HttpRequest {
  method: string;
  target: string;
  /** "1.0", "1.1". */
  version: string;
  /** '' when the request has none (or the capture ends before it). */
  host: string;
  userAgent: string;
}

export interface HttpResponse {
  version: string;
  statusCode: number;
}

export type HttpHead = { kind: 'request'; request: HttpRequest } | { kind: 'response'; response: HttpResponse };

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Reads the message head at the start of buf[start, end). Returns the head
 * (with the fields found before the payload ended) and its status, or
 * NOT_HTTP.
 */
export function parseHttpHead(buf: Uint8Array, start: number, end: number): { head: HttpHead; status: HttpStatus } | typeof HttpStatus.NOT_HTTP {
  if (end - start < 5) return HttpStatus.NOT_HTTP;
  return startsWith(buf, start, end, 'HTTP/') ? readResponse(buf, start, end) : readRequest(buf, start, end);
}

function readRequest(buf: Uint8Array, start: number, end: number): { head: HttpHead; status: HttpStatus } | typeof HttpStatus.NOT_HTTP {
  // method SP request-target SP HTTP-version CRLF
  let p = start;
  while (p < end && p - start <= MAX_METHOD_CHARS && isTokenChar(buf[p]!)) p++;
  if (p === start || p >= end || buf[p] !== SP || p - start > MAX_METHOD_CHARS) return HttpStatus.NOT_HTTP;
  const method = latin1(buf, start, p);
  const targetStart = p + 1;
  const lineEnd = indexOf(buf, LF, targetStart, end);
  if (lineEnd < 0) {
    // The request line itself is cut: keep it only when the method is one people send.
    if (!KNOWN_METHODS.has(method)) return HttpStatus.NOT_HTTP;
    const request: HttpRequest = { method, target: latin1(buf, targetStart, Math.min(end, targetStart + MAX_TARGET_CHARS)), version: '', host: '', userAgent: '' };
    return { head: { kind: 'request', request }, status: HttpStatus.INCOMPLETE };
  }
  const lineStop = buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
  const versionAt = lastIndexOf(buf, SP, targetStart, lineStop);
  if (versionAt < 0 || !isHttpVersion(buf, versionAt + 1, lineStop)) return HttpStatus.NOT_HTTP;
  // Extra spaces around the target are read as one (RFC 9112 3: a recipient
  // may parse on whitespace-delimited word boundaries), as servers do.
  let from = targetStart;
  let to = versionAt;
  while (from < to && buf[from] === SP) from++;
  while (to > from && buf[to - 1] === SP) to--;
  const request: HttpRequest = {
    method,
    target: latin1(buf, from, Math.min(to, from + MAX_TARGET_CHARS)),
    version: latin1(buf, versionAt + 6, lineStop),
    host: '',
    userAgent: '',
  };
  const status = readHeaders(buf, lineEnd + 1, end, (name, nameEnd, from, to) => {
    if (request.host === '' && equalsIgnoreCase(buf, name, nameEnd, 'host')) request.host = latin1(buf, from, Math.min(to, from + MAX_HEADER_CHARS));
    else if (request.userAgent === '' && equalsIgnoreCase(buf, name, nameEnd, 'user-agent')) request.userAgent = latin1(buf, from, Math.min(to, from + MAX_HEADER_CHARS));
  });
  return { head: { kind: 'request', request }, status };
}

function readResponse(buf: Uint8Array, start: number, end: number): { head: HttpHead; status: HttpStatus } | typeof HttpStatus.NOT_HTTP {
  // HTTP-version SP 3DIGIT SP [reason-phrase] CRLF
  const versionEnd = start + 8;
  if (end < versionEnd + 4 || !isHttpVersion(buf, start, versionEnd) || buf[versionEnd] !== SP) return HttpStatus.NOT_HTTP;
  let code = 0;
  for (let i = 1; i <= 3; i++) {
    const d = buf[versionEnd + i]! - 0x30;
    if (d < 0 || d > 9) return HttpStatus.NOT_HTTP;
    code = code * 10 + d;
  }
  if (code < 100) return HttpStatus.NOT_HTTP;
  const response: HttpResponse = { version: latin1(buf, start + 5, versionEnd), statusCode: code };
  const lineEnd = indexOf(buf, LF, versionEnd + 4, end);
  const status = lineEnd < 0 ? HttpStatus.INCOMPLETE : readHeaders(buf, lineEnd + 1, end, () => {});
  return { head: { kind: 'response', response }, status };
}

/**
 * Calls `each(nameStart, nameEnd, valueFrom, valueTo)` for every header line from `at`
 * (the value without surrounding whitespace); OK at the empty line that ends
 * the head, INCOMPLETE when the payload ends first.
 */
function readHeaders(buf: Uint8Array, at: number, end: number, each: (nameStart: number, nameEnd: number, valueFrom: number, valueTo: number) => void): HttpStatus {
  let p = at;
  while (p < end) {
    const lineEnd = indexOf(buf, LF, p, end);
    if (lineEnd < 0) return HttpStatus.INCOMPLETE;
    const stop = buf[lineEnd - 1] === CR && lineEnd - 1 >= p ? lineEnd - 1 : lineEnd;
    if (stop === p) return HttpStatus.OK;
    const colon = indexOf(buf, 0x3a, p, stop);
    if (colon > p) {
      let from = colon + 1;
      let to = stop;
      while (from < to && isWhitespace(buf[from]!)) from++;
      while (to > from && isWhitespace(buf[to - 1]!)) to--;
      each(p, colon, from, to);
    }
    p = lineEnd + 1;
  }
  return HttpStatus.INCOMPLETE;
}

/** Whether buf[from, to) is `lower` in any case (header names are case-insensitive, RFC 9110 5.1). */
function equalsIgnoreCase(buf: Uint8Array, from: number, to: number, lower: string): boolean {
  if (to - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((buf[from + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE']);

/** "HTTP/d.d" at buf[from, to). */
function isHttpVersion(buf: Uint8Array, from: number, to: number): boolean {
  return to - from === 8 && startsWith(buf, from, to, 'HTTP/') && isDigit(buf[from + 5]!) && buf[from + 6] === 0x2e && isDigit(buf[from + 7]!);
}

/** RFC 9110 5.6.2 tchar. */
function isTokenChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(c));
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isWhitespace(c: number): boolean {
  return c === SP || c === 0x09;
}

function startsWith(buf: Uint8Array, at: number, end: number, prefix: string): boolean {
  if (end - at < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix.charCodeAt(i)) return false;
  return true;
}

function indexOf(buf: Uint8Array, byte: number, from: number, to: number): number {
  const i = buf.subarray(from, to).indexOf(byte);
  return i < 0 ? -1 : from + i;
}

function lastIndexOf(buf: Uint8Array, byte: number, from: number, to: number): number {
  const i = buf.subarray(from, to).lastIndexOf(byte);
  return i < 0 ? -1 : from + i;
}
