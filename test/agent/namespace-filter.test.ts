// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// namespaces.pathFilter against what the user configured: with netnsDirs
// [/var/run/netns] (a symlink to /run/netns), a filter written against
// /var/run/netns attaches; a filter that matches nothing is said once in the
// log, not only by podflow_namespaces_attached staying 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { canRunSimNode } from '../../sim/simnode.ts';
import { agentHarness, metricReaches, sample, scrapeUntil, simNodeNamespaces, startAgent, type AgentHarness } from '../helpers/agent-process.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const varRunIsRun = (() => {
  try {
    return realpathSync('/var/run/netns') === '/run/netns';
  } catch {
    return false;
  }
})();
const skip = !env.ok ? env.reason : varRunIsRun ? false : '/var/run/netns is not /run/netns here';
const NODE = 'sim-node';

/** The harness's configuration with its namespaces line replaced. */
function withNamespaces(h: AgentHarness, line: string): string {
  const text = readFileSync(h.config, 'utf8');
  assert.ok(text.includes(simNodeNamespaces(h.node)));
  writeFileSync(h.config, text.replace(simNodeNamespaces(h.node), () => line));
  return h.config;
}

test('a pathFilter written against the configured /var/run/netns attaches its namespaces', { skip, timeout: 60_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 5, shutdownSeconds: 5 });
  h.node.addPod(1);
  const config = withNamespaces(h, `namespaces: {netnsDirs: [/var/run/netns], proc: false, pathFilter: '^/var/run/netns/${h.node.tag}p[0-9]+$', rescanSeconds: 0.2}`);
  const agent = (h.agent = await startAgent(['--config', config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  await metricReaches(agent, 'podflow_namespaces_attached', 1);
  assert.doesNotMatch(agent.logs, /pathFilter excludes every namespace/);
});

test('a pathFilter that excludes every namespace found is logged once', { skip, timeout: 60_000 }, async (t) => {
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 5, shutdownSeconds: 5 });
  h.node.addPod(1);
  const config = withNamespaces(h, `namespaces: {netnsDirs: [/var/run/netns], proc: false, pathFilter: '^/var/run/netns/${h.node.tag}-none$', rescanSeconds: 0.2}`);
  const agent = (h.agent = await startAgent(['--config', config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  const warnings = () => agent.logs.split('\n').filter((l) => l.includes('namespaces.pathFilter excludes every namespace found'));
  await waitFor(() => warnings().length === 1, 10_000, 'the warning');
  const line = JSON.parse(warnings()[0]!) as { pathFilter: string; namespaces: number };
  assert.equal(line.pathFilter, `^/var/run/netns/${h.node.tag}-none$`);
  assert.ok(line.namespaces >= 1);

  // Another namespace appears and is excluded too: no second warning once discovery has scanned twice since.
  h.node.addPod(2);
  const scans = sample((await agent.get('/metrics')).text, 'podflow_namespace_scans_total');
  const text = await scrapeUntil(agent, (scrape) => sample(scrape, 'podflow_namespace_scans_total') >= scans + 2, 'two more scans');
  assert.equal(sample(text, 'podflow_namespaces_attached'), 0);
  assert.equal(warnings().length, 1);
});
