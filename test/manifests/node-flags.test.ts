// The V8 flags and the environment of podflow processes are written in three
// places that cannot share code: common/node-runtime.ts (demo, tests,
// benches), the image's ENTRYPOINT and ENV (the DaemonSet, the injected
// sidecar, the webhook) and ./run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NODE_ENVIRONMENT, NODE_FLAGS } from '../../common/node-runtime.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

test('the Dockerfile ENTRYPOINT starts node with NODE_FLAGS before the CLI', () => {
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'))![1]!) as string[];
  assert.deepEqual(entrypoint, ['node', ...NODE_FLAGS, '/app/agent/cli.js']);
});

test('./run passes NODE_FLAGS to the demo and podflow commands', () => {
  const run = read('run');
  assert.equal(/^node_flags=(.*)$/m.exec(run)![1], NODE_FLAGS.join(' '));
  for (const command of ['demo', 'podflow']) assert.match(run, new RegExp(`^  ${command}\\) setup; exec env "\\$\\{podflow_env\\[@\\]\\}" "\\$node24" \\$node_flags agent/cli\\.ts`, 'm'));
});

test('the image and ./run set NODE_ENVIRONMENT', () => {
  const image = Object.fromEntries([...read('Dockerfile').matchAll(/^ENV (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const run = /^podflow_env=\((.*)\)$/m.exec(read('run'))![1]!.split(' ');
  for (const [name, value] of Object.entries(NODE_ENVIRONMENT)) {
    assert.equal(image[name], value, `Dockerfile ENV ${name}`);
    assert.ok(run.includes(`${name}=${value}`), `./run podflow_env ${name}`);
  }
});
