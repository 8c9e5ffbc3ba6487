// Needs root: builds a simulated node and deletes a captured pod again and
// again (skips with the reason otherwise). 10 rounds in the suite show a leak
// of handles or fds; PODFLOW_CHURN_ROUNDS=100 ./run test test/netns/churn.test.ts
// runs the long version (not in `./run test`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import type { NodeCaptureEvent } from '../../netns/node-capture.ts';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, leftovers, SimNode } from '../../sim/simnode.ts';
import { meteredCapture } from '../helpers/metered-capture.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const ROUNDS = Number(process.env.PODFLOW_CHURN_ROUNDS ?? 10);

const fdCount = () => readdirSync('/proc/self/fd').length;

test(`deleting a captured pod under traffic ${ROUNDS} times ends its flows and leaks no handle or fd`, { skip, timeout: 60_000 + ROUNDS * 1000 }, async (t) => {
  assert.ok(Number.isInteger(ROUNDS) && ROUNDS > 0, `PODFLOW_CHURN_ROUNDS must be a positive integer, got ${process.env.PODFLOW_CHURN_ROUNDS}`);
  const node = new SimNode(t);
  const source = node.addPod(1);
  const flows: FlowRecord[] = [];
  const churned = `/run/netns/${node.tag}p2`;
  const { capture, meter } = await meteredCapture(t, node, {
    onFlow: (r) => flows.push(r),
    namespaceFilter: (ns) => ns.paths.includes(churned),
    discoveryRescanMs: 500,
    interfaceRescanMs: 20,
    // Short block timeout: the first packets arrive quickly after each attach.
    capture: { timeoutMs: 20 },
  });
  const closed: Array<Extract<NodeCaptureEvent, { type: 'closed' }>> = [];
  capture.on('event', (e) => e.type === 'closed' && closed.push(e));
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
  const lost = closed.filter((e) => e.reason !== undefined);
  t.diagnostic(`attach median ${median(attachMs)} ms (max ${Math.max(...attachMs)}), detach median ${median(detachMs)} ms (max ${Math.max(...detachMs)})`);
  t.diagnostic(`counters ${JSON.stringify(counters)}; ${lost.length} handles lost under capture, ${closed.length - lost.length} closed at the namespace's removal`);
  assert.equal(counters.handlesOpen, 0);
  assert.equal(counters.namespacesAttached, 0);
  assert.equal(counters.handlesOpened, 2 * ROUNDS);
  assert.equal(closed.length, 2 * ROUNDS, 'every handle closed once');
  // A handle stops either way: its veth deleted under it (CAPTURE_LOST), or
  // closed when discovery reports the namespace gone; which comes first is a
  // race. Never for another reason (a crash of the capture).
  assert.deepEqual(lost.filter((e) => e.reason!.code !== 'PODFLOW_ERR_NETNS_CAPTURE_LOST').map((e) => e.reason!.message), []);
  assert.equal(counters.handlesLost, lost.length);
  assert.equal(counters.openFailures, 0);
  assert.equal(meter.stats.active, 0);
  assert.equal(fdCount(), fdsBefore);
  assert.deepEqual(leftovers(`${node.tag}p2`), []);
});
