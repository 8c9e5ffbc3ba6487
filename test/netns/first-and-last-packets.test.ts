// Needs root: creates network namespaces and opens packet sockets (skips with the reason otherwise).
//
// A pod's first and last packets: captured like every other. The capture of
// a namespace opens when the namespace appears, before its veth does, and it
// reads the kernel's last ring block before it closes when the namespace
// goes. Judged by the pod's interface counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meteredCapture } from '../helpers/metered-capture.ts';
import { waitFor } from '../helpers/wait.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, ipOctets, SimNode } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const ROUNDS = 20;

const octets = (flows: FlowRecord[]) => flows.reduce((n, f) => n + f.octetDeltaCount + f.reverseOctetDeltaCount, 0);
const packets = (flows: FlowRecord[]) => flows.reduce((n, f) => n + f.packetDeltaCount + f.reversePacketDeltaCount, 0);

test('a pod that sends the moment its address is up: every packet from the first on is in its flows', { skip }, async (t) => {
  // Offloads off: every packet is one on the counters, the ground truth.
  const node = new SimNode(t, { offloads: false });
  node.addPod(1);
  const flows: FlowRecord[] = [];
  const { capture, pointOf } = await meteredCapture(t, node, { onFlow: (r) => flows.push(r) });
  capture.start();
  // The namespace as the container runtime makes it; the CNI plugin comes later.
  const pod = node.addPod(2, { plugged: false });
  await waitFor(() => capture.counters().handlesOpen === 1, 5000, 'the new namespace captured');
  const sender = node.spawnTraffic(pod.netns, ['udp-send-asap', '198.18.0.1', '9', '100', '200']);
  let output = '';
  sender.stdout!.on('data', (d: Buffer) => (output += d));
  await waitFor(() => output.includes('ready'), 5000, 'the sender trying');
  const interfaceUp = performance.now();
  let firstCaptured: number | undefined;
  capture.on('event', (e) => e.type === 'opened' && e.point.interfaceName === 'eth0' && (firstCaptured = performance.now()));
  const exited = new Promise((resolve) => sender.once('exit', resolve));
  node.plugPod(2);
  await exited;
  const counters = node.counters(pod.netns, 'eth0');
  await capture.stop();
  const atPod = flows.filter((f) => f.observationPointId === pointOf(pod, 'eth0'));
  t.diagnostic(`first packet of eth0 captured ${(firstCaptured! - interfaceUp).toFixed(1)} ms after the CNI step began; ${JSON.parse(output.trim().split('\n').at(-1)!).attempts - 100} sends refused before the route`);
  assert.equal(atPod.filter((f) => f.protocolIdentifier === 17 && f.destinationTransportPort === 9).reduce((n, f) => n + f.packetDeltaCount, 0), 100, 'every datagram, the first one too');
  assert.equal(packets(atPod), counters.txPackets + counters.rxPackets, 'everything that ever crossed the new eth0');
  assert.equal(octets(atPod), ipOctets('eth0', { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxDropped: 0, txDropped: 0 }, counters));
});

test("a pod's interfaces and addresses are reported as they change, told by the namespace's netlink notifications (nothing polls)", { skip }, async (t) => {
  const node = new SimNode(t);
  const { capture, pointOf } = await meteredCapture(t, node, { onFlow: () => {} });
  const listings: Array<{ at: number; eth0: string[] | undefined }> = [];
  capture.on('event', (e) => e.type === 'interfaces' && listings.push({ at: performance.now(), eth0: e.interfaces.find((i) => i.name === 'eth0')?.addresses.map((a) => a.address) }));
  capture.start();
  const pod = node.addPod(1, { plugged: false });
  await waitFor(() => capture.counters().handlesOpen === 1, 5000, 'the new namespace captured');
  assert.deepEqual(listings.map((l) => l.eth0), [undefined], 'listed once at attach: no eth0 yet');
  // The CNI step: the veth moves in and gets its addresses.
  const plugged = performance.now();
  node.plugPod(1);
  await waitFor(() => listings.at(-1)?.eth0?.includes(pod.ipv4) === true, 5000, 'eth0 and its address listed');
  t.diagnostic(`eth0's address listed ${(listings.at(-1)!.at - plugged).toFixed(1)} ms after the CNI step began`);
  // Once eth0 has its observation point, a listing comes only from a netlink notification
  // (the capture lists a namespace at attach, at its open and at a new interface's first packet).
  await node.runTraffic(pod.netns, ['udp-send', '198.18.0.99', '9', '1', '10']);
  await waitFor(() => pointOf(pod, 'eth0') !== undefined, 5000, "eth0's first packet");
  const second = '198.18.0.201';
  node.exec(pod.netns, 'ip', ['addr', 'add', `${second}/24`, 'dev', 'eth0']);
  await waitFor(() => listings.at(-1)?.eth0?.includes(second) === true, 5000, 'an address added later listed');
  node.exec(pod.netns, 'ip', ['addr', 'del', `${second}/24`, 'dev', 'eth0']);
  await waitFor(() => listings.at(-1)?.eth0?.includes(second) === false, 5000, 'the address gone from the listing');
});

test(`a pod deleted under traffic, ${ROUNDS} times: its exported bytes are its interface's at the deletion, with no wait before it`, { skip, timeout: 120_000 }, async (t) => {
  const node = new SimNode(t, { offloads: false });
  const peer = node.addPod(1);
  const flows: FlowRecord[] = [];
  const { capture, pointOf } = await meteredCapture(t, node, { onFlow: (r) => flows.push(r) });
  capture.start();
  for (let round = 0; round < ROUNDS; round++) {
    const pod = node.addPod(2);
    await waitFor(() => capture.counters().handlesOpen === 2, 5000, `round ${round}: captures open`);
    // Traffic both ways: the peer floods the pod, the pod floods the peer.
    const inbound = node.spawnTraffic(peer.netns, ['udp-flood', pod.ipv4, '7000', '300', '2']);
    const outbound = node.spawnTraffic(pod.netns, ['udp-flood', peer.ipv4, '7001', '200', '2']);
    await waitFor(() => capture.points().some((p) => p.point.id === pointOf(pod, 'eth0') && p.packets > 100), 5000, `round ${round}: traffic captured`);
    // The pod's teardown: its processes end, then (no wait) its veth and namespace go.
    // The peer's flood is frozen first, so the counters read now are the interface's last.
    process.kill(inbound.pid!, 'SIGSTOP');
    process.kill(outbound.pid!, 'SIGKILL');
    await new Promise((resolve) => outbound.once('exit', resolve));
    const counters = node.counters(pod.netns, 'eth0');
    const eth0 = pointOf(pod, 'eth0')!;
    node.removePod(2);
    process.kill(inbound.pid!, 'SIGKILL');
    await waitFor(() => capture.counters().handlesOpen === 1, 5000, `round ${round}: the pod's capture closed`);
    const atPod = flows.filter((f) => f.observationPointId === eth0);
    const truth = ipOctets('eth0', { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, rxDropped: 0, txDropped: 0 }, counters);
    assert.equal(octets(atPod), truth, `round ${round}: exported octets = the interface's (${counters.txPackets} out, ${counters.rxPackets} in)`);
    assert.equal(packets(atPod), counters.txPackets + counters.rxPackets, `round ${round}: packets`);
  }
  const c = capture.counters();
  t.diagnostic(JSON.stringify(c));
  assert.equal(c.unreadAtClose + c.kernelDrops + c.queueDrops, 0);
});
