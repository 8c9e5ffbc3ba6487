// Export transports and the exporter, driven by a fake clock and in-memory
// sockets: template refresh, reconnect backoff, the bounded queue, targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex, duplexPair } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { PodflowError } from '../../common/errors.ts';
import { IpfixSession, IpfixStreamSplitter } from '../../ipfix/decoder.ts';
import { IpfixEncoder, TemplateId } from '../../ipfix/encoder.ts';
import { Exporter } from '../../ipfix/exporter.ts';
import { parseExportTarget, parseListenAddress } from '../../ipfix/target.ts';
import { connectError, type Connection, StreamTransport } from '../../ipfix/transport-tcp.ts';
import type { UdpSocket } from '../../ipfix/transport-udp.ts';
import type { TransportOptions } from '../../ipfix/transport.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/wait.ts';
import { exportRecord } from '../helpers/ipfix-records.ts';

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
  exporter.export([exportRecord()]);
  assert.equal(templateMessages(socket.sent), 1, 'templates go before the first data');
  exporter.export([exportRecord()]);
  assert.equal(templateMessages(socket.sent), 1, 'not again right away');
  clock.advance(60_000);
  exporter.export([exportRecord()]);
  assert.equal(templateMessages(socket.sent), 2, 'again after the refresh interval');
  for (let i = 0; i < 10; i++) exporter.export([exportRecord()]);
  assert.equal(templateMessages(socket.sent), 3, 'again after 10 data messages');
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
  assert.equal(t.stats().droppedRecords, 2);
  attempts[0]!.ours.emit('test-ready');
  await tick();
  const first = attempts[0]!.received();
  const session = new IpfixSession();
  const records = first.flatMap((m) => session.decodeMessage(m).records);
  assert.equal(session.stats.problems['unknown-template'], 0, 'templates before the records they describe');
  const firstFlow = records.findIndex((r) => !r.options);
  const types = records.filter((r, i) => r.templateId === TemplateId.TYPE_INFORMATION && i < firstFlow).length;
  assert.equal(types, 23, 'RFC 5610 type information first');
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
  assert.equal(t.stats().droppedRecords, 2);
  assert.equal(t.stats().queuedRecords, 0);
});
