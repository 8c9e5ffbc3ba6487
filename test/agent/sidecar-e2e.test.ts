// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// `podflow agent --mode=sidecar` started inside one pod namespace of the
// simulated node with `ip netns exec` (as a container of that pod would be),
// with its identity in downward-API-style environment variables and a labels
// file, no Kubernetes API access (remote ends by IP alone) and an IPFIX file
// as its collector (the pod's loopback is captured, so nothing is sent over
// it). Checked: it exports exactly that pod's flows (eth0 and lo; bytes equal
// the pod's interface counters), names the pod at its end with the
// downward-API identity and the Deployment from its labels, exits 0 at
// SIGTERM with open flows ended as forced end, and uses the same IPFIX
// templates as the DaemonSet's exporter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canRunSimNode, type InterfaceCounters, ipOctets, SimNode, type SimPod } from '../../sim/simnode.ts';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { IpfixSession, splitMessages, type DecodedRecord } from '../../ipfix/decoder.ts';
import { Exporter } from '../../ipfix/exporter.ts';
import { CLI } from '../helpers/agent-process.ts';
import { sidecarContainer } from '../../agent/inject.ts';
import { DEFAULT_WEBHOOK_CONFIG } from '../../agent/webhook.ts';
import { exportRecord, IPV6_FLOW, TCP_FLOW } from '../helpers/ipfix-records.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const PEN = 64512;

function readIpfixFile(path: string): { records: DecodedRecord[]; templates: Map<number, string[]> } {
  const session = new IpfixSession({ enterpriseNumber: PEN });
  const records: DecodedRecord[] = [];
  const templates = new Map<number, string[]>();
  for (const m of splitMessages(readFileSync(path)).messages) {
    const decoded = session.decodeMessage(m);
    assert.equal(decoded.status, 'ok');
    for (const r of decoded.records) {
      if (r.options) continue;
      records.push(r);
      templates.set(r.templateId, Object.keys(r.fields));
    }
  }
  return { records, templates };
}

const octets = (r: DecodedRecord) => Number(r.fields.octetDeltaCount ?? 0) + Number(r.fields.reverseOctetDeltaCount ?? 0);

test('the agent in sidecar mode, inside one pod namespace, exports that pod\'s flows named from the downward API', { skip, timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-sidecar-e2e-'));
  let child: ChildProcess | undefined;
  t.after(() => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  // Offloads off: exported octets are held against interface counters, which count buffers (sim/simnode.ts).
  const node = new SimNode(t, { offloads: false });
  const [frontend, backend, other] = [node.addPod(1), node.addPod(2), node.addPod(3)] as [SimPod, SimPod, SimPod];
  const podinfo = join(dir, 'podinfo');
  mkdirSync(podinfo);
  // As the kubelet writes a downward API `metadata.labels` file.
  writeFileSync(join(podinfo, 'labels'), 'app="frontend"\npod-template-hash="5d8f9c7b6"\ntier="web \\"edge\\""\n');
  const ipfixFile = join(dir, 'flows.ipfix');

  // `ip netns exec` then `setpriv` exec the agent in the pod's namespace (the same PID, so
  // signals reach it) with exactly the injected container's capabilities (NET_RAW), as
  // a container with drop: [ALL] gets them: no CAP_SYS_ADMIN, so no setns is possible.
  const caps = (sidecarContainer(DEFAULT_WEBHOOK_CONFIG.sidecar).securityContext as { capabilities: { add: string[] } }).capabilities.add;
  assert.deepEqual(caps, ['NET_RAW']);
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  child = spawn('ip', ['netns', 'exec', frontend.netns, 'setpriv', '--bounding-set', bounding, '--inh-caps', '-all', '--', NODE_BIN, ...NODE_FLAGS, CLI, 'agent', '--mode=sidecar',
    `--collector=file:${ipfixFile}`, '--cluster-name=sim', '--log-level=debug', '--metrics-listen=127.0.0.1:0',
    `--set=enterpriseNumber=${PEN}`, '--set=labelKeys=[app, tier]', '--set=flow.idleTimeoutSeconds=2',
    '--set=namespaces.rescanSeconds=0.2', '--set=shutdown.timeoutSeconds=5', '--set=capture.loopback=true'], {
    env: {
      PATH: process.env.PATH,
      POD_NAME: 'frontend-5d8f9c7b6-x2k4q',
      POD_NAMESPACE: 'shop',
      POD_UID: '0b7e4c1a-9d2f-4e8b-a6c3-5f1d2e3a4b5c',
      NODE_NAME: 'sim-node',
      POD_IPS: `${frontend.ipv4},${frontend.ipv6}`,
      PODFLOW_PODINFO_DIR: podinfo,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout!.on('data', (d: Buffer) => (logs += d));
  child.stderr!.on('data', (d: Buffer) => (logs += d));
  const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
  await waitFor(() => logs.includes('"msg":"capture open"') || child!.exitCode !== null, 20_000, 'the capture open').catch((err) => {
    throw new Error(`${err.message}: ${logs}`);
  });
  assert.equal(child.exitCode, null, logs);
  assert.match(logs, /"mode":"sidecar".*"msg":"agent started"/);
  assert.match(logs, /no Kubernetes API access: remote ends are named by IP alone/);
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]!;
  assert.equal(BigInt(`0x${capEff}`), 1n << 13n, 'the agent runs with CAP_NET_RAW only');

  const interfaces = [{ pod: frontend, ifname: 'eth0' }, { pod: frontend, ifname: 'lo' }];
  const read = () => new Map<string, InterfaceCounters>(interfaces.map(({ pod, ifname }) => [ifname, node.counters(pod.netns, ifname)]));
  const before = read();

  const sink = (p: SimPod, args: string[]) => node.startSink(p.netns, args);
  // Phase 1: flows that end by idle timeout. The frontend's traffic, and traffic between two other pods (must not appear).
  const done = await Promise.all([sink(backend, ['tcp-sink', '5001']), sink(frontend, ['udp-sink', '7001', '30']), sink(other, ['tcp-sink', '5009'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, '5001', '1000000']),
    node.runTraffic(backend.netns, ['udp-send', frontend.ipv4, '7001', '30', '200']),
    node.runTraffic(frontend.netns, ['lo-tcp', '50000']),
    node.runTraffic(backend.netns, ['tcp-send', other.ipv4, '5009', '300000']),
  ]);
  await Promise.all(done.map((d) => d.closed));
  // Phase 1's flows ended by idle timeout (2 s) and are in the file: TCP and UDP on eth0, TCP on lo.
  const phase1 = () => readIpfixFile(ipfixFile).records;
  await waitFor(() => [5001, 7001].every((port) => phase1().some((r) => r.fields.destinationTransportPort === port)) && phase1().some((r) => r.fields.interfaceName === 'lo'),
    10_000, () => `phase 1 exported: ${phase1().map((r) => `${r.fields.interfaceName}:${r.fields.destinationTransportPort}`).join(' ')}`, 100);
  // Phase 2: a flow still open at SIGTERM (IPv6).
  const open = await sink(backend, ['tcp-sink', '5002']);
  await node.runTraffic(frontend.netns, ['tcp-send', backend.ipv6, '5002', '500000']);
  await open.closed;
  // The last ACKs and FINs are counted too: the counters are final.
  await node.tcpSettled([frontend.netns, backend.netns]);
  const after = read();
  child.kill('SIGTERM');
  assert.equal(await exited, 0, logs.slice(-3000));
  assert.match(logs, /"msg":"agent stopped"/);
  assert.doesNotMatch(logs, /"level":50/, 'no error logged');

  const { records, templates } = readIpfixFile(ipfixFile);
  t.diagnostic(`${records.length} records`);
  assert.ok(records.length >= 4, `records: ${records.length}`);
  assert.equal(records.filter((r) => r.fields.destinationTransportPort === 5009).length, 0, "another pod's flow is not seen");
  const self = 'shop/frontend-5d8f9c7b6-x2k4q Deployment/frontend';
  const end = (r: DecodedRecord, side: 'Source' | 'Destination') =>
    `${r.fields[`k8s${side}Namespace`]}/${r.fields[`k8s${side}PodName`]} ${r.fields[`k8s${side}WorkloadKind`]}/${r.fields[`k8s${side}WorkloadName`]}`;
  for (const r of records) {
    assert.equal(r.fields.k8sClusterName, 'sim');
    const observed = r.fields.interfaceName === 'lo' || r.fields.flowDirection === 1 ? 'Source' : 'Destination';
    // (tcpOptions arrives as a bigint above 2^53: JSON gets its decimal text.)
    assert.equal(end(r, observed), self, JSON.stringify(r.fields, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    assert.equal(r.fields[`k8s${observed}PodUid`], '0b7e4c1a-9d2f-4e8b-a6c3-5f1d2e3a4b5c');
    assert.equal(r.fields[`k8s${observed}NodeName`], 'sim-node');
  }
  const tcp = records.filter((r) => r.fields.destinationTransportPort === 5001);
  assert.equal(tcp.length, 1, 'seen once: only at the frontend');
  assert.equal(tcp[0]!.fields.flowDirection, 1, 'egress');
  assert.equal(tcp[0]!.fields.sourceIPv4Address, frontend.ipv4);
  assert.equal(tcp[0]!.fields.k8sDestinationEndpointType, 'unknown', 'the remote end by IP alone');
  assert.equal(tcp[0]!.fields.destinationIPv4Address, backend.ipv4);
  const udp = records.filter((r) => r.fields.destinationTransportPort === 7001);
  assert.equal(udp.length, 1);
  assert.equal(udp[0]!.fields.flowDirection, 0, 'ingress');
  assert.equal(end(udp[0]!, 'Destination'), self);
  const lo = records.filter((r) => r.fields.interfaceName === 'lo');
  assert.ok(lo.length >= 1 && lo.every((r) => end(r, 'Source') === self && end(r, 'Destination') === self), 'lo: the pod at both ends');
  assert.ok(records.filter((r) => r.fields.destinationTransportPort !== 5002).every((r) => r.fields.flowEndReason !== 4), 'phase 1 ended before SIGTERM');
  const forced = records.filter((r) => r.fields.destinationTransportPort === 5002);
  assert.equal(forced.length, 1);
  assert.equal(forced[0]!.fields.flowEndReason, 4, 'open at SIGTERM: forced end');
  assert.equal(forced[0]!.fields.sourceIPv6Address, frontend.ipv6);
  // The labels from the downward API file.
  const labelled = Object.entries(tcp[0]!.fields).filter(([k]) => /Label/i.test(k)).map(([, v]) => String(v)).join(' ');
  assert.match(labelled, /frontend/);

  const truth = interfaces.reduce((s, { ifname }) => s + ipOctets(ifname, before.get(ifname)!, after.get(ifname)!), 0);
  assert.equal(records.reduce((s, r) => s + octets(r), 0), truth, "bytes of every record = the pod's eth0 and lo counters");

  // The same templates as the DaemonSet's exporter: export DaemonSet-style records the same way and compare.
  const reference = join(dir, 'daemonset.ipfix');
  const exporter = new Exporter({ targets: [`file:${reference}`], observationDomainId: 1, enterpriseNumber: PEN });
  // Plain flows and TCP flows (with the TCP feature's fields), each IP version.
  exporter.export([exportRecord(), exportRecord({}, IPV6_FLOW), exportRecord({}, TCP_FLOW), exportRecord({}, { ...IPV6_FLOW, ...TCP_FLOW })]);
  await exporter.close();
  const ds = readIpfixFile(reference).templates;
  for (const [id, fields] of templates) {
    const same = [...ds.values()].find((f) => f.join() === fields.join());
    assert.ok(same, `template ${id} (${fields.length} fields) is one the DaemonSet uses`);
  }
});
