// WIRE SEGMENTS (flow/decode.ts): a live record's virtio_net_hdr tells how
// many wire packets a GSO/GRO super-packet stands for; the decoder counts
// them, and the headers each further segment repeats, from the headers it
// reads (tunnels inside the pod included), also when the record holds only
// snaplen bytes of the frame. The end-to-end check against the kernel's own
// counters is test/netns/wire-exact.test.ts; these pin the arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketDecoder } from '../../flow/decode.ts';
import { LinkType, VNET_HEADER, VNET_HEADER_BYTES } from '../../flow/records.ts';
import { concat, ethernet, ipv4, ipv6, TCP_ACK, tcp, udp } from '../helpers/packets.ts';

const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
const GSO_ECN = 0x80;

/** A live record's data: the vnet header, then the frame cut at snaplen; and the frame's wire length. */
function vnet(frame: Uint8Array, gsoType: number, gsoSize: number, snaplen = 256): { data: Uint8Array; wirelen: number } {
  const header = new Uint8Array(VNET_HEADER_BYTES);
  header[1] = gsoType;
  header[4] = gsoSize & 0xff;
  header[5] = gsoSize >> 8;
  return { data: concat(header, frame.subarray(0, snaplen)), wirelen: frame.length };
}

function decode(frame: Uint8Array, gsoType: number, gsoSize: number, snaplen = 256) {
  const d = new PacketDecoder();
  const { data, wirelen } = vnet(frame, gsoType, gsoSize, snaplen);
  assert.ok(d.decode(LinkType.ETHERNET | VNET_HEADER, data, 0, data.length, wirelen));
  return { ...d.packet, segments: { ...d.segments } };
}

const tcp4 = (payload: number, totalLength?: number) =>
  ethernet(0x0800, ipv4({ protocol: 6, source: '198.18.0.1', destination: '198.18.0.2', payload: tcp(40000, 80, TCP_ACK, payload), ...(totalLength === undefined ? {} : { totalLength }) }));

test('a TCP super-packet counts its segments, each with its own IP and TCP header', () => {
  const p = decode(tcp4(10 * 1448), GSO_TCPV4, 1448);
  assert.equal(p.packets, 10);
  assert.equal(p.octets, 40 + 10 * 1448 + 9 * 40);
  assert.equal(p.wireBytes, 14 + 40 + 10 * 1448 + 9 * (14 + 40));
  assert.deepEqual(p.segments, { split: 1, unparsed: 0 });
  assert.equal(p.segmentSize, 1448);
  // A last segment shorter than gso_size is a segment too; the ECN flag changes nothing.
  assert.equal(decode(tcp4(10_000), GSO_TCPV4 | GSO_ECN, 1448).packets, 7);
  // One segment's worth is one packet, with no segment size.
  assert.deepEqual([decode(tcp4(1000), GSO_TCPV4, 1448).packets, decode(tcp4(1000), GSO_TCPV4, 1448).segmentSize], [1, 0]);
});

test('IPv6 TCP and UDP GSO count the same way', () => {
  const v6 = ethernet(0x86dd, ipv6({ next: 6, source: 'fd00::1', destination: 'fd00::2', payload: tcp(40000, 80, TCP_ACK, 5 * 1428) }));
  const p6 = decode(v6, GSO_TCPV6, 1428);
  assert.equal(p6.packets, 5);
  assert.equal(p6.octets, 60 + 5 * 1428 + 4 * 60);
  const u = ethernet(0x0800, ipv4({ protocol: 17, source: '198.18.0.1', destination: '198.18.0.2', payload: udp(5000, 6001, 50 * 1200) }));
  const pu = decode(u, GSO_UDP_L4, 1200);
  assert.equal(pu.packets, 50);
  assert.equal(pu.octets, 50 * (20 + 8 + 1200));
});

/** An IPv4/UDP tunnel packet to `port` around an inner Ethernet frame, after `tunnelHeader`. */
function tunnel(port: number, tunnelHeader: Uint8Array, inner: Uint8Array): Uint8Array {
  const outerUdp = concat(udp(33000, port).subarray(0, 8), tunnelHeader, inner);
  outerUdp[4] = outerUdp.length >> 8;
  outerUdp[5] = outerUdp.length & 0xff;
  return ethernet(0x0800, ipv4({ protocol: 17, source: '198.18.1.1', destination: '198.18.1.2', payload: outerUdp }));
}

test('inside a VXLAN or Geneve tunnel, every segment repeats the outer and the inner headers', () => {
  const inner = tcp4(10 * 1400);
  const vxlan = tunnel(4789, new Uint8Array([0x08, 0, 0, 0, 0, 0, 0x2a, 0]), inner);
  const p = decode(vxlan, GSO_TCPV4, 1400);
  // Repeated per segment: outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 + inner IP 20 + TCP 20.
  assert.equal(p.packets, 10);
  assert.equal(p.octets, vxlan.length - 14 + 9 * 90);
  // Geneve with one 8-byte option (opt_len 2), protocol Transparent Ethernet Bridging.
  const geneve = tunnel(6081, new Uint8Array([0x02, 0, 0x65, 0x58, 0, 0, 0x2a, 0, 1, 2, 3, 4, 5, 6, 7, 8]), inner);
  const g = decode(geneve, GSO_TCPV4, 1400);
  assert.equal(g.packets, 10);
  assert.equal(g.octets, geneve.length - 14 + 9 * 98);
});

test('BIG TCP and jumbograms: a length field of 0 counts the captured wire length, not 0 or 40 octets', () => {
  const big = tcp4(100_000, 0);
  const plain = new PacketDecoder();
  assert.ok(plain.decode(LinkType.ETHERNET, big, 0, 256, big.length));
  assert.equal(plain.packet.octets, big.length - 14);
  const p = decode(big, GSO_TCPV4, 1448);
  assert.equal(p.packets, Math.ceil(100_000 / 1448));
  assert.equal(p.octets, big.length - 14 + (p.packets - 1) * 40);
  // IPv6 payload length 0 (a jumbogram, or BIG TCP over IPv6).
  const v6 = ethernet(0x86dd, ipv6({ next: 6, source: 'fd00::1', destination: 'fd00::2', payload: tcp(40000, 80, TCP_ACK, 70_000) }));
  v6[14 + 4] = 0;
  v6[14 + 5] = 0;
  const d = new PacketDecoder();
  assert.ok(d.decode(LinkType.ETHERNET, v6, 0, 256, v6.length));
  assert.equal(d.packet.octets, v6.length - 14);
});

test('a super-packet whose headers the capture cut short counts as one packet, and is counted as unparsed', () => {
  const inner = tcp4(10 * 1400);
  const vxlan = tunnel(4789, new Uint8Array([0x08, 0, 0, 0, 0, 0, 0x2a, 0]), inner);
  // snaplen ends inside the inner IP header.
  const p = decode(vxlan, GSO_TCPV4, 1400, 14 + 20 + 8 + 8 + 14 + 10);
  assert.equal(p.packets, 1);
  assert.equal(p.octets, vxlan.length - 14);
  assert.deepEqual(p.segments, { split: 0, unparsed: 1 });
});

test('a record without a gso_size, or a file without vnet headers, is one packet', () => {
  assert.equal(decode(tcp4(10 * 1448), 0, 0).packets, 1);
  const d = new PacketDecoder();
  const frame = tcp4(1448);
  assert.ok(d.decode(LinkType.ETHERNET, frame, 0, frame.length, frame.length));
  assert.deepEqual([d.packet.packets, d.packet.octets, d.packet.wireBytes], [1, 40 + 1448, frame.length]);
});
