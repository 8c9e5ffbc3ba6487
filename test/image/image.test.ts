// The image, built and run as the DaemonSet runs it. Needs root and podman
// (`./run setup` installs it); skips saying why where podman cannot run.
// The first build on a machine takes minutes (the base, then `npm ci` and the
// native build); later ones reuse podman's layer cache (seconds when only the
// agent's sources changed).
//
// scripts/image-build.sh builds the Dockerfile on a local base (mmdebstrap +
// Node 24 from npm; the official base is a build argument away). Each run is
// `podman run` with what the built DaemonSet (`kubectl kustomize
// manifests/`) asks of the runtime (test/image/daemonset-podman.ts), its
// ConfigMap mounted as the configuration; the test adds only where the
// collector and /metrics are (a collector on 127.0.0.1 and a free port:
// parallel runs must not collide on 9464) and which namespaces are its own
// (namespaces.pathFilter: other tests' simulated pods on this machine are
// none of this agent's business). Pod namespaces are a simulated node's,
// made on the host, pf-prefixed and removed after the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { type CollectedRecord, Collector } from '../../ipfix/collector.ts';
import { canRunSimNode, capturedPackets, type InterfaceCounters, ipOctets, SimNode, type SimPod } from '../../sim/simnode.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { type KubeObject, kubectlProblem, kustomize, MANIFESTS } from '../manifests/kustomize.ts';
import { type AgentProcess, pod, replicaSet, sample, scrapeUntil, watchAgent } from '../helpers/agent-process.ts';
import { waitFor, waitForAsync } from '../helpers/wait.ts';
import { daemonSetRun, type PodmanRunOptions } from './daemonset-podman.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILD_SCRIPT = join(ROOT, 'scripts/image-build.sh');
const PODMAN_ENV = { ...process.env, CONTAINERS_CONF: join(ROOT, 'scripts/podman/containers.conf') };
const NODE = 'sim-node';
/** One image per checkout: parallel suites in other worktrees build their own. */
const IMAGE = `localhost/podflow:test-${createHash('sha256').update(ROOT).digest('hex').slice(0, 12)}`;

function whyNot(): string | false {
  const sim = canRunSimNode();
  if (!sim.ok) return sim.reason;
  const info = spawnSync('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}}'], { env: PODMAN_ENV, encoding: 'utf8' });
  if (info.error || info.status !== 0) return `podman cannot run here (./run setup installs it): ${info.error?.message ?? info.stderr.trim()}`;
  return kubectlProblem() ?? false;
}
const skip = whyNot();

let built: Promise<void> | undefined;
/** scripts/image-build.sh, once per run of this file. */
function buildImage(t: TestContext): Promise<void> {
  built ??= new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn('bash', [BUILD_SCRIPT, IMAGE], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`${BUILD_SCRIPT} exited ${code}:\n${output.slice(-4000)}`));
      t.diagnostic(`image ${IMAGE} built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      resolve();
    });
  });
  return built;
}

const podman = (args: string[]) => execFileSync('podman', args, { env: PODMAN_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

interface Container {
  agent: AgentProcess;
  name: string;
  graceSeconds: number;
  probes: { liveness: string; readiness: string };
  limits: { memoryBytes?: number };
  /** `podman stop --time <grace>`: SIGTERM, SIGKILL after the grace period. Resolves with the exit code and the time it took. */
  stop(): Promise<{ code: number | null; ms: number }>;
}

/** Runs the image as the built DaemonSet says, with the test's options; removed after the test. */
async function runDaemonSet(t: TestContext, node: SimNode, collectorPort: number, options: Pick<PodmanRunOptions, 'cluster' | 'args'>): Promise<Container> {
  const workDir = mkdtempSync(join(tmpdir(), 'podflow-image-test-'));
  const name = `${node.tag}-agent`;
  t.after(() => {
    spawnSync('podman', ['rm', '--force', '--time', '0', name], { env: PODMAN_ENV, stdio: 'ignore' });
    rmSync(workDir, { recursive: true, force: true });
  });
  const run = daemonSetRun(kustomize(MANIFESTS), {
    image: IMAGE,
    name,
    nodeName: NODE,
    workDir,
    ...options,
    env: { PODFLOW_COLLECTORS: `udp://127.0.0.1:${collectorPort}`, PODFLOW_METRICS_LISTEN: '127.0.0.1:0' },
    args: ['--set', `namespaces.pathFilter=^(/var)?/run/netns/${node.tag}p[0-9]+$`, ...(options.args ?? [])],
  });
  const child = spawn('podman', run.args, { env: PODMAN_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const agent = await watchAgent(child, 60_000);
  return {
    agent,
    name,
    graceSeconds: run.graceSeconds,
    probes: run.probes,
    limits: run.limits,
    async stop() {
      const at = Date.now();
      podman(['stop', '--time', String(run.graceSeconds), name]);
      const code = await agent.exited;
      return { code, ms: Date.now() - at };
    },
  };
}

/** The container's memory cgroup (v1 or v2): usage, working set (usage less inactive file pages, what the kubelet evicts on) and limit, in bytes. */
function memoryCgroup(name: string): { usage: number; workingSet: number; limit: number } {
  const path = podman(['inspect', '--format', '{{.State.CgroupPath}}', name]);
  const read = (file: string) => readFileSync(file, 'utf8');
  const statOf = (text: string, key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  try {
    const dir = `/sys/fs/cgroup/memory${path}`;
    const usage = Number(read(`${dir}/memory.usage_in_bytes`));
    return { usage, workingSet: usage - statOf(read(`${dir}/memory.stat`), 'total_inactive_file'), limit: Number(read(`${dir}/memory.limit_in_bytes`)) };
  } catch {
    const dir = `/sys/fs/cgroup${path}`;
    const usage = Number(read(`${dir}/memory.current`));
    return { usage, workingSet: usage - statOf(read(`${dir}/memory.stat`), 'inactive_file'), limit: Number(read(`${dir}/memory.max`)) };
  }
}

const octets = (r: CollectedRecord) => Number(r.fields.octetDeltaCount ?? 0) + Number(r.fields.reverseOctetDeltaCount ?? 0);
const packets = (r: CollectedRecord) => Number(r.fields.packetDeltaCount ?? 0) + Number(r.fields.reversePacketDeltaCount ?? 0);
const podName = (r: CollectedRecord, side: 'Source' | 'Destination') => `${r.fields[`k8s${side}Namespace`]}/${r.fields[`k8s${side}PodName`]}`;

async function udpCollector(t: TestContext): Promise<{ records: CollectedRecord[]; port: number }> {
  const records: CollectedRecord[] = [];
  const collector = new Collector({ listen: 'udp://127.0.0.1:0', onRecord: (r) => !r.options && records.push(r) });
  const { port } = await collector.start();
  t.after(() => collector.close());
  return { records, port };
}

test('the DaemonSet translation refuses a field it does not translate', { skip: kubectlProblem() ?? false }, () => {
  const objects = kustomize(MANIFESTS);
  const options = { image: 'x', name: 'x', nodeName: NODE, workDir: mkdtempSync(join(tmpdir(), 'podflow-image-test-')) };
  try {
    assert.ok(daemonSetRun(objects, options).args.includes('--cap-drop=ALL'));
    const patched = (edit: (spec: Record<string, any>) => void): KubeObject[] => // eslint-disable-line @typescript-eslint/no-explicit-any
      objects.map((o) => {
        if (o.kind !== 'DaemonSet') return o;
        const copy = structuredClone(o) as KubeObject & { spec: { template: { spec: Record<string, any> } } }; // eslint-disable-line @typescript-eslint/no-explicit-any
        edit(copy.spec.template.spec);
        return copy;
      });
    assert.throws(() => daemonSetRun(patched((s) => (s.hostIPC = true)), options), /spec\.template\.spec\.hostIPC: not translated/);
    assert.throws(() => daemonSetRun(patched((s) => (s.containers[0].securityContext.procMount = 'Unmasked')), options), /securityContext\.procMount: not translated/);
    assert.throws(() => daemonSetRun(patched((s) => (s.volumes[1].hostPath.type = 'Socket')), options), /hostPath type Socket not translated/);
    assert.throws(() => daemonSetRun(patched((s) => (s.containers[0].volumeMounts[0].subPath = 'x')), options), /volumeMounts\[config\]\.subPath: not translated/);
  } finally {
    rmSync(options.workDir, { recursive: true, force: true });
  }
});

test('the image, run as the DaemonSet says, names and exports the traffic of a pod that came after it, answers its probes, and flushes every open flow at podman stop', { skip, timeout: 900_000 }, async (t) => {
  await buildImage(t);
  const server = new KubeApiServer();
  await server.start();
  t.after(() => server.stop());
  server.create('node', { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.254' }] } });
  server.create('replicaset', replicaSet('frontend-5d8f', 'shop', 'frontend'));
  server.create('replicaset', replicaSet('backend-7c9b', 'data', 'backend'));
  server.create('pod', pod('frontend-5d8f-a', 'shop', '198.18.0.1', 'fd00::1', 'frontend-5d8f', NODE));
  server.create('pod', pod('backend-7c9b-x', 'data', '198.18.0.2', 'fd00::2', 'backend-7c9b', NODE));
  const { records, port } = await udpCollector(t);
  // Offloads off: octets are held against interface counters, which count buffers (sim/simnode.ts).
  const node = new SimNode(t, { offloads: false });
  const frontend = node.addPod(1);

  // Rings of 4 MiB, not the ConfigMap's 512 KiB: the test's burst (~0.5 MiB of ring per pod at
  // snaplen 256) then fits whole in each ring, so a reader thread starved by a loaded machine (2
  // cores shared by parallel suites) loses none of it; measured: 232 of 3054 frames ring_full at
  // 512 KiB under load. Ring sizes under bursts are bench/netns/burst-onset's subject, not this test's.
  const args = ['--set', `capture.bufferBytes=${4 << 20}`];
  const c = await runDaemonSet(t, node, port, { args, cluster: { host: '127.0.0.1', port: Number(new URL(server.url).port), token: server.token, ca: server.ca! } });
  const { agent } = c;
  t.after(() => agent.kill());
  assert.equal((await agent.get(c.probes.liveness)).status, 200, 'liveness probe');
  let readyz = { status: 0, text: '' };
  await waitForAsync(async () => (readyz = await agent.get(c.probes.readiness)).status === 200, 30_000, () => `readiness probe: ${readyz.text}`, 100);

  // Made after the agent started: it appears in the container through the HostToContainer mount.
  const backend = node.addPod(2);
  await waitFor(() => (agent.logs.match(/"namespace attached"/g) ?? []).length === 2, 15_000, () => `both namespaces attached: ${agent.logs.slice(-2000)}`);
  await scrapeUntil(agent, (text) => sample(text, 'podflow_capture_handles') === 2, 'both captures open', 15_000);
  const interfaces: SimPod[] = [frontend, backend];
  const readCounters = () => new Map<string, InterfaceCounters>(interfaces.map((p) => [p.netns, node.counters(p.netns, 'eth0')]));
  const before = readCounters();

  const sinks = await Promise.all([node.startSink(backend.netns, ['tcp-sink', '5001']), node.startSink(frontend.netns, ['udp-sink', '7001', '50'])]);
  await Promise.all([
    node.runTraffic(frontend.netns, ['tcp-send', backend.ipv4, '5001', '2000000']),
    node.runTraffic(backend.netns, ['udp-send', frontend.ipv4, '7001', '50', '300']),
    node.run(frontend.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', backend.ipv6]),
  ]);
  await Promise.all(sinks.map((s) => s.closed));
  await node.tcpSettled([frontend.netns, backend.netns]);
  const after = readCounters();
  const truth = interfaces.reduce((s, p) => s + ipOctets('eth0', before.get(p.netns)!, after.get(p.netns)!), 0);
  const frames = interfaces.reduce((s, p) => s + capturedPackets('eth0', before.get(p.netns)!, after.get(p.netns)!), 0);
  // Every packet captured (the ConfigMap's idle timeout, 30 s, keeps every flow open until the stop).
  const scrape = await scrapeUntil(agent, (text) => sample(text, 'podflow_capture_packets_total', { kind: 'pod' }) === frames, `the ${frames} frames of both pods' eth0 captured`, 15_000);
  assert.equal(records.length, 0, 'no flow has ended before the stop');
  assert.equal(sample(scrape, 'podflow_capture_unmetered_packets_total'), 0);

  const memory = memoryCgroup(c.name);
  const rss = sample(scrape, 'process_resident_memory_bytes');
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  t.diagnostic(`container memory cgroup: usage ${mib(memory.usage)}, working set ${mib(memory.workingSet)}, limit ${mib(memory.limit)}; agent RSS ${mib(rss)}`);
  assert.equal(memory.limit, c.limits.memoryBytes, "the cgroup's limit is the manifest's");
  assert.ok(memory.workingSet > 0 && rss > 0);

  const { code, ms } = await c.stop();
  t.diagnostic(`podman stop: exit ${code} after ${ms} ms (grace period ${c.graceSeconds} s)`);
  assert.equal(code, 0, `a clean stop, not SIGKILL: ${agent.stderr}${agent.logs.slice(-2000)}`);
  assert.ok(ms < c.graceSeconds * 1000, `stopped within the grace period (${ms} ms)`);
  assert.match(agent.logs, /"msg":"agent stopped"/);
  await waitFor(() => records.reduce((s, r) => s + octets(r), 0) >= truth, 10_000, () => `every flushed record received: ${records.length}`);
  assert.ok(records.every((r) => r.fields.flowEndReason === 4), 'every flow ended at the stop (forced end)');
  assert.equal(records.reduce((s, r) => s + octets(r), 0), truth, 'octets of every record = the interface counters of both pods');
  const tcp = records.filter((r) => r.fields.destinationTransportPort === 5001);
  assert.equal(tcp.length, 2, 'the TCP flow at both pods');
  for (const r of tcp) assert.deepEqual([podName(r, 'Source'), podName(r, 'Destination'), r.fields.k8sSourceWorkloadName, r.fields.k8sDestinationWorkloadName], ['shop/frontend-5d8f-a', 'data/backend-7c9b-x', 'frontend', 'backend']);
  const icmp = records.filter((r) => r.fields.protocolIdentifier === 58);
  assert.equal(icmp.reduce((s, r) => s + packets(r), 0), 12, 'every ping packet (IPv6) at each pod');
  assert.doesNotMatch(agent.logs, /"level":50/, 'no error logged');
});

for (const [what, cluster, reason] of [
  ['an API server that cannot be reached', 'unreachable', /^not ready: Kubernetes caches not synced \(.*\): cannot reach the Kubernetes API server: /],
  ['no kubeconfig and no in-cluster environment at all', 'none', /^not ready: Kubernetes identity off: cannot use the Kubernetes client configuration: no kubeconfig given and not in a cluster/],
] as const) {
  test(`the image with ${what} captures and exports with identity unknown, counted, and /readyz says why`, { skip, timeout: 900_000 }, async (t) => {
    await buildImage(t);
    const { records, port } = await udpCollector(t);
    const node = new SimNode(t, { offloads: false });
    const [a, b] = [node.addPod(1), node.addPod(2)];
    // Flows end and are named while the agent runs: a 1 s idle timeout, a 2 s hold (kubernetes.holdUnnamedSeconds; without caches there is none).
    const args = ['--set', 'flow.idleTimeoutSeconds=1', '--set', 'kubernetes.holdUnnamedSeconds=2'];
    let options: Pick<PodmanRunOptions, 'cluster' | 'args'> = { args };
    if (cluster === 'unreachable') {
      // A server that listened once: its port, CA and token, with nothing listening now.
      const server = new KubeApiServer();
      await server.start();
      await server.stop();
      options = { args, cluster: { host: '127.0.0.1', port: Number(new URL(server.url).port), token: server.token, ca: server.ca! } };
    }
    const c = await runDaemonSet(t, node, port, options);
    t.after(() => c.agent.kill());
    let readyz = { status: 0, text: '' };
    await waitForAsync(async () => reason.test((readyz = await c.agent.get(c.probes.readiness)).text), 15_000, () => `/readyz saying why: ${readyz.status} ${readyz.text}`, 100);
    assert.equal(readyz.status, 503);
    assert.equal((await c.agent.get(c.probes.liveness)).status, 200);
    await scrapeUntil(c.agent, (text) => sample(text, 'podflow_capture_handles') === 2, 'both captures open', 15_000);
    await node.run(a.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', b.ipv4]);
    await waitFor(() => records.reduce((s, r) => s + packets(r), 0) === 12, 20_000, () => `every ping packet exported at both pods, the agent running (${records.length} records)`);
    for (const r of records) assert.deepEqual([r.fields.k8sSourceEndpointType, r.fields.k8sDestinationEndpointType], ['unknown', 'unknown']);
    const scrape = await scrapeUntil(c.agent, (text) => sample(text, 'podflow_export_records_total') === records.length, 'the records counted as exported');
    assert.equal(sample(scrape, 'podflow_enrich_observed_fallbacks_total', { outcome: 'unknown' }), records.length, 'each unknown observed end counted');
    assert.ok(sample(scrape, 'podflow_lease_lookups_total', { outcome: 'unknown' }) >= records.length, 'each unknown remote end counted');
    assert.equal(sample(scrape, 'podflow_kube_cache_synced', { resource: 'pod' }), 0);

    const { code } = await c.stop();
    assert.equal(code, 0, `a clean stop: ${c.agent.stderr}${c.agent.logs.slice(-2000)}`);
  });
}
