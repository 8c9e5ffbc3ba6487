// The DaemonSet's capabilities are enough and each one is needed: the agent's
// own privileged steps (netns/), run as root under `setpriv` with exactly the
// DaemonSet's capability set (as a container with drop: [ALL] and add: [...]
// gets), then with each capability taken away, against a real namespace made
// with `ip netns add` and a process inside it running as another user (as a
// pod's processes do).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NODE_BIN } from '../../common/node-runtime.ts';
import { waitFor } from '../helpers/wait.ts';
import { find, kubectlProblem, kustomize, MANIFESTS } from './kustomize.ts';

const PROBE = fileURLToPath(new URL('./cap-probe.ts', import.meta.url));
const NS = `pfcap${process.pid}`;
const skip = kubectlProblem() ?? (process.getuid?.() !== 0 ? 'needs root' : undefined);

function probe(caps: string[], pid: number): Record<string, string> {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const r = spawnSync('setpriv', ['--bounding-set', bounding, '--inh-caps', '-all', '--', NODE_BIN, PROBE, `/var/run/netns/${NS}`, String(pid)], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `probe with ${caps} exited ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, string>;
}

test("the DaemonSet's capabilities are exactly what the agent's namespace and capture steps need", { skip }, async (t) => {
  const ds = find(kustomize(MANIFESTS), 'DaemonSet', 'podflow') as unknown as { spec: { template: { spec: { containers: Array<{ securityContext: { capabilities: { add: string[] } } }> } } } };
  const caps = ds.spec.template.spec.containers[0].securityContext.capabilities.add;
  spawnSync('ip', ['netns', 'del', NS]);
  const add = spawnSync('ip', ['netns', 'add', NS], { encoding: 'utf8' });
  assert.equal(add.status, 0, add.stderr);
  let sleeper: ChildProcess | undefined;
  t.after(() => {
    sleeper?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', NS]);
  });
  assert.equal(spawnSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']).status, 0);
  // A "pod process": in the namespace, as nobody.
  sleeper = spawn('ip', ['netns', 'exec', NS, 'setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', 'sleep', '120'], { stdio: 'ignore' });
  assert.ok(sleeper.pid);
  // `ip netns exec` and setpriv exec: the same PID is sleep once it runs in the namespace as nobody.
  const proc = `/proc/${sleeper.pid}`;
  const inside = () => {
    try {
      return readFileSync(`${proc}/comm`, 'utf8').trim() === 'sleep' && readlinkSync(`${proc}/ns/net`) === `net:[${statSync(`/var/run/netns/${NS}`).ino}]`
        && /^Uid:\s+65534\s/m.test(readFileSync(`${proc}/status`, 'utf8'));
    } catch {
      return false; // not started yet, or gone (then the probes below say so)
    }
  };
  await waitFor(inside, 5000, 'the pod process in the namespace as nobody');
  const all = { procNamespace: 'ok', netnsFile: 'ok', setns: 'ok', capture: 'ok', captureViaProc: 'ok' };
  assert.deepEqual(probe(caps, sleeper.pid), all, `with ${caps}`);
  // Each capability is needed: without it a step of the agent fails.
  const without = (c: string) => probe(caps.filter((x) => x !== c), sleeper!.pid!);
  const noAdmin = without('SYS_ADMIN');
  assert.equal(noAdmin.setns, 'EPERM');
  assert.notEqual(noAdmin.capture, 'ok');
  const noRaw = without('NET_RAW');
  assert.equal(noRaw.setns, 'ok');
  assert.notEqual(noRaw.capture, 'ok');
  const noPtrace = without('SYS_PTRACE');
  assert.equal(noPtrace.capture, 'ok');
  assert.equal(noPtrace.procNamespace, 'EACCES');
  assert.notEqual(noPtrace.captureViaProc, 'ok');
  assert.deepEqual([...caps].sort(), ['NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE']);
});
