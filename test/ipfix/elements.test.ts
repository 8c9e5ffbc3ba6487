import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderElements } from '../../agent/commands/elements.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { InformationElementRegistry } from '../../ipfix/registry.ts';
import { DNS_FLOW, exportRecord, IPV6_FLOW, TCP_FLOW } from '../helpers/ipfix-records.ts';

const ENTERPRISE_ELEMENTS = new InformationElementRegistry().enterpriseElements.length;

const CLI = new URL('../../agent/cli.ts', import.meta.url).pathname;

function podflow(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

test('docs/ipfix-elements.md is the markdown output of podflow elements', () => {
  const doc = readFileSync(new URL('../../docs/ipfix-elements.md', import.meta.url), 'utf8');
  assert.equal(doc, renderElements('markdown'), 'regenerate: podflow elements --format markdown > docs/ipfix-elements.md');
});

test('the CLI prints a format with the given PEN', () => {
  const r = podflow('elements', '--format', 'iespec', '--pen', '4242');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, renderElements('iespec', 4242));
  assert.match(r.stdout, /^k8sSourcePodName\(4242\/12\)<string>\[65535\]$/m);
});

test('nfacctd output is one aggregate_primitives line per element', () => {
  const lines = renderElements('nfacctd').trimEnd().split('\n');
  assert.equal(lines.length, ENTERPRISE_ELEMENTS);
  assert.ok(lines.includes('name=k8s_destination_pod_name\tfield_type=32473:62\tlen=vlen\tsemantics=str'));
  assert.ok(lines.includes('name=dns_response_code\tfield_type=32473:104\tlen=1\tsemantics=u_int'));
});

test('the ipfixDump XML names each element with its cert:enterpriseId', () => {
  const xml = renderElements('ipfixdump-xml', 4242);
  assert.match(xml, /<name>k8sClusterName<\/name>\s*<dataType>string<\/dataType>\s*<dataTypeSemantics>default<\/dataTypeSemantics>\s*<cert:enterpriseId>4242<\/cert:enterpriseId>\s*<elementId>50<\/elementId>/);
  assert.equal(xml.match(/<record>/g)?.length, ENTERPRISE_ELEMENTS);
});

test('usage errors exit 2 with the usage text', () => {
  for (const args of [['--format', 'csv'], [], ['--format', 'iespec', '--pen', 'x'], ['--format', 'iespec', '--pen', '29305'], ['--bogus']]) {
    const r = podflow('elements', ...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /PODFLOW_ERR_CLI_USAGE/);
  }
});

// ./run installs libfixbuf-tools: a missing ipfixDump fails this test (ENOENT), never skips it.
test('libfixbuf ipfixDump reads our messages and names the enterprise elements', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-ipfix-'));
  try {
    const e = new IpfixEncoder({ observationDomainId: 5, clock: () => 1_750_000_000_000 });
    const messages = [...e.templateMessages(), ...e.typeInformationMessages(), ...e.encode([exportRecord(), exportRecord({}, IPV6_FLOW), exportRecord({}, DNS_FLOW), exportRecord({}, TCP_FLOW)])];
    writeFileSync(join(dir, 'x.ipfix'), Buffer.concat(messages));
    writeFileSync(join(dir, 'e.xml'), renderElements('ipfixdump-xml'));
    const out = execFileSync('ipfixDump', ['--in', join(dir, 'x.ipfix'), '--element-file', join(dir, 'e.xml')], { encoding: 'utf8' });
    assert.match(out, /k8sSourcePodName : \(len: 24\) frontend-6d8f9c7b5-x2k4q/);
    assert.match(out, /reverseOctetDeltaCount : 9120/);
    assert.match(out, /sourceIPv4Address : 198\.18\.0\.10/);
    assert.match(out, /dnsQueryName : \(len: 27\) cart\.shop\.svc\.cluster\.local/);
    assert.match(out, /dnsResponseCode : 3\n/);
    assert.match(out, /dnsLatencyMicroseconds : 1500\n/);
    assert.match(out, /dnsErrorResponseCount : 1\n/);
    // TCP: podflow's elements by the element file, IANA's by libfixbuf's own registry.
    assert.match(out, /tcpSynToSynAckMicroseconds : 20500\n/);
    assert.match(out, /tcpRetransmittedSegmentCount : 7\n/);
    assert.match(out, /reverseTcpResetCount : 1\n/);
    assert.match(out, /tcpMaximumSegmentSize : 1460\n/);
    assert.match(out, /\btcpWindowScale : 7\n/);
    assert.match(out, /reverseTcpWindowScale : 65535\n/);
    assert.match(out, /reverseMinimumTTL : 61\n/);
    // Option kinds 1, 2, 3, 4 and 8 as RFC 5102 numbers them, bit X from the most significant: 0x7880000000000000.
    assert.match(out, /\btcpOptions : 8682940081570316288\n/);
    assert.match(out, /reverseTcpOptions : 2305843009213693952\n/);
    // 4 flows and a type record per enterprise element; templates 256-260 and the feature ones.
    assert.match(out, new RegExp(`File Stats: \\d+ Messages, ${4 + ENTERPRISE_ELEMENTS} Data Records, ${e.templates.length} Template Records`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
