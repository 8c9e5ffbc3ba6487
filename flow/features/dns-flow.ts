// A flow's DNS transactions (UDP or TCP, port 53): every message counted,
// responses matched to their queries by id for the latency, and the flow's
// first transaction kept whole for its record (the query's name, type and
// class; the response's code, answer count and first answer).
//
// Bounded: at most MAX_PENDING queries wait for their answer (a newer one
// pushes out the oldest, counted), at most MAX_LATENCIES latencies are kept
// per flow for the metrics (more are counted). Over TCP the messages are read
// where a segment starts one (RFC 7766 8: a 2-byte length before each); a
// message that goes on into the next segment is read as far as this one
// holds it, and its rest skipped by sequence number: nothing is buffered.
import { DnsStatus, emptyDnsMessage, parseDns, type DnsMessage } from './dns.ts';

export const MAX_PENDING = 16;
export const MAX_LATENCIES = 32;

export interface DnsStats {
  queries: number;
  responses: number;
  /** Messages cut short: by the capture's snaplen, by an IP fragment, or continued in a TCP segment not read. */
  truncated: number;
  /** Messages that cannot be right (RFC 1035 limits), or shorter than a header. */
  malformed: number;
  /** Responses whose query was not seen (the flow was seen from its middle, or its query was pushed out). */
  unmatchedResponses: number;
  /** Queries pushed out of a flow's MAX_PENDING by newer ones before their answer came. */
  pendingOverflow: number;
  /** Answered queries whose latency was not kept because a flow had MAX_LATENCIES already. */
  latenciesNotKept: number;
}

export function emptyDnsStats(): DnsStats {
  return { queries: 0, responses: 0, truncated: 0, malformed: 0, unmatchedResponses: 0, pendingOverflow: 0, latenciesNotKept: 0 };
}

/** What a flow record carries of DNS. */
export interface DnsFields {
  /** Of the flow's first transaction: its query, or its response when no query was seen. */
  id: number;
  queryName: string;
  queryType: number;
  queryClass: number;
  /** The first transaction's response; undefined when none came. */
  response: { rcode: number; answerCount: number; answerType: number; answerTtl: number; answerData: string } | undefined;
  /** Query to response, microseconds; undefined without both. */
  latencyMicros: number | undefined;
  queries: number;
  responses: number;
  /** Responses by RCODE (index 0-15). */
  responseCodes: number[];
  /** Latencies of the answered queries, microseconds, at most MAX_LATENCIES. */
  latenciesMicros: number[];
}

/** One message parsed at a time (the reader fills this one object). */
const scratch: DnsMessage = emptyDnsMessage();

export class DnsFlow {
  readonly #stats: DnsStats;
  #first: DnsFields | undefined;
  /** Whether the first transaction's response may still come. */
  #firstOpen = false;
  #queries = 0;
  #responses = 0;
  readonly #responseCodes: number[] = new Array<number>(16).fill(0);
  readonly #latencies: number[] = [];
  // Queries waiting for their response: id and time, oldest first.
  readonly #pendingIds: number[] = [];
  readonly #pendingTimes: number[] = [];
  /** TCP: per side, the sequence number where the next message's length is expected; -1 before the side's first payload. */
  readonly #nextMessageSeq = [-1, -1];

  constructor(stats: DnsStats) {
    this.#stats = stats;
  }

  /** One DNS message buf[start, end) (a UDP payload) seen at timeMicros. */
  message(buf: Uint8Array, start: number, end: number, timeMicros: number): void {
    const status = parseDns(buf, start, end, scratch);
    if (status === DnsStatus.TOO_SHORT || status === DnsStatus.MALFORMED) {
      this.#stats.malformed++;
      if (status === DnsStatus.TOO_SHORT) return;
    } else if (status === DnsStatus.TRUNCATED) {
      this.#stats.truncated++;
    }
    if (scratch.response) this.#response(scratch, timeMicros);
    else this.#query(scratch, timeMicros);
  }

  /** One TCP segment's payload buf[start, end) with its sequence number, from the flow's first sender (forward) or the other side. */
  segment(forward: boolean, seq: number, buf: Uint8Array, start: number, end: number, timeMicros: number): void {
    const side = forward ? 0 : 1;
    const next = this.#nextMessageSeq[side]!;
    let at = start;
    let atSeq = seq;
    if (next !== -1 && seq !== next) {
      // The rest of a message read in part, then maybe more messages; or a
      // retransmission (wholly before `next`); or a gap (after it), after
      // which this side's messages cannot be found again.
      const skip = (next - seq) | 0;
      if (skip < 0 || skip >= end - start) return;
      at += skip;
      atSeq = next;
    }
    while (at + 2 <= end) {
      const length = (buf[at]! << 8) | buf[at + 1]!;
      const messageEnd = at + 2 + length;
      this.message(buf, at + 2, Math.min(messageEnd, end), timeMicros);
      atSeq = (atSeq + 2 + length) >>> 0;
      at = messageEnd;
    }
    // A length split across two segments is not read: the side's next
    // segment then does not start at atSeq, and its messages are not read.
    this.#nextMessageSeq[side] = atSeq;
  }

  fields(): DnsFields | undefined {
    if (this.#first === undefined) return undefined;
    return { ...this.#first, queries: this.#queries, responses: this.#responses, responseCodes: [...this.#responseCodes], latenciesMicros: [...this.#latencies] };
  }

  #query(m: DnsMessage, timeMicros: number): void {
    this.#queries++;
    this.#stats.queries++;
    if (this.#first === undefined) {
      this.#first = transaction(m);
      this.#firstOpen = true;
    }
    if (this.#pendingIds.includes(m.id)) return; // a retransmitted query: timed from its first sending
    if (this.#pendingIds.length === MAX_PENDING) {
      this.#pendingIds.shift();
      this.#pendingTimes.shift();
      this.#stats.pendingOverflow++;
    }
    this.#pendingIds.push(m.id);
    this.#pendingTimes.push(timeMicros);
  }

  #response(m: DnsMessage, timeMicros: number): void {
    this.#responses++;
    this.#stats.responses++;
    this.#responseCodes[m.rcode]!++;
    const i = this.#pendingIds.indexOf(m.id);
    let latency: number | undefined;
    if (i < 0) {
      this.#stats.unmatchedResponses++;
    } else {
      latency = Math.max(0, timeMicros - this.#pendingTimes[i]!);
      this.#pendingIds.splice(i, 1);
      this.#pendingTimes.splice(i, 1);
      if (this.#latencies.length < MAX_LATENCIES) this.#latencies.push(latency);
      else this.#stats.latenciesNotKept++;
    }
    if (this.#first === undefined) {
      this.#first = transaction(m);
    } else if (!this.#firstOpen || m.id !== this.#first.id) {
      return;
    }
    this.#firstOpen = false;
    this.#first.response = { rcode: m.rcode, answerCount: m.answerCount, answerType: m.answerType, answerTtl: m.answerTtl, answerData: m.answerData };
    this.#first.latencyMicros = latency;
  }
}

function transaction(m: DnsMessage): DnsFields {
  return {
    id: m.id,
    queryName: m.queryName,
    queryType: m.queryType,
    queryClass: m.queryClass,
    response: undefined,
    latencyMicros: undefined,
    queries: 0,
    responses: 0,
    responseCodes: [],
    latenciesMicros: [],
  };
}
