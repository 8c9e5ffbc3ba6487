// A flow's DNS transactions: query-to-response latency against tshark's
// (dns.time) on the corpus, response codes counted, the first transaction
// kept, DNS over TCP framing, and the bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as dnsPacket from 'dns-packet';
import { DnsFlow, emptyDnsStats, MAX_LATENCIES, MAX_PENDING } from '../../../flow/features/dns-flow.ts';
import { corpusDir } from '../../helpers/corpus.ts';
import { biflows } from '../../helpers/biflows.ts';
import { tsharkPayloads } from '../../helpers/tshark-payloads.ts';

test('times each answered query as tshark does (dns.time), and keeps the first transaction', () => {
  const path = `${corpusDir}ipfixprobe/tests/functional/inputs/dns.pcap`;
  const out = spawnSync('tshark', ['-r', path, '-Y', 'dns.flags.response == 1', '-T', 'fields', '-e', 'dns.id', '-e', 'dns.time'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const tsharkMicros = new Map(out.stdout.trim().split('\n').map((l) => [Number(l.split('\t')[0]), Math.round(Number(l.split('\t')[1]) * 1e6)]));
  assert.equal(tsharkMicros.size, 8);
  const stats = emptyDnsStats();
  for (const flow of biflows(tsharkPayloads(path))) {
    const dns = new DnsFlow(stats);
    for (const { packet } of flow.packets) dns.message(packet.payload, 0, packet.payload.length, packet.timeMicros);
    const f = dns.fields()!;
    assert.equal(f.latencyMicros, tsharkMicros.get(f.id), flow.key);
    assert.deepEqual(f.latenciesMicros, [f.latencyMicros]);
    assert.equal(f.queries, 1);
    assert.equal(f.responses, 1);
    assert.equal(f.response?.rcode, 0);
    assert.equal(f.responseCodes[0], 1);
  }
  assert.deepEqual(stats, { queries: 8, responses: 8, truncated: 0, malformed: 0, unmatchedResponses: 0, pendingOverflow: 0, latenciesNotKept: 0 });
});

function query(id: number, name: string, type: dnsPacket.RecordType = 'A'): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

function response(id: number, name: string, rcode: number, answers: dnsPacket.Answer[] = []): Buffer {
  return dnsPacket.encode({ type: 'response', id, flags: rcode, questions: [{ type: 'A', name }], answers });
}

test('a resolver search: NXDOMAIN then NOERROR on one flow, the A and AAAA queries in parallel', () => {
  const stats = emptyDnsStats();
  const dns = new DnsFlow(stats);
  const send = (bytes: Buffer, t: number) => dns.message(bytes, 0, bytes.length, t);
  send(query(1, 'web.ns1.svc.cluster.local'), 1_000);
  send(query(2, 'web.ns1.svc.cluster.local', 'AAAA'), 1_010);
  send(response(2, 'web.ns1.svc.cluster.local', 3), 1_300);
  send(response(1, 'web.ns1.svc.cluster.local', 3), 1_500);
  send(query(3, 'web.svc.cluster.local'), 2_000);
  send(response(3, 'web.svc.cluster.local', 0, [{ type: 'A', name: 'web.svc.cluster.local', ttl: 5, data: '198.18.0.9' }]), 2_250);
  const f = dns.fields()!;
  assert.deepEqual(
    { id: f.id, name: f.queryName, type: f.queryType, response: f.response, latency: f.latencyMicros },
    { id: 1, name: 'web.ns1.svc.cluster.local', type: 1, response: { rcode: 3, answerCount: 0, answerType: 0, answerTtl: 0, answerData: '' }, latency: 500 },
  );
  assert.deepEqual(f.latenciesMicros, [290, 500, 250]);
  assert.equal(f.responseCodes[3], 2);
  assert.equal(f.responseCodes[0], 1);
  assert.deepEqual([f.queries, f.responses], [3, 3]);
});

test('a response without its query is counted and still names the flow', () => {
  const stats = emptyDnsStats();
  const dns = new DnsFlow(stats);
  const bytes = response(9, 'late.example', 2);
  dns.message(bytes, 0, bytes.length, 5);
  const f = dns.fields()!;
  assert.deepEqual({ name: f.queryName, rcode: f.response?.rcode, latency: f.latencyMicros }, { name: 'late.example', rcode: 2, latency: undefined });
  assert.equal(stats.unmatchedResponses, 1);
});

test('DNS over TCP: several messages in a segment, a message split over two, retransmissions', () => {
  const stats = emptyDnsStats();
  const dns = new DnsFlow(stats);
  const framed = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);
  const queries = Buffer.concat([framed(query(1, 'a.example')), framed(query(2, 'b.example'))]);
  dns.segment(true, 1000, queries, 0, queries.length, 10);
  dns.segment(true, 1000, queries, 0, queries.length, 11); // a retransmission: not counted again
  const answers = Buffer.concat([framed(response(2, 'b.example', 0)), framed(response(1, 'a.example', 5))]);
  const cut = 20;
  dns.segment(false, 7000, answers, 0, cut, 40); // the first response, cut inside its question
  dns.segment(false, 7000 + cut, answers, cut, answers.length, 41); // its rest (skipped), then the second whole
  const f = dns.fields()!;
  assert.deepEqual([f.queries, f.responses], [2, 2]);
  assert.deepEqual(f.latenciesMicros, [30, 31]);
  assert.equal(f.response?.rcode, 5);
  assert.equal(stats.truncated, 1);
});

test('bounds: pending queries and latencies kept per flow', () => {
  const stats = emptyDnsStats();
  const dns = new DnsFlow(stats);
  for (let id = 0; id < MAX_PENDING + 3; id++) {
    const q = query(id, 'x.example');
    dns.message(q, 0, q.length, id);
  }
  assert.equal(stats.pendingOverflow, 3);
  const lost = response(0, 'x.example', 0);
  dns.message(lost, 0, lost.length, 100);
  assert.equal(stats.unmatchedResponses, 1);

  const busy = new DnsFlow(stats);
  for (let id = 0; id < MAX_LATENCIES + 5; id++) {
    const q = query(id, 'y.example');
    const r = response(id, 'y.example', 0);
    busy.message(q, 0, q.length, id * 10);
    busy.message(r, 0, r.length, id * 10 + 1);
  }
  assert.equal(busy.fields()!.latenciesMicros.length, MAX_LATENCIES);
  assert.equal(stats.latenciesNotKept, 5);
  const bad = Buffer.from([1, 2, 3]);
  busy.message(bad, 0, bad.length, 0);
  assert.equal(stats.malformed, 1);
});
