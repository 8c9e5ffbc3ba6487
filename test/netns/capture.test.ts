// Needs root: creates network namespaces and opens packet sockets (skips with the reason otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type CaptureHandle, type ObservationPoint, openCaptureAsync } from '../../netns/capture.ts';
import { PodflowError } from '../../common/errors.ts';
import { LinkType, RECORD_HEADER_BYTES } from '../../flow/types.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';
import { failOnThrow } from '../helpers/fail-on-throw.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const fdCount = () => readdirSync('/proc/self/fd').length;

function point(id: number, interfaceName: string): ObservationPoint {
  return { id, netnsInode: 0, netnsDev: 0, interfaceName, kind: interfaceName === 'lo' ? 'loopback' : 'pod' };
}

interface CapturedRecord {
  tsMs: number;
  caplen: number;
  wirelen: number;
}

function collect(records: CapturedRecord[]) {
  return (_id: number, _linkType: number, buf: Uint8Array, start: number, end: number) => {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let at = start; at < end; ) {
      const caplen = view.getUint32(at + 8, true);
      records.push({
        tsMs: view.getUint32(at, true) * 1000 + view.getUint32(at + 4, true) / 1000,
        caplen,
        wirelen: view.getUint32(at + 12, true),
      });
      at += RECORD_HEADER_BYTES + caplen;
    }
  };
}

function waitClosed(handle: CaptureHandle, ms: number): Promise<PodflowError | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'closed' within ${ms} ms`)), ms);
    handle.once('closed', (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

test('a failed open rejects with a clear error, leaks no fd, and a later forced GC does not crash', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const sink = () => {};
  // Warm-up: the first open loads libpcap's lazy state, which is not a leak.
  (await openCaptureAsync(pod.nsPath, point(1, 'lo'), sink)).close();
  gc();
  const before = fdCount();
  for (let i = 0; i < 50; i++) {
    await assert.rejects(openCaptureAsync(pod.nsPath, point(2, 'pfnosuch0'), sink), (err: unknown) =>
      err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_CAPTURE_OPEN' && /pfnosuch0/.test(err.message));
    await assert.rejects(openCaptureAsync(pod.nsPath, point(3, 'eth0'), sink, { filter: 'tcp port (' }), (err: unknown) =>
      err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_CAPTURE_OPEN' && /bad filter/.test(err.message));
    await assert.rejects(openCaptureAsync('/run/netns/pf-gone', point(4, 'eth0'), sink), (err: unknown) =>
      err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER' && /ENOENT/.test(err.message));
  }
  await assert.rejects(openCaptureAsync(pod.nsPath, point(5, 'eth0'), sink, { snaplen: 4096, batchBytes: 1024 }), {
    code: 'PODFLOW_ERR_NETNS_CONFIG',
  });
  gc();
  gc();
  assert.equal(fdCount(), before);
});

test('delivers batches of pcap records with kernel timestamps, captured inside the namespace', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const records: CapturedRecord[] = [];
  const batches: number[] = [];
  const sink = collect(records);
  const handle = await openCaptureAsync(b.nsPath, point(7, 'eth0'), failOnThrow((id, linkType, buf, start, end) => {
    assert.equal(id, 7);
    assert.equal(linkType, LinkType.ETHERNET);
    batches.push(end - start);
    sink(id, linkType, buf, start, end);
  }));
  t.after(() => handle.close());
  const startMs = Date.now();
  await node.runTraffic(a.netns, ['udp-send', b.ipv4, '9', '300', '1000']);
  // The datagrams, and the few ICMP port-unreachable replies (rate-limited) nothing listens on port 9.
  const datagrams = () => records.filter((r) => r.wirelen === 14 + 20 + 8 + 1000);
  // Every datagram sent, and all the kernel passed to the socket, delivered.
  await waitFor(() => datagrams().length >= 300 && handle.stats().packets >= handle.stats().received, 5000,
    () => `300 datagrams delivered: ${datagrams().length}; ${JSON.stringify(handle.stats())}`);
  const endMs = Date.now();
  assert.equal(datagrams().length, 300);
  assert.ok(records.length - datagrams().length <= 10);
  assert.ok(batches.length < records.length, `${batches.length} batches for ${records.length} packets`);
  for (const r of records) {
    assert.equal(r.caplen, Math.min(r.wirelen, 256));
    assert.ok(r.tsMs >= startMs - 5 && r.tsMs <= endMs, `timestamp ${r.tsMs} within [${startMs}, ${endMs}]`);
  }
  const stats = handle.stats();
  assert.equal(stats.packets, records.length);
  assert.equal(stats.dropped, 0);
  assert.ok(stats.received >= 300);
  handle.close();
  handle.close();
  assert.equal(handle.closed, true);
});

test('an interface deleted under capture closes the handle with CAPTURE_LOST, and the process lives', { skip }, async (t) => {
  const node = new SimNode(t);
  const [a, b] = [node.addPod(1), node.addPod(2)];
  const flood = node.spawnTraffic(a.netns, ['udp-flood', b.ipv4, '9', '200']);
  t.after(() => flood.kill('SIGKILL'));
  const before = fdCount();
  const handle = await openCaptureAsync(b.nsPath, point(8, 'eth0'), () => {});
  // The flood has started and reaches the capture before the interface goes.
  await waitFor(() => handle.stats().packets > 0, 5000, 'the flood captured');
  const closed = waitClosed(handle, 3000);
  node.removePod(b.index);
  const reason = await closed;
  assert.ok(reason instanceof PodflowError);
  assert.equal(reason.code, 'PODFLOW_ERR_NETNS_CAPTURE_LOST');
  assert.equal((reason.cause as { code?: string }).code, 'ENETDOWN');
  handle.close();
  gc();
  assert.equal(fdCount(), before);
});
