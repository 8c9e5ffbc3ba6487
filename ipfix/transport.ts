// What every export transport shares: the interface the Exporter fans out to,
// the counters it reports, the session encoder seam, and the retry backoff.
// A transport owns the encoder of its transport session (RFC 7011 §3.1:
// sequence numbers count per transport session and observation domain), so
// collectors never see one session's numbering leak into another.
import type { Clock } from '../common/clock.ts';
import type { PodflowError } from '../common/errors.ts';
import type { IpfixEncoder } from './encoder.ts';
import { TWO_32 } from './wire.ts';
import type { ExportRecord } from '../enrich/export-record.ts';

/** Makes the encoder for a new transport session, with the message size limit of the transport. */
export type EncoderFactory = (maxMessageBytes: number) => IpfixEncoder;

export const DEFAULT_MAX_QUEUED_RECORDS = 65_536;
export const DEFAULT_BACKOFF_INITIAL_MS = 1_000;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;

/**
 * Why records were not sent (the label of podflow_export_not_sent_records_total):
 * - queueFull: the bounded queue was full (no connection, an unresolved name, a slow collector or disk);
 * - tooLarge: the record alone does not fit one message (e.g. many labels on UDP);
 * - sendFailed: the send (UDP) or write (file) failed;
 * - connectionLost: written to a TCP/TLS connection that ended before they were known read (see transport-tcp.ts);
 * - closed: still queued when the transport closed (its close timed out, or it was destroyed).
 */
export const NOT_SENT_REASONS = ['queueFull', 'tooLarge', 'sendFailed', 'connectionLost', 'closed'] as const;
export type NotSentReason = (typeof NOT_SENT_REASONS)[number];

export interface TransportStats {
  /** The target URL as given. */
  target: string;
  /** UDP: the name resolved and the socket is connected. File: open. TCP/TLS: a connection is up, has sent its templates and is not stalled. */
  connected: boolean;
  messages: number;
  /** Data records of flows (not template or options records) handed to the socket or file. */
  records: number;
  bytes: number;
  /** Times the templates (with type information and reliability statistics) went out. */
  templateSends: number;
  /** TCP/TLS: connections made after the first one. */
  reconnects: number;
  /** Records waiting for a connection, a name, or the socket or file to drain. */
  queuedRecords: number;
  /** Flow records not sent, by reason; also in the RFC 7011 reliability statistics sent to the collector. */
  notSent: Record<NotSentReason, number>;
  /** Identity strings cut at the encoder's maxStringBytes (counted per record that carries them). */
  stringsTruncated: number;
  errors: number;
  lastError: PodflowError | undefined;
}

export interface ExportTransport {
  readonly target: string;
  /** Takes records to send; never blocks and never throws for network trouble (counted instead). */
  export(records: readonly ExportRecord[]): void;
  stats(): TransportStats;
  /** Sends what is queued, then closes; gives up (counting what was not sent) after `timeoutMs`. Idempotent. */
  close(timeoutMs: number): Promise<void>;
  /** Closes at once; what is queued is counted as not sent. */
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

/** What RFC 7011 §4.3 reports of flow records (not) sent: how many, their packets and octets, the first and last end time. */
export interface RecordSummary {
  flows: number;
  packets: number;
  octets: number;
  firstMs: number;
  lastMs: number;
}

export function summarize(records: readonly ExportRecord[]): RecordSummary {
  const s = { flows: records.length, packets: 0, octets: 0, firstMs: records[0]?.flow.flowEndMilliseconds ?? 0, lastMs: records.at(-1)?.flow.flowEndMilliseconds ?? 0 };
  for (const { flow } of records) {
    s.packets += flow.packetDeltaCount + flow.reversePacketDeltaCount;
    s.octets += flow.octetDeltaCount + flow.reverseOctetDeltaCount;
  }
  return s;
}

/** One encoded message and a summary of the flow records it carries (kept instead of the records: cheap to hold). */
export interface EncodedMessage {
  bytes: Uint8Array;
  records: RecordSummary;
}

const NONE: RecordSummary = Object.freeze({ flows: 0, packets: 0, octets: 0, firstMs: 0, lastMs: 0 });

/** Counters and the opening sequence of a transport session, shared by the transports. */
export class TransportCounters {
  readonly target: string;
  readonly startedMs: number;
  messages = 0;
  records = 0;
  bytes = 0;
  templateSends = 0;
  reconnects = 0;
  stringsTruncated = 0;
  errors = 0;
  lastError: PodflowError | undefined;
  readonly notSent: Record<NotSentReason, number> = { queueFull: 0, tooLarge: 0, sendFailed: 0, connectionLost: 0, closed: 0 };
  /** What RFC 7011 §4.3 reports about records not sent. */
  #notSent: RecordSummary = { ...NONE };
  readonly #options: TransportOptions;

  constructor(target: string, options: TransportOptions) {
    this.target = target;
    this.startedMs = options.clock.now();
    this.#options = options;
  }

  /** Counts records that will never be sent, or may not have reached the collector, for `reason`. */
  notSentRecords(reason: NotSentReason, records: readonly ExportRecord[] | RecordSummary): void {
    const r = Array.isArray(records) ? summarize(records) : (records as RecordSummary);
    if (r.flows === 0) return;
    const n = this.#notSent;
    if (n.flows === 0) n.firstMs = r.firstMs;
    n.lastMs = r.lastMs;
    n.flows += r.flows;
    n.packets += r.packets;
    n.octets += r.octets;
    this.notSent[reason] += r.flows;
  }

  error(err: PodflowError): void {
    this.errors++;
    this.lastError = err;
    this.#options.onError(err);
  }

  /** A message handed to the socket or file; `records` of its data records. */
  sent(message: Uint8Array, records = 0): void {
    this.messages++;
    this.bytes += message.length;
    this.records += records;
  }

  /**
   * Encodes a batch into messages, each with the records it carries; a
   * record too large for one message is counted as not sent. The records of
   * a message follow from the sequence numbers (RFC 7011 §3.1: each header
   * carries the data records sent before it).
   */
  encode(encoder: IpfixEncoder, records: readonly ExportRecord[]): EncodedMessage[] {
    const tooLarge: ExportRecord[] = [];
    const truncated = encoder.stats.stringsTruncated;
    const messages = encoder.encode(records, (r) => tooLarge.push(r));
    this.stringsTruncated += encoder.stats.stringsTruncated - truncated;
    this.notSentRecords('tooLarge', tooLarge);
    const carried = tooLarge.length > 0 ? records.filter((r) => !tooLarge.includes(r)) : records;
    const out: EncodedMessage[] = [];
    let next = 0;
    for (let i = 0; i < messages.length; i++) {
      const end = i + 1 < messages.length ? sequenceOf(messages[i + 1]!) : encoder.sequenceNumber;
      const count = (end - sequenceOf(messages[i]!) + TWO_32) % TWO_32;
      out.push({ bytes: messages[i]!, records: summarize(carried.slice(next, next + count)) });
      next += count;
    }
    return out;
  }

  /**
   * The messages that open a transport session: the RFC 5610 type information
   * that names podflow's enterprise elements first (libfixbuf names a
   * template's fields when the template arrives), then the templates, then the
   * reliability statistics (counted over the transport's life, across its
   * sessions).
   */
  opening(encoder: IpfixEncoder): EncodedMessage[] {
    this.templateSends++;
    const messages = [
      ...encoder.typeInformationMessages(),
      ...encoder.templateMessages(),
      encoder.reliabilityStatsMessage({
        exportingProcessId: this.#options.exportingProcessId,
        notSentFlowTotalCount: this.#notSent.flows,
        notSentPacketTotalCount: this.#notSent.packets,
        notSentOctetTotalCount: this.#notSent.octets,
        firstNotSentMilliseconds: this.#notSent.firstMs,
        lastNotSentMilliseconds: this.#notSent.lastMs,
        exportedMessageTotalCount: this.messages,
        exportedFlowRecordTotalCount: this.records,
        exportedOctetTotalCount: this.bytes,
      }),
    ];
    return messages.map((bytes) => ({ bytes, records: NONE }));
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
      notSent: { ...this.notSent },
      stringsTruncated: this.stringsTruncated,
      errors: this.errors,
      lastError: this.lastError,
    };
  }
}

/** Every record a transport did not send, whatever the reason. */
export function notSentTotal(stats: TransportStats): number {
  return NOT_SENT_REASONS.reduce((n, reason) => n + stats.notSent[reason], 0);
}

function sequenceOf(message: Uint8Array): number {
  return new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(8);
}

/**
 * Records waiting to be sent, in batches in arrival order, at most `max`;
 * beyond it they are counted as not sent (queueFull): the meter is never
 * blocked. Records are encoded when they leave, so sequence numbers have no
 * gaps for records dropped before a session existed.
 */
export class RecordQueue {
  readonly #max: number;
  readonly #counters: TransportCounters;
  #batches: ExportRecord[][] = [];
  #size = 0;

  constructor(max: number, counters: TransportCounters) {
    this.#max = max;
    this.#counters = counters;
  }

  get size(): number {
    return this.#size;
  }

  /** Takes what fits; a copy, since the caller may reuse its array once export() returns. */
  push(records: readonly ExportRecord[]): void {
    const taken = Math.min(this.#max - this.#size, records.length);
    if (taken < records.length) this.#counters.notSentRecords('queueFull', records.slice(Math.max(taken, 0)));
    if (taken <= 0) return;
    this.#batches.push(records.slice(0, taken));
    this.#size += taken;
  }

  shift(): ExportRecord[] | undefined {
    const batch = this.#batches.shift();
    if (batch) this.#size -= batch.length;
    return batch;
  }

  /** Counts every queued record as not sent for `reason` and empties the queue. */
  discard(reason: NotSentReason): void {
    for (const batch of this.#batches) this.#counters.notSentRecords(reason, batch);
    this.#batches = [];
    this.#size = 0;
  }
}

/** Retry delays: initial, doubled per failure up to max; reset() after a success. */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #nextMs: number;

  constructor(initialMs: number, maxMs: number) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#nextMs = initialMs;
  }

  /** The delay before the next attempt. */
  next(): number {
    const ms = this.#nextMs;
    this.#nextMs = Math.min(this.#nextMs * 2, this.#maxMs);
    return ms;
  }

  reset(): void {
    this.#nextMs = this.#initialMs;
  }
}
