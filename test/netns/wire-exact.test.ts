// Needs root: creates network namespaces and opens packet sockets (skips with the reason otherwise).
//
// Wire-exact counts: a flow counts packets and octets as they crossed (or
// will cross) the wire, whatever GSO/TSO/GRO made of them on a veth or lo.
// Judged by the kernel, not by podflow: the segments each TCP sender put on
// the wire (TcpOutSegs + TcpRetransSegs in its namespace, by nstat:
// test/helpers/kernel-tcp.ts), the datagrams a
// UDP GSO sender sent, and the counters of a bridge port whose offloads are
// off: the kernel cuts every super-packet it sends there into wire segments
// in software, so its counters count what the wire carries.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { tcpCounters, inTimeWait } from '../helpers/kernel-tcp.ts';
import { caughtUp, meteredCapture } from '../helpers/metered-capture.ts';
import { waitFor } from '../helpers/wait.ts';
import type { CaptureHandle } from '../../netns/capture.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, ETHERNET_HEADER_BYTES, SimNode, type SimPod } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const UDP_GSO_SENDER = fileURLToPath(new URL('../../sim/udp-gso-send.py', import.meta.url));

const tcpSegmentsSent = (node: SimNode, netns: string) => tcpCounters(node, netns).sent;

interface Scene {
  node: SimNode;
  flows: FlowRecord[];
  handles: () => CaptureHandle[];
  pointOf: (pod: SimPod, ifname: string) => number;
  /** Packets delivered for a pod interface: the buffers capture saw. */
  buffers: (pod: SimPod, ifname: string) => number;
  close: () => void;
}

async function scene(t: TestContext, offloads: boolean, pods: number[]): Promise<Scene> {
  const node = new SimNode(t, { offloads });
  pods.forEach((i) => node.addPod(i));
  const flows: FlowRecord[] = [];
  const m = await meteredCapture(t, node, { onFlow: (r) => flows.push(r) });
  m.capture.start();
  await waitFor(() => m.capture.counters().handlesOpen === pods.length, 3000, 'a capture in every pod');
  const pointOf = (pod: SimPod, ifname: string) => m.pointOf(pod, ifname) ?? -1;
  const buffers = (pod: SimPod, ifname: string) => m.capture.points().find((p) => p.point.id === pointOf(pod, ifname))?.packets ?? 0;
  return { node, flows, handles: () => m.capture.handles(), pointOf, buffers, close: () => m.capture.close() };
}

/**
 * Wire packets and IP octets each way between pods a and b, from the
 * counters of an interface on the path that carries only wire packets: its
 * transmit side carries a to b, its receive side b to a. veth counts whole
 * frames (bytes less 14 per packet are IP octets). Not a veth whose peer
 * aggregates (GRO): its counters then leave the Ethernet headers out.
 */
function wireTruth(node: SimNode, netns: string, ifname: string) {
  const before = node.counters(netns, ifname);
  return () => {
    const after = node.counters(netns, ifname);
    const packets = { tx: after.txPackets - before.txPackets, rx: after.rxPackets - before.rxPackets };
    return {
      aToB: { packets: packets.tx, octets: after.txBytes - before.txBytes - ETHERNET_HEADER_BYTES * packets.tx },
      bToA: { packets: packets.rx, octets: after.rxBytes - before.rxBytes - ETHERNET_HEADER_BYTES * packets.rx },
    };
  };
}

/**
 * How the kernel hands a bulk transfer from pod a to pod b to the captures,
 * and which interface witnesses the wire (see wireTruth).
 *   tso: a's eth0 sends TSO super-packets; b's bridge port, its offloads off,
 *        cuts them into segments in software, so b receives segments.
 *   gro: a sends segments; b's eth0 aggregates them (GRO) into super-packets.
 *   off: segments everywhere.
 */
const CASES = {
  tso: { offloads: true, witness: (node: SimNode, _a: SimPod, b: SimPod) => ({ netns: node.nodeNetns, ifname: b.nodeVeth }) },
  gro: { offloads: false, witness: (_node: SimNode, a: SimPod) => ({ netns: a.netns, ifname: 'eth0' }) },
  off: { offloads: false, witness: (_node: SimNode, a: SimPod) => ({ netns: a.netns, ifname: 'eth0' }) },
} as const;

for (const [name, how] of Object.entries(CASES)) {
  for (const family of [4, 6] as const) {
    test(`a bulk TCP transfer over IPv${family}, offloads ${name}: packets are the senders' segments, octets the wire's`, { skip }, async (t) => {
      const s = await scene(t, how.offloads, [1, 2]);
      const [a, b] = [s.node.pods.get(1)!, s.node.pods.get(2)!];
      if (name === 'tso') s.node.setOffloads(s.node.nodeNetns, b.nodeVeth, false);
      if (name === 'gro') s.node.setOffloads(b.netns, 'eth0', true);
      const witness = how.witness(s.node, a, b);
      const BYTES = 8_000_000;
      const segmentsBefore = [a, b].map((p) => tcpSegmentsSent(s.node, p.netns));
      const wire = wireTruth(s.node, witness.netns, witness.ifname);
      const sink = await s.node.startSink(b.netns, ['tcp-sink', '5001']);
      await s.node.runTraffic(a.netns, ['tcp-send', family === 4 ? b.ipv4 : b.ipv6, '5001', String(BYTES)]);
      assert.equal(JSON.parse((await sink.closed).output.trim().split('\n').at(-1)!).received, BYTES);
      await waitFor(() => inTimeWait(s.node, a.netns), 5000, 'the sender in TIME_WAIT');
      const segments = [a, b].map((p, i) => tcpSegmentsSent(s.node, p.netns) - segmentsBefore[i]!);
      const truth = wire();
      await waitFor(() => caughtUp(s.handles()), 3000, 'capture caught up with the kernel rings');
      const buffers = new Map([a, b].map((p) => [s.pointOf(p, 'eth0'), s.buffers(p, 'eth0')]));
      s.close();

      t.diagnostic(`segments sent: a ${segments[0]}, b ${segments[1]}; wire (${witness.ifname}): ${JSON.stringify(truth)}`);
      assert.deepEqual([truth.aToB.packets, truth.bToA.packets], segments, "the witness's packets are the TCP segments");
      for (const pod of [a, b]) {
        const at = s.flows.filter((f) => f.observationPointId === s.pointOf(pod, 'eth0') && f.protocolIdentifier === 6);
        assert.equal(at.length, 1, `one TCP flow at pod ${pod.index}`);
        const f = at[0]!;
        t.diagnostic(`pod ${pod.index}: ${f.packetDeltaCount}/${f.reversePacketDeltaCount} packets, ${f.octetDeltaCount}/${f.reverseOctetDeltaCount} octets from ${buffers.get(s.pointOf(pod, 'eth0'))} buffers`);
        // The forward direction is the first packet's: the SYN from a.
        assert.deepEqual(
          { packets: [f.packetDeltaCount, f.reversePacketDeltaCount], octets: [f.octetDeltaCount, f.reverseOctetDeltaCount] },
          { packets: [truth.aToB.packets, truth.bToA.packets], octets: [truth.aToB.octets, truth.bToA.octets] },
          `pod ${pod.index}`,
        );
      }
      // The case did what it says: super-packets where it makes them. The
      // capture there saw fewer buffers than the wire carried both ways (the
      // ACKs are never merged, and a loaded receiver may ACK every segment,
      // so the data segments alone are no bound for data plus ACKs).
      const superPackets = { tso: a, gro: b }[name as 'tso' | 'gro'];
      if (superPackets) {
        const seen = buffers.get(s.pointOf(superPackets, 'eth0'))!;
        const wirePackets = truth.aToB.packets + truth.bToA.packets;
        assert.ok(seen < wirePackets, `super-packets at pod ${superPackets.index}: ${seen} buffers for ${wirePackets} wire packets`);
      }
    });
  }
}

test('a UDP GSO sender: every datagram is a packet with its own headers', { skip }, async (t) => {
  const s = await scene(t, true, [1, 2]);
  const [a, b] = [s.node.pods.get(1)!, s.node.pods.get(2)!];
  s.node.setOffloads(s.node.nodeNetns, b.nodeVeth, false);
  const wire = wireTruth(s.node, s.node.nodeNetns, b.nodeVeth);
  const DATAGRAMS = 4000;
  const SIZE = 1200;
  // A sink, so no port unreachable comes back; whether its socket keeps up is not the question here.
  await s.node.startSink(b.netns, ['udp-sink', '6001', String(DATAGRAMS)]);
  const sent = JSON.parse(s.node.exec(a.netns, 'python3', [UDP_GSO_SENDER, b.ipv4, '6001', String(DATAGRAMS), String(SIZE)])) as { sent: number; sends: number };
  assert.equal(sent.sent, DATAGRAMS);
  await waitFor(() => caughtUp(s.handles()), 3000, 'capture caught up with the kernel rings');
  const truth = wire();
  const buffers = s.buffers(a, 'eth0');
  s.close();
  t.diagnostic(`${DATAGRAMS} datagrams in ${sent.sends} sends, ${buffers} buffers at the sender's eth0; wire ${JSON.stringify(truth)}`);
  assert.deepEqual(truth.aToB, { packets: DATAGRAMS, octets: DATAGRAMS * (SIZE + 8 + 20) });
  assert.ok(buffers <= sent.sends, 'the capture saw super-packets');
  for (const pod of [a, b]) {
    const [f, ...rest] = s.flows.filter((x) => x.observationPointId === s.pointOf(pod, 'eth0') && x.protocolIdentifier === 17);
    assert.equal(rest.length, 0);
    assert.deepEqual([f?.packetDeltaCount, f?.octetDeltaCount], [DATAGRAMS, DATAGRAMS * (SIZE + 8 + 20)], `pod ${pod.index}`);
  }
});

test('a TCP transfer over lo: packets are the segments sent, each seen once', { skip }, async (t) => {
  const s = await scene(t, true, [1]);
  const a = s.node.pods.get(1)!;
  // At lo's own MTU (64 KiB) a segment fits a whole super-packet; at 1500 TSO cuts them as on a veth.
  s.node.exec(a.netns, 'ip', ['link', 'set', 'lo', 'mtu', '1500']);
  const BYTES = 4_000_000;
  const before = tcpCounters(s.node, a.netns);
  await s.node.runTraffic(a.netns, ['lo-tcp', String(BYTES)]);
  await waitFor(() => inTimeWait(s.node, a.netns), 5000, 'the sender in TIME_WAIT');
  const after = tcpCounters(s.node, a.netns);
  await waitFor(() => caughtUp(s.handles()), 3000, 'capture caught up with the kernel rings');
  const buffers = s.buffers(a, 'lo');
  s.close();
  const lo = s.flows.filter((f) => f.observationPointId === s.pointOf(a, 'lo') && f.protocolIdentifier === 6);
  assert.equal(lo.length, 1);
  const f = lo[0]!;
  const segments = after.sent - before.sent;
  t.diagnostic(`lo: ${f.packetDeltaCount}/${f.reversePacketDeltaCount} packets from ${buffers} buffers, ${f.octetDeltaCount}/${f.reverseOctetDeltaCount} octets; ${segments} segments sent`);
  assert.equal(f.packetDeltaCount + f.reversePacketDeltaCount, segments);
  assert.ok(buffers < f.packetDeltaCount, 'super-packets on lo');
  // No interface witnesses lo's wire. Without a retransmission, the octets
  // are the payload plus every segment's IP and TCP headers (timestamp option:
  // 32 bytes), the SYNs 8 more; a retransmission adds payload nobody counted.
  if (after.retransmitted === before.retransmitted) {
    assert.equal(f.octetDeltaCount, BYTES + f.packetDeltaCount * 52 + 8);
    assert.equal(f.reverseOctetDeltaCount, f.reversePacketDeltaCount * 52 + 8);
  } else t.diagnostic(`${after.retransmitted - before.retransmitted} retransmissions: octets not checked`);
});
