// `podflow agent` as its own process, as on a node, for the end-to-end tests:
// the pods and ReplicaSets the test API server (sim/kube-apiserver.ts) serves,
// the agent's namespace settings for one SimNode, and start-up: spawned with
// the repository's Node, its JSON log collected, resolved once it logs
// "agent started" with the metrics address it bound.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NODE_BIN, type SimNode } from '../../sim/simnode.ts';
import type { KubeObject } from '../../sim/kube-apiserver.ts';
import { waitFor } from './wait.ts';

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
 * Spawns `podflow agent ARGS` with env (PATH added) and waits for "agent
 * started". If it exits or never starts, it is killed and this throws with
 * its output.
 */
export async function startAgent(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<AgentProcess> {
  const child = spawn(NODE_BIN, [CLI, 'agent', ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
      const res = await fetch(`http://${metrics}${path}`);
      return { status: res.status, text: await res.text() };
    },
    kill,
  };
}
