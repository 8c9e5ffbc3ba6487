// The exporter: one transport per collector target, each with its own encoder
// (sequence numbers and templates are per transport session), all fed the same
// records. export() never blocks and never throws for network trouble; the
// transports count what went wrong and `stats()` shows it per target.
import { PodflowError } from '../common/errors.ts';
import { type Clock, systemClock } from '../common/clock.ts';
import { IpfixEncoder } from './encoder.ts';
import type { FeatureElementSet, FeatureName } from './feature-elements.ts';
import { type ExportTarget, parseExportTarget } from './target.ts';
import { FileTransport } from './transport-file.ts';
import { type Connector, type StreamTransportOptions, StreamTransport, tcpConnector } from './transport-tcp.ts';
import { readTlsFiles, tlsConnector } from './transport-tls.ts';
import { type UdpTransportOptions, UdpTransport } from './transport-udp.ts';
import type { ExportTransport, TransportOptions, TransportStats } from './transport.ts';
import type { ExportRecord } from '../enrich/export-record.ts';

export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;

export interface ExporterOptions {
  /** Target URLs (see parseExportTarget) or parsed targets; at least one. */
  targets: ReadonlyArray<string | ExportTarget>;
  observationDomainId: number;
  /** PEN of podflow's elements; default 32473 (documentation only): set your own. */
  enterpriseNumber?: number;
  /** Longest identity string in UTF-8 bytes (the encoder's maxStringBytes). */
  maxStringBytes?: number;
  /** The per-flow features exported (the encoder's features); default every one. */
  features?: readonly FeatureName[];
  /** The elements of the application features' fields (the encoder's featureElements). */
  featureElements?: FeatureElementSet;
  /** Default: the system clock. */
  clock?: Clock;
  /** Told of every counted error, e.g. to log it. Default: nothing. */
  onError?: (err: PodflowError, target: string) => void;
  /** Default DEFAULT_CLOSE_TIMEOUT_MS: how long close() waits for queued records to go out. */
  closeTimeoutMs?: number;
  udp?: Pick<UdpTransportOptions, 'templateRefreshMs' | 'templateRefreshMessages' | 'maxMessageBytes' | 'maxQueuedRecords' | 'backoffInitialMs' | 'backoffMaxMs' | 'lookup' | 'createSocket'>;
  tcp?: Pick<StreamTransportOptions, 'maxQueuedRecords' | 'backoffInitialMs' | 'backoffMaxMs' | 'connectTimeoutMs' | 'maxMessageBytes' | 'stallTimeoutMs' | 'inDoubtBytes'> & {
    /** Replaces the network connection, e.g. to run over an in-memory duplex in tests. */
    connect?: Connector;
  };
}

export class Exporter {
  readonly #transports: ExportTransport[];
  readonly #clock: Clock;
  readonly #closeTimeoutMs: number;
  #closing: Promise<void> | undefined;

  constructor(options: ExporterOptions) {
    if (options.targets.length === 0) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', 'no export target');
    this.#clock = options.clock ?? systemClock;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    if (!(this.#closeTimeoutMs > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `closeTimeoutMs must be positive, got ${this.#closeTimeoutMs}`);
    const targets = options.targets.map((t) => (typeof t === 'string' ? parseExportTarget(t) : t));
    this.#transports = [];
    try {
      targets.forEach((target, i) => this.#transports.push(this.#transport(target, i + 1, options)));
    } catch (err) {
      // A later target failed (e.g. a TLS file): the ones already open must not linger.
      this.destroy();
      throw err;
    }
  }

  /** Sends the records to every target. Throws only when the exporter is closed. */
  export(records: readonly ExportRecord[]): void {
    if (this.#closing) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', 'export() after close()');
    for (const t of this.#transports) t.export(records);
  }

  /** One entry per target, in the order given. */
  stats(): TransportStats[] {
    return this.#transports.map((t) => t.stats());
  }

  /** Flushes every target (in parallel, within closeTimeoutMs), then closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.all(this.#transports.map((t) => t.close(this.#closeTimeoutMs))).then(() => undefined);
    return this.#closing;
  }

  /** Closes every target at once; queued records are dropped and counted. */
  destroy(): void {
    this.#closing ??= Promise.resolve();
    for (const t of this.#transports) t.destroy();
  }

  #transport(target: ExportTarget, exportingProcessId: number, options: ExporterOptions): ExportTransport {
    const common: TransportOptions = {
      clock: this.#clock,
      exportingProcessId,
      onError: (err) => options.onError?.(err, target.url),
      newEncoder: (maxMessageBytes) =>
        new IpfixEncoder({
          observationDomainId: options.observationDomainId,
          enterpriseNumber: options.enterpriseNumber,
          maxStringBytes: options.maxStringBytes,
          ...(options.features && { features: options.features }),
          ...(options.featureElements && { featureElements: options.featureElements }),
          maxMessageBytes,
          clock: () => this.#clock.now(),
        }),
    };
    switch (target.protocol) {
      case 'file':
        return new FileTransport(target.url, target.path, common);
      case 'udp':
        return new UdpTransport(target.url, { ...common, ...options.udp, host: target.host, port: target.port });
      case 'tcp':
        return new StreamTransport(target.url, { ...common, ...options.tcp, connect: options.tcp?.connect ?? tcpConnector(target.host, target.port) });
      case 'tls': {
        const credentials = readTlsFiles(target.tls, 'PODFLOW_ERR_EXPORT_TLS_FILES');
        const connect = options.tcp?.connect ?? tlsConnector(target.host, target.port, target.tls.servername, credentials);
        return new StreamTransport(target.url, { ...common, ...options.tcp, connect });
      }
    }
  }
}
