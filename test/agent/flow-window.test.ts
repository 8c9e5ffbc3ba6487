// The browser view's window of flows (agent/web/flow-window.ts): bytes spread
// over the buckets a flow spans, one conversation seen at both ends counted
// once, a Service in front of the workload behind it, per-flow features
// summed, buckets let go as time passes, and every bound held and counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CollectedRecord } from '../../ipfix/collector.ts';
import type { FieldValue } from '../../ipfix/decoder.ts';
import { FlowWindow, LIMITS } from '../../agent/web/flow-window.ts';
import type { ViewQuery } from '../../web/protocol.ts';

const T0 = 1_800_000_000_000;
const STATS = { sessions: 1, messages: 1, flowRecords: 1, badMessages: 0 };

function query(overrides: Partial<ViewQuery> = {}): ViewQuery {
  return { dimension: 'node', metric: 'bytes', filter: { namespace: '', workload: '', pod: '', protocol: '', port: '', text: '' }, selected: '', ...overrides };
}

function pod(side: 'Source' | 'Destination', namespace: string, name: string, workload: string, node: string): Record<string, FieldValue> {
  return {
    [`k8s${side}EndpointType`]: 'pod',
    [`k8s${side}Namespace`]: namespace,
    [`k8s${side}PodName`]: name,
    [`k8s${side}WorkloadKind`]: 'Deployment',
    [`k8s${side}WorkloadName`]: workload,
    [`k8s${side}NodeName`]: node,
  };
}

function record(fields: Record<string, FieldValue>): CollectedRecord {
  return {
    templateId: 256,
    options: false,
    session: 'tcp 127.0.0.1:1',
    observationDomainId: 1,
    fields: {
      sourceIPv4Address: '198.18.0.10',
      destinationIPv4Address: '198.18.0.20',
      sourceTransportPort: 40000,
      destinationTransportPort: 8080,
      protocolIdentifier: 6,
      flowDirection: 1,
      octetDeltaCount: 1000,
      packetDeltaCount: 10,
      reverseOctetDeltaCount: 0,
      reversePacketDeltaCount: 0,
      ...pod('Source', 'shop', 'web-1', 'web', 'node-a'),
      ...pod('Destination', 'shop', 'api-1', 'api', 'node-b'),
      ...fields,
    },
  } as CollectedRecord;
}

test('spreads a flow\'s bytes over the buckets it spans, by time', () => {
  const now = T0 + 60_000;
  const w = new FlowWindow({ stepMs: 10_000, windowMs: 100_000, now: () => now });
  // 20 s from T0+15 s to T0+35 s: a quarter, a half, a quarter.
  w.add(record({ flowStartMilliseconds: T0 + 15_000, flowEndMilliseconds: T0 + 35_000, octetDeltaCount: 4000 }));
  const chart = w.snapshot(query(), STATS).chart;
  assert.equal(chart.series.length, 1);
  const values = chart.series[0]!.values;
  const at = (t: number) => values[(t - chart.start) / 10_000]!;
  assert.deepEqual([at(T0), at(T0 + 10_000), at(T0 + 20_000), at(T0 + 30_000), at(T0 + 40_000)], [0, 100, 200, 100, 0]);
});

test('counts a conversation seen at both its ends once, and one seen at one end fully', () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ stepMs: 10_000, windowMs: 60_000, now: () => now });
  const at = { flowStartMilliseconds: T0 + 1_000, flowEndMilliseconds: T0 + 1_000 };
  w.add(record({ ...at, flowDirection: 1 }));
  w.add(record({ ...at, flowDirection: 0 }));
  w.add(record({ ...at, ...pod('Source', 'shop', 'cron-1', 'cron', 'node-a'), octetDeltaCount: 300 }));
  const map = w.snapshot(query(), STATS).map;
  const edge = (from: string) => map.edges.find((e) => e.from === from)!;
  assert.equal(edge('w:shop/Deployment/web').bytes, 1000);
  assert.equal(edge('w:shop/Deployment/web').flows, 2);
  assert.equal(edge('w:shop/Deployment/cron').bytes, 300);
  // The chart counts what each node's pods saw: both ends.
  const chart = w.snapshot(query(), STATS).chart;
  const total = (key: string) => chart.series.find((s) => s.key === key)!.values.reduce((a, b) => a + b, 0) * 10;
  assert.equal(total('node-a'), 1300);
  assert.equal(total('node-b'), 1000);
});

test("puts a Service in front of the workload its client's connection reached", () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  const service = { k8sDestinationEndpointType: 'service', k8sDestinationServiceNamespace: 'shop', k8sDestinationServiceName: 'api', destinationIPv4Address: '198.18.0.200' };
  w.add(record({ ...service, k8sDestinationNamespace: '', flowEndMilliseconds: T0 }));
  w.add(record({ flowDirection: 0, flowEndMilliseconds: T0 }));
  const edges = w.snapshot(query(), STATS).map.edges.map((e) => `${e.from} → ${e.to}`).sort();
  assert.deepEqual(edges, ['s:shop/api → w:shop/Deployment/api', 'w:shop/Deployment/web → s:shop/api']);
});

test("puts a Service in front of its workload also when the server's record comes first (the two ends' agents export independently)", () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  const service = { k8sDestinationEndpointType: 'service', k8sDestinationServiceNamespace: 'shop', k8sDestinationServiceName: 'api', destinationIPv4Address: '198.18.0.200' };
  const rtt = { tcpSynToSynAckMicroseconds: 1_000, tcpSynAckToAckMicroseconds: 1_000 };
  w.add(record({ flowDirection: 0, flowEndMilliseconds: T0, ...rtt }));
  const before = w.snapshot(query(), STATS).map.edges.map((e) => `${e.from} → ${e.to}`);
  assert.deepEqual(before, ['w:shop/Deployment/web → w:shop/Deployment/api'], 'until the client says a Service was meant');
  w.add(record({ ...service, k8sDestinationNamespace: '', flowEndMilliseconds: T0 }));
  const after = w.snapshot(query(), STATS).map.edges;
  assert.deepEqual(after.map((e) => `${e.from} → ${e.to}`).sort(), ['s:shop/api → w:shop/Deployment/api', 'w:shop/Deployment/web → s:shop/api']);
  const behind = after.find((e) => e.from === 's:shop/api')!;
  assert.equal(behind.flows, 1);
  assert.ok(behind.bytesPerSecond > 0);
  // A direct conversation between the same pods, by another client port, stays direct.
  w.add(record({ flowDirection: 0, sourceTransportPort: 40001, flowEndMilliseconds: T0 }));
  assert.ok(w.snapshot(query(), STATS).map.edges.some((e) => e.from === 'w:shop/Deployment/web' && e.to === 'w:shop/Deployment/api'));
});

test('sums the per-flow features a record carries, and shows every field beyond the common ones', () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  const tcp = (synToSynAck: number, synAckToAck: number, retransmitted: number) => ({
    tcpSynToSynAckMicroseconds: synToSynAck, tcpSynAckToAckMicroseconds: synAckToAck, tcpRetransmittedSegmentCount: retransmitted, reverseTcpRetransmittedSegmentCount: 1,
  });
  w.add(record({ flowEndMilliseconds: T0, ...tcp(15_000, 5_000, 2) }));
  // No handshake seen (TCP_NO_TIME): no round trip, its retransmissions still count.
  w.add(record({ flowEndMilliseconds: T0, ...tcp(0xffffffff, 0xffffffff, 0) }));
  w.add(record({ flowEndMilliseconds: T0, ...tcp(30_000, 10_000, 0), dnsQueryName: 'api.shop.svc', dnsResponseCode: 3, dnsResponseCount: 2, dnsErrorResponseCount: 1 }));
  const s = w.snapshot(query({ selected: 'w:shop/Deployment/web' }), STATS);
  assert.deepEqual(s.details!.perf, { rttMs: { mean: 30, max: 40, samples: 2 }, retransmissions: 5, dnsResponses: 2, dnsErrors: 1 });
  const newest = s.flows.rows[0]!;
  assert.deepEqual(newest.perf, { rttMs: 40, retransmissions: 1, dnsResponses: 2, dnsErrors: 1 });
  assert.deepEqual(newest.extra.map(([name]) => name), [
    'tcpSynToSynAckMicroseconds', 'tcpSynAckToAckMicroseconds', 'tcpRetransmittedSegmentCount', 'reverseTcpRetransmittedSegmentCount',
    'dnsQueryName', 'dnsResponseCode', 'dnsResponseCount', 'dnsErrorResponseCount',
  ]);
});

test('lets go of what fell out of the window', () => {
  let now = T0;
  const w = new FlowWindow({ stepMs: 10_000, windowMs: 60_000, now: () => now });
  w.add(record({ flowEndMilliseconds: T0 }));
  assert.equal(w.snapshot(query(), STATS).map.edges.length, 1);
  now = T0 + 70_000;
  const s = w.snapshot(query(), STATS);
  assert.deepEqual([s.map.edges.length, s.map.entities.length, s.chart.series.length], [0, 0, 0]);
  // A record that ended before the window: counted, kept only in the table.
  w.add(record({ flowEndMilliseconds: T0 }));
  const late = w.snapshot(query(), STATS);
  assert.equal(late.stats.dropped.late, 1);
  assert.equal(late.flows.held, 2);
});

test('holds its bounds whatever the number of conversations, and counts what it folds or leaves out', () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  const n = LIMITS.entities + 500;
  for (let i = 0; i < n; i++) {
    w.add(record({ flowEndMilliseconds: T0, ...pod('Source', `ns${i}`, `p${i}`, `w${i}`, `node-${i}`) }));
  }
  const s = w.snapshot(query({ dimension: 'workload' }), STATS);
  assert.equal(s.chart.series.length, LIMITS.chartSeries);
  assert.ok(s.chart.series.some((x) => x.key === ''), 'the rest as one series');
  assert.equal(s.flows.held, LIMITS.rows);
  assert.equal(s.map.edges.length, LIMITS.mapEdges);
  // One destination entity, LIMITS.entities - 1 sources; the rest folded into "other".
  assert.equal(s.stats.dropped.entities, n - (LIMITS.entities - 1));
  assert.equal(s.stats.dropped.series, 3 * (n - (LIMITS.series - 1)));
  assert.equal(s.stats.dropped.edges, 0, 'the folded ones share one edge');
  const all = s.map.hiddenEdges + s.map.edges.length;
  assert.equal(all, LIMITS.entities);
});

test('filters the table by namespace, workload, pod, protocol (by name or number), port and words', () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  w.add(record({ flowEndMilliseconds: T0 }));
  w.add(record({ flowEndMilliseconds: T0, protocolIdentifier: 17, destinationTransportPort: 53, ...pod('Destination', 'kube-system', 'coredns-1', 'coredns', 'node-a') }));
  const rows = (filter: Partial<ViewQuery['filter']>) => w.snapshot(query({ filter: { ...query().filter, ...filter } }), STATS).flows.rows.map((r) => r.destination.name);
  assert.deepEqual(rows({ namespace: 'kube-system' }), ['kube-system/coredns-1']);
  assert.deepEqual(rows({ workload: 'shop/Deployment/api' }), ['shop/api-1']);
  assert.deepEqual(rows({ pod: 'CoreDNS' }), ['kube-system/coredns-1']);
  assert.deepEqual(rows({ protocol: 'udp' }), ['kube-system/coredns-1']);
  assert.deepEqual(rows({ protocol: '6' }), ['shop/api-1']);
  assert.deepEqual(rows({ port: '8080' }), ['shop/api-1']);
  assert.deepEqual(rows({ text: 'web-1 53' }), ['kube-system/coredns-1']);
  assert.deepEqual(rows({ namespace: 'shop', protocol: 'UDP' }), ['kube-system/coredns-1']);
  assert.deepEqual(rows({ namespace: 'nowhere' }), []);
});

test('leaves conversations beyond its edge bound off the map, counted, with their bytes still on the chart', () => {
  const now = T0 + 5_000;
  const w = new FlowWindow({ now: () => now });
  const side = Math.ceil(Math.sqrt(LIMITS.edges)) + 5;
  for (let a = 0; a < side; a++) {
    for (let b = 0; b < side; b++) {
      w.add(record({ flowEndMilliseconds: T0, ...pod('Source', 'shop', `c${a}`, `client${a}`, 'node-a'), ...pod('Destination', 'shop', `s${b}`, `server${b}`, 'node-b') }));
    }
  }
  const s = w.snapshot(query(), STATS);
  assert.equal(s.map.edges.length + s.map.hiddenEdges, LIMITS.edges);
  assert.equal(s.stats.dropped.edges, side * side - LIMITS.edges);
  const total = s.chart.series.find((x) => x.key === 'node-a')!.values.reduce((a, b) => a + b, 0) * 10;
  assert.equal(total, side * side * 1000);
});
