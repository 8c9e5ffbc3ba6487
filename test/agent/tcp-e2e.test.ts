// Needs root: a simulated node of network namespaces, iptables rules in them and packet capture (skips with the reason otherwise).
//
// TCP performance through the real agent process, judged by the kernel: the
// backend pod's ingress delays TCP by 20 ms and drops 2% of it
// (SimNode.impairIngress, netem's job), the frontend makes connections to
// it, and what the agent exports and serves must agree with each pod's own
// TcpRetransSegs (nstat): the collector's records (tcpRetransmittedSegmentCount
// and its reverse, summed over each pod's flows) and the per-workload
// counter in /metrics; every handshake lands in the 10-25 ms bucket of the
// histogram, and the records' round trips are within 2 ms of 20 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentHarness, addTwoDeployments, sample, scrapeUntil, startAgent, waitReady } from '../helpers/agent-process.ts';
import { inTimeWait, tcpCounters } from '../helpers/kernel-tcp.ts';
import { waitFor } from '../helpers/wait.ts';
import { canRunSimNode } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'sim-node';
const CONNECTIONS = 3;
const BYTES = 1_000_000;

test('retransmissions and handshakes through 20 ms delay and 2% loss reach the records and /metrics as the kernel counted them', { skip, timeout: 120_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 5, shutdownSeconds: 5 });
  const { node, records } = h;
  const { frontend, backend } = addTwoDeployments(h, NODE);
  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  await waitReady(agent);
  await waitFor(() => (agent.logs.match(/"namespace attached"/g) ?? []).length === 2, 10_000, 'two namespaces attached');
  await scrapeUntil(agent, (text) => sample(text, 'podflow_capture_handles') === 2, 'a capture in both pods');
  const impairment = await node.impairIngress(backend.index, 20, 0.02);

  const before = [frontend, backend].map((p) => tcpCounters(node, p.netns).retransmitted);
  for (let i = 0; i < CONNECTIONS; i++) {
    const sink = await node.startSink(backend.netns, ['tcp-sink', String(5001 + i)]);
    await node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, String(5001 + i), String(BYTES)]);
    await sink.closed;
  }
  await waitFor(() => inTimeWait(node, frontend.netns), 10_000, 'the frontend in TIME_WAIT');
  await node.tcpSettled([backend.netns], 10_000);
  await impairment.stop();
  const retransmitted = [frontend, backend].map((p, i) => tcpCounters(node, p.netns).retransmitted - before[i]!);
  t.diagnostic(`TcpRetransSegs: frontend ${retransmitted[0]}, backend ${retransmitted[1]}`);
  assert.ok(retransmitted[0]! > 0, 'the frontend retransmitted');
  const both = retransmitted[0]! + retransmitted[1]!;

  // Each connection is a flow at each pod, exported to the collector once idle
  // for 5 s: longer than a SYN's first retransmission (1 s) or a few doubled
  // timeouts, so no connection is split in two (its second flow would start
  // its sequence afresh: docs/tcp.md).
  const tcp = () => records.filter((r) => Number(r.fields.destinationTransportPort) >= 5001 && Number(r.fields.destinationTransportPort) < 5001 + CONNECTIONS);
  await waitFor(() => tcp().length === 2 * CONNECTIONS, 20_000, () => `${2 * CONNECTIONS} TCP records (have ${tcp().length})`);
  for (const [pod, direction] of [[frontend, 1], [backend, 0]] as const) {
    const at = tcp().filter((r) => r.fields.flowDirection === direction);
    assert.equal(at.length, CONNECTIONS, `${CONNECTIONS} records observed at pod ${pod.index}`);
    const counts = at.map((r) => [Number(r.fields.tcpRetransmittedSegmentCount), Number(r.fields.reverseTcpRetransmittedSegmentCount)]);
    t.diagnostic(`pod ${pod.index}: retransmitted segments per record (forward, reverse) ${JSON.stringify(counts)}`);
    assert.equal(counts.flat().reduce((n, c) => n + c, 0), both, `pod ${pod.index}: retransmitted segments in the records, both ways`);
    for (const r of at) {
      const rtt = Number(r.fields.tcpSynToSynAckMicroseconds) + Number(r.fields.tcpSynAckToAckMicroseconds);
      assert.ok(Math.abs(rtt - 20_000) <= 2000, `pod ${pod.index}: handshake ${rtt} µs`);
    }
  }

  // /metrics: the same counts per workload, each handshake in the 10-25 ms bucket.
  const frontendSeries = { namespace: 'shop', workload: 'Deployment/frontend', direction: 'egress' };
  const backendSeries = { namespace: 'data', workload: 'Deployment/backend', direction: 'ingress' };
  const scrape = await scrapeUntil(agent, (text) => sample(text, 'podflow_workload_tcp_handshake_seconds_count', backendSeries) === CONNECTIONS, 'every handshake in /metrics');
  for (const series of [frontendSeries, backendSeries]) {
    assert.equal(sample(scrape, 'podflow_workload_tcp_retransmitted_segments_total', series), both, `${series.workload} retransmitted segments`);
    assert.ok(sample(scrape, 'podflow_workload_tcp_segments_total', series) > CONNECTIONS * (BYTES / 1460), `${series.workload} segments`);
    assert.equal(sample(scrape, 'podflow_workload_tcp_handshake_seconds_count', series), CONNECTIONS);
    assert.equal(sample(scrape, 'podflow_workload_tcp_handshake_seconds_bucket', { ...series, le: '0.01' }), 0);
    assert.equal(sample(scrape, 'podflow_workload_tcp_handshake_seconds_bucket', { ...series, le: '0.025' }), CONNECTIONS);
  }
});
