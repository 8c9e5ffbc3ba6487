// TCP performance per flow, as the observation point sees it: the handshake
// split at the point, retransmissions and out-of-order segments from sequence
// numbers, zero windows, resets, the SYNs' MSS and window scale, the options
// seen and the TTL (hop limit) of each direction. docs/tcp.md gives the
// rules; in short:
//
// - Each direction keeps the highest sequence number it has sent (its end,
//   SYN and FIN counted as one each) and up to MAX_HOLES gaps below it: a
//   segment that starts beyond the end leaves a gap (the capture missed
//   bytes: they were lost before this point, or arrive late).
// - A segment with sequence space (payload, SYN or FIN) that lies wholly at
//   or below the end is a retransmission, unless some of it falls in a gap:
//   then it is out of order (it fills the gap). A segment that straddles the
//   end retransmits the part below it. A super-packet (flow/decode.ts WIRE
//   SEGMENTS) counts the wire segments its repeated bytes were in, as the
//   kernel's TcpRetransSegs counts them: gso_size bytes each.
// - SACK blocks are not read: which bytes a sender repeats is in its
//   sequence numbers whether SACK, RACK, a tail loss probe or a timeout made
//   it repeat them.
//
// Per-flow state sits in typed arrays indexed by the meter's flow number
// (one run per flow, reset when the flow ends), so the state is bounded by
// the flow table and nothing is allocated per packet. Reading the
// TCP header here rather than in the decoder keeps its cost off flows and
// configurations that do not want it.
import type { DecodedPacket } from '../decode.ts';
import { readU32BE } from '../records.ts';

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;

const TCP_HEADER_MIN = 20;
const OPTION_END = 0;
const OPTION_NOP = 1;
const OPTION_MSS = 2;
const OPTION_WINDOW_SCALE = 3;

/** Gaps remembered per direction; a further one forgets the oldest (counted in stats.gapsForgotten). */
export const MAX_HOLES = 4;

// Per-flow state in two typed arrays, each flow's in one run (a packet
// touches a few neighbouring cache lines, not one per field; zero is a new
// flow's state throughout, so memory is touched only for the slots the meter
// uses). Words (Uint32), FLOW_WORDS per flow: each direction's
// DIRECTION_WORDS at direction * DIRECTION_WORDS, then the handshake's.
const FLOW_WORDS = 48;
const DIRECTION_WORDS = 20;
const W_FLAGS = 0; // KNOWN_* bits
const W_END = 1; // the highest sequence number sent, + 1
const W_HOLE_COUNT = 2;
const W_HOLES = 3; // MAX_HOLES pairs [start, end), oldest first
const W_OPTIONS = 11; // option kinds seen: 0-31 in this word, 32-63 in the next, bit kind % 32
const W_WINDOW = 13; // of the first segment
const W_MSS = 14; // from the SYN; 0: none
const W_WINDOW_SCALE = 15; // from the SYN, + 1; 0: none
const W_TTL_FIRST = 16;
const W_TTL_LAST = 17;
const W_TTL_MIN = 18;
const W_TTL_MAX = 19;
const KNOWN_END = 1;
const KNOWN_WINDOW = 2;
const KNOWN_TTL = 4;
// The handshake's words: which direction sent the SYN (0: none seen, else
// its direction + 1), the SYN's and the SYN/ACK's initial sequence numbers,
// the IP length of the flow's first packet when it was a bare SYN, which
// handshake times are set (HS_* bits).
const M_CLIENT = 2 * DIRECTION_WORDS;
const M_CLIENT_ISN = M_CLIENT + 1;
const M_SERVER_ISN = M_CLIENT + 2;
const M_SYN_SIZE = M_CLIENT + 3;
const M_HANDSHAKE = M_CLIENT + 4;
const NO_CLIENT = 0;

// Numbers (Float64: bytes outgrow 32 bits), FLOW_NUMBERS per flow: each
// direction's COUNTERS at direction * COUNTERS, then the handshake times
// (microseconds).
const FLOW_NUMBERS = 16;
const COUNTERS = 6;
const N_RETRANSMITTED_SEGMENTS = 0;
const N_RETRANSMITTED_BYTES = 1;
const N_OUT_OF_ORDER = 2;
const N_ZERO_WINDOW = 3;
const N_RESETS = 4;
const N_SEGMENTS = 5;
const H_SYN = 2 * COUNTERS; // the last SYN before the SYN/ACK
const H_SYN_ACK = H_SYN + 1; // the last SYN/ACK before the ACK
const H_SYN_TO_SYN_ACK = H_SYN + 2;
const H_SYN_ACK_TO_ACK = H_SYN + 3;
const HS_SYN = 1;
const HS_SYN_ACK = 2;
const HS_SYN_TO_SYN_ACK = 4;
const HS_SYN_ACK_TO_ACK = 8;

/** One direction of a flow's TCP fields. */
export interface TcpDirection {
  /** Segments that carried sequence space (payload, SYN or FIN), wire segments. */
  segments: number;
  /** Wire segments that repeated sequence space this point had seen sent. */
  retransmittedSegments: number;
  /** Payload bytes in them. */
  retransmittedBytes: number;
  /** Segments that filled a gap below the highest sequence number seen. */
  outOfOrderSegments: number;
  /** Segments advertising a zero receive window (not SYN or RST). */
  zeroWindowSegments: number;
  resets: number;
  /** The window field of the direction's first segment, unscaled (ipfixprobe's TCP_WIN, IANA tcpWindowSize). */
  initialWindow: number | undefined;
  /** From this side's SYN (or SYN/ACK). */
  maximumSegmentSize: number | undefined;
  windowScale: number | undefined;
  /** TCP option kinds 0-63 seen in any segment, ascending. */
  optionKinds: number[];
  /** TTL (IPv4) or hop limit (IPv6) of the first and last packet, and the range. */
  ttlFirst: number | undefined;
  ttlLast: number | undefined;
  ttlMinimum: number | undefined;
  ttlMaximum: number | undefined;
}

/** A flow's TCP fields, made when it ends. */
export interface TcpFields {
  /** Microseconds from the SYN to the SYN/ACK, both seen here: the round trip beyond this point when it is on the client's side. */
  synToSynAckMicros: number | undefined;
  /** Microseconds from the SYN/ACK to the ACK of it: the round trip beyond this point when it is on the server's side. */
  synAckToAckMicros: number | undefined;
  /** Which direction sent the SYN: 'forward', 'reverse', or undefined when no SYN was seen. */
  clientDirection: 'forward' | 'reverse' | undefined;
  /** ipfixprobe's TCP_SYN_SIZE: the IP length of the flow's first packet when it was a bare SYN, else 0. */
  synSize: number;
  forward: TcpDirection;
  reverse: TcpDirection;
}

export interface TcpTrackerStats {
  /** Sequence gaps forgotten because a direction had MAX_HOLES already: a later fill of one counts as a retransmission. */
  gapsForgotten: number;
  /** Segments whose options could not be walked to their end (a length below 2, or past the header). */
  malformedOptions: number;
  /** TCP packets whose header the capture cut before its fixed 20 bytes: not tracked. */
  truncatedHeaders: number;
}

export function emptyTcpStats(): TcpTrackerStats {
  return { gapsForgotten: 0, malformedOptions: 0, truncatedHeaders: 0 };
}

export class TcpTracker {
  readonly stats: TcpTrackerStats = emptyTcpStats();
  readonly #words: Uint32Array;
  readonly #numbers: Float64Array;

  /** State for the meter's flow slots 0 .. maxFlows - 1. */
  constructor(maxFlows: number) {
    this.#words = new Uint32Array(maxFlows * FLOW_WORDS);
    this.#numbers = new Float64Array(maxFlows * FLOW_NUMBERS);
  }

  /** Flow slot `flow` ended: its fields, for its record; the slot starts afresh. */
  end(flow: number): TcpFields {
    const fields = this.fields(flow);
    this.#words.fill(0, flow * FLOW_WORDS, (flow + 1) * FLOW_WORDS);
    this.#numbers.fill(0, flow * FLOW_NUMBERS, (flow + 1) * FLOW_NUMBERS);
    return fields;
  }

  /** One TCP packet of the flow in slot `flow`, in `direction` (0: the way its first packet went). */
  packet(flow: number, direction: number, p: DecodedPacket): void {
    const buf = p.buffer;
    const at = p.transportOffset;
    if (at < 0 || at + TCP_HEADER_MIN > p.capturedEnd) {
      this.stats.truncatedHeaders++;
      return;
    }
    const words = this.#words;
    const f = flow * FLOW_WORDS;
    const w = f + direction * DIRECTION_WORDS;
    const n = flow * FLOW_NUMBERS + direction * COUNTERS;
    // Every packet read sets its direction's first window: none yet in either, it is the flow's first.
    const first = ((words[f + W_FLAGS]! | words[f + DIRECTION_WORDS + W_FLAGS]!) & KNOWN_WINDOW) === 0;
    const flags = buf[at + 13]!;
    const window = (buf[at + 14]! << 8) | buf[at + 15]!;
    const headerBytes = (buf[at + 12]! >> 4) * 4;
    const segments = p.packets;

    const state = words[w + W_FLAGS]!;
    const ttl = p.ttl;
    if ((state & KNOWN_TTL) === 0) {
      words[w + W_FLAGS] = state | KNOWN_TTL | KNOWN_WINDOW;
      words[w + W_WINDOW] = window;
      words[w + W_TTL_FIRST] = words[w + W_TTL_MIN] = words[w + W_TTL_MAX] = ttl;
    } else if (ttl < words[w + W_TTL_MIN]!) words[w + W_TTL_MIN] = ttl;
    else if (ttl > words[w + W_TTL_MAX]!) words[w + W_TTL_MAX] = ttl;
    words[w + W_TTL_LAST] = ttl;
    if (headerBytes > TCP_HEADER_MIN) this.#readOptions(w, buf, at + TCP_HEADER_MIN, at + headerBytes, p.capturedEnd, (flags & TCP_SYN) !== 0);

    const numbers = this.#numbers;
    if ((flags & TCP_RST) !== 0) numbers[n + N_RESETS]! += 1;
    else if (window === 0 && (flags & TCP_SYN) === 0) numbers[n + N_ZERO_WINDOW]! += segments;

    // The handshake's packets: a SYN, a SYN/ACK, or an ACK while one is awaited.
    const handshake = words[f + M_HANDSHAKE]!;
    if ((flags & TCP_SYN) !== 0 || (handshake & (HS_SYN_ACK | HS_SYN_ACK_TO_ACK)) === HS_SYN_ACK) {
      this.#handshakeStep(flow, direction, flags, readU32BE(buf, at + 4), readU32BE(buf, at + 8), p.timestampMicros, first ? p.octets : 0);
    }

    // Sequence space: payload, and one each for SYN and FIN. A RST's payload
    // (a diagnostic, RFC 9293 3.5.3) is not stream data.
    if ((flags & TCP_RST) !== 0) return;
    const payload = Math.max(0, p.transportBytes - headerBytes);
    const length = payload + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0);
    if (length === 0) return;
    numbers[n + N_SEGMENTS]! += segments;
    this.#sequence(w, n, readU32BE(buf, at + 4), length, payload, segments, p.segmentSize);
  }

  /** The fields of flow `flow`, for its record. */
  fields(flow: number): TcpFields {
    const f = flow * FLOW_WORDS;
    const h = flow * FLOW_NUMBERS;
    const client = this.#words[f + M_CLIENT]!;
    const known = this.#words[f + M_HANDSHAKE]!;
    return {
      synToSynAckMicros: (known & HS_SYN_TO_SYN_ACK) !== 0 ? this.#numbers[h + H_SYN_TO_SYN_ACK]! : undefined,
      synAckToAckMicros: (known & HS_SYN_ACK_TO_ACK) !== 0 ? this.#numbers[h + H_SYN_ACK_TO_ACK]! : undefined,
      clientDirection: client === NO_CLIENT ? undefined : client === 1 ? 'forward' : 'reverse',
      synSize: this.#words[f + M_SYN_SIZE]!,
      forward: this.#direction(f, h),
      reverse: this.#direction(f + DIRECTION_WORDS, h + COUNTERS),
    };
  }

  #direction(w: number, n: number): TcpDirection {
    const words = this.#words;
    const numbers = this.#numbers;
    const flags = words[w + W_FLAGS]!;
    const seen = (flags & KNOWN_TTL) !== 0;
    const optionKinds: number[] = [];
    for (let kind = 0; kind < 64; kind++) {
      if ((words[w + W_OPTIONS + (kind >> 5)]! & (1 << (kind & 31))) !== 0) optionKinds.push(kind);
    }
    return {
      segments: numbers[n + N_SEGMENTS]!,
      retransmittedSegments: numbers[n + N_RETRANSMITTED_SEGMENTS]!,
      retransmittedBytes: numbers[n + N_RETRANSMITTED_BYTES]!,
      outOfOrderSegments: numbers[n + N_OUT_OF_ORDER]!,
      zeroWindowSegments: numbers[n + N_ZERO_WINDOW]!,
      resets: numbers[n + N_RESETS]!,
      initialWindow: seen ? words[w + W_WINDOW]! : undefined,
      maximumSegmentSize: words[w + W_MSS]! !== 0 ? words[w + W_MSS]! : undefined,
      windowScale: words[w + W_WINDOW_SCALE]! !== 0 ? words[w + W_WINDOW_SCALE]! - 1 : undefined,
      optionKinds,
      ttlFirst: seen ? words[w + W_TTL_FIRST]! : undefined,
      ttlLast: seen ? words[w + W_TTL_LAST]! : undefined,
      ttlMinimum: seen ? words[w + W_TTL_MIN]! : undefined,
      ttlMaximum: seen ? words[w + W_TTL_MAX]! : undefined,
    };
  }

  /**
   * Walks the options in buf[at, headerEnd), as far as the capture holds
   * them (capturedEnd): every kind below 64 is noted; a SYN's MSS and window
   * scale are kept.
   */
  #readOptions(w: number, buf: Uint8Array, at: number, headerEnd: number, capturedEnd: number, syn: boolean): void {
    const words = this.#words;
    while (at < headerEnd && at < capturedEnd) {
      const kind = buf[at]!;
      if (kind < 64) words[w + W_OPTIONS + (kind >> 5)] = words[w + W_OPTIONS + (kind >> 5)]! | (1 << (kind & 31));
      if (kind === OPTION_END) return;
      if (kind === OPTION_NOP) {
        at++;
        continue;
      }
      if (at + 1 >= capturedEnd) return;
      const length = buf[at + 1]!;
      if (length < 2 || at + length > headerEnd) {
        this.stats.malformedOptions++;
        return;
      }
      if (at + length > capturedEnd) return;
      if (syn && kind === OPTION_MSS && length === 4) words[w + W_MSS] = (buf[at + 2]! << 8) | buf[at + 3]!;
      else if (syn && kind === OPTION_WINDOW_SCALE && length === 3) words[w + W_WINDOW_SCALE] = buf[at + 2]! + 1;
      at += length;
    }
  }

  /**
   * The handshake at this point: the last SYN before the first SYN/ACK that
   * acknowledges it, and the last SYN/ACK before the first ACK of it from
   * the SYN's side (a retransmitted SYN or SYN/ACK restarts its clock: the
   * answer is taken to be to the latest one).
   */
  #handshakeStep(flow: number, direction: number, flags: number, seq: number, ack: number, timeMicros: number, firstLength: number): void {
    const words = this.#words;
    const m = flow * FLOW_WORDS;
    const hs = this.#numbers;
    const h = flow * FLOW_NUMBERS;
    const known = words[m + M_HANDSHAKE]!;
    if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_SYN) {
      if (firstLength !== 0 && flags === TCP_SYN) words[m + M_SYN_SIZE] = firstLength;
      if ((known & HS_SYN_TO_SYN_ACK) !== 0) return;
      words[m + M_CLIENT] = direction + 1;
      words[m + M_CLIENT_ISN] = seq;
      hs[h + H_SYN] = timeMicros;
      words[m + M_HANDSHAKE] = known | HS_SYN;
      return;
    }
    const client = words[m + M_CLIENT]! - 1;
    if (client < 0 || (flags & TCP_ACK) === 0) return;
    if ((flags & TCP_SYN) !== 0) {
      if (direction === client || ack !== ((words[m + M_CLIENT_ISN]! + 1) >>> 0)) return;
      let now = known;
      if ((now & HS_SYN_TO_SYN_ACK) === 0) {
        hs[h + H_SYN_TO_SYN_ACK] = timeMicros - hs[h + H_SYN]!;
        words[m + M_SERVER_ISN] = seq;
        now |= HS_SYN_TO_SYN_ACK;
      }
      if ((now & HS_SYN_ACK_TO_ACK) === 0) {
        hs[h + H_SYN_ACK] = timeMicros;
        now |= HS_SYN_ACK;
      }
      words[m + M_HANDSHAKE] = now;
      return;
    }
    if (
      direction === client &&
      (known & (HS_SYN_ACK | HS_SYN_ACK_TO_ACK)) === HS_SYN_ACK &&
      ack === ((words[m + M_SERVER_ISN]! + 1) >>> 0)
    ) {
      hs[h + H_SYN_ACK_TO_ACK] = timeMicros - hs[h + H_SYN_ACK]!;
      words[m + M_HANDSHAKE] = known | HS_SYN_ACK_TO_ACK;
    }
  }

  /** Sequence space [seq, seq + length) sent in the direction at words w, numbers n (payload bytes of it, in `segments` wire segments of segmentSize payload bytes). */
  #sequence(w: number, n: number, seq: number, length: number, payload: number, segments: number, segmentSize: number): void {
    const words = this.#words;
    const end = (seq + length) >>> 0;
    const flags = words[w + W_FLAGS]!;
    if ((flags & KNOWN_END) === 0) {
      words[w + W_FLAGS] = flags | KNOWN_END;
      words[w + W_END] = end;
      return;
    }
    const known = words[w + W_END]!;
    const numbers = this.#numbers;
    if (after(seq, known)) {
      // Bytes [known, seq) were not seen: a gap, filled later by an out-of-order or a retransmitted segment.
      this.#addHole(w, known, seq);
      words[w + W_END] = end;
      return;
    }
    if (!after(end, known)) {
      // Wholly below the end: new bytes only if it falls in a gap.
      if (this.#fillHoles(w, seq, end)) numbers[n + N_OUT_OF_ORDER]! += segments;
      else {
        numbers[n + N_RETRANSMITTED_SEGMENTS]! += segments;
        numbers[n + N_RETRANSMITTED_BYTES]! += payload;
      }
      return;
    }
    // Straddles the end: the part below it is repeated (in the segments that held it), the rest is new.
    const repeated = (known - seq) >>> 0;
    if (repeated > 0 && !this.#fillHoles(w, seq, known)) {
      numbers[n + N_RETRANSMITTED_SEGMENTS]! += segmentSize > 0 ? Math.min(segments, Math.ceil(repeated / segmentSize)) : 1;
      numbers[n + N_RETRANSMITTED_BYTES]! += Math.min(repeated, payload);
    }
    words[w + W_END] = end;
  }

  #addHole(w: number, start: number, end: number): void {
    const words = this.#words;
    const base = w + W_HOLES;
    let count = words[w + W_HOLE_COUNT]!;
    if (count === MAX_HOLES) {
      this.stats.gapsForgotten++;
      words.copyWithin(base, base + 2, base + MAX_HOLES * 2);
      count--;
    }
    words[base + count * 2] = start;
    words[base + count * 2 + 1] = end;
    words[w + W_HOLE_COUNT] = count + 1;
  }

  /** Takes [start, end) out of the gaps of the direction at words w; true when any of it was in one. */
  #fillHoles(w: number, start: number, end: number): boolean {
    const words = this.#words;
    let count = words[w + W_HOLE_COUNT]!;
    if (count === 0) return false;
    const base = w + W_HOLES;
    let filled = false;
    for (let i = 0; i < count; i++) {
      const h = base + i * 2;
      const holeStart = words[h]!;
      const holeEnd = words[h + 1]!;
      if (!after(end, holeStart) || !after(holeEnd, start)) continue;
      filled = true;
      const keepsHead = after(start, holeStart);
      const keepsTail = after(holeEnd, end);
      if (keepsHead && keepsTail) {
        // The segment splits the gap in two: the tail is a gap of its own, if there is room.
        words[h + 1] = start;
        if (count < MAX_HOLES) {
          words[base + count * 2] = end;
          words[base + count * 2 + 1] = holeEnd;
          count++;
        } else this.stats.gapsForgotten++;
      } else if (keepsHead) words[h + 1] = start;
      else if (keepsTail) words[h] = end;
      else {
        words.copyWithin(h, h + 2, base + count * 2);
        count--;
        i--;
      }
    }
    words[w + W_HOLE_COUNT] = count;
    return filled;
  }
}

/** a is after b in sequence space (RFC 9293 3.4: modulo 2^32). */
function after(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

