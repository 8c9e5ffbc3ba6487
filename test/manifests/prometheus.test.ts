// Needs root (a simulated node of network namespaces), kubectl >= 1.21 and
// Debian's `prometheus` (skips with the reason otherwise).
//
// The install's monitoring against the real thing: a real Prometheus server
// scrapes a real `podflow agent` process (simulated node, test API server,
// in-test collector) as the ServiceMonitor configures it (job from its
// jobLabel, honorLabels, its relabelings: `node` from the pod's node name),
// every second. After real traffic (flows that end and are exported), every
// PromQL expression of the Grafana dashboard and of the PrometheusRule is
// answered with data, and so is every metric selector in it: an empty answer
// names a metric or label value the agent does not export. Alert conditions
// are queried without their final comparison (`> 0.01`, `== 0`), so a quiet
// alert is not mistaken for a missing metric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { canRunSimNode, type SimPod } from '../../sim/simnode.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';
import { addTwoDeployments, agentHarness, metricReaches, startAgent, waitReady } from '../helpers/agent-process.ts';
import { type PrometheusServer, prometheusProblem, startPrometheus } from '../helpers/prometheus.ts';
import { find, kubectlProblem, kustomizeWith } from './kustomize.ts';
import { alertQueries, conditionOperand, dashboardQueries, grafanaToPromQL, type MonitoringQuery, selectors } from './monitoring-queries.ts';

const env = canRunSimNode();
const skip = (env.ok ? undefined : env.reason) ?? kubectlProblem() ?? prometheusProblem() ?? false;
const NODE = 'sim-node';
const SCRAPE_INTERVAL_S = 1;
// Grafana's values for a 1 s scrape interval (the data source's setting) and
// a short time range: $__interval 5 s; $__rate_interval =
// max($__interval + scrape interval, 4 × scrape interval) = 6 s.
const GRAFANA = { node: NODE, __interval: '5s', __range: '1m' };
const RATE_INTERVAL = `${Math.max(5 + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S)}s`;

interface ServiceMonitor {
  spec: { jobLabel?: string; endpoints: Array<{ path?: string; honorLabels?: boolean; relabelings?: Array<Record<string, unknown>> }> };
}
/**
 * The install's ServiceMonitor endpoint as the Prometheus Operator would
 * write it for one agent, with a static target in place of Kubernetes service
 * discovery: job = the Service's label named by jobLabel, honor_labels, path,
 * and the ServiceMonitor's relabelings (keys in Prometheus' snake_case),
 * reading the discovery labels the target carries.
 */
function scrapeConfig(target: string): object {
  const objects = kustomizeWith(['servicemonitor']);
  const sm = find(objects, 'ServiceMonitor', 'podflow') as unknown as ServiceMonitor;
  const service = find(objects, 'Service', 'podflow');
  const job = (sm.spec.jobLabel && service.metadata.labels?.[sm.spec.jobLabel]) || service.metadata.name;
  const endpoint = sm.spec.endpoints[0]!;
  const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return {
    job_name: job,
    metrics_path: endpoint.path ?? '/metrics',
    honor_labels: endpoint.honorLabels ?? false,
    static_configs: [{ targets: [target], labels: { __meta_kubernetes_pod_node_name: NODE, __meta_kubernetes_namespace: 'podflow' } }],
    relabel_configs: (endpoint.relabelings ?? []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [snake(k), v]))),
  };
}

/**
 * What is wrong with one query against Prometheus now: the expression (an
 * alert's without its final comparison) and each selector in it must return
 * at least one series; the results carry the labels the panel's legend or the
 * alert's annotations name; a variable's label_values() lists this node.
 */
async function problems(prometheus: PrometheusServer, q: MonitoringQuery, alert: boolean): Promise<string[]> {
  const expr = grafanaToPromQL(q.expr, RATE_INTERVAL, GRAFANA);
  const out: string[] = [];
  const operand = alert ? conditionOperand(expr) : expr;
  try {
    const result = await prometheus.query(operand);
    if (result.length === 0) out.push(`${q.where}: no data for ${operand.replace(/\s+/g, ' ')}`);
    for (const label of q.resultLabels ?? []) {
      const without = result.filter((s) => !s.metric[label]);
      if (without.length > 0) out.push(`${q.where}: results without the label ${label} its legend or annotations use: ${JSON.stringify(without.map((s) => s.metric))}`);
    }
    if (q.label && !result.some((s) => s.metric[q.label!] === NODE)) {
      out.push(`${q.where}: label_values(${operand}, ${q.label}) does not list ${NODE}: ${JSON.stringify(result.map((s) => s.metric))}`);
    }
  } catch (err) {
    out.push(`${q.where}: ${(err as Error).message}`);
  }
  for (const s of selectors(expr)) {
    const result = await prometheus.query(s.text).catch((err: Error) => err);
    if (result instanceof Error) out.push(`${q.where}: ${result.message}`);
    else if (result.length === 0) out.push(`${q.where}: no series ${s.text} (a metric or label the agent does not export?)`);
  }
  return out;
}

test('a real Prometheus scraping the agent answers every dashboard and alert query with data', { skip, timeout: 90_000 }, async (t) => {
  const started = Date.now();
  const queries = { dashboard: dashboardQueries(), alerts: alertQueries() };
  assert.ok(queries.dashboard.length > 20 && queries.alerts.length > 5, `${queries.dashboard.length} dashboard, ${queries.alerts.length} alert queries`);
  const scrape = scrapeConfig('127.0.0.1:0'); // built (kubectl kustomize) before anything starts: fail fast

  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 1, shutdownSeconds: 5 });
  const { node, records, dir } = h;
  let prometheus: PrometheusServer | undefined;
  t.after(() => prometheus?.stop());
  const { frontend, backend } = addTwoDeployments(h, NODE);

  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  mkdirSync(join(dir, 'prometheus'));
  const scrapeConfigs = [{ ...scrape, static_configs: [{ ...(scrape as { static_configs: object[] }).static_configs[0], targets: [agent.metrics] }] }];
  prometheus = await startPrometheus(join(dir, 'prometheus'), scrapeConfigs, `${SCRAPE_INTERVAL_S}s`);
  const prom = prometheus;

  // The agent ready and capturing, then traffic: TCP and UDP between the
  // pods, TCP on a pod's lo, and DNS answered with NOERROR, NXDOMAIN and
  // SERVFAIL; the flows end by idle timeout (1 s) and are exported to the
  // collector.
  await waitReady(agent);
  await waitFor(() => (agent!.logs.match(/"namespace attached"/g) ?? []).length === 2, 10_000, 'two namespaces attached');
  await metricReaches(agent, 'podflow_capture_handles', 2);
  const sink = (p: SimPod, args: string[]) => node.startSink(p.netns, args);
  const dnsNames = ['web.data.svc.cluster.local', 'nx.data.svc.cluster.local', 'fail.data.svc.cluster.local'];
  const sinks = await Promise.all([sink(backend, ['tcp-sink', '5001']), sink(frontend, ['udp-sink', '7001', '50']), sink(backend, ['dns-server', '53', String(dnsNames.length), '0'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, '5001', '1000000']),
    node.runTraffic(backend.netns, ['udp-send', frontend.ipv4, '7001', '50', '300']),
    node.runTraffic(frontend.netns, ['lo-tcp', '100000']),
    node.runTraffic(frontend.netns, ['dns-query', backend.ipv4, '53', ...dnsNames]),
  ]);
  await Promise.all(sinks.map((s) => s.closed));
  // Flows, not records: a flow that idled out (1 s) in a stall of a loaded
  // machine and went on is two records of one flow at that pod.
  const exported = (port: number) =>
    new Set(records.filter((r) => r.fields.destinationTransportPort === port).map((r) => `${r.fields.flowDirection}|${r.fields.sourceTransportPort}`)).size;
  await waitFor(() => exported(5001) === 2 && exported(7001) === 2 && exported(53) === 2 * dnsNames.length, 10_000, () =>
    `flows exported: TCP ${exported(5001)} of 2, UDP ${exported(7001)} of 2, DNS ${exported(53)} of ${2 * dnsNames.length}; ` +
    `all records: ${JSON.stringify(records.map((r) => [r.fields.sourceTransportPort, r.fields.destinationTransportPort, r.fields.packetDeltaCount, r.fields.flowEndReason]))}`);

  // Prometheus has scraped the agent after the export.
  const scraped = async () => {
    const r = await prom.query(`sum(podflow_export_records_total{job="podflow"})`);
    return r.length === 1 && Number(r[0]!.value[1]) >= records.length;
  };
  await waitForAsync(scraped, 10_000, () => `Prometheus to scrape the export (${records.length} records)`, 200).catch(async (err: Error) => {
    const targets = await fetch(`${prom.url}/api/v1/targets`).then((r) => r.text());
    throw new Error(`${err.message}: ${targets}\n${prom.log}`);
  });
  const up = await prom.query(`up{job="podflow",node="${NODE}"}`);
  assert.equal(up.length === 1 && up[0]!.value[1], '1', `the agent is up as job podflow, node ${NODE}: ${JSON.stringify(up)}`);

  // Every query answered with data; the failures name the query. Prometheus
  // is asked again until they are (rate() over $__rate_interval needs two
  // samples of the newest series: a few more scrapes).
  let failures: string[] = [];
  let selectorsChecked = 0;
  const answered = async () => {
    failures = [];
    selectorsChecked = 0;
    for (const [kind, list] of Object.entries(queries)) {
      for (const q of list) {
        failures.push(...(await problems(prom, q, kind === 'alerts')));
        selectorsChecked += selectors(q.expr).length;
      }
    }
    return failures.length === 0;
  };
  await waitForAsync(answered, 20_000, () => `every query answered with data:\n${failures.join('\n')}`, 500);

  // The check itself: a metric name the agent does not export, a label it
  // does not carry, a node that is not this one: each is named.
  const wrong = [
    { where: 'wrong metric', expr: 'sum by (node) (rate(podflow_capture_kernel_drop_total{job="podflow",node=~"$node"}[$__rate_interval]))' },
    { where: 'wrong label', expr: 'sum by (node) (podflow_flows_active{job="podflow",node=~"$node",collector=~".+"})' },
    { where: 'wrong node', expr: 'podflow_flows_active{job="podflow",node="other-node"} == 0' },
  ];
  const legend = await problems(prom, { where: 'wrong legend', expr: 'sum by (node) (podflow_flows_active{job="podflow"})', resultLabels: ['node', 'collector'] }, false);
  assert.deepEqual(legend.map((f) => f.split(':')[1]), [' results without the label collector its legend or annotations use']);
  for (const q of wrong) {
    const found = await problems(prom, q, q.where === 'wrong node');
    assert.ok(found.some((f) => f.startsWith(`${q.where}: no data`)) && found.some((f) => f.startsWith(`${q.where}: no series`)), `${q.where}: ${JSON.stringify(found)}`);
  }
  t.diagnostic(`${queries.dashboard.length} dashboard and ${queries.alerts.length} alert queries (${selectorsChecked} selectors) answered with data; ${records.length} records exported; ${Date.now() - started} ms`);
});
