// Needs root: builds a simulated node and deletes a captured pod 100 times (skips with the reason otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { NetnsDiscovery } from '../../netns/discovery.ts';
import { NodeCapture } from '../../netns/node-capture.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, leftovers, SimNode } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const ROUNDS = 100;

const fdCount = () => readdirSync('/proc/self/fd').length;

test(`deleting a captured pod under traffic ${ROUNDS} times ends its flows and leaks no handle or fd`, { skip, timeout: 180_000 }, async (t) => {
  const node = new SimNode(t);
  const source = node.addPod(1);
  const flows: FlowRecord[] = [];
  const meter = new FlowMeter({ idleTimeoutMs: 600_000, activeTimeoutMs: 600_000, maxFlows: 4096, onFlow: (r) => flows.push(r) });
  const ingest = new PacketIngest(new PacketDecoder(), meter);
  const discovery = new NetnsDiscovery({ procRoot: null, rescanIntervalMs: 500 });
  const churned = `/run/netns/${node.tag}p2`;
  const capture = new NodeCapture({
    discovery,
    meter,
    sink: (id, linkType, buf, start, end) => ingest.ingest(id, linkType, buf, start, end),
    namespaceFilter: (ns) => ns.paths.includes(churned),
    interfaceRescanMs: 20,
    // Short block timeout: the first packets arrive quickly after each attach.
    capture: { timeoutMs: 20 },
  });
  t.after(() => {
    capture.close();
    discovery.close();
  });
  await discovery.start();
  capture.start();
  // The pod to be deleted keeps receiving ~2000 datagrams/s from pod 1 throughout.
  const flood = node.spawnTraffic(source.netns, ['udp-flood', '198.18.0.2', '7000', '200', '2']);
  t.after(() => flood.kill('SIGKILL'));
  const fdsBefore = fdCount();
  const attachMs: number[] = [];
  const detachMs: number[] = [];

  for (let round = 0; round < ROUNDS; round++) {
    node.addPod(2);
    attachMs.push(await waitFor(() => capture.handles().length === 2, 3000, `round ${round}: eth0 and lo handles`, 5));
    const [eth0] = capture.handles().filter((h) => h.point.interfaceName === 'eth0');
    const ids = capture.handles().map((h) => h.point.id);
    await waitFor(() => eth0!.stats().packets > 0, 3000, `round ${round}: packets captured`, 5);
    node.removePod(2);
    detachMs.push(await waitFor(() => capture.handles().length === 0, 3000, `round ${round}: handles closed`, 5));
    const ended = flows.filter((f) => f.observationPointId === eth0!.point.id);
    assert.ok(ended.length > 0, `round ${round}: the pod's UDP flow was reported`);
    assert.ok(ended.every((f) => f.flowEndReason === EndReason.FORCED_END));
    assert.ok(flows.filter((f) => ids.includes(f.observationPointId)).every((f) => f.flowEndReason === EndReason.FORCED_END));
  }

  const counters = capture.counters();
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  t.diagnostic(`attach median ${median(attachMs)} ms (max ${Math.max(...attachMs)}), detach median ${median(detachMs)} ms (max ${Math.max(...detachMs)})`);
  t.diagnostic(`counters ${JSON.stringify(counters)}`);
  assert.equal(counters.handlesOpen, 0);
  assert.equal(counters.namespacesAttached, 0);
  assert.equal(counters.handlesOpened, 2 * ROUNDS);
  // Every eth0 handle stopped because its veth was deleted, not because of a crash.
  assert.equal(counters.handlesLost, ROUNDS);
  assert.equal(counters.openFailures, 0);
  assert.equal(meter.stats.active, 0);
  assert.equal(fdCount(), fdsBefore);
  assert.deepEqual(leftovers(`${node.tag}p2`), []);
});
