// IPFIX over TLS (RFC 7011 §10.4.3): the TCP transport with a TLS connector.
// Certificate files are read once, when the exporter is made, so a missing or
// malformed file fails at start-up; a collector whose certificate we refuse
// (or that refuses ours) is an error counted and retried with backoff, with a
// message that says which side refused and why.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { type ErrorCode, PodflowError } from '../common/errors.ts';
import type { TlsFiles } from './target.ts';
import { connectError, type Connector } from './transport-tcp.ts';

export interface TlsCredentials {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Reads and checks the PEM files of a tls:// URL (export or listen side). */
export function readTlsFiles(files: TlsFiles, code: ErrorCode & `${string}_TLS_FILES`): TlsCredentials {
  const read = (name: 'ca' | 'cert' | 'key') => {
    const path = files[name];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new PodflowError(code, `${name}=${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  const credentials = { ca: read('ca'), cert: read('cert'), key: read('key') };
  try {
    // Parses the PEM and checks that key and certificate belong together.
    tls.createSecureContext(credentials);
  } catch (err) {
    throw new PodflowError(code, `${Object.entries(files).filter(([k]) => k !== 'servername').map(([k, v]) => `${k}=${v}`).join(' ')}: ${(err as Error).message}`, { cause: err });
  }
  return credentials;
}

/**
 * Why a handshake failed, in words an operator can act on. OpenSSL's verify
 * codes (as Node reports them) for our refusal, TLS alerts for the collector's.
 */
function reason(code: string | undefined, servername: string): string {
  switch (code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'the collector\'s certificate is not signed by a trusted CA (check ca=)';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'the collector\'s certificate is outside its validity period';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the collector's certificate does not name '${servername}' (check servername=)`;
    default:
      if (code?.startsWith('ERR_SSL_') && /ALERT_(CERTIFICATE|BAD_CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE)/.test(code)) {
        return 'the collector refused our client certificate (check cert= and key=)';
      }
      return 'handshake failed';
  }
}

export function tlsConnector(host: string, port: number, servername: string | undefined, credentials: TlsCredentials): Connector {
  const where = `tls://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const name = servername ?? host;
  return () => {
    let tcpUp = false;
    const socket = tls.connect({
      host,
      port,
      // SNI carries DNS names only (RFC 6066 §3); the certificate is checked against `name` either way.
      servername: isIP(name) ? undefined : name,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
      ...credentials,
    });
    socket.once('connect', () => (tcpUp = true));
    return {
      socket,
      readyEvent: 'secureConnect',
      describe: (err, phase) => {
        const code = (err as NodeJS.ErrnoException).code;
        // A refused client certificate arrives as an alert after our side finished the handshake (TLS 1.3).
        const tlsFailure = (tcpUp && phase === 'connecting') || code?.startsWith('ERR_SSL_') === true;
        if (!tlsFailure) return connectError(where, err, phase);
        return new PodflowError('PODFLOW_ERR_EXPORT_TLS', `${where}: ${reason(code, name)}: ${code ? `${code}: ` : ''}${err.message}`, { cause: err });
      },
    };
  };
}
