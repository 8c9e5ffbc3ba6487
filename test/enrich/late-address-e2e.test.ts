// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// A new pod's namespace is attached before its veth has an address (CNI
// moves the veth in and addresses it after the namespace appears). Its first
// flows end before anything has listed its addresses again: they must not be
// named by a guess (the direction, and with it which end is the observed
// pod), but wait until the capture's interface listing brings the address.
// The capture's periodic re-listing is stopped here (60 s) and Identity's own
// reads find no address, and the listing is run by hand once the flows have
// ended, so that order is certain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlowDirection } from '../../ipfix/types.ts';
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

  // Identity's own reads of a namespace's addresses find none: only the capture's interface listing brings them.
  const { records, capture, meter, identity, events, nsKeyOf } = await identityPipeline(t, node, server, {
    dir, nodeName: NODE, capture: { interfaceRescanMs: 60_000 }, identity: { listAddresses: () => [] },
  });
  await waitFor(() => identity.enricher.synced, 10_000, 'caches synced');
  capture.start();
  const lateKey = nsKeyOf(late.nsPath)!;
  await waitFor(() => capture.counters().handlesOpen === 2, 5000, 'a capture in both pods');
  const listed = events.filter((e) => e.type === 'interfaces' && e.ns.key === lateKey);
  assert.equal(listed.length, 1);
  assert.deepEqual(listed[0]!.type === 'interfaces' && listed[0].interfaces.find((i) => i.name === 'eth0')?.addresses, [], 'attached before its address');
  assert.equal(identity.namespaces.get(lateKey)?.pod, undefined);

  // Traffic reaches the pod before its address does (the peer knows where it will be): the
  // capture lists the namespace at eth0's first packet, still without the address.
  await node.runTraffic(front.netns, ['udp-send', late.ipv4, '7000', '5', '100']);
  await waitFor(() => capture.points().some((p) => `${p.point.netnsDev}:${p.point.netnsInode}` === lateKey && p.point.interfaceName === 'eth0'), 5000, "eth0's first packet");
  assert.equal(events.filter((e) => e.type === 'interfaces' && e.ns.key === lateKey).length, 1, 'nothing new to report then');

  // The address comes; traffic both ways at once; every flow ends before anything lists the namespace again.
  const eth0 = () => capture.points().find((p) => `${p.point.netnsDev}:${p.point.netnsInode}` === lateKey && p.point.interfaceName === 'eth0')!;
  const before = node.counters(late.netns, 'eth0');
  // Every packet eth0 counted so far is delivered, so what comes now can be counted against its counters.
  await waitFor(() => eth0().packets >= capturedPackets('eth0', { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxDropped: 0, txDropped: 0 }, before), 5000, 'the early packets delivered');
  const atStart = eth0().packets;
  node.exec(late.netns, 'ip', ['addr', 'add', `${late.ipv4}/24`, 'dev', 'eth0']);
  // The flush took the static neighbour with the last IPv4 address (the pods run without ARP).
  node.exec(late.netns, 'ip', ['neigh', 'replace', front.ipv4, 'lladdr', front.mac, 'dev', 'eth0', 'nud', 'permanent']);
  for (const [from, to, port] of [[late, front, 7001], [front, late, 7002]] as const) {
    const { closed } = await node.startSink(to.netns, ['udp-sink', String(port), '5']);
    await node.runTraffic(from.netns, ['udp-send', to.ipv4, String(port), '5', '100']);
    assert.match((await closed).output, /"received":5/);
  }
  const after = node.counters(late.netns, 'eth0');
  await waitFor(() => eth0().packets - atStart >= capturedPackets('eth0', before, after), 5000, "the new pod's packets delivered");
  const id = eth0().point.id;
  meter.flush(EndReason.FORCED_END);
  const atLate = () => records.filter((r) => r.flow.observationPointId === id);
  assert.deepEqual(atLate(), [], 'held, not named by a guess');

  // The capture lists the namespace's interfaces (as on a netlink address event): the held flows are named.
  capture.rescanInterfaces();
  assert.equal(identity.namespaces.get(lateKey)?.pod?.name, 'late-l');
  const named = atLate().map((r) => [r.flow.destinationTransportPort, r.flowDirection, r.flowDirection === FlowDirection.EGRESS ? r.source.podName : r.destination.podName, r.flowDirection === FlowDirection.EGRESS ? r.destination.podName : r.source.podName]);
  assert.deepEqual(named.sort(), [
    [7000, FlowDirection.INGRESS, 'late-l', 'front-f'],
    [7001, FlowDirection.EGRESS, 'late-l', 'front-f'],
    [7002, FlowDirection.INGRESS, 'late-l', 'front-f'],
  ]);
  assert.equal(identity.stats().enricher.directionGuessed, 0);
  assert.equal(identity.stats().enricher.released, 3);
});
