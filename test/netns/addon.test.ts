// Needs root: creates network namespaces (skips with the reason otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { addon } from '../../netns/addon.ts';
import { listInterfaces } from '../../netns/interfaces.ts';
import { PodflowError } from '../../common/errors.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

function tasksNetnsInodes(): Set<number> {
  return new Set(readdirSync('/proc/self/task').map((tid) => statSync(`/proc/self/task/${tid}/ns/net`).ino));
}

test('runs a function inside the namespace and returns the thread to its own', { skip }, (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const home = addon.threadNetnsInode();
  const inside = addon.runInNetns(pod.nsPath, () => addon.threadNetnsInode());
  assert.equal(inside, statSync(pod.nsPath).ino);
  assert.notEqual(inside, home);
  assert.equal(addon.threadNetnsInode(), home);
  assert.equal(statSync('/proc/thread-self/ns/net').ino, home);
});

test('a netlink socket opened inside sees the pod interfaces and addresses', { skip }, (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const interfaces = listInterfaces(pod.nsPath);
  const eth0 = interfaces.find((i) => i.name === 'eth0');
  assert.ok(eth0, 'eth0 listed');
  assert.ok(eth0.up && !eth0.loopback);
  assert.deepEqual(
    eth0.addresses.map((a) => `${a.address}/${a.prefixLength}`).sort(),
    [`${pod.ipv4}/24`, `${pod.ipv6}/64`].sort(),
  );
  assert.ok(interfaces.find((i) => i.name === 'lo')?.loopback);
  // The agent's own view is unchanged.
  assert.equal(
    addon.listInterfaceAddresses().some((e) => e.family === 'inet' && e.address === pod.ipv4),
    false,
  );
});

test('rethrows what the function throws, after switching back', { skip }, (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const home = addon.threadNetnsInode();
  assert.throws(() => addon.runInNetns(pod.nsPath, () => {
    throw new Error('inside');
  }), /inside/);
  assert.equal(addon.threadNetnsInode(), home);
});

test('a missing path or a file that is no namespace throws an errno error, not a crash', { skip }, () => {
  const home = addon.threadNetnsInode();
  assert.throws(() => addon.runInNetns('/run/netns/pf-does-not-exist', () => 1), { code: 'ENOENT', syscall: 'open' });
  assert.throws(() => addon.runInNetns('/etc/hostname', () => 1), { code: 'EINVAL', syscall: 'setns' });
  assert.throws(() => listInterfaces('/etc/hostname'), (err: unknown) =>
    err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER' && /EINVAL/.test(err.message));
  assert.equal(addon.threadNetnsInode(), home);
});

test('returnFreeMemory collects the garbage, answers whether malloc returned pages, and the process goes on', async () => {
  // Garbage nothing else would collect now: a WeakRef's target is kept until the job that made it ends.
  let garbage: object | undefined = { big: new Array(1000).fill('x') };
  const ref = new WeakRef(garbage);
  garbage = undefined;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(typeof addon.returnFreeMemory(), 'boolean');
  assert.equal(ref.deref(), undefined, 'a full collection ran');
  assert.equal(addon.threadNetnsInode(), statSync('/proc/thread-self/ns/net').ino);
});

test('checks its arguments with a usage message', () => {
  const call = addon.runInNetns as unknown as (...args: unknown[]) => unknown;
  for (const args of [[], ['/run/netns/x'], [1, () => 1], ['', () => 1], ['/run/netns/x', 'not a function']]) {
    assert.throws(() => call(...args), { name: 'TypeError', message: /usage: runInNetns\(nsPath: string, fn/ });
  }
});

test('the libuv threadpool and every other thread stay in the agent namespace', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const home = addon.threadNetnsInode();
  addon.runInNetns(pod.nsPath, () => undefined);
  // fs.promises.stat runs on a threadpool thread: /proc/thread-self is that thread.
  const poolInodes = await Promise.all(Array.from({ length: 8 }, () => stat('/proc/thread-self/ns/net')));
  assert.deepEqual([...new Set(poolInodes.map((s) => s.ino))], [home]);
  assert.deepEqual([...tasksNetnsInodes()], [home]);
});
