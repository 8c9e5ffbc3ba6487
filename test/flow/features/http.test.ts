// HTTP/1.x heads per flow against ipfixprobe's HTTP plugin (its reference
// output of http.pcap) and tshark on the nDPI corpus's HTTP captures; heads
// cut short and bytes that are no HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { emptyHttpStats, HttpFlow, type HttpStats } from '../../../flow/features/http-flow.ts';
import { HttpStatus, MAX_TARGET_CHARS, parseHttpHead } from '../../../flow/features/http.ts';
import { corpusDir, readIpfixprobeOutput } from '../../helpers/corpus.ts';
import { biflows, findBiflow, type Biflow } from '../../helpers/biflows.ts';
import { tsharkPayloads } from '../../helpers/tshark-payloads.ts';

function run(flow: Biflow, stats: HttpStats = emptyHttpStats()): HttpFlow {
  const http = new HttpFlow(stats);
  for (const { forward, packet } of flow.packets) http.segment(forward, packet.payload, 0, packet.payload.length);
  return http;
}

test("reads every HTTP flow of http.pcap as ipfixprobe's HTTP plugin does", () => {
  const flows = biflows(tsharkPayloads(`${corpusDir}ipfixprobe/tests/functional/inputs/http.pcap`));
  const rows = readIpfixprobeOutput('http');
  assert.equal(rows.length, 9);
  const differences: string[] = [];
  for (const row of rows) {
    const flow = findBiflow(flows, 'tcp', row.SRC_IP!, row.SRC_PORT!, row.DST_IP!, row.DST_PORT!);
    assert.ok(flow);
    const f = run(flow).fields();
    assert.ok(f, flow.key);
    const ours = { method: f.method, host: f.host, url: f.target, agent: f.userAgent, status: f.statusCode };
    const theirs = { method: row.HTTP_REQUEST_METHOD, host: row.HTTP_REQUEST_HOST, url: row.HTTP_REQUEST_URL, agent: row.HTTP_REQUEST_AGENT, status: Number(row.HTTP_RESPONSE_STATUS_CODE) };
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) differences.push(`${flow.key}: podflow ${JSON.stringify(ours)} ipfixprobe ${JSON.stringify(theirs)}`);
  }
  assert.deepEqual(differences, []);
});

test('reads the first request of the nDPI HTTP captures as tshark does', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  // The HTTP captures, and those with the most requests in one segment each.
  const captures = [
    ...readdirSync(dir).filter((f) => /^http/i.test(f)),
    ...['quickplay.pcap', 'ocsp.pcapng', 'webdav.pcap', 'anyconnect-vpn.pcap', 'conncheck.pcap', 'WebattackSQLinj.pcap'],
  ];
  let compared = 0;
  const differences: string[] = [];
  for (const capture of captures) {
    const packets = tsharkPayloads(dir + capture, ['http.request.method', 'http.host', 'http.request.uri', 'http.user_agent', 'tcp.segments', '_ws.expert.severity']).filter((p) => p.protocol === 'tcp');
    const flows = biflows(packets);
    for (const flow of flows) {
      // HttpFlow reads each side's first payload: compare where that is a request tshark read from that one segment.
      const first = flow.packets[0]!.packet;
      const x = first.extra;
      if (x['http.request.method']!.length === 0 || x['tcp.segments']!.length > 0 || x['_ws.expert.severity']!.includes('8388608')) continue;
      const want = { method: x['http.request.method']![0], host: x['http.host']![0] ?? '', target: x['http.request.uri']![0] ?? '', userAgent: x['http.user_agent']![0] ?? '' };
      const request = run(flow).request;
      const got = request && { method: request.method, host: request.host, target: request.target, userAgent: request.userAgent };
      const expected = { ...want, target: want.target.slice(0, MAX_TARGET_CHARS) };
      // "GET<17 spaces>/aaa..._very_long_uri HTTP/1.1": tshark splits the
      // request line at its first space and reads an empty target; podflow
      // reads the target between the runs of spaces, as servers do (RFC 9112 3
      // lets a recipient parse on whitespace-delimited word boundaries).
      if (capture === 'http-manipulated.pcap' && want.target === '') expected.target = '/aaaaaaaaaaaaaaaaaaaaaaaa_very_long_uri';
      compared++;
      if (JSON.stringify(got) !== JSON.stringify(expected)) differences.push(`${capture} ${flow.key}: podflow ${JSON.stringify(got)} tshark ${JSON.stringify(expected)}`);
    }
  }
  assert.deepEqual(differences, []);
  assert.ok(compared >= 50, `compared ${compared}`);
});

test('a head cut short keeps what was read and is counted', () => {
  const request = Buffer.from('GET /a/very/long/path?q=1 HTTP/1.1\r\nHost: svc.ns.svc.cluster.local:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n');
  const stats = emptyHttpStats();
  for (let cut = 1; cut < request.length; cut++) {
    const result = parseHttpHead(request, 0, cut);
    if (cut < 5) {
      assert.equal(result, HttpStatus.NOT_HTTP, `cut at ${cut}`);
      continue;
    }
    assert.notEqual(result, HttpStatus.NOT_HTTP, `cut at ${cut}`);
    if (result === HttpStatus.NOT_HTTP) continue;
    assert.equal(result.status, HttpStatus.INCOMPLETE, `cut at ${cut}`);
    assert.equal(result.head.kind, 'request');
  }
  const http = new HttpFlow(stats);
  http.segment(true, request, 0, 80); // the Host line whole, User-Agent cut
  http.segment(false, Buffer.from('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'), 0, 55);
  assert.deepEqual(http.fields(), { method: 'GET', host: 'svc.ns.svc.cluster.local:8080', target: '/a/very/long/path?q=1', userAgent: '', statusCode: 503 });
  assert.deepEqual(stats, { requests: 1, responses: 1, incomplete: 1 });
  assert.equal(http.wanted, false);
});

test('header names in any case, bounded values, and bytes that are no HTTP', () => {
  const long = 'x'.repeat(1000);
  const head = Buffer.from(`PATCH /${long} HTTP/1.0\r\nhOsT:   example.test  \r\nUSER-AGENT: ${long}\r\n\r\n`);
  const result = parseHttpHead(head, 0, head.length);
  assert.ok(result !== HttpStatus.NOT_HTTP && result.head.kind === 'request');
  assert.equal(result.status, HttpStatus.OK);
  assert.equal(result.head.request.host, 'example.test');
  assert.equal(result.head.request.target.length, MAX_TARGET_CHARS);
  assert.equal(result.head.request.userAgent.length, 255);
  assert.equal(result.head.request.version, '1.0');
  for (const text of ['\x16\x03\x01\x02\x00\x01', 'SSH-2.0-OpenSSH_9.6\r\n', 'GET /x FTP/1.0\r\n\r\n', 'HTTP/1.1 20\r\n', 'A'.repeat(40) + ' / HTTP/1.1\r\n']) {
    assert.equal(parseHttpHead(Buffer.from(text), 0, text.length), HttpStatus.NOT_HTTP, JSON.stringify(text));
  }
  let seed = 99;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 5_000; i++) {
    const bytes = Buffer.from(head.subarray(0, 40 + Math.floor(random() * 40)));
    for (let j = 0; j < 3; j++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    parseHttpHead(bytes, 0, bytes.length);
  }
});
