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
  const { capture, meter, pointOf } = await meteredCapture(t, node, {
    onFlow: (r) => flows.push(r),
    namespaceFilter: (ns) => ns.paths.includes(churned),
    discoveryRescanMs: 500,
    // Short block timeout: the first packets arrive quickly after each attach.
    capture: { timeoutMs: 20 },
  });
  const closed: Array<Extract<NodeCaptureEvent, { type: 'closed' }>> = [];
  capture.on('event', (e) => e.type === 'closed' && closed.push(e));
  capture.start();
  // The pod to be deleted keeps receiving ~2000 datagrams/s from pod 1 throughout.
  const flood = node.spawnTraffic(source.netns, ['udp-flood', '198.18.0.2', '7000', '200', '2']);
  t.after(() => flood.kill('SIGKILL'));
  // Taken after the first round: the first capture starts the reader thread, with an epoll fd and an eventfd for good.
  let fdsBefore = 0;
  const attachMs: number[] = [];
  const detachMs: number[] = [];

  for (let round = 0; round < ROUNDS; round++) {
    const pod = node.addPod(2);
    attachMs.push(await waitFor(() => capture.counters().handlesOpen === 1, 3000, `round ${round}: the pod's capture open`, 5));
    await waitFor(() => pointOf(pod, 'eth0') !== undefined && capture.points().some((p) => p.point.id === pointOf(pod, 'eth0') && p.packets > 0), 3000, `round ${round}: packets captured`, 5);
    const eth0 = pointOf(pod, 'eth0')!;
    node.removePod(2);
    detachMs.push(await waitFor(() => capture.counters().handlesOpen === 0, 3000, `round ${round}: capture closed`, 5));
    const ended = flows.filter((f) => f.observationPointId === eth0);
    assert.ok(ended.length > 0, `round ${round}: the pod's UDP flow was reported`);
    assert.ok(ended.every((f) => f.flowEndReason === EndReason.FORCED_END));
    if (round === 0) fdsBefore = fdCount();
  }

  const counters = capture.counters();
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  t.diagnostic(`attach median ${median(attachMs)} ms (max ${Math.max(...attachMs)}), detach median ${median(detachMs)} ms (max ${Math.max(...detachMs)})`);
  t.diagnostic(`counters ${JSON.stringify(counters)}`);
  assert.equal(counters.handlesOpen, 0);
  assert.equal(counters.namespacesAttached, 0);
  assert.equal(counters.handlesOpened, ROUNDS);
  assert.equal(counters.pointsOpened, ROUNDS, 'one point per round: eth0 (lo carries nothing)');
  assert.equal(closed.length, ROUNDS, 'every point closed once');
  // A namespace's capture ends when discovery reports it gone, never lost (a socket bound to all its interfaces outlives its veth).
  assert.deepEqual(closed.filter((e) => e.reason !== undefined).map((e) => e.reason!.message), []);
  assert.equal(counters.handlesLost, 0);
  assert.equal(counters.openFailures, 0);
  assert.equal(counters.unreadAtClose, 0, 'every packet the kernel took was read');
  assert.equal(meter.stats.active, 0);
  assert.equal(fdCount(), fdsBefore);
  assert.deepEqual(leftovers(`${node.tag}p2`), []);
});
