// Acceptance: flow counts and per-direction packet counts agree with
// ndpiReader's reports on the corpus captures whose totals the corpus README
// lists as exact. ndpiReader keeps one flow per (VLAN, protocol, address/port
// pair) for the whole file, so the replay runs with timeouts longer than any
// capture. Bytes are not compared: ndpiReader counts captured frame bytes
// (layer 2 included), podflow the IP total length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatIPv4 } from '../../flow/address.ts';
import { corpusDir, replayCorpusFile } from '../helpers/corpus.ts';

const base = 'nDPI/tests/cfgs/default/';
/** Longer than any capture in the corpus: no flow ends before the end of the file. */
const NO_TIMEOUT_MS = 1e13;

/** Captures with flows podflow meters the way ndpiReader does. */
const sameFlows = ['fins.pcap', 'KakaoTalk_chat.pcap', 'nats.pcap', 'tcp_scan.pcapng', 'http_ipv6.pcap'];

/**
 * Tunnels: ndpiReader decapsulates VXLAN, GRE and IP-in-IP and reports only the
 * inner flow; podflow, like ipfixprobe, meters the outer header (the tunnel
 * endpoints are what a pod's interface carries). Flows cannot be paired, but
 * every packet is one packet in either view, so total packets must agree.
 */
const tunnels = ['vxlan.pcap', '4in4tunnel.pcap', 'gre.pcapng'];

interface NdpiFlow {
  key: string;
  /** Packets sent by each end, keyed by "address/port". */
  packets: Map<string, number>;
}

const flowLine =
  /^\t\d+\t(\S+) (\[[0-9a-f:.]+\]|[0-9.]+):(\d+) <?-> (\[[0-9a-f:.]+\]|[0-9.]+):(\d+) (?:\[VLAN: (\d+)\])?.*?\[(\d+) pkts\/\d+ bytes <?-> (\d+) pkts\/\d+ bytes\]/;

const protocolNumbers: Record<string, number> = { TCP: 6, UDP: 17, ICMP: 1, ICMPV6: 58, SCTP: 132 };

function readNdpi(pcap: string): NdpiFlow[] {
  const flows: NdpiFlow[] = [];
  for (const line of readFileSync(`${corpusDir}${base}result/${pcap}.out`, 'utf8').split('\n')) {
    const m = flowLine.exec(line);
    if (!m) continue;
    const [, protocol, a, aPort, b, bPort, vlan, aPackets, bPackets] = m;
    const endA = `${expandIPv6(a!)}/${aPort}`;
    const endB = `${expandIPv6(b!)}/${bPort}`;
    const packets = new Map([[endA, Number(aPackets)]]);
    packets.set(endB, (packets.get(endB) ?? 0) + Number(bPackets));
    flows.push({ key: biflowKey(protocolNumbers[protocol!] ?? Number(protocol), Number(vlan ?? 0), endA, endB), packets });
  }
  return flows;
}

/**
 * ndpiReader writes IPv6 as "[a:b::c]" and shortens even a single zero group,
 * unlike RFC 5952: compare all eight groups written out instead. IPv4 passes.
 */
function expandIPv6(text: string): string {
  if (!text.startsWith('[')) return text;
  const [head, tail] = text.slice(1, -1).split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const middle = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...middle, ...right].map((g) => parseInt(g, 16).toString(16)).join(':');
}

function biflowKey(protocol: number, vlan: number, a: string, b: string): string {
  return `${protocol} vlan ${vlan} ${[a, b].sort().join(' ')}`;
}

function end(address: Uint8Array, port: number): string {
  if (address.length === 4) return `${formatIPv4(address)}/${port}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((address[i]! << 8) | address[i + 1]!).toString(16));
  return `${groups.join(':')}/${port}`;
}

function replayPackets(pcap: string) {
  return replayCorpusFile(base + 'pcap/' + pcap, { idleTimeoutMs: NO_TIMEOUT_MS, activeTimeoutMs: NO_TIMEOUT_MS });
}

for (const pcap of sameFlows) {
  test(`meters ${pcap} into ndpiReader's flows with the same packets each way`, () => {
    const reference = readNdpi(pcap);
    assert.ok(reference.length > 0, `no flows parsed from ${pcap}.out`);
    const { flows } = replayPackets(pcap);
    const ours = new Map<string, Map<string, number>>();
    for (const r of flows) {
      const a = end(r.sourceAddress, r.sourceTransportPort);
      const b = end(r.destinationAddress, r.destinationTransportPort);
      const key = biflowKey(r.protocolIdentifier, r.vlanId, a, b);
      assert.ok(!ours.has(key), `${key}: podflow split one ndpiReader flow`);
      const packets = new Map([[a, r.packetDeltaCount]]);
      packets.set(b, (packets.get(b) ?? 0) + r.reversePacketDeltaCount);
      ours.set(key, packets);
    }
    const differences: string[] = [];
    for (const f of reference) {
      const got = ours.get(f.key);
      if (!got) differences.push(`${f.key}: missing`);
      else if (JSON.stringify([...got].sort()) !== JSON.stringify([...f.packets].sort())) {
        differences.push(`${f.key}: podflow ${JSON.stringify([...got])} ndpiReader ${JSON.stringify([...f.packets])}`);
      }
    }
    assert.deepEqual(differences, []);
    assert.equal(flows.length, reference.length);
  });
}

for (const pcap of tunnels) {
  test(`meters every packet of tunnelled ${pcap} that ndpiReader counts`, () => {
    const reference = readNdpi(pcap);
    assert.ok(reference.length > 0, `no flows parsed from ${pcap}.out`);
    const want = reference.reduce((n, f) => n + [...f.packets.values()].reduce((x, y) => x + y, 0), 0);
    const { flows } = replayPackets(pcap);
    const got = flows.reduce((n, r) => n + r.packetDeltaCount + r.reversePacketDeltaCount, 0);
    assert.equal(got, want);
  });
}
