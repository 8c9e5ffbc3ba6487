// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// DNS per flow on the simulated node, end to end: a DNS server in the
// backend pod (sim/traffic.ts dns-server) answers the frontend pod's queries
// with NOERROR, NXDOMAIN, SERVFAIL, a deliberately delayed NOERROR and one
// longer than the capture's snaplen (read whole: capture.dnsSnaplen). The
// agent process exports them; checked are the names, codes and latencies in
// the records as the in-test collector (podflow's decoder) reads them, as
// libfixbuf's ipfixDump reads the same export written to a file (named from
// the RFC 5610 type records alone), and the per-workload DNS series of
// /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canRunSimNode } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';
import { addTwoDeployments, agentHarness, metricReaches, scrapeUntil, startAgent, waitReady } from '../helpers/agent-process.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'sim-node';
/** How long the server holds back the answer to the "slow." name. */
const SLOW_MS = 300;
const NAMES = { ok: 'web.shop.svc.cluster.local', nx: 'nx.shop.svc.cluster.local', fail: 'fail.shop.svc.cluster.local', slow: 'slow.shop.svc.cluster.local', big: 'big.shop.svc.cluster.local' };

test('DNS answers of a pod: names, codes and latencies in the exported records (podflow and ipfixDump) and in /metrics', { skip, timeout: 120_000 }, async (t) => {
  // Idle timeout 2 s: timeouts compare whole seconds (flow/meter.ts), so 1 s
  // could end a flow between a query and its delayed answer.
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 2, shutdownSeconds: 5 });
  const { node, records, dir } = h;
  // A second target: the same records in a file, for an independent decoder.
  const file = join(dir, 'export.ipfix');
  writeFileSync(h.config, readFileSync(h.config, 'utf8').replace(/^collectors: \['(.*)'\]$/m, `collectors: ['$1', 'file:${file}']`));
  const { frontend, backend } = addTwoDeployments(h, NODE);
  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  await waitReady(agent);
  await metricReaches(agent, 'podflow_capture_handles', 2);

  const names = Object.values(NAMES);
  const server = await node.startSink(backend.netns, ['dns-server', '53', String(names.length), String(SLOW_MS)]);
  const out = await node.runTraffic(frontend.netns, ['dns-query', backend.ipv4, '53', ...names]);
  const answers = (JSON.parse(out.trim().split('\n').at(-1)!) as { answers: Array<{ name: string; rcode: number; ms: number }> }).answers;
  assert.deepEqual(answers.map((a) => a.rcode), [0, 3, 2, 0, 0], 'the server answered as told: NOERROR, NXDOMAIN, SERVFAIL, NOERROR, NOERROR');
  assert.equal((await server.closed).code, 0);

  // Each query is a flow of its own (a socket each), seen at both pods: 10 records.
  const dnsRecords = () => records.filter((r) => r.fields.destinationTransportPort === 53 && r.fields.dnsQueryName !== undefined);
  await waitFor(() => dnsRecords().length === 2 * names.length, 15_000, () => `${2 * names.length} DNS records: ${dnsRecords().length}`);
  const byName = (name: string, pod: string) => dnsRecords().find((r) => r.fields.dnsQueryName === name && (r.fields.flowDirection === 1 ? r.fields.k8sSourcePodName : r.fields.k8sDestinationPodName) === pod)!;
  const expected = { [NAMES.ok]: 0, [NAMES.nx]: 3, [NAMES.fail]: 2, [NAMES.slow]: 0, [NAMES.big]: 0 };
  for (const [name, rcode] of Object.entries(expected)) {
    const asked = answers.find((a) => a.name === name)!;
    for (const pod of ['frontend-5d8f-a', 'backend-7c9b-x']) {
      const f = byName(name, pod)?.fields;
      assert.ok(f, `${name} at ${pod}`);
      assert.equal(f.dnsResponseCode, rcode, `${name} at ${pod}`);
      assert.equal(f.dnsQueryType, 1);
      assert.equal(f.dnsQueryCount, 1);
      assert.equal(f.dnsResponseCount, 1);
      assert.equal(f.dnsErrorResponseCount, rcode === 0 ? 0 : 1);
      assert.equal(f.dnsAnswerData, rcode !== 0 ? '' : name === NAMES.big ? '198.18.53.1' : '198.18.53.53');
      assert.equal(f.dnsAnswerCount, rcode !== 0 ? 0 : name === NAMES.big ? 20 : 1);
      // Between the pod's interface seeing the query and the answer: at
      // least the server's delay, at most what the client itself waited.
      const latencyMs = Number(f.dnsLatencyMicroseconds) / 1000;
      if (name === NAMES.slow) assert.ok(latencyMs >= SLOW_MS, `${name} at ${pod}: ${latencyMs} ms, the server waited ${SLOW_MS}`);
      assert.ok(latencyMs <= asked.ms, `${name} at ${pod}: ${latencyMs} ms, the client waited ${asked.ms} ms`);
    }
  }

  // /metrics: responses by code and the latency histogram, per workload and direction.
  const scrape = await scrapeUntil(agent, (s) => /podflow_workload_dns_latency_seconds_count\{[^}]*workload="Deployment\/frontend"[^}]*\} 5$/m.test(s), 'the frontend\'s 5 DNS latencies');
  const sample = (pattern: string) => Number(new RegExp(`^${pattern} (\\S+)$`, 'm').exec(scrape)?.[1]);
  const series = (workload: string, direction: string) => `namespace="${workload === 'frontend' ? 'shop' : 'data'}",workload="Deployment/${workload}",direction="${direction}"`;
  for (const [workload, direction] of [['frontend', 'egress'], ['backend', 'ingress']] as const) {
    const labels = series(workload, direction);
    for (const [rcode, count] of [['NOERROR', 3], ['NXDOMAIN', 1], ['SERVFAIL', 1]] as const) {
      assert.equal(sample(`podflow_workload_dns_responses_total\\{${labels},rcode="${rcode}"\\}`), count, `${workload} ${rcode}`);
    }
    // The slow answer is the one above 0.25 s.
    assert.equal(sample(`podflow_workload_dns_latency_seconds_bucket\\{${labels},le="0.25"\\}`), 4, `${workload}: 4 answers within 0.25 s`);
    assert.equal(sample(`podflow_workload_dns_latency_seconds_bucket\\{${labels},le="\\+Inf"\\}`), 5);
    assert.ok(sample(`podflow_workload_dns_latency_seconds_sum\\{${labels}\\}`) >= SLOW_MS / 1000);
  }
  // Every message read whole: the big answer (924 bytes) was not cut at the 256-byte snaplen.
  assert.equal(sample('podflow_dns_problems_total\\{reason="truncated"\\}'), 0);
  assert.equal(sample('podflow_dns_messages_total\\{kind="response"\\}'), 2 * names.length);

  // ipfixDump reads the same records from the file, names from the RFC 5610 records in it.
  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0);
  const dump = spawnSync('ipfixDump', ['--in', file, '--rfc5610'], { encoding: 'utf8' });
  assert.equal(dump.status, 0, dump.stderr);
  for (const name of names) assert.equal((dump.stdout.match(new RegExp(`dnsQueryName : \\(len: ${name.length}\\) ${name.replaceAll('.', '\\.')}\\n`, 'g')) ?? []).length, 2, name);
  assert.equal((dump.stdout.match(/dnsResponseCode : 3\n/g) ?? []).length, 2);
  assert.equal((dump.stdout.match(/dnsResponseCode : 2\n/g) ?? []).length, 2);
  const latencies = [...dump.stdout.matchAll(/dnsLatencyMicroseconds : (\d+)\n/g)].map((m) => Number(m[1]));
  assert.equal(latencies.filter((us) => us >= SLOW_MS * 1000).length, 2, `the slow answer at both pods: ${latencies.join(' ')}`);
});
