// IPFIX over TCP (RFC 7011 §10.4) and over TLS on TCP (§10.4.3, via the
// connector from transport-tls.ts). One connection is one transport session:
// each new connection gets a fresh encoder (sequence numbers restart) and opens
// with templates, type information and reliability statistics, so a collector
// that restarted can read what follows.
//
// Records wait in a bounded queue while there is no connection or the socket
// is backed up; the meter is never blocked: beyond the bound records are
// dropped and counted. Records are encoded when they leave the queue, not when
// they enter it, so the sequence numbers of a session have no gaps for records
// dropped before the connection existed.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { PodflowError } from '../common/errors.ts';
import type { ClockTimer } from './clock.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from './types.ts';
import { type ExportTransport, TransportCounters, type TransportOptions, type TransportStats } from './transport.ts';

export const DEFAULT_MAX_QUEUED_RECORDS = 65_536;
export const DEFAULT_BACKOFF_INITIAL_MS = 1_000;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The IPFIX length field's limit; on a stream the MTU does not matter. */
export const DEFAULT_STREAM_MAX_MESSAGE_BYTES = 65_535;

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
  /** Default DEFAULT_STREAM_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
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

type State = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

export class StreamTransport implements ExportTransport {
  readonly target: string;
  readonly #o: Required<StreamTransportOptions>;
  readonly #counters: TransportCounters;
  #state: State = 'idle';
  #socket: Duplex | undefined;
  #encoder: IpfixEncoder | undefined;
  #connections = 0;
  #backoffMs: number;
  #timer: ClockTimer | undefined;
  /** Batches of records in arrival order; encoded when they leave. */
  #queue: ExportRecord[][] = [];
  #queued = 0;
  #closing: { resolve: () => void; deadline: ClockTimer } | undefined;

  constructor(target: string, options: StreamTransportOptions) {
    this.target = target;
    this.#o = {
      maxQueuedRecords: DEFAULT_MAX_QUEUED_RECORDS,
      backoffInitialMs: DEFAULT_BACKOFF_INITIAL_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      maxMessageBytes: DEFAULT_STREAM_MAX_MESSAGE_BYTES,
      ...options,
    };
    for (const name of ['maxQueuedRecords', 'backoffInitialMs', 'backoffMaxMs', 'connectTimeoutMs'] as const) {
      if (!(this.#o[name] > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `${name} must be positive, got ${this.#o[name]}`);
    }
    this.#counters = new TransportCounters(target, options);
    this.#backoffMs = this.#o.backoffInitialMs;
    this.#connect();
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#state === 'closed' || this.#closing) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    const room = this.#o.maxQueuedRecords - this.#queued;
    const taken = Math.min(room, records.length);
    if (taken < records.length) this.#counters.dropped(records.slice(taken));
    if (taken === 0) return;
    // A copy: the caller may reuse its array once export() returns.
    this.#queue.push(records.slice(0, taken));
    this.#queued += taken;
    this.#drain();
  }

  stats(): TransportStats {
    return this.#counters.snapshot(this.#state === 'ready', this.#queued);
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#closing) return new Promise((resolve) => this.#whenClosed(resolve));
    await new Promise<void>((resolve) => {
      this.#closing = { resolve, deadline: this.#o.clock.setTimeout(() => this.destroy(), timeoutMs) };
      if (this.#state === 'ready') this.#drain();
      else if (this.#queued === 0) this.destroy();
      else if (this.#state === 'backoff') {
        // Records are waiting: one more attempt now rather than at the end of the backoff.
        this.#o.clock.clearTimeout(this.#timer!);
        this.#connect();
      }
    });
  }

  destroy(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#socket = undefined;
    for (const batch of this.#queue) this.#counters.dropped(batch);
    this.#queue = [];
    this.#queued = 0;
    if (this.#closing) {
      this.#o.clock.clearTimeout(this.#closing.deadline);
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
    const connection = this.#o.connect();
    const socket = connection.socket;
    this.#socket = socket;
    let ready = false;
    const timeout = this.#o.clock.setTimeout(() => {
      const err = Object.assign(new Error(`no connection after ${this.#o.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' });
      this.#lost(socket, connection.describe(err, 'connecting'));
    }, this.#o.connectTimeoutMs);
    socket.once(connection.readyEvent, () => {
      ready = true;
      this.#o.clock.clearTimeout(timeout);
      this.#ready(socket);
    });
    socket.on('error', (err) => {
      this.#o.clock.clearTimeout(timeout);
      this.#lost(socket, connection.describe(err, ready ? 'connected' : 'connecting'));
    });
    // The collector ending its side ('end') means it will read no more either.
    const closed = () => {
      this.#o.clock.clearTimeout(timeout);
      const err = Object.assign(new Error('closed by the collector'), { code: 'ECONNRESET' });
      this.#lost(socket, ready && !this.#closing ? connection.describe(err, 'connected') : undefined);
    };
    socket.on('end', closed);
    socket.on('close', closed);
    socket.on('drain', () => this.#drain());
    // Collectors send nothing on an IPFIX connection; reading keeps 'end'/'close' flowing.
    socket.resume();
  }

  #ready(socket: Duplex): void {
    if (socket !== this.#socket) return;
    if (this.#connections++ > 0) this.#counters.reconnects++;
    this.#backoffMs = this.#o.backoffInitialMs;
    this.#encoder = this.#o.newEncoder(this.#o.maxMessageBytes);
    for (const message of this.#counters.opening(this.#encoder)) this.#write(socket, message);
    this.#state = 'ready';
    this.#drain();
  }

  /** Sends queued records while the socket takes them; resumes on 'drain'. */
  #drain(): void {
    const socket = this.#socket;
    if (this.#state !== 'ready' || !socket) return;
    while (this.#queue.length > 0 && !socket.writableNeedDrain) {
      const batch = this.#queue.shift()!;
      this.#queued -= batch.length;
      this.#counters.records += batch.length;
      for (const message of this.#encoder!.encode(batch)) this.#write(socket, message);
    }
    if (this.#queue.length === 0 && this.#closing && !socket.writableEnded) {
      // Everything is handed to the socket: end our side; destroy() once it is flushed.
      socket.end(() => this.destroy());
    }
  }

  #write(socket: Duplex, message: Uint8Array): void {
    this.#counters.sent(message);
    socket.write(message);
  }

  #lost(socket: Duplex, err: PodflowError | undefined): void {
    if (socket !== this.#socket) return;
    this.#socket = undefined;
    this.#encoder = undefined;
    socket.destroy();
    if (err) this.#counters.error(err);
    if (this.#closing || this.#state === 'closed') {
      this.destroy();
      return;
    }
    this.#state = 'backoff';
    this.#timer = this.#o.clock.setTimeout(() => this.#connect(), this.#backoffMs);
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#o.backoffMaxMs);
  }
}
