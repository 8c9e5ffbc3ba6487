// The DNS reader against ipfixprobe's DNS plugin (its reference output of the
// same capture), against tshark on the nDPI corpus's DNS captures, on
// messages built by an independent encoder (dns-packet), and on bad bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import * as dnsPacket from 'dns-packet';
import { DnsStatus, DnsType, emptyDnsMessage, MAX_DATA_CHARS, parseDns, type DnsMessage } from '../../../flow/features/dns.ts';
import { corpusDir, readIpfixprobeOutput } from '../../helpers/corpus.ts';
import { tsharkPayloads } from '../../helpers/tshark-payloads.ts';

function parse(bytes: Uint8Array): { status: DnsStatus; message: DnsMessage } {
  const message = emptyDnsMessage();
  return { status: parseDns(bytes, 0, bytes.length, message), message };
}

test("reads every DNS message of dns.pcap as ipfixprobe's DNS plugin does", () => {
  const packets = tsharkPayloads(`${corpusDir}ipfixprobe/tests/functional/inputs/dns.pcap`);
  const rows = readIpfixprobeOutput('dns');
  assert.equal(rows.length, packets.length, 'ipfixprobe made one row per DNS packet');
  const differences: string[] = [];
  for (const row of rows) {
    const packet = packets.find((p) => p.src === row.SRC_IP && p.srcPort === Number(row.SRC_PORT) && p.dst === row.DST_IP && p.dstPort === Number(row.DST_PORT));
    assert.ok(packet, `no packet for ${row.SRC_IP}:${row.SRC_PORT} -> ${row.DST_IP}:${row.DST_PORT}`);
    const { status, message: m } = parse(packet.payload);
    assert.equal(status, DnsStatus.OK);
    const ours = {
      DNS_ID: m.id,
      DNS_NAME: m.queryName,
      DNS_QTYPE: m.queryType,
      DNS_CLASS: m.queryClass,
      DNS_RCODE: m.rcode,
      DNS_ANSWERS: m.answerCount,
      DNS_RR_TTL: m.answerTtl,
      DNS_RDATA: Buffer.from(m.answerData, 'latin1').toString('hex'),
      DNS_RLENGTH: m.answerData.length,
      DNS_PSIZE: m.ednsPayloadSize,
      DNS_DO: m.dnssecOk ? 1 : 0,
    };
    const theirs = Object.fromEntries(Object.entries(ours).map(([k, v]) => [k, typeof v === 'number' ? Number(row[k]) : row[k]]));
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) differences.push(`frame ${packet.frame}: podflow ${JSON.stringify(ours)} ipfixprobe ${JSON.stringify(theirs)}`);
  }
  assert.deepEqual(differences, []);
});

test('reads the DNS messages of the nDPI captures as tshark does', () => {
  const dir = `${corpusDir}nDPI/tests/cfgs/default/pcap/`;
  const captures = readdirSync(dir).filter((f) => /dns/i.test(f) && !/doh|dot|crypt/.test(f));
  assert.ok(captures.length >= 10, captures.join(' '));
  const fields = ['dns.id', 'dns.flags.response', 'dns.flags.rcode', 'dns.qry.name', 'dns.qry.type', 'dns.count.answers', '_ws.malformed', 'dns.resp.name', 'dns.cname', 'dns.ptr.domain_name', 'dns.ns'];
  let compared = 0;
  const differences: string[] = [];
  for (const capture of captures) {
    for (const packet of tsharkPayloads(dir + capture, fields)) {
      if (packet.protocol !== 'udp' || (packet.srcPort !== 53 && packet.dstPort !== 53) || packet.extra['dns.id']!.length === 0) continue;
      const first = (field: string) => packet.extra[field]![0] ?? '';
      // A message with a name tshark calls "<Name too long>" (over 255 bytes) is malformed, as it is by RFC 1035 2.3.4.
      const tooLong = Object.values(packet.extra).some((values) => values.some((v) => v.includes('<Name too long>')));
      const malformed = tooLong || first('_ws.malformed') !== '' || first('dns.qry.type') === '';
      const { status, message } = parse(packet.payload);
      if (status !== DnsStatus.OK) {
        if (!malformed) differences.push(`${capture} frame ${packet.frame}: status ${status}, tshark read it whole`);
        continue;
      }
      const got = { id: message.id, response: message.response, rcode: message.rcode, queryName: message.queryName, queryType: message.queryType, answers: message.answerCount };
      const expected = {
        id: Number(first('dns.id')),
        response: first('dns.flags.response') === '1' || first('dns.flags.response') === 'True',
        rcode: Number(first('dns.flags.rcode') || 0),
        queryName: first('dns.qry.name'),
        queryType: Number(first('dns.qry.type')),
        answers: Number(first('dns.count.answers')),
      };
      // tshark shows the root as "<Root>" and escapes differently: compare printable names only.
      if (!/^[\x21-\x7e]*$/.test(expected.queryName) || expected.queryName === '<Root>') expected.queryName = got.queryName;
      compared++;
      if (JSON.stringify(got) !== JSON.stringify(expected)) differences.push(`${capture} frame ${packet.frame}: podflow ${JSON.stringify(got)} tshark ${JSON.stringify(expected)}`);
    }
  }
  assert.deepEqual(differences, []);
  assert.ok(compared > 1000, `compared ${compared} messages`);
});

test('reads NXDOMAIN, EDNS and the first answer of each kind built by dns-packet', () => {
  const cases: { answer: dnsPacket.Answer; data: string }[] = [
    { answer: { type: 'A', name: 'a.example', ttl: 30, data: '198.18.0.7' }, data: '198.18.0.7' },
    { answer: { type: 'AAAA', name: 'a.example', ttl: 30, data: 'fd00::1:0:0:5' }, data: 'fd00::1:0:0:5' },
    { answer: { type: 'CNAME', name: 'a.example', ttl: 30, data: 'b.example' }, data: 'b.example' },
    { answer: { type: 'MX', name: 'a.example', ttl: 30, data: { preference: 10, exchange: 'mx.a.example' } }, data: '10 mx.a.example' },
    { answer: { type: 'SRV', name: '_h._tcp.a.example', ttl: 30, data: { priority: 1, weight: 2, port: 8080, target: 'svc.a.example' } }, data: '1 2 8080 svc.a.example' },
    {
      answer: { type: 'SOA', name: 'a.example', ttl: 30, data: { mname: 'ns.a.example', rname: 'root.a.example', serial: 7, refresh: 60, retry: 30, expire: 600, minimum: 5 } },
      data: 'ns.a.example root.a.example 7 60 30 600 5',
    },
    { answer: { type: 'TXT', name: 'a.example', ttl: 30, data: ['one', 'two'] }, data: 'one two' },
    { answer: { type: 'NULL', name: 'a.example', ttl: 30, data: Buffer.from([1, 2, 0xab]) } as dnsPacket.Answer, data: '\\# 3 0102ab' },
  ];
  for (const { answer, data } of cases) {
    const bytes = dnsPacket.encode({ type: 'response', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: answer.type as 'A', name: 'a.example' }], answers: [answer] });
    const { status, message } = parse(bytes);
    assert.equal(status, DnsStatus.OK, answer.type);
    assert.equal(message.answerData, data, answer.type);
    assert.equal(message.answerTtl, 30);
    assert.equal(message.id, 4242);
    assert.equal(message.response, true);
  }

  const nxdomain = dnsPacket.encode({
    type: 'response',
    id: 7,
    flags: 3, // RCODE NXDOMAIN
    questions: [{ type: 'AAAA', name: 'missing.ns1.svc.cluster.local' }],
    authorities: [{ type: 'SOA', name: 'cluster.local', ttl: 5, data: { mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as dnsPacket.Answer],
  });
  const { status, message } = parse(nxdomain);
  assert.equal(status, DnsStatus.OK);
  assert.deepEqual(
    { rcode: message.rcode, name: message.queryName, type: message.queryType, answers: message.answerCount, answerType: message.answerType, payload: message.ednsPayloadSize, dnssecOk: message.dnssecOk },
    { rcode: 3, name: 'missing.ns1.svc.cluster.local', type: DnsType.AAAA, answers: 0, answerType: 0, payload: 1232, dnssecOk: true },
  );
});

test('writes names in presentation form: escapes dots and bytes outside printable ASCII', () => {
  // One question whose first label holds "a.b", a space and byte 0xff.
  const label = Buffer.from([0x61, 0x2e, 0x62, 0x20, 0xff]);
  const bytes = Buffer.concat([Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, label.length]), label, Buffer.from([3, 0x63, 0x6f, 0x6d, 0, 0, 1, 0, 1])]);
  assert.equal(parse(bytes).message.queryName, 'a\\.b\\032\\255.com');
});

test('bad bytes give a status, never an exception, and keep what was read before the fault', () => {
  const whole = dnsPacket.encode({ type: 'response', id: 99, questions: [{ type: 'A', name: 'x.example' }], answers: [{ type: 'A', name: 'x.example', ttl: 1, data: '198.18.0.1' }] });
  for (let cut = 0; cut < whole.length; cut++) {
    const { status, message } = parse(whole.subarray(0, cut));
    assert.equal(status, cut < 12 ? DnsStatus.TOO_SHORT : DnsStatus.TRUNCATED, `cut at ${cut}`);
    if (cut >= 12) assert.equal(message.id, 99);
    if (cut >= 12 + 11 + 4) assert.equal(message.queryName, 'x.example');
  }

  const header = (answers: number) => [0, 1, 0x81, 0x80, 0, 1, 0, answers, 0, 0, 0, 0];
  // A compression pointer to itself, and one pointing forward.
  assert.equal(parse(Buffer.from([...header(0), 0xc0, 12, 0, 1, 0, 1])).status, DnsStatus.MALFORMED);
  assert.equal(parse(Buffer.from([...header(0), 0xc0, 14, 0, 0, 1, 0, 1])).status, DnsStatus.MALFORMED);
  // A label longer than 63 (0x40 marks an obsolete extended label type).
  assert.equal(parse(Buffer.from([...header(0), 0x40, ...new Array(64).fill(0x61), 0, 0, 1, 0, 1])).status, DnsStatus.MALFORMED);
  // A name of more than 255 bytes: five labels of 63.
  const long = Array.from({ length: 5 }, () => [63, ...new Array(63).fill(0x61)]).flat();
  assert.equal(parse(Buffer.from([...header(0), ...long, 0, 0, 1, 0, 1])).status, DnsStatus.MALFORMED);
  // An answer whose data length runs past the message.
  const overrun = parse(Buffer.from([...header(1), 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 200, 1, 2]));
  assert.equal(overrun.status, DnsStatus.TRUNCATED);
  assert.equal(overrun.message.queryType, 1);
});

test('keeps the first answer data within its bound', () => {
  const strings = Array.from({ length: 4 }, (_, i) => String(i).repeat(200));
  const bytes = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'TXT', name: 't.example' }], answers: [{ type: 'TXT', name: 't.example', ttl: 1, data: strings }] });
  const { status, message } = parse(bytes);
  assert.equal(status, DnsStatus.OK);
  assert.equal(message.answerData.length, MAX_DATA_CHARS);
  assert.ok(message.answerData.startsWith('0'.repeat(200) + ' 1'));
});

test('random bytes never throw', () => {
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const message = emptyDnsMessage();
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.alloc(12 + Math.floor(random() * 80), 0);
    for (let j = 0; j < bytes.length; j++) bytes[j] = random() < 0.3 ? 0xc0 | Math.floor(random() * 4) : Math.floor(random() * 256);
    bytes.writeUInt16BE(1 + Math.floor(random() * 3), 4);
    bytes.writeUInt16BE(Math.floor(random() * 3), 6);
    const status = parseDns(bytes, 0, bytes.length, message);
    assert.ok(status >= DnsStatus.OK && status <= DnsStatus.MALFORMED);
  }
});
