// Keeps the README's first command true: `podflow demo` builds its simulated
// node, captures every pod's traffic (eth0 and lo), shows the flows and
// removes everything it made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { canRunSimNode, NODE_BIN } from '../../sim/simnode.ts';

const CLI = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
const able = canRunSimNode();

function pfNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith('pf'));
}

test('the demo shows flows observed at every pod, over eth0 and lo, and leaves nothing behind', { skip: able.ok ? false : able.reason }, () => {
  const before = pfNamespaces();
  const demo = spawnSync(NODE_BIN, [CLI, 'demo', '--seconds', '7', '--plain'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(demo.status, 0, demo.stderr);
  const flows = demo.stdout.split('\n').filter((line) => / → /.test(line));
  const observedAt = new Set(flows.map((line) => line.split(/\s+/)[0]));
  for (const point of ['web/eth0', 'api/eth0', 'db/eth0', 'db/lo']) assert.ok(observedAt.has(point), `no flow observed at ${point}:\n${demo.stdout}`);
  assert.ok(flows.some((line) => /web 198\.18\.0\.1:\d+ → api 198\.18\.0\.2:8080 +TCP/.test(line)), 'web → api over IPv4');
  assert.ok(flows.some((line) => /web \[fd00::1\]:\d+ → api \[fd00::2\]:8080 +TCP/.test(line)), 'web → api over IPv6');
  assert.ok(flows.some((line) => /api 198\.18\.0\.2:\d+ → db 198\.18\.0\.3:5432 +UDP/.test(line)), 'api → db over UDP');
  assert.ok(flows.some((line) => /web 198\.18\.0\.1 → db 198\.18\.0\.3 +ICMP/.test(line)), 'web pings db');
  assert.match(demo.stdout, /summary: \d+ packets captured at 6 observation points, \d+ flows .*kernel drops 0\./);
  assert.deepEqual(pfNamespaces(), before);
});
