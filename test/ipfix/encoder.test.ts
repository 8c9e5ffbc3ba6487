import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IpfixSession } from '../../ipfix/decoder.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { TemplateId } from '../../ipfix/templates.ts';
import { DEFAULT_UDP_MAX_MESSAGE_BYTES } from '../../ipfix/transport-udp.ts';
import type { ExportRecord } from '../../enrich/export-record.ts';
import { DNS_FLOW, exportRecord, IPV6_FLOW, podEnd } from '../helpers/ipfix-records.ts';

const NOW = 1_750_000_000_500;

function pair(options: Partial<ConstructorParameters<typeof IpfixEncoder>[0]> = {}) {
  const encoder = new IpfixEncoder({ observationDomainId: 9, clock: () => NOW, ...options });
  const session = new IpfixSession({ enterpriseNumber: options.enterpriseNumber });
  for (const m of encoder.templateMessages()) assert.equal(session.decodeMessage(m).status, 'ok');
  return { encoder, session };
}

function roundTrip(records: ExportRecord[], options = {}) {
  const { encoder, session } = pair(options);
  const messages = encoder.encode(records);
  const decoded = messages.map((m) => session.decodeMessage(m));
  for (const d of decoded) assert.equal(d.status, 'ok');
  return { encoder, session, messages, decoded, records: decoded.flatMap((d) => d.records) };
}

test('DNS fields ride after the flow fields, in the template of their IP version and features; without DNS a flow keeps the plain template', () => {
  const v6 = { ...DNS_FLOW, ...IPV6_FLOW, protocolIdentifier: 17, icmpTypeCode: 0, reverseIcmpTypeCode: 0 };
  const unanswered = { ...DNS_FLOW, dns: { ...DNS_FLOW.dns!, response: undefined, latencyMicros: undefined, responses: 0, responseCodes: new Array<number>(16).fill(0), latenciesMicros: [] } };
  const { records } = roundTrip([exportRecord({}, DNS_FLOW), exportRecord(), exportRecord({}, v6), exportRecord({}, unanswered)]);
  assert.deepEqual(records.map((r) => r.templateId), [261, TemplateId.FLOW_IPV4, 262, 261]);
  const dnsFields = (f: Record<string, unknown>) => Object.fromEntries(Object.entries(f).filter(([key]) => key.startsWith('dns')));
  const nxdomain = {
    dnsTransactionId: 0x1234,
    dnsQueryName: 'cart.shop.svc.cluster.local',
    dnsQueryType: 1,
    dnsQueryClass: 1,
    dnsResponseCode: 3,
    dnsAnswerCount: 0,
    dnsAnswerType: 0,
    dnsAnswerTtl: 0,
    dnsAnswerData: '',
    dnsLatencyMicroseconds: 1500,
    dnsQueryCount: 2,
    dnsResponseCount: 2,
    dnsErrorResponseCount: 1,
  };
  assert.deepEqual(dnsFields(records[0]!.fields), nxdomain);
  assert.equal(records[0]!.fields.k8sSourcePodName, 'frontend-6d8f9c7b5-x2k4q');
  assert.deepEqual(dnsFields(records[1]!.fields), {});
  assert.deepEqual(dnsFields(records[2]!.fields), nxdomain);
  assert.equal(records[2]!.fields.sourceIPv6Address, 'fd00::a');
  assert.deepEqual(dnsFields(records[3]!.fields), { ...nxdomain, dnsResponseCode: 255, dnsLatencyMicroseconds: 0xffffffff, dnsResponseCount: 0, dnsErrorResponseCount: 0 });
});

test('an encoder made without a feature has no template for it and exports such a record as a plain flow', () => {
  const { encoder, records } = roundTrip([exportRecord({}, DNS_FLOW)], { features: [] });
  assert.deepEqual(encoder.templates.map((t) => t.id), [256, 257, 258, 259, 260]);
  assert.equal(records[0]!.templateId, TemplateId.FLOW_IPV4);
  assert.equal(records[0]!.fields.dnsQueryName, undefined);
});

test('a DNS name longer than the string limit is cut and counted', () => {
  const long = { ...DNS_FLOW, dns: { ...DNS_FLOW.dns!, queryName: 'a'.repeat(300) } };
  const { encoder, records } = roundTrip([exportRecord({}, long)], { maxStringBytes: 100 });
  assert.equal(records[0]!.fields.dnsQueryName, 'a'.repeat(100));
  assert.equal(encoder.stats.stringsTruncated, 1);
});

test('an IPv4 biflow round-trips with reverse counters, flags and both identities', () => {
  const { records } = roundTrip([exportRecord()]);
  assert.equal(records.length, 1);
  assert.equal(records[0]!.templateId, TemplateId.FLOW_IPV4);
  assert.deepEqual(records[0]!.fields, {
    sourceIPv4Address: '198.18.0.10',
    destinationIPv4Address: '198.18.0.20',
    sourceTransportPort: 43512,
    destinationTransportPort: 8080,
    protocolIdentifier: 6,
    tcpControlBits: 0x1b,
    reverseTcpControlBits: 0x1a,
    icmpTypeCodeIPv4: 0,
    reverseIcmpTypeCodeIPv4: 0,
    vlanId: 0,
    flowDirection: 1,
    flowEndReason: 3,
    octetDeltaCount: 1804,
    packetDeltaCount: 12,
    reverseOctetDeltaCount: 9120,
    reversePacketDeltaCount: 10,
    flowStartMilliseconds: 1_750_000_000_123,
    flowEndMilliseconds: 1_750_000_004_456,
    observationPointId: 7,
    interfaceName: 'eth0',
    k8sClusterName: 'test-cluster',
    k8sSourceEndpointType: 'pod',
    k8sSourceNamespace: 'shop',
    k8sSourcePodName: 'frontend-6d8f9c7b5-x2k4q',
    k8sSourcePodUid: '7f1c2a9e-5b0d-4c1e-9a53-0d8e2b6c4f11',
    k8sSourceWorkloadKind: 'Deployment',
    k8sSourceWorkloadName: 'frontend',
    k8sSourceNodeName: 'node-a',
    k8sSourceServiceNamespace: '',
    k8sSourceServiceName: '',
    k8sSourceServicePortName: '',
    k8sSourceLabels: 'app=frontend,tier=web',
    k8sDestinationEndpointType: 'service',
    k8sDestinationNamespace: '',
    k8sDestinationPodName: '',
    k8sDestinationPodUid: '',
    k8sDestinationWorkloadKind: '',
    k8sDestinationWorkloadName: '',
    k8sDestinationNodeName: '',
    k8sDestinationServiceNamespace: 'shop',
    k8sDestinationServiceName: 'cart',
    k8sDestinationServicePortName: 'http',
    k8sDestinationLabels: '',
  });
});

test('an IPv6 flow uses the IPv6 template with ICMPv6 type/code both ways', () => {
  const { records } = roundTrip([exportRecord({}, IPV6_FLOW)]);
  const f = records[0]!.fields;
  assert.equal(records[0]!.templateId, TemplateId.FLOW_IPV6);
  assert.equal(f.sourceIPv6Address, 'fd00::a');
  assert.equal(f.destinationIPv6Address, 'fd00:0:0:1::1234');
  assert.equal(f.icmpTypeCodeIPv6, 128 * 256);
  assert.equal(f.reverseIcmpTypeCodeIPv6, 129 * 256);
});

test('counters above 2^32 keep every bit', () => {
  const { records } = roundTrip([exportRecord({}, { octetDeltaCount: 2 ** 40 + 12345, reverseOctetDeltaCount: 2 ** 53 - 1 })]);
  assert.equal(records[0]!.fields.octetDeltaCount, 2 ** 40 + 12345);
  assert.equal(records[0]!.fields.reverseOctetDeltaCount, 2 ** 53 - 1);
});

test('mixed IPv4 and IPv6 records keep their order across sets', () => {
  const input = [0, 1, 2, 3, 4, 5].map((i) => exportRecord({}, i % 3 === 2 ? { ...IPV6_FLOW, observationPointId: i } : { observationPointId: i }));
  const { records } = roundTrip(input);
  assert.deepEqual(records.map((r) => r.fields.observationPointId), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(records.map((r) => r.templateId), [256, 256, 257, 256, 256, 257]);
});

test('strings of 255 bytes and more use the 3-byte length form', () => {
  for (const length of [254, 255, 256, 512]) {
    const name = 'p'.repeat(length);
    const { records, messages } = roundTrip([exportRecord({ source: podEnd(name) })], { maxMessageBytes: 4000 });
    assert.equal(records[0]!.fields.k8sSourcePodName, name);
    const at = Buffer.from(messages[0]!).indexOf(Buffer.from(name));
    if (length < 255) assert.equal(messages[0]![at - 1], length);
    else assert.deepEqual([...messages[0]!.subarray(at - 3, at)], [255, length >> 8, length & 0xff]);
  }
});

test('strings are cut at maxStringBytes without splitting a UTF-8 character, and counted', () => {
  const name = 'ä'.repeat(300); // 600 bytes
  const { records, encoder } = roundTrip([exportRecord({ interfaceName: 'x'.repeat(40), source: podEnd(name, { podUid: 'u', workloadName: 'w' }) })], { maxStringBytes: 33, maxMessageBytes: 4000 });
  assert.equal(records[0]!.fields.k8sSourcePodName, 'ä'.repeat(16));
  assert.equal(records[0]!.fields.interfaceName, 'x'.repeat(33));
  assert.equal(records[0]!.fields.k8sSourceLabels, `app=${'ä'.repeat(14)}`);
  assert.equal(encoder.stats.stringsTruncated, 3);
});

test('mixed ASCII and non-ASCII strings and long label lists round-trip', () => {
  const labels = Array.from({ length: 40 }, (_, i) => [`key${i}`, `välue-${i}`] as const);
  const { records } = roundTrip([exportRecord({ clusterName: 'prod-東京', source: podEnd('web-1', { labels }) })], { maxMessageBytes: 4000, maxStringBytes: 2000 });
  assert.equal(records[0]!.fields.k8sClusterName, 'prod-東京');
  assert.equal(records[0]!.fields.k8sSourceLabels, labels.map(([k, v]) => `${k}=${v}`).join(','));
});

test('many records are split into messages that never exceed maxMessageBytes, each filled', () => {
  const input = Array.from({ length: 1000 }, (_, i) => exportRecord({}, i % 2 ? { observationPointId: i } : { ...IPV6_FLOW, observationPointId: i }));
  // The size UDP export uses.
  const limit = DEFAULT_UDP_MAX_MESSAGE_BYTES;
  const { records, messages, encoder } = roundTrip(input, { maxMessageBytes: limit });
  assert.ok(messages.length > 100);
  for (const m of messages) assert.ok(m.length <= limit, `message of ${m.length} bytes`);
  // Filled: no message but the last had room for one more record (and a set header).
  const largestRecord = Math.max(...input.slice(0, 2).map((r) => roundTrip([r]).messages[0]!.length - 16 - 4));
  for (const m of messages.slice(0, -1)) assert.ok(m.length + 4 + largestRecord > limit, `message of ${m.length} bytes had room for another record of up to ${largestRecord}`);
  assert.deepEqual(records.map((r) => r.fields.observationPointId), input.map((r) => r.flow.observationPointId));
  assert.equal(encoder.stats.flowRecords, 1000);
});

test('a record that alone does not fit a message is dropped and counted, the others go out', () => {
  const big = exportRecord({ source: podEnd('x'.repeat(500), { workloadName: 'y'.repeat(500), labels: [['k', 'v'.repeat(500)]] }) });
  const { records, encoder } = roundTrip([exportRecord(), big, exportRecord()], { maxMessageBytes: 1000 });
  assert.equal(records.length, 2);
  assert.equal(encoder.stats.recordsTooLarge, 1);
  assert.equal(encoder.stats.flowRecords, 2);
});

test('the sequence number counts the data records sent before each message', () => {
  // Messages of 5 of these records at most, so 10 records span messages.
  const { encoder, session } = pair({ maxMessageBytes: 1472 });
  const seen: number[] = [];
  for (const batch of [3, 0, 10, 1]) {
    for (const m of encoder.encode(Array.from({ length: batch }, () => exportRecord()))) {
      const d = session.decodeMessage(m);
      seen.push(d.sequenceNumber);
    }
  }
  let expected = 0;
  const counts = [3, 5, 5, 1];
  assert.deepEqual(seen, counts.map((c) => ((expected += c), expected - c)));
  assert.equal(session.stats.sequenceMismatches, 0);
  assert.equal(encoder.sequenceNumber, 14);
});

test('messages carry version 10, the domain and the export time in seconds from the clock', () => {
  const { messages } = roundTrip([exportRecord()]);
  const v = new DataView(messages[0]!.buffer, messages[0]!.byteOffset, messages[0]!.byteLength);
  assert.equal(v.getUint16(0), 10);
  assert.equal(v.getUint16(2), messages[0]!.length);
  assert.equal(v.getUint32(4), Math.floor(NOW / 1000));
  assert.equal(v.getUint32(12), 9);
});

test('returned messages are copies that later encodes do not overwrite', () => {
  const { encoder } = pair();
  const first = encoder.encode([exportRecord()])[0]!;
  const copy = Uint8Array.from(first);
  encoder.encode([exportRecord({ clusterName: 'other' }, IPV6_FLOW)]);
  assert.deepEqual(first, copy);
});

test('templates are announced with ids from 256 and the same bytes every time; the type information template comes with its records', () => {
  const { encoder, session } = pair();
  // 261 on: IPv4 and IPv6 flows with each set of features a record can carry
  // (one application feature at most, TCP with any).
  const sets = ['dns', 'tcp', 'dns + tcp', 'tls', 'tcp + tls', 'quic', 'tcp + quic', 'http', 'tcp + http'];
  const withFeatures = sets.flatMap((_, i) => [261 + 2 * i, 262 + 2 * i]);
  assert.deepEqual(session.templateIds(9), [256, 257, 258, 259, ...withFeatures]);
  assert.deepEqual(encoder.templates.filter((t) => t.id >= 261).map((t) => t.name), sets.flatMap((f) => [`FLOW_IPV4 + ${f}`, `FLOW_IPV6 + ${f}`]));
  for (const m of encoder.typeInformationMessages()) assert.equal(session.decodeMessage(m).status, 'ok');
  assert.deepEqual(session.templateIds(9).sort(), [256, 257, 258, 259, 260, ...withFeatures]);
  const a = encoder.templateMessages();
  const b = encoder.templateMessages();
  assert.deepEqual(a.map((m) => m.subarray(16)), b.map((m) => m.subarray(16)));
  assert.ok(a.every((m) => m.length <= encoder.maxMessageBytes));
});

test('the reliability statistics message carries RFC 7011 §4.3 and §4.1 records', () => {
  const { encoder, session } = pair();
  session.decodeMessage(encoder.encode([exportRecord(), exportRecord()])[0]!);
  const { messages, octets } = encoder.stats;
  const d = session.decodeMessage(encoder.reliabilityStatsMessage({
    exportingProcessId: 77,
    notSentFlowTotalCount: 5,
    notSentPacketTotalCount: 50,
    notSentOctetTotalCount: 5000,
    firstNotSentMilliseconds: 1000,
    lastNotSentMilliseconds: 2000,
  }));
  assert.equal(d.status, 'ok');
  assert.equal(d.sequenceNumber, 2);
  assert.deepEqual(d.records.map((r) => [r.templateId, r.options, r.fields]), [
    [258, true, {
      exportingProcessId: 77,
      notSentFlowTotalCount: 5,
      notSentPacketTotalCount: 50,
      notSentOctetTotalCount: 5000,
      observationTimeMilliseconds: 1000,
      'observationTimeMilliseconds#2': 2000,
    }],
    [259, true, { observationDomainId: 9, exportedMessageTotalCount: messages, exportedFlowRecordTotalCount: 2, exportedOctetTotalCount: octets }],
  ]);
  assert.equal(encoder.sequenceNumber, 4, 'options records are data records too');
});

test('type information records name every enterprise element for a collector with another PEN', () => {
  const encoder = new IpfixEncoder({ observationDomainId: 1, enterpriseNumber: 4242, clock: () => NOW });
  const session = new IpfixSession(); // knows only PEN 32473
  for (const m of [...encoder.templateMessages(), ...encoder.typeInformationMessages()]) assert.equal(session.decodeMessage(m).status, 'ok');
  const [m] = encoder.encode([exportRecord()]);
  const fields = session.decodeMessage(m!).records[0]!.fields;
  assert.equal(fields.k8sSourcePodName, 'frontend-6d8f9c7b5-x2k4q');
  assert.equal(fields.k8sClusterName, 'test-cluster');
});

test('invalid encoder options are configuration errors', () => {
  for (const bad of [{ observationDomainId: -1 }, { observationDomainId: 1, maxMessageBytes: 100 }, { observationDomainId: 1, maxMessageBytes: 70000 }, { observationDomainId: 1, maxStringBytes: 0 }]) {
    assert.throws(() => new IpfixEncoder(bad), { code: 'PODFLOW_ERR_IPFIX_CONFIG' });
  }
});

test('a shared identity is encoded once and gives the same bytes in every record', () => {
  const source = Object.freeze(podEnd('api-7d9c8b6f5-q2w3e'));
  const { records, messages } = roundTrip([exportRecord({ source, destination: source }), exportRecord({ source }), exportRecord({ source }, IPV6_FLOW)]);
  assert.equal(records.length, 3);
  for (const r of records) {
    assert.equal(r.fields.k8sSourcePodName, 'api-7d9c8b6f5-q2w3e');
    assert.equal(r.fields.k8sSourceLabels, 'app=api,tier=web');
  }
  assert.equal(records[0]!.fields.k8sDestinationPodName, 'api-7d9c8b6f5-q2w3e');
  assert.equal(records[1]!.fields.k8sDestinationEndpointType, 'service');
  assert.equal(messages.length, 1);
});

test('an unfrozen identity whose field was reassigned after export is encoded again', () => {
  const { encoder, session } = pair();
  const source = podEnd('web-1');
  const decode = (m: Uint8Array) => session.decodeMessage(m).records[0]!.fields;
  assert.equal(decode(encoder.encode([exportRecord({ source })])[0]!).k8sSourcePodName, 'web-1');
  source.podName = 'web-2';
  source.labels = [['app', 'web2']];
  const f = decode(encoder.encode([exportRecord({ source })])[0]!);
  assert.equal(f.k8sSourcePodName, 'web-2');
  assert.equal(f.k8sSourceLabels, 'app=web2');
});

test('interface and cluster names that change between records are each written', () => {
  const input = ['eth0', 'eth1', 'eth1', 'lo'].map((interfaceName, i) => exportRecord({ interfaceName, clusterName: `c${i >> 1}` }));
  const { records } = roundTrip(input);
  assert.deepEqual(records.map((r) => [r.fields.interfaceName, r.fields.k8sClusterName]), [['eth0', 'c0'], ['eth1', 'c0'], ['eth1', 'c1'], ['lo', 'c1']]);
});

test('a cut string of a cached identity is counted in every record that carries it', () => {
  const source = Object.freeze(podEnd('p'.repeat(40)));
  const { records, encoder } = roundTrip([exportRecord({ source }), exportRecord({ source })], { maxStringBytes: 33 });
  assert.deepEqual(records.map((r) => r.fields.k8sSourcePodName), ['p'.repeat(33), 'p'.repeat(33)]);
  // Per record: pod name, workload name (40 bytes), uid (36) and labels (44), as the encoder counted before caching.
  assert.equal(encoder.stats.stringsTruncated, 8);
});

test('messages kept across many encodes stay intact and each is a whole message at its own offset', () => {
  const { encoder, session } = pair();
  const kept: { message: Uint8Array; copy: Uint8Array }[] = [];
  for (let batch = 0; batch < 200; batch++) {
    const input = Array.from({ length: 7 }, (_, i) => exportRecord({}, i % 3 ? { observationPointId: batch * 7 + i } : { ...IPV6_FLOW, observationPointId: batch * 7 + i }));
    for (const message of encoder.encode(input)) kept.push({ message, copy: Uint8Array.from(message) });
  }
  assert.ok(kept.reduce((n, k) => n + k.message.length, 0) > 4 * 64 * 1024, 'more than a few slabs');
  const ids: number[] = [];
  for (const { message, copy } of kept) {
    assert.deepEqual(message, copy);
    const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
    assert.equal(v.getUint16(0), 10);
    assert.equal(v.getUint16(2), message.length);
    const d = session.decodeMessage(message);
    assert.equal(d.status, 'ok');
    for (const r of d.records) ids.push(r.fields.observationPointId as number);
  }
  assert.deepEqual(ids, Array.from({ length: 1400 }, (_, i) => i));
  assert.equal(session.stats.sequenceMismatches, 0);
});
