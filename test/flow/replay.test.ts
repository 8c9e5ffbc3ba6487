// `podflow replay` as a user runs it: the real CLI in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIPv6 } from '../../flow/address.ts';
import { corpusDir } from '../helpers/corpus.ts';
import { v6 } from '../helpers/packets.ts';

const cli = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
const inputs = corpusDir + 'ipfixprobe/tests/functional/inputs/';

function replay(...args: string[]) {
  // A bound, so a replay that hangs fails here: spawnSync holds the event loop, and the test timeout with it.
  const run = spawnSync(process.execPath, [cli, 'replay', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

test('prints one JSON object per flow with IANA IPFIX element names', () => {
  const { status, stdout, stderr } = replay(inputs + 'vlan.pcap');
  assert.equal(status, 0, stderr);
  const flows = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(flows.length, 3);
  assert.deepEqual(flows[0], {
    sourceIPv4Address: '192.168.170.8',
    destinationIPv4Address: '192.168.170.20',
    sourceTransportPort: 32795,
    destinationTransportPort: 53,
    protocolIdentifier: 17,
    vlanId: 123,
    packetDeltaCount: 1,
    octetDeltaCount: 56,
    reversePacketDeltaCount: 1,
    reverseOctetDeltaCount: 284,
    tcpControlBits: 0,
    reverseTcpControlBits: 0,
    flowStartMilliseconds: 946712870501,
    flowEndMilliseconds: 946712871333,
    flowEndReason: 4,
    // The DNS feature, on by default; the latency in the file's microseconds (tshark's dns.time: 0.832133 s).
    dnsTransactionId: 63343,
    dnsQueryName: 'google.com',
    dnsQueryType: 15,
    dnsQueryClass: 1,
    dnsResponseCode: 0,
    dnsAnswerCount: 6,
    dnsAnswerType: 15,
    dnsAnswerTtl: 552,
    dnsAnswerData: '40 smtp4.google.com',
    dnsLatencyMicroseconds: 832133,
    dnsQueryCount: 1,
    dnsResponseCount: 1,
    dnsErrorResponseCount: 0,
  });
  assert.equal(flows[1]!.vlanId, undefined, 'untagged flows carry no vlanId');
  assert.match(stderr, /pcapng, 6 packets, 6 metered into 3 flows/);
  assert.match(stderr, /dns: 3 flows, 3 queries, 3 responses\n/);
});

test('--features tls,http prints the TLS and HTTP fields under their element names', () => {
  const tls = replay(inputs + 'tls.pcap', '--features', 'tls,http');
  assert.equal(tls.status, 0, tls.stderr);
  const flow = tls.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((f) => f.sourceTransportPort === 3919)!;
  assert.deepEqual(
    [flow.tlsServerName, flow.tlsClientAlpn, flow.tlsVersion, flow.tlsJa3, flow.tlsJa4],
    ['asecuritysite.com', 'http/1.1,spdy/3.1,h2-14,h2', 0x0303, '9a7b51089c089491dbc4879218db549c', 't12d1612h1_94fc43e2fc61_c9eaec7dbab4'],
  );
  assert.equal(flow.httpRequestHost, undefined, 'one application feature per flow');
  assert.match(tls.stderr, /tls: clientHellos 34, serverHellos 33/);
  const http = replay(inputs + 'http.pcap', '--features', 'http');
  const get = http.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((f) => f.httpRequestMethod === 'GET')!;
  assert.equal(typeof get.httpRequestHost, 'string');
  assert.equal(typeof get.httpStatusCode, 'number');
});

test('--features none prints the flows without feature fields; an unknown feature is a usage error', () => {
  const on = replay(inputs + 'vlan.pcap');
  const off = replay(inputs + 'vlan.pcap', '--features', 'none');
  assert.equal(off.status, 0, off.stderr);
  const strip = (line: string) => Object.fromEntries(Object.entries(JSON.parse(line) as Record<string, unknown>).filter(([key]) => !key.startsWith('dns')));
  assert.deepEqual(off.stdout.trim().split('\n').map((l) => JSON.parse(l)), on.stdout.trim().split('\n').map(strip));
  assert.doesNotMatch(off.stdout, /dns/);
  const bad = replay(inputs + 'vlan.pcap', '--features', 'dns,gopher');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown feature 'gopher'/);
});

test('names IPv6 addresses and ICMP type/code with the IPv6 elements', () => {
  const { status, stdout } = replay(inputs + 'mixed.pcap');
  assert.equal(status, 0);
  const flows = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  const neighbour = flows.find((f) => f.destinationIPv6Address === 'ff02::1' && f.protocolIdentifier === 58);
  assert.ok(neighbour);
  assert.equal(typeof neighbour.icmpTypeCodeIPv6, 'number');
  assert.equal(typeof neighbour.reverseIcmpTypeCodeIPv6, 'number');
  assert.ok(flows.some((f) => typeof f.icmpTypeCodeIPv4 === 'number'));
});

test('reports decode errors by reason in the summary on stderr', () => {
  const { stderr } = replay(inputs + 'mixed.pcap');
  assert.match(stderr, /205 packets, 157 metered into 48 flows/);
  assert.match(stderr, /not metered: notIp 48/);
});

test('splits flows at the idle timeout given on the command line', () => {
  const count = (args: string[]) => replay(...args, inputs + 'mixed.pcap').stdout.trim().split('\n').length;
  assert.ok(count(['--idle-timeout', '1']) > count([]));
  assert.ok(count(['--idle-timeout', '100000', '--active-timeout', '100000']) < count([]));
});

test('fails with exit 1 and a coded error for a missing file or one that is not a capture', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-replay-'));
  try {
    const missing = replay(join(dir, 'nope.pcap'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /PODFLOW_ERR_FLOW_FILE_READ/);
    const text = join(dir, 'text.pcap');
    writeFileSync(text, 'not a capture at all, just some words\n');
    const notCapture = replay(text);
    assert.equal(notCapture.status, 1);
    assert.match(notCapture.stderr, /PODFLOW_ERR_FLOW_NOT_A_CAPTURE/);
    assert.equal(replay(dir).status, 1, 'a directory is not readable as a file');
    // With a collector to export to, the same: the exporter's socket and its
    // resolve retries kept the process alive for ever.
    for (const output of ['udp://127.0.0.1:4739', 'udp://no-such-host.invalid:4739', 'tcp://127.0.0.1:1']) {
      for (const [file, code] of [[join(dir, 'nope.pcap'), 'PODFLOW_ERR_FLOW_FILE_READ'], [text, 'PODFLOW_ERR_FLOW_NOT_A_CAPTURE']] as const) {
        const exported = replay(file, '--output', output);
        assert.equal(exported.status, 1, `${file} to ${output}: ${exported.stderr}`);
        assert.match(exported.stderr, new RegExp(code));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replays a pcapng block larger than its read buffer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-replay-'));
  try {
    const frameBytes = 5 << 20;
    const block = (type: number, body: Buffer) => {
      const length = 12 + body.length;
      const b = Buffer.alloc(length);
      b.writeUInt32LE(type, 0);
      b.writeUInt32LE(length, 4);
      body.copy(b, 8);
      b.writeUInt32LE(length, length - 4);
      return b;
    };
    const shb = Buffer.alloc(16);
    shb.writeUInt32LE(0x1a2b3c4d, 0);
    shb.writeUInt16LE(1, 4);
    shb.writeBigInt64LE(-1n, 8);
    const idb = Buffer.alloc(8);
    idb.writeUInt16LE(1, 0); // Ethernet
    const epb = Buffer.alloc(20 + frameBytes);
    epb.writeUInt32LE(frameBytes, 12);
    epb.writeUInt32LE(frameBytes, 16);
    const path = join(dir, 'jumbo.pcapng');
    writeFileSync(path, Buffer.concat([block(0x0a0d0d0a, shb), block(1, idb), block(6, epb)]));
    const { status, stderr } = replay(path);
    assert.equal(status, 0, stderr);
    assert.match(stderr, /pcapng, 1 packets, 0 metered into 0 flows/);
    assert.match(stderr, /notIp 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rejects bad options with usage and exit 2', () => {
  for (const args of [[], ['--idle-timeout', 'soon', 'x.pcap'], ['--max-flows', '0', 'x.pcap'], ['--bogus', 'x.pcap'], ['a', 'b']]) {
    const { status, stderr } = replay(...args);
    assert.equal(status, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, /PODFLOW_ERR_CLI_USAGE/);
  }
  assert.equal(replay('--help').status, 0);
});

test('writes IPv6 addresses in RFC 5952 form', () => {
  const text = (s: string) => formatIPv6(Uint8Array.from(v6(s)));
  assert.equal(text('2001:db8:0:0:0:0:0:1'), '2001:db8::1');
  assert.equal(text('0:0:0:0:0:0:0:0'), '::');
  assert.equal(text('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // a single zero group stays
  assert.equal(text('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1'); // the longest run wins
  assert.equal(text('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // the first of equal runs
  assert.equal(text('fe80:0:0:0:0:0:0:0'), 'fe80::');
});
