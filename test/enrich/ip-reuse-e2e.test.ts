// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// An address passes from a terminating pod to the next one on this node, in
// the orders a cluster delivers the events in, with traffic at every step,
// through the real parts: the test API server → KubeCaches (client-node) →
// Naming, and real namespaces → NetnsDiscovery → NodeCapture → FlowMeter →
// Naming, which ends the meter's flows on an address whose lease closed.
//
// Pod A (IP X, namespace N1) starts terminating; N1 goes; a new namespace N2
// gets X; pod B with X appears in the API; A's delete arrives. Pod F pings X
// all along and sends UDP to it and takes UDP from it at every step where a
// namespace holds X. Ground truth: what was sent while N1 held X was A's,
// what was sent once N2 existed was B's; a record names one of them and
// must name the right one, at F (remote end, by the lease table) and in
// N1/N2 (observed end, by the namespace→pod map).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EndpointIdentity, type ExportRecord, FlowDirection } from '../../enrich/export-record.ts';
import { canRunSimNode, SimNode, type SimPod } from '../../sim/simnode.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { identityPipeline, podObject } from '../helpers/identity-pipeline.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

const NODE = 'sim-node';
const X = '198.18.0.3';

type Step = 'namespace gone' | 'new namespace' | 'new pod' | 'old pod deleted';

/** The orders after pod A starts terminating. */
const ORDERINGS: Record<string, Step[]> = {
  'the new pod first': ['namespace gone', 'new pod', 'new namespace', 'old pod deleted'],
  'the old pod deleted first': ['namespace gone', 'old pod deleted', 'new namespace', 'new pod'],
  'terminating, then the address taken again before the new pod is known': ['namespace gone', 'new namespace', 'new pod', 'old pod deleted'],
};

for (const [ordering, steps] of Object.entries(ORDERINGS)) {
  test(`an address passed from a terminating pod to the next names no flow wrong: ${ordering}`, { skip, timeout: 120_000 }, async (t) => {
    const server = new KubeApiServer();
    await server.start();
    const dir = mkdtempSync(join(tmpdir(), 'podflow-ip-reuse-'));
    t.after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const podA = podObject('old-a', X, NODE);
    server.create('pod', podObject('front-f', '198.18.0.1', NODE));
    server.create('pod', podA);

    const node = new SimNode(t);
    const front = node.addPod(1);
    let holder: SimPod | undefined = node.addPod(3);

    const { caches, records, capture, naming, events, nsKeyOf: keyOfPath } = await identityPipeline(t, node, server, { dir, nodeName: NODE });
    capture.start();

    const nsKeyOf = (pod: SimPod) => keyOfPath(pod.nsPath);
    const podOf = (key: string | undefined) => naming.namespaces.get(key ?? '')?.pod?.name;
    const cached = (name: string) => [...caches.pods()].find((p) => p.name === name);
    await waitFor(() => naming.enricher.synced, 10_000, 'caches synced');
    await waitFor(() => capture.counters().handlesOpen === 2, 5000, 'a capture in each of two pods');
    const n1 = nsKeyOf(holder)!;
    await waitFor(() => podOf(nsKeyOf(front)) === 'front-f' && podOf(n1) === 'old-a', 5000, 'namespaces tied to their pods');

    // F pings X all along: one ICMP 5-tuple across the handover.
    const ping = node.spawn(front.netns, 'ping', ['-q', '-i', '0.05', X]);
    t.after(() => {
      if (ping.exitCode === null && ping.signalCode === null) ping.kill('SIGKILL');
    });
    const pingExited = new Promise((resolve) => ping.once('exit', resolve));

    // UDP both ways between F and whoever holds X now, on ports of their own; the holder each port's flows must name.
    const expected = new Map<number, string>();
    let port = 7000;
    const udpBothWays = async (who: string) => {
      for (const [from, to] of [[front, holder!], [holder!, front]] as const) {
        port++;
        expected.set(port, who);
        const { closed } = await node.startSink(to.netns, ['udp-sink', String(port), '10']);
        await node.runTraffic(from.netns, ['udp-send', to.ipv4, String(port), '10', '100']);
        assert.match((await closed).output, /"received":10/);
      }
    };
    await udpBothWays('old-a');

    server.update('pod', { ...podA, metadata: { ...podA.metadata, deletionTimestamp: new Date(Date.now() + 30_000).toISOString(), deletionGracePeriodSeconds: 30 } });
    await waitFor(() => cached('old-a')?.deletingSinceMs !== undefined, 5000, 'pod A terminating in the caches');
    await udpBothWays('old-a');

    let removedAt = 0;
    let n2: string | undefined;
    for (const step of steps) {
      switch (step) {
        case 'namespace gone': {
          // No wait: N1's capture reads the kernel's last block before it closes.
          removedAt = Date.now();
          node.removePod(3);
          holder = undefined;
          await waitFor(() => events.some((e) => e.type === 'detached' && e.ns.key === n1), 5000, 'N1 detached');
          break;
        }
        case 'new namespace':
          holder = node.addPod(3);
          await waitFor(() => (n2 = nsKeyOf(holder!)) !== undefined && events.some((e) => e.type === 'interfaces' && e.ns.key === n2 && e.interfaces.some((i) => i.addresses.some((a) => a.address === X))), 5000, "N2 attached with X");
          break;
        case 'new pod':
          server.create('pod', podObject('new-b', X, NODE));
          await waitFor(() => cached('new-b') !== undefined, 5000, 'pod B in the caches');
          break;
        case 'old pod deleted':
          server.delete('pod', 'old-a', 'shop');
          await waitFor(() => cached('old-a') === undefined, 5000, 'pod A deleted in the caches');
          break;
      }
      if (n2 !== undefined && cached('new-b') !== undefined) await waitFor(() => podOf(n2) === 'new-b', 5000, 'N2 tied to pod B');
      if (holder !== undefined && step !== 'namespace gone') await udpBothWays('new-b');
    }
    assert.equal(podOf(n2), 'new-b');
    // Pings answered by B too, then every flow ends (FORCED_END) and is named.
    await waitFor(() => capture.points().some((p) => `${p.point.netnsDev}:${p.point.netnsInode}` === n2 && p.point.kind === 'pod' && p.packets > 40), 5000, 'pings reach N2');
    ping.kill('SIGTERM');
    await pingExited;
    await capture.stop();

    // Every record: the end on X names its holder then, the other end F, and the direction is right at F and at the holder.
    const frontKey = nsKeyOf(front);
    const frontPoints = new Set(events.flatMap((e) => (e.type === 'opened' && `${e.point.netnsDev}:${e.point.netnsInode}` === frontKey ? [e.point.id] : [])));
    const fromX = (r: ExportRecord) => [...r.flow.sourceAddress].join('.') === X;
    const xEnd = (r: ExportRecord): EndpointIdentity => (fromX(r) ? r.source : r.destination);
    const fEnd = (r: ExportRecord): EndpointIdentity => (fromX(r) ? r.destination : r.source);
    const wrong: string[] = [];
    const check = (r: ExportRecord, what: string, who: string) => {
      const atFront = frontPoints.has(r.flow.observationPointId);
      const egress = atFront !== fromX(r);
      const where = `${what} at ${atFront ? 'F' : 'the holder of X'}`;
      if (xEnd(r).podName !== who) wrong.push(`${where}: X named ${xEnd(r).podName || xEnd(r).type}, not ${who}`);
      if (fEnd(r).podName !== 'front-f') wrong.push(`${where}: F named ${fEnd(r).podName || fEnd(r).type}`);
      if (r.flowDirection !== (egress ? FlowDirection.EGRESS : FlowDirection.INGRESS)) wrong.push(`${where}: direction ${r.flowDirection}`);
    };
    for (const [p, who] of expected) {
      const flows = records.filter((r) => r.flow.protocolIdentifier === 17 && (r.flow.sourceTransportPort === p || r.flow.destinationTransportPort === p));
      assert.equal(flows.length, 2, `UDP port ${p}: seen at F and at the holder of X`);
      for (const r of flows) check(r, `UDP ${p}`, who);
    }
    const icmp = records.filter((r) => r.flow.protocolIdentifier === 1);
    for (const r of icmp) {
      check(r, `ICMP from ${r.flow.flowStartMilliseconds - removedAt} ms after N1 went (${r.flow.packetDeltaCount}+${r.flow.reversePacketDeltaCount} packets)`, r.flow.flowStartMilliseconds < removedAt ? 'old-a' : 'new-b');
    }
    const icmpAtFront = icmp.filter((r) => frontPoints.has(r.flow.observationPointId));
    if (wrong.length > 0) {
      for (const r of records) t.diagnostic(`point ${r.flow.observationPointId} ${r.interfaceName} direction ${r.flowDirection} ${[...r.flow.sourceAddress].join('.')}:${r.flow.sourceTransportPort} > ${[...r.flow.destinationAddress].join('.')}:${r.flow.destinationTransportPort} protocol ${r.flow.protocolIdentifier} from ${r.flow.flowStartMilliseconds - removedAt} ms: ${r.source.podName || r.source.type} > ${r.destination.podName || r.destination.type}`);
      for (const e of events) t.diagnostic(`event ${e.type} ${'ns' in e ? e.ns.key : ''} ${'point' in e ? `point ${e.point.id} ${e.point.netnsInode} ${e.point.interfaceName}` : ''}`);
    }
    assert.deepEqual(wrong, [], '0 misattributed flows');
    assert.ok(icmpAtFront.some((r) => xEnd(r).podName === 'old-a') && icmpAtFront.some((r) => xEnd(r).podName === 'new-b'), 'the ping at F is split at the handover: a record for A, one for B');
    assert.equal(naming.stats().handlerErrors, 0);
    assert.equal(naming.stats().enricher.directionGuessed, 0);
  });
}
