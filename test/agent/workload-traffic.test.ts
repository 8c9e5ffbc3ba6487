import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, type MetricSources, OTHER_WORKLOAD, UNKNOWN_WORKLOAD, WorkloadTraffic } from '../../agent/metrics.ts';
import { FlowDirection, UNKNOWN_ENDPOINT } from '../../enrich/export-record.ts';
import { exportRecord, podEnd, TCP_FLOW } from '../helpers/ipfix-records.ts';

const labels = (t: WorkloadTraffic) => t.stats().series.map((s) => `${s.namespace} ${s.workload} ${s.direction} ${s.bytes}`).sort();

test('a record whose observed end is unknown counts under _unknown, not under the overflow bucket', () => {
  const traffic = new WorkloadTraffic(7);
  traffic.add(exportRecord({ source: UNKNOWN_ENDPOINT }, { octetDeltaCount: 100, reverseOctetDeltaCount: 0 }));
  traffic.add(exportRecord({ flowDirection: FlowDirection.INGRESS, destination: UNKNOWN_ENDPOINT }, { octetDeltaCount: 5, reverseOctetDeltaCount: 0 }));
  assert.deepEqual(labels(traffic), [`${UNKNOWN_WORKLOAD} ${UNKNOWN_WORKLOAD} egress 100`, `${UNKNOWN_WORKLOAD} ${UNKNOWN_WORKLOAD} ingress 5`]);
  assert.equal(traffic.stats().overflowed, 0);
});

test('workloads past the series bound go to _other and are counted; unknown ones still get their own series', () => {
  // 7 series: one named workload, and one per direction for _other and for _unknown.
  const traffic = new WorkloadTraffic(7);
  const bytes = { octetDeltaCount: 1, reverseOctetDeltaCount: 0 };
  traffic.add(exportRecord({ source: podEnd('frontend-5d8f-a') }, bytes));
  traffic.add(exportRecord({ source: podEnd('backend-7c9b-x') }, bytes));
  traffic.add(exportRecord({ source: podEnd('backend-7c9b-x') }, bytes));
  traffic.add(exportRecord({ source: UNKNOWN_ENDPOINT }, bytes));
  assert.deepEqual(labels(traffic), [
    `${OTHER_WORKLOAD} ${OTHER_WORKLOAD} egress 2`,
    `${UNKNOWN_WORKLOAD} ${UNKNOWN_WORKLOAD} egress 1`,
    'shop Deployment/frontend egress 1',
  ]);
  assert.equal(traffic.stats().overflowed, 2);
});

test('TCP per workload: segments, retransmissions and resets both ways, and whole handshakes in the histogram', async () => {
  const traffic = new WorkloadTraffic(16);
  const source = podEnd('frontend-5d8f-a');
  traffic.add(exportRecord({ source }, TCP_FLOW));
  // A flow seen from its middle: counted, but no handshake to time.
  traffic.add(exportRecord({ source }, { tcp: { ...TCP_FLOW.tcp!, synToSynAckMicros: undefined, synAckToAckMicros: undefined } }));
  traffic.add(exportRecord({ source }, { protocolIdentifier: 17, tcp: undefined }));
  const [s] = traffic.stats().series;
  assert.deepEqual(
    [s!.tcpSegments, s!.tcpRetransmittedSegments, s!.tcpResets, s!.tcpHandshakes, s!.tcpHandshakeSeconds],
    [2 * 702, 2 * 7, 2 * 1, 1, 0.02054],
  );
  const registry = createMetrics({ traffic: () => traffic.stats() } as MetricSources);
  const scrape = (await Promise.all(['podflow_workload_tcp_retransmitted_segments_total', 'podflow_workload_tcp_handshake_seconds'].map((m) => registry.getSingleMetricAsString(m)))).join('\n');
  const series = 'namespace="shop",workload="Deployment/frontend",direction="egress"';
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_retransmitted_segments_total\\{${series}\\} 14$`, 'm'));
  // 20.54 ms: above the 10 ms bound, within 25 ms and every bound after.
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_handshake_seconds_bucket\\{${series},le="0.01"\\} 0$`, 'm'));
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_handshake_seconds_bucket\\{${series},le="0.025"\\} 1$`, 'm'));
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_handshake_seconds_bucket\\{${series},le="\\+Inf"\\} 1$`, 'm'));
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_handshake_seconds_sum\\{${series}\\} 0.02054$`, 'm'));
  assert.match(scrape, new RegExp(`^podflow_workload_tcp_handshake_seconds_count\\{${series}\\} 1$`, 'm'));
});
