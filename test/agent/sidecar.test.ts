// Sidecar mode's pure parts: the downward API identity (environment and the
// labels file), the workload from well-known labels, and that the container
// the webhook injects starts the agent with a configuration it accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLAGS, loadConfig } from '../../agent/config.ts';
import { sidecarContainer } from '../../agent/inject.ts';
import { ownerFromLabels, parseLabelsFile, readDownwardPod, slimSelf } from '../../agent/sidecar.ts';
import { DEFAULT_WEBHOOK_CONFIG } from '../../agent/webhook.ts';

test('the labels file is read as the kubelet writes it (Go-quoted values)', () => {
  assert.deepEqual(parseLabelsFile('app="frontend"\npod-template-hash="5d8f9c7b6"\nnote="a \\"b\\" \\u00e9"\nempty=""\n'), {
    app: 'frontend',
    'pod-template-hash': '5d8f9c7b6',
    note: 'a "b" é',
    empty: '',
  });
});

test('the workload comes from the labels controllers set', () => {
  assert.deepEqual(ownerFromLabels('frontend-5d8f9c7b6-x2k4q', { 'pod-template-hash': '5d8f9c7b6' }).map((o) => o && `${o.kind}/${o.name}`), ['ReplicaSet/frontend-5d8f9c7b6', 'Deployment/frontend']);
  assert.equal(ownerFromLabels('db-0', { 'statefulset.kubernetes.io/pod-name': 'db-0' })[0]?.name, 'db');
  assert.equal(ownerFromLabels('backup-28901-abcde', { 'batch.kubernetes.io/job-name': 'backup-28901' })[0]?.kind, 'Job');
  assert.equal(ownerFromLabels('agent-x7k2p', { 'pod-template-generation': '1', 'controller-revision-hash': 'abc' })[0]?.name, 'agent');
  assert.deepEqual(ownerFromLabels('lonely', {}), [undefined, undefined]);
  const self = slimSelf({ podName: 'frontend-5d8f9c7b6-x2k4q', namespace: 'shop', uid: 'u', nodeName: 'n', podIPs: ['198.18.0.1'], labels: { app: 'frontend', tier: 'web', 'pod-template-hash': 'x' } }, ['tier', 'app', 'missing']);
  assert.deepEqual(self.labels, [['tier', 'web'], ['app', 'frontend']], 'configured keys only, in configuration order');
});

test('a missing downward API value stops the sidecar with a message naming it', () => {
  assert.throws(() => readDownwardPod({ POD_NAME: 'p' }, ''), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PODFLOW_ERR_SIDECAR_IDENTITY');
    assert.match(err.message, /POD_NAMESPACE, POD_UID, NODE_NAME not set/);
    return true;
  });
  assert.throws(() => readDownwardPod({ POD_NAME: 'p', POD_NAMESPACE: 'n', POD_UID: 'u', POD_IPS: '198.18.0.1,nope' }, 'node'), /POD_IPS: not an IP address: "nope"/);
  assert.throws(() => readDownwardPod({ POD_NAME: 'p', POD_NAMESPACE: 'n', POD_UID: 'u', PODFLOW_PODINFO_DIR: '/nonexistent' }, 'node'), /labels file .* ENOENT/);
  const id = readDownwardPod({ POD_NAME: 'p', POD_NAMESPACE: 'n', POD_UID: 'u', POD_IPS: '198.18.0.1,fd00::1' }, 'node');
  assert.deepEqual(id.podIPs, ['198.18.0.1', 'fd00::1']);
});

test("the injected container's args and env load with the agent's own configuration loader", () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-sidecar-args-'));
  try {
    const c = sidecarContainer({ ...DEFAULT_WEBHOOK_CONFIG.sidecar, collectors: ['udp://192.0.2.10:4739', 'tcp://[fd00::10]:4739'], clusterName: 'prod', enterpriseNumber: 64512 }) as {
      args: string[];
      env: Array<{ name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }>;
    };
    assert.equal(c.args[0], 'agent');
    const flags: Array<[string, string]> = [];
    for (const a of c.args.slice(1)) {
      const m = /^--([a-z-]+)=(.*)$/.exec(a);
      assert.ok(m, `${a} is --flag=value`);
      if (m[1] === 'mode') assert.equal(m[2], 'sidecar');
      else if (m[1] === 'set') flags.push([m[2]!.slice(0, m[2]!.indexOf('=')), m[2]!.slice(m[2]!.indexOf('=') + 1)]);
      else {
        assert.ok(m[1]! in FLAGS, `--${m[1]} is a flag of podflow agent`);
        flags.push([FLAGS[m[1]!]!, m[2]!]);
      }
    }
    const env = Object.fromEntries(c.env.map((e) => [e.name, e.value ?? `value-of-${e.valueFrom!.fieldRef.fieldPath}`]));
    const config = loadConfig({ env, flags });
    assert.deepEqual(config.collectors, ['udp://192.0.2.10:4739', 'tcp://[fd00::10]:4739']);
    assert.equal(config.clusterName, 'prod');
    assert.equal(config.enterpriseNumber, 64512);
    assert.equal(config.nodeName, 'value-of-spec.nodeName');
    assert.equal(config.metrics.listen, `0.0.0.0:${DEFAULT_WEBHOOK_CONFIG.sidecar.metricsPort}`);
    writeFileSync(join(dir, 'labels'), 'app="x"\n');
    const id = readDownwardPod({ ...env, POD_IPS: '198.18.0.1', PODFLOW_PODINFO_DIR: dir }, config.nodeName);
    assert.equal(id.podName, 'value-of-metadata.name');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
