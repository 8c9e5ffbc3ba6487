// IPFIX over UDP (RFC 7011 §10.3). UDP keeps no state at the collector, so
// templates are resent periodically: by time and by message count, whichever
// comes first, and messages are kept below the path MTU (no IP fragmentation,
// whose loss of one fragment loses the whole message).
//
// The collector's name is resolved by the transport, not by the socket: at
// node boot with hostNetwork, before cluster DNS answers, a name that does
// not resolve is the normal case, so resolution is retried with backoff
// (counted, never thrown) while records wait in a bounded queue, and the
// socket's family follows the address found (an AAAA-only name gets udp6).
import dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { PodflowError } from '../common/errors.ts';
import type { ClockTimer } from '../common/clock.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import {
  Backoff,
  DEFAULT_BACKOFF_INITIAL_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_MAX_QUEUED_RECORDS,
  type EncodedMessage,
  type ExportTransport,
  RecordQueue,
  TransportCounters,
  type TransportOptions,
  type TransportStats,
} from './transport.ts';

/**
 * RFC 7011 §8.4 asks for a configurable template refresh on UDP; RFC 6728
 * (the IPFIX configuration model) gives templateRefreshTimeout a default of
 * 600 s, and collectors keep templates 3× that (1800 s). A message count bound
 * as well limits how much a collector that started late (or lost the template
 * datagram) cannot read at a high export rate.
 */
export const DEFAULT_TEMPLATE_REFRESH_MS = 600_000;
export const DEFAULT_TEMPLATE_REFRESH_MESSAGES = 4096;
/**
 * 1500-byte Ethernet MTU minus the IPv6 (40) and UDP (8) headers. IPv6's
 * header, not IPv4's (20): the socket's family follows the collector's
 * address, known only once its name resolves, and one size fits both.
 */
export const DEFAULT_UDP_MAX_MESSAGE_BYTES = 1452;

/** The part of a dgram socket the transport uses; tests pass a fake. */
export interface UdpSocket {
  connect(port: number, address: string, callback: (err?: Error) => void): void;
  send(message: Uint8Array, callback: (err: Error | null) => void): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  close(): void;
}

/** Resolves a host name to one address; dns.lookup by default (the resolver the system is configured with). */
export type Lookup = (host: string) => Promise<{ address: string; family: number }>;

export interface UdpTransportOptions extends TransportOptions {
  host: string;
  port: number;
  /** Default DEFAULT_TEMPLATE_REFRESH_MS. */
  templateRefreshMs?: number;
  /** Default DEFAULT_TEMPLATE_REFRESH_MESSAGES: data messages between template sends. */
  templateRefreshMessages?: number;
  /** Default DEFAULT_UDP_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** Records kept while the name does not resolve; default DEFAULT_MAX_QUEUED_RECORDS. */
  maxQueuedRecords?: number;
  /** First retry delay after a failed resolution; doubles per failure up to backoffMaxMs. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Default: dns.lookup. */
  lookup?: Lookup;
  /** Default: a dgram socket of the address's family. */
  createSocket?: (type: 'udp4' | 'udp6') => UdpSocket;
}

type State = 'resolving' | 'backoff' | 'ready' | 'closed';

export class UdpTransport implements ExportTransport {
  readonly target: string;
  readonly #counters: TransportCounters;
  readonly #options: UdpTransportOptions & Required<Pick<UdpTransportOptions, 'templateRefreshMs' | 'templateRefreshMessages'>>;
  readonly #encoder: IpfixEncoder;
  readonly #queue: RecordQueue;
  readonly #backoff: Backoff;
  #state: State = 'resolving';
  #socket: UdpSocket | undefined;
  #timer: ClockTimer | undefined;
  #inFlight = 0;
  /** Set while close() waits: ends the wait once everything is sent (#endCloseWaitIfAllSent) or the transport is destroyed. */
  #endCloseWait: (() => void) | undefined;
  #lastTemplatesMs = -Infinity;
  #messagesSinceTemplates = 0;
  #closing = false;

  constructor(target: string, options: UdpTransportOptions) {
    this.target = target;
    this.#options = {
      templateRefreshMs: DEFAULT_TEMPLATE_REFRESH_MS,
      templateRefreshMessages: DEFAULT_TEMPLATE_REFRESH_MESSAGES,
      ...options,
    };
    const maxQueued = options.maxQueuedRecords ?? DEFAULT_MAX_QUEUED_RECORDS;
    const backoffInitialMs = options.backoffInitialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    const backoffMaxMs = options.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    for (const [name, value] of Object.entries({ templateRefreshMs: this.#options.templateRefreshMs, templateRefreshMessages: this.#options.templateRefreshMessages, maxQueuedRecords: maxQueued, backoffInitialMs, backoffMaxMs })) {
      if (!(value > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `${name} must be positive, got ${value}`);
    }
    this.#counters = new TransportCounters(target, options);
    this.#queue = new RecordQueue(maxQueued, this.#counters);
    this.#backoff = new Backoff(backoffInitialMs, backoffMaxMs);
    this.#encoder = options.newEncoder(options.maxMessageBytes ?? DEFAULT_UDP_MAX_MESSAGE_BYTES);
    this.#resolve();
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#state === 'closed' || this.#closing) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    if (records.length === 0) return;
    if (this.#state === 'ready') this.#send(records);
    else this.#queue.push(records);
  }

  stats(): TransportStats {
    return this.#counters.snapshot(this.#state === 'ready', this.#queue.size);
  }

  /** Waits (at most `timeoutMs`) for queued records and the datagrams handed to the kernel, then closes the socket. */
  async close(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed' || this.#closing) return;
    this.#closing = true;
    if (this.#inFlight > 0 || this.#queue.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = this.#options.clock.setTimeout(resolve, timeoutMs);
        this.#endCloseWait = () => {
          this.#options.clock.clearTimeout(timer);
          resolve();
        };
        if (this.#state === 'backoff') {
          // Records wait for the name: one more lookup now, not at the end of the backoff (it gives up if it fails).
          this.#options.clock.clearTimeout(this.#timer!);
          this.#resolve();
        }
      });
    }
    this.destroy();
  }

  destroy(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#queue.discard('closed');
    try {
      this.#socket?.close();
    } catch {
      // Already closed: destroy is idempotent.
    }
    this.#endCloseWait?.();
  }

  /** Looks the host up (an address as given needs none), then opens a socket of its family. */
  #resolve(): void {
    this.#state = 'resolving';
    this.#timer = undefined;
    const { host } = this.#options;
    const family = isIP(host);
    const found = family !== 0 ? Promise.resolve({ address: host, family }) : (this.#options.lookup ?? dnsLookup)(host);
    found.then(
      ({ address, family }) => this.#open(address, family === 6 ? 'udp6' : 'udp4'),
      (err: NodeJS.ErrnoException) => this.#retry(new PodflowError('PODFLOW_ERR_EXPORT_RESOLVE', `${this.target}: cannot resolve '${host}': ${err.code ?? err.message}`, { cause: err })),
    );
  }

  #open(address: string, type: 'udp4' | 'udp6'): void {
    if (this.#state === 'closed') return;
    let socket: UdpSocket;
    try {
      socket = (this.#options.createSocket ?? ((t) => dgram.createSocket(t)))(type);
    } catch (err) {
      this.#retry(new PodflowError('PODFLOW_ERR_EXPORT_SEND', `${this.target}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    this.#socket = socket;
    // An ICMP port unreachable from an earlier datagram surfaces here or in a send callback.
    socket.on('error', (err) => this.#counters.error(sendError(this.target, err)));
    // A connected socket reports ECONNREFUSED (nothing listens) instead of losing datagrams silently.
    socket.connect(this.#options.port, address, (err) => {
      if (this.#state === 'closed') return;
      if (err) {
        this.#socket = undefined;
        socket.close();
        this.#retry(sendError(this.target, err));
        return;
      }
      this.#state = 'ready';
      this.#backoff.reset();
      for (let batch = this.#queue.shift(); batch; batch = this.#queue.shift()) this.#send(batch);
      this.#endCloseWaitIfAllSent();
    });
  }

  #retry(err: PodflowError): void {
    if (this.#state === 'closed') return;
    this.#counters.error(err);
    if (this.#closing) {
      this.destroy();
      return;
    }
    this.#state = 'backoff';
    this.#timer = this.#options.clock.setTimeout(() => this.#resolve(), this.#backoff.next());
  }

  #send(records: readonly ExportRecord[]): void {
    const now = this.#options.clock.now();
    if (now - this.#lastTemplatesMs >= this.#options.templateRefreshMs || this.#messagesSinceTemplates >= this.#options.templateRefreshMessages) {
      for (const message of this.#counters.opening(this.#encoder)) this.#datagram(message);
      this.#lastTemplatesMs = now;
      this.#messagesSinceTemplates = 0;
    }
    const messages = this.#counters.encode(this.#encoder, records);
    this.#messagesSinceTemplates += messages.length;
    for (const message of messages) this.#datagram(message);
  }

  #datagram(message: EncodedMessage): void {
    this.#inFlight++;
    this.#socket!.send(message.bytes, (err) => {
      if (err) {
        this.#counters.error(sendError(this.target, err));
        this.#counters.notSentRecords('sendFailed', message.records);
      } else this.#counters.sent(message.bytes, message.records.flows);
      this.#inFlight--;
      this.#endCloseWaitIfAllSent();
    });
  }

  #endCloseWaitIfAllSent(): void {
    if (this.#inFlight === 0 && this.#queue.size === 0) this.#endCloseWait?.();
  }
}

function sendError(target: string, err: Error): PodflowError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new PodflowError('PODFLOW_ERR_EXPORT_SEND', `${target}: ${code}: ${err.message}`, { cause: err });
}
