// Needs root: creates network namespaces (skips with the reason otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DiscoveredNamespace, NetnsDiscovery } from '../../netns/discovery.ts';
import { canRunSimNode, SimNode } from '../../sim/simnode.ts';
import { waitFor } from '../helpers/wait.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;

function nextEvent(d: NetnsDiscovery, event: 'added' | 'removed', match: (ns: DiscoveredNamespace) => boolean, ms: number) {
  const started = Date.now();
  return new Promise<{ ns: DiscoveredNamespace; afterMs: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    const listener = (ns: DiscoveredNamespace) => {
      if (!match(ns)) return;
      clearTimeout(timer);
      d.off(event, listener);
      resolve({ ns, afterMs: Date.now() - started });
    };
    d.on(event, listener);
  });
}

test('notices a new `ip netns add` and its removal within 2 s', { skip }, async (t) => {
  const discovery = new NetnsDiscovery({ procRoot: null });
  t.after(() => discovery.close());
  await discovery.start();
  await discovery.start();
  const node = new SimNode(t);
  const name = `${node.tag}x`;
  const path = `/run/netns/${name}`;
  // Removed by the test itself unless it failed before that.
  t.after(() => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // Already removed.
    }
  });

  const added = nextEvent(discovery, 'added', (ns) => ns.paths.includes(path), 2000);
  execFileSync('ip', ['netns', 'add', name]);
  const { ns, afterMs: addMs } = await added;
  assert.equal(ns.inode, statSync(path).ino);
  assert.equal(ns.source, 'netns-dir');

  const removed = nextEvent(discovery, 'removed', (r) => r.key === ns.key, 2000);
  execFileSync('ip', ['netns', 'del', name]);
  const { afterMs: removeMs } = await removed;
  t.diagnostic(`detected add after ${addMs} ms, removal after ${removeMs} ms`);
  assert.equal(discovery.get(ns.key), undefined);
});

test('reports a namespace seen in /run/netns and /proc/<pid>/ns/net once, with both paths', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const sleeper = node.spawn(pod.netns, 'sleep', ['60']);
  // `ip netns exec` execs sleep: its PID is the process inside the pod, once it has entered the namespace.
  const procPath = `/proc/${sleeper.pid}/ns/net`;
  const ino = statSync(pod.nsPath).ino;
  const inside = () => {
    try {
      return statSync(procPath).ino === ino;
    } catch {
      return false; // not started yet
    }
  };
  await waitFor(inside, 5000, 'the process inside the pod namespace');
  const discovery = new NetnsDiscovery({ netnsDirs: ['/run/netns'], rescanIntervalMs: 200 });
  t.after(() => discovery.close());
  const seen: DiscoveredNamespace[] = [];
  discovery.on('added', (ns) => seen.push(ns));
  // Its first scan, done when start() resolves, sees the namespace by both paths.
  await discovery.start();
  const mine = seen.filter((ns) => ns.inode === ino);
  assert.equal(mine.length, 1);
  assert.ok(mine[0]!.paths.includes(pod.nsPath));
  assert.ok(mine[0]!.paths.includes(procPath));
  assert.equal(mine[0]!.paths[0], pod.nsPath, 'the durable netns-dir path comes first');
  // The agent's own namespace is never reported.
  const own = statSync('/proc/self/ns/net').ino;
  assert.equal(seen.some((ns) => ns.inode === own), false);

  // The process exits: the namespace is still there through /run/netns.
  sleeper.kill('SIGKILL');
  await new Promise((resolve) => sleeper.once('exit', resolve));
  await discovery.rescan();
  assert.deepEqual(discovery.get(mine[0]!.key)?.paths, [pod.nsPath]);
  assert.equal(seen.filter((ns) => ns.inode === ino).length, 1);
});

test('reports a namespace under its real path and under each configured spelling of a symlinked directory', { skip }, async (t) => {
  const node = new SimNode(t);
  const pod = node.addPod(1);
  const dir = mkdtempSync(join(tmpdir(), 'podflow-netns-link-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const link = join(dir, 'netns');
  symlinkSync('/run/netns', link);
  const discovery = new NetnsDiscovery({ netnsDirs: [`${link}/`, '/run/netns'], procRoot: null });
  t.after(() => discovery.close());
  await discovery.start();
  const mine = discovery.namespaces().find((ns) => ns.inode === statSync(pod.nsPath).ino);
  assert.deepEqual(mine?.paths, [pod.nsPath, join(link, pod.netns)]);
});

test('rejects a non-positive rescan interval', () => {
  assert.throws(() => new NetnsDiscovery({ rescanIntervalMs: 0 }), { code: 'PODFLOW_ERR_NETNS_CONFIG' });
});
