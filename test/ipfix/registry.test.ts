import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CSV_PATH, GENERATED_PATH, parseIanaCsv, renderIanaElements } from '../../ipfix/iana-csv.ts';
import { IANA_ELEMENTS } from '../../ipfix/iana-elements.ts';
import { InformationElementRegistry, REVERSE_ELEMENTS, REVERSE_ENTERPRISE } from '../../ipfix/registry.ts';
import { FEATURE_ELEMENTS } from '../../ipfix/feature-elements.ts';

test('the generated IANA table is exactly what the CSV extract generates', () => {
  const csv = readFileSync(CSV_PATH, 'utf8');
  assert.equal(readFileSync(GENERATED_PATH, 'utf8'), renderIanaElements(csv), 'run: node ipfix/iana-csv.ts');
  assert.deepEqual(IANA_ELEMENTS, parseIanaCsv(csv));
});

test('IANA elements have the registry ids podflow relies on', () => {
  const r = new InformationElementRegistry();
  const ids: Record<string, number> = {
    octetDeltaCount: 1, packetDeltaCount: 2, protocolIdentifier: 4, tcpControlBits: 6, sourceTransportPort: 7,
    sourceIPv4Address: 8, destinationTransportPort: 11, destinationIPv4Address: 12, sourceIPv6Address: 27,
    destinationIPv6Address: 28, icmpTypeCodeIPv4: 32, exportedOctetTotalCount: 40, exportedMessageTotalCount: 41,
    exportedFlowRecordTotalCount: 42, vlanId: 58, flowDirection: 61, interfaceName: 82, flowEndReason: 136,
    observationPointId: 138, icmpTypeCodeIPv6: 139, exportingProcessId: 144, observationDomainId: 149,
    flowStartMilliseconds: 152, flowEndMilliseconds: 153, notSentFlowTotalCount: 166, notSentPacketTotalCount: 167,
    notSentOctetTotalCount: 168, informationElementId: 303, observationTimeMilliseconds: 323,
    informationElementDataType: 339, informationElementDescription: 340, informationElementName: 341,
    informationElementSemantics: 344, informationElementUnits: 345, privateEnterpriseNumber: 346,
  };
  for (const [name, id] of Object.entries(ids)) {
    assert.equal(r.byName(name)?.id, id, name);
    assert.equal(r.byId(0, id)?.name, name);
  }
});

test('reverse elements are derived under PEN 29305 with the same id and type', () => {
  const r = new InformationElementRegistry();
  const reverse = r.byId(REVERSE_ENTERPRISE, 1)!;
  assert.equal(reverse.name, 'reverseOctetDeltaCount');
  assert.equal(reverse.dataType, 'unsigned64');
  assert.equal(r.byName('reverseIcmpTypeCodeIPv6')?.id, 139);
  assert.equal(r.byName('reverseObservationDomainId'), undefined, 'process identifiers are not reversible');
  for (const e of REVERSE_ELEMENTS) assert.equal(r.byId(0, e.id)?.dataType, e.dataType);
});

test('enterprise elements follow the configured PEN, source ids 10.. and destination ids 60..', () => {
  const r = new InformationElementRegistry(4242);
  assert.equal(r.byId(4242, 50)?.name, 'k8sClusterName');
  assert.equal(r.byId(4242, 12)?.name, 'k8sSourcePodName');
  assert.equal(r.byId(4242, 62)?.name, 'k8sDestinationPodName');
  assert.equal(r.byId(32473, 12), undefined);
  assert.equal(r.byId(4242, 101)?.name, 'dnsQueryName');
  assert.equal(r.enterpriseElements.length, 23 + FEATURE_ELEMENTS.length);
  assert.ok(r.enterpriseElements.every((e) => e.enterprise === 4242));
  assert.ok(r.enterpriseElements.filter((e) => e.name.startsWith('k8s')).every((e) => e.dataType === 'string'));
});

test('an enterprise number out of range is a configuration error', () => {
  for (const pen of [0, -1, 1.5, 2 ** 32, REVERSE_ENTERPRISE]) {
    assert.throws(() => new InformationElementRegistry(pen), { code: 'PODFLOW_ERR_IPFIX_CONFIG' });
  }
});
