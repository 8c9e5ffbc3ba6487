// IPFIX over UDP (RFC 7011 §10.3). UDP keeps no state at the collector, so
// templates are resent periodically: by time and by message count, whichever
// comes first, and messages are kept below the path MTU (no IP fragmentation,
// whose loss of one fragment loses the whole message).
import dgram from 'node:dgram';
import { PodflowError } from '../common/errors.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from './types.ts';
import { type ExportTransport, TransportCounters, type TransportOptions, type TransportStats } from './transport.ts';

/**
 * RFC 7011 §8.4 asks for a configurable template refresh on UDP; RFC 6728
 * (the IPFIX configuration model) gives templateRefreshTimeout a default of
 * 600 s, and collectors keep templates 3× that (1800 s). A message count bound
 * as well limits how much a collector that started late (or lost the template
 * datagram) cannot read at a high export rate.
 */
export const DEFAULT_TEMPLATE_REFRESH_MS = 600_000;
export const DEFAULT_TEMPLATE_REFRESH_MESSAGES = 4096;
/** 1500-byte Ethernet MTU minus the IPv6 (40) and UDP (8) headers; also fits IPv4. */
export const DEFAULT_UDP_MAX_MESSAGE_BYTES = 1452;

/** The part of a dgram socket the transport uses; tests pass a fake. */
export interface UdpSocket {
  connect(port: number, address: string, callback: () => void): void;
  send(message: Uint8Array, callback: (err: Error | null) => void): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  close(): void;
}

export interface UdpTransportOptions extends TransportOptions {
  host: string;
  port: number;
  /** Default DEFAULT_TEMPLATE_REFRESH_MS. */
  templateRefreshMs?: number;
  /** Default DEFAULT_TEMPLATE_REFRESH_MESSAGES: data messages between template sends. */
  templateRefreshMessages?: number;
  /** Default DEFAULT_UDP_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** Default: a dgram socket of the host's family ('udp6' for an IPv6 literal). */
  createSocket?: (type: 'udp4' | 'udp6') => UdpSocket;
}

export class UdpTransport implements ExportTransport {
  readonly target: string;
  readonly #counters: TransportCounters;
  readonly #o: UdpTransportOptions & Required<Pick<UdpTransportOptions, 'templateRefreshMs' | 'templateRefreshMessages'>>;
  readonly #encoder: IpfixEncoder;
  readonly #socket: UdpSocket;
  /** Messages made before the socket's connect() completed (a DNS lookup at most). */
  #pending: Uint8Array[] | undefined = [];
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #lastTemplatesMs = -Infinity;
  #messagesSinceTemplates = 0;
  #closed = false;

  constructor(target: string, options: UdpTransportOptions) {
    this.target = target;
    this.#o = {
      templateRefreshMs: DEFAULT_TEMPLATE_REFRESH_MS,
      templateRefreshMessages: DEFAULT_TEMPLATE_REFRESH_MESSAGES,
      ...options,
    };
    for (const name of ['templateRefreshMs', 'templateRefreshMessages'] as const) {
      if (!(this.#o[name] > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `${name} must be positive, got ${this.#o[name]}`);
    }
    this.#counters = new TransportCounters(target, options);
    this.#encoder = options.newEncoder(options.maxMessageBytes ?? DEFAULT_UDP_MAX_MESSAGE_BYTES);
    const type = options.host.includes(':') ? 'udp6' : 'udp4';
    this.#socket = (options.createSocket ?? ((t) => dgram.createSocket(t)))(type);
    // An ICMP port unreachable from an earlier datagram surfaces here or in a send callback.
    this.#socket.on('error', (err) => this.#sendFailed(err));
    // A connected socket reports ECONNREFUSED (nothing listens) instead of losing datagrams silently.
    this.#socket.connect(options.port, options.host, () => {
      const pending = this.#pending;
      this.#pending = undefined;
      for (const message of pending ?? []) this.#send(message);
      if (this.#inFlight === 0) this.#drained?.();
    });
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#closed) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    if (records.length === 0) return;
    const now = this.#o.clock.now();
    if (now - this.#lastTemplatesMs >= this.#o.templateRefreshMs || this.#messagesSinceTemplates >= this.#o.templateRefreshMessages) {
      for (const message of this.#counters.opening(this.#encoder)) this.#send(message);
      this.#lastTemplatesMs = now;
      this.#messagesSinceTemplates = 0;
    }
    const messages = this.#encoder.encode(records as ExportRecord[]);
    this.#counters.records += records.length;
    this.#messagesSinceTemplates += messages.length;
    for (const message of messages) this.#send(message);
  }

  stats(): TransportStats {
    return this.#counters.snapshot(!this.#closed, 0);
  }

  /** Waits (at most `timeoutMs`) for the datagrams handed to the kernel, then closes the socket. */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inFlight > 0 || this.#pending !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = this.#o.clock.setTimeout(resolve, timeoutMs);
        this.#drained = () => {
          this.#o.clock.clearTimeout(timer);
          resolve();
        };
      });
    }
    this.destroy();
  }

  destroy(): void {
    this.#closed = true;
    this.#pending = undefined;
    try {
      this.#socket.close();
    } catch {
      // Already closed: destroy is idempotent.
    }
  }

  #send(message: Uint8Array): void {
    if (this.#pending !== undefined) {
      this.#pending.push(message);
      return;
    }
    this.#inFlight++;
    this.#socket.send(message, (err) => {
      if (err) this.#sendFailed(err);
      else this.#counters.sent(message);
      if (--this.#inFlight === 0 && this.#pending === undefined) this.#drained?.();
    });
  }

  #sendFailed(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    this.#counters.error(new PodflowError('PODFLOW_ERR_EXPORT_SEND', `${this.target}: ${code}: ${err.message}`, { cause: err }));
  }
}
