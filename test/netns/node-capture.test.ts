// Needs root: builds a simulated node of network namespaces and captures in them (skips with the reason otherwise).
//
// Ground truth: per observation point, the interface counters (read by
// iproute2 over netlink, converted to IP octets by ipOctets()) and, per flow, what
// the generators sent (UDP and ICMP sizes are exact; TCP segmentation is not,
// so TCP flows are checked against the counters and the bytes received).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, type InterfaceCounters, ipOctets, SimNode, type SimPod } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';
import { meteredCapture } from '../helpers/metered-capture.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

const PROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;

function address(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Enough for the test's fd00::N addresses and ::1.
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

const octets = (flows: FlowRecord[]) => flows.reduce((sum, f) => sum + f.octetDeltaCount + f.reverseOctetDeltaCount, 0);

test('captures every flow of three pods at the right observation point, octets matching the ground truth', { skip }, async (t) => {
  // Offloads off: octets are held against interface counters, which count buffers (sim/simnode.ts).
  const node = new SimNode(t, { offloads: false });
  const [a, b, c] = [node.addPod(1), node.addPod(2), node.addPod(3)] as [SimPod, SimPod, SimPod];
  const flows: FlowRecord[] = [];
  const { capture, ingest, pointOf } = await meteredCapture(t, node, { onFlow: (r) => flows.push(r) });
  capture.start();
  await waitFor(() => capture.counters().handlesOpen === 3, 3000, 'a capture in each of three pods');
  const interfaces = [a, b, c].flatMap((pod) => ['eth0', 'lo'].map((ifname) => ({ pod, ifname })));
  const before = new Map<string, InterfaceCounters>(interfaces.map(({ pod, ifname }) => [`${pod.netns}/${ifname}`, node.counters(pod.netns, ifname)]));

  // Listeners first, then all generators at once: real concurrent traffic.
  const tcpSinkB = node.spawnTraffic(b.netns, ['tcp-sink', '5001']);
  const tcpSinkA = node.spawnTraffic(a.netns, ['tcp-sink', '5002']);
  const udpSinkC = node.spawnTraffic(c.netns, ['udp-sink', '6001', '300']);
  const udpSinkC6 = node.spawnTraffic(c.netns, ['udp-sink', '6002', '100']);
  // A sink that dies before it listens fails the test at once instead of hanging it.
  const listening = (child: typeof tcpSinkA) =>
    new Promise((resolve, reject) => {
      child.stdout!.once('data', resolve);
      child.once('exit', (code, signal) => reject(new Error(`traffic sink exited before listening: ${code ?? signal}`)));
    });
  const sinkOutput = (child: typeof tcpSinkA) =>
    new Promise<string>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d));
      child.once('close', () => resolve(out));
    });
  const sinkResults = [tcpSinkB, tcpSinkA, udpSinkC, udpSinkC6].map(sinkOutput);
  await Promise.all([tcpSinkB, tcpSinkA, udpSinkC, udpSinkC6].map(listening));
  const TCP_AB = 5_000_000;
  const TCP_CA6 = 1_000_000;
  const LO_BYTES = 2_000_000;
  await Promise.all([
    node.runTraffic(a.netns, ['tcp-send', b.ipv4, '5001', String(TCP_AB)]),
    node.runTraffic(c.netns, ['tcp-send', a.ipv6, '5002', String(TCP_CA6)]),
    node.runTraffic(b.netns, ['udp-send', c.ipv4, '6001', '300', '500']),
    node.runTraffic(a.netns, ['udp-send', c.ipv6, '6002', '100', '300']),
    node.run(a.netns, 'ping', ['-q', '-c', '20', '-i', '0.01', '-s', '100', c.ipv4]),
    node.run(b.netns, 'ping', ['-q', '-6', '-c', '10', '-i', '0.01', '-s', '200', a.ipv6]),
    node.runTraffic(a.netns, ['lo-tcp', String(LO_BYTES)]),
  ]);
  const received = (await Promise.all(sinkResults)).map((out) => JSON.parse(out.trim().split('\n').at(-1)!).received as number);
  assert.deepEqual(received, [TCP_AB, TCP_CA6, 300, 100]);
  // The last ACKs and FINs are counted too: the counters are final.
  await node.tcpSettled([a.netns, b.netns, c.netns]);
  const after = new Map<string, InterfaceCounters>(interfaces.map(({ pod, ifname }) => [`${pod.netns}/${ifname}`, node.counters(pod.netns, ifname)]));
  for (const p of capture.points()) t.diagnostic(`point ${p.point.id} ${p.point.interfaceName}: ${p.packets} packets`);
  // Everything captured is delivered, then every point's flows end (FORCED_END).
  await capture.stop();
  const counters = capture.counters();

  assert.equal(counters.kernelDrops, 0);
  assert.equal(ingest.stats.truncatedRecords, 0);
  assert.ok(flows.every((f) => f.flowEndReason === EndReason.FORCED_END));
  const at = (pod: SimPod, ifname: string) => flows.filter((f) => f.observationPointId === pointOf(pod, ifname));

  // 1. Every observation point's flows add up to its interface's IP octets.
  for (const { pod, ifname } of interfaces) {
    const key = `${pod.netns}/${ifname}`;
    const expected = ipOctets(ifname, before.get(key)!, after.get(key)!);
    const drops = ['rxDropped', 'txDropped'].map((k) => after.get(key)![k as 'rxDropped'] - before.get(key)![k as 'rxDropped']);
    t.diagnostic(`${key}: ${at(pod, ifname).length} flows, ${octets(at(pod, ifname))} octets, counters say ${expected}, drops ${drops}`);
    assert.equal(octets(at(pod, ifname)), expected, `${key} octets`);
  }

  // 2. A pod's eth0 sees only flows it is an end of; lo sees only loopback traffic.
  for (const pod of [a, b, c]) {
    for (const f of at(pod, 'eth0')) {
      assert.ok([pod.ipv4, pod.ipv6].some((ip) => ip === address(f.sourceAddress) || ip === address(f.destinationAddress)),
        `${address(f.sourceAddress)} -> ${address(f.destinationAddress)} seen at ${pod.netns}/eth0`);
    }
  }
  assert.deepEqual(at(b, 'lo'), []);
  assert.deepEqual(at(c, 'lo'), []);
  const loFlows = at(a, 'lo');
  assert.ok(loFlows.length >= 1 && loFlows.every((f) => address(f.sourceAddress) === '127.0.0.1'));

  // 3. Exact per-flow octets where the sender fixes them.
  const find = (pod: SimPod, protocol: number, src: string, dst: string) =>
    at(pod, 'eth0').filter((f) => f.protocolIdentifier === protocol && address(f.sourceAddress) === src && address(f.destinationAddress) === dst);
  for (const pod of [b, c]) {
    const [udp] = find(pod, PROTO.UDP, b.ipv4, c.ipv4);
    assert.equal(udp?.octetDeltaCount, 300 * (500 + 8 + 20), `UDP b->c at ${pod.netns}`);
  }
  for (const pod of [a, c]) {
    const [udp6] = find(pod, PROTO.UDP, a.ipv6, c.ipv6);
    assert.equal(udp6?.octetDeltaCount, 100 * (300 + 8 + 40), `UDP6 a->c at ${pod.netns}`);
    const icmp = find(pod, PROTO.ICMP, a.ipv4, c.ipv4);
    assert.equal(octets(icmp), 2 * 20 * (100 + 8 + 20), `ICMP echo a<->c at ${pod.netns}`);
  }
  for (const pod of [a, b]) {
    const icmp6 = find(pod, PROTO.ICMPV6, b.ipv6, a.ipv6);
    assert.equal(octets(icmp6), 2 * 10 * (200 + 8 + 40), `ICMPv6 echo b<->a at ${pod.netns}`);
  }

  // 4. TCP: both ends see the same flow, carrying at least what was received.
  const tcpAB = [a, b].map((pod) => find(pod, PROTO.TCP, a.ipv4, b.ipv4));
  assert.equal(tcpAB[0]!.length, 1);
  assert.equal(octets(tcpAB[0]!), octets(tcpAB[1]!));
  assert.ok(tcpAB[0]![0]!.octetDeltaCount > TCP_AB);
  const tcpCA = [c, a].map((pod) => find(pod, PROTO.TCP, c.ipv6, a.ipv6));
  assert.equal(octets(tcpCA[0]!), octets(tcpCA[1]!));
  assert.ok(tcpCA[0]![0]!.octetDeltaCount > TCP_CA6);
  assert.ok(octets(loFlows) > LO_BYTES);
  assert.equal(capture.counters().handlesOpen, 0);
});
