// Needs root. The simulated node's own hygiene: a process killed by a signal
// (or crashing in native code) cannot remove its namespaces, so the next
// process does (removeDeadOwnersNamespaces), leaving those of live processes
// alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NODE_BIN } from '../../common/node-runtime.ts';
import { canRunSimNode, removeDeadOwnersNamespaces, SimNode } from '../../sim/simnode.ts';

const env = canRunSimNode();
const skip = env.ok ? false : env.reason;
const SIMNODE = fileURLToPath(new URL('../../sim/simnode.ts', import.meta.url));

const netns = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]);

test('the namespaces of a process killed mid-test are removed by the next one; a live process\'s stay', { skip }, async (t) => {
  const node = new SimNode(t);
  node.addPod(1);
  // A process that makes a simulated node with a pod, then dies by SIGKILL: no cleanup of its own runs.
  const killed = spawnSync(NODE_BIN, ['--input-type=module', '-e',
    `const { SimNode } = await import(${JSON.stringify(SIMNODE)}); const n = new SimNode(); n.addPod(1); console.log(n.tag); process.kill(process.pid, 'SIGKILL');`], { encoding: 'utf8' });
  assert.equal(killed.signal, 'SIGKILL');
  const deadTag = killed.stdout.trim();
  t.after(() => {
    for (const name of netns().filter((n) => n.startsWith(deadTag))) spawnSync('ip', ['netns', 'del', name]);
  });
  assert.deepEqual(netns().filter((n) => n.startsWith(deadTag)).sort(), [`${deadTag}n`, `${deadTag}p1`], 'left behind by the killed process');
  // A live process's name, shaped like a simulated node's.
  const alive = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => alive.kill('SIGKILL'));
  const aliveName = `pf${alive.pid!.toString(36)}-0n`;
  execFileSync('ip', ['netns', 'add', aliveName]);
  t.after(() => spawnSync('ip', ['netns', 'del', aliveName]));

  const removed = removeDeadOwnersNamespaces();
  assert.ok(removed.includes(`${deadTag}n`) && removed.includes(`${deadTag}p1`), `removed: ${removed.join(' ')}`);
  const names = netns();
  assert.deepEqual(names.filter((n) => n.startsWith(deadTag)), []);
  assert.ok(names.includes(aliveName), 'a live process\'s namespace stays');
  assert.ok(names.includes(`${node.tag}p1`), 'this process\'s own simulated node stays');
});
