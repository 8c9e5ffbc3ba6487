// Keeps the README's first command true: `podflow demo` builds its simulated
// node and API server, runs the agent as its own process, and the collector
// shows every conversation of the scene named with Kubernetes identity;
// Ctrl-C (SIGINT) stops it, and nothing the demo made is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { stripVTControlCharacters } from 'node:util';
import { canRunSimNode } from '../../sim/simnode.ts';
import { startDemo } from '../helpers/demo-process.ts';
import { waitFor } from '../helpers/wait.ts';

const able = canRunSimNode();

function namespacesStartingWith(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

test('the demo shows every conversation named by namespace, pod and workload, and leaves nothing behind', { skip: able.ok ? false : able.reason, timeout: 90_000 }, async (t) => {
  const { demo, exited } = startDemo(t, ['--plain']);
  let output = '';
  let errors = '';
  demo.stdout.on('data', (d: Buffer) => (output += d));
  demo.stderr.on('data', (d: Buffer) => (errors += d));
  // picocolors colours output when CI is set, even without a terminal.
  const stdout = () => stripVTControlCharacters(output);
  const flows = () => stdout().split('\n').filter((line) => line.includes(' → '));
  const web = 'shop/web-7d9f5-k2x8q \\(Deployment/web\\)';
  const api = 'shop/api-6c4b8-m4t7z \\(Deployment/api\\)';
  const db = 'data/db-0 \\(StatefulSet/db\\)';
  const expected: Array<[string, RegExp]> = [
    ['web → api over TCP', new RegExp(`^${web} → ${api}  TCP `)],
    ['api → the db Service over TCP', new RegExp(`^${api} → data/db:postgres \\(Service\\)  TCP `)],
    ['api → db-0 over UDP', new RegExp(`^${api} → ${db}  UDP `)],
    ['web pings db-0', new RegExp(`^${web} → ${db}  ICMP `)],
    ['db-0 over its own lo', new RegExp(`^${db} → ${db}  TCP `)],
  ];
  const missing = () => expected.filter(([, pattern]) => !flows().some((line) => pattern.test(line))).map(([what]) => what);
  await waitFor(() => missing().length === 0 || demo.exitCode !== null, 60_000, () => `every conversation shown; missing: ${missing().join(', ')}\n${stdout()}${errors}`, 50);
  assert.equal(demo.exitCode, null, `the demo exited early:\n${stdout()}${errors}`);
  process.kill(demo.pid!, 'SIGINT');
  assert.equal(await exited, 0, stdout() + errors);
  assert.ok(!flows().some((line) => /unknown|^\d/.test(line)), `every end is named:\n${stdout()}`);
  assert.match(stdout(), /summary: the collector received \d+ flows in \d+ IPFIX messages \(0 bad\)/);
  // Only the demo's own namespaces: other runs on the machine may hold theirs.
  const tag = /network namespaces (pf[0-9a-z]+-[0-9a-z]+)…/.exec(stdout())?.[1];
  assert.ok(tag, `the demo names its namespaces:\n${stdout()}`);
  assert.deepEqual(namespacesStartingWith(tag), []);
});

test('a demo whose reader goes away (| head -1) stops as on Ctrl-C and removes its namespaces', { skip: able.ok ? false : able.reason, timeout: 90_000 }, async (t) => {
  const { demo, exited } = startDemo(t, ['--plain']);
  let errors = '';
  demo.stderr.on('data', (d: Buffer) => (errors += d));
  const firstLine = await new Promise<string>((resolve) => {
    let output = '';
    demo.stdout.on('data', (d: Buffer) => {
      output += d;
      if (!output.includes('\n')) return;
      demo.stdout.destroy();
      resolve(stripVTControlCharacters(output.split('\n')[0]!));
    });
  });
  const tag = /network namespaces (pf[0-9a-z]+-[0-9a-z]+)…/.exec(firstLine)?.[1];
  assert.ok(tag, `the demo names its namespaces first: ${firstLine}`);
  assert.equal(await exited, 0, errors);
  assert.doesNotMatch(errors, /EPIPE/);
  assert.deepEqual(namespacesStartingWith(tag), []);
});
