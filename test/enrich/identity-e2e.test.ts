// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// The whole identity path as the agent runs it: the test API server (HTTPS,
// list and watch) → KubeCaches (real client-node informers) → Naming (lease
// table, owners, namespace→pod map, enricher), and NetnsDiscovery →
// NodeCapture → PacketIngest → FlowMeter → Naming.enrich, on real traffic.
//
// Ground truth is what the test made: which pod sent or received on which
// port, and which Kubernetes object stands for which namespace.
//
// No kube-proxy runs here, so a ClusterIP is not translated: it is added as
// an extra address on the backend pod's eth0 (and a static neighbour on the
// client), so the client's packets really go to the service address and the
// lease lookup of a ClusterIP is exercised. Likewise the node's InternalIP is
// an address on the simulated node's bridge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EndpointIdentity, type ExportRecord, FlowDirection } from '../../enrich/export-record.ts';
import { canRunSimNode, SimNode, type SimPod } from '../../sim/simnode.ts';
import { KubeApiServer, type KubeObject } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { identityPipeline } from '../helpers/identity-pipeline.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

const NODE = 'sim-node';
const NODE_IP = '198.18.0.254';
const CLUSTER_IP = '198.18.0.200';
const BRIDGE_MAC = '02:70:66:00:00:fe';

function ownerRef(kind: string, name: string): object {
  return { apiVersion: kind === 'Job' || kind === 'CronJob' ? 'batch/v1' : 'apps/v1', kind, name, uid: `uid-${name}`, controller: true };
}

function podObject(name: string, namespace: string, ip: string, owner: [kind: string, name: string], phase = 'Running'): KubeObject {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, labels: { app: owner[1] }, ownerReferences: [ownerRef(...owner)] },
    spec: { nodeName: NODE, containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase, podIP: ip, podIPs: [{ ip }] },
  };
}

function link(kind: 'replicaset' | 'job', name: string, namespace: string, owner: [kind: string, name: string]): [typeof kind, KubeObject] {
  return [kind, { metadata: { name, namespace, uid: `uid-${name}`, ownerReferences: [ownerRef(...owner)] } }];
}

const dotted = (a: Uint8Array) => (a.length === 4 ? a.join('.') : 'v6');

test('names both ends of pod, service and node flows, and misattributes no flow when an IP is reused', { skip, timeout: 120_000 }, async (t) => {
  // --- The cluster as the API server tells it.
  const server = new KubeApiServer();
  await server.start();
  const dir = mkdtempSync(join(tmpdir(), 'podflow-identity-e2e-'));
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  server.create('node', { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }, { type: 'Hostname', address: NODE }] } });
  for (const [kind, object] of [
    link('replicaset', 'frontend-5d8f', 'shop', ['Deployment', 'frontend']),
    link('replicaset', 'backend-7c9b', 'data', ['Deployment', 'backend']),
    link('replicaset', 'api-6f4d', 'shop', ['Deployment', 'api']),
    link('job', 'report-29011', 'shop', ['CronJob', 'report']),
  ]) server.create(kind, object);
  server.create('service', {
    metadata: { name: 'backend', namespace: 'data' },
    spec: { clusterIP: CLUSTER_IP, clusterIPs: [CLUSTER_IP], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] },
  });
  server.create('pod', podObject('frontend-5d8f-a', 'shop', '198.18.0.1', ['ReplicaSet', 'frontend-5d8f']));
  server.create('pod', podObject('backend-7c9b-x', 'data', '198.18.0.2', ['ReplicaSet', 'backend-7c9b']));
  const jobPod = podObject('report-29011-q', 'shop', '198.18.0.3', ['Job', 'report-29011']);
  server.create('pod', jobPod);

  // --- The node: pods 1 (frontend), 2 (backend, also holding the ClusterIP), 3 (the job pod, later the api pod).
  const node = new SimNode(t);
  const [frontend, backend] = [node.addPod(1), node.addPod(2)] as [SimPod, SimPod];
  let third = node.addPod(3);
  node.exec(backend.netns, 'ip', ['addr', 'add', `${CLUSTER_IP}/32`, 'dev', 'eth0']);
  node.exec(frontend.netns, 'ip', ['neigh', 'replace', CLUSTER_IP, 'lladdr', backend.mac, 'dev', 'eth0', 'nud', 'permanent']);
  execFileSync('ip', ['-n', node.nodeNetns, 'addr', 'add', `${NODE_IP}/24`, 'dev', node.bridge]);
  execFileSync('ip', ['-n', node.nodeNetns, 'neigh', 'replace', frontend.ipv4, 'lladdr', frontend.mac, 'dev', node.bridge, 'nud', 'permanent']);
  node.exec(frontend.netns, 'ip', ['neigh', 'replace', NODE_IP, 'lladdr', BRIDGE_MAC, 'dev', 'eth0', 'nud', 'permanent']);

  // --- The agent's pieces.
  const { caches, records, capture, naming, events, nsKeyOf: keyOfPath } = await identityPipeline(t, node, server, { dir, nodeName: NODE, labelKeys: ['app'] });
  capture.start();

  const nsKeyOf = (pod: SimPod) => keyOfPath(pod.nsPath);
  const podOfNs = (pod: SimPod) => naming.namespaces.get(nsKeyOf(pod) ?? '')?.pod?.name;
  await waitFor(() => naming.enricher.synced, 10_000, 'caches synced');
  await waitFor(() => capture.counters().handlesOpen === 3, 5000, 'a capture in each of three pods');
  await waitFor(() => podOfNs(frontend) === 'frontend-5d8f-a' && podOfNs(backend) === 'backend-7c9b-x' && podOfNs(third) === 'report-29011-q', 5000, 'namespaces tied to pods');

  // Starts a listener and resolves once it listens, with the promise of its exit (which must be clean).
  const sink = async (pod: SimPod, args: string[]) => {
    const { closed } = await node.startSink(pod.netns, args);
    return {
      exited: closed.then(({ code, output }) => {
        assert.equal(code, 0, `sink ${args.join(' ')} exited ${code}`);
        return output;
      }),
    };
  };
  const udp = async (from: SimPod, to: SimPod, port: number) => {
    const { exited } = await sink(to, ['udp-sink', String(port), '20']);
    await node.runTraffic(from.netns, ['udp-send', to.ipv4, String(port), '20', '100']);
    await exited;
  };

  // --- Phase 1: frontend → backend (two namespaces), → ClusterIP, → node, over its own lo, and the job pod both ways.
  const tcpDone = await Promise.all([sink(backend, ['tcp-sink', '5001']), sink(backend, ['tcp-sink', '8080'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, '5001', '100000']),
    node.runTraffic(frontend.netns, ['tcp-send', CLUSTER_IP, '8080', '100000']),
    node.run(frontend.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', NODE_IP]),
    node.runTraffic(frontend.netns, ['lo-tcp', '10000']),
  ]);
  await Promise.all(tcpDone.map((s) => s.exited));
  await udp(third, frontend, 7001);
  await udp(frontend, third, 7101);

  // --- The job pod finishes; its status still lists its IP (the Antrea case). Its namespace goes.
  server.update('pod', { ...jobPod, status: { phase: 'Succeeded', podIP: '198.18.0.3', podIPs: [{ ip: '198.18.0.3' }] } });
  await waitFor(() => [...caches.pods()].some((p) => p.name === 'report-29011-q' && p.phase === 'Succeeded'), 5000, 'job pod Succeeded in the caches');
  const jobKey = nsKeyOf(third);
  // No wait: the namespace's capture reads the kernel's last block before it closes.
  node.removePod(3);
  await waitFor(() => events.some((e) => e.type === 'detached' && e.ns.key === jobKey), 5000, 'job pod namespace detached');

  // --- Pod B of another Deployment gets the same IP within the grace period; both directions again.
  server.create('pod', podObject('api-6f4d-b', 'shop', '198.18.0.3', ['ReplicaSet', 'api-6f4d']));
  third = node.addPod(3);
  await waitFor(() => podOfNs(third) === 'api-6f4d-b', 5000, 'new namespace tied to the api pod');
  await udp(third, frontend, 7002);
  await udp(frontend, third, 7102);
  // The finished job pod is deleted now, its last state still listing the IP: the api pod keeps it.
  server.delete('pod', 'report-29011-q', 'shop');
  await waitFor(() => ![...caches.pods()].some((p) => p.name === 'report-29011-q'), 5000, 'job pod deleted in the caches');
  await udp(third, frontend, 7003);

  // Deliver every captured packet, then end every flow (FORCED_END) so all are enriched now, after the reuse.
  await capture.stop();
  for (const r of records) t.diagnostic(`${r.interfaceName} ${dotted(r.flow.sourceAddress)}:${r.flow.sourceTransportPort} > ${dotted(r.flow.destinationAddress)}:${r.flow.destinationTransportPort} p${r.flow.protocolIdentifier} ${r.source.type}:${r.source.podName || r.source.serviceName || r.source.nodeName} > ${r.destination.type}:${r.destination.podName || r.destination.serviceName || r.destination.nodeName}`);

  const pointNs = new Map<number, string>();
  for (const e of events) if (e.type === 'opened') pointNs.set(e.point.id, `${e.point.netnsDev}:${e.point.netnsInode}`);
  const seenAt = (pod: SimPod | string) => (r: ExportRecord) => pointNs.get(r.flow.observationPointId) === (typeof pod === 'string' ? pod : nsKeyOf(pod));
  const ports = (r: ExportRecord) => [r.flow.sourceTransportPort, r.flow.destinationTransportPort];
  const find = (where: (r: ExportRecord) => boolean, port: number, protocol = 6) =>
    records.filter((r) => where(r) && r.flow.protocolIdentifier === protocol && ports(r).includes(port));
  const podEnd = (e: EndpointIdentity) => `${e.type} ${e.namespace}/${e.podName} ${e.podUid} ${e.workloadKind}/${e.workloadName} ${e.nodeName} ${JSON.stringify(e.labels)}`;
  const FRONTEND = `pod shop/frontend-5d8f-a uid-frontend-5d8f-a Deployment/frontend ${NODE} [["app","frontend-5d8f"]]`;
  const BACKEND = `pod data/backend-7c9b-x uid-backend-7c9b-x Deployment/backend ${NODE} [["app","backend-7c9b"]]`;
  const JOB = `pod shop/report-29011-q uid-report-29011-q CronJob/report ${NODE} [["app","report-29011"]]`;
  const API = `pod shop/api-6f4d-b uid-api-6f4d-b Deployment/api ${NODE} [["app","api-6f4d"]]`;

  assert.ok(records.every((r) => r.clusterName === 'sim'));
  assert.equal(naming.stats().enricher.unknownPoint, 0);
  assert.equal(naming.stats().handlerErrors, 0);

  // 1. Pods of two Deployments in two namespaces: full identity on both ends, seen at both pods.
  for (const [pod, direction] of [[frontend, FlowDirection.EGRESS], [backend, FlowDirection.INGRESS]] as const) {
    const flows = find(seenAt(pod), 5001);
    assert.equal(flows.length, 1, `frontend → backend seen once at ${pod.netns}`);
    assert.equal(flows[0]!.flowDirection, direction);
    assert.equal(podEnd(flows[0]!.source), FRONTEND);
    assert.equal(podEnd(flows[0]!.destination), BACKEND);
  }

  // 2. The flow to the ClusterIP names the service and its port name at the client.
  const [toService] = find(seenAt(frontend), 8080);
  assert.equal(podEnd(toService!.source), FRONTEND);
  assert.deepEqual(
    [toService!.destination.type, toService!.destination.serviceNamespace, toService!.destination.serviceName, toService!.destination.servicePortName],
    ['service', 'data', 'backend', 'http'],
  );
  // At the backend it arrives at the pod itself (its observed end), from the frontend.
  const [atBackend] = find(seenAt(backend), 8080);
  assert.equal(podEnd(atBackend!.source), FRONTEND);
  assert.equal(podEnd(atBackend!.destination), BACKEND);

  // 3. Node traffic names the node.
  const pings = records.filter((r) => seenAt(frontend)(r) && r.flow.protocolIdentifier === 1);
  assert.equal(pings.length, 1);
  assert.equal(podEnd(pings[0]!.source), FRONTEND);
  assert.deepEqual([pings[0]!.destination.type, pings[0]!.destination.nodeName], ['node', NODE]);

  // 4. A flow on lo is the pod talking to itself.
  const loFlows = records.filter((r) => r.interfaceName === 'lo');
  assert.ok(loFlows.length >= 1 && loFlows.every((r) => seenAt(frontend)(r)));
  for (const r of loFlows) assert.deepEqual([podEnd(r.source), podEnd(r.destination)], [FRONTEND, FRONTEND]);

  // 5. IP reuse: every flow of the job pod names the job pod, every flow of the api pod the api pod,
  //    at the frontend (by the lease table, looked up after the reuse) and at the pod itself.
  const thirdEnd = (r: ExportRecord) => (dotted(r.flow.sourceAddress) === '198.18.0.3' ? r.source : r.destination);
  const expected: Array<[port: number, who: string]> = [[7001, JOB], [7101, JOB], [7002, API], [7102, API], [7003, API]];
  let misattributed = 0;
  for (const [port, who] of expected) {
    const flows = find(() => true, port, 17);
    assert.equal(flows.length, 2, `UDP port ${port} seen at the frontend and at the pod`);
    for (const r of flows) if (podEnd(thirdEnd(r)) !== who) misattributed++;
    for (const r of flows) assert.equal(podEnd(r.source === thirdEnd(r) ? r.destination : r.source), FRONTEND, `port ${port}`);
  }
  assert.equal(misattributed, 0);
  assert.equal(find(seenAt(jobKey!), 7001, 17).length, 1, 'the job pod\'s own record came from its namespace');
});
