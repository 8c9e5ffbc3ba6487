// Needs root: creates network namespaces, iptables rules in them, and opens packet sockets (skips with the reason otherwise).
//
// TCP performance as podflow reads it from the packets (flow/features/tcp.ts,
// docs/tcp.md), judged by the kernel: the server pod's ingress delays every
// TCP packet by 20 ms and drops 2% of them (SimNode.impairIngress: what
// `tc netem delay 20ms loss 2%` would do; this kernel has no sch_netem).
// The handshake round trip podflow reads at the client's pod must be within
// 2 ms of 20 ms, and the retransmitted segments each way must equal each
// sender's TcpRetransSegs delta (nstat in its namespace), at both pods: the
// packets are dropped after both captures saw them, so each sees every
// original and every retransmission.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inTimeWait, tcpCounters } from '../helpers/kernel-tcp.ts';
import { caughtUp, meteredCapture } from '../helpers/metered-capture.ts';
import { waitFor } from '../helpers/wait.ts';
import { IpProtocol } from '../../flow/decode.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

const DELAY_MS = 20;
const LOSS = 0.02;
const CONNECTIONS = 3;
const BYTES = 1_000_000;

test(`through ${DELAY_MS} ms of delay and ${LOSS * 100}% loss: handshake round trips within 2 ms, retransmissions equal to the senders' TcpRetransSegs`, { skip }, async (t) => {
  const node = new SimNode(t);
  const [client, server] = [node.addPod(1), node.addPod(2)];
  const flows: FlowRecord[] = [];
  const m = await meteredCapture(t, node, { onFlow: (r) => flows.push(r), features: { dns: false, tcp: true, tls: false, quic: false, http: false } });
  m.capture.start();
  await waitFor(() => m.capture.counters().handlesOpen === 2, 3000, 'a capture in both pods');
  const impairment = await node.impairIngress(server.index, DELAY_MS, LOSS);

  const before = [client, server].map((p) => tcpCounters(node, p.netns));
  for (let i = 0; i < CONNECTIONS; i++) {
    const sink = await node.startSink(server.netns, ['tcp-sink', String(5001 + i)]);
    await node.runTraffic(client.netns, ['tcp-send', server.ipv4, String(5001 + i), String(BYTES)]);
    assert.equal(JSON.parse((await sink.closed).output.trim().split('\n').at(-1)!).received, BYTES);
  }
  // The client's last segment (the ACK of the server's FIN) is out, and the server has it past the delay.
  await waitFor(() => inTimeWait(node, client.netns), 10_000, 'the client in TIME_WAIT');
  await node.tcpSettled([server.netns], 10_000);
  const delay = await impairment.stop();
  const after = [client, server].map((p) => tcpCounters(node, p.netns));
  const retransmitted = after.map((a, i) => a.retransmitted - before[i]!.retransmitted);
  await waitFor(() => caughtUp(m.capture.handles()), 3000, 'capture caught up with the kernel rings');
  const buffers = m.capture.points().find((p) => p.point.id === m.pointOf(client, 'eth0'))?.packets ?? 0;
  m.capture.close();

  t.diagnostic(`TcpRetransSegs: client ${retransmitted[0]}, server ${retransmitted[1]}; the delay held ${delay.packets} packets, released at most ${delay.latestLateMicros} µs late`);
  // The loss did happen, so the counts below are a test of something; and the
  // client's stack sent super-packets (TSO on its veth), so they are counted
  // in gso_size segments.
  assert.ok(retransmitted[0]! > 0, 'the client retransmitted');
  const segments = after[0]!.sent - before[0]!.sent + after[1]!.sent - before[1]!.sent;
  t.diagnostic(`the client's capture had ${buffers} buffers for ${segments} segments`);
  assert.ok(buffers < segments, 'super-packets at the client');
  for (const pod of [client, server]) {
    const point = m.pointOf(pod, 'eth0');
    const at = flows.filter((f) => f.observationPointId === point && f.protocolIdentifier === IpProtocol.TCP);
    assert.equal(at.length, CONNECTIONS, `${CONNECTIONS} TCP flows at pod ${pod.index}`);
    let forward = 0;
    let reverse = 0;
    for (const f of at) {
      const tcp = f.tcp!;
      assert.equal(tcp.clientDirection, 'forward', "the SYN is each flow's first packet");
      const synToSynAck = tcp.synToSynAckMicros!;
      const synAckToAck = tcp.synAckToAckMicros!;
      t.diagnostic(`pod ${pod.index} port ${f.destinationTransportPort}: SYN→SYN/ACK ${synToSynAck} µs, SYN/ACK→ACK ${synAckToAck} µs; retransmitted ${tcp.forward.retransmittedSegments}/${tcp.reverse.retransmittedSegments} of ${tcp.forward.segments}/${tcp.reverse.segments} segments`);
      // The delay sits in the server's pod, behind its capture: at the client the
      // round trip is all SYN→SYN/ACK, at the server all of it too (its own
      // stack held the SYN); both add up to it.
      assert.ok(Math.abs(synToSynAck + synAckToAck - DELAY_MS * 1000) <= 2000, `pod ${pod.index}: handshake ${synToSynAck} + ${synAckToAck} µs`);
      if (pod === client) assert.ok(Math.abs(synToSynAck - DELAY_MS * 1000) <= 2000, `client's SYN→SYN/ACK ${synToSynAck} µs`);
      forward += tcp.forward.retransmittedSegments;
      reverse += tcp.reverse.retransmittedSegments;
      assert.equal(tcp.forward.outOfOrderSegments + tcp.reverse.outOfOrderSegments, 0, 'nothing was lost before a capture');
    }
    assert.deepEqual([forward, reverse], retransmitted, `pod ${pod.index}: retransmitted segments client→server, server→client`);
  }
});
