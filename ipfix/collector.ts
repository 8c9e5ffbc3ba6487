// An IPFIX collecting process for `podflow collect` and the interop tests:
// listens on UDP, TCP or TLS, keeps one decoder session per transport session
// (a UDP source address and port, or a connection), and hands every decoded
// data record on. Bad input of any kind is counted and skipped: a malformed
// message never ends a session, and a broken connection never ends the
// collector.
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { PodflowError } from '../common/errors.ts';
import { type DecodedRecord, type DecodeProblem, IpfixSession, type IpfixSessionOptions, IpfixStreamSplitter } from './decoder.ts';
import { type NetworkTarget, parseListenAddress } from './target.ts';
import { readTlsFiles } from './transport-tls.ts';

/** UDP sessions kept at most; the least recently heard is forgotten beyond it (a flood of spoofed sources must not grow memory). */
export const MAX_UDP_SESSIONS = 1024;

export interface CollectedRecord extends DecodedRecord {
  /** The transport session, e.g. "udp 127.0.0.1:40000" or "tcp [::1]:40000". */
  session: string;
  observationDomainId: number;
}

export interface CollectorOptions {
  listen: string | NetworkTarget;
  /** PEN whose elements the collector names; default 32473. */
  enterpriseNumber?: number;
  /** Every data record, flow and options alike (`record.options` tells them apart). */
  onRecord: (record: CollectedRecord) => void;
  /** Told of transport trouble that was counted (a refused TLS client, a reset connection). */
  onWarning?: (message: string) => void;
  /** Bounds of each transport session's template state (IpfixSessionOptions). */
  maxDomains?: number;
  maxTemplateFields?: number;
}

export interface CollectorStats {
  /** Transport sessions seen: UDP sources and connections. */
  sessions: number;
  openConnections: number;
  messages: number;
  flowRecords: number;
  optionsRecords: number;
  /** Messages with any problem (counted once each; their intact sets were still read). */
  badMessages: number;
  problems: Record<DecodeProblem, number>;
  /** Stream bytes skipped looking for a message header (TCP/TLS). */
  garbageBytes: number;
  sequenceMismatches: number;
  tlsHandshakeFailures: number;
  connectionErrors: number;
  /** UDP datagrams dropped unread while the collector was paused (its output full). */
  pausedDatagramsDropped: number;
}

export class Collector {
  readonly listen: NetworkTarget;
  readonly #options: CollectorOptions;
  readonly #stats: CollectorStats;
  readonly #udpSessions = new Map<string, IpfixSession>();
  readonly #connections = new Set<net.Socket>();
  #udp: dgram.Socket | undefined;
  #server: net.Server | undefined;
  #closed: Promise<void> | undefined;
  #paused = false;

  constructor(options: CollectorOptions) {
    this.listen = typeof options.listen === 'string' ? parseListenAddress(options.listen) : options.listen;
    this.#options = options;
    const problems = {} as Record<DecodeProblem, number>;
    for (const p of Object.keys(new IpfixSession().stats.problems) as DecodeProblem[]) problems[p] = 0;
    this.#stats = {
      sessions: 0,
      openConnections: 0,
      messages: 0,
      flowRecords: 0,
      optionsRecords: 0,
      badMessages: 0,
      problems,
      garbageBytes: 0,
      sequenceMismatches: 0,
      tlsHandshakeFailures: 0,
      connectionErrors: 0,
      pausedDatagramsDropped: 0,
    };
  }

  /** Binds the address; resolves with the bound port (useful with port 0). */
  async start(): Promise<{ host: string; port: number }> {
    const { protocol, host, port } = this.listen;
    const bound = (address: net.AddressInfo | string | null) => ({ host, port: (address as net.AddressInfo).port });
    if (protocol === 'udp') {
      const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
      this.#udp = socket;
      socket.on('message', (message, from) => this.#datagram(message, from));
      await listening(socket, () => socket.bind(port, host), this.listen.url);
      // A datagram socket has no per-peer errors worth ending for; ICMP noise is ignored.
      socket.on('error', () => this.#stats.connectionErrors++);
      return bound(socket.address());
    }
    const server =
      protocol === 'tls'
        ? tls.createServer({ ...readTlsFiles(this.listen.tls, 'PODFLOW_ERR_COLLECT_TLS_FILES'), requestCert: this.listen.tls.ca !== undefined }, (s) =>
            this.#connection(s, 'tls'),
          )
        : net.createServer((s) => this.#connection(s, 'tcp'));
    this.#server = server;
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      this.#stats.tlsHandshakeFailures++;
      this.#options.onWarning?.(`TLS handshake with ${peer(socket.remoteAddress, socket.remotePort)} failed: ${err.code ? `${err.code}: ` : ''}${err.message}`);
    });
    await listening(server, () => server.listen(port, host), this.listen.url);
    server.on('error', () => this.#stats.connectionErrors++);
    return bound(server.address());
  }

  stats(): CollectorStats {
    return { ...this.#stats, problems: { ...this.#stats.problems } };
  }

  /**
   * Stops taking input while whoever consumes the records cannot keep up:
   * TCP/TLS connections stop reading (the exporters' queues take the wait),
   * UDP datagrams are counted and dropped (UDP cannot be slowed down).
   */
  pause(): void {
    this.#paused = true;
    for (const socket of this.#connections) socket.pause();
  }

  resume(): void {
    this.#paused = false;
    for (const socket of this.#connections) socket.resume();
  }

  /** Stops listening and ends every connection. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      for (const socket of this.#connections) socket.destroy();
      if (this.#udp) this.#udp.close(() => resolve());
      else if (this.#server) this.#server.close(() => resolve());
      else resolve();
    });
    return this.#closed;
  }

  #datagram(message: Buffer, from: dgram.RemoteInfo): void {
    if (this.#paused) {
      this.#stats.pausedDatagramsDropped++;
      return;
    }
    const name = `udp ${peer(from.address, from.port)}`;
    let session = this.#udpSessions.get(name);
    if (session) {
      // Map order is insertion order: re-inserting keeps the most recently heard last.
      this.#udpSessions.delete(name);
    } else {
      session = new IpfixSession(this.#sessionOptions());
      this.#stats.sessions++;
      if (this.#udpSessions.size >= MAX_UDP_SESSIONS) this.#udpSessions.delete(this.#udpSessions.keys().next().value!);
    }
    this.#udpSessions.set(name, session);
    this.#decode(session, name, message);
  }

  #connection(socket: net.Socket, kind: 'tcp' | 'tls'): void {
    const name = `${kind} ${peer(socket.remoteAddress, socket.remotePort)}`;
    const session = new IpfixSession(this.#sessionOptions());
    const splitter = new IpfixStreamSplitter();
    if (this.#paused) socket.pause();
    this.#stats.sessions++;
    this.#stats.openConnections++;
    this.#connections.add(socket);
    socket.on('data', (chunk: Buffer) => {
      const garbage = splitter.garbageBytes;
      for (const message of splitter.push(chunk)) this.#decode(session, name, message);
      this.#stats.garbageBytes += splitter.garbageBytes - garbage;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.#stats.connectionErrors++;
      this.#options.onWarning?.(`${name}: ${err.code ? `${err.code}: ` : ''}${err.message}`);
    });
    socket.on('close', () => {
      this.#stats.openConnections--;
      this.#connections.delete(socket);
    });
  }

  #sessionOptions(): IpfixSessionOptions {
    return { enterpriseNumber: this.#options.enterpriseNumber, maxDomains: this.#options.maxDomains, maxTemplateFields: this.#options.maxTemplateFields };
  }

  #decode(session: IpfixSession, name: string, message: Uint8Array): void {
    const mismatches = session.stats.sequenceMismatches;
    const decoded = session.decodeMessage(message);
    const s = this.#stats;
    s.messages++;
    s.sequenceMismatches += session.stats.sequenceMismatches - mismatches;
    if (decoded.status !== 'ok') s.badMessages++;
    for (const p of decoded.problems) s.problems[p]++;
    for (const r of decoded.records) {
      if (r.options) s.optionsRecords++;
      else s.flowRecords++;
      this.#options.onRecord({ ...r, session: name, observationDomainId: decoded.observationDomainId });
    }
  }
}

function peer(address: string | undefined, port: number | undefined): string {
  return address?.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Runs `bind` and resolves once listening, or throws PODFLOW_ERR_COLLECT_LISTEN naming the cause. */
function listening(emitter: dgram.Socket | net.Server, bind: () => void, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(new PodflowError('PODFLOW_ERR_COLLECT_LISTEN', `${url}: ${err.code ? `${err.code}: ` : ''}${err.message}`, { cause: err }));
    emitter.once('error', onError);
    emitter.once('listening', () => {
      emitter.off('error', onError);
      resolve();
    });
    bind();
  });
}
