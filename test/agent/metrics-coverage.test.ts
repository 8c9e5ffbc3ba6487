// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// Every counter reaches /metrics. The agent runs in this process on a
// simulated node with one pod (so capture handles exist and every stats
// object has its fields); its metric sources (Agent.metricSources, all its
// stats objects) are read as the registry reads them, with every number
// replaced by a value of its own, and the scrape must carry each of those
// values. A field added to any stats object later (capture, ingest, export,
// identity, ...) fails this test until a metric publishes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { daemonsetMode } from '../../agent/daemonset.ts';
import { loadConfig } from '../../agent/config.ts';
import { createMetrics, type MetricSources } from '../../agent/metrics.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { simNodeNamespaces } from '../helpers/agent-process.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

/**
 * Fields no metric carries by themselves, each with the metric that carries
 * its count. Keep it short: a new field belongs in a metric, not here.
 */
const CARRIED_ELSEWHERE: Record<string, string> = {
  'capture.kernelDrops': 'capture.handles.dropped (podflow_capture_unmetered_packets_total, ring_full)',
  'capture.queueDrops': 'capture.handles.queueDropped (podflow_capture_unmetered_packets_total, queue_full)',
  'capture.unreadAtClose': 'capture.handles.unread (podflow_capture_unmetered_packets_total, unread_at_close)',
  'capture.packets': 'capture.handles.packets',
  'capture.handles.packets': 'the buffers ingested: podflow_capture_buffers_total summed over kind',
  'ingest.buffers': 'podflow_capture_buffers_total summed over kind',
  'ingest.packets': 'podflow_capture_packets_total summed over kind',
  'ingest.bytes': 'podflow_capture_bytes_total summed over kind',
  'ingest.metered': 'meter.packets (podflow_metered_packets_total)',
  'meter.ended[0]': 'no flowEndReason is 0: the array is indexed by reason',
};

/** A deep copy of value with every number replaced by the one assigned to its path (the first time: the next of `next`). */
function withOwnValues(value: unknown, path: string, assigned: Map<string, number>, next: () => number): unknown {
  if (typeof value === 'number') {
    if (!assigned.has(path)) assigned.set(path, next());
    return assigned.get(path);
  }
  if (Array.isArray(value)) return value.map((v, i) => withOwnValues(v, `${path}[${i}]`, assigned, next));
  if (value !== null && typeof value === 'object' && !(value instanceof Error)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withOwnValues(v, `${path}.${k}`, assigned, next)]));
  }
  return value;
}

/** The stats paths whose value no podflow_ metric of a scrape carries, and how many paths were walked. */
async function uncarried(sources: MetricSources): Promise<{ missing: string[]; walked: string[] }> {
  const assigned = new Map<string, number>();
  let value = 7_000_001;
  const next = () => (value += 2);
  const own = Object.fromEntries(
    Object.entries(sources).map(([name, read]) => [name, () => withOwnValues((read as () => unknown)(), name, assigned, next)]),
  ) as unknown as MetricSources;
  const registry = createMetrics(own);
  const carried = new Set<number>();
  for (const metric of await registry.getMetricsAsJSON()) {
    if (metric.name.startsWith('podflow_')) for (const s of metric.values) carried.add(s.value);
  }
  const missing = [...assigned].filter(([path, v]) => !carried.has(v) && !(path in CARRIED_ELSEWHERE)).map(([path]) => path);
  return { missing, walked: [...assigned.keys()] };
}

test('every number in every stats object of the agent is carried by a metric', { skip, timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-metrics-coverage-'));
  const server = new KubeApiServer();
  await server.start();
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const node = new SimNode(t);
  node.addPod(1);
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, [
    'nodeName: sim-node',
    `collectors: ['file:${join(dir, 'flows.ipfix')}']`,
    simNodeNamespaces(node),
    "metrics: {listen: '127.0.0.1:0'}",
    'capture: {loopback: true}',
    `kubernetes: {kubeconfig: ${server.writeKubeconfig(join(dir, 'kubeconfig'))}}`,
    '',
  ].join('\n'));
  const agent = new Agent(loadConfig({ file, env: {} }), pino({ level: 'silent' }), daemonsetMode);
  t.after(() => agent.stop());
  await agent.start();
  await waitFor(() => agent.metricSources.capture().handlesOpen === 1 && agent.notReady() === undefined, 15_000, "the pod's capture open, caches synced");

  const { missing, walked } = await uncarried(agent.metricSources);
  t.diagnostic(`${walked.length} numbers walked`);
  // The walk reaches every kind of stats object, including those the issue found unpublished.
  for (const path of [
    'capture.handles.sinkErrors', 'capture.handlerErrors', 'discovery.scanErrors', 'ingest.truncatedRecords', 'fragments.joined', 'segments.unparsed',
    'exporter[0].templateSends', 'caches.pod.relists', 'caches.pod.restarts', 'naming.leases.superseded', 'naming.leases.closedEvicted',
    'naming.enricher.directionGuessed', 'naming.namespaces.readErrors', 'traffic.overflowed',
  ]) assert.ok(walked.includes(path), `${path} walked`);
  for (const path of Object.keys(CARRIED_ELSEWHERE)) assert.ok(walked.includes(path), `${path} (CARRIED_ELSEWHERE) is still a stats field`);
  assert.deepEqual(missing, []);

  // The check fails on a field no metric carries.
  const extended: MetricSources = { ...agent.metricSources, capture: () => ({ ...agent.metricSources.capture(), notPublished: 1 }) };
  assert.deepEqual((await uncarried(extended)).missing, ['capture.notPublished']);
});

test('docs/metrics.md lists every podflow metric of the registry, and no other', async () => {
  const registry = createMetrics({} as MetricSources);
  const exported = registry.getMetricsAsArray().map((m) => m.name).filter((name) => name.startsWith('podflow_')).sort();
  const documented = [...readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8').matchAll(/^\| `(podflow_[a-z_]+)` \|/gm)].map((m) => m[1]!).sort();
  assert.deepEqual(documented, exported);
});
