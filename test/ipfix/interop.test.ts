// What podflow exports, read by decoders nobody here wrote (ipfixDump from
// libfixbuf, tshark, pmacct's nfacctd) and by our own collector: all must see
// the flows `podflow replay` meters from corpus captures, with the same counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Exporter } from '../../ipfix/exporter.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { DEFAULT_FEATURES, enabledFeatures } from '../../flow/features/flow-features.ts';
import { ENDPOINT_FIELDS, InformationElementRegistry } from '../../ipfix/registry.ts';
import type { EndpointIdentity } from '../../enrich/export-record.ts';
import { DNS_FLOW, exportRecord, IPV6_FLOW } from '../helpers/ipfix-records.ts';
import { corpusDir } from '../helpers/corpus.ts';
import { concat, ethernet, ipv4, udp } from '../helpers/packets.ts';
import { waitFor } from '../helpers/wait.ts';

const cli = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
const MIXED = corpusDir + 'ipfixprobe/tests/functional/inputs/mixed.pcap';
/** IPv4 and IPv6, UDP and TCP, DNS over both: a flow for every feature's elements. */
const EVERY_FEATURE = corpusDir + 'nDPI/tests/cfgs/default/pcap/dns_fragmented.pcap';
/** 300 bytes: longer than 254, so the string takes the 3-byte length form (RFC 7011 §7). */
const LONG_CLUSTER = 'c'.repeat(300);

type Flow = Record<string, string | number>;

function podflow(args: string[]) {
  const run = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A decoder the test needs: missing is a failure that says how to get it, never a skip. */
function tool(name: string, debianPackage: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  assert.ok(found, `${name} is not installed: ./run setup installs it (Debian package ${debianPackage})`);
  return found;
}

/** The flows as `podflow replay` prints them: the reference every decoder is held to. */
function replayedFlows(path: string): Flow[] {
  const { stdout } = podflow(['replay', path]);
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Flow);
}

const key = (f: Flow) =>
  [f.sourceIPv4Address ?? f.sourceIPv6Address, f.destinationIPv4Address ?? f.destinationIPv6Address, f.sourceTransportPort, f.destinationTransportPort, f.protocolIdentifier, f.packetDeltaCount, f.octetDeltaCount, f.reversePacketDeltaCount, f.reverseOctetDeltaCount].join(' ');

const sum = (flows: Flow[], field: string) => flows.reduce((n, f) => n + Number(f[field]), 0);

/** Runs `podflow collect --json` on an ephemeral port; flows() are those it printed so far; stop() ends it (SIGTERM) and returns its flows and summary. */
async function startCollect(listen: string): Promise<{ url: string; flows: () => Flow[]; stop: () => Promise<{ flows: Flow[]; stderr: string }> }> {
  const child = spawn(process.execPath, [cli, 'collect', '--json', '--listen', listen], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c));
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  await waitFor(() => /listening on (\S+)/.test(stderr) || child.exitCode !== null, 10_000, 'podflow collect to listen');
  const url = /listening on (\S+)/.exec(stderr)?.[1];
  assert.ok(url, stderr);
  // Whole lines only: a flow may be half written.
  const flows = () => stdout.slice(0, stdout.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow);
  return {
    url,
    flows,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      return { flows: flows(), stderr };
    },
  };
}

function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-interop-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('ipfixDump reads an IPFIX file of IPv4 and IPv6 flows and names every enterprise element', () =>
  withTempDir(async (dir) => {
    tool('ipfixDump', 'libfixbuf-tools');
    const expected = replayedFlows(EVERY_FEATURE);
    const file = join(dir, 'flows.ipfix');
    const run = podflow(['replay', EVERY_FEATURE, '--output', `file:${file}`, '--cluster', LONG_CLUSTER]);
    assert.equal(run.status, 0, run.stderr);
    const xml = join(dir, 'elements.xml');
    writeFileSync(xml, podflow(['elements', '--format', 'ipfixdump-xml']).stdout);
    // Named from the element file, and from the RFC 5610 type records in the file alone.
    const fromRfc5610 = spawnSync('ipfixDump', ['--in', file, '--rfc5610'], { encoding: 'utf8' });
    assert.equal(fromRfc5610.status, 0, fromRfc5610.stderr);
    const dump = spawnSync('ipfixDump', ['--in', file, '-e', xml], { encoding: 'utf8' });
    assert.equal(dump.status, 0, dump.stderr);
    for (const [how, out] of [['--rfc5610', fromRfc5610.stdout], ['element file', dump.stdout]]) {
      assert.doesNotMatch(out, /_alienInformationElement/, `every element has a name (${how})`);
      for (const { name } of new InformationElementRegistry().enterpriseElements) {
        // Identity in every record; a feature's fields in the records of flows that had it.
        const carrying = expected.filter((f) => name.startsWith('k8s') || name in f).length;
        if (name.startsWith('k8s') || name.startsWith('dns')) assert.ok(carrying > 0, `${name}: the capture has flows that carry it`);
        assert.equal((out.match(new RegExp(`\\) *${name} : `, 'g')) ?? []).length, carrying, `${name} in every record that carries it (${how})`);
      }
    }
    assert.equal((dump.stdout.match(/k8sClusterName : \(len: 300\) c{300}/g) ?? []).length, expected.length);
    const v4 = expected.filter((f) => f.sourceIPv4Address !== undefined).length;
    assert.ok(v4 > 0 && v4 < expected.length, 'the capture has both IPv4 and IPv6 flows');
    // podflow replay exports with the default features' templates.
    const v6Templates = new IpfixEncoder({ observationDomainId: 0, features: enabledFeatures(DEFAULT_FEATURES) }).templates.filter((t) => t.name.startsWith('FLOW_IPV6')).length;
    assert.equal((dump.stdout.match(/sourceIPv6Address/g) ?? []).length - v6Templates, expected.length - v4, 'IPv6 records (plus a field of each IPv6 template)');
    const octets = [...dump.stdout.matchAll(/\(1\)\s+octetDeltaCount : (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(octets, sum(expected, 'octetDeltaCount'));
  }));

test('tshark decodes the UDP export with the same packet and octet counts', () =>
  withTempDir(async (dir) => {
    tool('tshark', 'tshark');
    const expected = replayedFlows(MIXED);
    // Receive the datagrams ourselves and write them as a pcap: no capture privileges needed.
    const receiver = dgram.createSocket('udp4');
    const datagrams: Uint8Array[] = [];
    receiver.on('message', (m) => datagrams.push(m));
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    const port = receiver.address().port;
    const run = podflow(['replay', MIXED, '--output', `udp://127.0.0.1:${port}`]);
    assert.equal(run.status, 0, run.stderr);
    const sentMessages = Number(/in (\d+) messages/.exec(run.stderr)![1]);
    await waitFor(() => datagrams.length === sentMessages, 5000, 'the UDP messages');
    receiver.close();
    const pcap = join(dir, 'export.pcap');
    const header = Buffer.alloc(24);
    header.writeUInt32LE(0xa1b2c3d4, 0);
    header.writeUInt16LE(2, 4);
    header.writeUInt16LE(4, 6);
    header.writeUInt32LE(65535, 16);
    header.writeUInt32LE(1, 20);
    const records = datagrams.map((d, i) => {
      const udpPacket = concat(udp(40000, port).subarray(0, 4), Uint8Array.of((8 + d.length) >> 8, 8 + d.length, 0, 0), d);
      const frame = ethernet(0x0800, ipv4({ protocol: 17, source: '127.0.0.1', destination: '127.0.0.1', payload: udpPacket }));
      const h = Buffer.alloc(16);
      h.writeUInt32LE(1_750_000_000 + i, 0);
      h.writeUInt32LE(frame.length, 8);
      h.writeUInt32LE(frame.length, 12);
      return concat(h, frame);
    });
    writeFileSync(pcap, concat(header, ...records));
    const fields = spawnSync('tshark', ['-r', pcap, '-d', `udp.port==${port},cflow`, '-T', 'fields', '-E', 'occurrence=a', '-e', 'cflow.packets', '-e', 'cflow.octets', '-e', 'cflow.srcaddr', '-e', 'cflow.srcaddrv6'], {
      encoding: 'utf8',
    });
    assert.equal(fields.status, 0, fields.stderr);
    const numbers = (column: number) => fields.stdout.trim().split('\n').flatMap((l) => (l.split('\t')[column] ?? '').split(',').filter(Boolean));
    // tshark shows the RFC 5103 reverse counters under the same field names as the forward ones.
    assert.equal(numbers(0).length, 2 * expected.length, 'packetDeltaCount and its reverse per flow');
    assert.equal(numbers(0).reduce((n, v) => n + Number(v), 0), sum(expected, 'packetDeltaCount') + sum(expected, 'reversePacketDeltaCount'));
    assert.equal(numbers(1).reduce((n, v) => n + Number(v), 0), sum(expected, 'octetDeltaCount') + sum(expected, 'reverseOctetDeltaCount'));
    assert.equal(numbers(2).length + numbers(3).length, expected.length);
  }));

/**
 * Runs nfacctd (pmacct) on a free UDP port with podflow's aggregate_primitives
 * and the given aggregate, lets `send` export to it, and returns the rows it
 * printed once `done` holds for them.
 */
async function nfacctd(dir: string, aggregate: string[], send: (port: number) => Promise<void>, done: (rows: Flow[]) => boolean): Promise<Flow[]> {
  tool('nfacctd', 'pmacct');
  const primitives = join(dir, 'primitives.lst');
  // Only the primitives aggregated on: nfacctd 1.7.7 crashes (a segmentation
  // fault at start) with more than 63 in its aggregate_primitives file.
  const wanted = new Set(aggregate);
  writeFileSync(primitives, podflow(['elements', '--format', 'nfacctd']).stdout.split('\n').filter((line) => wanted.has(line.split('\t')[0]!.slice('name='.length))).join('\n') + '\n');
  // A free port: bind, read, release (nfacctd cannot report the port it got).
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  const port = probe.address().port;
  probe.close();
  const out = join(dir, 'flows.json');
  const config = join(dir, 'nfacctd.conf');
  writeFileSync(
    config,
    [
      'daemonize: false',
      `nfacctd_ip: 127.0.0.1`,
      `nfacctd_port: ${port}`,
      `aggregate_primitives: ${primitives}`,
      'plugins: print[j]',
      `aggregate[j]: ${aggregate.join(', ')}`,
      'print_output[j]: json',
      `print_output_file[j]: ${out}`,
      'print_refresh_time[j]: 1',
      // Each refresh appends: an export that straddles two refreshes is all in the file (rewritten, only the second part was).
      'print_output_file_append[j]: true',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('nfacctd', ['-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c));
  child.stderr!.on('data', (c: Buffer) => (log += c));
  try {
    // Ready when its core listens and its print plugin is set up: what the
    // core hands the plugin before that is lost (seen when the export came
    // as soon as the socket was bound: 2 runs of 15 printed nothing).
    const ready = () => log.includes(`waiting for NetFlow/IPFIX data on 127.0.0.1:${port}`) && log.includes('( j/print ): JSON: setting object handlers');
    await waitFor(() => ready() || child.exitCode !== null, 10_000, () => `nfacctd ready:\n${log}`);
    assert.equal(child.exitCode, null, `nfacctd exited:\n${log}`);
    await send(port);
    const read = () => {
      try {
        return readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow);
      } catch {
        return [];
      }
    };
    await waitFor(() => done(read()), 10_000, () => `nfacctd to print the flows (${JSON.stringify(read())}):\n${log}`);
    // Every template it was sent, options templates included, read as such.
    assert.doesNotMatch(log, /malformed|unknown template/i);
    return read();
  } finally {
    child.kill('SIGKILL');
  }
}

test('nfacctd prints the same counts and the cluster name from the UDP export of a replay', () =>
  withTempDir(async (dir) => {
    const expected = replayedFlows(MIXED);
    const rows = await nfacctd(
      dir,
      ['src_host', 'dst_host', 'src_port', 'dst_port', 'proto', 'k8s_cluster_name', 'k8s_source_endpoint_type', 'k8s_destination_endpoint_type'],
      async (port) => {
        const run = podflow(['replay', MIXED, '--output', `udp://127.0.0.1:${port}`, '--cluster', 'prod']);
        assert.equal(run.status, 0, run.stderr);
      },
      (rows) => sum(rows, 'packets') >= sum(expected, 'packetDeltaCount'),
    );
    assert.equal(sum(rows, 'packets'), sum(expected, 'packetDeltaCount'));
    assert.equal(sum(rows, 'bytes'), sum(expected, 'octetDeltaCount'));
    assert.ok(rows.every((r) => r.k8s_source_endpoint_type === 'unknown' && r.k8s_destination_endpoint_type === 'unknown'));
    assert.ok(rows.every((r) => r.k8s_cluster_name === 'prod'), 'the cluster name string');
  }));

test('nfacctd prints every identity string of both ends, on IPv4 and on IPv6 flows', () =>
  withTempDir(async (dir) => {
    const elements = new InformationElementRegistry().enterpriseElements;
    // A value of its own for every identity field of both ends, so a field read as another shows.
    const end = (side: string): EndpointIdentity => ({
      type: 'pod',
      namespace: `${side}-namespace`,
      podName: `${side}-pod-name`,
      podUid: `${side}-pod-uid`,
      workloadKind: `${side}-workload-kind`,
      workloadName: `${side}-workload-name`,
      nodeName: `${side}-node-name`,
      serviceNamespace: `${side}-service-namespace`,
      serviceName: `${side}-service-name`,
      servicePortName: `${side}-service-port-name`,
      labels: [['app', `${side}-label`]],
    });
    const records = [exportRecord({}), exportRecord({}, IPV6_FLOW), exportRecord({}, DNS_FLOW)].map((r) => ({ ...r, clusterName: 'cluster-name', source: end('source'), destination: end('destination') }));
    const rows = await nfacctd(
      dir,
      ['src_host', 'dst_host', 'src_port', ...elements.filter((e) => /^(k8s|dns)/.test(e.name)).map((e) => e.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))],
      async (port) => {
        const exporter = new Exporter({ targets: [`udp://127.0.0.1:${port}`], observationDomainId: 1 });
        exporter.export(records);
        await exporter.close();
      },
      (rows) => rows.length >= 3,
    );
    assert.equal(rows.length, 3, JSON.stringify(rows));
    const dns = rows.find((r) => Number(r.port_src) === DNS_FLOW.sourceTransportPort);
    assert.ok(dns, `the DNS flow in ${JSON.stringify(rows)}`);
    assert.deepEqual(
      [dns.dns_transaction_id, dns.dns_query_name, dns.dns_query_type, dns.dns_response_code, dns.dns_answer_count, dns.dns_latency_microseconds, dns.dns_query_count, dns.dns_response_count, dns.dns_error_response_count].map(String),
      ['4660', 'cart.shop.svc.cluster.local', '1', '3', '0', '1500', '2', '2', '1'],
    );
    assert.equal(dns.k8s_source_pod_name, 'source-pod-name');
    for (const [version, source] of [['IPv4', '198.18.0.10'], ['IPv6', 'fd00::a']]) {
      const row = rows.find((r) => r.ip_src === source && Number(r.port_src) !== DNS_FLOW.sourceTransportPort);
      assert.ok(row, `${version} flow in ${JSON.stringify(rows)}`);
      const want: Record<string, string> = { k8s_cluster_name: 'cluster-name' };
      for (const side of ['source', 'destination']) {
        const identity = end(side);
        for (const [suffix, field] of ENDPOINT_FIELDS) {
          const value = identity[field];
          want[`k8s_${side}_${suffix.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).slice(1)}`] = typeof value === 'string' ? value : `app=${side}-label`;
        }
      }
      assert.equal(Object.keys(want).length, elements.filter((e) => e.name.startsWith('k8s')).length);
      for (const [primitive, value] of Object.entries(want)) assert.equal(row[primitive], value, `${version} ${primitive}`);
    }
  }));

test('podflow collect agrees with the replay over UDP (IPv4 loopback) and TCP (IPv6 loopback), long strings included', async () => {
  const expected = replayedFlows(MIXED);
  for (const listen of ['udp://127.0.0.1:0', 'tcp://[::1]:0']) {
    const collect = await startCollect(listen);
    const run = podflow(['replay', MIXED, '--output', collect.url, '--cluster', LONG_CLUSTER]);
    assert.equal(run.status, 0, run.stderr);
    await waitFor(() => collect.flows().length >= expected.length, 10_000, () => `${expected.length} flows collected: ${collect.flows().length}`);
    const { flows, stderr } = await collect.stop();
    assert.deepEqual(flows.map(key).sort(), expected.map(key).sort(), listen);
    assert.ok(flows.every((f) => f.k8sClusterName === LONG_CLUSTER && f.interfaceName === 'mixed.pcap'));
    assert.match(stderr, /bad messages: 0/);
  }
});
