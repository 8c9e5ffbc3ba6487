// Export targets and collector listen addresses as URLs: one parser for both,
// since `podflow replay --output` and `podflow collect --listen` take the same
// forms and must agree on them. Only syntax is checked here; files named in a
// tls:// URL are read by the transport that uses them.
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type ErrorCode, PodflowError } from '../common/errors.ts';

/** IANA ports (RFC 7011 §10.3.3 and §10.4.3): 4739 for IPFIX, 4740 for IPFIX over TLS. */
export const IPFIX_PORT = 4739;
export const IPFIX_TLS_PORT = 4740;

export interface TlsFiles {
  /** PEM file of the CA that signs the other end's certificate; default: Node's root store. */
  ca?: string;
  cert?: string;
  key?: string;
  /** Name the collector's certificate must carry (SNI and verification); default: the host. */
  servername?: string;
}

export type NetworkTarget =
  | { protocol: 'udp' | 'tcp'; host: string; port: number; url: string }
  | { protocol: 'tls'; host: string; port: number; url: string; tls: TlsFiles };

export type ExportTarget = NetworkTarget | { protocol: 'file'; path: string; url: string };

/** Parses `udp://host:port`, `tcp://host:port`, `tls://host:port?ca=&cert=&key=&servername=` or `file:PATH`. */
export function parseExportTarget(text: string): ExportTarget {
  if (text.startsWith('file:')) {
    const rest = text.slice('file:'.length);
    // file:///abs/path is a proper file URL; file:relative or file:/abs is the short form.
    const path = rest.startsWith('//') ? fileURLFrom(text, 'PODFLOW_ERR_EXPORT_TARGET') : rest;
    if (path === '') throw new PodflowError('PODFLOW_ERR_EXPORT_TARGET', `'${text}' names no file`);
    return { protocol: 'file', path, url: text };
  }
  const target = parseNetwork(text, 'PODFLOW_ERR_EXPORT_TARGET', ['ca', 'cert', 'key', 'servername']);
  if (target.protocol === 'tls' && (target.tls.cert === undefined) !== (target.tls.key === undefined)) {
    throw new PodflowError('PODFLOW_ERR_EXPORT_TARGET', `'${text}': a client certificate needs both cert= and key=`);
  }
  return target;
}

/** Parses `udp://host:port`, `tcp://host:port` or `tls://host:port?cert=&key=[&ca=]` for the collector. */
export function parseListenAddress(text: string): NetworkTarget {
  const target = parseNetwork(text, 'PODFLOW_ERR_COLLECT_LISTEN_ADDRESS', ['ca', 'cert', 'key']);
  if (target.protocol === 'tls' && (target.tls.cert === undefined || target.tls.key === undefined)) {
    throw new PodflowError('PODFLOW_ERR_COLLECT_LISTEN_ADDRESS', `'${text}': a TLS listener needs cert= and key=`);
  }
  return target;
}

function parseNetwork(text: string, code: ErrorCode, tlsParameters: readonly string[]): NetworkTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new PodflowError(code, `'${text}' is not a URL (expected e.g. udp://127.0.0.1:4739)`, { cause: err });
  }
  const protocol = url.protocol.slice(0, -1);
  if (protocol !== 'udp' && protocol !== 'tcp' && protocol !== 'tls') {
    throw new PodflowError(code, `'${text}': unknown scheme '${protocol}:' (udp, tcp, tls${code === 'PODFLOW_ERR_EXPORT_TARGET' ? ' or file' : ''})`);
  }
  // WHATWG URL keeps the brackets of an IPv6 literal in hostname.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') throw new PodflowError(code, `'${text}' names no host`);
  if (url.hostname.startsWith('[') && isIP(host) !== 6) throw new PodflowError(code, `'${text}': '${host}' is not an IPv6 address`);
  if (url.username !== '' || url.password !== '' || (url.pathname !== '' && url.pathname !== '/') || url.hash !== '') {
    throw new PodflowError(code, `'${text}': only a host, a port${protocol === 'tls' ? ' and TLS parameters' : ''} are allowed`);
  }
  const port = url.port === '' ? (protocol === 'tls' ? IPFIX_TLS_PORT : IPFIX_PORT) : Number(url.port);
  // Port 0 lets a listener take any free port (tests do); a collector is never there.
  if (port === 0 && code === 'PODFLOW_ERR_EXPORT_TARGET') throw new PodflowError(code, `'${text}': port 0`);
  const allowed = protocol === 'tls' ? tlsParameters : [];
  const tls: Record<string, string> = {};
  for (const [name, value] of url.searchParams) {
    if (!allowed.includes(name)) {
      throw new PodflowError(code, `'${text}': unknown parameter '${name}'${allowed.length > 0 ? ` (known: ${allowed.join(', ')})` : ''}`);
    }
    if (value === '') throw new PodflowError(code, `'${text}': parameter '${name}' is empty`);
    tls[name] = value;
  }
  return protocol === 'tls' ? { protocol, host, port, url: text, tls } : { protocol, host, port, url: text };
}

function fileURLFrom(text: string, code: ErrorCode): string {
  try {
    return fileURLToPath(text);
  } catch (err) {
    throw new PodflowError(code, `'${text}': ${(err as Error).message}`, { cause: err });
  }
}
