import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DecodedPacket } from '../../flow/decode.ts';
import { FlowMeter, type FlowMeterOptions } from '../../flow/meter.ts';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../helpers/packets.ts';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const T0 = 1_764_000_000_000; // a whole second, in ms

interface PacketFields {
  src?: number;
  dst?: number;
  sport?: number;
  dport?: number;
  protocol?: number;
  flags?: number;
  octets?: number;
  packets?: number;
  icmp?: number;
  vlan?: number;
  v6?: boolean;
}

/** A decoded packet as the decoder would leave it; client 10.0.0.1:40000 → server 10.0.0.2:80 by default. */
function packet(f: PacketFields = {}): DecodedPacket {
  const src = new Uint32Array(4);
  const dst = new Uint32Array(4);
  src[0] = f.src ?? 0x0a000001;
  dst[0] = f.dst ?? 0x0a000002;
  if (f.v6) {
    src[3] = dst[3] = 7;
  }
  return {
    ipVersion: f.v6 ? 6 : 4,
    sourceAddress: src,
    destinationAddress: dst,
    protocol: f.protocol ?? TCP,
    sourcePort: f.sport ?? 40000,
    destinationPort: f.dport ?? 80,
    tcpFlags: f.flags ?? 0,
    icmpTypeCode: f.icmp ?? 0,
    vlanId: f.vlan ?? 0,
    octets: f.octets ?? 100,
    packets: f.packets ?? 1,
    wireBytes: (f.octets ?? 100) + 14,
    ttl: 64,
    segmentSize: 0,
    // No bytes behind it: per-flow features see a header they cannot read.
    buffer: new Uint8Array(0),
    transportOffset: -1,
    capturedEnd: 0,
    transportBytes: 0,
    timestampMicros: 0,
  };
}

const reply = (f: PacketFields = {}) =>
  packet({ src: 0x0a000002, dst: 0x0a000001, sport: f.sport ?? 80, dport: f.dport ?? 40000, ...f });

function meter(options: Omit<FlowMeterOptions, 'onFlow'> = {}) {
  const flows: FlowRecord[] = [];
  const m = new FlowMeter({ ...options, onFlow: (r) => flows.push(r) });
  return { m, flows };
}

test('merges both directions of a connection into one biflow', () => {
  const { m, flows } = meter();
  m.add(1, packet({ flags: TCP_SYN, octets: 60 }), T0);
  m.add(1, reply({ flags: TCP_SYN | TCP_ACK, octets: 60 }), T0 + 1);
  m.add(1, packet({ flags: TCP_ACK | TCP_PSH, octets: 500 }), T0 + 2);
  m.flush();
  assert.equal(flows.length, 1);
  const r = flows[0]!;
  assert.deepEqual(
    [r.sourceAddress, r.destinationAddress, r.sourceTransportPort, r.destinationTransportPort, r.protocolIdentifier],
    [Uint8Array.of(10, 0, 0, 1), Uint8Array.of(10, 0, 0, 2), 40000, 80, TCP],
  );
  assert.deepEqual(
    [r.packetDeltaCount, r.octetDeltaCount, r.reversePacketDeltaCount, r.reverseOctetDeltaCount],
    [2, 560, 1, 60],
  );
  assert.deepEqual([r.tcpControlBits, r.reverseTcpControlBits], [TCP_SYN | TCP_ACK | TCP_PSH, TCP_SYN | TCP_ACK]);
  assert.deepEqual([r.flowStartMilliseconds, r.flowEndMilliseconds, r.flowEndReason], [T0, T0 + 2, EndReason.FORCED_END]);
  assert.equal(r.observationPointId, 1);
});

test('records the ICMP type and code of the first packet each way', () => {
  const { m, flows } = meter();
  m.add(1, packet({ protocol: ICMP, sport: 0, dport: 0, icmp: 0x0800 }), T0);
  m.add(1, packet({ protocol: ICMP, sport: 0, dport: 0, icmp: 0x0801 }), T0);
  m.add(1, reply({ protocol: ICMP, sport: 0, dport: 0, icmp: 0x0000 }), T0);
  m.flush();
  assert.deepEqual([flows[0]!.icmpTypeCode, flows[0]!.reverseIcmpTypeCode, flows[0]!.packetDeltaCount], [0x0800, 0, 2]);
});

test('keeps flows apart by observation point, VLAN and protocol', () => {
  const { m, flows } = meter();
  m.add(1, packet(), T0);
  m.add(2, packet(), T0);
  m.add(1, packet({ vlan: 10 }), T0);
  m.add(1, packet({ protocol: UDP }), T0);
  m.add(1, reply(), T0);
  assert.equal(m.stats.active, 4);
  m.flush();
  assert.deepEqual(flows.map((r) => r.reversePacketDeltaCount), [1, 0, 0, 0]);
});

test('meters IPv6 flows with 16-byte addresses', () => {
  const { m, flows } = meter();
  m.add(1, packet({ v6: true }), T0);
  m.flush();
  assert.equal(flows[0]!.ipVersion, 6);
  assert.deepEqual(flows[0]!.sourceAddress, Uint8Array.of(10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7));
});

test('ends a flow after the idle timeout (30 s by default)', () => {
  const { m, flows } = meter();
  m.add(1, packet(), T0);
  m.expire(T0 + 29_999);
  assert.equal(flows.length, 0);
  m.expire(T0 + 30_000);
  assert.deepEqual(flows.map((r) => r.flowEndReason), [EndReason.IDLE_TIMEOUT]);
  assert.equal(m.stats.active, 0);
  assert.equal(m.stats.ended[EndReason.IDLE_TIMEOUT], 1);
});

test('compares timeouts in whole seconds, as ipfixprobe does', () => {
  const { m, flows } = meter({ idleTimeoutMs: 30_000 });
  m.add(1, packet(), T0 + 900);
  // 29.1 s later, but 30 seconds apart counted in whole seconds.
  m.expire(T0 + 30_000);
  assert.equal(flows.length, 1);
});

test('packets of one observation point time out flows of another as they arrive, unless expireOnAdd is off', () => {
  // Point 2's ring is read before point 1's: its packet at 1.05 s comes first, while point 1's at 0.99 s still waits.
  for (const expireOnAdd of [true, false]) {
    const { m, flows } = meter({ idleTimeoutMs: 1_000, expireOnAdd });
    m.add(1, packet(), T0 + 900);
    m.add(2, packet(), T0 + 1_050);
    m.add(1, packet(), T0 + 990);
    m.flush();
    const atPoint1 = flows.filter((r) => r.observationPointId === 1).map((r) => r.packetDeltaCount);
    assert.deepEqual(atPoint1, expireOnAdd ? [1, 1] : [2], `expireOnAdd ${expireOnAdd}`);
  }
});

test('reports END_OF_FLOW for an idle TCP flow that saw FIN or RST', () => {
  const { m, flows } = meter();
  m.add(1, packet({ flags: TCP_FIN | TCP_ACK }), T0);
  m.add(1, packet({ sport: 40001, flags: TCP_ACK }), T0);
  m.add(1, reply({ sport: 80, dport: 40001, flags: TCP_RST }), T0);
  m.expire(T0 + 60_000);
  assert.deepEqual(flows.map((r) => r.flowEndReason), [EndReason.END_OF_FLOW, EndReason.END_OF_FLOW]);
});

test('starts a new flow when a packet arrives after the idle timeout', () => {
  const { m, flows } = meter();
  m.add(1, packet(), T0);
  m.add(1, packet(), T0 + 31_000);
  m.flush();
  assert.deepEqual(flows.map((r) => [r.packetDeltaCount, r.flowEndReason]), [[1, EndReason.IDLE_TIMEOUT], [1, EndReason.FORCED_END]]);
});

test('ends a busy flow at the active timeout (300 s by default) and continues in a new one', () => {
  const { m, flows } = meter();
  for (let t = 0; t <= 310_000; t += 10_000) m.add(1, packet(), T0 + t);
  m.flush();
  assert.deepEqual(
    flows.map((r) => [r.packetDeltaCount, r.flowEndReason]),
    [[30, EndReason.ACTIVE_TIMEOUT], [2, EndReason.FORCED_END]],
  );
  assert.equal(flows[1]!.flowStartMilliseconds, T0 + 300_000);
});

test('applies configured timeouts', () => {
  const { m, flows } = meter({ idleTimeoutMs: 5_000, activeTimeoutMs: 20_000 });
  m.add(1, packet(), T0);
  m.expire(T0 + 5_000);
  assert.equal(flows.length, 1);
  for (let t = 0; t <= 20_000; t += 4_000) m.add(1, packet({ sport: 1 }), T0 + t);
  assert.deepEqual(flows.map((r) => r.flowEndReason), [EndReason.IDLE_TIMEOUT, EndReason.ACTIVE_TIMEOUT]);
});

test('ends a TCP flow with END_OF_FLOW when a SYN follows a FIN or RST in the same direction', () => {
  const { m, flows } = meter();
  m.add(1, packet({ flags: TCP_SYN }), T0);
  m.add(1, reply({ flags: TCP_SYN | TCP_ACK }), T0 + 1);
  m.add(1, packet({ flags: TCP_FIN | TCP_ACK }), T0 + 2);
  m.add(1, reply({ flags: TCP_FIN | TCP_ACK }), T0 + 3);
  m.add(1, packet({ flags: TCP_SYN }), T0 + 4); // the port is reused for a new connection
  m.add(1, reply({ flags: TCP_SYN | TCP_ACK }), T0 + 5);
  m.flush();
  assert.deepEqual(
    flows.map((r) => [r.packetDeltaCount, r.reversePacketDeltaCount, r.flowEndReason]),
    [[2, 2, EndReason.END_OF_FLOW], [1, 1, EndReason.FORCED_END]],
  );
  assert.equal(m.stats.ended[EndReason.END_OF_FLOW], 1);
});

test('restarts on any SYN, with or without ACK, but only after FIN or RST in the SYN\'s own direction (as ipfixprobe)', () => {
  const { m, flows } = meter();
  m.add(1, packet({ flags: TCP_SYN }), T0);
  m.add(1, reply({ flags: TCP_RST | TCP_ACK }), T0 + 1);
  m.add(1, packet({ flags: TCP_SYN }), T0 + 2); // the client's direction saw no FIN/RST: same flow
  assert.equal(flows.length, 0);
  m.add(1, reply({ flags: TCP_SYN | TCP_ACK }), T0 + 3); // the server's direction saw RST: new flow
  assert.deepEqual(flows.map((r) => [r.packetDeltaCount, r.reversePacketDeltaCount, r.flowEndReason]), [[2, 1, EndReason.END_OF_FLOW]]);
  m.flush();
  // The new flow's forward direction is the packet that started it.
  assert.deepEqual([flows[1]!.sourceTransportPort, flows[1]!.packetDeltaCount], [80, 1]);
});

test('evicts the flow idle longest (in whole seconds) with LACK_OF_RESOURCES when the table is full, and counts it', () => {
  const { m, flows } = meter({ maxFlows: 2 });
  m.add(1, packet({ sport: 1 }), T0);
  m.add(1, packet({ sport: 2 }), T0 + 1_000);
  m.add(1, packet({ sport: 1 }), T0 + 2_000); // flow 1 is now the most recent
  m.add(1, packet({ sport: 3 }), T0 + 3_000);
  assert.deepEqual(flows.map((r) => [r.sourceTransportPort, r.flowEndReason]), [[2, EndReason.LACK_OF_RESOURCES]]);
  assert.equal(m.stats.evictions, 1);
  assert.equal(m.stats.ended[EndReason.LACK_OF_RESOURCES], 1);
  assert.equal(m.stats.active, 2);
});

test('ends every flow of an observation point with the given reason', () => {
  const { m, flows } = meter();
  m.add(1, packet({ sport: 1 }), T0);
  m.add(2, packet({ sport: 2 }), T0);
  m.add(1, packet({ sport: 3 }), T0);
  assert.equal(m.endObservationPoint(1, EndReason.FORCED_END), 2);
  assert.deepEqual(flows.map((r) => [r.observationPointId, r.sourceTransportPort, r.flowEndReason]), [
    [1, 1, EndReason.FORCED_END],
    [1, 3, EndReason.FORCED_END],
  ]);
  assert.equal(m.stats.active, 1);
  assert.equal(m.endObservationPoint(1, EndReason.FORCED_END), 0);
});

test('splits every flow with a handed-over address at the handover: packets before it stay, the first after it starts a new flow', () => {
  const { m, flows } = meter({ expireOnAdd: false });
  const X = Uint8Array.of(10, 0, 0, 9);
  m.add(1, packet({ src: 0x0a000001, dst: 0x0a000009 }), T0); // 10.0.0.9 as destination
  m.add(1, packet({ src: 0x0a000009, dst: 0x0a000003, sport: 5 }), T0); // as source
  m.add(2, packet({ src: 0x0a000001, dst: 0x0a000009, sport: 6 }), T0); // at a spared point
  m.add(1, packet({ src: 0x0a000001, dst: 0x0a000002, sport: 7 }), T0); // another address
  m.add(1, packet({ src: 0x0a000009, v6: true }), T0); // an IPv6 address whose first word is the same
  assert.equal(m.splitFlowsAt(X, T0 + 1000, (id) => id === 2), 2);
  // A packet from before the handover, delivered late, joins its flow; the first after it starts a new one.
  m.add(1, packet({ src: 0x0a000001, dst: 0x0a000009 }), T0 + 900);
  m.add(1, packet({ src: 0x0a000001, dst: 0x0a000009 }), T0 + 1100);
  assert.deepEqual(flows.map((r) => [r.packetDeltaCount, r.flowStartMilliseconds - T0, r.flowEndMilliseconds - T0, r.flowEndReason]), [[2, 0, 900, EndReason.FORCED_END]]);
  // A flow started by a late packet from before the handover is split too; expire() past the handover ends what is left of the old holder's.
  m.add(1, packet({ src: 0x0a000009, dst: 0x0a000004, sport: 8 }), T0 + 950);
  m.expire(T0 + 1000);
  assert.deepEqual(flows.slice(1).map((r) => [r.sourceTransportPort, r.flowEndReason]).sort(), [[5, EndReason.FORCED_END], [8, EndReason.FORCED_END]]);
  // Spared, not split, and the new holder's flows go on.
  m.add(2, packet({ src: 0x0a000001, dst: 0x0a000009, sport: 6 }), T0 + 1200);
  m.add(1, packet({ src: 0x0a000009, dst: 0x0a000004, sport: 8 }), T0 + 1300);
  m.flush();
  const rest = flows.slice(3).map((r) => [r.observationPointId, r.sourceTransportPort, r.packetDeltaCount]).sort();
  assert.deepEqual(rest, [[1, 40000, 1], [1, 40000, 1], [1, 7, 1], [1, 8, 1], [2, 6, 2]]);
});

test('splits IPv6 flows by their 16-byte address', () => {
  const { m, flows } = meter();
  m.add(1, packet({ src: 0x0a000009, v6: true }), T0);
  m.add(1, packet({ src: 0x0a000009 }), T0);
  const v6 = new Uint8Array(16);
  v6.set([10, 0, 0, 9]);
  v6[15] = 7;
  assert.equal(m.splitFlowsAt(v6, T0 + 1), 1);
  m.add(1, packet({ src: 0x0a000009, v6: true }), T0 + 2);
  assert.deepEqual(flows.map((r) => r.ipVersion), [6]);
});

test('flushes every open flow, oldest first, with FORCED_END unless told otherwise', () => {
  const { m, flows } = meter();
  m.add(1, packet({ sport: 1 }), T0);
  m.add(1, packet({ sport: 2 }), T0 + 1);
  m.flush();
  m.add(1, packet({ sport: 3 }), T0 + 2);
  m.flush(EndReason.END_OF_FLOW);
  assert.deepEqual(flows.map((r) => [r.sourceTransportPort, r.flowEndReason]), [
    [1, EndReason.FORCED_END],
    [2, EndReason.FORCED_END],
    [3, EndReason.END_OF_FLOW],
  ]);
  assert.deepEqual([m.stats.created, m.stats.active], [3, 0]);
});

test('finds every open flow again after many scattered removals from the table', () => {
  const { m, flows } = meter({ maxFlows: 4096 });
  const tuples = 4000;
  for (let i = 0; i < tuples; i++) m.add(i % 3, packet({ src: i * 7919, sport: i & 0xffff }), T0);
  assert.equal(m.endObservationPoint(0, EndReason.FORCED_END), 1334);
  for (let i = 0; i < tuples; i++) {
    if (i % 3 !== 0) m.add(i % 3, reply({ src: 0x0a000002, dst: i * 7919, sport: 80, dport: i & 0xffff }), T0 + 1);
  }
  assert.equal(m.stats.created, tuples);
  m.flush();
  assert.equal(flows.length, tuples);
  assert.equal(flows.reduce((n, r) => n + r.packetDeltaCount + r.reversePacketDeltaCount, 0), tuples + 2666);
});

test('rejects timeouts and table sizes that cannot work', () => {
  const onFlow = () => {};
  assert.throws(() => new FlowMeter({ onFlow, idleTimeoutMs: 0 }), { code: 'PODFLOW_ERR_FLOW_CONFIG' });
  assert.throws(() => new FlowMeter({ onFlow, activeTimeoutMs: -1 }), { code: 'PODFLOW_ERR_FLOW_CONFIG' });
  assert.throws(() => new FlowMeter({ onFlow, maxFlows: 0 }), { code: 'PODFLOW_ERR_FLOW_CONFIG' });
  assert.throws(() => new FlowMeter({ onFlow, maxFlows: 1.5 }), { code: 'PODFLOW_ERR_FLOW_CONFIG' });
});
