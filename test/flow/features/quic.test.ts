// QUIC Initial server names against ipfixprobe's QUIC plugin (its reference
// output of quic_initial-sample.pcap) and against tshark, which decrypts
// Initials itself, on the nDPI corpus's QUIC captures (versions v1, v2,
// drafts, mvfst; ClientHellos over two Initials, to two connection IDs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { emptyQuicStats, MAX_INITIAL_DATAGRAMS, QuicFlow, type QuicStats } from '../../../flow/features/quic-flow.ts';
import { QuicStatus, readClientInitial } from '../../../flow/features/quic.ts';
import { corpusDir, readIpfixprobeOutput } from '../../helpers/corpus.ts';
import { biflows, findBiflow, type Biflow } from '../../helpers/biflows.ts';
import { tsharkPayloads } from '../../helpers/tshark-payloads.ts';

function run(flow: Biflow, stats: QuicStats = emptyQuicStats()): QuicFlow {
  const quic = new QuicFlow(stats);
  for (const { forward, packet } of flow.packets) quic.datagram(forward, packet.payload, 0, packet.payload.length);
  quic.end();
  return quic;
}

test("reads the Initial of quic_initial-sample.pcap as ipfixprobe's QUIC plugin does", () => {
  const flows = biflows(tsharkPayloads(`${corpusDir}ipfixprobe/tests/functional/inputs/quic_initial-sample.pcap`));
  const [row] = readIpfixprobeOutput('quic');
  const flow = findBiflow(flows, 'udp', row!.SRC_IP!, row!.SRC_PORT!, row!.DST_IP!, row!.DST_PORT!);
  assert.ok(flow);
  const fields = run(flow).fields();
  assert.deepEqual({ sni: fields?.serverName, version: fields?.version }, { sni: row!.QUIC_SNI, version: Number(row!.QUIC_VERSION) });
});

test('reads the server names of the nDPI QUIC captures as tshark does', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  const captures = readdirSync(dir).filter((f) => /^quic[-_]/.test(f) && !/^quic_q|^quic_t|^quic046/.test(f)); // gQUIC (Q0xx, T05x) has no TLS Initials
  const stats = emptyQuicStats();
  let compared = 0;
  const differences: string[] = [];
  const versions = new Set<number>();
  for (const capture of captures) {
    const packets = tsharkPayloads(dir + capture, ['tls.handshake.type', 'tls.handshake.extensions_server_name']).filter((p) => p.protocol === 'udp');
    const flows = biflows(packets);
    const seen = new Set<string>();
    for (const p of packets) {
      // tshark's first ClientHello of each flow (tshark decrypts the Initials).
      if (!p.extra['tls.handshake.type']!.includes('1')) continue;
      const flow = findBiflow(flows, 'udp', p.src, p.srcPort, p.dst, p.dstPort)!;
      if (seen.has(flow.key)) continue;
      seen.add(flow.key);
      const sni = p.extra['tls.handshake.extensions_server_name']![0] ?? '';
      const quic = run(flow, stats);
      compared++;
      versions.add(quic.version);
      if (quic.clientHello?.serverName !== sni) differences.push(`${capture} ${flow.key}: podflow ${JSON.stringify(quic.clientHello?.serverName)} tshark ${JSON.stringify(sni)}`);
    }
  }
  assert.deepEqual(differences, []);
  assert.ok(compared >= 15, `compared ${compared}`);
  // v1, v2, drafts 23-34 and mvfst's versions among them.
  for (const v of [0x00000001, 0x6b3343cf, 0xff000017, 0xff00001d, 0xff000022, 0xfaceb002]) assert.ok(versions.has(v), `version ${v.toString(16)}: ${[...versions].map((x) => x.toString(16))}`);
});

test('a ClientHello over two Initials, the second sent to the server-chosen connection ID, is read with the first one\'s keys', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  const [flow] = biflows(tsharkPayloads(dir + 'quic_frags_different_dcid.pcapng').filter((p) => p.protocol === 'udp'));
  assert.ok(flow);
  const first = flow.packets[0]!.packet.payload;
  const second = flow.packets.find((p, i) => i > 0 && p.forward)!.packet.payload;
  // On its own the second Initial does not decrypt: its keys come from the first's connection ID.
  assert.equal(readClientInitial(second, 0, second.length), QuicStatus.UNDECRYPTABLE);
  const stats = emptyQuicStats();
  const quic = new QuicFlow(stats);
  quic.datagram(true, first, 0, first.length);
  assert.equal(quic.clientHello, undefined);
  quic.datagram(false, second, 0, second.length); // the server's direction is not read
  quic.datagram(true, second, 0, second.length);
  assert.equal(quic.fields()?.serverName, 'cdnjs.cloudflare.com');
  assert.deepEqual(stats, { initials: 2, clientHellos: 1, malformed: 0, incomplete: 0 });
  assert.equal(quic.wanted, false);
});

test('an Initial that is cut or altered does not decrypt and is counted; the flow gives up after its bound', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  const [flow] = biflows(tsharkPayloads(dir + 'quic-29.pcap').filter((p) => p.protocol === 'udp'));
  const initial = Buffer.from(flow!.packets[0]!.packet.payload);
  initial[initial.length - 40]! ^= 1;
  const stats = emptyQuicStats();
  const quic = new QuicFlow(stats);
  for (let i = 0; i < MAX_INITIAL_DATAGRAMS + 2; i++) quic.datagram(true, initial, 0, initial.length);
  assert.equal(quic.clientHello, undefined);
  assert.deepEqual(stats, { initials: 0, clientHellos: 0, malformed: MAX_INITIAL_DATAGRAMS, incomplete: 0 });
  assert.equal(quic.wanted, false);
  for (let cut = 0; cut < initial.length; cut += 7) {
    const result = readClientInitial(initial, 0, cut);
    assert.ok(typeof result === 'number', `cut at ${cut}`);
  }
});

test('datagrams that are no QUIC Initial end the flow\'s interest at once', () => {
  const stats = emptyQuicStats();
  const quic = new QuicFlow(stats);
  const rtp = Buffer.alloc(1200, 0x55);
  rtp[0] = 0x80;
  quic.datagram(true, rtp, 0, rtp.length);
  assert.equal(quic.wanted, false);
  assert.equal(quic.fields(), undefined);
  assert.deepEqual(stats, emptyQuicStats());
  let seed = 3;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 2_000; i++) {
    const bytes = Buffer.alloc(64 + Math.floor(random() * 200));
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
    bytes[0] = 0xc0 | (bytes[0]! & 0x0f);
    bytes.writeUInt32BE(1, 1);
    const result = readClientInitial(bytes, 0, bytes.length);
    assert.ok(typeof result === 'number');
  }
});
