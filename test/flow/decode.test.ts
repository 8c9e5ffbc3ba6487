import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketDecoder } from '../../flow/decode.ts';
import { LinkType } from '../../flow/records.ts';
import {
  authenticationHeader, bsdLoopback, concat, ethernet, extension, fragmentHeader, icmp, ipv4, ipv6, linuxSll, linuxSll2,
  sctp, tcp, TCP_ACK, TCP_SYN, udp, v4, v6,
} from '../helpers/packets.ts';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const SCTP = 132;
const GRE = 47;

function decode(linkType: number, frame: Uint8Array, decoder = new PacketDecoder()) {
  const ok = decoder.decode(linkType, frame, 0, frame.length);
  const p = decoder.packet;
  return {
    ok,
    decoder,
    packet: {
      ipVersion: p.ipVersion,
      source: [...p.sourceAddress],
      destination: [...p.destinationAddress],
      protocol: p.protocol,
      sourcePort: p.sourcePort,
      destinationPort: p.destinationPort,
      tcpFlags: p.tcpFlags,
      icmpTypeCode: p.icmpTypeCode,
      vlanId: p.vlanId,
      octets: p.octets,
    },
  };
}

function word(bytes: number[], at = 0): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

function words4(text: string): number[] {
  return [word(v4(text)), 0, 0, 0];
}

function words6(text: string): number[] {
  const b = v6(text);
  return [word(b, 0), word(b, 4), word(b, 8), word(b, 12)];
}

const tcpV4 = ipv4({ protocol: TCP, source: '198.18.0.1', destination: '198.18.0.2', payload: tcp(40000, 443, TCP_SYN | TCP_ACK, 10) });

test('decodes a TCP/IPv4 Ethernet frame: addresses, ports, flags and IP total length', () => {
  const { ok, packet } = decode(LinkType.ETHERNET, ethernet(0x0800, tcpV4));
  assert.equal(ok, true);
  assert.deepEqual(packet, {
    ipVersion: 4, source: words4('198.18.0.1'), destination: words4('198.18.0.2'), protocol: TCP,
    sourcePort: 40000, destinationPort: 443, tcpFlags: TCP_SYN | TCP_ACK, icmpTypeCode: 0, vlanId: 0, octets: 50,
  });
});

test('gives the TTL or hop limit of the outer IP header', () => {
  const d = new PacketDecoder();
  const four = ethernet(0x0800, ipv4({ protocol: TCP, source: '198.18.0.1', destination: '198.18.0.2', ttl: 37, payload: tcp(1, 2, TCP_ACK) }));
  assert.ok(d.decode(LinkType.ETHERNET, four, 0, four.length));
  assert.equal(d.packet.ttl, 37);
  const six = ipv6({ next: TCP, source: 'fd00::1', destination: 'fd00::2', payload: tcp(1, 2, TCP_ACK) });
  six[7] = 250;
  assert.ok(d.decode(LinkType.RAW, six, 0, six.length));
  assert.equal(d.packet.ttl, 250);
});

test('keeps the outer VLAN id of 802.1Q and QinQ tags (0x8100, 0x88a8, 0x9100)', () => {
  assert.equal(decode(LinkType.ETHERNET, ethernet(0x0800, tcpV4, [[0x8100, 42]])).packet.vlanId, 42);
  for (const outer of [0x88a8, 0x9100]) {
    const { ok, packet } = decode(LinkType.ETHERNET, ethernet(0x0800, tcpV4, [[outer, 100], [0x8100, 7]]));
    assert.equal(ok, true);
    assert.equal(packet.vlanId, 100);
    assert.equal(packet.destinationPort, 443);
  }
});

test('resets the VLAN id for an untagged frame after a tagged one', () => {
  const decoder = new PacketDecoder();
  decode(LinkType.ETHERNET, ethernet(0x0800, tcpV4, [[0x8100, 42]]), decoder);
  assert.equal(decode(LinkType.ETHERNET, ethernet(0x0800, tcpV4), decoder).packet.vlanId, 0);
});

test('decodes Linux cooked captures, v1 (SLL) and v2 (SLL2)', () => {
  assert.equal(decode(LinkType.LINUX_SLL, linuxSll(0x0800, tcpV4)).packet.destinationPort, 443);
  assert.equal(decode(LinkType.LINUX_SLL2, linuxSll2(0x0800, tcpV4)).packet.destinationPort, 443);
  const six = ipv6({ next: UDP, source: 'fd00::1', destination: 'fd00::2', payload: udp(5353, 53) });
  assert.equal(decode(LinkType.LINUX_SLL2, linuxSll2(0x86dd, six)).packet.ipVersion, 6);
});

test('decodes BSD loopback frames with the address family in either byte order', () => {
  const six = ipv6({ next: UDP, source: 'fd00::1', destination: 'fd00::2', payload: udp(1, 2) });
  for (const littleEndian of [true, false]) {
    assert.equal(decode(LinkType.NULL, bsdLoopback(2, littleEndian, tcpV4)).packet.ipVersion, 4);
    for (const family of [24, 28, 30]) {
      const { ok, packet } = decode(LinkType.NULL, bsdLoopback(family, littleEndian, six));
      assert.equal(ok, true);
      assert.equal(packet.ipVersion, 6);
    }
  }
});

test('decodes raw IP link types by version nibble (101, 12, 14) or by type (228, 229)', () => {
  const six = ipv6({ next: TCP, source: 'fd00::1', destination: 'fd00::2', payload: tcp(1, 2, TCP_SYN) });
  for (const raw of [LinkType.RAW, 12, 14]) {
    assert.equal(decode(raw, tcpV4).packet.ipVersion, 4);
    assert.equal(decode(raw, six).packet.ipVersion, 6);
  }
  assert.equal(decode(LinkType.IPV4, tcpV4).ok, true);
  assert.equal(decode(LinkType.IPV6, six).packet.octets, 60);
});

test('skips IPv4 options to reach the transport header', () => {
  const frame = ipv4({ protocol: UDP, source: '10.0.0.1', destination: '10.0.0.2', payload: udp(68, 67), options: [0x94, 4, 0, 0, 1, 1, 1, 0] });
  const { ok, packet } = decode(LinkType.RAW, frame);
  assert.equal(ok, true);
  assert.equal(packet.sourcePort, 68);
  assert.equal(packet.octets, 36);
});

test('reads SCTP ports, ICMP and ICMPv6 type/code, and no ports for other protocols', () => {
  const sctpFrame = ipv4({ protocol: SCTP, source: '10.0.0.1', destination: '10.0.0.2', payload: sctp(3868, 3869) });
  assert.deepEqual([decode(LinkType.RAW, sctpFrame).packet.sourcePort, decode(LinkType.RAW, sctpFrame).packet.destinationPort], [3868, 3869]);
  const ping = decode(LinkType.RAW, ipv4({ protocol: ICMP, source: '10.0.0.1', destination: '10.0.0.2', payload: icmp(8, 0) })).packet;
  assert.deepEqual([ping.icmpTypeCode, ping.sourcePort, ping.destinationPort], [8 * 256, 0, 0]);
  const unreachable = decode(LinkType.RAW, ipv6({ next: ICMPV6, source: 'fd00::1', destination: 'fd00::2', payload: icmp(1, 4) })).packet;
  assert.equal(unreachable.icmpTypeCode, 1 * 256 + 4);
  const gre = decode(LinkType.RAW, ipv4({ protocol: GRE, source: '10.0.0.1', destination: '10.0.0.2', payload: udp(1, 2) }));
  assert.deepEqual([gre.ok, gre.packet.protocol, gre.packet.sourcePort, gre.packet.destinationPort], [true, GRE, 0, 0]);
});

test('follows the IPv6 extension header chain: hop-by-hop, routing, destination options, AH', () => {
  const payload = concat(extension(43), extension(60, 16), extension(51), authenticationHeader(TCP, 16), tcp(5000, 80, TCP_SYN));
  const { ok, packet } = decode(LinkType.RAW, ipv6({ next: 0, source: 'fd00::1', destination: 'fd00::2', payload }));
  assert.equal(ok, true);
  assert.deepEqual([packet.protocol, packet.sourcePort, packet.destinationPort, packet.tcpFlags], [TCP, 5000, 80, TCP_SYN]);
  assert.deepEqual(packet.source, words6('fd00::1'));
  assert.equal(packet.octets, 40 + payload.length);
});

test('stops the IPv6 chain at ESP, which hides the transport', () => {
  const { ok, packet } = decode(LinkType.RAW, ipv6({ next: 50, source: 'fd00::1', destination: 'fd00::2', payload: new Uint8Array(16) }));
  assert.deepEqual([ok, packet.protocol, packet.sourcePort], [true, 50, 0]);
});

test('gives later IPv4 fragments the ports of their first fragment', () => {
  const decoder = new PacketDecoder();
  const first = ipv4({ protocol: UDP, source: '10.0.0.1', destination: '10.0.0.2', id: 77, moreFragments: true, payload: udp(5000, 53, 16) });
  const second = ipv4({ protocol: UDP, source: '10.0.0.1', destination: '10.0.0.2', id: 77, fragmentOffset: 3, payload: new Uint8Array(24) });
  assert.equal(decode(LinkType.RAW, first, decoder).packet.sourcePort, 5000);
  const later = decode(LinkType.RAW, second, decoder);
  assert.deepEqual([later.ok, later.packet.sourcePort, later.packet.destinationPort, later.packet.octets], [true, 5000, 53, 44]);
  assert.deepEqual(decoder.fragments, { joined: 1, orphaned: 0 });
});

test('meters a fragment without a known first fragment with ports 0 and counts it', () => {
  const decoder = new PacketDecoder();
  const orphan = ipv4({ protocol: UDP, source: '10.0.0.1', destination: '10.0.0.2', id: 78, fragmentOffset: 3, payload: new Uint8Array(8) });
  const { ok, packet } = decode(LinkType.RAW, orphan, decoder);
  assert.deepEqual([ok, packet.sourcePort, packet.destinationPort], [true, 0, 0]);
  // Same addresses, other IP id: still unknown.
  const first = ipv4({ protocol: UDP, source: '10.0.0.1', destination: '10.0.0.2', id: 79, moreFragments: true, payload: udp(1, 2) });
  decode(LinkType.RAW, first, decoder);
  decode(LinkType.RAW, orphan, decoder);
  assert.deepEqual(decoder.fragments, { joined: 0, orphaned: 2 });
});

test('gives later IPv6 fragments the ports of their first fragment', () => {
  const decoder = new PacketDecoder();
  const first = ipv6({ next: 44, source: 'fd00::1', destination: 'fd00::2', payload: concat(fragmentHeader(UDP, 0, true, 0xdeadbeef), udp(7000, 53, 8)) });
  const second = ipv6({ next: 44, source: 'fd00::1', destination: 'fd00::2', payload: concat(fragmentHeader(UDP, 2, false, 0xdeadbeef), new Uint8Array(8)) });
  assert.equal(decode(LinkType.RAW, first, decoder).packet.sourcePort, 7000);
  const later = decode(LinkType.RAW, second, decoder).packet;
  assert.deepEqual([later.protocol, later.sourcePort, later.destinationPort], [UDP, 7000, 53]);
  assert.deepEqual(decoder.fragments, { joined: 1, orphaned: 0 });
});

test('decodes an atomic IPv6 fragment (offset 0, no more fragments) as a whole packet', () => {
  const decoder = new PacketDecoder();
  const atomic = ipv6({ next: 44, source: 'fd00::1', destination: 'fd00::2', payload: concat(fragmentHeader(TCP, 0, false, 9), tcp(1, 2, TCP_ACK)) });
  const { packet } = decode(LinkType.RAW, atomic, decoder);
  assert.deepEqual([packet.protocol, packet.sourcePort, packet.tcpFlags], [TCP, 1, TCP_ACK]);
  assert.deepEqual(decoder.fragments, { joined: 0, orphaned: 0 });
});

test('skips non-IP frames and counts them as not IP', () => {
  const arp = ethernet(0x0806, new Uint8Array(28));
  const { ok, decoder } = decode(LinkType.ETHERNET, arp);
  assert.equal(ok, false);
  assert.equal(decoder.errors.notIp, 1);
  assert.equal(decode(LinkType.NULL, bsdLoopback(7, true, tcpV4)).decoder.errors.notIp, 1);
});

test('counts truncated and malformed frames by reason and never throws', () => {
  const decoder = new PacketDecoder();
  const frame = ethernet(0x0800, tcpV4, [[0x8100, 5]]);
  const at = (caplen: number) => decoder.decode(LinkType.ETHERNET, frame, 0, caplen);
  assert.equal(at(10), false); // inside the MAC addresses
  assert.equal(at(16), false); // inside the VLAN tag
  assert.equal(at(18 + 19), false); // inside the IP header
  assert.equal(at(18 + 20 + 13), false); // before the TCP flags
  assert.equal(at(18 + 20 + 14), true); // enough for ports and flags
  const badVersion = Uint8Array.from(tcpV4);
  badVersion[0] = 0x55;
  assert.equal(decoder.decode(LinkType.RAW, badVersion, 0, badVersion.length), false);
  const shortHeader = Uint8Array.from(tcpV4);
  shortHeader[0] = 0x44;
  assert.equal(decoder.decode(LinkType.IPV4, shortHeader, 0, shortHeader.length), false);
  assert.equal(decoder.decode(LinkType.IPV6, tcpV4, 0, 30), false);
  assert.equal(decoder.decode(147, tcpV4, 0, tcpV4.length), false);
  assert.deepEqual(decoder.errors, {
    unknownLinkType: 1, truncatedLink: 2, notIp: 0, truncatedIp: 2, badIpHeader: 2, truncatedTransport: 1,
  });
});

test('counts an IPv6 extension header cut off by the capture as truncated IP', () => {
  const decoder = new PacketDecoder();
  const frame = ipv6({ next: 0, source: 'fd00::1', destination: 'fd00::2', payload: concat(extension(TCP), tcp(1, 2, 0)) });
  assert.equal(decoder.decode(LinkType.RAW, frame, 0, 44), false);
  assert.equal(decoder.errors.truncatedIp, 1);
});

test('decodes a frame at an offset inside a larger buffer', () => {
  const frame = ethernet(0x0800, tcpV4);
  const buf = new Uint8Array(frame.length + 100);
  buf.set(frame, 37);
  const decoder = new PacketDecoder();
  assert.equal(decoder.decode(LinkType.ETHERNET, buf, 37, frame.length), true);
  assert.equal(decoder.packet.destinationPort, 443);
});
