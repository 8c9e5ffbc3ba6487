// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// A new pod's namespace is attached before its veth has an address (CNI
// moves the veth in and addresses it after the namespace appears). A flow
// that ends before the address is known must not be named by a guess (the
// direction, and with it which end is the observed pod): it is held. Once
// the address is set (the capture lists it, told by the namespace's netlink
// notifications: test/netns/node-capture.test.ts), the held flow is named,
// and every later flow from its first packet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlowDirection } from '../../enrich/export-record.ts';
import { EndReason } from '../../flow/types.ts';
import { canRunSimNode, capturedPackets, SimNode } from '../../sim/simnode.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { identityPipeline, podObject } from '../helpers/identity-pipeline.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'sim-node';

test('a namespace whose address comes after it was attached: its first flows name the right pod, in the right direction', { skip, timeout: 60_000 }, async (t) => {
  const server = new KubeApiServer();
  await server.start();
  const dir = mkdtempSync(join(tmpdir(), 'podflow-late-address-'));
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const node = new SimNode(t);
  const front = node.addPod(1);
  const late = node.addPod(4);
  // The veth is in, its address not yet (as between a CNI's link set netns and its addr add).
  node.exec(late.netns, 'ip', ['addr', 'flush', 'dev', 'eth0']);
  server.create('pod', podObject('front-f', front.ipv4, NODE));
  server.create('pod', podObject('late-l', late.ipv4, NODE));

  const { records, capture, meter, naming, events, nsKeyOf } = await identityPipeline(t, node, server, { dir, nodeName: NODE });
  await waitFor(() => naming.enricher.synced, 10_000, 'caches synced');
  capture.start();
  const lateKey = nsKeyOf(late.nsPath)!;
  await waitFor(() => capture.counters().handlesOpen === 2, 5000, 'a capture in both pods');
  const listedEth0 = () =>
    events.flatMap((e) => (e.type === 'interfaces' && e.ns.key === lateKey ? [e.interfaces.find((i) => i.name === 'eth0')?.addresses.map((a) => a.address)] : []));
  assert.deepEqual(listedEth0(), [[]], 'attached before its address');
  assert.equal(naming.namespaces.get(lateKey)?.pod, undefined);

  // Traffic reaches the pod before its address does (the peer knows where it will be);
  // its flow ends while the namespace has no address.
  const eth0 = () => capture.points().find((p) => `${p.point.netnsDev}:${p.point.netnsInode}` === lateKey && p.point.interfaceName === 'eth0');
  const before = node.counters(late.netns, 'eth0');
  await node.runTraffic(front.netns, ['udp-send', late.ipv4, '7000', '5', '100']);
  const early = node.counters(late.netns, 'eth0');
  await waitFor(() => (eth0()?.packets ?? 0) >= capturedPackets('eth0', before, early), 5000, 'the early packets delivered');
  meter.flush(EndReason.FORCED_END);
  const id = eth0()!.point.id;
  const atLate = () => records.filter((r) => r.flow.observationPointId === id);
  assert.deepEqual(atLate(), [], 'held, not named by a guess');

  // The address comes: the capture lists it, and the held flow is named.
  node.exec(late.netns, 'ip', ['addr', 'add', `${late.ipv4}/24`, 'dev', 'eth0']);
  await waitFor(() => listedEth0().at(-1)?.includes(late.ipv4) === true, 5000, 'the address listed');
  assert.equal(naming.namespaces.get(lateKey)?.pod?.name, 'late-l');
  assert.equal(atLate().length, 1);

  // The flush took the static neighbour with the last IPv4 address (the pods run without ARP).
  node.exec(late.netns, 'ip', ['neigh', 'replace', front.ipv4, 'lladdr', front.mac, 'dev', 'eth0', 'nud', 'permanent']);
  const atStart = eth0()!.packets;
  const start = node.counters(late.netns, 'eth0');
  for (const [from, to, port] of [[late, front, 7001], [front, late, 7002]] as const) {
    const { closed } = await node.startSink(to.netns, ['udp-sink', String(port), '5']);
    await node.runTraffic(from.netns, ['udp-send', to.ipv4, String(port), '5', '100']);
    assert.match((await closed).output, /"received":5/);
  }
  const after = node.counters(late.netns, 'eth0');
  await waitFor(() => eth0()!.packets - atStart >= capturedPackets('eth0', start, after), 5000, "the new pod's packets delivered");
  meter.flush(EndReason.FORCED_END);
  await waitFor(() => atLate().length === 3, 5000, 'the later flows exported');
  const named = atLate().map((r) => [r.flow.destinationTransportPort, r.flowDirection, r.flowDirection === FlowDirection.EGRESS ? r.source.podName : r.destination.podName, r.flowDirection === FlowDirection.EGRESS ? r.destination.podName : r.source.podName]);
  assert.deepEqual(named.sort(), [
    [7000, FlowDirection.INGRESS, 'late-l', 'front-f'],
    [7001, FlowDirection.EGRESS, 'late-l', 'front-f'],
    [7002, FlowDirection.INGRESS, 'late-l', 'front-f'],
  ]);
  assert.equal(naming.stats().enricher.directionGuessed, 0);
  assert.equal(naming.stats().enricher.released, 1, 'only the flow that ended before the address was held');
});
