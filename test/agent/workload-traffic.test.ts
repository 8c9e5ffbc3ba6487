import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OTHER_WORKLOAD, UNKNOWN_WORKLOAD, WorkloadTraffic } from '../../agent/metrics.ts';
import { FlowDirection, UNKNOWN_ENDPOINT } from '../../ipfix/types.ts';
import { exportRecord, podEnd } from '../helpers/ipfix-records.ts';

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
