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
// (one slot per flow, reset when the slot starts a new flow), so the state is
// bounded by the flow table and nothing is allocated per packet. Reading the
// TCP header here rather than in the decoder keeps its cost off flows and
// configurations that do not want it.
import type { DecodedPacket } from '../decode.ts';

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

// Per direction (index flow * 2 + direction), the sequence state:
// S_FLAGS bit 0: the end is known; bit 1: the first window is known; bit 2:
// the TTL is known.
const KNOWN_END = 1;
const KNOWN_WINDOW = 2;
const KNOWN_TTL = 4;

// Per direction, counters (Float64: bytes outgrow 32 bits).
const COUNT_STRIDE = 6;
const N_RETRANSMITTED_SEGMENTS = 0;
const N_RETRANSMITTED_BYTES = 1;
const N_OUT_OF_ORDER = 2;
const N_ZERO_WINDOW = 3;
const N_RESETS = 4;
const N_SEGMENTS = 5;

// Per direction, small values (Uint16): first window, MSS (0: none), window
// scale + 1 (0: none), TTL first, last, minimum, maximum.
const SMALL_STRIDE = 7;
const V_WINDOW = 0;
const V_MSS = 1;
const V_WINDOW_SCALE = 2;
const V_TTL_FIRST = 3;
const V_TTL_LAST = 4;
const V_TTL_MIN = 5;
const V_TTL_MAX = 6;

// Per flow, the handshake (Float64, microseconds; which are set says M_HANDSHAKE).
const HANDSHAKE_STRIDE = 4;
const H_SYN = 0; // the last SYN before the SYN/ACK
const H_SYN_ACK = 1; // the last SYN/ACK before the ACK
const H_SYN_TO_SYN_ACK = 2;
const H_SYN_ACK_TO_ACK = 3;

// Per flow (Uint32): which direction sent the SYN (0: none seen, else its
// direction + 1), the SYN's and the SYN/ACK's initial sequence numbers, the
// IP length of the flow's first packet when it was a bare SYN, and which
// handshake times are set (HS_* bits). Zero is a new flow's state
// throughout, so memory is touched only for slots the meter uses.
const META_STRIDE = 5;
const M_CLIENT = 0;
const M_CLIENT_ISN = 1;
const M_SERVER_ISN = 2;
const M_SYN_SIZE = 3;
const M_HANDSHAKE = 4;
const NO_CLIENT = 0;
const HS_SYN = 1 << H_SYN;
const HS_SYN_ACK = 1 << H_SYN_ACK;
const HS_SYN_TO_SYN_ACK = 1 << H_SYN_TO_SYN_ACK;
const HS_SYN_ACK_TO_ACK = 1 << H_SYN_ACK_TO_ACK;

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
  readonly #flags: Uint8Array;
  readonly #end: Uint32Array;
  /** Gaps per direction: MAX_HOLES pairs [start, end), oldest first; #holeCount of them in use. */
  readonly #holes: Uint32Array;
  readonly #holeCount: Uint8Array;
  readonly #counts: Float64Array;
  readonly #small: Uint16Array;
  /** Option kinds seen per direction: kinds 0-31 in word 0, 32-63 in word 1, bit k % 32. */
  readonly #options: Uint32Array;
  readonly #handshake: Float64Array;
  readonly #meta: Uint32Array;

  /** State for the meter's flow slots 0 .. maxFlows - 1. */
  constructor(maxFlows: number) {
    const directions = maxFlows * 2;
    this.#flags = new Uint8Array(directions);
    this.#end = new Uint32Array(directions);
    this.#holes = new Uint32Array(directions * MAX_HOLES * 2);
    this.#holeCount = new Uint8Array(directions);
    this.#counts = new Float64Array(directions * COUNT_STRIDE);
    this.#small = new Uint16Array(directions * SMALL_STRIDE);
    this.#options = new Uint32Array(directions * 2);
    this.#handshake = new Float64Array(maxFlows * HANDSHAKE_STRIDE);
    this.#meta = new Uint32Array(maxFlows * META_STRIDE);
  }

  /** Flow slot `flow` ended: its fields, for its record; the slot starts afresh. */
  end(flow: number): TcpFields {
    const fields = this.fields(flow);
    this.#forget(flow);
    return fields;
  }

  #forget(flow: number): void {
    for (let d = flow * 2; d < flow * 2 + 2; d++) {
      this.#flags[d] = 0;
      this.#holeCount[d] = 0;
      this.#options[d * 2] = 0;
      this.#options[d * 2 + 1] = 0;
      this.#counts.fill(0, d * COUNT_STRIDE, (d + 1) * COUNT_STRIDE);
      this.#small.fill(0, d * SMALL_STRIDE, (d + 1) * SMALL_STRIDE);
    }
    this.#meta.fill(0, flow * META_STRIDE, (flow + 1) * META_STRIDE);
  }

  /** One TCP packet of the flow in slot `flow`, in `direction` (0: the way its first packet went). */
  packet(flow: number, direction: number, p: DecodedPacket): void {
    const buf = p.buffer;
    const at = p.transportOffset;
    if (at < 0 || at + TCP_HEADER_MIN > p.capturedEnd) {
      this.stats.truncatedHeaders++;
      return;
    }
    const d = flow * 2 + direction;
    // Every packet read sets its direction's first window: none yet in either, it is the flow's first.
    const first = ((this.#flags[flow * 2]! | this.#flags[flow * 2 + 1]!) & KNOWN_WINDOW) === 0;
    const flags = buf[at + 13]!;
    const seq = readU32(buf, at + 4);
    const ack = readU32(buf, at + 8);
    const window = (buf[at + 14]! << 8) | buf[at + 15]!;
    const headerBytes = (buf[at + 12]! >> 4) * 4;
    const payload = Math.max(0, p.transportBytes - headerBytes);
    const segments = p.packets;

    const small = this.#small;
    const v = d * SMALL_STRIDE;
    const state = this.#flags[d]!;
    if ((state & KNOWN_WINDOW) === 0) {
      small[v + V_WINDOW] = window;
      this.#flags[d] = state | KNOWN_WINDOW;
    }
    this.#ttl(d, p.ttl);
    if (headerBytes > TCP_HEADER_MIN) this.#readOptions(d, buf, at + TCP_HEADER_MIN, at + headerBytes, p.capturedEnd, (flags & TCP_SYN) !== 0);

    const counts = this.#counts;
    const c = d * COUNT_STRIDE;
    if ((flags & TCP_RST) !== 0) counts[c + N_RESETS]! += 1;
    else if (window === 0 && (flags & TCP_SYN) === 0) counts[c + N_ZERO_WINDOW]! += segments;

    this.#handshakeStep(flow, direction, flags, seq, ack, p.timestampMicros, first ? p.octets : 0);

    // Sequence space: payload, and one each for SYN and FIN. A RST's payload
    // (a diagnostic, RFC 9293 3.5.3) is not stream data.
    if ((flags & TCP_RST) !== 0) return;
    const length = payload + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0);
    if (length === 0) return;
    counts[c + N_SEGMENTS]! += segments;
    this.#sequence(d, seq, length, payload, segments, p.segmentSize);
  }

  /** The fields of flow `flow`, for its record. */
  fields(flow: number): TcpFields {
    const h = flow * HANDSHAKE_STRIDE;
    const m = flow * META_STRIDE;
    const client = this.#meta[m + M_CLIENT]!;
    const known = this.#meta[m + M_HANDSHAKE]!;
    return {
      synToSynAckMicros: (known & HS_SYN_TO_SYN_ACK) !== 0 ? this.#handshake[h + H_SYN_TO_SYN_ACK]! : undefined,
      synAckToAckMicros: (known & HS_SYN_ACK_TO_ACK) !== 0 ? this.#handshake[h + H_SYN_ACK_TO_ACK]! : undefined,
      clientDirection: client === NO_CLIENT ? undefined : client === 1 ? 'forward' : 'reverse',
      synSize: this.#meta[m + M_SYN_SIZE]!,
      forward: this.#direction(flow * 2),
      reverse: this.#direction(flow * 2 + 1),
    };
  }

  #direction(d: number): TcpDirection {
    const counts = this.#counts;
    const c = d * COUNT_STRIDE;
    const small = this.#small;
    const v = d * SMALL_STRIDE;
    const flags = this.#flags[d]!;
    const ttlKnown = (flags & KNOWN_TTL) !== 0;
    const optionKinds: number[] = [];
    for (let kind = 0; kind < 64; kind++) {
      if ((this.#options[d * 2 + (kind >> 5)]! & (1 << (kind & 31))) !== 0) optionKinds.push(kind);
    }
    return {
      segments: counts[c + N_SEGMENTS]!,
      retransmittedSegments: counts[c + N_RETRANSMITTED_SEGMENTS]!,
      retransmittedBytes: counts[c + N_RETRANSMITTED_BYTES]!,
      outOfOrderSegments: counts[c + N_OUT_OF_ORDER]!,
      zeroWindowSegments: counts[c + N_ZERO_WINDOW]!,
      resets: counts[c + N_RESETS]!,
      initialWindow: (flags & KNOWN_WINDOW) !== 0 ? small[v + V_WINDOW]! : undefined,
      maximumSegmentSize: small[v + V_MSS]! !== 0 ? small[v + V_MSS]! : undefined,
      windowScale: small[v + V_WINDOW_SCALE]! !== 0 ? small[v + V_WINDOW_SCALE]! - 1 : undefined,
      optionKinds,
      ttlFirst: ttlKnown ? small[v + V_TTL_FIRST]! : undefined,
      ttlLast: ttlKnown ? small[v + V_TTL_LAST]! : undefined,
      ttlMinimum: ttlKnown ? small[v + V_TTL_MIN]! : undefined,
      ttlMaximum: ttlKnown ? small[v + V_TTL_MAX]! : undefined,
    };
  }

  #ttl(d: number, ttl: number): void {
    const small = this.#small;
    const v = d * SMALL_STRIDE;
    const state = this.#flags[d]!;
    if ((state & KNOWN_TTL) === 0) {
      this.#flags[d] = state | KNOWN_TTL;
      small[v + V_TTL_FIRST] = small[v + V_TTL_MIN] = small[v + V_TTL_MAX] = ttl;
    } else if (ttl < small[v + V_TTL_MIN]!) small[v + V_TTL_MIN] = ttl;
    else if (ttl > small[v + V_TTL_MAX]!) small[v + V_TTL_MAX] = ttl;
    small[v + V_TTL_LAST] = ttl;
  }

  /**
   * Walks the options in buf[at, headerEnd), as far as the capture holds
   * them (capturedEnd): every kind below 64 is noted; a SYN's MSS and window
   * scale are kept.
   */
  #readOptions(d: number, buf: Uint8Array, at: number, headerEnd: number, capturedEnd: number, syn: boolean): void {
    const options = this.#options;
    const o = d * 2;
    while (at < headerEnd && at < capturedEnd) {
      const kind = buf[at]!;
      if (kind < 64) options[o + (kind >> 5)] = options[o + (kind >> 5)]! | (1 << (kind & 31));
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
      if (syn && kind === OPTION_MSS && length === 4) this.#small[d * SMALL_STRIDE + V_MSS] = (buf[at + 2]! << 8) | buf[at + 3]!;
      else if (syn && kind === OPTION_WINDOW_SCALE && length === 3) this.#small[d * SMALL_STRIDE + V_WINDOW_SCALE] = buf[at + 2]! + 1;
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
    const hs = this.#handshake;
    const h = flow * HANDSHAKE_STRIDE;
    const meta = this.#meta;
    const m = flow * META_STRIDE;
    const known = meta[m + M_HANDSHAKE]!;
    if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_SYN) {
      if (firstLength !== 0 && flags === TCP_SYN) meta[m + M_SYN_SIZE] = firstLength;
      if ((known & HS_SYN_TO_SYN_ACK) !== 0) return;
      meta[m + M_CLIENT] = direction + 1;
      meta[m + M_CLIENT_ISN] = seq;
      hs[h + H_SYN] = timeMicros;
      meta[m + M_HANDSHAKE] = known | HS_SYN;
      return;
    }
    const client = meta[m + M_CLIENT]! - 1;
    if (client < 0 || (flags & TCP_ACK) === 0) return;
    if ((flags & TCP_SYN) !== 0) {
      if (direction === client || ack !== ((meta[m + M_CLIENT_ISN]! + 1) >>> 0)) return;
      let now = known;
      if ((now & HS_SYN_TO_SYN_ACK) === 0) {
        hs[h + H_SYN_TO_SYN_ACK] = timeMicros - hs[h + H_SYN]!;
        meta[m + M_SERVER_ISN] = seq;
        now |= HS_SYN_TO_SYN_ACK;
      }
      if ((now & HS_SYN_ACK_TO_ACK) === 0) {
        hs[h + H_SYN_ACK] = timeMicros;
        now |= HS_SYN_ACK;
      }
      meta[m + M_HANDSHAKE] = now;
      return;
    }
    if (
      direction === client &&
      (known & (HS_SYN_ACK | HS_SYN_ACK_TO_ACK)) === HS_SYN_ACK &&
      ack === ((meta[m + M_SERVER_ISN]! + 1) >>> 0)
    ) {
      hs[h + H_SYN_ACK_TO_ACK] = timeMicros - hs[h + H_SYN_ACK]!;
      meta[m + M_HANDSHAKE] = known | HS_SYN_ACK_TO_ACK;
    }
  }

  /** Sequence space [seq, seq + length) sent in direction d (payload bytes of it, in `segments` wire segments of segmentSize payload bytes). */
  #sequence(d: number, seq: number, length: number, payload: number, segments: number, segmentSize: number): void {
    const end = (seq + length) >>> 0;
    const flags = this.#flags[d]!;
    if ((flags & KNOWN_END) === 0) {
      this.#flags[d] = flags | KNOWN_END;
      this.#end[d] = end;
      return;
    }
    const known = this.#end[d]!;
    const counts = this.#counts;
    const c = d * COUNT_STRIDE;
    if (after(seq, known)) {
      // Bytes [known, seq) were not seen: a gap, filled later by an out-of-order or a retransmitted segment.
      this.#addHole(d, known, seq);
      this.#end[d] = end;
      return;
    }
    if (!after(end, known)) {
      // Wholly below the end: new bytes only if it falls in a gap.
      if (this.#fillHoles(d, seq, end)) counts[c + N_OUT_OF_ORDER]! += segments;
      else {
        counts[c + N_RETRANSMITTED_SEGMENTS]! += segments;
        counts[c + N_RETRANSMITTED_BYTES]! += payload;
      }
      return;
    }
    // Straddles the end: the part below it is repeated (in the segments that held it), the rest is new.
    const repeated = (known - seq) >>> 0;
    if (repeated > 0 && !this.#fillHoles(d, seq, known)) {
      counts[c + N_RETRANSMITTED_SEGMENTS]! += segmentSize > 0 ? Math.min(segments, Math.ceil(repeated / segmentSize)) : 1;
      counts[c + N_RETRANSMITTED_BYTES]! += Math.min(repeated, payload);
    }
    this.#end[d] = end;
  }

  #addHole(d: number, start: number, end: number): void {
    const holes = this.#holes;
    const base = d * MAX_HOLES * 2;
    let count = this.#holeCount[d]!;
    if (count === MAX_HOLES) {
      this.stats.gapsForgotten++;
      holes.copyWithin(base, base + 2, base + MAX_HOLES * 2);
      count--;
    }
    holes[base + count * 2] = start;
    holes[base + count * 2 + 1] = end;
    this.#holeCount[d] = count + 1;
  }

  /** Takes [start, end) out of direction d's gaps; true when any of it was in one. */
  #fillHoles(d: number, start: number, end: number): boolean {
    let count = this.#holeCount[d]!;
    if (count === 0) return false;
    const holes = this.#holes;
    const base = d * MAX_HOLES * 2;
    let filled = false;
    for (let i = 0; i < count; i++) {
      const h = base + i * 2;
      const holeStart = holes[h]!;
      const holeEnd = holes[h + 1]!;
      if (!after(end, holeStart) || !after(holeEnd, start)) continue;
      filled = true;
      const keepsHead = after(start, holeStart);
      const keepsTail = after(holeEnd, end);
      if (keepsHead && keepsTail) {
        // The segment splits the gap in two: the tail is a gap of its own, if there is room.
        holes[h + 1] = start;
        if (count < MAX_HOLES) {
          holes[base + count * 2] = end;
          holes[base + count * 2 + 1] = holeEnd;
          count++;
        } else this.stats.gapsForgotten++;
      } else if (keepsHead) holes[h + 1] = start;
      else if (keepsTail) holes[h] = end;
      else {
        holes.copyWithin(h, h + 2, base + count * 2);
        count--;
        i--;
      }
    }
    this.#holeCount[d] = count;
    return filled;
  }
}

/** a is after b in sequence space (RFC 9293 3.4: modulo 2^32). */
function after(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
