// Needs root: builds a simulated node of network namespaces and captures in them (skips with the reason otherwise).
//
// Ring tiers (netns/capture.ts): a handle starts on a small TPACKET_V2 ring,
// moves to its busy TPACKET_V3 ring under traffic and back when quiet, by a
// PACKET_FANOUT_CBPF hand-over. The claim under test: a move loses and
// repeats nothing, so per observation point the metered octets still equal
// the interface counters exactly, across several moves made while packets flow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openCaptureAsync, type CaptureHandle } from '../../netns/capture.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { canRunSimNode, capturedPackets, type InterfaceCounters, ipOctets, SimNode, type SimPod } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';
import { meteredCapture } from '../helpers/metered-capture.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

const octets = (flows: FlowRecord[]) => flows.reduce((sum, f) => sum + f.octetDeltaCount + f.reverseOctetDeltaCount, 0);

test('moves between the idle and the busy ring under traffic lose and repeat no packet', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)] as [SimPod, SimPod];
  const flows: FlowRecord[] = [];
  const { capture, discovery } = await meteredCapture(t, node, {
    onFlow: (r) => flows.push(r),
    // A low threshold and a short quiet time so the test sees several moves
    // each way. The idle ring is larger than the agent's 128 KiB: this test
    // is about the hand-over, and a TCP burst from idle on two busy cores can
    // overflow 128 KiB (~400 frames) before the move completes (counted as
    // kernel drops; see docs/configuration.md).
    capture: { idleBufferBytes: 1 << 20, busyAbovePacketsPerSecond: 300, idleAfterSeconds: 0.5 },
  });
  capture.start();
  await waitFor(() => capture.handles().length === 4, 3000, 'eth0 and lo handles in two pods');
  assert.deepEqual(capture.counters().handlesByTier, { fixed: 0, idle: 4, busy: 0 });

  const handleOf = (pod: SimPod, ifname: string) =>
    capture.handles().find((h) => h.point.interfaceName === ifname && discovery.get(`${h.point.netnsDev}:${h.point.netnsInode}`)?.paths.includes(pod.nsPath))!;
  const watched = [a, b].flatMap((pod) => ['eth0', 'lo'].map((ifname) => ({ pod, ifname, handle: handleOf(pod, ifname) })));
  const before = new Map<string, InterfaceCounters>(watched.map(({ pod, ifname }) => [`${pod.netns}/${ifname}`, node.counters(pod.netns, ifname)]));

  const udp = await node.startSink(b.netns, ['udp-sink', '6001', '6000']);
  // UDP all along (20 datagrams a millisecond at most), TCP bursts on top: the
  // moves happen while packets flow on eth0 (UDP) and on lo (the lo-tcp bursts).
  const background = node.runTraffic(a.netns, ['udp-send', b.ipv4, '6001', '6000', '200']);
  const tiers: string[] = [];
  const eth0 = watched.find((w) => w.pod === a && w.ifname === 'eth0')!.handle;
  const record = setInterval(() => tiers.push(eth0.stats().tier), 20);
  t.after(() => clearInterval(record));
  for (let round = 0; round < 2; round++) {
    const tcp = await node.startSink(b.netns, ['tcp-sink', String(5001 + round)]);
    await Promise.all([node.runTraffic(a.netns, ['tcp-send', b.ipv4, String(5001 + round), '20000000']), node.runTraffic(a.netns, ['lo-tcp', '5000000'])]);
    await tcp.closed;
    await waitFor(() => eth0.stats().tier === 'busy', 3000, `round ${round}: eth0 on its busy ring`);
    // Quiet apart from the UDP trickle (below a quarter of the threshold once it ends): back to the idle ring.
    await waitFor(() => eth0.stats().tier === 'idle', 10_000, `round ${round}: eth0 back on its idle ring`);
  }
  await background;
  assert.equal(JSON.parse((await udp.closed).output.trim().split('\n').at(-1)!).received, 6000);
  // The last ACKs and FINs are counted too: the counters are final.
  await node.tcpSettled([a.netns, b.netns]);
  const after = new Map<string, InterfaceCounters>(watched.map(({ pod, ifname }) => [`${pod.netns}/${ifname}`, node.counters(pod.netns, ifname)]));
  // Every handle has delivered as many packets as its interface counted (its
  // last block is readable once retired, up to two block timeouts).
  const short = () => watched.filter(({ pod, ifname, handle }) => handle.stats().packets < capturedPackets(ifname, before.get(`${pod.netns}/${ifname}`)!, after.get(`${pod.netns}/${ifname}`)!));
  await waitFor(() => short().length === 0, 5000, () => `every packet delivered; short: ${short().map((w) => `${w.pod.netns}/${w.ifname} ${JSON.stringify(w.handle.stats())}`).join(', ')}`);
  const counters = capture.counters();
  const stats = new Map(watched.map((w) => [w, w.handle.stats()]));
  capture.close();

  for (const [w, s] of stats) t.diagnostic(`${w.pod.netns}/${w.ifname}: ${JSON.stringify(s)}`);
  t.diagnostic(`eth0 tiers seen: ${tiers.filter((x, i) => x !== tiers[i - 1]).join(' → ')}`);
  assert.equal(counters.kernelDrops, 0);
  for (const { pod, ifname, handle } of watched) {
    const key = `${pod.netns}/${ifname}`;
    const expected = ipOctets(ifname, before.get(key)!, after.get(key)!);
    const seen = octets(flows.filter((f) => f.observationPointId === handle.point.id));
    t.diagnostic(`${key}: ${seen} octets, counters say ${expected}`);
    assert.equal(seen, expected, `${key} octets`);
  }
  assert.equal(counters.ringSwitchFailures, 0);
  assert.ok(stats.get(watched.find((w) => w.handle === eth0)!)!.ringSwitches >= 4, 'a sender eth0 moved up and down twice');
  assert.ok(counters.ringSwitches >= 8, `moves on eth0 and lo of both pods: ${counters.ringSwitches}`);
});

test('a handle without ring tiers keeps one fixed ring; a busy threshold never reached keeps the idle ring', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  let packets = 0;
  const open = (options: Parameters<typeof openCaptureAsync>[3]): Promise<CaptureHandle> =>
    openCaptureAsync(pod.nsPath, { id: 1, netnsInode: 0, netnsDev: 0, interfaceName: 'lo', kind: 'loopback' }, (_id, _lt, _buf, start, end) => (packets += end > start ? 1 : 0), options);
  const fixed = await open({});
  const quiet = await open({ idleBufferBytes: 64 << 10, busyAbovePacketsPerSecond: 1_000_000 });
  t.after(() => (fixed.close(), quiet.close()));
  await node.run(pod.netns, 'ping', ['-q', '-c', '50', '-i', '0.002', '127.0.0.1']);
  // The fixed ring's last block is readable once retired (up to two block timeouts).
  await waitFor(() => fixed.stats().packets >= 100 && quiet.stats().packets >= 100, 5000, () => `100 packets on each: ${fixed.stats().packets}, ${quiet.stats().packets}`);
  quiet.adaptRing();
  assert.equal(fixed.stats().tier, 'fixed');
  assert.equal(quiet.stats().tier, 'idle');
  // lo shows each ICMP packet once (libpcap hides the outgoing copy): 50 requests, 50 replies.
  assert.equal(fixed.stats().packets, 100);
  assert.equal(quiet.stats().packets, 100);
  assert.equal(quiet.stats().ringSwitches, 0);
  assert.ok(packets > 0);
});
