// featureElements: ipfixprobe. The corpus captures replayed through the meter
// and exported with CESNET ipfixprobe's elements, read back by libfixbuf's
// ipfixDump (names from the RFC 5610 type records in the file alone), equal
// ipfixprobe's own reference outputs of the same captures, field by field,
// for every field podflow sends in its elements.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { corpusDir, readIpfixprobeOutput, referenceJa4 } from '../helpers/corpus.ts';
import { DNS_FLOW, exportRecord } from '../helpers/ipfix-records.ts';

const cli = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
const inputs = `${corpusDir}ipfixprobe/tests/functional/inputs/`;

/** The flow records of `capture` exported with ipfixprobe's elements, as ipfixDump prints them: element name → value text. */
function exported(capture: string, feature: string): Array<Record<string, string>> {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-ipfixprobe-'));
  try {
    const file = join(dir, 'out.ipfix');
    const run = spawnSync(process.execPath, [cli, 'replay', inputs + capture, '--features', feature, '--feature-elements', 'ipfixprobe', '--output', `file:${file}`], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const dump = spawnSync('ipfixDump', ['--rfc5610', '--hexdump=256', '--in', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(dump.status, 0, dump.stderr);
    assert.doesNotMatch(dump.stdout, /_alienInformationElement/, 'every element named from the type records');
    return dump.stdout
      .split('--- data record')
      .slice(1)
      .map((record) => Object.fromEntries([...record.matchAll(/^\t\([0-9/]+\)\s+(\S+) : (?:\(len: \d+\) ?)?(.*)$/gm)].map((m) => [m[1]!, m[2]!.replace(/^0x/, '')])))
      .filter((fields) => fields.sourceTransportPort !== undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The exported record of a reference row's flow, either direction. */
function recordOf(records: Array<Record<string, string>>, row: Record<string, string>): Record<string, string> | undefined {
  return records.find((r) => {
    // ipfixDump writes IPv6 groups with their leading zeros.
    const source = r.sourceIPv4Address ?? r.sourceIPv6Address?.replace(/\b0+(?=[0-9a-f])/g, '');
    return (
      (source === row.SRC_IP && r.sourceTransportPort === row.SRC_PORT && r.destinationTransportPort === row.DST_PORT) ||
      (source === row.DST_IP && r.sourceTransportPort === row.DST_PORT && r.destinationTransportPort === row.SRC_PORT)
    );
  });
}

function compare(rows: Array<Record<string, string>>, records: Array<Record<string, string>>, pairs: Array<[ipfixprobe: string, podflow: string]>, want = (row: Record<string, string>, column: string) => row[column]!): string[] {
  const differences: string[] = [];
  for (const row of rows) {
    const r = recordOf(records, row);
    const got = Object.fromEntries(pairs.map(([, element]) => [element, r?.[element]]));
    const expected = Object.fromEntries(pairs.map(([column, element]) => [element, want(row, column)]));
    if (JSON.stringify(got) !== JSON.stringify(expected)) differences.push(`${row.SRC_IP}/${row.SRC_PORT}: podflow ${JSON.stringify(got)} ipfixprobe ${JSON.stringify(expected)}`);
  }
  return differences;
}

test("dns: ipfixprobe's DNS elements as ipfixDump reads them equal ipfixprobe's output (the query's fields, and the response's)", () => {
  const records = exported('dns.pcap', 'dns');
  const rows = readIpfixprobeOutput('dns');
  // ipfixprobe's DNS plugin makes a row per message; podflow's record is the flow's transaction: the query's fields from the query, the answer's from the response.
  const queries = rows.filter((r) => r.DST_PORT === '53');
  const responses = rows.filter((r) => r.SRC_PORT === '53');
  assert.equal(queries.length, 8);
  assert.deepEqual(compare(queries, records, [['DNS_ID', 'ipfixprobeDnsId'], ['DNS_NAME', 'ipfixprobeDnsName'], ['DNS_QTYPE', 'ipfixprobeDnsQtype'], ['DNS_CLASS', 'ipfixprobeDnsClass']]), []);
  assert.deepEqual(
    compare(responses, records, [['DNS_RCODE', 'ipfixprobeDnsRcode'], ['DNS_ANSWERS', 'ipfixprobeDnsAnswers'], ['DNS_RR_TTL', 'ipfixprobeDnsRrTtl'], ['DNS_RLENGTH', 'ipfixprobeDnsRlength'], ['DNS_RDATA', 'ipfixprobeDnsRdata']]),
    [],
  );
});

test("tls: ipfixprobe's TLS elements as ipfixDump reads them equal ipfixprobe's output (JA4 with its extension count without GREASE)", () => {
  const records = exported('tls.pcap', 'tls');
  const rows = readIpfixprobeOutput('tls');
  assert.equal(rows.length, 28);
  const pairs: Array<[string, string]> = [['TLS_SNI', 'ipfixprobeTlsSni'], ['TLS_ALPN', 'ipfixprobeTlsAlpn'], ['TLS_VERSION', 'ipfixprobeTlsVersion'], ['TLS_JA3', 'ipfixprobeTlsJa3'], ['TLS_JA4', 'ipfixprobeTlsJa4']];
  assert.deepEqual(compare(rows, records, pairs, (row, column) => (column === 'TLS_JA4' ? referenceJa4(row) : row[column]!)), []);
});

test("http: ipfixprobe's HTTP elements as ipfixDump reads them equal ipfixprobe's output", () => {
  const records = exported('http.pcap', 'http');
  const rows = readIpfixprobeOutput('http');
  assert.equal(rows.length, 9);
  const pairs: Array<[string, string]> = [['HTTP_REQUEST_METHOD', 'ipfixprobeHttpMethod'], ['HTTP_REQUEST_HOST', 'ipfixprobeHttpDomain'], ['HTTP_REQUEST_URL', 'ipfixprobeHttpUri'], ['HTTP_REQUEST_AGENT', 'ipfixprobeHttpUseragent'], ['HTTP_RESPONSE_STATUS_CODE', 'ipfixprobeHttpStatus']];
  assert.deepEqual(compare(rows, records, pairs), []);
});

test("basicplus: the TCP feature in ipfixprobe's elements, as ipfixDump reads them, equals ipfixprobe's output (TTL, window, options, MSS, SYN size)", () => {
  const records = exported('http.pcap', 'tcp');
  const rows = readIpfixprobeOutput('basicplus');
  assert.equal(rows.length, 9);
  const pairs: Array<[string, string]> = [
    ['IP_TTL', 'ipTTL'], ['IP_TTL_REV', 'reverseIpTTL'], ['TCP_WIN', 'tcpWindowSize'], ['TCP_WIN_REV', 'reverseTcpWindowSize'],
    ['TCP_OPT', 'tcpOptions'], ['TCP_OPT_REV', 'reverseTcpOptions'], ['TCP_MSS', 'ipfixprobeTcpMss'], ['TCP_MSS_REV', 'ipfixprobeTcpMssRev'], ['TCP_SYN_SIZE', 'ipfixprobeTcpSynSize'],
  ];
  assert.deepEqual(compare(rows, records, pairs), []);
  // podflow's own TCP counts ride along (ipfixprobe has no elements for them).
  assert.ok(records.every((r) => r.tcpRetransmittedSegmentCount !== undefined && r.reverseTcpSegmentCount !== undefined));
});

test("quic: ipfixprobe's QUIC elements as ipfixDump reads them equal ipfixprobe's output", () => {
  const records = exported('quic_initial-sample.pcap', 'quic');
  const rows = readIpfixprobeOutput('quic');
  assert.deepEqual(compare(rows, records, [['QUIC_SNI', 'ipfixprobeQuicSni'], ['QUIC_VERSION', 'ipfixprobeQuicVersion']]), []);
});

test('the ipfixprobe set keeps the templates and the flow and identity fields; only the feature fields change elements', () => {
  const own = new IpfixEncoder({ observationDomainId: 1 });
  const theirs = new IpfixEncoder({ observationDomainId: 1, featureElements: 'ipfixprobe' });
  assert.deepEqual(theirs.templates.map((t) => t.id), own.templates.map((t) => t.id));
  const dnsTemplate = (e: IpfixEncoder) => e.templates.find((t) => t.name === 'FLOW_IPV4 + dns')!.fields.map((f) => `${f.element.enterprise}/${f.element.id}`);
  assert.deepEqual(dnsTemplate(theirs).slice(0, 43), dnsTemplate(own).slice(0, 43));
  assert.deepEqual(dnsTemplate(theirs).slice(43), ['8057/14', '8057/1', '8057/3', '8057/4', '8057/5', '8057/6', '8057/10', '8057/2', '8057/7']);
  // An unanswered query: ipfixprobe's RCODE is 0 then, as in its own records.
  assert.equal(theirs.encode([exportRecord({}, { ...DNS_FLOW, dns: { ...DNS_FLOW.dns!, response: undefined } })]).length, 1);
});
