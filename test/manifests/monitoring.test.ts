// The alerts and the dashboard against the agent: `promtool check rules` on
// the PrometheusRule, and every metric a query names is one the agent's
// registry (agent/metrics.ts createMetrics, with prom-client's process and
// Node.js metrics) exports, with the labels the query uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createMetrics, WorkloadTraffic, type MetricSources } from '../../agent/metrics.ts';
import { find, kubectlProblem, kustomizeWith } from './kustomize.ts';

const problem = kubectlProblem();

interface Rule { alert?: string; record?: string; expr: string }
const rules = (): Array<{ name: string; rules: Rule[] }> => {
  const pr = find(kustomizeWith(['prometheusrule']), 'PrometheusRule', 'podflow') as unknown as { spec: { groups: Array<{ name: string; rules: Rule[] }> } };
  return pr.spec.groups;
};
interface Panel { title: string; type: string; panels?: Panel[]; targets?: Array<{ expr: string }> }
export const dashboardQueries = (): Array<{ where: string; expr: string }> => {
  const d = JSON.parse(readFileSync(new URL('../../manifests/grafana/podflow.json', import.meta.url), 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; query?: { query: string } }> } };
  const out: Array<{ where: string; expr: string }> = [];
  const walk = (ps: Panel[]) => ps.forEach((p) => {
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
    walk(p.panels ?? []);
  });
  walk(d.panels);
  for (const v of d.templating.list) if (v.query?.query) out.push({ where: `variable ${v.name}`, expr: v.query.query.replace(/^label_values\((.*), *\w+\)$/, '$1') });
  return out;
};
export const alertQueries = (): Array<{ where: string; expr: string }> =>
  rules().flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert ?? r.record}`, expr: r.expr })));

/** The Grafana variables of a dashboard query replaced as Grafana would for "All". */
export const grafanaToPromQL = (expr: string, rateInterval = '1m') =>
  expr.replaceAll('$__rate_interval', rateInterval).replaceAll('$node', '.*');

// Not metrics: PromQL functions, aggregations and keywords, label names inside by()/{}, durations.
const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'topk', 'bottomk', 'by', 'without', 'rate', 'increase', 'irate', 'changes', 'clamp_min',
  'clamp_max', 'histogram_quantile', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'label_values', 'abs', 'delta', 'deriv', 'time', 'vector']);
/** Metric selectors of a PromQL expression: [name, label matchers]. */
export function selectors(expr: string): Array<{ name: string; labels: string[] }> {
  const out: Array<{ name: string; labels: string[] }> = [];
  const text = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (const m of text.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const [, name, braces] = m;
    const before = text.slice(0, m.index).trimEnd();
    if (PROMQL_WORDS.has(name) || /\b(by|without|on|ignoring)\s*\([^)]*$/.test(before) || /[{,]\s*$/.test(before) || /\[\s*$/.test(before)) continue;
    if (/[0-9.]$/.test(text.slice(0, m.index))) continue; // the unit of a duration or number (5m, 1e3)
    if (text.slice(m.index! + m[0].length).trimStart().startsWith('(')) continue; // a function call
    out.push({ name, labels: [...(braces ?? '').matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]) });
  }
  return out;
}

/** The agent's metrics and their label names, from its real registry. */
async function agentMetrics(): Promise<Map<string, Set<string>>> {
  const zero = () => ({});
  const sources = {
    capture: () => ({ namespacesAttached: 0, handlesOpen: 0, handlesOpened: 0, openFailures: 0, handlesLost: 0, kernelDrops: 0, packets: 0, handlerErrors: 0 }),
    captureByKind: zero, ingest: zero, decodeErrors: zero,
    meter: () => ({ active: 0, created: 0, ended: [], evictions: 0 }),
    exporter: () => [], caches: zero,
    identity: () => ({ leases: { lookups: {}, open: 0, closed: 0 }, enricher: { enriched: 0, heldNow: 0 } }),
    traffic: new WorkloadTraffic(10),
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
    for (const wanted of ['PodflowKernelDrops', 'PodflowExportErrors', 'PodflowExportQueueDrops', 'PodflowKubeCachesNotSynced', 'PodflowLeaseLookupsMostlyUnknown', 'PodflowAgentRestarting']) {
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
