import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, DEFAULT_CONFIG, loadConfig } from '../../agent/config.ts';
import { PodflowError } from '../../common/errors.ts';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';

const CLI = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'podflow-config-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const base = 'nodeName: n1\ncollectors: [tcp://127.0.0.1:4739]\n';

test('flags override the environment, which overrides the file, which overrides the defaults', () => {
  const path = file('p.yaml', `${base}clusterName: from-file\nlog: {level: warn}\nflow: {idleTimeoutSeconds: 10}\nmetrics: {listen: '127.0.0.1:1'}\n`);
  const c = loadConfig({
    file: path,
    env: { CLUSTER_NAME: 'from-env', NODE_NAME: 'node-env', PODFLOW_LOG_LEVEL: 'debug' },
    flags: [['clusterName', 'from-flag'], ['flow.activeTimeoutSeconds', '60'], ['collectors', 'udp://[::1]:9'], ['collectors', 'file:/tmp/x.ipfix']],
  });
  assert.equal(c.clusterName, 'from-flag');
  assert.equal(c.nodeName, 'node-env');
  assert.equal(c.log.level, 'debug');
  assert.equal(c.flow.idleTimeoutSeconds, 10);
  assert.equal(c.flow.activeTimeoutSeconds, 60);
  assert.equal(c.flow.maxFlows, DEFAULT_CONFIG.flow.maxFlows);
  assert.equal(c.metrics.listen, '127.0.0.1:1');
  assert.deepEqual(c.collectors, ['udp://[::1]:9', 'file:/tmp/x.ipfix']);
  // PODFLOW_CONFIG names the file when --config does not.
  assert.equal(loadConfig({ env: { PODFLOW_CONFIG: path } }).clusterName, 'from-file');
});

test('the defaults with a node name and a collector are valid against the exported schema', () => {
  const c = loadConfig({ env: { NODE_NAME: 'n', PODFLOW_COLLECTORS: 'udp://127.0.0.1:4739, tcp://127.0.0.1:4739' } });
  assert.deepEqual(c.collectors, ['udp://127.0.0.1:4739', 'tcp://127.0.0.1:4739']);
  assert.equal(configSchema.type, 'object');
  assert.equal(configSchema.additionalProperties, false);
});

const bad: Array<[what: string, text: string, message: RegExp, code?: string]> = [
  ['unknown key', `${base}flow: {idleTimeout: 3}\n`, /flow\.idleTimeout: unknown key/],
  ['unknown top-level key', `${base}colectors: []\n`, /colectors: unknown key/],
  ['bad URL scheme', 'nodeName: n\ncollectors: [http://x:1]\n', /collectors\[0\]: bad URL "http:\/\/x:1"/],
  ['bad URL port', 'nodeName: n\ncollectors: [tcp://x:99999]\n', /collectors\[0\]: bad URL/],
  ['negative timeout', `${base}shutdown: {timeoutSeconds: -5}\n`, /shutdown\.timeoutSeconds: must not be negative, got -5/],
  ['zero timeout', `${base}flow: {idleTimeoutSeconds: 0}\n`, /flow\.idleTimeoutSeconds: must be > 0, got 0/],
  ['wrong type', `${base}capture: {loopback: 'yes please'}\n`, /capture\.loopback: must be boolean/],
  ['lease grace shorter than the flows it must name', `${base}kubernetes: {leaseGraceSeconds: 300}\n`, /kubernetes\.leaseGraceSeconds: must be at least flow\.activeTimeoutSeconds \(300\) \+ the hold of unnamed flows \(kubernetes\.holdUnnamedSeconds, 30\) \+ a margin \(10\) = 340, got 300/],
  ['a hold of unnamed flows longer than the default lease grace allows', `${base}kubernetes: {holdUnnamedSeconds: 120}\n`, /kubernetes\.leaseGraceSeconds: must be at least .*holdUnnamedSeconds, 120\) .* = 430, got 360/],
  ['active timeout longer than the default lease grace allows', `${base}flow: {activeTimeoutSeconds: 600}\n`, /kubernetes\.leaseGraceSeconds: must be at least .* = 640, got 360/],
  ['queue smaller than a chunk', `${base}capture: {queueBytes: 1000}\n`, /capture\.queueBytes: must be >= 262144, got 1000/],
  ['unreadable kubeconfig', `${base}kubernetes: {kubeconfig: ${dir}/missing}\n`, /kubernetes\.kubeconfig: unreadable file/],
  ['unreadable TLS CA', `nodeName: n\ncollectors: ['tls://c:4740?ca=${dir}/no-ca.pem']\n`, /collectors\[0\]: unreadable file ca=/],
  ['missing node name', 'collectors: [tcp://127.0.0.1:4739]\n', /nodeName: missing/],
  ['not YAML', 'nodeName: [\n', /not valid YAML/, 'PODFLOW_ERR_CONFIG_FILE'],
];
for (const [what, text, message, code = 'PODFLOW_ERR_CONFIG_INVALID'] of bad) {
  test(`a bad configuration fails with the key and the problem: ${what}`, () => {
    const path = file(`bad-${what.replaceAll(' ', '-')}.yaml`, text);
    assert.throws(() => loadConfig({ file: path, env: {} }), (err: unknown) => {
      assert.ok(err instanceof PodflowError);
      assert.equal(err.code, code);
      assert.match(err.message, message);
      return true;
    });
  });
}

test('an unreadable configuration file fails naming the file and the cause', () => {
  assert.throws(() => loadConfig({ file: join(dir, 'nope.yaml') }), /cannot read .*nope\.yaml: ENOENT/);
  const locked = file('locked.yaml', base);
  chmodSync(locked, 0);
  if (process.getuid?.() !== 0) assert.throws(() => loadConfig({ file: locked }), /EACCES/);
});

test('an unknown key set by flag or an environment value of the wrong type fails naming the key', () => {
  assert.throws(() => loadConfig({ file: file('ok.yaml', base), flags: [['flow.nope', '1']] }), /flow\.nope: unknown key/);
  assert.throws(() => loadConfig({ file: file('ok2.yaml', base), env: { PODFLOW_LOG_LEVEL: 'loud' } }), /log\.level: must be equal to one of the allowed values, got "loud"/);
});

test('`podflow agent` exits 1 at once on a bad configuration, printing the key and the problem', () => {
  const path = file('proc.yaml', `${base}flow: {activeTimeoutSeconds: -1}\n`);
  const started = Date.now();
  const r = spawnSync(NODE_BIN, [...NODE_FLAGS, CLI, 'agent', '--config', path], { encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /flow\.activeTimeoutSeconds: must not be negative, got -1 .*\[PODFLOW_ERR_CONFIG_INVALID\]/);
  assert.ok(Date.now() - started < 10_000);
});

test('keys of an older podflow (ring tiers) are ignored with a note, so its ConfigMap still starts the agent', () => {
  const path = file('retired.yaml', `${base}capture: {idleBufferBytes: 131072, busyAbovePacketsPerSecond: 1000, idleAfterSeconds: 60, bufferBytes: 1048576}\n`);
  const notes: string[] = [];
  const c = loadConfig({ file: path, env: {} }, notes);
  assert.equal(c.capture.bufferBytes, 1 << 20);
  assert.deepEqual(notes.map((n) => n.split(' ')[0]), ['capture.idleBufferBytes', 'capture.busyAbovePacketsPerSecond', 'capture.idleAfterSeconds']);
  assert.match(notes[0]!, /is ignored: .*capture\.queueBytes/);
});
