// Needs root: creates network namespaces and opens packet sockets (skips with the reason otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type CaptureHandle, type InterfaceBatchSink, openCaptureAsync } from '../../netns/capture.ts';
import { PodflowError } from '../../common/errors.ts';
import { RECORD_HEADER_BYTES, VNET_HEADER_BYTES } from '../../flow/records.ts';
import { canRunSimNode, SimNode, type SimPod } from '../../sim/simnode.ts';
import { failOnThrow } from '../helpers/fail-on-throw.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const fdCount = () => readdirSync('/proc/self/fd').length;
const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;

/** The namespace at the pod's path now (what a capture must still find there). */
function nsOf(pod: SimPod): { inode: number; dev: number } {
  const st = statSync(pod.nsPath);
  return { inode: st.ino, dev: st.dev };
}

/** An interface's index inside the pod's namespace. */
function ifindex(node: SimNode, pod: SimPod, ifname: string): number {
  return Number(node.exec(pod.netns, 'cat', [`/sys/class/net/${ifname}/ifindex`]).trim());
}

interface CapturedRecord {
  ifindex: number;
  hatype: number;
  tsMs: number;
  caplen: number;
  wirelen: number;
}

function collect(records: CapturedRecord[]): InterfaceBatchSink {
  return failOnThrow((ifindex: number, hatype: number, buf: Uint8Array, start: number, end: number, count: number) => {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let n = 0;
    for (let at = start; at < end; n++) {
      const caplen = view.getUint32(at + 8, true);
      records.push({ ifindex, hatype, tsMs: view.getUint32(at, true) * 1000 + view.getUint32(at + 4, true) / 1000, caplen, wirelen: view.getUint32(at + 12, true) });
      at += RECORD_HEADER_BYTES + caplen;
    }
    assert.equal(n, count, 'the batch holds count records');
  });
}

test('a failed open rejects with a clear error, leaks no fd, and a later forced GC does not crash', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const sink = () => {};
  // Warm-up: the first open starts the reader thread (an epoll fd, an eventfd), which is not a leak.
  (await openCaptureAsync(pod.nsPath, nsOf(pod), sink)).close();
  gc();
  const before = fdCount();
  const other = { inode: nsOf(pod).inode + 1, dev: nsOf(pod).dev };
  for (let i = 0; i < 50; i++) {
    await assert.rejects(openCaptureAsync('/run/netns/pf-gone', { inode: 0, dev: 0 }, sink), (err: unknown) =>
      err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER' && /ENOENT/.test(err.message));
    // The path names another namespace now (a pod's name came back): not this capture's.
    await assert.rejects(openCaptureAsync(pod.nsPath, other, sink), (err: unknown) =>
      err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER' && /ESTALE/.test(err.message));
  }
  await assert.rejects(openCaptureAsync(pod.nsPath, nsOf(pod), sink, { snaplen: 0 }), { code: 'PODFLOW_ERR_NETNS_CONFIG' });
  gc();
  gc();
  assert.equal(fdCount(), before);
});

test('delivers batches of one interface each, with kernel timestamps and the vnet header, captured inside the namespace', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const records: CapturedRecord[] = [];
  const handle = await openCaptureAsync(b.nsPath, nsOf(b), collect(records));
  t.after(() => handle.close());
  const startMs = Date.now();
  await node.runTraffic(a.netns, ['udp-send', b.ipv4, '9', '300', '1000']);
  // lo's packets are left out by default.
  await node.run(b.netns, 'ping', ['-q', '-c', '3', '-i', '0.01', '127.0.0.1']);
  // The datagrams, and the few ICMP port-unreachable replies (rate-limited) nothing listens on port 9.
  const datagrams = () => records.filter((r) => r.wirelen === 14 + 20 + 8 + 1000);
  await waitFor(() => datagrams().length >= 300 && handle.stats().packets >= handle.stats().received, 5000,
    () => `300 datagrams delivered: ${datagrams().length}; ${JSON.stringify(handle.stats())}`);
  const endMs = Date.now();
  const eth0 = ifindex(node, b, 'eth0');
  assert.equal(datagrams().length, 300);
  assert.ok(records.length - datagrams().length <= 10);
  assert.ok(records.every((r) => r.ifindex === eth0 && r.hatype === ARPHRD_ETHER), 'eth0 only: lo is left out');
  assert.ok(handle.stats().batches < records.length, `${handle.stats().batches} batches for ${records.length} packets`);
  for (const r of records) {
    assert.equal(r.caplen, VNET_HEADER_BYTES + Math.min(r.wirelen, 256));
    assert.ok(r.tsMs >= startMs - 5 && r.tsMs <= endMs, `timestamp ${r.tsMs} within [${startMs}, ${endMs}]`);
  }
  const stats = handle.stats();
  assert.equal(stats.packets, records.length);
  assert.equal(stats.dropped, 0);
  handle.close();
  handle.close();
  assert.equal(handle.closed, true);
});

test('DNS packets (port 53) are kept to dnsSnaplen, every other packet to snaplen, on IPv4 and IPv6', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const records: CapturedRecord[] = [];
  const handle = await openCaptureAsync(b.nsPath, nsOf(b), collect(records), { snaplen: 256, dnsSnaplen: 2048 });
  t.after(() => handle.close());
  // 1000-byte datagrams to port 53 and to port 54, each over IPv4 and IPv6; 3000 bytes to port 53 (cut at dnsSnaplen).
  for (const [host, port, size] of [[b.ipv4, '53', 1000], [b.ipv4, '54', 1000], [b.ipv6, '53', 1000], [b.ipv6, '54', 1000], [b.ipv4, '53', 3000]] as const) {
    await node.runTraffic(a.netns, ['udp-send', host, port, '5', String(size)]);
  }
  const sized = (wirelen: number) => records.filter((r) => r.wirelen === wirelen);
  const v4 = 14 + 20 + 8 + 1000;
  const v6 = 14 + 40 + 8 + 1000;
  await waitFor(() => sized(v4).length >= 10 && sized(v6).length >= 10 && handle.stats().packets >= handle.stats().received, 5000,
    () => `datagrams delivered: ${records.length}; ${JSON.stringify(handle.stats())}`);
  const caplens = (wirelen: number) => sized(wirelen).map((r) => r.caplen - VNET_HEADER_BYTES).sort((x, y) => x - y);
  // Five of each size kept whole (port 53), five cut at 256 (port 54).
  assert.deepEqual(caplens(v4), [...Array<number>(5).fill(256), ...Array<number>(5).fill(v4)]);
  assert.deepEqual(caplens(v6), [...Array<number>(5).fill(256), ...Array<number>(5).fill(v6)]);
  // The 3000-byte datagrams left in fragments of a 1500-byte MTU: the first
  // (with the ports) kept whole, the second (no ports: not known as DNS) cut.
  await waitFor(() => sized(14 + 1500).length >= 10, 5000, () => `fragments delivered: ${sized(14 + 1500).length}`);
  assert.deepEqual(caplens(14 + 1500), [...Array<number>(5).fill(256), ...Array<number>(5).fill(14 + 1500)]);
  assert.equal(handle.stats().dropped, 0);
});

test('lo is captured when asked, each packet once (not leaving and arriving)', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const records: CapturedRecord[] = [];
  const handle = await openCaptureAsync(pod.nsPath, nsOf(pod), collect(records), { loopback: true });
  t.after(() => handle.close());
  await node.run(pod.netns, 'ping', ['-q', '-c', '5', '-i', '0.01', '127.0.0.1']);
  await handle.finish();
  assert.equal(records.filter((r) => r.ifindex === 1 && r.hatype === ARPHRD_LOOPBACK).length, 10, 'five echo requests and five replies');
  assert.equal(records.length, 10);
});

test('an interface that appears after the capture opened is captured from its first packet', { skip }, async (t) => {
  const node = new SimNode(t);
  node.addPod(1);
  // The namespace as the container runtime makes it, before the CNI plugin runs.
  const pod = node.addPod(2, { plugged: false });
  const records: CapturedRecord[] = [];
  const handle = await openCaptureAsync(pod.nsPath, nsOf(pod), collect(records));
  t.after(() => handle.close());
  // A sender in the pod that sends from the first moment the stack takes a datagram.
  const sender = node.spawnTraffic(pod.netns, ['udp-send-asap', '198.18.0.1', '9', '200', '100']);
  let output = '';
  sender.stdout!.on('data', (d: Buffer) => (output += d));
  await waitFor(() => output.includes('ready'), 5000, 'the sender trying');
  const exited = new Promise((resolve) => sender.once('exit', resolve));
  node.plugPod(2);
  await exited;
  const sent = JSON.parse(output.trim().split('\n').at(-1)!) as { sent: number; attempts: number };
  assert.equal(sent.sent, 200);
  await handle.finish();
  const eth0 = ifindex(node, pod, 'eth0');
  const counters = node.counters(pod.netns, 'eth0');
  const out = records.filter((r) => r.ifindex === eth0 && r.wirelen === 14 + 20 + 8 + 100);
  t.diagnostic(`${sent.attempts - sent.sent} sends refused before the route; eth0 counted ${counters.txPackets} out, ${counters.rxPackets} in; ${records.length} captured`);
  assert.equal(out.length, 200, 'every datagram, the first one too');
  // Everything that ever crossed the new eth0, each way.
  assert.equal(records.filter((r) => r.ifindex === eth0).length, counters.txPackets + counters.rxPackets);
});

test('an interface deleted under capture: its packets up to the deletion are delivered, the handle lives on', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const flood = node.spawnTraffic(a.netns, ['udp-flood', b.ipv4, '9', '200']);
  t.after(() => flood.kill('SIGKILL'));
  const records: CapturedRecord[] = [];
  const handle = await openCaptureAsync(b.nsPath, nsOf(b), collect(records));
  t.after(() => handle.close());
  await waitFor(() => handle.stats().packets > 0, 5000, 'the flood captured');
  const eth0 = ifindex(node, b, 'eth0');
  // The veth goes (the node end takes its peer with it); the namespace stays.
  node.exec(node.nodeNetns, 'ip', ['link', 'del', b.nodeVeth]);
  await handle.finish();
  assert.equal(handle.closed, true);
  const s = handle.stats();
  t.diagnostic(JSON.stringify(s));
  assert.equal(s.unread, 0, 'the last block was read before the close');
  assert.equal(s.packets, s.received - s.dropped - s.queueDropped);
  assert.ok(records.every((r) => r.ifindex === eth0));
});

test('closing delivers what the kernel handed over and counts what it had not as unread', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const handle: CaptureHandle = await openCaptureAsync(b.nsPath, nsOf(b), () => {}, { timeoutMs: 1000 });
  t.after(() => handle.close());
  // Far fewer packets than a ring block holds, within one block timeout: still in the block the kernel fills.
  await node.runTraffic(a.netns, ['udp-send', b.ipv4, '9', '20', '100']);
  await waitFor(() => handle.stats().received >= 20, 5000, 'the kernel took the datagrams');
  handle.close();
  const s = handle.stats();
  assert.equal(s.packets + s.unread, s.received, JSON.stringify(s));
  assert.ok(s.unread > 0, 'the unretired block is counted, not silently lost');
});
