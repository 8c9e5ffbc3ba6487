// The manual sidecar path, built offline with the real kubectl: the example
// app (manifests/examples/sidecar-app) with the sidecar component gets the
// sidecar in the Deployments selected by label and by name and nowhere else,
// every object validates against the Kubernetes schemas, the patch also works
// alone with `kubectl patch --local`, and the container is the one the webhook
// injects (same privileges, downward-API identity and volume).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { consistencyProblems, find, kubectlProblem, kustomize, MANIFESTS, schemaProblems, type KubeObject } from './kustomize.ts';
import { SIDECAR_NAME, sidecarContainer, podinfoVolume } from '../../agent/inject.ts';
import { DEFAULT_WEBHOOK_CONFIG } from '../../agent/webhook.ts';
import { loadConfig } from '../../agent/config.ts';

const problem = kubectlProblem();
const EXAMPLE = join(MANIFESTS, 'examples/sidecar-app');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const podSpec = (o: KubeObject): Json => (o.spec as Json).template.spec;
const sidecarOf = (o: KubeObject): Json | undefined => podSpec(o).containers.find((c: Json) => c.name === SIDECAR_NAME);

test('kubectl kustomize of the example app adds the sidecar to the Deployments selected by label and by name only', { skip: problem }, async () => {
  const objects = kustomize(EXAMPLE);
  const deployments = objects.filter((o) => o.kind === 'Deployment');
  assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ['cart', 'db', 'frontend']);
  assert.ok(sidecarOf(find(objects, 'Deployment', 'cart')), 'cart (by label) has the sidecar');
  assert.ok(sidecarOf(find(objects, 'Deployment', 'frontend')), 'frontend (by name) has the sidecar');
  assert.equal(sidecarOf(find(objects, 'Deployment', 'db')), undefined, 'db is not selected');
  assert.deepEqual(podSpec(find(objects, 'Deployment', 'db')).containers.map((c: Json) => c.name), ['postgres']);

  const problems = (await Promise.all(objects.map(schemaProblems))).flat();
  assert.deepEqual(problems, [], 'every object validates against the Kubernetes API schemas');
  assert.deepEqual(consistencyProblems(objects), [], 'every reference between the objects resolves');

  for (const name of ['cart', 'frontend']) {
    const d = find(objects, 'Deployment', name);
    const spec = podSpec(d);
    // A strategic merge puts the new container first; the app's is kept (docs/sidecar.md: set kubectl.kubernetes.io/default-container).
    assert.deepEqual(spec.containers.map((c: Json) => c.name).sort(), ['app', SIDECAR_NAME]);
    const sidecar = sidecarOf(d)!;
    // Its settings come from a ConfigMap that the build contains (name with the generator's hash).
    const cm = sidecar.envFrom[0].configMapRef.name as string;
    const data = (find(objects, 'ConfigMap', cm) as KubeObject & { data: Record<string, string> }).data;
    assert.equal(data.PODFLOW_COLLECTORS, 'udp://192.0.2.10:4739');
    assert.equal(data.PODFLOW_ENTERPRISE_NUMBER, '64512');
    assert.ok(sidecar.args.includes('--set=enterpriseNumber=$(PODFLOW_ENTERPRISE_NUMBER)'), 'the args use a variable the ConfigMap sets');
    assert.equal((d.spec as Json).template.metadata.annotations['podflow.io/injected'], 'true', 'marked, so the webhook never injects twice');
    // The same container the webhook injects: privileges, identity, volume.
    const injected = sidecarContainer(DEFAULT_WEBHOOK_CONFIG.sidecar);
    assert.deepEqual(sidecar.securityContext, injected.securityContext);
    assert.deepEqual(sidecar.env, injected.env);
    assert.deepEqual(sidecar.volumeMounts, injected.volumeMounts);
    assert.deepEqual(sidecar.args.slice(0, 2), ['agent', '--mode=sidecar']);
    assert.deepEqual(spec.volumes.find((v: Json) => v.name === 'podflow-podinfo'), podinfoVolume());
  }
  assert.ok(podSpec(find(objects, 'Deployment', 'cart')).volumes.some((v: Json) => v.name === 'cache'), "cart's own volume is kept");

  // What the container would run, as the kubelet makes it: env from the ConfigMap and the
  // downward API, $(VAR) in args expanded; the agent's own loader accepts it.
  const sidecar = sidecarOf(find(objects, 'Deployment', 'frontend'))!;
  const env: Record<string, string> = { ...(find(objects, 'ConfigMap', sidecar.envFrom[0].configMapRef.name) as KubeObject & { data: Record<string, string> }).data };
  for (const e of sidecar.env as Json[]) env[e.name] = e.value ?? `value-of-${e.valueFrom.fieldRef.fieldPath}`;
  const args = (sidecar.args as string[]).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (m, name: string) => env[name] ?? m));
  assert.deepEqual(args.slice(0, 2), ['agent', '--mode=sidecar']);
  const flags = args.slice(2).map((a) => {
    const m = /^--set=([^=]+)=(.*)$/.exec(a);
    assert.ok(m, `${a} is --set=KEY=VALUE`);
    return [m[1]!, m[2]!] as [string, string];
  });
  const config = loadConfig({ env, flags });
  assert.deepEqual(config.collectors, ['udp://192.0.2.10:4739']);
  assert.equal(config.clusterName, 'prod-eu');
  assert.equal(config.enterpriseNumber, 64512);
  assert.equal(config.metrics.listen, '0.0.0.0:9464');
  assert.equal(config.nodeName, 'value-of-spec.nodeName');
});

test('the sidecar patch also works alone: kubectl patch --local', { skip: problem }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-sidecar-patch-'));
  try {
    const db = find(kustomize(EXAMPLE), 'Deployment', 'db');
    const file = join(dir, 'db.yaml');
    writeFileSync(file, JSON.stringify(db));
    const r = spawnSync('kubectl', ['patch', '--local', '-f', file, '--type', 'strategic', '--patch-file', join(MANIFESTS, 'components/sidecar/sidecar-patch.yaml'), '-o', 'json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const patched = JSON.parse(r.stdout) as KubeObject;
    assert.deepEqual(podSpec(patched).containers.map((c: Json) => c.name).sort(), [SIDECAR_NAME, 'postgres']);
    assert.deepEqual(await schemaProblems(patched), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the patch file is a Deployment with exactly one container: the sidecar', () => {
  const patch = parse(readFileSync(join(MANIFESTS, 'components/sidecar/sidecar-patch.yaml'), 'utf8')) as Json;
  assert.equal(patch.kind, 'Deployment');
  assert.deepEqual(patch.spec.template.spec.containers.map((c: Json) => c.name), [SIDECAR_NAME]);
});
