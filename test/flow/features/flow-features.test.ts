// The per-flow features through the real decode → meter path: fields reach
// the record, state is dropped when a flow ends for any reason, and a meter
// with features counts exactly what one without them counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { DEFAULT_FEATURES, FlowFeatures } from '../../../flow/features/flow-features.ts';
import type { FlowRecord } from '../../../flow/types.ts';
import { DEFAULT_MAX_FLOWS } from '../../../flow/meter.ts';
import { corpusDir, replayCorpusFile } from '../../helpers/corpus.ts';

const NDPI = 'nDPI/tests/cfgs/default/pcap/';
const DNS_CAPTURES = [`${NDPI}dns.pcap`, `${NDPI}dns_fragmented.pcap`, `${NDPI}bad-dns-traffic.pcap`, `${NDPI}dns-tunnel-iodine.pcap`, 'ipfixprobe/tests/functional/inputs/dns.pcap'];

const withoutFeatures = (r: FlowRecord) => ({ ...r, dns: undefined, tcp: undefined });

test('a meter with features makes the same flows as one without, plus their fields; no state is left after the flush', () => {
  for (const capture of DNS_CAPTURES) {
    const features = new FlowFeatures(DEFAULT_FEATURES, DEFAULT_MAX_FLOWS);
    const on = replayCorpusFile(capture, { features });
    const off = replayCorpusFile(capture);
    assert.deepEqual(on.flows.map(withoutFeatures), off.flows.map(withoutFeatures), capture);
    assert.ok(on.flows.some((f) => f.dns !== undefined), capture);
    assert.ok(on.flows.every((f) => f.dns === undefined || f.sourceTransportPort === 53 || f.destinationTransportPort === 53), capture);
    assert.deepEqual(features.openStates, { dns: 0, tls: 0, quic: 0, http: 0 }, capture);
    assert.equal(features.stats.dnsFlows, on.flows.filter((f) => f.dns !== undefined).length, capture);
  }
});

test('DNS over TCP through the meter: each connection carries its transaction, timed as tshark times it (dns.time)', () => {
  const capture = `${NDPI}dns_fragmented.pcap`;
  const out = spawnSync('tshark', ['-r', corpusDir + capture, '-Y', 'tcp.port == 53 && dns.flags.response == 1', '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.dstport', '-e', 'dns.id', '-e', 'dns.qry.name', '-e', 'dns.flags.rcode', '-e', 'dns.count.answers', '-e', 'dns.time'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const answers = out.stdout.trim().split('\n').map((line) => line.split('\t'));
  assert.equal(answers.length, 2);
  const { flows } = replayCorpusFile(capture, { features: new FlowFeatures(DEFAULT_FEATURES, DEFAULT_MAX_FLOWS) });
  for (const [, clientPort, id, name, rcode, count, time] of answers) {
    const flow = flows.find((f) => f.protocolIdentifier === 6 && (f.sourceTransportPort === Number(clientPort) || f.destinationTransportPort === Number(clientPort)));
    assert.ok(flow?.dns, `no DNS on the TCP flow of port ${clientPort}`);
    assert.deepEqual(
      { id: flow.dns.id, name: flow.dns.queryName, rcode: flow.dns.response?.rcode, answers: flow.dns.response?.answerCount, latency: flow.dns.latencyMicros },
      { id: Number(id), name, rcode: Number(rcode), answers: Number(count), latency: Math.round(Number(time) * 1e6) },
    );
  }
});

test('a flow evicted from a full table takes its DNS fields along and its state goes; state never outnumbers the table', () => {
  const features = new FlowFeatures(DEFAULT_FEATURES, DEFAULT_MAX_FLOWS);
  const capture = 'ipfixprobe/tests/functional/inputs/dns.pcap';
  const full = replayCorpusFile(capture, { features });
  const bounded = new FlowFeatures(DEFAULT_FEATURES, 2);
  let mostOpen = 0;
  const small = replayCorpusFile(capture, {
    maxFlows: 2,
    features: {
      packet: (flow, direction, p) => {
        bounded.packet(flow, direction, p);
        mostOpen = Math.max(mostOpen, bounded.openStates.dns);
      },
      end: (flow, record) => bounded.end(flow, record),
    },
  });
  assert.ok(small.meter.stats.evictions > 0);
  assert.ok(mostOpen <= 2, `${mostOpen} DNS states open with a table of 2`);
  assert.deepEqual(bounded.openStates, { dns: 0, tls: 0, quic: 0, http: 0 });
  const names = (flows: FlowRecord[]) => flows.flatMap((f) => (f.dns ? [f.dns.queryName] : [])).sort();
  assert.deepEqual(names(small.flows), names(full.flows));
});
