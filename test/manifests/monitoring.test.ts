// The alerts and the dashboard against the agent: `promtool check rules` on
// the PrometheusRule, and every metric a query names is one the agent's
// registry (agent/metrics.ts createMetrics, with prom-client's process and
// Node.js metrics) exports, with the labels the query uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createMetrics, WorkloadTraffic, type MetricSources } from '../../agent/metrics.ts';
import { kubectlProblem } from './kustomize.ts';
import { alertQueries, dashboardQueries, grafanaToPromQL, rules, selectors } from './monitoring-queries.ts';

export { alertQueries, dashboardQueries, grafanaToPromQL, selectors };

const problem = kubectlProblem();

/** The agent's metrics and their label names, from its real registry. */
async function agentMetrics(): Promise<Map<string, Set<string>>> {
  const zero = () => ({});
  const sources = {
    capture: () => ({ namespacesAttached: 0, handlesOpen: 0, handlesOpened: 0, openFailures: 0, handlesLost: 0, handles: {}, kernelDrops: 0, packets: 0, handlerErrors: 0 }),
    captureByKind: zero, discovery: () => undefined, ingest: zero, decodeErrors: zero, fragments: zero,
    meter: () => ({ active: 0, created: 0, ended: [], evictions: 0 }),
    exporter: () => [], caches: zero,
    identity: () => ({ leases: { lookups: {}, open: 0, closed: 0 }, enricher: { enriched: 0, heldNow: 0 } }),
    traffic: () => new WorkloadTraffic(10).stats(),
  } as unknown as MetricSources;
  const registry = createMetrics(sources);
  const out = new Map<string, Set<string>>();
  for (const m of registry.getMetricsAsArray()) {
    const labels = new Set<string>((m as unknown as { labelNames: string[] }).labelNames ?? []);
    const type = (m as unknown as { type: string }).type;
    out.set(m.name, labels);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.set(m.name + s, new Set([...labels, 'le']));
    if (type === 'summary') for (const s of ['_sum', '_count']) out.set(m.name + s, labels);
  }
  // Added at scrape time: by Prometheus (job, instance, up) and the ServiceMonitor (node, namespace, pod, service, endpoint, container).
  out.set('up', new Set());
  return out;
}
const TARGET_LABELS = new Set(['job', 'instance', 'node', 'namespace', 'pod', 'service', 'endpoint', 'container']);

test('promtool check rules passes on the PrometheusRule', { skip: problem }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-rules-'));
  try {
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, stringify({ groups: rules() }));
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    assert.ok(!r.error, `promtool not found: install the Debian package prometheus (${r.error?.message})`);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const names = rules().flatMap((g) => g.rules.map((x) => x.alert));
    for (const wanted of ['PodflowPacketsNotMetered', 'PodflowExportErrors', 'PodflowExportRecordsNotSent', 'PodflowKubeCachesNotSynced', 'PodflowLeaseLookupsMostlyUnknown', 'PodflowAgentRestarting']) {
      assert.ok(names.includes(wanted), wanted);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every metric and label the dashboard and the alerts query is one the agent exports', { skip: problem }, async () => {
  const metrics = await agentMetrics();
  const queries = [...dashboardQueries(), ...alertQueries()];
  assert.ok(queries.length > 20, `${queries.length} queries`);
  const missing: string[] = [];
  for (const q of queries) {
    const found = selectors(grafanaToPromQL(q.expr));
    if (found.length === 0) missing.push(`${q.where}: no metric found in ${q.expr}`);
    for (const s of found) {
      const labels = metrics.get(s.name);
      if (!labels) missing.push(`${q.where}: ${s.name} is not a metric of the agent`);
      else for (const l of s.labels) if (!labels.has(l) && !TARGET_LABELS.has(l)) missing.push(`${q.where}: ${s.name} has no label ${l}`);
    }
  }
  assert.deepEqual(missing, []);
});

test('the metric-name check fails on a metric the agent does not export', async () => {
  const metrics = await agentMetrics();
  const s = selectors('sum by (node) (rate(podflow_capture_kernel_drop_total{job="podflow",node=~".*"}[5m])) / podflow_flows_active');
  assert.deepEqual(s.map((x) => x.name), ['podflow_capture_kernel_drop_total', 'podflow_flows_active']);
  assert.equal(metrics.has('podflow_capture_kernel_drop_total'), false);
  assert.equal(metrics.has('podflow_flows_active'), true);
});
