// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// Flows must not depend on the control plane. `podflow agent` with no
// kubeconfig and outside a cluster (KUBERNETES_SERVICE_HOST unset) starts,
// captures and exports with identity unknown, at once (nothing will ever name
// a held flow better), counts the unknown ends, and /readyz says why it is
// not ready. (An API server that cannot be reached: agent-e2e.test.ts; both
// inside the image: test/image/image.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type CollectedRecord, Collector } from '../../ipfix/collector.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';
import { metricReaches, sample, scrapeUntil, simNodeNamespaces, startAgent } from '../helpers/agent-process.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

test('with no kubeconfig and outside a cluster the agent captures and exports with identity unknown, counted, and /readyz says why', { skip, timeout: 60_000 }, async (t) => {
  const records: CollectedRecord[] = [];
  const collector = new Collector({ listen: 'udp://127.0.0.1:0', onRecord: (r) => !r.options && records.push(r) });
  const { port } = await collector.start();
  t.after(() => collector.close());
  const node = new SimNode(t, { offloads: false });
  const [a, b] = [node.addPod(1), node.addPod(2)];
  // The 30 s hold of unnamed flows (kubernetes.holdUnnamedSeconds) is left as it is: without caches it must not apply.
  const agent = await startAgent([
    '--node-name', 'sim-node', '--collector', `udp://127.0.0.1:${port}`, '--metrics-listen', '127.0.0.1:0',
    '--set', `namespaces=${simNodeNamespaces(node).replace(/^namespaces: /, '')}`, '--set', 'flow.idleTimeoutSeconds=1',
  ]);
  t.after(() => agent.kill());
  assert.match(agent.logs, /"level":50.*PODFLOW_ERR_KUBE_CONFIG.*no usable Kubernetes configuration: capturing and exporting with identity unknown/);
  const readyz = await agent.get('/readyz');
  assert.equal(readyz.status, 503);
  assert.equal(readyz.text, 'not ready: Kubernetes identity off: cannot use the Kubernetes client configuration: no kubeconfig given and not in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset); flows are exported with identity unknown\n');
  assert.equal((await agent.get('/healthz')).status, 200);

  await metricReaches(agent, 'podflow_capture_handles', 2);
  await node.run(a.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', b.ipv4]);
  const icmp = () => records.filter((r) => r.fields.protocolIdentifier === 1);
  const packets = (r: CollectedRecord) => Number(r.fields.packetDeltaCount) + Number(r.fields.reversePacketDeltaCount ?? 0);
  await waitFor(() => icmp().reduce((s, r) => s + packets(r), 0) === 12, 15_000, () => `every ping packet exported at both pods (${icmp().length} records)`);
  for (const r of icmp()) assert.deepEqual([r.fields.k8sSourceEndpointType, r.fields.k8sDestinationEndpointType], ['unknown', 'unknown']);
  const scrape = await scrapeUntil(agent, (text) => sample(text, 'podflow_export_records_total') >= icmp().length, 'the records counted as exported');
  assert.equal(sample(scrape, 'podflow_enrich_observed_fallbacks_total', { outcome: 'unknown' }), icmp().length, 'each unknown observed end counted');
  assert.ok(sample(scrape, 'podflow_lease_lookups_total', { outcome: 'unknown' }) >= icmp().length, 'each unknown remote end counted');
  assert.equal(sample(scrape, 'podflow_enrich_held_flows'), 0);
  assert.equal(sample(scrape, 'podflow_kube_cache_synced', { resource: 'pod' }), 0, 'the caches alert sees an agent without caches');

  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0, 'a clean stop');
});
