// The exporter against our collector over real loopback sockets: a collector
// restart in the middle of a TCP export, fuzzed input, TLS with a test CA.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PodflowError } from '../../common/errors.ts';
import { type CollectedRecord, Collector } from '../../ipfix/collector.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { Exporter } from '../../ipfix/exporter.ts';
import { notSentTotal } from '../../ipfix/transport.ts';
import { exportRecord } from '../helpers/ipfix-records.ts';
import { waitFor } from '../helpers/wait.ts';

const CLI = new URL('../../agent/cli.ts', import.meta.url).pathname;

async function collector(listen: string) {
  const records: CollectedRecord[] = [];
  const c = new Collector({ listen, onRecord: (r) => (r.options ? undefined : records.push(r)) });
  const { port } = await c.start();
  return { c, port, records };
}

test('a TCP export survives a collector restart: reconnects, resends templates, and the records after it decode', async () => {
  const first = await collector('tcp://127.0.0.1:0');
  const exporter = new Exporter({ targets: [`tcp://127.0.0.1:${first.port}`], observationDomainId: 3, tcp: { backoffInitialMs: 50 } });
  exporter.export([exportRecord(), exportRecord()]);
  await waitFor(() => first.records.length === 2, 5000, 'records before the restart');
  await first.c.close();
  await waitFor(() => exporter.stats()[0]!.connected === false, 5000, 'the exporter to see the loss');
  const second = await collector(`tcp://127.0.0.1:${first.port}`);
  exporter.export([exportRecord({ clusterName: 'after-restart' })]);
  await waitFor(() => second.records.length === 1, 5000, 'records after the restart');
  assert.equal(second.records[0]!.fields.k8sClusterName, 'after-restart');
  assert.equal(second.c.stats().problems['unknown-template'], 0, 'templates came first on the new connection');
  const s = exporter.stats()[0]!;
  assert.deepEqual([s.reconnects, s.templateSends, notSentTotal(s)], [1, 2, 0], 'the first collector read every record before it closed');
  await exporter.close();
  await second.c.close();
});

test('the collector counts every fuzzed message over UDP and TCP and keeps decoding good ones', async () => {
  const encoder = new IpfixEncoder({ observationDomainId: 1 });
  const good = [...encoder.templateMessages(), ...encoder.encode([exportRecord(), exportRecord()])];
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const fuzzed: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) {
    if (i % 3 === 0) fuzzed.push(Uint8Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
    else {
      const m = Uint8Array.from(good[Math.floor(random() * good.length)]!);
      for (let j = 0; j < 1 + Math.floor(random() * 8); j++) m[Math.floor(random() * m.length)] = Math.floor(random() * 256);
      fuzzed.push(i % 3 === 1 ? m : m.subarray(0, 1 + Math.floor(random() * (m.length - 1))));
    }
  }
  const u = await collector('udp://127.0.0.1:0');
  const socket = dgram.createSocket('udp4');
  try {
    // One datagram at a time, each counted before the next: a burst of small
    // datagrams overruns the socket's receive buffer (truesize, not payload,
    // fills it), and a datagram the kernel dropped is no test of the decoder.
    let sent = 0;
    for (const m of [...fuzzed, ...good]) {
      await new Promise((r) => socket.send(m, u.port, '127.0.0.1', r));
      sent++;
      await waitFor(() => u.c.stats().messages === sent, 2000, `datagram ${sent} (${JSON.stringify(u.c.stats())})`, 1);
    }
  } finally {
    socket.close();
    await u.c.close();
  }
  const us = u.c.stats();
  const problems = Object.values(us.problems).reduce((a, b) => a + b, 0);
  assert.ok(us.badMessages > 100 && problems >= us.badMessages, `bad ${us.badMessages}`);
  assert.ok(u.records.some((r) => r.fields.k8sClusterName === 'test-cluster'), 'good messages after the fuzz still decode');

  const t = await collector('tcp://127.0.0.1:0');
  const client = net.connect(t.port, '127.0.0.1');
  for (const m of fuzzed) client.write(m);
  client.end();
  await waitFor(() => t.c.stats().openConnections === 0 && t.c.stats().sessions === 1, 5000, 'the fuzzed stream');
  const ts = t.c.stats();
  assert.ok(ts.badMessages + ts.garbageBytes > 0);
  // The collector is still up: a clean exporter gets through.
  const exporter = new Exporter({ targets: [`tcp://127.0.0.1:${t.port}`], observationDomainId: 1 });
  exporter.export([exportRecord({ clusterName: 'clean' })]);
  await waitFor(() => t.records.some((r) => r.fields.k8sClusterName === 'clean'), 5000, 'a clean export after the fuzz');
  await exporter.close();
  await t.c.close();
});

test('TLS export reaches the collector with a test CA, and a collector certificate from another CA is refused with a clear error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-tls-'));
  try {
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    for (const ca of ['ca', 'other-ca']) openssl('req', '-x509', ...key, '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '1', '-subj', `/CN=${ca}`);
    openssl('req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=collector');
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:collector\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
    const tls = await collector(`tls://127.0.0.1:0?cert=${join(dir, 'server.pem')}&key=${join(dir, 'server.key')}`);
    const good = new Exporter({ targets: [`tls://127.0.0.1:${tls.port}?ca=${join(dir, 'ca.pem')}`], observationDomainId: 1 });
    good.export([exportRecord({ clusterName: 'over-tls' })]);
    await waitFor(() => tls.records.length === 1, 5000, 'the record over TLS');
    assert.equal(tls.records[0]!.fields.k8sClusterName, 'over-tls');
    await good.close();

    const errors: PodflowError[] = [];
    const refused = new Exporter({ targets: [`tls://127.0.0.1:${tls.port}?ca=${join(dir, 'other-ca.pem')}`], observationDomainId: 1, onError: (e) => errors.push(e) });
    refused.export([exportRecord()]);
    await waitFor(() => errors.length > 0, 5000, 'the refusal');
    assert.equal(errors[0]!.code, 'PODFLOW_ERR_EXPORT_TLS');
    assert.match(errors[0]!.message, /not signed by a trusted CA \(check ca=\)/);
    refused.destroy();
    assert.equal(refused.stats()[0]!.notSent.closed, 1);
    await tls.c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a collector that hangs, then dies: every record is received or counted as not sent, and the stall shows as not connected', async (t) => {
  const child = spawn(process.execPath, [CLI, 'collect', '--json', '--listen', 'tcp://127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const closed = new Promise((resolve) => child.once('close', resolve));
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c));
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  await waitFor(() => /listening on (\S+)/.test(stderr), 10_000, () => `podflow collect to listen: ${stderr}`);
  const url = /listening on (\S+)/.exec(stderr)![1]!;
  const received = () => stdout.slice(0, stdout.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => Number((JSON.parse(l) as { flowStartMilliseconds: number }).flowStartMilliseconds));
  const errors: PodflowError[] = [];
  // A short stall timeout: the condition under test, not a timing (the default is 30 s).
  const exporter = new Exporter({ targets: [url], observationDomainId: 1, tcp: { stallTimeoutMs: 1000, backoffInitialMs: 50 }, onError: (e) => errors.push(e) });
  const BASE = 1_750_000_000_000;
  let exported = 0;
  const exportSome = () => {
    exporter.export(Array.from({ length: 200 }, () => exportRecord({}, { flowStartMilliseconds: BASE + exported++ })));
  };
  const pump = setInterval(exportSome, 5);
  try {
    await waitFor(() => received().length > 1000, 10_000, 'the collector reading');
    child.kill('SIGSTOP');
    await waitFor(() => errors.some((e) => e.code === 'PODFLOW_ERR_EXPORT_STALLED'), 20_000, () => `the stall noticed (${JSON.stringify(exporter.stats()[0])})`);
    assert.equal(exporter.stats()[0]!.connected, false, 'a stalled collector is not connected');
    child.kill('SIGKILL');
    await closed;
  } finally {
    clearInterval(pump);
  }
  await exporter.close();
  const s = exporter.stats()[0]!;
  const ids = received();
  assert.equal(new Set(ids).size, ids.length, 'no record twice');
  assert.ok(ids.every((id) => id >= BASE && id < BASE + exported));
  assert.ok(s.notSent.connectionLost > 0, 'what the dead collector held is counted');
  assert.ok(ids.length + notSentTotal(s) >= exported, `${exported} exported: ${ids.length} received, ${notSentTotal(s)} not sent (${JSON.stringify(s.notSent)})`);
  t.diagnostic(`${exported} exported: ${ids.length} received, not sent ${JSON.stringify(s.notSent)}`);
});
