// Acceptance: podflow's flows equal ipfixprobe's on the corpus captures whose
// reference output accounts for every packet (corpus README, "exact" list).
// Same timeouts as the reference run (idle 30 s, active 300 s: the defaults).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4, formatIPv6 } from '../../flow/address.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { DEFAULT_FEATURES, FlowFeatures } from '../../flow/features/flow-features.ts';
import { DEFAULT_MAX_FLOWS } from '../../flow/meter.ts';
import { ipfixprobeOptionWords } from '../../ipfix/feature-elements.ts';
import { readIpfixprobeOutput, referenceJa4, replayCorpusFile } from '../helpers/corpus.ts';

const base = 'ipfixprobe/tests/functional/';

/** Reference output (outputs/<name>) → capture it was made from (inputs/). */
const exactOutputs: Record<string, string> = {
  basic: 'mixed.pcap',
  phists: 'mixed.pcap',
  pstats: 'mixed.pcap',
  basicplus: 'http.pcap',
  http: 'http.pcap',
  dns: 'dns.pcap',
  dnssd: 'dnssd.pcap',
  idpcontent: 'idpcontent.pcap',
  mqtt: 'mqtt.pcap',
  quic: 'quic_initial-sample.pcap',
  ssdp: 'ssdp.pcap',
  vlan: 'vlan.pcap',
  wg: 'wg.pcap',
  rtsp: 'rtsp.pcap',
  ntp: 'ntp.pcap',
};

/**
 * ipfixprobe's process plugins for these protocols cut a flow at protocol
 * events (a DNS response, an NTP packet, a WireGuard handshake, an RTSP
 * request: FLUSH / FLUSH_WITH_REINSERT in storage/cache.cpp), which a flow
 * meter without those plugins does not. Their rows still account for every
 * packet, so for them the check is per 5-tuple: packets, bytes and TCP flags
 * summed over all of the tuple's rows, each direction, must be equal.
 */
const splitByPlugin = new Set(['dns', 'ntp', 'rtsp', 'wg']);

interface Counts {
  packets: number;
  bytes: number;
  flags: number;
  packetsRev: number;
  bytesRev: number;
  flagsRev: number;
}

interface ReferenceFlow extends Counts {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  protocol: number;
  vlan: number | undefined;
  startMs: number;
}

/** Reads an ipfixprobe CSV into the fields compared here. */
function readReference(name: string): ReferenceFlow[] {
  return readIpfixprobeOutput(name).map((get) => ({
    src: get.SRC_IP!,
    dst: get.DST_IP!,
    srcPort: Number(get.SRC_PORT),
    dstPort: Number(get.DST_PORT),
    protocol: Number(get.PROTOCOL),
    vlan: get.VLAN_ID !== undefined ? Number(get.VLAN_ID) : undefined,
    startMs: Math.floor(Date.parse(get.TIME_FIRST!.slice(0, 23) + 'Z')),
    packets: Number(get.PACKETS),
    bytes: Number(get.BYTES),
    flags: Number(get.TCP_FLAGS),
    packetsRev: Number(get.PACKETS_REV),
    bytesRev: Number(get.BYTES_REV),
    flagsRev: Number(get.TCP_FLAGS_REV),
  }));
}

function text(address: Uint8Array): string {
  return address.length === 4 ? formatIPv4(address) : formatIPv6(address);
}

/** The same key for both directions of a flow. */
function biflowKey(protocol: number, vlan: number | undefined, a: string, aPort: number, b: string, bPort: number): string {
  const ends = [`${a}/${aPort}`, `${b}/${bPort}`].sort();
  return `${protocol} vlan ${vlan ?? '-'} ${ends[0]} ${ends[1]}`;
}

/** Our counts as seen from the reference flow's source. */
function countsFrom(r: FlowRecord, refSrc: string, refSrcPort: number): Counts {
  const forward = text(r.sourceAddress) === refSrc && r.sourceTransportPort === refSrcPort;
  const fwd = { packets: r.packetDeltaCount, bytes: r.octetDeltaCount, flags: r.tcpControlBits };
  const rev = { packets: r.reversePacketDeltaCount, bytes: r.reverseOctetDeltaCount, flags: r.reverseTcpControlBits };
  const [a, b] = forward ? [fwd, rev] : [rev, fwd];
  return { packets: a.packets, bytes: a.bytes, flags: a.flags, packetsRev: b.packets, bytesRev: b.bytes, flagsRev: b.flags };
}

function counts(f: ReferenceFlow): Counts {
  return { packets: f.packets, bytes: f.bytes, flags: f.flags, packetsRev: f.packetsRev, bytesRev: f.bytesRev, flagsRev: f.flagsRev };
}

function reversed(c: Counts): Counts {
  return { packets: c.packetsRev, bytes: c.bytesRev, flags: c.flagsRev, packetsRev: c.packets, bytesRev: c.bytes, flagsRev: c.flags };
}

/** Packets and bytes add up; TCP flags OR together. */
function sum(all: Counts[]): Counts {
  const total = { packets: 0, bytes: 0, flags: 0, packetsRev: 0, bytesRev: 0, flagsRev: 0 };
  for (const c of all) {
    total.packets += c.packets;
    total.bytes += c.bytes;
    total.flags |= c.flags;
    total.packetsRev += c.packetsRev;
    total.bytesRev += c.bytesRev;
    total.flagsRev |= c.flagsRev;
  }
  return total;
}

for (const [output, input] of Object.entries(exactOutputs)) {
  test(`meters ${input} into the same flows as ipfixprobe's ${output} output`, () => {
    const reference = readReference(output);
    const hasVlan = reference.some((f) => f.vlan !== undefined);
    const { flows } = replayCorpusFile(`${base}inputs/${input}`);

    const ours = new Map<string, FlowRecord[]>();
    for (const r of flows) {
      const key = biflowKey(
        r.protocolIdentifier,
        hasVlan ? r.vlanId : undefined,
        text(r.sourceAddress),
        r.sourceTransportPort,
        text(r.destinationAddress),
        r.destinationTransportPort,
      );
      ours.set(key, [...(ours.get(key) ?? []), r]);
    }
    const theirs = new Map<string, ReferenceFlow[]>();
    for (const f of reference) {
      const key = biflowKey(f.protocol, f.vlan, f.src, f.srcPort, f.dst, f.dstPort);
      theirs.set(key, [...(theirs.get(key) ?? []), f]);
    }

    const differences: string[] = [];
    for (const key of new Set([...ours.keys(), ...theirs.keys()])) {
      const a = (ours.get(key) ?? []).sort((x, y) => x.flowStartMilliseconds - y.flowStartMilliseconds);
      const b = (theirs.get(key) ?? []).sort((x, y) => x.startMs - y.startMs);
      if (splitByPlugin.has(output)) {
        // Orient every row to one end of the tuple, then sum.
        const end = b[0] ?? { src: text(a[0]!.sourceAddress), srcPort: a[0]!.sourceTransportPort };
        const got = sum(a.map((r) => countsFrom(r, end.src, end.srcPort)));
        const want = sum(b.map((f) => (f.src === end.src && f.srcPort === end.srcPort ? counts(f) : reversed(counts(f)))));
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          differences.push(`${key}: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(want)} (summed)`);
        }
        continue;
      }
      // One 5-tuple may hold several flows in turn (timeouts, TCP restarts): pair them by start time.
      if (a.length !== b.length) {
        differences.push(`${key}: podflow ${a.length} flows, ipfixprobe ${b.length}`);
        continue;
      }
      for (let i = 0; i < a.length; i++) {
        const ref = b[i]!;
        const got = countsFrom(a[i]!, ref.src, ref.srcPort);
        if (a[i]!.flowStartMilliseconds !== ref.startMs) {
          differences.push(`${key} #${i}: starts at ${a[i]!.flowStartMilliseconds}, ipfixprobe ${ref.startMs}`);
        }
        if (JSON.stringify(got) !== JSON.stringify(counts(ref))) {
          differences.push(`${key} #${i}: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(counts(ref))}`);
        }
      }
    }
    assert.deepEqual(differences, []);
    if (!splitByPlugin.has(output)) assert.equal(flows.length, reference.length);
  });
}

// Per-flow features through the meter (not only the readers: test/flow/features/).
// ipfixprobe's DNS plugin ends a flow at every DNS message, so each of its
// rows is one message; podflow keeps one flow per 5-tuple and reports its
// first transaction. So per tuple: the query's id, name, type and class
// equal those of every row of the tuple, and the response's code, answer
// count, first TTL and data those of the row the server sent.
test('dns: the DNS fields of each flow through the meter equal those of ipfixprobe\'s rows for its query and its response', () => {
  const { flows } = replayCorpusFile(`${base}inputs/dns.pcap`, { features: new FlowFeatures(DEFAULT_FEATURES, DEFAULT_MAX_FLOWS) });
  const rows = readIpfixprobeOutput('dns');
  const differences: string[] = [];
  let compared = 0;
  for (const flow of flows) {
    const client = text(flow.sourceAddress);
    const tuple = rows.filter((r) => Number(r.PROTOCOL) === flow.protocolIdentifier && ((r.SRC_IP === client && Number(r.SRC_PORT) === flow.sourceTransportPort) || (r.DST_IP === client && Number(r.DST_PORT) === flow.sourceTransportPort)));
    const response = tuple.find((r) => Number(r.SRC_PORT) === 53);
    const d = flow.dns;
    if (d === undefined || response === undefined) {
      differences.push(`${client}/${flow.sourceTransportPort}: podflow ${d ? 'has' : 'lacks'} DNS fields, ipfixprobe ${tuple.length} rows`);
      continue;
    }
    for (const row of tuple) {
      const want = { id: Number(row.DNS_ID), name: row.DNS_NAME, type: Number(row.DNS_QTYPE), class: Number(row.DNS_CLASS) };
      const got = { id: d.id, name: d.queryName, type: d.queryType, class: d.queryClass };
      if (JSON.stringify(got) !== JSON.stringify(want)) differences.push(`${client}/${flow.sourceTransportPort}: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(want)}`);
    }
    const r = d.response;
    const got = { rcode: r?.rcode, answers: r?.answerCount, ttl: r?.answerTtl, data: Buffer.from(r?.answerData ?? '', 'latin1').toString('hex') };
    const want = { rcode: Number(response.DNS_RCODE), answers: Number(response.DNS_ANSWERS), ttl: Number(response.DNS_RR_TTL), data: response.DNS_RDATA };
    if (JSON.stringify(got) !== JSON.stringify(want)) differences.push(`${client}/${flow.sourceTransportPort} response: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(want)}`);
    compared++;
  }
  assert.deepEqual(differences, []);
  assert.equal(compared, rows.length / 2, 'one flow per query and response pair');
});

/** ipfixprobe's TCP_OPT for a set of option kinds, as podflow writes it with featureElements: ipfixprobe. */
function ipfixprobeOptionBits(kinds: readonly number[]): bigint {
  const [high, low] = ipfixprobeOptionWords(kinds);
  return (BigInt(high) << 32n) | BigInt(low);
}

// ipfixprobe's basicplus plugin on http.pcap: per direction the window of the
// first packet (TCP_WIN), the highest TTL (IP_TTL), the options of every
// packet ORed (TCP_OPT), the MSS (TCP_MSS) and the size of a bare SYN
// (TCP_SYN_SIZE). Every flow there starts mid-connection (no SYN), so MSS
// and SYN size are 0 on both sides; podflow reads the MSS from SYNs only,
// where ipfixprobe takes the MSS option of any first packet and reads it as
// 4 bytes (the MSS and the next option's first two), so on a SYN with a
// following option its TCP_MSS would not be the MSS.
test('basicplus: the TCP fields of each flow through the meter equal ipfixprobe\'s window, TTL, options, MSS and SYN size', () => {
  const { flows } = replayCorpusFile(`${base}inputs/http.pcap`, { features: new FlowFeatures(DEFAULT_FEATURES, DEFAULT_MAX_FLOWS) });
  const rows = readIpfixprobeOutput('basicplus');
  const differences: string[] = [];
  for (const row of rows) {
    const flow = flows.find((f) => text(f.sourceAddress) === row.SRC_IP && f.sourceTransportPort === Number(row.SRC_PORT) && text(f.destinationAddress) === row.DST_IP && f.destinationTransportPort === Number(row.DST_PORT));
    const tcp = flow?.tcp;
    const key = `${row.SRC_IP}/${row.SRC_PORT} -> ${row.DST_IP}/${row.DST_PORT}`;
    if (tcp === undefined) {
      differences.push(`${key}: podflow ${flow ? 'has no TCP fields' : 'has no such flow (forward as ipfixprobe)'}`);
      continue;
    }
    const got = {
      window: [tcp.forward.initialWindow ?? 0, tcp.reverse.initialWindow ?? 0],
      ttl: [tcp.forward.ttlMaximum ?? 0, tcp.reverse.ttlMaximum ?? 0],
      options: [ipfixprobeOptionBits(tcp.forward.optionKinds), ipfixprobeOptionBits(tcp.reverse.optionKinds)].map(String),
      mss: [tcp.forward.maximumSegmentSize ?? 0, tcp.reverse.maximumSegmentSize ?? 0],
      synSize: tcp.synSize,
    };
    const want = {
      window: [Number(row.TCP_WIN), Number(row.TCP_WIN_REV)],
      ttl: [Number(row.IP_TTL), Number(row.IP_TTL_REV)],
      options: [row.TCP_OPT!, row.TCP_OPT_REV!],
      mss: [Number(row.TCP_MSS), Number(row.TCP_MSS_REV)],
      synSize: Number(row.TCP_SYN_SIZE),
    };
    if (JSON.stringify(got) !== JSON.stringify(want)) differences.push(`${key}: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(want)}`);
  }
  assert.deepEqual(differences, []);
  assert.equal(rows.length, 9);
  // What the comparison covers: options seen both ways, and a flow with no reverse packet (all 0 that way).
  assert.ok(rows.every((r) => r.TCP_OPT !== '0') && rows.some((r) => r.TCP_OPT_REV === '0'));
});

/** The flow of a reference row (either direction), replayed through the meter with every feature on. */
function featureFlows(capture: string): (row: Record<string, string>) => FlowRecord | undefined {
  const { flows } = replayCorpusFile(`${base}inputs/${capture}`, { features: new FlowFeatures({ dns: true, tcp: true, tls: true, quic: true, http: true }, DEFAULT_MAX_FLOWS) });
  return (row) =>
    flows.find((f) => {
      const [src, dst] = [text(f.sourceAddress), text(f.destinationAddress)];
      const there = src === row.SRC_IP && dst === row.DST_IP && f.sourceTransportPort === Number(row.SRC_PORT) && f.destinationTransportPort === Number(row.DST_PORT);
      const back = src === row.DST_IP && dst === row.SRC_IP && f.sourceTransportPort === Number(row.DST_PORT) && f.destinationTransportPort === Number(row.SRC_PORT);
      return f.protocolIdentifier === Number(row.PROTOCOL) && (there || back);
    });
}

test('tls: server name, ALPN, version, JA3 and JA4 of each flow through the meter equal ipfixprobe\'s (JA4: its extension count without GREASE)', () => {
  const flowOf = featureFlows('tls.pcap');
  const rows = readIpfixprobeOutput('tls');
  const differences: string[] = [];
  for (const row of rows) {
    const t = flowOf(row)?.tls;
    const ours = { sni: t?.serverName, alpn: t?.alpn, version: t?.version, ja3: t?.ja3, ja4: t?.ja4 };
    const theirs = { sni: row.TLS_SNI, alpn: row.TLS_ALPN, version: Number(row.TLS_VERSION), ja3: row.TLS_JA3, ja4: referenceJa4(row) };
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) differences.push(`${row.SRC_IP}/${row.SRC_PORT}: podflow ${JSON.stringify(ours)} ipfixprobe ${JSON.stringify(theirs)}`);
  }
  assert.deepEqual(differences, []);
  assert.equal(rows.length, 28);
});

test('http: method, host, URL, user agent and status of each flow through the meter equal ipfixprobe\'s', () => {
  const flowOf = featureFlows('http.pcap');
  const rows = readIpfixprobeOutput('http');
  const differences: string[] = [];
  for (const row of rows) {
    const h = flowOf(row)?.http;
    const ours = { method: h?.method, host: h?.host, url: h?.target, agent: h?.userAgent, status: h?.statusCode };
    const theirs = { method: row.HTTP_REQUEST_METHOD, host: row.HTTP_REQUEST_HOST, url: row.HTTP_REQUEST_URL, agent: row.HTTP_REQUEST_AGENT, status: Number(row.HTTP_RESPONSE_STATUS_CODE) };
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) differences.push(`${row.SRC_IP}/${row.SRC_PORT}: podflow ${JSON.stringify(ours)} ipfixprobe ${JSON.stringify(theirs)}`);
  }
  assert.deepEqual(differences, []);
  assert.equal(rows.length, 9);
});

test('quic: the Initial\'s server name and version through the meter equal ipfixprobe\'s', () => {
  const flowOf = featureFlows('quic_initial-sample.pcap');
  const [row] = readIpfixprobeOutput('quic');
  const q = flowOf(row!)?.quic;
  assert.deepEqual({ sni: q?.serverName, version: q?.version }, { sni: row!.QUIC_SNI, version: Number(row!.QUIC_VERSION) });
});
