import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv6 } from '../../flow/address.ts';
import { DEFAULT_MAX_DOMAINS, IpfixSession, IpfixStreamSplitter, splitMessages } from '../../ipfix/decoder.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { DEFAULT_FEATURES, enabledFeatures } from '../../flow/features/flow-features.ts';
import { exportRecord, IPV6_FLOW } from '../helpers/ipfix-records.ts';

function encoder(observationDomainId = 1) {
  return new IpfixEncoder({ observationDomainId, clock: () => 1_750_000_000_000 });
}

/**
 * A message withdrawing every template and options template of the domain
 * (RFC 7011 §8.1: template ids 2 and 3 with no fields), as another exporter
 * sends it at a session's end; podflow's encoder sends none.
 */
function withdrawAll(observationDomainId = 1): Uint8Array {
  const message = new DataView(new ArrayBuffer(16 + 2 * 8));
  message.setUint16(0, 10);
  message.setUint16(2, message.byteLength);
  message.setUint32(4, 1_750_000_000);
  message.setUint32(12, observationDomainId);
  // A set of id 2 and one of id 3, each one record: its own set id as template id, 0 fields.
  [2, 3].forEach((setId, i) => {
    const o = 16 + 8 * i;
    message.setUint16(o, setId);
    message.setUint16(o + 2, 8);
    message.setUint16(o + 4, setId);
    message.setUint16(o + 6, 0);
  });
  return new Uint8Array(message.buffer);
}

test('a data set before its template is counted as unknown-template and skipped', () => {
  const e = encoder();
  const session = new IpfixSession();
  const [data] = e.encode([exportRecord()]);
  const d = session.decodeMessage(data!);
  assert.equal(d.status, 'unknown-template');
  assert.equal(d.records.length, 0);
  for (const m of e.templateMessages()) session.decodeMessage(m);
  assert.equal(session.decodeMessage(data!).records.length, 1);
  assert.equal(session.stats.problems['unknown-template'], 1);
});

test('templates are kept per observation domain', () => {
  const a = encoder(1);
  const b = encoder(2);
  const session = new IpfixSession();
  for (const m of a.templateMessages()) session.decodeMessage(m);
  assert.equal(session.decodeMessage(b.encode([exportRecord()])[0]!).status, 'unknown-template');
  assert.equal(session.decodeMessage(a.encode([exportRecord()])[0]!).status, 'ok');
});

test('a withdrawal removes the templates; data after it is unknown-template', () => {
  const e = encoder();
  const session = new IpfixSession();
  for (const m of e.templateMessages()) session.decodeMessage(m);
  assert.equal(session.decodeMessage(withdrawAll()).status, 'ok');
  assert.deepEqual(session.templateIds(1), []);
  assert.equal(session.stats.withdrawals, 2);
  assert.equal(session.decodeMessage(e.encode([exportRecord()])[0]!).status, 'unknown-template');
});

test('a template id redefined with other fields replaces the old one and is counted', () => {
  const e = encoder();
  const session = new IpfixSession();
  const [templates] = e.templateMessages();
  session.decodeMessage(templates!);
  session.decodeMessage(templates!); // refresh: same definition
  assert.equal(session.stats.templatesRedefined, 0);
  // Re-announce the IPv6 template (257) under id 256.
  const redefined = Uint8Array.from(templates!);
  const v = new DataView(redefined.buffer);
  // Skip the message and set headers and the first template record; give the second id 256.
  let o = 16 + 4;
  const count = v.getUint16(o + 2);
  o += 4;
  for (let i = 0; i < count; i++) o += v.getUint16(o) & 0x8000 ? 8 : 4;
  v.setUint16(o, 256);
  session.decodeMessage(redefined);
  assert.equal(session.stats.templatesRedefined, 1);
  const d = session.decodeMessage(e.encode([exportRecord({}, IPV6_FLOW)])[0]!);
  assert.equal(d.records[0]!.fields.sourceIPv6Address, 'fd00::a');
});

test('wrong version, short, truncated and mislabelled messages are counted by reason', () => {
  const session = new IpfixSession();
  const e = encoder();
  const [m] = e.templateMessages();
  const wrongVersion = Uint8Array.from(m!);
  wrongVersion[1] = 9;
  const longer = Uint8Array.from(m!);
  longer[3]! -= 1;
  assert.equal(session.decodeMessage(new Uint8Array(10)).status, 'truncated');
  assert.equal(session.decodeMessage(wrongVersion).status, 'wrong-version');
  assert.equal(session.decodeMessage(m!.subarray(0, 40)).status, 'truncated');
  assert.equal(session.decodeMessage(longer).status, 'bad-length');
  assert.deepEqual(session.stats.problems, {
    truncated: 2, 'wrong-version': 1, 'bad-length': 1, 'bad-set-length': 0, 'reserved-set-id': 0, 'bad-template': 0, 'unknown-template': 0, 'bad-record': 0, 'domain-limit': 0, 'template-limit': 0,
  });
});

test('fuzz: 10k random and mutated messages never throw and every bad one is counted', () => {
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const e = encoder();
  const real = [
    ...e.templateMessages(),
    ...e.typeInformationMessages(),
    ...e.encode(Array.from({ length: 20 }, (_, i) => exportRecord({}, i % 2 ? IPV6_FLOW : {}))),
    e.reliabilityStatsMessage({ exportingProcessId: 1, notSentFlowTotalCount: 1, notSentPacketTotalCount: 1, notSentOctetTotalCount: 1, firstNotSentMilliseconds: 1, lastNotSentMilliseconds: 2 }),
  ];
  const session = new IpfixSession();
  for (const m of e.templateMessages()) session.decodeMessage(m);
  let bad = 0;
  let problems = 0;
  for (let i = 0; i < 10_000; i++) {
    let bytes: Uint8Array;
    if (i % 4 === 0) {
      bytes = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256));
      if (bytes.length >= 4 && rand() < 0.5) bytes.set([0, 10, bytes.length >> 8, bytes.length & 0xff]);
    } else {
      bytes = Uint8Array.from(real[Math.floor(rand() * real.length)]!);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      if (rand() < 0.2) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
    }
    const d = session.decodeMessage(bytes);
    if (d.status !== 'ok') bad++;
    problems += d.problems.length;
    assert.equal(d.status === 'ok', d.problems.length === 0);
  }
  const counted = Object.values(session.stats.problems).reduce((a, b) => a + b, 0);
  assert.equal(counted, problems);
  assert.ok(bad > 2000, `${bad} bad messages`);
  // The session still works after the garbage.
  const fresh = encoder();
  const s2 = session;
  for (const m of fresh.templateMessages()) s2.decodeMessage(m);
  assert.equal(s2.decodeMessage(fresh.encode([exportRecord()])[0]!).status, 'ok');
});

test('a byte stream is split into messages across chunk boundaries, skipping counted garbage', () => {
  // UDP-sized messages: the 30 records span several.
  const e = new IpfixEncoder({ observationDomainId: 1, maxMessageBytes: 1472 });
  const messages = [...e.templateMessages(), ...e.encode(Array.from({ length: 30 }, () => exportRecord()))];
  const garbage = Uint8Array.of(1, 2, 3, 0, 10, 0, 3, 9);
  const stream = Buffer.concat([garbage, ...messages.slice(0, 3), garbage, ...messages.slice(3)]);
  const splitter = new IpfixStreamSplitter();
  const out: Uint8Array[] = [];
  for (let o = 0; o < stream.length; o += 100) out.push(...splitter.push(stream.subarray(o, o + 100)));
  assert.deepEqual(out.map((m) => Buffer.from(m)), messages.map((m) => Buffer.from(m)));
  assert.equal(splitter.garbageBytes, 2 * garbage.length);
  assert.equal(splitter.pendingBytes, 0);
  const whole = splitMessages(stream.subarray(0, stream.length - 5));
  assert.equal(whole.messages.length, messages.length - 1);
  assert.equal(whole.trailingBytes, messages.at(-1)!.length - 5);
});

test('IPv6 addresses are printed in RFC 5952 form', () => {
  const a = (hex: string) => Uint8Array.from(Buffer.from(hex, 'hex'));
  assert.equal(formatIPv6(a('20010db8000000000000000000000001')), '2001:db8::1');
  assert.equal(formatIPv6(a('00000000000000000000000000000000')), '::');
  assert.equal(formatIPv6(a('20010db8000000010000000000000001')), '2001:db8:0:1::1');
  assert.equal(formatIPv6(a('20010db8000100010001000100010001')), '2001:db8:1:1:1:1:1:1');
  assert.equal(formatIPv6(a('20010000000000010000000000000000')), '2001:0:0:1::');
});

test('a session keeps at most maxDomains observation domains: messages of more are counted and skipped', () => {
  const session = new IpfixSession({ maxDomains: 2 });
  for (const domain of [1, 2, 3, 4]) for (const m of encoder(domain).templateMessages()) session.decodeMessage(m);
  const announced = encoder(1).templates.filter((t) => t.id !== 260).length;
  assert.deepEqual([session.templateIds(1).length, session.templateIds(2).length, session.templateIds(3).length], [announced, announced, 0]);
  // Each of domains 3 and 4 sent its templates in this many messages, all skipped.
  assert.equal(session.stats.problems['domain-limit'], 2 * encoder(3).templateMessages().length);
  assert.equal(session.decodeMessage(encoder(3).encode([exportRecord()])[0]!).status, 'domain-limit');
  // The domains it keeps still decode.
  assert.equal(session.decodeMessage(encoder(2).encode([exportRecord()])[0]!).records.length, 1);
});

test('a session keeps at most maxTemplateFields template fields: templates beyond are refused and counted, a withdrawal frees room', () => {
  const e = encoder(1);
  const fields = e.templates.filter((t) => t.id !== 260).reduce((n, t) => n + t.fields.length, 0);
  const session = new IpfixSession({ maxTemplateFields: fields + 10 });
  for (const m of e.templateMessages()) session.decodeMessage(m);
  assert.equal(session.stats.problems['template-limit'], 0, 'one domain of podflow templates fits');
  for (const m of e.templateMessages()) session.decodeMessage(m);
  assert.equal(session.stats.problems['template-limit'], 0, 'a refresh replaces, it does not add');
  const other = encoder(2);
  for (const m of other.templateMessages()) session.decodeMessage(m);
  assert.ok(session.stats.problems['template-limit'] >= 2, 'the second domain\'s flow templates do not fit');
  assert.equal(session.decodeMessage(other.encode([exportRecord()])[0]!).status, 'unknown-template');
  session.decodeMessage(withdrawAll());
  for (const m of other.templateMessages()) session.decodeMessage(m);
  assert.equal(session.decodeMessage(other.encode([exportRecord()])[0]!).records.length, 1, 'room again after the first domain withdrew its templates');
});

test('template sets for ever-new domains (the memory flood) keep the default bound of domains', () => {
  const session = new IpfixSession();
  // The agent's templates with its default features: 16 domains of them are within the default template field bound.
  const agentEncoder = (domain: number) => new IpfixEncoder({ observationDomainId: domain, features: enabledFeatures(DEFAULT_FEATURES) });
  for (let domain = 1; domain <= 361; domain++) for (const m of agentEncoder(domain).templateMessages()) session.decodeMessage(m);
  const kept = Array.from({ length: 361 }, (_, i) => session.templateIds(i + 1).length).filter((n) => n > 0).length;
  assert.equal(kept, DEFAULT_MAX_DOMAINS);
  assert.equal(session.stats.problems['domain-limit'], (361 - DEFAULT_MAX_DOMAINS) * agentEncoder(1).templateMessages().length);
});
