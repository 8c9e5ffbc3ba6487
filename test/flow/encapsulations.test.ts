// Captures from elsewhere (`podflow replay`): for every link type and
// encapsulation podflow reads, its flows hold the packets tshark sees in the
// same file. tshark judges: per address pair, the same number of IP packets
// and the same IP octets (the outermost IP header, as podflow meters it).
// Captures from the corpus come first (real PPP, Cisco HDLC with MPLS, PPPoE,
// PPI), then frames built here for what the corpus lacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatIPv4, formatIPv6 } from '../../flow/address.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { LinkType } from '../../flow/records.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { corpusDir, corpusMissing } from '../helpers/corpus.ts';
import { concat, ethernet, ipv4, ipv6, tcp, udp } from '../helpers/packets.ts';
import { pcapFile } from '../helpers/pcap-writer.ts';

/** Packets and IP octets between two addresses, both ways. */
type Conversations = Map<string, { packets: number; octets: number }>;

function pair(a: string, b: string): string {
  return [a, b].sort().join(' <-> ');
}

function add(into: Conversations, key: string, packets: number, octets: number): void {
  const c = into.get(key) ?? { packets: 0, octets: 0 };
  c.packets += packets;
  c.octets += octets;
  into.set(key, c);
}

/** What podflow replay meters, with timeouts longer than any file. */
function podflowConversations(capture: Uint8Array): { conversations: Conversations; decoder: PacketDecoder } {
  const flows: FlowRecord[] = [];
  const decoder = new PacketDecoder();
  const meter = new FlowMeter({ idleTimeoutMs: 1e13, activeTimeoutMs: 1e13, onFlow: (r) => flows.push(r) });
  new PacketIngest(decoder, meter).ingestCapture(1, capture);
  meter.flush();
  const conversations: Conversations = new Map();
  for (const f of flows) {
    const format = f.ipVersion === 4 ? formatIPv4 : formatIPv6;
    const key = pair(format(f.sourceAddress), format(f.destinationAddress));
    add(conversations, key, f.packetDeltaCount + f.reversePacketDeltaCount, f.octetDeltaCount + f.reverseOctetDeltaCount);
  }
  return { conversations, decoder };
}

/**
 * What tshark dissects in the file: the outermost IP header of each frame
 * that has one; with `everyPacket`, every IP header of the frame (for frames
 * that carry several packets side by side, as an 802.11 A-MSDU does, and no
 * tunnel).
 */
function tsharkConversations(path: string, everyPacket = false): Conversations {
  const fields = ['frame.protocols', 'ip.src', 'ip.dst', 'ip.len', 'ipv6.src', 'ipv6.dst', 'ipv6.plen'];
  const occurrence = everyPacket ? 'a' : 'f';
  const run = spawnSync('tshark', ['-r', path, '-T', 'fields', '-E', `occurrence=${occurrence}`, '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f])], {
    encoding: 'utf8',
  });
  if (run.error) throw new Error(`tshark could not run (./run installs it): ${run.error.message}`);
  assert.equal(run.status, 0, run.stderr);
  const conversations: Conversations = new Map();
  for (const line of run.stdout.split('\n')) {
    if (line === '') continue;
    const [protocols, src4, dst4, len4, src6, dst6, plen6] = line.split('\t') as string[];
    const layers = protocols!.split(':');
    const v4At = layers.indexOf('ip');
    const v6At = layers.indexOf('ipv6');
    if (v4At < 0 && v6At < 0) continue;
    const v4 = v4At >= 0 && (v6At < 0 || v4At < v6At);
    const [sources, destinations, lengths] = (v4 ? [src4!, dst4!, len4!] : [src6!, dst6!, plen6!]).map((f) => f.split(','));
    sources!.forEach((source, i) => add(conversations, pair(source, destinations![i]!), 1, Number(lengths![i]) + (v4 ? 0 : 40)));
  }
  return conversations;
}

const work = mkdtempSync(join(tmpdir(), 'podflow-encapsulations-'));
test.after(() => rmSync(work, { recursive: true, force: true }));

/** Asserts both readings agree on the capture; returns podflow's decoder for its counters. */
function assertSameAsTshark(name: string, capture: Uint8Array, everyPacket = false): PacketDecoder {
  const path = join(work, name.replace(/[^a-z0-9]+/gi, '-') + '.pcap');
  writeFileSync(path, capture);
  const { conversations, decoder } = podflowConversations(capture);
  assert.ok(conversations.size > 0, 'the capture holds IP packets');
  assert.deepEqual(Object.fromEntries(conversations), Object.fromEntries(tsharkConversations(path, everyPacket)));
  return decoder;
}

// ---- Real captures from the corpus ----

const ndpi = 'nDPI/tests/cfgs/default/pcap/';
const corpusCaptures: [string, string][] = [
  ['Cisco HDLC framing (and its SLARP keepalives) in a LINKTYPE_PPP file', 'BGP_Cisco_hdlc_slarp.pcap'],
  ['PPP (LINKTYPE_PPP)', 'dlt_ppp.pcap'],
  ['MPLS over Cisco HDLC', 'BGP_redist.pcap'],
  ['PPPoE sessions inside VLAN', 'dns.pcap'],
  ['PPPoE, VLAN and IP in IP', 'syslog.pcap'],
  ['PPPoE and IPsec', 'custom_categories.pcapng'],
  ['PPPoE inside VLAN', 'discord_mid_flow.pcap'],
  ['PPP inside GRE inside VLAN', 'gre.pcapng'],
  ['PPI headers', 'someip_sd_sample.pcap'],
];
const missing = corpusMissing();
for (const [what, file] of corpusCaptures) {
  test(`corpus: ${what} (${file})`, { skip: missing ? 'no corpus' : false }, () => {
    const decoder = assertSameAsTshark(file, readFileSync(corpusDir + ndpi + file));
    assert.equal(decoder.errors.unknownLinkType, 0);
  });
}

// ---- Frames built here ----

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** One MPLS label stack entry; `bottom` sets the bottom-of-stack bit. */
function label(value: number, bottom: boolean): number[] {
  return [(value >> 12) & 0xff, (value >> 4) & 0xff, ((value & 0xf) << 4) | (bottom ? 1 : 0), 64];
}

function labels(...values: number[]): Uint8Array {
  return new Uint8Array(values.flatMap((v, i) => label(v, i === values.length - 1)));
}

const tcpV4 = (n = 0): Uint8Array =>
  ipv4({ protocol: 6, source: '198.18.0.1', destination: '198.18.0.2', payload: tcp(40000 + n, 443, 0x18, 100 + n) });
const tcpV4Reply = (n = 0): Uint8Array =>
  ipv4({ protocol: 6, source: '198.18.0.2', destination: '198.18.0.1', payload: tcp(443, 40000 + n, 0x10, 0) });
const udpV6 = (n = 0): Uint8Array =>
  ipv6({ next: 17, source: 'fd00::1', destination: 'fd00::2', payload: udp(5353, 5353, 20 + n) });

/**
 * An Ethernet frame between MAC addresses of known vendors. tshark tells a
 * pseudowire without control word by its first 12 bytes being two addresses
 * of known vendors; podflow by the EtherType after them. Real frames satisfy
 * both; so do these.
 */
function vendorEthernet(etherType: number, payload: Uint8Array, destination = [0x00, 0x00, 0x0c, 0x01, 0x02, 0x03]): Uint8Array {
  return concat(new Uint8Array([...destination, 0x00, 0x1b, 0x21, 0x04, 0x05, 0x06, ...u16(etherType)]), payload);
}

/** A pseudowire control word (RFC 4448): flags, fragment and length zero, then a sequence number. */
const controlWord = (sequence: number): Uint8Array => new Uint8Array([0, 0, ...u16(sequence)]);

const PPP_LCP = [0xc0, 0x21, 0x01, 0x01, 0x00, 0x04];

/** IEEE 802.11 data frame: `subtype` 0 data, 8 QoS data; `flags` as in the frame control field. */
function wifi(subtype: number, flags: number, body: Uint8Array, options: { type?: number } = {}): Uint8Array {
  const type = options.type ?? 2;
  const addresses = (flags & 0x3) === 0x3 ? 4 : 3;
  const header = [(subtype << 4) | (type << 2), flags, 0, 0];
  for (let a = 0; a < addresses; a++) header.push(0x02, 0, 0, 0, 0, a + 1);
  header.splice(4 + 18, 0, 0x10, 0x00); // sequence control sits after the third address
  if (type === 2 && subtype & 0x8) header.push(0x00, 0x00); // QoS control
  if (type === 2 && subtype & 0x8 && flags & 0x80) header.push(0, 0, 0, 0); // HT control
  return concat(new Uint8Array(header), body);
}

function snap(etherType: number, payload: Uint8Array): Uint8Array {
  return concat(new Uint8Array([0xaa, 0xaa, 0x03, 0, 0, 0, ...u16(etherType)]), payload);
}

const radiotap = (frame: Uint8Array): Uint8Array => concat(new Uint8Array([0, 0, 8, 0, 0, 0, 0, 0]), frame);
/**
 * A radiotap header with a TSFT and a Flags field: the frame ends with its
 * FCS (0x10), and the 802.11 header is padded to 4 bytes (0x20), as some
 * drivers deliver QoS frames (a 26-byte header, 2 bytes of padding).
 */
function radiotapPaddedWithFcs(frame: Uint8Array): Uint8Array {
  const header = [0, 0, 17, 0, 0x03, 0, 0, 0, ...new Array<number>(8).fill(7), 0x30];
  const qosHeader = 26;
  return concat(new Uint8Array(header), frame.subarray(0, qosHeader), new Uint8Array(2), frame.subarray(qosHeader), new Uint8Array([1, 2, 3, 4]));
}
const ppi = (dlt: number, frame: Uint8Array): Uint8Array => concat(new Uint8Array([0, 0, 8, 0, dlt, 0, 0, 0]), frame);

const wifiFrames = [
  wifi(0, 0x01, snap(0x0800, tcpV4())), // to the distribution system
  wifi(0, 0x02, snap(0x0800, tcpV4Reply())), // from it
  wifi(8, 0x01, snap(0x86dd, udpV6())), // QoS data
  wifi(8, 0x81, snap(0x0800, tcpV4(1))), // QoS data with HT control
  wifi(0, 0x03, snap(0x0800, tcpV4(2))), // four addresses (a mesh or WDS link)
  wifi(8, 0x41, new Uint8Array(40)), // protected: no IP to read
  wifi(4, 0x01, new Uint8Array(0)), // null data
  wifi(8, 0x00, new Uint8Array(12), { type: 0 }), // a beacon (management)
];

const built: [string, number, Uint8Array[]][] = [
  ['MPLS over Ethernet, one label', LinkType.ETHERNET, [
    ethernet(0x8847, concat(labels(100), tcpV4())),
    ethernet(0x8847, concat(labels(100), tcpV4Reply())),
  ]],
  ['MPLS, a stack of three labels, IPv6 at the bottom', LinkType.ETHERNET, [ethernet(0x8847, concat(labels(16, 200, 300), udpV6()))]],
  ['MPLS inside VLAN and QinQ', LinkType.ETHERNET, [
    ethernet(0x8847, concat(labels(100), tcpV4()), [[0x8100, 10]]),
    ethernet(0x8847, concat(labels(100, 17), tcpV4Reply()), [[0x88a8, 20], [0x8100, 10]]),
  ]],
  ['MPLS multicast', LinkType.ETHERNET, [ethernet(0x8848, concat(labels(500), tcpV4()))]],
  ['Ethernet pseudowire over MPLS, with and without control word', LinkType.ETHERNET, [
    ethernet(0x8847, concat(labels(100, 200), controlWord(7), vendorEthernet(0x0800, tcpV4(), [0x00, 0x1b, 0x21, 0xfe, 0xfe, 0x01]))),
    ethernet(0x8847, concat(labels(100, 200), vendorEthernet(0x0800, tcpV4Reply()))),
    ethernet(0x8847, concat(labels(100, 200), vendorEthernet(0x8100, concat(new Uint8Array([0, 7, 0x86, 0xdd]), udpV6())))),
  ]],
  ['PPPoE session, IPv4 and IPv6', LinkType.ETHERNET, [
    ethernet(0x8864, concat(new Uint8Array([0x11, 0, 0x12, 0x34, ...u16(tcpV4().length + 2), 0x00, 0x21]), tcpV4())),
    ethernet(0x8864, concat(new Uint8Array([0x11, 0, 0x12, 0x34, ...u16(udpV6().length + 2), 0x00, 0x57]), udpV6())),
    ethernet(0x8864, new Uint8Array([0x11, 0, 0x12, 0x34, 0, 6, ...PPP_LCP])),
  ]],
  ['802.1ah provider backbone bridging', LinkType.ETHERNET, [
    ethernet(0x88e7, concat(new Uint8Array([0, 0, 0x01, 0x00]), ethernet(0x0800, tcpV4())), [[0x88a8, 30]]),
    ethernet(0x88e7, concat(new Uint8Array([0, 0, 0x01, 0x00]), ethernet(0x0800, tcpV4Reply(), [[0x8100, 5]])), [[0x88a8, 30]]),
  ]],
  ['Cisco FabricPath', LinkType.ETHERNET, [
    ethernet(0x8903, concat(new Uint8Array([0x00, 0x3f]), ethernet(0x0800, tcpV4()))),
    ethernet(0x8903, concat(new Uint8Array([0x00, 0x3f]), ethernet(0x86dd, udpV6()))),
  ]],
  ['PPP, with and without address and control, protocol field compressed', LinkType.PPP, [
    concat(new Uint8Array([0xff, 0x03, 0x00, 0x21]), tcpV4()),
    concat(new Uint8Array([0x00, 0x21]), tcpV4Reply()),
    concat(new Uint8Array([0xff, 0x03, 0x21]), tcpV4(1)),
    concat(new Uint8Array([0xff, 0x03, 0x00, 0x57]), udpV6()),
    concat(new Uint8Array([0xff, 0x03, 0x02, 0x81]), labels(100), tcpV4(2)),
    new Uint8Array([0xff, 0x03, ...PPP_LCP]),
  ]],
  ['PPP in HDLC-like framing', LinkType.PPP_HDLC, [concat(new Uint8Array([0xff, 0x03, 0x00, 0x21]), tcpV4())]],
  ['PPP with a direction byte', LinkType.PPP_WITH_DIR, [
    concat(new Uint8Array([1, 0xff, 0x03, 0x00, 0x21]), tcpV4()),
    concat(new Uint8Array([0, 0xff, 0x03, 0x00, 0x21]), tcpV4Reply()),
  ]],
  ['Cisco HDLC, IPv4, IPv6 and MPLS', LinkType.C_HDLC, [
    concat(new Uint8Array([0x0f, 0x00, 0x08, 0x00]), tcpV4()),
    concat(new Uint8Array([0x0f, 0x00, 0x86, 0xdd]), udpV6()),
    concat(new Uint8Array([0x8f, 0x00, 0x88, 0x47]), labels(100), tcpV4Reply()),
  ]],
  ['802.11', LinkType.IEEE802_11, wifiFrames],
  ['802.11 with radiotap headers', LinkType.IEEE802_11_RADIOTAP, wifiFrames.map(radiotap)],
  ['802.11 QoS data with radiotap flags: padded header, FCS at the end', LinkType.IEEE802_11_RADIOTAP, [
    radiotapPaddedWithFcs(wifi(8, 0x01, snap(0x0800, tcpV4()))),
    radiotapPaddedWithFcs(wifi(8, 0x02, snap(0x86dd, udpV6()))),
  ]],
  ['802.11 with PPI headers', LinkType.PPI, wifiFrames.map((f) => ppi(LinkType.IEEE802_11, f))],
];

for (const [what, linkType, frames] of built) {
  test(`built: ${what}`, () => {
    const decoder = assertSameAsTshark(what, pcapFile(linkType, frames));
    assert.equal(decoder.errors.unknownLinkType, 0);
    assert.equal(decoder.errors.truncatedLink, 0);
  });
}

test('every frame without an IP packet inside is counted, not metered', () => {
  const { decoder } = podflowConversations(pcapFile(LinkType.IEEE802_11, wifiFrames));
  assert.equal(decoder.errors.notIp, 3, 'the protected, null and management frames');
});

/** An A-MSDU subframe: destination, source, length, the LLC/SNAP packet, padding to 4 bytes unless last. */
function subframe(packet: Uint8Array, last: boolean): Uint8Array {
  const body = snap(0x0800, packet);
  const header = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, ...u16(body.length)];
  const padding = last ? 0 : (4 - ((14 + body.length) % 4)) % 4;
  return concat(new Uint8Array(header), body, new Uint8Array(padding));
}

test('built: an 802.11 A-MSDU, several packets in one frame, each metered', () => {
  const amsdu = wifi(8, 0x01, concat(subframe(tcpV4(), false), subframe(tcpV4Reply(3), false), subframe(tcpV4(4), true)));
  // The QoS control's A-MSDU present bit.
  amsdu[24] = 0x80;
  const decoder = assertSameAsTshark('802.11 A-MSDU', pcapFile(LinkType.IEEE802_11, [amsdu, wifi(0, 0x01, snap(0x0800, tcpV4Reply()))]), true);
  assert.equal(decoder.errors.notIp + decoder.errors.truncatedLink, 0);
});

test('pseudowires nested as deep as a 64 KiB frame allows: counted as cut short, no crash', () => {
  const layer = [0, 0, 0x01, 0x40, ...new Array<number>(12).fill(0), 0x88, 0x47];
  const frame = new Uint8Array(65535);
  frame.set([...new Array<number>(12).fill(0), 0x88, 0x47]);
  for (let at = 14; at + layer.length <= frame.length; at += layer.length) frame.set(layer, at);
  const { decoder } = podflowConversations(pcapFile(LinkType.ETHERNET, [frame]));
  assert.equal(decoder.errors.truncatedLink, 1);
});
