// Shared shapes of the meter's output: the finished flow and why it ended.
// Pure data, no I/O. (The capture → decode layout is flow/records.ts.)
import type { DnsFields } from './features/dns-flow.ts';
import type { TcpFields } from './features/tcp.ts';
import type { HttpFields } from './features/http-flow.ts';
import type { QuicFields } from './features/quic-flow.ts';
import type { TlsFields } from './features/tls-flow.ts';

/** flowEndReason values, IANA IPFIX element 136 (RFC 5102). */
export const EndReason = {
  IDLE_TIMEOUT: 1,
  ACTIVE_TIMEOUT: 2,
  END_OF_FLOW: 3,
  FORCED_END: 4,
  LACK_OF_RESOURCES: 5,
} as const;
export type EndReason = (typeof EndReason)[keyof typeof EndReason];

/**
 * One finished bidirectional flow (RFC 5103 biflow). Created once per flow end,
 * never per packet. "Forward" is the direction of the first packet seen.
 * Field names follow the IANA IPFIX element names.
 */
export interface FlowRecord {
  /** Numeric observation point id (one per captured namespace × interface, or per replayed file). */
  observationPointId: number;
  ipVersion: 4 | 6;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  sourceAddress: Uint8Array;
  destinationAddress: Uint8Array;
  sourceTransportPort: number;
  destinationTransportPort: number;
  protocolIdentifier: number;
  /** 0 when untagged; the outer tag for QinQ. */
  vlanId: number;
  packetDeltaCount: number;
  /** Sum of IP total length (IPv6: payload length + 40), per direction. */
  octetDeltaCount: number;
  reversePacketDeltaCount: number;
  reverseOctetDeltaCount: number;
  tcpControlBits: number;
  reverseTcpControlBits: number;
  /** ICMP/ICMPv6 type * 256 + code of the first packet each way; 0 otherwise. */
  icmpTypeCode: number;
  reverseIcmpTypeCode: number;
  flowStartMilliseconds: number;
  flowEndMilliseconds: number;
  /** flowEndReason (IANA 136). */
  flowEndReason: EndReason;
  // Per-flow features (flow/features/flow-features.ts): each present only
  // when the feature is on and the flow had it.
  // At most one of the application features (dns, tls, quic, http).
  /** DNS (UDP or TCP port 53): the first transaction, counts, response codes and latencies. */
  dns?: DnsFields;
  /** TCP: the handshake at this point, and per direction retransmissions, out-of-order segments, zero windows, resets, MSS, window scale, options, TTL (docs/tcp.md). */
  tcp?: TcpFields;
  /** TLS over TCP: the hellos' server name, ALPN, version, JA3 and JA4. */
  tls?: TlsFields;
  /** QUIC: the client Initial's version, server name and ALPN. */
  quic?: QuicFields;
  /** HTTP/1.x: the first request's method, host, target and user agent, the first response's status. */
  http?: HttpFields;
}
