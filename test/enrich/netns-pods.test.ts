// A fake /proc tree in a temporary directory: <pid>/ns/net is a plain file
// whose (dev, inode) stands for the namespace, <pid>/cgroup the cgroup text.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsPods, podUidFromCgroup } from '../../enrich/netns-pods.ts';
import type { DiscoveredNamespace } from '../../netns/discovery.ts';
import { ipKey } from '../../enrich/ip-keys.ts';
import { pod } from '../helpers/slim-objects.ts';

const UID = '5f0c3d2a-8b1e-4c7d-9a6f-0123456789ab';

const CGROUP_V1_CGROUPFS = `12:memory:/kubepods/burstable/pod${UID}/3f4e5d6c7b8a
11:cpu,cpuacct:/kubepods/burstable/pod${UID}/3f4e5d6c7b8a
1:name=systemd:/kubepods/burstable/pod${UID}/3f4e5d6c7b8a
`;
const CGROUP_V2_SYSTEMD = `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replaceAll('-', '_')}.slice/cri-containerd-3f4e5d6c.scope\n`;
const CGROUP_V2_GUARANTEED_NAMESPACED = `0::/../../kubepods-pod${UID.replaceAll('-', '_')}.slice/cri-containerd-3f4e.scope\n`;

function fakeProc(t: TestContext): { root: string; process(pid: number, cgroup: string): DiscoveredNamespace } {
  const root = mkdtempSync(join(tmpdir(), 'podflow-proc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return {
    root,
    /** A process in a namespace of its own; the DiscoveredNamespace discovery would report for it. */
    process(pid, cgroup) {
      mkdirSync(join(root, String(pid), 'ns'), { recursive: true });
      writeFileSync(join(root, String(pid), 'cgroup'), cgroup);
      const path = join(root, String(pid), 'ns', 'net');
      writeFileSync(path, '');
      const st = statSync(path);
      return { key: `${st.dev}:${st.ino}`, inode: st.ino, dev: st.dev, paths: [path], source: 'proc' };
    },
  };
}

test('finds the pod UID in cgroup v1 and v2 paths of both cgroup drivers', () => {
  assert.equal(podUidFromCgroup(CGROUP_V1_CGROUPFS), UID);
  assert.equal(podUidFromCgroup(CGROUP_V2_SYSTEMD), UID);
  assert.equal(podUidFromCgroup(CGROUP_V2_GUARANTEED_NAMESPACED), UID);
  assert.equal(podUidFromCgroup(`0::/kubepods/pod${UID.toUpperCase()}/abc\n`), UID);
  assert.equal(podUidFromCgroup('0::/\n'), undefined);
  assert.equal(podUidFromCgroup('0::/user.slice/user-0.slice/session-1.scope\n'), undefined);
  assert.equal(podUidFromCgroup(`0::/system.slice/notapod${UID}.service\n`), undefined);
});

test('ties a namespace found through a process to the pod in its cgroup (v1), even before the pod is known', async (t) => {
  const proc = fakeProc(t);
  const ns = proc.process(4242, CGROUP_V1_CGROUPFS);
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: () => [] });
  await map.addNamespace(ns);
  const entry = map.get(ns.key)!;
  assert.equal(entry.uid, UID);
  assert.equal(entry.via, 'cgroup');
  assert.equal(entry.pod, undefined);
  map.applyPod('add', pod('web-1', { uid: UID, podIPs: ['10.244.1.5'] }));
  assert.equal(map.get(ns.key)?.pod?.name, 'web-1');
  assert.ok(entry.addresses.has(ipKey('10.244.1.5')!));
  assert.equal(map.stats.byCgroup, 1);
});

test('finds the processes of a namespace known only by path by scanning /proc for its inode (v2, systemd driver)', async (t) => {
  const proc = fakeProc(t);
  proc.process(1, '0::/init.scope\n');
  const found = proc.process(777, CGROUP_V2_SYSTEMD);
  const ns: DiscoveredNamespace = { ...found, paths: ['/run/netns/cni-1234'], source: 'netns-dir' };
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: () => ['10.244.1.6'] });
  map.applyPod('add', pod('db-0', { uid: UID, podIPs: ['10.244.1.6'] }));
  await map.addNamespace(ns);
  assert.equal(map.get(ns.key)?.pod?.name, 'db-0');
  assert.equal(map.get(ns.key)?.via, 'cgroup');
});

test('without a pod UID in any cgroup, matches the namespace\'s addresses to one live pod of this node', async (t) => {
  const proc = fakeProc(t);
  const ns = proc.process(900, '0::/\n');
  const addresses = new Map([[ns.paths[0]!, ['127.0.0.1', '10.244.1.7', 'fd00::7']]]);
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: (path) => addresses.get(path) ?? [] });
  // Same address on another node, and a finished pod of this node with its stale IP: neither is this namespace's.
  map.applyPod('add', pod('elsewhere', { nodeName: 'node-2', podIPs: ['10.244.1.7'] }));
  map.applyPod('add', pod('finished', { phase: 'Succeeded', podIPs: ['10.244.1.7'] }));
  await map.addNamespace(ns);
  assert.equal(map.get(ns.key)?.pod, undefined, 'no live pod of this node has the address yet');
  // The pod's IP appears in its status after the namespace exists: resolved on the event.
  map.applyPod('update', pod('api-1', { podIPs: ['10.244.1.7', 'fd00::7'] }));
  const entry = map.get(ns.key)!;
  assert.equal(entry.pod?.name, 'api-1');
  assert.equal(entry.via, 'address');
  assert.equal(entry.uid, 'uid-api-1');
  assert.equal(map.stats.byAddress, 1);
  assert.equal(map.pending, 0);
});

test('refuses an address match that two live pods claim', async () => {
  const ns: DiscoveredNamespace = { key: '4:1', inode: 1, dev: 4, paths: ['/run/netns/x'], source: 'netns-dir' };
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => ['10.244.1.8'] });
  map.applyPod('add', pod('a', { podIPs: ['10.244.1.8'] }));
  map.applyPod('add', pod('b', { podIPs: ['10.244.1.8'] }));
  await map.addNamespace(ns);
  assert.equal(map.get(ns.key)?.pod, undefined);
  assert.ok(map.stats.ambiguous >= 1);
  map.applyPod('delete', pod('a', { podIPs: ['10.244.1.8'] }));
  assert.equal(map.get(ns.key)?.pod?.name, 'b');
});

test('resolvePending lists interfaces again: a veth moved in after the namespace appeared', async () => {
  const ns: DiscoveredNamespace = { key: '4:2', inode: 2, dev: 4, paths: ['/run/netns/y'], source: 'netns-dir' };
  let listed: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => listed });
  map.applyPod('add', pod('late', { podIPs: ['10.244.1.9'] }));
  await map.addNamespace(ns);
  assert.equal(map.pending, 1);
  listed = ['10.244.1.9'];
  await map.resolvePending();
  assert.equal(map.get(ns.key)?.pod?.name, 'late');
});

test('a namespace tied by cgroup keeps its pod after the pod is deleted; a handed-out entry outlives the namespace', async (t) => {
  const proc = fakeProc(t);
  const ns = proc.process(4343, CGROUP_V1_CGROUPFS);
  const freed: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: () => ['10.244.1.10'], onAddressFreed: (uid) => freed.push(uid) });
  map.applyPod('add', pod('gone', { uid: UID, podIPs: ['10.244.1.10'] }));
  await map.addNamespace(ns);
  const entry = map.get(ns.key)!;
  map.applyPod('delete', pod('gone', { uid: UID, podIPs: ['10.244.1.10'], deletingSinceMs: 1 }));
  assert.equal(entry.pod?.deletingSinceMs, 1);
  map.removeNamespace(ns.key);
  assert.deepEqual(freed, [UID], 'a terminating pod whose namespace went');
  assert.equal(map.get(ns.key), undefined);
  assert.equal(entry.pod?.name, 'gone');
  assert.equal(entry.gone, true);
});

const NS_X: DiscoveredNamespace = { key: '4:7', inode: 7, dev: 4, paths: ['/run/netns/n2'], source: 'netns-dir' };
const X = '10.244.1.20';

test('a terminating pod never takes a new namespace; the next pod given its address does', async () => {
  const changes: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => [X], onChange: (key) => changes.push(key) });
  map.applyPod('add', pod('a', { podIPs: [X], deletingSinceMs: 1 }));
  await map.addNamespace(NS_X);
  assert.equal(map.get(NS_X.key)?.pod, undefined, 'pod a is terminating: the namespace is not its');
  map.applyPod('add', pod('b', { podIPs: [X] }));
  assert.equal(map.get(NS_X.key)?.pod?.name, 'b');
  assert.ok(changes.includes(NS_X.key));
  map.applyPod('delete', pod('a', { podIPs: [X], deletingSinceMs: 1 }));
  assert.equal(map.get(NS_X.key)?.pod?.name, 'b');
  assert.equal(map.stats.byAddress, 1);
});

test("a terminating pod's address is freed when it leaves the namespace (its veth goes), before the namespace does", async () => {
  const freed: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => [X], onAddressFreed: (uid) => freed.push(uid) });
  map.applyPod('add', pod('a', { podIPs: [X] }));
  await map.addNamespace(NS_X);
  map.setInterfaceAddresses(NS_X.key, ['127.0.0.1']);
  assert.deepEqual(freed, [], 'not terminating: a veth may come back');
  map.setInterfaceAddresses(NS_X.key, ['127.0.0.1', X]);
  map.applyPod('update', pod('a', { podIPs: [X], deletingSinceMs: 1 }));
  map.setInterfaceAddresses(NS_X.key, ['127.0.0.1']);
  assert.deepEqual(freed, ['uid-a']);
});

test('a tie by address ends when another pod claims the address and when its pod terminates, and moves to the one live holder', async () => {
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => [X] });
  // Pod a's termination is not known yet when the new namespace with its address appears: tied to a.
  map.applyPod('add', pod('a', { podIPs: [X] }));
  await map.addNamespace(NS_X);
  assert.equal(map.get(NS_X.key)?.pod?.name, 'a');
  map.applyPod('add', pod('b', { podIPs: [X] }));
  assert.equal(map.get(NS_X.key)?.pod, undefined, 'two live pods claim the address: tied to neither');
  assert.equal(map.stats.ambiguous, 1);
  map.applyPod('update', pod('a', { podIPs: [X], deletingSinceMs: 1 }));
  assert.equal(map.get(NS_X.key)?.pod?.name, 'b');
  assert.equal(map.stats.untied, 1);
  // Its pod deleted with no other holder: the namespace is tied to nothing (its flows are then held, and named by address).
  map.applyPod('delete', pod('b', { podIPs: [X] }));
  assert.equal(map.get(NS_X.key)?.pod, undefined);
  assert.equal(map.pending, 1);
});

test('a pod UID found in a cgroup replaces a tie by address', async (t) => {
  const proc = fakeProc(t);
  const ns = proc.process(5151, '0::/\n');
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: () => [X] });
  map.applyPod('add', pod('old', { podIPs: [X] }));
  map.applyPod('add', pod('new', { uid: UID, podIPs: [] }));
  await map.addNamespace(ns);
  assert.equal(map.get(ns.key)?.pod?.name, 'old');
  writeFileSync(join(proc.root, '5151', 'cgroup'), CGROUP_V1_CGROUPFS);
  await map.resolvePending();
  assert.deepEqual([map.get(ns.key)?.pod?.name, map.get(ns.key)?.via], ['new', 'cgroup']);
  map.applyPod('update', pod('old', { podIPs: [X], phase: 'Running' }));
  assert.equal(map.get(ns.key)?.pod?.name, 'new', 'a cgroup tie is not matched by address again');
});

test('interface addresses listed by the capture tie a namespace whose veth got its address after it was added', async () => {
  const changes: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => [], onChange: (key) => changes.push(key) });
  map.applyPod('add', pod('late', { podIPs: [X] }));
  await map.addNamespace(NS_X);
  assert.equal(map.pending, 1);
  map.setInterfaceAddresses(NS_X.key, ['127.0.0.1', X]);
  assert.equal(map.get(NS_X.key)?.pod?.name, 'late');
  assert.ok(map.get(NS_X.key)?.addresses.has(ipKey(X)!));
  assert.deepEqual(changes, [NS_X.key]);
  map.setInterfaceAddresses(NS_X.key, [X, '127.0.0.1']);
  assert.deepEqual(changes, [NS_X.key], 'the same addresses are no change');
});

test('a namespace path that cannot be read is counted, the next path is tried', async () => {
  const ns: DiscoveredNamespace = { key: '4:5', inode: 5, dev: 4, paths: ['/proc/1/ns/net', '/run/netns/w'], source: 'proc' };
  const map = new NetnsPods({
    nodeName: 'node-1',
    procRoot: null,
    listAddresses: (path) => {
      if (path.startsWith('/proc')) throw new Error('gone');
      return ['10.244.1.11'];
    },
  });
  map.applyPod('add', pod('w', { podIPs: ['10.244.1.11'] }));
  await map.addNamespace(ns);
  assert.equal(map.get(ns.key)?.pod?.name, 'w');
  assert.equal(map.stats.readErrors, 1);
});

test('stops looking in cgroups after five tries for a namespace without a pod UID, keeps matching addresses', async (t) => {
  const proc = fakeProc(t);
  const ns = proc.process(321, '0::/system.slice/containerd.service\n');
  let listed: string[] = [];
  const map = new NetnsPods({ nodeName: 'node-1', procRoot: proc.root, listAddresses: () => listed });
  await map.addNamespace(ns);
  for (let i = 0; i < 4; i++) await map.resolvePending();
  writeFileSync(join(proc.root, '321', 'cgroup'), CGROUP_V1_CGROUPFS);
  await map.resolvePending();
  assert.equal(map.get(ns.key)?.uid, undefined);
  map.applyPod('add', pod('by-address', { podIPs: ['10.244.1.12'] }));
  listed = ['10.244.1.12'];
  await map.resolvePending();
  assert.equal(map.get(ns.key)?.via, 'address');
});
