// IPFIX over TCP (RFC 7011 §10.4) and over TLS on TCP (§10.4.3, via the
// connector from transport-tls.ts). One connection is one transport session:
// each new connection gets a fresh encoder (sequence numbers restart) and opens
// with type information, templates and reliability statistics, so a collector
// that restarted can read what follows.
//
// Records wait in a bounded queue (RecordQueue) while there is no connection
// or the socket is backed up; the meter is never blocked: beyond the bound
// records are counted as not sent.
//
// WHAT A LOST CONNECTION TAKES. IPFIX over TCP has no acknowledgement: a
// record the kernel accepted may still sit in our send buffer or in the
// collector's receive buffer, unread, when the connection dies (a collector
// that hung, then was killed, took 658 records so, uncounted). No socket API
// of Node says how much the collector's process read, so the records of the
// last `inDoubtBytes` the kernel accepted, and all it has not accepted yet,
// are kept (as references) and counted as not sent (connectionLost) when a
// connection ends in any other way than our own close acknowledged by the
// collector's FIN. That bound is the most both kernels can hold (our
// tcp_wmem maximum plus the collector's tcp_rmem maximum, read from this
// host), so the count is conservative: after a collector that was reading
// dies, records it did read are counted too.
//
// A STALLED SESSION. A collector that stops reading (hung, SIGSTOP) leaves
// the connection up: its kernel still acknowledges until the buffers fill,
// and keepalive never fires while data is queued. When the kernel has taken
// nothing for stallTimeoutMs while data waits, the session is given up
// (PODFLOW_ERR_EXPORT_STALLED, counted as above) and a new one is tried with
// backoff. `connected` is false from then on, also while a new session is
// up but younger than stallTimeoutMs: the kernel of a hung collector still
// accepts connections.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { PodflowError } from '../common/errors.ts';
import type { ClockTimer } from '../common/clock.ts';
import type { IpfixEncoder } from './encoder.ts';
import { unacknowledgedBytes } from './tcp-queue.ts';
import { MAX_MESSAGE_BYTES } from './wire.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import {
  Backoff,
  DEFAULT_BACKOFF_INITIAL_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_MAX_QUEUED_RECORDS,
  type EncodedMessage,
  type ExportTransport,
  RecordQueue,
  type RecordSummary,
  TransportCounters,
  type TransportOptions,
  type TransportStats,
} from './transport.ts';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

/** A connection in progress: the socket, and the event after which it can carry IPFIX. */
export interface Connection {
  socket: Duplex;
  /** 'connect' for TCP, 'secureConnect' for TLS. */
  readyEvent: string;
  /** Turns a socket error into the error to count (e.g. naming a refused certificate). */
  describe(err: Error, phase: 'connecting' | 'connected'): PodflowError;
}

export type Connector = () => Connection;

export interface StreamTransportOptions extends TransportOptions {
  connect: Connector;
  /** Default DEFAULT_MAX_QUEUED_RECORDS. */
  maxQueuedRecords?: number;
  /** First retry delay after a failure or a lost connection; doubles per failure. Default 1 s. */
  backoffInitialMs?: number;
  /** Default 30 s. */
  backoffMaxMs?: number;
  /** Default 10 s: a collector that drops SYNs must not stall the export for the kernel's ~2 min. */
  connectTimeoutMs?: number;
  /** Default MAX_MESSAGE_BYTES (the length field's limit): on a stream the MTU does not matter. */
  maxMessageBytes?: number;
  /** Default DEFAULT_STALL_TIMEOUT_MS: how long the kernel may take nothing while data waits. */
  stallTimeoutMs?: number;
  /** Default: this host's tcp_wmem plus tcp_rmem maximum (inDoubtBytesOfHost()). */
  inDoubtBytes?: number;
}

/** Connects with plain TCP. */
export function tcpConnector(host: string, port: number): Connector {
  return () => ({
    socket: net.connect({ host, port }),
    readyEvent: 'connect',
    describe: (err, phase) => connectError(`tcp://${host}:${port}`, err, phase),
  });
}

/** PODFLOW_ERR_EXPORT_CONNECT naming the socket error, or the collector closing the connection. */
export function connectError(where: string, err: Error, phase: 'connecting' | 'connected'): PodflowError {
  const code = (err as NodeJS.ErrnoException).code;
  const what = phase === 'connecting' ? 'connecting' : 'connection lost';
  return new PodflowError('PODFLOW_ERR_EXPORT_CONNECT', `${where}: ${what}: ${code ? `${code}: ` : ''}${err.message}`, { cause: err });
}

/**
 * The most data two Linux TCP stacks can hold between our write and the
 * collector's read: the largest send buffer here plus the largest receive
 * buffer (the collector's host is assumed alike). Defaults 4 MiB + 6 MiB.
 */
export function inDoubtBytesOfHost(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number {
  const max = (name: string, fallback: number) => {
    try {
      const n = Number(read(`/proc/sys/net/ipv4/${name}`).trim().split(/\s+/)[2]);
      return n > 0 ? n : fallback;
    } catch {
      return fallback;
    }
  };
  return max('tcp_wmem', 4 << 20) + max('tcp_rmem', 6 << 20);
}

type State = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

/** A message written to the current connection: where it ends in the session's byte stream, and its records. */
interface Written {
  end: number;
  records: RecordSummary;
}

export class StreamTransport implements ExportTransport {
  readonly target: string;
  readonly #options: Required<StreamTransportOptions>;
  readonly #counters: TransportCounters;
  readonly #queue: RecordQueue;
  readonly #backoff: Backoff;
  #state: State = 'idle';
  #socket: Duplex | undefined;
  #encoder: IpfixEncoder | undefined;
  #connections = 0;
  #timer: ClockTimer | undefined;
  #closing: { resolve: () => void; deadline: ClockTimer } | undefined;
  /** Records of the session not known read by the collector, oldest first. */
  #written: Written[] = [];
  /** Bytes written to the session, and how many of them the kernel took. */
  #writtenBytes = 0;
  #acceptedBytes = 0;
  /** When the kernel last took data, and the timer that checks it keeps doing so. */
  #progressMs = 0;
  #stallTimer: ClockTimer | undefined;
  /** Set by a stall: a new session to the same collector counts as connected only once it has not stalled for stallTimeoutMs (its kernel accepts a hung collector's connection). */
  #suspect = false;
  #sessionStartMs = 0;

  constructor(target: string, options: StreamTransportOptions) {
    this.target = target;
    this.#options = {
      maxQueuedRecords: DEFAULT_MAX_QUEUED_RECORDS,
      backoffInitialMs: DEFAULT_BACKOFF_INITIAL_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      stallTimeoutMs: DEFAULT_STALL_TIMEOUT_MS,
      inDoubtBytes: options.inDoubtBytes ?? inDoubtBytesOfHost(),
      ...options,
    };
    for (const name of ['maxQueuedRecords', 'backoffInitialMs', 'backoffMaxMs', 'connectTimeoutMs', 'stallTimeoutMs', 'inDoubtBytes'] as const) {
      if (!(this.#options[name] > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `${name} must be positive, got ${this.#options[name]}`);
    }
    this.#counters = new TransportCounters(target, options);
    this.#queue = new RecordQueue(this.#options.maxQueuedRecords, this.#counters);
    this.#backoff = new Backoff(this.#options.backoffInitialMs, this.#options.backoffMaxMs);
    this.#connect();
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#state === 'closed' || this.#closing) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    this.#queue.push(records);
    this.#sendQueued();
  }

  stats(): TransportStats {
    const trusted = !this.#suspect || this.#options.clock.now() - this.#sessionStartMs >= this.#options.stallTimeoutMs;
    return this.#counters.snapshot(this.#state === 'ready' && trusted, this.#queue.size);
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#closing) return new Promise((resolve) => this.#whenClosed(resolve));
    await new Promise<void>((resolve) => {
      this.#closing = { resolve, deadline: this.#options.clock.setTimeout(() => this.destroy(), timeoutMs) };
      if (this.#state === 'ready') this.#sendQueued();
      else if (this.#queue.size === 0) this.destroy();
      else if (this.#state === 'backoff') {
        // Records are waiting: one more attempt now rather than at the end of the backoff.
        this.#options.clock.clearTimeout(this.#timer!);
        this.#connect();
      }
    });
  }

  destroy(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#endSession(true);
    this.#queue.discard('closed');
    if (this.#closing) {
      this.#options.clock.clearTimeout(this.#closing.deadline);
      this.#closing.resolve();
    }
  }

  #whenClosed(resolve: () => void): void {
    const previous = this.#closing!.resolve;
    this.#closing!.resolve = () => {
      previous();
      resolve();
    };
  }

  #connect(): void {
    this.#state = 'connecting';
    this.#timer = undefined;
    const connection = this.#options.connect();
    const socket = connection.socket;
    this.#socket = socket;
    let ready = false;
    const timeout = this.#options.clock.setTimeout(() => {
      const err = Object.assign(new Error(`no connection after ${this.#options.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' });
      this.#lost(socket, connection.describe(err, 'connecting'));
    }, this.#options.connectTimeoutMs);
    socket.once(connection.readyEvent, () => {
      ready = true;
      this.#options.clock.clearTimeout(timeout);
      this.#ready(socket);
    });
    socket.on('error', (err) => {
      this.#options.clock.clearTimeout(timeout);
      this.#lost(socket, connection.describe(err, ready ? 'connected' : 'connecting'));
    });
    // The collector ending its side ('end', its FIN) means it will read no more either.
    const closed = (fin: boolean) => {
      this.#options.clock.clearTimeout(timeout);
      if (socket !== this.#socket) return;
      if (this.#closing && socket.writableEnded && fin) {
        // Our close: the collector ended its side after ours, having read up to our FIN (what
        // the kernel held it did not acknowledge, if anything: all we wrote was in the kernel then).
        this.#keepUnread(socket, this.#writtenBytes);
        this.#lost(socket, undefined);
        return;
      }
      if (fin) this.#keepUnread(socket, this.#acceptedBytes);
      const err = Object.assign(new Error('closed by the collector'), { code: 'ECONNRESET' });
      this.#lost(socket, ready ? connection.describe(err, 'connected') : undefined);
    };
    socket.on('end', () => closed(true));
    socket.on('close', () => closed(false));
    socket.on('drain', () => this.#sendQueued());
    // Collectors send nothing on an IPFIX connection; reading keeps 'end'/'close' flowing.
    socket.resume();
  }

  #ready(socket: Duplex): void {
    if (socket !== this.#socket) return;
    if (this.#connections++ > 0) this.#counters.reconnects++;
    this.#backoff.reset();
    this.#encoder = this.#options.newEncoder(this.#options.maxMessageBytes);
    this.#writtenBytes = 0;
    this.#acceptedBytes = 0;
    this.#progressMs = this.#options.clock.now();
    this.#sessionStartMs = this.#progressMs;
    for (const message of this.#counters.opening(this.#encoder)) this.#write(socket, message);
    this.#state = 'ready';
    this.#watchStall(socket);
    this.#sendQueued();
  }

  /** Sends queued records while the socket takes them; resumes on 'drain'. */
  #sendQueued(): void {
    const socket = this.#socket;
    if (this.#state !== 'ready' || !socket) return;
    while (this.#queue.size > 0 && !socket.writableNeedDrain) {
      for (const message of this.#counters.encode(this.#encoder!, this.#queue.shift()!)) this.#write(socket, message);
    }
    if (this.#queue.size === 0 && this.#closing && !socket.writableEnded) {
      // Everything is handed to the socket: end our side, and wait for the
      // collector to end its own (it has then read everything) or the deadline.
      socket.end();
    }
  }

  #write(socket: Duplex, message: EncodedMessage): void {
    const length = message.bytes.length;
    this.#writtenBytes += length;
    this.#written.push({ end: this.#writtenBytes, records: message.records });
    this.#counters.sent(message.bytes, message.records.flows);
    socket.write(message.bytes, (err) => {
      if (err || socket !== this.#socket) return;
      this.#acceptedBytes += length;
      this.#progressMs = this.#options.clock.now();
      // What the kernel took this long ago has left both kernels' buffers: the collector read it.
      const read = this.#acceptedBytes - this.#options.inDoubtBytes;
      let i = 0;
      while (i < this.#written.length && this.#written[i]!.end <= read) i++;
      if (i > 0) this.#written.splice(0, i);
    });
  }

  /**
   * The collector sent its FIN: it closed with nothing unread (else it sends
   * RST), so it read every byte its kernel acknowledged. What ours still holds
   * unacknowledged (SIOCOUTQ, from /proc/net/tcp while the socket is in
   * CLOSE_WAIT) and what the kernel had not taken (beyond `inKernel`) are all
   * it did not read. Without that number (not a kernel socket, or not
   * listed) every message stays in doubt, except after our own close.
   */
  #keepUnread(socket: Duplex, inKernel: number): void {
    const s = socket as Partial<net.Socket>;
    const held = s.localAddress === undefined || s.remoteAddress === undefined
      ? undefined
      : unacknowledgedBytes({ address: s.localAddress, port: s.localPort! }, { address: s.remoteAddress, port: s.remotePort! });
    // Our close answered: without the number (not a kernel socket), the answer itself says all was read.
    if (held === undefined && inKernel !== this.#writtenBytes) return;
    // TLS: `held` counts record bytes, more than the plaintext they carry: conservative.
    const read = inKernel - (held ?? 0);
    this.#written = this.#written.filter((w) => w.end > read);
  }

  /** While the session is up: gives it up when the kernel has taken nothing for stallTimeoutMs with data waiting. */
  #watchStall(socket: Duplex): void {
    const check = () => {
      if (socket !== this.#socket || this.#state !== 'ready') return;
      const waiting = this.#acceptedBytes < this.#writtenBytes;
      const idleMs = this.#options.clock.now() - this.#progressMs;
      if (waiting && idleMs >= this.#options.stallTimeoutMs) {
        this.#suspect = true;
        const queued = this.#writtenBytes - this.#acceptedBytes;
        this.#lost(socket, new PodflowError('PODFLOW_ERR_EXPORT_STALLED', `${this.target}: the collector read nothing for ${Math.round(idleMs / 1000)} s with ${queued} bytes waiting; connecting again`));
        return;
      }
      if (this.#options.clock.now() - this.#sessionStartMs >= this.#options.stallTimeoutMs) this.#suspect = false;
      this.#stallTimer = this.#options.clock.setTimeout(check, waiting ? this.#options.stallTimeoutMs - idleMs : this.#options.stallTimeoutMs);
    };
    this.#stallTimer = this.#options.clock.setTimeout(check, this.#options.stallTimeoutMs);
  }

  /** Ends the current session: what it holds that the collector may not have read is counted as not sent. */
  #endSession(destroy: boolean): void {
    if (this.#stallTimer !== undefined) this.#options.clock.clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    for (const w of this.#written) this.#counters.notSentRecords('connectionLost', w.records);
    this.#written = [];
    if (destroy) this.#socket?.destroy();
    this.#socket = undefined;
    this.#encoder = undefined;
  }

  #lost(socket: Duplex, err: PodflowError | undefined): void {
    if (socket !== this.#socket) return;
    this.#endSession(false);
    socket.destroy();
    if (err) this.#counters.error(err);
    if (this.#closing || this.#state === 'closed') {
      this.destroy();
      return;
    }
    this.#state = 'backoff';
    this.#timer = this.#options.clock.setTimeout(() => this.#connect(), this.#backoff.next());
  }
}
