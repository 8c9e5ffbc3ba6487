// Export transports and the exporter, driven by a fake clock and in-memory
// sockets: template refresh, reconnect backoff, the bounded queue, targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, duplexPair } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { PodflowError } from '../../common/errors.ts';
import { type DecodedRecord, IpfixSession, IpfixStreamSplitter, splitMessages } from '../../ipfix/decoder.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { TemplateId } from '../../ipfix/templates.ts';
import { Exporter } from '../../ipfix/exporter.ts';
import { parseExportTarget, parseListenAddress } from '../../ipfix/target.ts';
import { InformationElementRegistry } from '../../ipfix/registry.ts';
import { connectError, type Connection, StreamTransport } from '../../ipfix/transport-tcp.ts';
import { FileTransport } from '../../ipfix/transport-file.ts';
import { type UdpSocket, UdpTransport } from '../../ipfix/transport-udp.ts';
import type { TransportOptions } from '../../ipfix/transport.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/wait.ts';
import { corpusDir } from '../helpers/corpus.ts';
import { exportRecord, podEnd } from '../helpers/ipfix-records.ts';

const CLI = new URL('../../agent/cli.ts', import.meta.url).pathname;
const MIXED = corpusDir + 'ipfixprobe/tests/functional/inputs/mixed.pcap';

function transportOptions(clock: FakeClock, errors: PodflowError[] = []): TransportOptions {
  return {
    clock,
    exportingProcessId: 1,
    onError: (err) => errors.push(err),
    newEncoder: (maxMessageBytes) => new IpfixEncoder({ observationDomainId: 1, maxMessageBytes, clock: () => clock.now() }),
  };
}

/** A UDP socket that keeps what is sent. */
function fakeUdp(): UdpSocket & { sent: Uint8Array[] } {
  const sent: Uint8Array[] = [];
  return {
    sent,
    connect: (_port, _host, callback) => queueMicrotask(callback),
    send: (message, callback) => {
      sent.push(message);
      queueMicrotask(() => callback(null));
    },
    on: () => undefined,
    close: () => undefined,
  };
}

/** Messages that open with the data templates (set id 2): one per template send. */
function templateMessages(messages: Uint8Array[]): number {
  return messages.filter((m) => m[16] === 0 && m[17] === 2).length;
}

test('parses export targets and listen addresses, with defaults for the IANA ports', () => {
  assert.deepEqual(parseExportTarget('udp://127.0.0.1:4739'), { protocol: 'udp', host: '127.0.0.1', port: 4739, url: 'udp://127.0.0.1:4739' });
  assert.deepEqual(parseExportTarget('tcp://[::1]'), { protocol: 'tcp', host: '::1', port: 4739, url: 'tcp://[::1]' });
  assert.deepEqual(parseExportTarget('tls://collector.example:9999?ca=/ca.pem&servername=ipfix'), {
    protocol: 'tls', host: 'collector.example', port: 9999, url: 'tls://collector.example:9999?ca=/ca.pem&servername=ipfix', tls: { ca: '/ca.pem', servername: 'ipfix' },
  });
  assert.equal((parseExportTarget('tls://c') as { port: number }).port, 4740);
  assert.deepEqual(parseExportTarget('file:out/flows.ipfix'), { protocol: 'file', path: 'out/flows.ipfix', url: 'file:out/flows.ipfix' });
  assert.equal((parseExportTarget('file:///tmp/x.ipfix') as { path: string }).path, '/tmp/x.ipfix');
  assert.equal(parseListenAddress('tls://0.0.0.0:4740?cert=c.pem&key=k.pem').protocol, 'tls');
});

test('rejects a bad target with a coded error naming the problem', () => {
  const cases: Array<[string, RegExp]> = [
    ['127.0.0.1:4739', /not a URL|unknown scheme/],
    ['http://x:1', /unknown scheme 'http:'/],
    ['udp://:4739', /names no host|not a URL/],
    ['udp://x:99999', /not a URL/],
    ['udp://x:1?ca=a', /unknown parameter 'ca'/],
    ['tls://x:1?cert=c', /needs both cert= and key=/],
    ['tls://x:1?bogus=1', /unknown parameter 'bogus'/],
    ['tcp://x:1/path', /only a host/],
    ['file:', /names no file/],
  ];
  for (const [text, problem] of cases) {
    assert.throws(() => parseExportTarget(text), (err: PodflowError) => err.code === 'PODFLOW_ERR_EXPORT_TARGET' && problem.test(err.message), text);
  }
  assert.throws(() => parseListenAddress('tls://0.0.0.0:1'), { code: 'PODFLOW_ERR_COLLECT_LISTEN_ADDRESS' });
  assert.throws(() => new Exporter({ targets: ['tls://127.0.0.1:1?ca=/nonexistent.pem'], observationDomainId: 1 }), {
    code: 'PODFLOW_ERR_EXPORT_TLS_FILES',
    message: /ca=\/nonexistent\.pem: ENOENT/,
  });
});

test('UDP resends templates after the refresh interval and after the message count, and keeps messages under the limit', async () => {
  const clock = new FakeClock();
  const socket = fakeUdp();
  const exporter = new Exporter({
    targets: ['udp://127.0.0.1:4739'],
    observationDomainId: 1,
    clock,
    udp: { createSocket: () => socket, templateRefreshMs: 60_000, templateRefreshMessages: 10, maxMessageBytes: 1200 },
  });
  await tick();
  // The templates of one send may take more than one message of 1200 bytes.
  const perSend = new IpfixEncoder({ observationDomainId: 1, maxMessageBytes: 1200 }).templateMessages().length;
  const templateSends = (messages: Uint8Array[]) => templateMessages(messages) / perSend;
  exporter.export([exportRecord()]);
  assert.equal(templateSends(socket.sent), 1, 'templates go before the first data');
  exporter.export([exportRecord()]);
  assert.equal(templateSends(socket.sent), 1, 'not again right away');
  clock.advance(60_000);
  exporter.export([exportRecord()]);
  assert.equal(templateSends(socket.sent), 2, 'again after the refresh interval');
  for (let i = 0; i < 10; i++) exporter.export([exportRecord()]);
  assert.equal(templateSends(socket.sent), 3, 'again after 10 data messages');
  exporter.export(Array.from({ length: 50 }, () => exportRecord()));
  assert.ok(socket.sent.every((m) => m.length <= 1200));
  await exporter.close();
  const s = exporter.stats()[0]!;
  assert.equal(s.records, 63);
  assert.equal(s.templateSends, 3);
  assert.equal(s.messages, socket.sent.length);
  const session = new IpfixSession();
  const decoded = socket.sent.flatMap((m) => session.decodeMessage(m).records).filter((r) => !r.options);
  assert.equal(decoded.length, 63);
  assert.equal(session.stats.sequenceMismatches, 0);
});

/** A connector whose connections the test completes or fails by hand. */
function manualConnector() {
  const attempts: Array<{ ours: Duplex; theirs: Duplex; received: () => Uint8Array[] }> = [];
  const connect = (): Connection => {
    const [ours, theirs] = duplexPair();
    const splitter = new IpfixStreamSplitter();
    const messages: Uint8Array[] = [];
    theirs.on('data', (chunk: Buffer) => messages.push(...splitter.push(chunk)));
    // As a collector's socket does (allowHalfOpen false): our end of the stream read, it ends its side.
    theirs.on('end', () => theirs.end());
    attempts.push({ ours, theirs, received: () => messages });
    return { socket: ours, readyEvent: 'test-ready', describe: (err, phase) => connectError('tcp://test', err, phase) };
  };
  return { attempts, connect };
}

test('TCP retries with exponential backoff from 1 s to 30 s and counts each failure', async () => {
  const clock = new FakeClock();
  const { attempts, connect } = manualConnector();
  const errors: PodflowError[] = [];
  const t = new StreamTransport('tcp://test', { ...transportOptions(clock, errors), connect });
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    attempts.at(-1)!.ours.destroy(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    await tick();
    delays.push(clock.pending()[0]!);
    clock.advance(delays.at(-1)!);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(errors.length, 7);
  assert.equal(errors[0]!.code, 'PODFLOW_ERR_EXPORT_CONNECT');
  assert.match(errors[0]!.message, /connecting: ECONNREFUSED/);
  t.destroy();
});

test('TCP queues records while disconnected, drops and counts beyond the bound, and opens each connection with templates', async () => {
  const clock = new FakeClock();
  const { attempts, connect } = manualConnector();
  const t = new StreamTransport('tcp://test', { ...transportOptions(clock), connect, maxQueuedRecords: 5 });
  t.export(Array.from({ length: 7 }, () => exportRecord()));
  assert.equal(t.stats().queuedRecords, 5);
  assert.equal(t.stats().notSent.queueFull, 2);
  attempts[0]!.ours.emit('test-ready');
  await tick();
  const first = attempts[0]!.received();
  const session = new IpfixSession();
  const records = first.flatMap((m) => session.decodeMessage(m).records);
  assert.equal(session.stats.problems['unknown-template'], 0, 'templates before the records they describe');
  const firstFlow = records.findIndex((r) => !r.options);
  const types = records.filter((r, i) => r.templateId === TemplateId.TYPE_INFORMATION && i < firstFlow).length;
  assert.equal(types, new InformationElementRegistry().enterpriseElements.length, 'RFC 5610 type information first');
  assert.equal(first.findIndex((m) => templateMessages([m]) === 1), 1, 'then the data templates (the type information is one message on a stream)');
  const reliability = records.find((r) => r.templateId === TemplateId.EXPORTING_RELIABILITY)!;
  assert.equal(reliability.fields.notSentFlowTotalCount, 2, 'reliability statistics report the dropped records');
  assert.equal(records.filter((r) => !r.options).length, 5);

  // The collector goes away: a new connection after 1 s, a new session that again starts with templates.
  attempts[0]!.theirs.end();
  await waitFor(() => !t.stats().connected, 1000, 'the lost connection');
  clock.advance(1000);
  t.export([exportRecord()]);
  attempts[1]!.ours.emit('test-ready');
  await tick();
  const second = new IpfixSession();
  const again = attempts[1]!.received().flatMap((m) => second.decodeMessage(m).records);
  assert.equal(again.filter((r) => !r.options).length, 1);
  assert.equal(second.stats.problems['unknown-template'], 0);
  assert.equal(second.stats.sequenceMismatches, 0);
  const s = t.stats();
  assert.deepEqual([s.reconnects, s.templateSends, s.records, s.errors], [1, 2, 6, 1]);
  assert.match(s.lastError!.message, /connection lost/);
  await t.close(1000);
  await t.close(1000);
  assert.throws(() => t.export([exportRecord()]), { code: 'PODFLOW_ERR_EXPORT_CLOSED' });
});

test('close gives up after its timeout and counts what was never sent', async () => {
  const clock = new FakeClock();
  const { connect } = manualConnector();
  const t = new StreamTransport('tcp://test', { ...transportOptions(clock), connect });
  t.export([exportRecord(), exportRecord()]);
  const closed = t.close(5000);
  clock.advance(5000);
  await closed;
  assert.equal(t.stats().notSent.closed, 2);
  assert.equal(t.stats().queuedRecords, 0);
});

/** A UDP receiver on loopback that keeps the flow records it decodes. */
async function udpReceiver(type: 'udp4' | 'udp6') {
  const socket = dgram.createSocket(type);
  const session = new IpfixSession();
  const records: DecodedRecord[] = [];
  socket.on('message', (m) => records.push(...session.decodeMessage(m).records.filter((r) => !r.options)));
  await new Promise<void>((resolve) => socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', resolve));
  return { port: socket.address().port, records, session, close: () => socket.close() };
}

test('UDP: a name that does not resolve yet is retried with backoff and counted, never thrown; records wait and go out once it resolves', async () => {
  const clock = new FakeClock();
  const receiver = await udpReceiver('udp4');
  const errors: PodflowError[] = [];
  const lookups: string[] = [];
  let answer: 'fail' | 'ok' = 'fail';
  const t = new UdpTransport('udp://collector.monitoring:4739', {
    ...transportOptions(clock, errors),
    host: 'collector.monitoring',
    port: receiver.port,
    lookup: async (host) => {
      lookups.push(host);
      if (answer === 'fail') throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return { address: '127.0.0.1', family: 4 };
    },
  });
  await waitFor(() => errors.length === 1, 1000, 'the first failed lookup');
  t.export([exportRecord({ clusterName: 'before-dns' })]);
  assert.equal(t.stats().connected, false);
  assert.equal(t.stats().queuedRecords, 1);
  assert.deepEqual(clock.pending(), [1000]);
  clock.advance(1000);
  await waitFor(() => errors.length === 2, 1000, 'the second failed lookup');
  assert.deepEqual(clock.pending(), [2000], 'the backoff doubles');
  answer = 'ok';
  clock.advance(2000);
  await waitFor(() => receiver.records.length === 1, 5000, 'the queued record once the name resolves');
  assert.equal(receiver.records[0]!.fields.k8sClusterName, 'before-dns');
  assert.equal(receiver.session.stats.problems['unknown-template'], 0);
  t.export([exportRecord({ clusterName: 'after-dns' })]);
  await waitFor(() => receiver.records.length === 2, 5000, 'a record sent at once');
  const s = t.stats();
  assert.deepEqual([s.connected, s.records, s.queuedRecords, s.errors, lookups.length], [true, 2, 0, 2, 3]);
  assert.equal(errors[0]!.code, 'PODFLOW_ERR_EXPORT_RESOLVE');
  assert.match(errors[0]!.message, /cannot resolve 'collector\.monitoring': ENOTFOUND/);
  await t.close(1000);
  receiver.close();
});

test('UDP: a name with only an IPv6 address gets an IPv6 socket', async () => {
  const clock = new FakeClock();
  const receiver = await udpReceiver('udp6');
  const t = new UdpTransport('udp://v6only.example:4739', {
    ...transportOptions(clock),
    host: 'v6only.example',
    port: receiver.port,
    lookup: async () => ({ address: '::1', family: 6 }),
  });
  t.export([exportRecord()]);
  await waitFor(() => receiver.records.length === 1, 5000, 'the record over IPv6');
  await t.close(1000);
  receiver.close();
});

test('podflow replay to a collector name that does not resolve ends with the flows counted as not sent, not a crash', () => {
  const run = spawnSync(process.execPath, [CLI, 'replay', MIXED, '--output', 'udp://no-such-host.invalid:4739'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 1, run.stderr);
  assert.match(run.stderr, /PODFLOW_ERR_EXPORT_RESOLVE|cannot resolve 'no-such-host\.invalid'/);
  assert.match(run.stderr, /export udp:\/\/no-such-host\.invalid:4739: 0 flows in \d+ messages \(0 bytes\), 48 not sent \(closed 48\)/);
});

test('UDP: a record too large for one message and the records of a failed send are counted as not sent, by reason, also in the reliability statistics', async () => {
  const clock = new FakeClock();
  const sent: Uint8Array[] = [];
  let failNext = false;
  const socket: UdpSocket = {
    connect: (_port, _host, callback) => queueMicrotask(() => callback()),
    send: (message, callback) => {
      const fail = failNext;
      failNext = false;
      if (!fail) sent.push(message);
      queueMicrotask(() => callback(fail ? Object.assign(new Error('send EMSGSIZE'), { code: 'EMSGSIZE' }) : null));
    },
    on: () => undefined,
    close: () => undefined,
  };
  const t = new UdpTransport('udp://127.0.0.1:4739', { ...transportOptions(clock), host: '127.0.0.1', port: 4739, createSocket: () => socket, templateRefreshMs: 60_000 });
  await waitFor(() => t.stats().connected, 1000, 'connected');
  // 16 label keys and long names at both ends: one record alone is larger than a 1452-byte message.
  const labels = Array.from({ length: 16 }, (_, i) => [`example.com/label-key-${i}`, `value-${i}`.repeat(4)] as const);
  const long = (name: string) => podEnd(`${name}-${'x'.repeat(200)}`, { labels, workloadName: 'w'.repeat(200) });
  const big = exportRecord({ source: long('a'), destination: long('b') });
  t.export([big, exportRecord()]);
  await waitFor(() => t.stats().records === 1, 1000, 'the record that fits');
  failNext = true;
  t.export([exportRecord(), exportRecord()]);
  await waitFor(() => t.stats().notSent.sendFailed === 2, 1000, 'the failed send counted');
  const s = t.stats();
  assert.deepEqual(s.notSent, { queueFull: 0, tooLarge: 1, sendFailed: 2, connectionLost: 0, closed: 0 });
  assert.equal(s.records, 1);
  assert.equal(s.errors, 1);
  clock.advance(60_000);
  t.export([exportRecord()]);
  await waitFor(() => t.stats().records === 2, 1000, 'the refresh and a record');
  const session = new IpfixSession();
  const reliability = sent.flatMap((m) => session.decodeMessage(m).records).filter((r) => r.templateId === TemplateId.EXPORTING_RELIABILITY);
  assert.equal(reliability.at(-1)!.fields.notSentFlowTotalCount, 3);
  assert.equal(reliability.at(-1)!.fields.notSentPacketTotalCount, 3 * 22);
  await t.close(1000);
});

test('TCP: a session whose collector reads nothing is given up after the stall timeout; what it held is counted, connected is 0 until a new session proves itself', async () => {
  const clock = new FakeClock();
  const errors: PodflowError[] = [];
  const pairs: Array<{ ours: Duplex; theirs: Duplex }> = [];
  // A collector that accepts and never reads: nothing the transport writes completes.
  const connect = (): Connection => {
    const [ours, theirs] = duplexPair();
    pairs.push({ ours, theirs });
    return { socket: ours, readyEvent: 'test-ready', describe: (err, phase) => connectError('tcp://test', err, phase) };
  };
  const t = new StreamTransport('tcp://test', { ...transportOptions(clock, errors), connect, stallTimeoutMs: 10_000 });
  pairs[0]!.ours.emit('test-ready');
  // More than the in-memory pipe takes (its 16 KiB buffers), so writes wait.
  t.export(Array.from({ length: 1000 }, () => exportRecord()));
  await tick();
  assert.equal(t.stats().connected, true);
  assert.ok(pairs[0]!.ours.writableLength > 0, 'data waits');
  clock.advance(9_999);
  assert.equal(t.stats().connected, true, 'not before the stall timeout');
  clock.advance(1);
  assert.equal(errors.at(-1)?.code, 'PODFLOW_ERR_EXPORT_STALLED');
  assert.match(errors.at(-1)!.message, /read nothing for 10 s with \d+ bytes waiting/);
  let s = t.stats();
  assert.equal(s.connected, false);
  assert.ok(s.records > 0);
  assert.equal(s.notSent.connectionLost, s.records, 'every record written to the stalled session');
  assert.equal(s.queuedRecords, 1000 - s.records, 'the rest wait for the next session');
  // A new session (the kernel of a hung collector accepts it) is not trusted at once.
  clock.advance(1000);
  pairs[1]!.theirs.resume();
  pairs[1]!.ours.emit('test-ready');
  await tick();
  assert.equal(t.stats().connected, false, 'a fresh session after a stall');
  clock.advance(10_000);
  s = t.stats();
  assert.equal(s.connected, true, 'a session that read for the stall timeout');
  t.destroy();
});

test('file: a slow disk holds records in the bounded queue, not in the stream, and what does not fit is counted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-file-'));
  try {
    const clock = new FakeClock();
    const path = join(dir, 'flows.ipfix');
    let stream: WriteStream | undefined;
    const t = new FileTransport('file:flows.ipfix', path, {
      ...transportOptions(clock),
      maxQueuedRecords: 300,
      // A stream whose writes complete only when the test says (a disk that does not keep up).
      createStream: (fd) => {
        stream = createWriteStream('', { fd, highWaterMark: 16 * 1024 });
        const write = stream._write.bind(stream);
        const held: Array<() => void> = [];
        stream._write = (chunk, encoding, callback) => held.push(() => write(chunk, encoding, callback));
        Object.assign(stream, { release: () => held.splice(0).forEach((f) => f()) });
        return stream;
      },
    });
    for (let i = 0; i < 20; i++) t.export(Array.from({ length: 50 }, () => exportRecord()));
    const s = t.stats();
    assert.ok(stream!.writableLength < 64 * 1024, `the stream holds ${stream!.writableLength} bytes: it is not written past its high-water mark`);
    assert.equal(s.queuedRecords, 300);
    assert.equal(s.records + s.queuedRecords + s.notSent.queueFull, 1000);
    assert.ok(s.notSent.queueFull > 0);
    const release = (stream as unknown as { release: () => void }).release;
    const closed = t.close(60_000);
    await waitFor(() => {
      release();
      return t.stats().queuedRecords === 0;
    }, 5000, 'the queue written as the disk catches up');
    await waitFor(() => {
      release();
      return stream!.closed;
    }, 5000, 'the file closed');
    await closed;
    const session = new IpfixSession();
    const records = splitMessages(readFileSync(path)).messages.flatMap((m) => session.decodeMessage(m).records).filter((r) => !r.options);
    assert.equal(records.length, t.stats().records);
    assert.equal(records.length + t.stats().notSent.queueFull, 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
