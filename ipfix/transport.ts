// What every export transport shares: the interface the Exporter fans out to,
// the counters it reports, and the session encoder seam. A transport owns the
// encoder of its transport session (RFC 7011 §3.1: sequence numbers count per
// transport session and observation domain), so collectors never see one
// session's numbering leak into another.
import type { Clock } from './clock.ts';
import type { PodflowError } from '../common/errors.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from './types.ts';

/** Makes the encoder for a new transport session, with the message size limit of the transport. */
export type EncoderFactory = (maxMessageBytes: number) => IpfixEncoder;

export interface TransportStats {
  /** The target URL as given. */
  target: string;
  /** UDP and file: open. TCP/TLS: a connection is up and has sent its templates. */
  connected: boolean;
  messages: number;
  /** Data records of flows (not template or options records). */
  records: number;
  bytes: number;
  /** Times the templates (with type information and reliability statistics) went out. */
  templateSends: number;
  /** TCP/TLS: connections made after the first one. */
  reconnects: number;
  /** TCP/TLS: records waiting for a connection or for the socket to drain. */
  queuedRecords: number;
  /** Records dropped because the queue was full (or, at close, never sent). */
  droppedRecords: number;
  errors: number;
  lastError: PodflowError | undefined;
}

export interface ExportTransport {
  readonly target: string;
  /** Takes records to send; never blocks and never throws for network trouble (counted instead). */
  export(records: readonly ExportRecord[]): void;
  stats(): TransportStats;
  /** Sends what is queued, then closes; gives up (counting drops) after `timeoutMs`. Idempotent. */
  close(timeoutMs: number): Promise<void>;
  /** Closes at once; what is queued is dropped and counted. */
  destroy(): void;
}

export interface TransportOptions {
  newEncoder: EncoderFactory;
  /** exportingProcessId of the reliability statistics: unique per exporter on this host. */
  exportingProcessId: number;
  clock: Clock;
  /** Told of every counted error (for logging); the transport carries on. */
  onError: (err: PodflowError) => void;
}

/** Counters and the opening sequence of a transport session, shared by the transports. */
export class TransportCounters {
  readonly target: string;
  readonly startedMs: number;
  messages = 0;
  records = 0;
  bytes = 0;
  templateSends = 0;
  reconnects = 0;
  droppedRecords = 0;
  errors = 0;
  lastError: PodflowError | undefined;
  /** What RFC 7011 §4.3 reports about records not sent. */
  #notSent = { packets: 0, octets: 0, firstMs: 0, lastMs: 0 };
  readonly #o: TransportOptions;

  constructor(target: string, options: TransportOptions) {
    this.target = target;
    this.startedMs = options.clock.now();
    this.#o = options;
  }

  /** Counts records that will never be sent (rare: a full queue, a close that ran out of time). */
  dropped(records: readonly ExportRecord[]): void {
    if (records.length === 0) return;
    const n = this.#notSent;
    for (const { flow } of records) {
      n.packets += flow.packetDeltaCount + flow.reversePacketDeltaCount;
      n.octets += flow.octetDeltaCount + flow.reverseOctetDeltaCount;
    }
    if (this.droppedRecords === 0) n.firstMs = records[0]!.flow.flowEndMilliseconds;
    n.lastMs = records[records.length - 1]!.flow.flowEndMilliseconds;
    this.droppedRecords += records.length;
  }

  error(err: PodflowError): void {
    this.errors++;
    this.lastError = err;
    this.#o.onError(err);
  }

  sent(message: Uint8Array): void {
    this.messages++;
    this.bytes += message.length;
  }

  /**
   * The messages that open a transport session: the RFC 5610 type information
   * that names podflow's enterprise elements first (libfixbuf names a
   * template's fields when the template arrives), then the templates, then the
   * reliability statistics (counted over the transport's life, across its
   * sessions).
   */
  opening(encoder: IpfixEncoder): Uint8Array[] {
    this.templateSends++;
    return [
      ...encoder.typeInformationMessages(),
      ...encoder.templateMessages(),
      encoder.reliabilityStatsMessage({
        exportingProcessId: this.#o.exportingProcessId,
        notSentFlowTotalCount: this.droppedRecords,
        notSentPacketTotalCount: this.#notSent.packets,
        notSentOctetTotalCount: this.#notSent.octets,
        firstNotSentMilliseconds: this.#notSent.firstMs,
        lastNotSentMilliseconds: this.#notSent.lastMs,
        exportedMessageTotalCount: this.messages,
        exportedFlowRecordTotalCount: this.records,
        exportedOctetTotalCount: this.bytes,
      }),
    ];
  }

  snapshot(connected: boolean, queuedRecords: number): TransportStats {
    return {
      target: this.target,
      connected,
      messages: this.messages,
      records: this.records,
      bytes: this.bytes,
      templateSends: this.templateSends,
      reconnects: this.reconnects,
      queuedRecords,
      droppedRecords: this.droppedRecords,
      errors: this.errors,
      lastError: this.lastError,
    };
  }
}
