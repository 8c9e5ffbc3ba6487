// Packet decoder: link layer → IP → transport ports/flags, into one reused
// summary object.
//
// This is the hot path (every captured packet passes through it): hand-written
// byte reads at fixed offsets, no DataView, no allocation, no exceptions. Bad
// or truncated bytes make decode() return false and bump one plain-number
// counter for the reason.
import { DLT_RAW_BSD, DLT_RAW_OPENBSD, LinkType, readU32BE, VNET_HEADER, VNET_HEADER_BYTES } from './records.ts';

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const ETHERTYPE_QINQ_OLD = 0x9100;
const ETHERTYPE_MPLS = 0x8847;
const ETHERTYPE_MPLS_MULTICAST = 0x8848;
const ETHERTYPE_PPPOE_SESSION = 0x8864;
/** 802.1ah provider backbone bridging: an I-tag, then the customer's Ethernet frame. */
const ETHERTYPE_PBB = 0x88e7;
/** Cisco FabricPath: FTag and TTL, then the original Ethernet frame. */
const ETHERTYPE_FABRICPATH = 0x8903;

// PPP protocol numbers (RFC 1661 and the IANA registry).
const PPP_IPV4 = 0x0021;
const PPP_IPV6 = 0x0057;
const PPP_MPLS = 0x0281;
const PPP_MPLS_MULTICAST = 0x0283;
// Radiotap: the present bits of the TSFT and Flags fields, and the flags that
// change where the 802.11 frame's parts are.
const RADIOTAP_PRESENT_TSFT = 1 << 0;
const RADIOTAP_PRESENT_FLAGS = 1 << 1;
/** The frame ends with its 4-byte FCS. */
const RADIOTAP_FCS = 0x10;
/** The 802.11 header is padded to a multiple of 4 bytes. */
const RADIOTAP_DATA_PAD = 0x20;

// BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 differs
// (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS).
const AF_INET = 2;
const AF_INET6_NETBSD = 24;
const AF_INET6_FREEBSD = 28;
const AF_INET6_DARWIN = 30;

export const IpProtocol = {
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ICMPV6: 58,
  SCTP: 132,
} as const;

const PROTOCOL_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

/** A protocol number as people read it in a table ("TCP"); the number for the others. */
export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES[protocol] ?? String(protocol);
}

const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_AH = 51;
const IPV6_DESTINATION_OPTIONS = 60;

const IPV4_HEADER_MIN = 20;
const IPV6_HEADER = 40;

// WIRE SEGMENTS. On a veth or lo the kernel hands capture GSO/GRO/TSO
// super-packets: one buffer of up to 64 KiB (more with BIG TCP) where the
// wire carried many segments. A live capture's records carry the kernel's
// virtio_net_hdr (flow/records.ts VNET_HEADER): for such a buffer gso_type says
// what was segmented and gso_size how much payload each segment carries.
// With H the bytes of headers every segment repeats (link header through the
// innermost TCP/UDP header, tunnels inside the pod included), the wire saw
// ceil((wire length - H) / gso_size) segments, and (segments - 1) * H more
// bytes than the buffer holds. hdr_len is not used for H: it is only the
// linear part of the buffer, wrong when a tc program pulled data into it.
const VIRTIO_GSO_TCPV4 = 1;
const VIRTIO_GSO_UDP = 3; // UFO: IP fragments, each with the IP header only
const VIRTIO_GSO_TCPV6 = 4;
const VIRTIO_GSO_UDP_L4 = 5;
const VIRTIO_GSO_ECN = 0x80;
const IP_PROTOCOL_IPIP = 4;
const IP_PROTOCOL_IPV6 = 41;
const IP_PROTOCOL_GRE = 47;
const ETHERTYPE_TEB = 0x6558; // Ethernet inside GRE or Geneve
/** UDP destination ports of the tunnels whose inner headers each segment repeats: VXLAN (IANA, and Linux's default), Geneve. */
const VXLAN_PORTS = new Set([4789, 8472]);
const GENEVE_PORT = 6081;

/**
 * Fragment reassembly of ports only: the first fragment's ports are kept in a
 * direct-mapped table keyed by (src, dst, protocol, IP id), so later fragments
 * join the same flow. Direct mapping bounds memory without any bookkeeping: a
 * newer fragment train simply overwrites an older one in the same slot.
 */
const FRAGMENT_SLOTS = 1024;

/** One decoded packet. A single instance is reused for every packet. */
export interface DecodedPacket {
  /** 4 or 6. */
  ipVersion: 4 | 6;
  /** IPv4 uses [0] only (the rest stay 0); IPv6 uses all four words, network order. */
  readonly sourceAddress: Uint32Array;
  readonly destinationAddress: Uint32Array;
  /** Transport protocol (after the IPv6 extension headers). */
  protocol: number;
  /** TCP/UDP/SCTP ports; 0 for other protocols and for unmatched non-first fragments. */
  sourcePort: number;
  destinationPort: number;
  /** TCP flags byte (CWR..FIN); 0 for other protocols. */
  tcpFlags: number;
  /** ICMP/ICMPv6 type * 256 + code; 0 for other protocols. */
  icmpTypeCode: number;
  /** Outer 802.1Q/802.1ad VLAN id; 0 when untagged. */
  vlanId: number;
  /** Time to live (IPv4) or hop limit (IPv6) of the outer IP header. */
  ttl: number;
  /** A super-packet counted as its segments (packets > 1): the payload bytes of each but the last (gso_size); 0 otherwise. */
  segmentSize: number;
  /**
   * IP total length (IPv6: payload length + 40), as ipfixprobe counts bytes;
   * for a super-packet, summed over its wire segments. A length field of 0
   * (BIG TCP, an IPv6 jumbogram) counts the captured wire length instead.
   */
  octets: number;
  /** Packets the frame stands for on the wire: 1, or a super-packet's segments (WIRE SEGMENTS). */
  packets: number;
  /** Its bytes on the wire, link header included: the record's wire length, plus the headers each further segment repeats. */
  wireBytes: number;
  /**
   * For readers of more than the meter keys on (flow/features/): the buffer
   * the packet was decoded from, where its transport header starts (-1 when
   * none was read: another protocol, a later fragment) and where the
   * captured bytes end (snaplen may cut the packet short).
   */
  buffer: Uint8Array;
  transportOffset: number;
  capturedEnd: number;
  /**
   * Bytes from the transport header to the end of the IP packet, as its
   * length fields say (a super-packet: all its segments' payload behind one
   * header), whatever the capture kept of them.
   */
  transportBytes: number;
  /** When it was captured, microseconds since the epoch (set by flow/ingest.ts; the meter gets milliseconds). */
  timestampMicros: number;
}

/** Packets skipped, by reason. Plain numbers: bumped on the hot path, read at scrape time. */
export interface DecodeErrors {
  /** The link type is not one the decoder knows. */
  unknownLinkType: number;
  /** The frame ends inside its link-layer header (or a VLAN tag). */
  truncatedLink: number;
  /** A non-IP frame (ARP, LLDP, ...): skipped, not an error in the capture. */
  notIp: number;
  /** The frame ends inside the IP header or an IPv6 extension header. */
  truncatedIp: number;
  /** IP version nibble or IPv4 header length that cannot be right. */
  badIpHeader: number;
  /** The frame ends inside the transport header (ports, TCP flags, ICMP type). */
  truncatedTransport: number;
}

/** Super-packets (WIRE SEGMENTS): metered either way. */
export interface SegmentCounts {
  /** Buffers counted as their wire segments. */
  split: number;
  /** Buffers with a gso_size whose headers could not be read to the segmented payload (cut by snaplen, an unknown tunnel): counted as one packet. */
  unparsed: number;
}

/** Counts of fragment handling: metered, not skipped. */
export interface FragmentCounts {
  /** Non-first fragments given the ports of their first fragment. */
  joined: number;
  /** Non-first fragments whose first fragment was not seen: metered with ports 0. */
  orphaned: number;
}

export class PacketDecoder {
  readonly packet: DecodedPacket = {
    ipVersion: 4,
    sourceAddress: new Uint32Array(4),
    destinationAddress: new Uint32Array(4),
    protocol: 0,
    sourcePort: 0,
    destinationPort: 0,
    tcpFlags: 0,
    icmpTypeCode: 0,
    vlanId: 0,
    ttl: 0,
    segmentSize: 0,
    octets: 0,
    packets: 1,
    wireBytes: 0,
    buffer: new Uint8Array(0),
    transportOffset: -1,
    capturedEnd: 0,
    transportBytes: 0,
    timestampMicros: 0,
  };
  readonly errors: DecodeErrors = {
    unknownLinkType: 0,
    truncatedLink: 0,
    notIp: 0,
    truncatedIp: 0,
    badIpHeader: 0,
    truncatedTransport: 0,
  };
  readonly fragments: FragmentCounts = { joined: 0, orphaned: 0 };
  readonly segments: SegmentCounts = { split: 0, unparsed: 0 };
  // Where the frame, its IP header and its transport header start, and its
  // wire length, for lengths that come from the record rather than the
  // headers. #l4 is -1 until a transport header was read.
  #frameStart = 0;
  #wirelen = 0;
  #l3 = 0;
  #l4 = -1;
  // The next subframe of an 802.11 A-MSDU (-1: none), in #subframeBuf up to
  // #subframeEnd, and where the A-MSDU starts.
  #subframeAt = -1;
  #aggregateStart = 0;
  #subframeEnd = 0;
  #subframeBuf: Uint8Array = new Uint8Array(0);

  // Fragment table: per slot the key (version, protocol, id, 4+4 address
  // words) and the first fragment's ports.
  readonly #fragmentUsed = new Uint8Array(FRAGMENT_SLOTS);
  readonly #fragmentKey = new Uint32Array(FRAGMENT_SLOTS * 10);
  readonly #fragmentPorts = new Uint32Array(FRAGMENT_SLOTS);

  /**
   * Decodes the frame buf[offset, offset + caplen) of the given link type
   * (with VNET_HEADER: preceded by its virtio_net_hdr) into `packet`;
   * wirelen is the frame's length on the wire. Returns false (and counts the
   * reason) when it carries no meterable IP packet; never throws.
   */
  decode(linkType: number, buf: Uint8Array, offset: number, caplen: number, wirelen: number = caplen): boolean {
    let gsoType = 0;
    let gsoSize = 0;
    if (linkType >= VNET_HEADER) {
      if (caplen < VNET_HEADER_BYTES) return this.#truncatedLink();
      gsoType = buf[offset + 1]! & ~VIRTIO_GSO_ECN;
      gsoSize = buf[offset + 4]! | (buf[offset + 5]! << 8);
      offset += VNET_HEADER_BYTES;
      caplen -= VNET_HEADER_BYTES;
      linkType -= VNET_HEADER;
    }
    const p = this.packet;
    p.segmentSize = 0;
    p.packets = 1;
    p.wireBytes = wirelen;
    p.buffer = buf;
    p.transportOffset = -1;
    p.capturedEnd = offset + caplen;
    this.#frameStart = offset;
    this.#wirelen = wirelen;
    this.#l4 = -1;
    this.#subframeAt = -1;
    if (!this.#decodeFrame(linkType, buf, offset, caplen)) return false;
    if (gsoSize !== 0 && gsoType !== 0) this.#segment(buf, offset + caplen, gsoType, gsoSize);
    return true;
  }

  /** Whether the frame last decoded holds another packet (an 802.11 A-MSDU carries several): read it with decodeNext(). */
  get hasNext(): boolean {
    return this.#subframeAt >= 0;
  }

  /**
   * Decodes the next packet of the frame last decoded into `packet` (when
   * hasNext), as decode() does the first; its wire bytes are the first's.
   */
  decodeNext(): boolean {
    if (this.#subframeAt < 0) return false;
    const p = this.packet;
    p.packets = 1;
    p.wireBytes = 0;
    p.vlanId = 0;
    p.transportOffset = -1;
    p.capturedEnd = this.#subframeEnd;
    this.#l4 = -1;
    return this.#subframe();
  }

  #decodeFrame(linkType: number, buf: Uint8Array, offset: number, caplen: number): boolean {
    const end = offset + caplen;
    const p = this.packet;
    p.vlanId = 0;
    switch (linkType) {
      case LinkType.ETHERNET:
        if (caplen < 14) return this.#truncatedLink();
        return this.#ethertype(buf, offset + 12, end);
      case LinkType.LINUX_SLL:
        if (caplen < 16) return this.#truncatedLink();
        return this.#ethertype(buf, offset + 14, end);
      case LinkType.LINUX_SLL2:
        if (caplen < 20) return this.#truncatedLink();
        return this.#ethertypeAt(buf, (buf[offset]! << 8) | buf[offset + 1]!, offset + 20, end);
      case LinkType.NULL: {
        if (caplen < 4) return this.#truncatedLink();
        // Host byte order of the capturing machine: the family fits in one
        // byte, so whichever end holds it tells the order.
        const family = buf[offset]! !== 0 ? buf[offset]! : buf[offset + 3]!;
        if (family === AF_INET) return this.#ipv4(buf, offset + 4, end);
        if (family === AF_INET6_NETBSD || family === AF_INET6_FREEBSD || family === AF_INET6_DARWIN) {
          return this.#ipv6(buf, offset + 4, end);
        }
        this.errors.notIp++;
        return false;
      }
      case LinkType.RAW:
      case DLT_RAW_BSD:
      case DLT_RAW_OPENBSD:
        return this.#ipByVersion(buf, offset, end);
      case LinkType.IPV4:
        return this.#ipv4(buf, offset, end);
      case LinkType.IPV6:
        return this.#ipv6(buf, offset, end);
      case LinkType.PPP:
      case LinkType.PPP_HDLC:
        return this.#ppp(buf, offset, end);
      case LinkType.PPP_WITH_DIR:
        // A direction byte (sent or received), then PPP.
        return this.#ppp(buf, offset + 1, end);
      case LinkType.C_HDLC:
        // Address, control, then an EtherType.
        if (caplen < 4) return this.#truncatedLink();
        return this.#ethertypeAt(buf, (buf[offset + 2]! << 8) | buf[offset + 3]!, offset + 4, end);
      case LinkType.IEEE802_11:
        return this.#ieee80211(buf, offset, end);
      case LinkType.IEEE802_11_RADIOTAP: {
        // Version, pad, then the radiotap header's own length (little-endian).
        if (caplen < 4) return this.#truncatedLink();
        const length = buf[offset + 2]! | (buf[offset + 3]! << 8);
        if (length < 8 || length > caplen) return this.#truncatedLink();
        const flags = radiotapFlags(buf, offset, offset + length);
        return this.#ieee80211(buf, offset + length, flags & RADIOTAP_FCS ? end - 4 : end, (flags & RADIOTAP_DATA_PAD) !== 0);
      }
      case LinkType.PPI: {
        // Version, flags, length, then the DLT of what follows (all little-endian).
        if (caplen < 8) return this.#truncatedLink();
        const length = buf[offset + 2]! | (buf[offset + 3]! << 8);
        const dlt = buf[offset + 4]! | (buf[offset + 5]! << 8);
        if (length < 8 || length > caplen) return this.#truncatedLink();
        if (dlt === LinkType.IEEE802_11) return this.#ieee80211(buf, offset + length, end);
        if (dlt === LinkType.ETHERNET) return this.#ethertype(buf, offset + length + 12, end);
        this.errors.unknownLinkType++;
        return false;
      }
      default:
        this.errors.unknownLinkType++;
        return false;
    }
  }

  #truncatedLink(): false {
    this.errors.truncatedLink++;
    return false;
  }

  /** Reads the EtherType at `at` (the two bytes before the payload) and follows it. */
  #ethertype(buf: Uint8Array, at: number, end: number): boolean {
    if (at + 2 > end) return this.#truncatedLink();
    return this.#ethertypeAt(buf, (buf[at]! << 8) | buf[at + 1]!, at + 2, end);
  }

  /**
   * The payload of EtherType `firstType` at `payload`: IP, or through VLAN
   * tags (the outer one is the flow's), MPLS label stacks, PPPoE sessions,
   * 802.1ah I-tags, FabricPath headers and Ethernet pseudowires to the IP
   * packet inside. One loop, not calls nested per layer: every step moves
   * forward, so a frame of pseudowires inside pseudowires ends with the
   * frame, whatever its depth. IP comes first: it is nearly every frame.
   */
  #ethertypeAt(buf: Uint8Array, firstType: number, payload: number, end: number): boolean {
    let type = firstType;
    let at = payload;
    let outer = true;
    for (;;) {
      if (type === ETHERTYPE_IPV4) return this.#ipv4(buf, at, end);
      if (type === ETHERTYPE_IPV6) return this.#ipv6(buf, at, end);
      if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ || type === ETHERTYPE_QINQ_OLD) {
        if (at + 4 > end) return this.#truncatedLink();
        if (outer) {
          this.packet.vlanId = ((buf[at]! << 8) | buf[at + 1]!) & 0x0fff;
          outer = false;
        }
        type = (buf[at + 2]! << 8) | buf[at + 3]!;
        at += 4;
      } else if (type === ETHERTYPE_PBB || type === ETHERTYPE_FABRICPATH) {
        // I-tag (4 bytes) or FTag and TTL (2), then the inner frame's MACs and EtherType.
        const inner = at + (type === ETHERTYPE_PBB ? 4 : 2);
        if (inner + 14 > end) return this.#truncatedLink();
        type = (buf[inner + 12]! << 8) | buf[inner + 13]!;
        at = inner + 14;
      } else if (type === ETHERTYPE_MPLS || type === ETHERTYPE_MPLS_MULTICAST) {
        // The label stack to its bottom entry; then IPv4 or IPv6 by the first nibble, or (0) an Ethernet pseudowire.
        let bottom = false;
        while (!bottom) {
          if (at + 4 > end) return this.#truncatedLink();
          bottom = (buf[at + 2]! & 1) !== 0;
          at += 4;
        }
        if (at >= end) return this.#truncatedLink();
        const nibble = buf[at]! >> 4;
        if (nibble === 4) return this.#ipv4(buf, at, end);
        if (nibble === 6) return this.#ipv6(buf, at, end);
        if (nibble !== 0) {
          this.errors.notIp++;
          return false;
        }
        // An Ethernet pseudowire (RFC 4448), its control word optional. Like
        // tshark, read the frame without one if its EtherType is one to
        // follow there, else after a 4-byte control word.
        if (at + 14 > end) return this.#truncatedLink();
        type = (buf[at + 12]! << 8) | buf[at + 13]!;
        if (followedEtherType(type)) {
          at += 14;
        } else {
          if (at + 4 + 14 > end) return this.#truncatedLink();
          type = (buf[at + 16]! << 8) | buf[at + 17]!;
          at += 18;
        }
      } else if (type === ETHERTYPE_PPPOE_SESSION) {
        // Version/type, code, session id, length; then the PPP protocol.
        if (at + 8 > end) return this.#truncatedLink();
        type = etherTypeOfPpp((buf[at + 6]! << 8) | buf[at + 7]!);
        at += 8;
      } else {
        this.errors.notIp++;
        return false;
      }
    }
  }

  /** A PPP frame: HDLC address and control (0xff 0x03) if present, then the protocol (one byte when compressed: odd). */
  #ppp(buf: Uint8Array, at: number, end: number): boolean {
    // Routers' serial links in LINKTYPE_PPP files may carry Cisco HDLC
    // instead (unicast or broadcast address, then an EtherType), as tshark
    // and libpcap's own filters allow.
    if (at + 4 <= end && (buf[at] === 0x0f || buf[at] === 0x8f) && buf[at + 1] === 0x00) {
      return this.#ethertypeAt(buf, (buf[at + 2]! << 8) | buf[at + 3]!, at + 4, end);
    }
    if (at + 2 <= end && buf[at] === 0xff && buf[at + 1] === 0x03) at += 2;
    if (at >= end) return this.#truncatedLink();
    if ((buf[at]! & 1) !== 0) return this.#ethertypeAt(buf, etherTypeOfPpp(buf[at]!), at + 1, end);
    if (at + 2 > end) return this.#truncatedLink();
    return this.#ethertypeAt(buf, etherTypeOfPpp((buf[at]! << 8) | buf[at + 1]!), at + 2, end);
  }

  /**
   * An 802.11 frame: data frames with a body (not null data), unprotected,
   * three or four addresses, QoS and HT control fields (the header padded
   * to 4 bytes when radiotap says so), then LLC/SNAP and the EtherType, or
   * an A-MSDU of several such packets (the first here, the rest by
   * decodeNext). Management, control, null and protected frames carry no IP
   * packet podflow can read: not IP.
   */
  #ieee80211(buf: Uint8Array, at: number, end: number, padded = false): boolean {
    if (at + 24 > end) return this.#truncatedLink();
    const control = buf[at]!;
    const flags = buf[at + 1]!;
    const type = (control >> 2) & 3;
    const subtype = control >> 4;
    if (type !== 2 || (subtype & 0x4) !== 0 || (flags & 0x40) !== 0) {
      this.errors.notIp++;
      return false;
    }
    let header = 24;
    if ((flags & 0x3) === 0x3) header += 6; // to and from the distribution system: a fourth address
    let aggregate = false;
    if ((subtype & 0x8) !== 0) {
      if (at + header + 2 > end) return this.#truncatedLink();
      aggregate = (buf[at + header]! & 0x80) !== 0; // the QoS control's A-MSDU present bit
      header += (flags & 0x80) !== 0 ? 6 : 2; // QoS control, and HT control with the order bit
    }
    if (padded) header = (header + 3) & ~3;
    if (aggregate) {
      this.#subframeAt = this.#aggregateStart = at + header;
      this.#subframeEnd = end;
      this.#subframeBuf = buf;
      return this.#subframe();
    }
    return this.#snap(buf, at + header, end);
  }

  /** LLC/SNAP, then the EtherType it names. */
  #snap(buf: Uint8Array, llc: number, end: number): boolean {
    if (llc + 8 > end) return this.#truncatedLink();
    if (buf[llc] !== 0xaa || buf[llc + 1] !== 0xaa || buf[llc + 2] !== 0x03) {
      this.errors.notIp++;
      return false;
    }
    return this.#ethertypeAt(buf, (buf[llc + 6]! << 8) | buf[llc + 7]!, llc + 8, end);
  }

  /** The A-MSDU subframe at #subframeAt: destination, source, length, then its LLC/SNAP packet, padded to 4 bytes before the next. */
  #subframe(): boolean {
    const buf = this.#subframeBuf;
    const at = this.#subframeAt;
    const end = this.#subframeEnd;
    this.#subframeAt = -1;
    if (at + 14 > end) return this.#truncatedLink();
    const next = at + 14 + ((buf[at + 12]! << 8) | buf[at + 13]!);
    if (next > end) return this.#truncatedLink();
    // Subframes start at multiples of 4 bytes from the A-MSDU's start.
    const following = this.#aggregateStart + ((next - this.#aggregateStart + 3) & ~3);
    if (following + 14 <= end) this.#subframeAt = following;
    return this.#snap(buf, at + 14, next);
  }

  #ipByVersion(buf: Uint8Array, at: number, end: number): boolean {
    if (at >= end) {
      this.errors.truncatedIp++;
      return false;
    }
    const version = buf[at]! >> 4;
    if (version === 4) return this.#ipv4(buf, at, end);
    if (version === 6) return this.#ipv6(buf, at, end);
    this.errors.badIpHeader++;
    return false;
  }

  #ipv4(buf: Uint8Array, at: number, end: number): boolean {
    if (at + IPV4_HEADER_MIN > end) {
      this.errors.truncatedIp++;
      return false;
    }
    const versionAndLength = buf[at]!;
    const headerLength = (versionAndLength & 0x0f) * 4;
    if (versionAndLength >> 4 !== 4 || headerLength < IPV4_HEADER_MIN) {
      this.errors.badIpHeader++;
      return false;
    }
    if (at + headerLength > end) {
      this.errors.truncatedIp++;
      return false;
    }
    const p = this.packet;
    p.ipVersion = 4;
    this.#l3 = at;
    p.octets = ((buf[at + 2]! << 8) | buf[at + 3]!) || this.#wirelen - (at - this.#frameStart);
    p.ttl = buf[at + 8]!;
    p.protocol = buf[at + 9]!;
    const src = p.sourceAddress;
    const dst = p.destinationAddress;
    src[0] = readU32BE(buf, at + 12);
    dst[0] = readU32BE(buf, at + 16);
    src[1] = src[2] = src[3] = 0;
    dst[1] = dst[2] = dst[3] = 0;
    const flagsAndOffset = (buf[at + 6]! << 8) | buf[at + 7]!;
    const fragmentOffset = flagsAndOffset & 0x1fff;
    const moreFragments = (flagsAndOffset & 0x2000) !== 0;
    if (fragmentOffset === 0 && !moreFragments) return this.#transport(buf, at + headerLength, end);
    const id = (buf[at + 4]! << 8) | buf[at + 5]!;
    return this.#fragment(buf, at + headerLength, end, fragmentOffset === 0, id);
  }

  #ipv6(buf: Uint8Array, at: number, end: number): boolean {
    if (at + IPV6_HEADER > end) {
      this.errors.truncatedIp++;
      return false;
    }
    if (buf[at]! >> 4 !== 6) {
      this.errors.badIpHeader++;
      return false;
    }
    const p = this.packet;
    p.ipVersion = 6;
    this.#l3 = at;
    const payloadLength = (buf[at + 4]! << 8) | buf[at + 5]!;
    p.octets = payloadLength !== 0 ? payloadLength + IPV6_HEADER : this.#wirelen - (at - this.#frameStart);
    p.ttl = buf[at + 7]!;
    const src = p.sourceAddress;
    const dst = p.destinationAddress;
    for (let i = 0; i < 4; i++) {
      src[i] = readU32BE(buf, at + 8 + i * 4);
      dst[i] = readU32BE(buf, at + 24 + i * 4);
    }
    let next = buf[at + 6]!;
    let header = at + IPV6_HEADER;
    // Every extension header moves `header` forward by at least 8 bytes, so
    // the walk ends at the frame end at the latest.
    for (;;) {
      if (next === IPV6_HOP_BY_HOP || next === IPV6_ROUTING || next === IPV6_DESTINATION_OPTIONS) {
        if (header + 8 > end) break;
        next = buf[header]!;
        header += (buf[header + 1]! + 1) * 8;
      } else if (next === IPV6_AH) {
        if (header + 8 > end) break;
        next = buf[header]!;
        header += (buf[header + 1]! + 2) * 4;
      } else if (next === IPV6_FRAGMENT) {
        if (header + 8 > end) break;
        p.protocol = buf[header]!;
        const fragmentOffset = ((buf[header + 2]! << 8) | buf[header + 3]!) >> 3;
        const moreFragments = (buf[header + 3]! & 1) !== 0;
        const id = readU32BE(buf, header + 4);
        if (fragmentOffset === 0 && !moreFragments) {
          // An atomic fragment (RFC 6946): a whole packet, keep walking.
          next = p.protocol;
          header += 8;
          continue;
        }
        return this.#fragment(buf, header + 8, end, fragmentOffset === 0, id);
      } else {
        // Transport, or a header that ends the chain (ESP 50, no next 59).
        p.protocol = next;
        return this.#transport(buf, header, end);
      }
    }
    this.errors.truncatedIp++;
    return false;
  }

  /**
   * A fragment of a larger packet: the first one carries the ports and is
   * remembered; later ones borrow the ports of their first fragment.
   */
  #fragment(buf: Uint8Array, at: number, end: number, first: boolean, id: number): boolean {
    const p = this.packet;
    const src = p.sourceAddress;
    const dst = p.destinationAddress;
    let h = Math.imul(id ^ (p.protocol << 24) ^ p.ipVersion, 0x9e3779b1);
    for (let i = 0; i < 4; i++) {
      h = Math.imul(h ^ src[i]!, 0x85ebca6b);
      h = Math.imul(h ^ dst[i]!, 0xc2b2ae35);
    }
    const slot = (h ^ (h >>> 16)) & (FRAGMENT_SLOTS - 1);
    const key = this.#fragmentKey;
    const k = slot * 10;
    const tag = (p.ipVersion << 8) | p.protocol;
    if (first) {
      if (!this.#transport(buf, at, end)) return false;
      this.#fragmentUsed[slot] = 1;
      key[k] = tag;
      key[k + 1] = id;
      for (let i = 0; i < 4; i++) {
        key[k + 2 + i] = src[i]!;
        key[k + 6 + i] = dst[i]!;
      }
      this.#fragmentPorts[slot] = ((p.sourcePort << 16) | p.destinationPort) >>> 0;
      return true;
    }
    p.tcpFlags = 0;
    p.icmpTypeCode = 0;
    let known = this.#fragmentUsed[slot] === 1 && key[k] === tag && key[k + 1] === id;
    for (let i = 0; known && i < 4; i++) {
      known = key[k + 2 + i] === src[i] && key[k + 6 + i] === dst[i];
    }
    if (known) {
      const ports = this.#fragmentPorts[slot]!;
      p.sourcePort = ports >>> 16;
      p.destinationPort = ports & 0xffff;
      this.fragments.joined++;
    } else {
      p.sourcePort = 0;
      p.destinationPort = 0;
      this.fragments.orphaned++;
    }
    return true;
  }

  /** Reads only the transport fields the meter keys or counts on. */
  #transport(buf: Uint8Array, at: number, end: number): boolean {
    const p = this.packet;
    const protocol = p.protocol;
    this.#l4 = at;
    p.transportOffset = at;
    p.transportBytes = p.octets - (at - this.#l3);
    p.tcpFlags = 0;
    p.icmpTypeCode = 0;
    if (protocol === IpProtocol.TCP) {
      if (at + 14 > end) return this.#truncatedTransport();
      p.tcpFlags = buf[at + 13]!;
    } else if (protocol === IpProtocol.UDP || protocol === IpProtocol.SCTP) {
      if (at + 4 > end) return this.#truncatedTransport();
    } else {
      p.sourcePort = 0;
      p.destinationPort = 0;
      if (protocol === IpProtocol.ICMP || protocol === IpProtocol.ICMPV6) {
        if (at + 2 > end) return this.#truncatedTransport();
        p.icmpTypeCode = (buf[at]! << 8) | buf[at + 1]!;
      }
      return true;
    }
    p.sourcePort = (buf[at]! << 8) | buf[at + 1]!;
    p.destinationPort = (buf[at + 2]! << 8) | buf[at + 3]!;
    return true;
  }

  #truncatedTransport(): false {
    this.errors.truncatedTransport++;
    return false;
  }

  /** Counts a super-packet as its wire segments (WIRE SEGMENTS); frames ends at `end`. Not on the path of ordinary packets. */
  #segment(buf: Uint8Array, end: number, gsoType: number, gsoSize: number): void {
    const p = this.packet;
    const l4 = this.#l4;
    const known = gsoType === VIRTIO_GSO_TCPV4 || gsoType === VIRTIO_GSO_TCPV6 || gsoType === VIRTIO_GSO_UDP_L4;
    const payload = l4 < 0 ? -1 : gsoType === VIRTIO_GSO_UDP ? l4 : known ? segmentedPayload(buf, l4, end, p.protocol) : -1;
    if (payload < 0 || payload > end) {
      this.segments.unparsed++;
      return;
    }
    const headers = payload - this.#frameStart;
    const segments = Math.ceil((this.#wirelen - headers) / gsoSize);
    if (segments <= 1) return;
    this.segments.split++;
    p.packets = segments;
    p.segmentSize = gsoSize;
    p.octets += (segments - 1) * (payload - this.#l3);
    p.wireBytes += (segments - 1) * headers;
  }
}

/**
 * Where the payload that GSO cut into segments starts, for a transport
 * header of `protocol` at `at`: after TCP or UDP, or after the innermost TCP
 * or UDP header of a tunnel inside the pod (VXLAN, Geneve, GRE, IP in IP),
 * whose headers every segment repeats. -1 when the headers are cut short or
 * not known.
 */
function segmentedPayload(buf: Uint8Array, at: number, end: number, protocol: number): number {
  if (protocol === IpProtocol.TCP) return at + 13 <= end ? at + (buf[at + 12]! >> 4) * 4 : -1;
  if (protocol === IP_PROTOCOL_IPIP || protocol === IP_PROTOCOL_IPV6) return innerIp(buf, at, end);
  if (protocol === IP_PROTOCOL_GRE) {
    if (at + 4 > end) return -1;
    const flags = buf[at]!;
    const inner = at + 4 + (flags & 0x80 ? 4 : 0) + (flags & 0x20 ? 4 : 0) + (flags & 0x10 ? 4 : 0);
    const type = (buf[at + 2]! << 8) | buf[at + 3]!;
    return type === ETHERTYPE_TEB ? innerEthernet(buf, inner, end) : type === ETHERTYPE_IPV4 || type === ETHERTYPE_IPV6 ? innerIp(buf, inner, end) : -1;
  }
  if (protocol !== IpProtocol.UDP || at + 8 > end) return -1;
  const port = (buf[at + 2]! << 8) | buf[at + 3]!;
  const udpPayload = at + 8;
  if (VXLAN_PORTS.has(port)) return innerEthernet(buf, udpPayload + 8, end);
  if (port === GENEVE_PORT) {
    if (udpPayload + 8 > end) return -1;
    const type = (buf[udpPayload + 2]! << 8) | buf[udpPayload + 3]!;
    const inner = udpPayload + 8 + (buf[udpPayload]! & 0x3f) * 4;
    return type === ETHERTYPE_TEB ? innerEthernet(buf, inner, end) : -1;
  }
  return udpPayload;
}

function innerEthernet(buf: Uint8Array, at: number, end: number): number {
  let type = at + 14 <= end ? (buf[at + 12]! << 8) | buf[at + 13]! : 0;
  let next = at + 14;
  while ((type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) && next + 4 <= end) {
    type = (buf[next + 2]! << 8) | buf[next + 3]!;
    next += 4;
  }
  return type === ETHERTYPE_IPV4 || type === ETHERTYPE_IPV6 ? innerIp(buf, next, end) : -1;
}

function innerIp(buf: Uint8Array, at: number, end: number): number {
  if (at >= end) return -1;
  const version = buf[at]! >> 4;
  if (version === 4) {
    if (at + IPV4_HEADER_MIN > end) return -1;
    return segmentedPayload(buf, at + (buf[at]! & 0x0f) * 4, end, buf[at + 9]!);
  }
  if (version !== 6 || at + IPV6_HEADER > end) return -1;
  let next = buf[at + 6]!;
  let header = at + IPV6_HEADER;
  while ((next === IPV6_HOP_BY_HOP || next === IPV6_ROUTING || next === IPV6_DESTINATION_OPTIONS) && header + 8 <= end) {
    next = buf[header]!;
    header += (buf[header + 1]! + 1) * 8;
  }
  return segmentedPayload(buf, header, end, next);
}

/** The EtherType of what a PPP protocol number carries (0: nothing #ethertypeAt follows: LCP, IPCP, CHAP...). */
function etherTypeOfPpp(protocol: number): number {
  switch (protocol) {
    case PPP_IPV4:
      return ETHERTYPE_IPV4;
    case PPP_IPV6:
      return ETHERTYPE_IPV6;
    case PPP_MPLS:
      return ETHERTYPE_MPLS;
    case PPP_MPLS_MULTICAST:
      return ETHERTYPE_MPLS_MULTICAST;
    default:
      return 0;
  }
}

/**
 * The radiotap Flags field (0 when absent): after the present bitmaps
 * (extended while bit 31 is set), a TSFT field (8 bytes, 8-aligned from the
 * header's start) if present, then Flags.
 */
function radiotapFlags(buf: Uint8Array, start: number, end: number): number {
  let at = start + 4;
  let present = 0;
  for (let word = 0; ; word++) {
    if (at + 4 > end) return 0;
    // Little-endian words: TSFT and Flags are bits 0 and 1 of the first byte, the extension bit 7 of the last.
    if (word === 0) present = buf[at]!;
    at += 4;
    if ((buf[at - 1]! & 0x80) === 0) break;
  }
  if ((present & RADIOTAP_PRESENT_FLAGS) === 0) return 0;
  if (present & RADIOTAP_PRESENT_TSFT) at = start + ((at - start + 7) & ~7) + 8;
  return at < end ? buf[at]! : 0;
}

/** EtherTypes #ethertypeAt reads on from. */
function followedEtherType(type: number): boolean {
  switch (type) {
    case ETHERTYPE_IPV4:
    case ETHERTYPE_IPV6:
    case ETHERTYPE_VLAN:
    case ETHERTYPE_QINQ:
    case ETHERTYPE_QINQ_OLD:
    case ETHERTYPE_MPLS:
    case ETHERTYPE_MPLS_MULTICAST:
    case ETHERTYPE_PPPOE_SESSION:
    case ETHERTYPE_PBB:
    case ETHERTYPE_FABRICPATH:
      return true;
    default:
      return false;
  }
}
