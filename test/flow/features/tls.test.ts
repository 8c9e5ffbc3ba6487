// TLS hellos per flow against ipfixprobe's TLS plugin (its reference output
// of tls.pcap) and against tshark, which reassembles TCP itself, on the nDPI
// corpus's TLS captures; hellos split over segments in every order; bad bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { emptyTlsStats, MAX_SEGMENTS, TlsFlow, type TlsStats } from '../../../flow/features/tls-flow.ts';
import { isGrease, ja3String, ja4, parseHelloMessage, parseHelloRecords, TlsStatus } from '../../../flow/features/tls.ts';
import { corpusDir, readIpfixprobeOutput, referenceJa4 } from '../../helpers/corpus.ts';
import { biflows, findBiflow, type Biflow } from '../../helpers/biflows.ts';
import { tsharkPayloads } from '../../helpers/tshark-payloads.ts';

function run(flow: Biflow, stats: TlsStats = emptyTlsStats()): TlsFlow {
  const tls = new TlsFlow(stats);
  for (const { forward, packet } of flow.packets) {
    if (packet.protocol === 'tcp') tls.segment(forward, packet.seq, packet.payload, 0, packet.payload.length);
  }
  tls.end();
  return tls;
}

test("reads every TLS flow of tls.pcap as ipfixprobe's TLS plugin does, but JA4's extension count", () => {
  const flows = biflows(tsharkPayloads(`${corpusDir}ipfixprobe/tests/functional/inputs/tls.pcap`));
  const rows = readIpfixprobeOutput('tls');
  assert.equal(rows.length, 28);
  const differences: string[] = [];
  const ja4CountDiffers: string[] = [];
  for (const row of rows) {
    const flow = findBiflow(flows, 'tcp', row.SRC_IP!, row.SRC_PORT!, row.DST_IP!, row.DST_PORT!);
    assert.ok(flow, `no flow ${row.SRC_IP}:${row.SRC_PORT}`);
    const fields = run(flow).fields();
    assert.ok(fields, flow.key);
    // ipfixprobe counts GREASE extensions in JA4's extension count; JA4 says
    // to leave them out, and FoxIO's own python/ja4.py, run on this capture,
    // gives podflow's value for every flow (e.g. t13d1516h2_8daaf6152771_e5627efa2ab1
    // for 192.168.0.228:52641, where ipfixprobe says t13d1518h2_...). So the
    // reference JA4 is compared with the count of its own extension list
    // without GREASE (referenceJa4).
    const ja4Wanted = referenceJa4(row);
    if (ja4Wanted !== row.TLS_JA4) ja4CountDiffers.push(`${row.SRC_PORT}: ipfixprobe ${row.TLS_JA4}, podflow ${fields.ja4}`);
    const ours = { sni: fields.serverName, ja3: fields.ja3, ja4: fields.ja4, version: fields.version, alpn: fields.alpn };
    const theirs = { sni: row.TLS_SNI, ja3: row.TLS_JA3, ja4: ja4Wanted, version: Number(row.TLS_VERSION), alpn: row.TLS_ALPN };
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) differences.push(`${flow.key}: podflow ${JSON.stringify(ours)} ipfixprobe ${JSON.stringify(theirs)}`);
  }
  assert.deepEqual(differences, []);
  // The flows whose JA4 differs are exactly those whose client sends GREASE (Chrome-based: Opera).
  const withGrease = rows.filter((r) => r.TLS_EXT_TYPE!.slice(1, -1).split('|').map(Number).some(isGrease));
  assert.equal(ja4CountDiffers.length, withGrease.length, ja4CountDiffers.join('\n'));
  assert.equal(withGrease.length, 22);
});

/** Expert info severity "error" (tshark's PI_ERROR): a field's length runs past its record. */
const TSHARK_ERROR = '8388608';

test('reads the ClientHellos of the nDPI TLS captures as tshark does, hellos split over segments included', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  // The TLS captures, and the three whose ClientHello tshark puts together from two segments.
  const captures = [...readdirSync(dir).filter((f) => /tls|ssl/i.test(f) && !/dtls/i.test(f)), 'codm.pcap', 'dingtalk.pcap', 'gaijin_mobile_mixed.pcap'];
  const stats = emptyTlsStats();
  let compared = 0;
  const differences: string[] = [];
  for (const capture of captures) {
    const packets = tsharkPayloads(dir + capture, ['tls.handshake.type', 'tls.handshake.extensions_server_name', 'tls.handshake.ja3', '_ws.expert.severity']).filter((p) => p.protocol === 'tcp');
    const flows = biflows(packets);
    const seen = new Set<string>();
    for (const p of packets) {
      // tshark's first whole ClientHello of each flow (it reassembles segments itself); not those it calls malformed, nor those it read in part (no JA3).
      if (!p.extra['tls.handshake.type']!.includes('1') || p.extra['tls.handshake.ja3']!.length === 0 || p.extra['_ws.expert.severity']!.includes(TSHARK_ERROR)) continue;
      const flow = findBiflow(flows, 'tcp', p.src, p.srcPort, p.dst, p.dstPort)!;
      if (seen.has(flow.key)) continue;
      seen.add(flow.key);
      const want = { sni: p.extra['tls.handshake.extensions_server_name']![0] ?? '', ja3: p.extra['tls.handshake.ja3']![0] };
      const tls = run(flow, stats);
      const got = tls.clientHello ? { sni: tls.clientHello.serverName, ja3: tls.fields()!.ja3 } : undefined;
      compared++;
      if (JSON.stringify(got) !== JSON.stringify(want)) differences.push(`${capture} ${flow.key}: podflow ${JSON.stringify(got)} tshark ${JSON.stringify(want)}`);
    }
  }
  assert.deepEqual(differences, []);
  assert.ok(compared >= 45, `compared ${compared}`);
  assert.equal(stats.reassembled, 3);
});

/** A ClientHello in one TLS record, as a client would send it. */
function clientHelloRecord(serverName: string, extraBytes = 0): Buffer {
  const name = Buffer.from(serverName);
  const sni = Buffer.concat([u16(0), u16(name.length + 5), u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
  const alpnList = Buffer.from([2, 0x68, 0x32, 8, ...Buffer.from('http/1.1')]);
  const alpn = Buffer.concat([u16(16), u16(alpnList.length + 2), u16(alpnList.length), alpnList]);
  const padding = Buffer.concat([u16(21), u16(extraBytes), Buffer.alloc(extraBytes)]);
  const extensions = Buffer.concat([sni, alpn, padding]);
  const body = Buffer.concat([u16(0x0303), Buffer.alloc(32, 7), Buffer.from([0]), u16(4), u16(0x1301), u16(0xc02f), Buffer.from([1, 0]), u16(extensions.length), extensions]);
  const handshake = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(handshake.length), handshake]);
}

function u16(v: number): Buffer {
  return Buffer.from([v >> 8, v & 0xff]);
}

test('puts a ClientHello split over segments back together in any order, retransmissions and overlaps included', () => {
  const hello = clientHelloRecord('split.example', 1500);
  const base = 0xfffffc00; // the sequence numbers wrap inside the hello
  const cuts = [0, 700, 1300, hello.length];
  const pieces = cuts.slice(1).map((to, i) => ({ from: cuts[i]!, to }));
  const orders = [
    [0, 1, 2],
    [0, 2, 1],
    [0, 0, 2, 1, 1],
  ];
  for (const order of orders) {
    const stats = emptyTlsStats();
    const tls = new TlsFlow(stats);
    for (const i of order) tls.segment(true, (base + pieces[i]!.from) >>> 0, hello, pieces[i]!.from, pieces[i]!.to);
    assert.equal(tls.clientHello?.serverName, 'split.example', `order ${order}`);
    assert.equal(stats.reassembled, 1);
    assert.equal(tls.fields()!.clientAlpn, 'h2,http/1.1');
  }
  // Overlapping pieces.
  const tls = new TlsFlow(emptyTlsStats());
  tls.segment(true, base, hello, 0, 800);
  tls.segment(true, (base + 600) >>> 0, hello, 600, 1400);
  tls.segment(true, (base + 1200) >>> 0, hello, 1200, hello.length);
  assert.equal(tls.clientHello?.serverName, 'split.example');
});

test('gives up on a hello whose rest never comes, and counts it', () => {
  const hello = clientHelloRecord('lost.example', 3000);
  const stats = emptyTlsStats();
  const tls = new TlsFlow(stats);
  tls.segment(true, 1000, hello, 0, 1000);
  for (let i = 0; i < MAX_SEGMENTS; i++) tls.segment(true, 1000 + 2000 + i, hello, 2000 + i, 2001 + i);
  assert.equal(tls.clientHello, undefined);
  assert.equal(stats.incomplete, 1);
  assert.equal(tls.wanted, true, 'the server side may still send a hello');
  const plain = Buffer.from('HTTP/1.1 400 Bad Request\r\n');
  for (let i = 0; i < MAX_SEGMENTS; i++) tls.segment(false, 5 + i * plain.length, plain, 0, plain.length);
  assert.equal(tls.wanted, false);

  const cut = new TlsFlow(stats);
  cut.segment(true, 1, hello, 0, 100);
  cut.end();
  assert.equal(stats.incomplete, 2);
});

test('a hello longer than the bound is counted, not buffered', () => {
  const stats = emptyTlsStats();
  const tls = new TlsFlow(stats);
  const hello = clientHelloRecord('big.example', 20_000);
  tls.segment(true, 1, hello, 0, 1400);
  assert.equal(stats.tooLong, 1);
  assert.equal(tls.wanted, true);
});

test('JA4 of a ClientHello without extensions, and with an ALPN value that is not alphanumeric', () => {
  const body = Buffer.concat([u16(0x0301), Buffer.alloc(32), Buffer.from([0]), u16(2), u16(0x002f), Buffer.from([1, 0])]);
  const message = Buffer.concat([Buffer.from([1, 0, 0, body.length]), body]);
  const hello = parseHelloMessage(message, 0, message.length);
  assert.ok(typeof hello !== 'number' && hello.kind === 'client');
  // b: sha256("002f") cut to 12; c: no extensions.
  assert.equal(ja4(hello.hello, 'tcp'), 't10i010000_ba72b8082249_000000000000');
  assert.equal(ja3String(hello.hello), '769,47,,,');
  hello.hello.alpn.push('\u00ab\u00cd');
  assert.equal(ja4(hello.hello, 'tcp').slice(8, 10), 'ad');
});

test('bad bytes give a status, never an exception', () => {
  const hello = clientHelloRecord('x.example');
  for (let cut = 0; cut < hello.length; cut++) {
    const result = parseHelloRecords(hello, 0, cut);
    assert.ok(typeof result === 'number', `cut at ${cut}`);
  }
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.from(hello);
    for (let j = 0; j < 4; j++) bytes[5 + Math.floor(random() * (bytes.length - 5))] = Math.floor(random() * 256);
    const result = parseHelloRecords(bytes, 0, bytes.length);
    assert.ok(typeof result !== 'number' || (result >= TlsStatus.INCOMPLETE && result <= TlsStatus.TOO_LONG));
  }
});
