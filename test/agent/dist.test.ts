// Needs root: the simulated node. The container image runs the agent as
// JavaScript built by scripts/build-dist.sh, not the .ts the other tests run:
// build it (inside the repository, where node_modules resolves; only when its
// sources changed since the last build there) and run that form end to end:
// capture, identity of both ends, export, metrics, the return of free memory
// after the caches' sync (the addon's one V8 call).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canRunSimNode } from '../../sim/simnode.ts';
import { addTwoDeployments, agentHarness, metricReaches, sample, startAgent, waitReady } from '../helpers/agent-process.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'pf-dist-node';
const root = fileURLToPath(new URL('../../', import.meta.url));

test('the built JavaScript agent (the image\'s form) captures, names both ends and exports', { skip, timeout: 60_000 }, async (t) => {
  const out = join(root, 'tmp', 'test-dist');
  execFileSync('bash', [join(root, 'scripts/build-dist.sh'), '--if-changed', out], { stdio: 'pipe' });

  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 1, shutdownSeconds: 5 });
  const { frontend, backend } = addTwoDeployments(h, NODE);
  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }, 20_000, join(out, 'agent/cli.js')));
  await waitReady(agent);
  await metricReaches(agent, 'podflow_capture_handles', 2);
  await h.node.run(frontend.netns, 'ping', ['-q', '-c', '3', '-i', '0.05', backend.ipv4]);
  const icmp = () => h.records.filter((r) => r.fields.protocolIdentifier === 1);
  await waitFor(() => icmp().length === 2, 10_000, 'the ping flow from both pods');
  for (const r of icmp()) {
    assert.equal(r.fields.k8sSourcePodName, 'frontend-5d8f-a');
    assert.equal(r.fields.k8sDestinationPodName, 'backend-7c9b-x');
    assert.equal(r.fields.k8sDestinationWorkloadName, 'backend');
  }
  assert.ok(sample((await agent.get('/metrics')).text, 'podflow_capture_packets_total') >= 12);
  // After the caches' first sync (looked at every 10 s) the agent returns free memory through the addon's V8 call, and says so.
  const returned = () => agent.logs.split('\n').find((l) => l.includes("returned free memory after the caches' lists"));
  await waitFor(() => returned() !== undefined, 15_000, 'the free memory returned after the sync');
  const fields = JSON.parse(returned()!) as { rssBeforeBytes: number; rssAfterBytes: number; pauseMs: number };
  assert.ok(fields.rssAfterBytes > 0 && fields.rssBeforeBytes > 0 && fields.pauseMs >= 0, returned());
  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0);
});
