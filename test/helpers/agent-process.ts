// `podflow agent` as its own process, as on a node, for the end-to-end tests:
// the pods and ReplicaSets the test API server (sim/kube-apiserver.ts) serves,
// the agent's namespace settings for one SimNode, and start-up: spawned with
// the repository's Node, its JSON log collected, resolved once it logs
// "agent started" with the metrics address it bound. Also what such tests
// stand on (agentHarness: API server, collector, simulated node, config),
// waitReady and sample() for reading a scrape.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CollectedRecord, Collector } from '../../ipfix/collector.ts';
import { SimNode, type SimPod } from '../../sim/simnode.ts';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { KubeApiServer, type KubeObject } from '../../sim/kube-apiserver.ts';
import { waitFor, waitForAsync } from './wait.ts';

export const CLI = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));

/** A running pod on nodeName owned by ReplicaSet rs (label app=rs). */
export function pod(name: string, namespace: string, ip: string, ipv6: string, rs: string, nodeName: string): KubeObject {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, labels: { app: rs }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs, uid: `uid-${rs}`, controller: true }] },
    spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }, { ip: ipv6 }] },
  };
}
export function replicaSet(name: string, namespace: string, deployment: string): KubeObject {
  return { metadata: { name, namespace, uid: `uid-${name}`, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment, uid: `uid-${deployment}`, controller: true }] } };
}

/** The agent's `namespaces` key (YAML flow mapping) for only this SimNode's pods: other tests' simulated nodes use the same addresses. */
export const simNodeNamespaces = (node: SimNode) =>
  `namespaces: {netnsDirs: [/run/netns], proc: false, pathFilter: '^/run/netns/${node.tag}p[0-9]+$', rescanSeconds: 0.2}`;

export interface AgentProcess {
  readonly child: ChildProcess;
  /** stdout so far (JSON lines). */
  readonly logs: string;
  readonly stderr: string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** HOST:PORT of /healthz, /readyz, /metrics. */
  readonly metrics: string;
  get(path: string): Promise<{ status: number; text: string }>;
  /** SIGKILL by PID if still running (for t.after). */
  kill(): void;
}

/**
 * Spawns `podflow agent ARGS` (from cli: agent/cli.ts, or a built
 * dist/agent/cli.js) with env (PATH added) and waits for "agent started". If it exits or never starts, it is killed and this throws with
 * its output.
 */
export function startAgent(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000, cli = CLI): Promise<AgentProcess> {
  const child = spawn(NODE_BIN, [...NODE_FLAGS, cli, 'agent', ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return watchAgent(child, timeoutMs);
}

/**
 * Follows a spawned agent (its own process, or `podman run` of the image,
 * whose output is the agent's) until it logs "agent started". If it exits or
 * never starts, it is killed and this throws with its output.
 */
export async function watchAgent(child: ChildProcess, timeoutMs = 20_000): Promise<AgentProcess> {
  let logs = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (logs += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const kill = () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  };
  try {
    await waitFor(() => /"msg":"agent started"/.test(logs) || child.exitCode !== null, timeoutMs, 'agent started');
  } catch (err) {
    kill();
    throw new Error(`${(err as Error).message}: ${stderr}${logs}`);
  }
  if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${stderr}${logs}`);
  const metrics = JSON.parse(logs.split('\n').find((l) => l.includes('"agent started"'))!).metrics as string;
  return {
    child,
    get logs() {
      return logs;
    },
    get stderr() {
      return stderr;
    },
    exited,
    metrics,
    async get(path: string) {
      // fetch reuses keep-alive connections; one the agent's server has just
      // closed as idle (Node's 5 s keepAliveTimeout) fails with "other side
      // closed" when the test's event loop picked it up late (seen once in
      // CI). A GET is safe to send again, once.
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await fetch(`http://${metrics}${path}`);
          return { status: res.status, text: await res.text() };
        } catch (err) {
          if (attempt > 0 || (err as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw err;
        }
      }
    },
    kill,
  };
}

/** The sum of the samples of a metric in a scrape, over those carrying every given label. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{.*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Polls /metrics until done(scrape) holds; returns that scrape. Times out naming what it waited for, with the podflow samples of the last scrape. */
export async function scrapeUntil(agent: AgentProcess, done: (scrape: string) => boolean, what: string, timeoutMs = 10_000): Promise<string> {
  let text = '';
  await waitForAsync(async () => done((text = (await agent.get('/metrics')).text)), timeoutMs,
    () => `${what}; last scrape:\n${text.split('\n').filter((l) => l.startsWith('podflow_')).join('\n')}`, 100);
  return text;
}

/** Polls /metrics until the sample (summed over labels) equals value; returns that scrape. */
export function metricReaches(agent: AgentProcess, name: string, value: number, timeoutMs = 10_000): Promise<string> {
  return scrapeUntil(agent, (text) => sample(text, name) === value, `${name} = ${value}`, timeoutMs);
}

/** Waits until /readyz answers 200 (capture started, caches synced). */
export async function waitReady(agent: AgentProcess, timeoutMs = 15_000): Promise<void> {
  let readyz = { status: 0, text: '' };
  await waitForAsync(async () => (readyz = await agent.get('/readyz')).status === 200, timeoutMs, () => `the agent ready: ${readyz.text}`, 100);
}

export interface AgentHarness {
  dir: string;
  server: KubeApiServer;
  collector: Collector;
  /** The agent's collector target, as it labels its export metrics. */
  collectorUrl: string;
  /** Flow records (not options records) the collector received. */
  records: CollectedRecord[];
  node: SimNode;
  /** The agent's YAML configuration file. */
  config: string;
  kubeconfig: string;
  /** Set it to the started agent: it is killed after the test. */
  agent?: AgentProcess;
}

/**
 * What an agent end-to-end test stands on: the test API server (with the
 * node object), a TCP collector, a simulated node and an agent configuration
 * for only that node's pods. Everything is removed after the test.
 */
export async function agentHarness(
  t: TestContext,
  options: { nodeName: string; idleTimeoutSeconds: number; shutdownSeconds: number },
): Promise<AgentHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-agent-test-'));
  const server = new KubeApiServer();
  await server.start();
  const records: CollectedRecord[] = [];
  const collector = new Collector({ listen: 'tcp://127.0.0.1:0', onRecord: (r) => !r.options && records.push(r) });
  const collectorUrl = `tcp://127.0.0.1:${(await collector.start()).port}`;
  const h: Partial<AgentHarness> = {};
  t.after(async () => {
    h.agent?.kill();
    await collector.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  server.create('node', { metadata: { name: options.nodeName }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.254' }] } });
  // Offloads off: the tests hold exported octets against interface counters, which count buffers (sim/simnode.ts).
  const node = new SimNode(t, { offloads: false });
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, [
    'clusterName: sim',
    `collectors: ['${collectorUrl}']`,
    'labelKeys: [app]',
    `flow: {idleTimeoutSeconds: ${options.idleTimeoutSeconds}, activeTimeoutSeconds: 300}`,
    simNodeNamespaces(node),
    "metrics: {listen: '127.0.0.1:0'}",
    `shutdown: {timeoutSeconds: ${options.shutdownSeconds}}`,
    // lo too (off by default): the tests hold every interface of a pod to
    // account. 4 MiB rings: with offloads off, a full-speed transfer is
    // ~130k packets/s per pod, more than the default ring holds while the
    // reader thread waits for one of two busy cores; ring sizes are
    // bench/netns/burst-onset's question, not these tests'.
    'capture: {loopback: true, bufferBytes: 4194304}',
    '',
  ].join('\n'));
  return Object.assign(h, { dir, server, collector, collectorUrl, records, node, config, kubeconfig: server.writeKubeconfig(join(dir, 'kubeconfig')) });
}

/**
 * The scene most agent tests use: Deployments frontend (namespace shop, pod
 * frontend-5d8f-a on simulated pod 1) and backend (namespace data, pod
 * backend-7c9b-x on simulated pod 2), in the API server and on the node.
 */
export function addTwoDeployments(h: AgentHarness, nodeName: string): { frontend: SimPod; backend: SimPod } {
  h.server.create('replicaset', replicaSet('frontend-5d8f', 'shop', 'frontend'));
  h.server.create('replicaset', replicaSet('backend-7c9b', 'data', 'backend'));
  h.server.create('pod', pod('frontend-5d8f-a', 'shop', '198.18.0.1', 'fd00::1', 'frontend-5d8f', nodeName));
  h.server.create('pod', pod('backend-7c9b-x', 'data', '198.18.0.2', 'fd00::2', 'backend-7c9b', nodeName));
  return { frontend: h.node.addPod(1), backend: h.node.addPod(2) };
}
