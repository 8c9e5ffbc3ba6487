// Shared shapes of the capture → decode → meter path. Pure data, no I/O.
import type { DnsFields } from './features/dns-flow.ts';
import type { TcpFields } from './features/tcp.ts';
import type { HttpFields } from './features/http-flow.ts';
import type { QuicFields } from './features/quic-flow.ts';
import type { TlsFields } from './features/tls-flow.ts';

/** libpcap link-layer header types (LINKTYPE_* values, as in pcap files). */
export const LinkType = {
  NULL: 0, // BSD loopback: 4-byte address family in the capturing host's byte order
  ETHERNET: 1,
  RAW: 101, // raw IPv4/IPv6 (also DLT_RAW 12 and 14 on some systems)
  LINUX_SLL: 113,
  LINUX_SLL2: 276,
  IPV4: 228,
  IPV6: 229,
  PPP: 9,
  PPP_HDLC: 50,
  C_HDLC: 104, // Cisco HDLC
  IEEE802_11: 105,
  IEEE802_11_RADIOTAP: 127,
  PPI: 192, // Per-Packet Information header, then the DLT it names
  PPP_WITH_DIR: 204,
} as const;

/**
 * A batch of captured packets, as podflow's capture hands it to JavaScript and
 * as a classic pcap file stores it after its 24-byte file header: records of a
 * 16-byte header in host (little-endian) byte order, ts_sec u32, ts_usec u32,
 * caplen u32, wirelen u32, followed by caplen bytes, no padding. One record
 * iterator therefore serves live capture and pcap files alike.
 */
export const RECORD_HEADER_BYTES = 16;

/**
 * A flag on a live capture's link type (never in a file: pcap link types are
 * 16 bits): each record's data starts with the VNET_HEADER_BYTES of the
 * kernel's struct virtio_net_hdr (PACKET_VNET_HDR; little-endian: flags u8,
 * gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16),
 * then the frame. caplen counts those bytes, wirelen is the frame's own
 * length. gso_size tells how many wire segments a GSO/GRO super-packet
 * stands for (flow/decode.ts, WIRE SEGMENTS).
 */
export const VNET_HEADER = 0x1_0000;
export const VNET_HEADER_BYTES = 10;

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
