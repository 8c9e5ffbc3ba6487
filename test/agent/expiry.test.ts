// Needs root: a simulated node of network namespaces (skips with the reason otherwise).
//
// The agent times flows out on the packets' clock: a flow is not split by
// its own packets still waiting in a kernel ring. With the idle timeout at
// 1 s (whole seconds, ipfixprobe's rule), a steady ping flow ends at each
// second boundary it crosses, and only there: the packet that starts the next
// record is in a later second than the last packet of the one before. Timed
// out on the wall clock instead, a flow was ended while a packet of the same
// second was still in a TPACKET_V3 ring (up to two 100 ms block timeouts),
// and that packet became a record of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CollectedRecord } from '../../ipfix/collector.ts';
import { canRunSimNode } from '../../sim/simnode.ts';
import { addTwoDeployments, agentHarness, metricReaches, startAgent, waitReady } from '../helpers/agent-process.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const NODE = 'sim-node';

test('a flow is never split inside one second by its own packets queued in the capture ring', { skip, timeout: 60_000 }, async (t) => {
  // TPACKET_V3 rings: packets are handed over up to ~200 ms after they arrive.
  const h = await agentHarness(t, { nodeName: NODE, idleTimeoutSeconds: 1, shutdownSeconds: 5 });
  const { frontend, backend } = addTwoDeployments(h, NODE);
  const agent = (h.agent = await startAgent(['--config', h.config, '--kubeconfig', h.kubeconfig], { NODE_NAME: NODE }));
  await metricReaches(agent, 'podflow_capture_handles', 2);
  await waitReady(agent);

  await h.node.run(frontend.netns, 'ping', ['-q', '-c', '80', '-i', '0.05', backend.ipv4]);
  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0);

  const second = (ms: unknown) => Math.floor(Number(ms) / 1000);
  const byPoint = Map.groupBy(h.records.filter((r) => r.fields.protocolIdentifier === 1), (r) => String(r.fields.observationPointId));
  assert.equal(byPoint.size, 2, 'the ping flow, seen at both pods');
  for (const [point, flows] of byPoint) {
    const ordered = flows.toSorted((a, b) => Number(a.fields.flowStartMilliseconds) - Number(b.fields.flowStartMilliseconds));
    const packets = (r: CollectedRecord) => Number(r.fields.packetDeltaCount) + Number(r.fields.reversePacketDeltaCount ?? 0);
    assert.equal(ordered.reduce((sum, r) => sum + packets(r), 0), 160, `every ping packet at point ${point}`);
    t.diagnostic(`point ${point}: ${ordered.map((r) => `${r.fields.flowStartMilliseconds}-${r.fields.flowEndMilliseconds}/${packets(r)}`).join(' ')}`);
    for (let i = 1; i < ordered.length; i++) {
      const [previous, next] = [ordered[i - 1]!, ordered[i]!];
      assert.ok(
        second(next.fields.flowStartMilliseconds) > second(previous.fields.flowEndMilliseconds),
        `record ${i} at point ${point} starts in the second the one before ended: ${previous.fields.flowEndMilliseconds} → ${next.fields.flowStartMilliseconds}`,
      );
    }
  }
});
