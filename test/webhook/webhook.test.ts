// `podflow webhook` as its own process, over real HTTPS with a test CA made
// by openssl: matching pods come back with a JSON Patch that, applied (with
// fast-json-patch, an independent RFC 6902 implementation), gives a pod that
// validates against the Kubernetes schemas (test/manifests/kustomize.ts) and
// carries the sidecar; non-matching, excluded-namespace and already-injected
// pods come back unchanged; malformed reviews get 400; 1,000 reviews are
// answered without error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { CLI } from '../helpers/agent-process.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { waitFor } from '../helpers/wait.ts';
import { schemaProblems, type KubeObject } from '../manifests/kustomize.ts';
import { INJECTED_ANNOTATION, SIDECAR_NAME } from '../../agent/inject.ts';
import { DEFAULT_WEBHOOK_CONFIG, loadWebhookConfig, review } from '../../agent/webhook.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A pod as the ReplicaSet controller creates it for Deployment `deployment`. */
function deploymentPod(deployment: string, namespace: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string>; volumes?: boolean } = {}): Json {
  const hash = '5d8f9c7b6';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `${deployment}-${hash}-`,
      namespace,
      labels: { app: deployment, 'pod-template-hash': hash, ...extra.labels },
      ...(extra.annotations && { annotations: extra.annotations }),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${deployment}-${hash}`, uid: 'uid-rs', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      containers: [{ name: 'app', image: 'nginx:1.27', ports: [{ containerPort: 80 }] }],
      ...(extra.volumes && { volumes: [{ name: 'data', emptyDir: {} }] }),
    },
  };
}

let uids = 0;
const admissionReview = (pod: Json, namespace = pod.metadata.namespace as string, operation = 'CREATE'): Json => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: `review-${++uids}`,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    requestKind: { group: '', version: 'v1', kind: 'Pod' },
    namespace,
    operation,
    userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
    object: pod,
    oldObject: null,
    dryRun: false,
  },
});

const CONFIG = (port: number) => [
  "listen: '127.0.0.1:0'",
  'selection:',
  '  deployments: [frontend, data/backend]',
  "  label: 'podflow.io/sidecar=enabled'",
  'sidecar:',
  '  image: registry.example.com/podflow:0.1.0',
  `  collectors: ['udp://192.0.2.10:${port}']`,
  '  clusterName: prod-eu',
  '  enterpriseNumber: 64512',
  'log: {level: debug}',
  '',
].join('\n');

interface Webhook {
  child: ChildProcess;
  port: number;
  logs: () => string;
  post(body: string | Json, contentType?: string): Promise<{ status: number; json: Json }>;
}

async function startWebhook(t: { after(fn: () => unknown): void }, dir: string, ca: TestCa): Promise<Webhook> {
  const config = join(dir, 'webhook.yaml');
  writeFileSync(config, `${CONFIG(4739)}tls: {certFile: '${ca.certFile}', keyFile: '${ca.keyFile}'}\n`);
  const child = spawn(NODE_BIN, [...NODE_FLAGS, CLI, 'webhook', '--config', config], { env: { PATH: process.env.PATH, POD_NAMESPACE: 'podflow' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  t.after(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  });
  await waitFor(() => out.includes('"webhook started"') || child.exitCode !== null, 20_000, 'webhook started').catch((err) => {
    throw new Error(`${err.message}: ${out}`);
  });
  assert.equal(child.exitCode, null, out);
  const listen = JSON.parse(out.split('\n').find((l) => l.includes('"webhook started"'))!).listen as string;
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  const agent = new HttpsAgent({ ca: ca.ca, keepAlive: true, maxSockets: 32 });
  t.after(() => agent.destroy());
  const post = (body: string | Json, contentType = 'application/json') =>
    new Promise<{ status: number; json: Json }>((resolve, reject) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const req = request({ host: 'localhost', port, path: '/mutate', method: 'POST', agent, headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(text) } }, (res) => {
        let data = '';
        res.on('data', (d: Buffer) => (data += d));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, json: JSON.parse(data) as Json });
          } catch (err) {
            reject(new Error(`not JSON (${res.statusCode}): ${data}`, { cause: err }));
          }
        });
      });
      req.on('error', reject);
      req.end(text);
    });
  return { child, port, logs: () => out, post };
}

/** The pod after the review's patch (if any) is applied, and whether there was one. */
function applied(pod: Json, answer: Json): { pod: Json; patched: boolean } {
  const response = answer.response as Json;
  if (response.patch === undefined) return { pod, patched: false };
  assert.equal(response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch as string, 'base64').toString('utf8'));
  // validateOperation = true: an op on a missing path throws instead of being ignored.
  return { pod: jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as Json, patched: true };
}

test('the webhook injects over real HTTPS only where selected, never twice, and answers malformed reviews with 400', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-webhook-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = makeTestCa(dir);
  const webhook = await startWebhook(t, dir, ca);

  // TLS is real: a client that does not trust the test CA is refused.
  await assert.rejects(
    new Promise((resolve, reject) => request({ host: 'localhost', port: webhook.port, path: '/healthz', rejectUnauthorized: true }, resolve).on('error', reject).end()),
    /self-signed|unable to verify|UNABLE_TO_VERIFY|SELF_SIGNED/i,
  );

  // Matching pods: by Deployment name (anywhere, or NAMESPACE/NAME), by label, with and without existing volumes/annotations.
  const matching = [
    deploymentPod('frontend', 'shop'),
    deploymentPod('frontend', 'other', { volumes: true, annotations: { 'example.com/x': 'y' } }),
    deploymentPod('backend', 'data'),
    deploymentPod('cart', 'shop', { labels: { 'podflow.io/sidecar': 'enabled' } }),
  ];
  for (const pod of matching) {
    const { status, json } = await webhook.post(admissionReview(pod));
    assert.equal(status, 200);
    assert.equal(json.apiVersion, 'admission.k8s.io/v1');
    assert.equal(json.kind, 'AdmissionReview');
    assert.equal(json.response.allowed, true);
    const { pod: after, patched } = applied(pod, json);
    assert.ok(patched, `${pod.metadata.generateName} in ${pod.metadata.namespace} is injected`);
    const named = { ...after, metadata: { ...after.metadata, name: `${after.metadata.generateName}abcde` } } as KubeObject;
    assert.deepEqual(await schemaProblems(named), [], 'the patched pod validates against the Kubernetes schema');
    const sidecar = after.spec.containers.find((c: Json) => c.name === SIDECAR_NAME);
    assert.ok(sidecar, 'the sidecar container is there');
    assert.equal(after.spec.containers[0].name, 'app', 'the app container is untouched and first');
    assert.equal(sidecar.image, 'registry.example.com/podflow:0.1.0');
    assert.deepEqual(sidecar.args.slice(0, 2), ['agent', '--mode=sidecar']);
    assert.ok(sidecar.args.includes('--collector=udp://192.0.2.10:4739'));
    assert.ok(sidecar.args.includes('--cluster-name=prod-eu'));
    assert.ok(sidecar.args.includes('--set=enterpriseNumber=64512'));
    assert.deepEqual(sidecar.securityContext.capabilities, { drop: ['ALL'], add: ['NET_RAW'] });
    assert.notEqual(sidecar.securityContext.privileged, true);
    const env = Object.fromEntries(sidecar.env.map((e: Json) => [e.name, e.valueFrom?.fieldRef?.fieldPath ?? e.value]));
    assert.deepEqual([env.POD_NAME, env.POD_NAMESPACE, env.POD_UID, env.NODE_NAME], ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName']);
    const volume = after.spec.volumes.find((v: Json) => v.name === sidecar.volumeMounts[0].name);
    assert.equal(volume.downwardAPI.items[0].fieldRef.fieldPath, 'metadata.labels');
    if (pod.spec.volumes) assert.equal(after.spec.volumes[0].name, 'data', 'existing volumes kept');
    if (pod.metadata.annotations) assert.equal(after.metadata.annotations['example.com/x'], 'y', 'existing annotations kept');
    assert.equal(after.metadata.annotations[INJECTED_ANNOTATION], 'true');

    // Never twice: the injected pod, reviewed again (reinvocation), comes back unchanged.
    const again = await webhook.post(admissionReview(after));
    assert.equal(again.status, 200);
    assert.equal(applied(after, again.json).patched, false, 'already injected: unchanged');
  }

  const unchanged: Array<[string, Json, string?]> = [
    ['another Deployment', deploymentPod('cart', 'shop')],
    ['backend outside data/', deploymentPod('backend', 'shop')],
    ['label with another value', deploymentPod('cart', 'shop', { labels: { 'podflow.io/sidecar': 'disabled' } })],
    ['kube-system', deploymentPod('frontend', 'kube-system')],
    ["the webhook's own namespace", deploymentPod('frontend', 'podflow')],
    ['a pod with no owner', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'frontend', namespace: 'shop' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } }],
    ['opted out', deploymentPod('frontend', 'shop', { annotations: { 'podflow.io/inject': 'false' } })],
    ['a container already named podflow', { ...deploymentPod('frontend', 'shop'), spec: { containers: [{ name: 'app', image: 'x' }, { name: SIDECAR_NAME, image: 'y' }] } }],
  ];
  for (const [what, pod] of unchanged) {
    const { status, json } = await webhook.post(admissionReview(pod));
    assert.equal(status, 200, what);
    assert.equal(json.response.allowed, true, what);
    assert.equal(json.response.uid.startsWith('review-'), true);
    assert.equal(applied(pod, json).patched, false, `${what}: unchanged`);
  }
  // An UPDATE is never patched.
  assert.equal(applied(matching[0], (await webhook.post(admissionReview(matching[0], 'shop', 'UPDATE'))).json).patched, false);

  // The response's uid is the request's.
  const r = admissionReview(matching[0]);
  assert.equal((await webhook.post(r)).json.response.uid, r.request.uid);

  const malformed: Array<[string, string | Json, string?]> = [
    ['not JSON', '{"apiVersion": '],
    ['not an object', '[1,2]'],
    ['wrong content type', admissionReview(matching[0]), 'text/plain'],
    ['v1beta1', { ...admissionReview(matching[0]), apiVersion: 'admission.k8s.io/v1beta1' }],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }],
    ['no uid', { ...admissionReview(matching[0]), request: { ...admissionReview(matching[0]).request, uid: undefined } }],
    ['not a pod', { ...admissionReview(matching[0]), request: { ...admissionReview(matching[0]).request, kind: { group: 'apps', version: 'v1', kind: 'Deployment' } } }],
    ['no object', { ...admissionReview(matching[0]), request: { ...admissionReview(matching[0]).request, object: undefined } }],
    ['object without containers', { ...admissionReview(matching[0]), request: { ...admissionReview(matching[0]).request, object: { metadata: {} } } }],
  ];
  for (const [what, body, contentType] of malformed) {
    const { status, json } = await webhook.post(body, contentType);
    assert.equal(status, 400, what);
    assert.equal(json.code, 'PODFLOW_ERR_WEBHOOK_REVIEW', what);
    assert.ok(typeof json.error === 'string' && json.error.length > 10, `${what}: a clear message (${json.error})`);
  }
  // The log lines are written before each answer but reach the pipe when pino's stream flushes: wait for them.
  const malformedLogged = () => webhook.logs().split('"msg":"malformed review (400)"').length - 1;
  await waitFor(() => malformedLogged() >= malformed.length, 10_000, () => `${malformed.length} "malformed review (400)" log lines, saw ${malformedLogged()}:\n${webhook.logs()}`);
  assert.equal(malformedLogged(), malformed.length, 'one log line per malformed review');
  assert.match(webhook.logs(), /"msg":"sidecar injected"/);

  // Load: 1,000 reviews, 32 connections, every one answered 200 with the right decision.
  const started = Date.now();
  const pods = Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? deploymentPod('frontend', `ns${i % 7}`) : deploymentPod(`app${i}`, `ns${i % 7}`)));
  const answers = await Promise.all(pods.map((pod) => webhook.post(admissionReview(pod))));
  const ms = Date.now() - started;
  t.diagnostic(`1000 reviews in ${ms} ms`);
  answers.forEach(({ status, json }, i) => {
    assert.equal(status, 200);
    assert.equal(json.response.patch !== undefined, i % 2 === 0, `review ${i}`);
  });

  webhook.child.kill('SIGTERM');
  await waitFor(() => webhook.child.exitCode !== null, 5000, 'webhook exit');
  assert.equal(webhook.child.exitCode, 0, webhook.logs());
});

test('the webhook configuration is validated whole, naming each problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-webhook-config-'));
  try {
    const file = join(dir, 'w.yaml');
    writeFileSync(file, CONFIG(4739));
    const c = loadWebhookConfig(file, { POD_NAMESPACE: 'monitoring' });
    assert.equal(c.namespace, 'monitoring');
    assert.deepEqual(c.selection.deployments, ['frontend', 'data/backend']);
    writeFileSync(file, 'selection: {deploymnets: [a]}\nsidecar: {collectors: []}\n');
    assert.throws(() => loadWebhookConfig(file), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PODFLOW_ERR_WEBHOOK_CONFIG');
      assert.match(err.message, /selection\.deploymnets: unknown key/);
      return true;
    });
    writeFileSync(file, "selection: {label: app}\nsidecar: {collectors: []}\n");
    assert.throws(() => loadWebhookConfig(file), /sidecar\.collectors: missing/);
    writeFileSync(file, "sidecar: {collectors: ['udp://c:4739']}\n");
    assert.throws(() => loadWebhookConfig(file), /selection: neither deployments nor label/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a label selection without a value matches any value; the review is pure and fast', () => {
  const c = DEFAULT_WEBHOOK_CONFIG;
  const config = { ...c, sidecar: { ...c.sidecar, collectors: ['udp://c:4739'] }, selection: { deployments: [], label: 'podflow.io/sidecar' } };
  const pod = deploymentPod('x', 'shop', { labels: { 'podflow.io/sidecar': 'anything' } });
  assert.equal(review(config, admissionReview(pod)).outcome, 'injected');
  assert.equal(review(config, admissionReview(deploymentPod('x', 'shop'))).outcome, 'skipped');
});
