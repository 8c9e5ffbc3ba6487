// The collector view's TCP columns, from records as the collector decodes them
// (encoder → decoder, the path `podflow collect` takes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConversationTable, flowLine, flowName } from '../../agent/collector-view.ts';
import type { CollectedRecord } from '../../ipfix/collector.ts';
import { IpfixSession } from '../../ipfix/decoder.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { DNS_FLOW, exportRecord, TCP_FLOW } from '../helpers/ipfix-records.ts';

/** The records as `podflow collect` gets them. */
function collected(...flows: Parameters<typeof exportRecord>[1][]): CollectedRecord[] {
  const encoder = new IpfixEncoder({ observationDomainId: 1 });
  const session = new IpfixSession();
  for (const m of encoder.templateMessages()) session.decodeMessage(m);
  return encoder
    .encode(flows.map((f) => exportRecord({}, f)))
    .flatMap((m) => session.decodeMessage(m).records)
    .map((r) => ({ ...r, session: 'test', observationDomainId: 1 }));
}

// Colours and table borders away: the text a person reads.
const plain = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '');

test('a TCP flow line shows its handshake round trip and its retransmissions each way', () => {
  const [tcp, plainFlow] = collected(TCP_FLOW, {});
  assert.match(plain(flowLine(tcp!)), /rtt 20\.5 ms {2}retrans 7 \/ 0$/);
  // A flow the TCP feature did not read (or an exporter without it): no such columns.
  assert.doesNotMatch(plain(flowLine(plainFlow!)), /rtt|retrans/);
  // A handshake not seen: retransmissions, no round trip.
  const [midway] = collected({ tcp: { ...TCP_FLOW.tcp!, synToSynAckMicros: undefined } });
  assert.match(plain(flowLine(midway!)), /bytes [^ ]+ [^ ]+ \/ [^ ]+ [^ ]+ {2}retrans 7 \/ 0$/);
});

test('the conversation table sums retransmissions over the flows, with their share, and shows the last round trip', () => {
  const table = new ConversationTable();
  for (const r of collected(TCP_FLOW, { tcp: { ...TCP_FLOW.tcp!, synToSynAckMicros: 1_200, synAckToAckMicros: 30 } })) table.add(r);
  const text = plain(table.render(5));
  assert.match(text, /│ rtt +│ retrans +│/);
  // 14 of 2 × 702 segments; the last flow's 1.23 ms.
  assert.match(text, /│ 1\.23 ms +│ 14 \(1\.0%\) +│/);
});

test('a flow line and the conversation table name what the flow asked for: a DNS name with its answer code, a TLS or QUIC server name, an HTTP host and target with the status', () => {
  const tls = { serverName: 'shop.example', clientAlpn: 'h2', alpn: 'h2', version: 0x0304, ja3: '', ja4: '' };
  const http = { method: 'GET', host: 'cart', target: '/api/items', userAgent: 'curl/8', statusCode: 503 };
  const quic = { version: 1, serverName: 'video.example', clientAlpn: 'h3' };
  const unanswered = { ...DNS_FLOW.dns!, response: undefined, latencyMicros: undefined };
  const [nxdomain, noAnswer, named, get, initial] = collected(DNS_FLOW, { ...DNS_FLOW, dns: unanswered }, { tls }, { http }, { protocolIdentifier: 17, tcpControlBits: 0, reverseTcpControlBits: 0, quic });
  assert.deepEqual([nxdomain, noAnswer, named, get, initial].map((r) => flowName(r!.fields)), [
    'cart.shop.svc.cluster.local NXDOMAIN',
    'cart.shop.svc.cluster.local no answer',
    'shop.example',
    'cart/api/items 503',
    'video.example',
  ]);
  assert.match(plain(flowLine(named!)), / TCP {2}shop\.example {2}packets /);
  const table = new ConversationTable();
  table.add(nxdomain!);
  assert.match(plain(table.render(5)), /│ cart\.shop\.svc\.cluster\.local NXDOMAIN +│/);
});
