// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// `podflow agent` as its own process, as on a node: the test API server
// (HTTPS, list and watch, via a kubeconfig) tells it of pods of two
// Deployments in two namespaces; it captures in the simulated node's pod
// namespaces and exports over TCP to an in-test Collector. Checked:
//  1. flows that end by idle timeout arrive named at both ends;
//  2. /metrics agrees with what the collector received, and passes
//     `promtool check metrics`;
//  3. SIGTERM with flows open: every open flow arrives (forced end), the
//     process exits 0 in time, and the bytes of all records equal the
//     interface counters (ground truth) of every pod's eth0 and lo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collector, type CollectedRecord } from '../../ipfix/collector.ts';
import { canRunSimNode, type InterfaceCounters, ipOctets, SimNode, type SimPod } from '../../sim/simnode.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { type AgentProcess, addTwoDeployments, agentHarness, metricReaches, sample, scrapeUntil, simNodeNamespaces, startAgent, waitReady } from '../helpers/agent-process.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'sim-node';
const promtool = spawnSync('promtool', ['--version']).status === 0;

const octets = (r: CollectedRecord) => Number(r.fields.octetDeltaCount ?? 0) + Number(r.fields.reverseOctetDeltaCount ?? 0);
const end = (r: CollectedRecord, side: 'Source' | 'Destination') =>
  `${r.fields[`k8s${side}Namespace`]}/${r.fields[`k8s${side}PodName`]} ${r.fields[`k8s${side}WorkloadKind`]}/${r.fields[`k8s${side}WorkloadName`]}`;

test('the agent process names, meters and exports pod traffic, publishes matching metrics, and loses no open flow at SIGTERM', { skip, timeout: 120_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 2, shutdownSeconds: 5 });
  const { node, records, collector, dir } = h;
  const { frontend, backend } = addTwoDeployments(h, NODE);
  const interfaces = [frontend, backend].flatMap((p) => ['eth0', 'lo'].map((ifname) => ({ pod: p, ifname })));
  const readCounters = () => new Map<string, InterfaceCounters>(interfaces.map(({ pod: p, ifname }) => [`${p.netns}/${ifname}`, node.counters(p.netns, ifname)]));

  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  const { get, exited } = agent;
  assert.equal((await get('/healthz')).status, 200);
  await waitReady(agent);
  await waitFor(() => (agent!.logs.match(/"namespace attached"/g) ?? []).length === 2, 10_000, 'two namespaces attached');
  await metricReaches(agent, 'podflow_capture_handles', 2);
  const before = readCounters();

  const sink = (p: SimPod, args: string[]) => node.startSink(p.netns, args);

  // --- Phase 1: traffic, then idle: the flows end by idle timeout and are exported.
  const done1 = await Promise.all([sink(backend, ['tcp-sink', '5001']), sink(frontend, ['udp-sink', '7001', '50'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, '5001', '2000000']),
    node.runTraffic(backend.netns, ['udp-send', frontend.ipv4, '7001', '50', '300']),
    node.runTraffic(frontend.netns, ['lo-tcp', '100000']),
  ]);
  await Promise.all(done1.map((d) => d.closed));
  await waitFor(() => records.some((r) => r.fields.destinationTransportPort === 5001) && records.length >= 5, 10_000, 'phase 1 flows exported').catch(async (err) => {
    const m = (await get('/metrics')).text.split('\n').filter((l) => l.startsWith('podflow_')).join('\n');
    throw new Error(`${err.message}: ${records.length} records ${JSON.stringify(records.map((r) => r.fields.destinationTransportPort))}\n${m}`);
  });
  // Every phase-1 flow has ended (idle timeout), been exported and received: the counts below are final.
  const collectorLabel = { collector: h.collectorUrl };
  await scrapeUntil(agent, (text) => sample(text, 'podflow_flows_active') === 0 && sample(text, 'podflow_enrich_held_flows') === 0
    && sample(text, 'podflow_flows_ended_total') === records.length && sample(text, 'podflow_export_records_total', collectorLabel) === records.length,
  `phase 1 ended, exported and received (${records.length} records so far)`);
  const phase1 = records.length;

  const tcp = records.filter((r) => r.fields.destinationTransportPort === 5001);
  assert.equal(tcp.length, 2, 'frontend → backend seen at both pods');
  for (const r of tcp) {
    assert.equal(end(r, 'Source'), 'shop/frontend-5d8f-a Deployment/frontend');
    assert.equal(end(r, 'Destination'), 'data/backend-7c9b-x Deployment/backend');
    assert.equal(r.fields.k8sClusterName, 'sim');
    assert.deepEqual([r.fields.k8sSourceEndpointType, r.fields.k8sDestinationEndpointType], ['pod', 'pod']);
  }
  const udp = records.filter((r) => r.fields.destinationTransportPort === 7001);
  assert.equal(udp.length, 2);
  for (const r of udp) assert.equal(end(r, 'Source'), 'data/backend-7c9b-x Deployment/backend');

  // /metrics agrees with what the collector received.
  const scrape = (await get('/metrics')).text;
  writeFileSync(join(dir, 'scrape.prom'), scrape);
  assert.equal(sample(scrape, 'podflow_export_records_total', collectorLabel), phase1);
  assert.equal(sample(scrape, 'podflow_export_messages_total', collectorLabel), collector.stats().messages);
  assert.equal(sample(scrape, 'podflow_export_connected', collectorLabel), 1);
  assert.equal(sample(scrape, 'podflow_export_not_sent_records_total'), 0);
  const exportedBytes = records.reduce((s, r) => s + octets(r), 0);
  assert.equal(sample(scrape, 'podflow_workload_traffic_bytes_total'), exportedBytes);
  const frontendBytes = records.filter((r) => r.fields.k8sSourcePodName === 'frontend-5d8f-a' && r.fields.flowDirection === 1 && r.fields.interfaceName !== 'lo').reduce((s, r) => s + octets(r), 0);
  assert.equal(sample(scrape, 'podflow_workload_traffic_bytes_total', { namespace: 'shop', workload: 'Deployment/frontend', direction: 'egress' }), frontendBytes);
  assert.equal(sample(scrape, 'podflow_flows_ended_total'), phase1);
  assert.equal(sample(scrape, 'podflow_flows_ended_total', { reason: 'idle_timeout' }), 2, 'the UDP flows');
  assert.equal(sample(scrape, 'podflow_namespaces_attached'), 2);
  assert.equal(sample(scrape, 'podflow_capture_handles'), 2);
  assert.equal(sample(scrape, 'podflow_capture_unmetered_packets_total'), 0);
  assert.equal(sample(scrape, 'podflow_kube_cache_synced', { resource: 'pod' }), 1);
  assert.ok(sample(scrape, 'podflow_lease_lookups_total', { outcome: 'pod' }) >= 4);
  assert.ok(sample(scrape, 'podflow_capture_packets_total', { kind: 'loopback' }) > 0);
  assert.ok(sample(scrape, 'process_resident_memory_bytes') > 0);
  assert.doesNotMatch(scrape, /198\.18\./, 'no IP address as a label value');
  if (promtool) {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: scrape, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  } else t.diagnostic('promtool not installed: check skipped');

  // --- Phase 2: traffic, then SIGTERM while its flows are still open (idle timeout 2 s not reached).
  const done2 = await Promise.all([sink(backend, ['tcp-sink', '5002']), sink(backend, ['udp-sink', '7002', '40'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv6, '5002', '3000000']),
    node.runTraffic(frontend.netns, ['udp-send', backend.ipv4, '7002', '40', '800']),
    node.runTraffic(backend.netns, ['lo-tcp', '200000']),
  ]);
  await Promise.all(done2.map((d) => d.closed));
  // The last ACKs and FINs are counted too: the counters are final. What
  // reached the rings, SIGTERM's drain delivers.
  await node.tcpSettled([frontend.netns, backend.netns]);
  const after = readCounters();
  const sigtermAt = Date.now();
  agent.child.kill('SIGTERM');
  const code = await exited;
  const stopMs = Date.now() - sigtermAt;
  assert.equal(code, 0, `${agent.stderr}${agent.logs.slice(-2000)}`);
  assert.ok(stopMs < 6000, `stopped in ${stopMs} ms`);
  await waitFor(() => collector.stats().openConnections === 0, 5000, 'collector connection closed');

  const forced = records.slice(phase1);
  t.diagnostic(`phase 1: ${phase1} records; at SIGTERM: ${forced.length} (stopped in ${stopMs} ms)`);
  assert.ok(forced.length >= 4, 'the open flows arrived');
  assert.ok(forced.every((r) => r.fields.flowEndReason === 4), 'every open flow ended as forced end');
  assert.equal(records.filter((r) => r.fields.destinationTransportPort === 5002).length, 2);
  for (const r of forced.filter((r) => r.fields.destinationTransportPort === 5002)) {
    assert.equal(end(r, 'Source'), 'shop/frontend-5d8f-a Deployment/frontend');
    assert.equal(end(r, 'Destination'), 'data/backend-7c9b-x Deployment/backend');
  }
  const truth = interfaces.reduce((s, { pod: p, ifname }) => s + ipOctets(ifname, before.get(`${p.netns}/${ifname}`)!, after.get(`${p.netns}/${ifname}`)!), 0);
  assert.equal(records.reduce((s, r) => s + octets(r), 0), truth, 'bytes of every record = interface counters of every eth0 and lo');
  assert.match(agent.logs, /"msg":"agent stopped"/);
  assert.doesNotMatch(agent.logs, /"level":50/, 'no error logged');
});

test('ready while the collector is down: readiness is the agent\'s own (capture, caches), the collector shows in podflow_export_connected', { skip, timeout: 60_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 2, shutdownSeconds: 5 });
  await h.collector.close();
  h.node.addPod(1);
  h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig, '--node-name', NODE]);
  await waitReady(h.agent);
  const scrape = await scrapeUntil(h.agent, (text) => sample(text, 'podflow_export_errors_total') >= 1, 'a connect error counted');
  assert.equal(sample(scrape, 'podflow_export_connected'), 0);
  assert.equal((await h.agent.get('/readyz')).status, 200);
});

test('a collector name that does not resolve (node boot before cluster DNS) stops nothing: ready, capturing, exporting to the others, counted and retried', { skip, timeout: 60_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 1, shutdownSeconds: 5 });
  const unresolved = 'udp://no-such-host.invalid:4739';
  writeFileSync(h.config, readFileSync(h.config, 'utf8').replace(`collectors: ['${h.collectorUrl}']`, `collectors: ['${unresolved}', '${h.collectorUrl}']`));
  const { frontend, backend } = addTwoDeployments(h, NODE);
  h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig, '--node-name', NODE]);
  await waitReady(h.agent);
  await metricReaches(h.agent, 'podflow_capture_handles', 2);
  await h.node.run(frontend.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', backend.ipv4]);
  await waitFor(() => h.records.some((r) => r.fields.protocolIdentifier === 1), 10_000, 'the ping exported to the collector that resolves');
  const unresolvedLabel = { collector: unresolved };
  const scrape = await scrapeUntil(h.agent, (text) => sample(text, 'podflow_export_queued_records', unresolvedLabel) >= 1 && sample(text, 'podflow_export_errors_total', unresolvedLabel) >= 1,
    'the records waiting for the name, the failed lookups counted');
  assert.equal(sample(scrape, 'podflow_export_connected', unresolvedLabel), 0);
  assert.equal(sample(scrape, 'podflow_export_connected', { collector: h.collectorUrl }), 1);
  assert.match(h.agent.logs, /PODFLOW_ERR_EXPORT_RESOLVE/);
  h.agent.child.kill('SIGTERM');
  assert.equal(await h.agent.exited, 0, 'a clean stop');
});

test('an unreachable collector and API server at start do not stop capture: not ready, flows held then exported on reconnect', { skip, timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-agent-down-'));
  // A kubeconfig for an API server that is not running, and a collector port nobody listens on yet.
  const server = new KubeApiServer();
  await server.start();
  const kubeconfig = server.writeKubeconfig(join(dir, 'kubeconfig'));
  await server.stop();
  const probe = new Collector({ listen: 'tcp://127.0.0.1:0', onRecord: () => {} });
  const { port } = await probe.start();
  await probe.close();
  let agent: AgentProcess | undefined;
  let collector: Collector | undefined;
  t.after(async () => {
    agent?.kill();
    await collector?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)] as [SimPod, SimPod];
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, `collectors: ['tcp://127.0.0.1:${port}']\n${simNodeNamespaces(node)}\nmetrics: {listen: '127.0.0.1:0'}\nflow: {idleTimeoutSeconds: 1}\ncapture: {loopback: true}\n`);
  agent = await startAgent(['--config', config, '--kubeconfig', kubeconfig, '--node-name', NODE]);
  const { get, exited } = agent;
  const readyz = await get('/readyz');
  assert.equal(readyz.status, 503);
  assert.match(readyz.text, /not ready: Kubernetes caches not synced/);
  assert.equal((await get('/healthz')).status, 200);
  await waitFor(() => (agent!.logs.match(/"namespace attached"/g) ?? []).length === 2, 10_000, 'namespaces attached with nothing else up');
  await metricReaches(agent, 'podflow_capture_handles', 2);
  await node.run(a.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', b.ipv4]);
  // Capture runs: 3 requests and 3 replies at each pod's eth0.
  const scrape = await scrapeUntil(agent, (text) => sample(text, 'podflow_capture_packets_total', { kind: 'pod' }) >= 12, 'the ping captured at both pods');
  assert.equal(sample(scrape, 'podflow_export_connected'), 0);
  assert.ok(sample(scrape, 'podflow_export_errors_total') >= 1, 'connect errors counted');
  assert.match(agent.logs, /"level":40.*"component":"export"|"component":"export".*"level":40/, 'export trouble logged as a warning');

  // The collector comes up: the held / queued flows go out (identity unknown: no API server).
  const records: CollectedRecord[] = [];
  collector = new Collector({ listen: `tcp://127.0.0.1:${port}`, onRecord: (r) => !r.options && records.push(r) });
  await collector.start();
  agent.child.kill('SIGTERM');
  assert.equal(await exited, 0);
  const icmp = records.filter((r) => r.fields.protocolIdentifier === 1);
  // The ping flow, seen at both pods: 3 requests and 3 replies at each. With
  // the 1 s idle timeout counted in whole seconds (ipfixprobe's rule), a ping
  // that straddles a second boundary can be split in two records per pod.
  const packets = (r: CollectedRecord) => Number(r.fields.packetDeltaCount) + Number(r.fields.reversePacketDeltaCount ?? 0);
  const byPod = Map.groupBy(icmp, (r) => String(r.fields.observationPointId));
  assert.equal(byPod.size, 2, 'the ping flow, seen at both pods');
  for (const flows of byPod.values()) assert.equal(flows.reduce((sum, r) => sum + packets(r), 0), 6, 'every ping packet, at each pod');
  for (const r of icmp) assert.deepEqual([r.fields.k8sSourceEndpointType, r.fields.k8sDestinationEndpointType], ['unknown', 'unknown']);
});
