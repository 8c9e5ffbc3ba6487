// The layout of captured packets as they travel from the capture to the
// decoder: pcap-style records, the link types that say how a record's frame
// starts, and the byte reads every walk over them uses. The capture
// (netns/) writes this layout and flow/ reads it; this module is all that
// the two share, so it imports nothing.

/**
 * A batch of captured packets, as podflow's capture hands it to JavaScript and
 * as a classic pcap file stores it after its 24-byte file header: records of a
 * 16-byte header in host (little-endian) byte order, ts_sec u32, ts_usec u32,
 * caplen u32, wirelen u32, followed by caplen bytes, no padding. One record
 * iterator therefore serves live capture and pcap files alike.
 */
export const RECORD_HEADER_BYTES = 16;

/** libpcap link-layer header types (LINKTYPE_* values, as in pcap files). */
export const LinkType = {
  NULL: 0, // BSD loopback: 4-byte address family in the capturing host's byte order
  ETHERNET: 1,
  RAW: 101, // raw IPv4/IPv6 (also DLT_RAW_BSD and DLT_RAW_OPENBSD)
  LINUX_SLL: 113,
  LINUX_SLL2: 276,
  IPV4: 228,
  IPV6: 229,
  PPP: 9,
  PPP_HDLC: 50,
  C_HDLC: 104, // Cisco HDLC
  IEEE802_11: 105, // the same number as a DLT (in a PPI header)
  IEEE802_11_RADIOTAP: 127,
  PPI: 192, // Per-Packet Information header, then the DLT it names
  PPP_WITH_DIR: 204,
} as const;

// DLT_RAW as some BSDs number it; libpcap maps both to LINKTYPE_RAW in files,
// but captures written by other tools keep them.
export const DLT_RAW_BSD = 12;
export const DLT_RAW_OPENBSD = 14;

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

/** Where the record starting at `at` ends: its header and caplen bytes. */
export function recordEnd(buf: Uint8Array, at: number): number {
  return at + RECORD_HEADER_BYTES + readU32LE(buf, at + 8);
}

/** An unsigned 32-bit little-endian integer at `at` (a record header's fields). */
export function readU32LE(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
}

/** An unsigned 32-bit big-endian (network order) integer at `at`. */
export function readU32BE(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** An unsigned 32-bit integer at `at` in the byte order a file declares. */
export function readU32(buf: Uint8Array, at: number, littleEndian: boolean): number {
  return littleEndian ? readU32LE(buf, at) : readU32BE(buf, at);
}
