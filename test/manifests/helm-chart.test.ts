// The webhook's Helm chart (manifests/charts/podflow-webhook), rendered as
// `helm template` renders it by test/manifests/helm-render (./helm.ts says
// why there is no helm binary): values are checked against values.schema.json
// as Helm checks them, every object of the rendering validates against the
// Kubernetes API schemas and every reference between the objects resolves
// (the checks the Kustomize install gets), the MutatingWebhookConfiguration
// can never block pod creation and is never called for kube-system, its own
// namespace or excludeNamespaces, and the ConfigMap is a configuration that
// `podflow webhook` loads and from which it injects exactly the container
// agent/inject.ts makes for the values given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { parse } from 'yaml';
import { consistencyProblems, schemaProblems, type KubeObject } from './kustomize.ts';
import { CHART, helmRenderProblem, helmTemplate, objectsOf, type Rendered } from './helm.ts';
import { DEFAULT_WEBHOOK_CONFIG, loadWebhookConfig, type WebhookConfig } from '../../agent/webhook.ts';
import { decide, injectionPatch, sidecarContainer, type SidecarSettings } from '../../agent/inject.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const problem = helmRenderProblem();
test('helm-render is built (./run setup)', () => {
  assert.equal(problem, undefined, problem);
});

const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Json;
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n';
/** The least a user sets: a collector, a selection and a TLS source (here the certificate, key and CA). */
const byName = { collector: { address: '192.0.2.10' }, selection: { deployments: ['frontend', 'data/backend'] }, tls: { cert: PEM, key: KEY, caBundle: PEM } };
/** Every value that shapes the injected container set, and cert-manager for TLS. */
const overrides = {
  image: { repository: 'registry.example.com/podflow', tag: '1.2.3', pullPolicy: 'Always' },
  collector: { address: 'fd00::10', port: 2055, protocol: 'tcp' },
  clusterName: 'prod-eu',
  enterpriseNumber: 4294967295,
  selection: { label: 'podflow.io/sidecar=enabled' },
  excludeNamespaces: ['batch', 'ci'],
  sidecar: { metricsPort: 9500, resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } } },
  webhook: { replicas: 3, port: 9443, timeoutSeconds: 10, logLevel: 'debug' },
  tls: { certManager: { enabled: true, issuerName: 'ca-issuer', issuerKind: 'ClusterIssuer' } },
};

const rendered = (values: Json, namespace = 'podflow'): Rendered => helmTemplate(values, { release: 'podflow', namespace });
const only = (objects: KubeObject[], kind: string): Json => {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `one ${kind} in ${objects.map((o) => o.kind).join(', ')}`);
  return found[0];
};
const podSpecOf = (objects: KubeObject[]): Json => only(objects, 'Deployment').spec.template.spec;

test('renders with the required values, each TLS source, and every object validates against the Kubernetes API schemas with every reference resolved', { skip: problem }, async () => {
  for (const [what, values, kinds] of [
    ['certificate given', byName, ['ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'Secret', 'Service', 'ServiceAccount']],
    ['cert-manager', overrides, ['Certificate', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'Service', 'ServiceAccount']],
  ] as const) {
    const objects = objectsOf(rendered(values, 'observability'));
    assert.deepEqual(objects.map((o) => o.kind).sort(), kinds, what);
    for (const o of objects) {
      if (o.kind !== 'MutatingWebhookConfiguration') assert.equal(o.metadata.namespace, 'observability', `${what}: ${o.kind} is in the release namespace`);
      assert.equal(o.metadata.labels?.['app.kubernetes.io/instance'], 'podflow', `${what}: ${o.kind} carries the release label`);
    }
    assert.deepEqual((await Promise.all(objects.map(schemaProblems))).flat(), [], what);
    assert.deepEqual(consistencyProblems(objects), [], what);
  }
});

test('Helm refuses values that values.schema.json rejects, before rendering anything', { skip: problem }, () => {
  const merge = (over: Json): Json => ({ ...byName, ...over });
  const rejected: Array<[string, Json]> = [
    ['the defaults alone (no collector, selection, TLS)', {}],
    ['no collector address', merge({ collector: { address: '' } })],
    ['no selection', merge({ selection: { deployments: [], label: '' } })],
    ['a typo in a key', merge({ selection: { deployment: ['x'] } })],
    ['an unknown top-level key', merge({ colector: {} })],
    ['a bad Deployment name', merge({ selection: { deployments: ['Front End'] } })],
    ['a port out of range', merge({ collector: { address: 'c', port: 70000 } })],
    ['a certificate without its CA', merge({ tls: { cert: PEM, key: KEY } })],
    ['both TLS sources', merge({ tls: { cert: PEM, key: KEY, caBundle: PEM, certManager: { enabled: true, issuerName: 'x' } } })],
    ['cert-manager without an issuer', merge({ tls: { cert: '', key: '', caBundle: '', certManager: { enabled: true } } })],
    ['a protocol the sidecar cannot use here', merge({ collector: { address: 'c', protocol: 'sctp' } })],
  ];
  for (const [what, values] of rejected) assert.throws(() => rendered(values), /values don't meet the specifications of the schema\(s\)/, what);
  for (const [what, values] of [
    ['both selections together', merge({ selection: { deployments: ['a'], label: 'b' } })],
    ['an IPv6 collector', merge({ collector: { address: 'fd00::10' } })],
  ] as const) assert.ok(objectsOf(rendered(values)).length > 0, what);
});

test('every value a template references exists in values.yaml, and every value is used', () => {
  const templates = readdirSync(join(CHART, 'templates')).map((f) => readFileSync(join(CHART, 'templates', f), 'utf8'));
  const referenced = new Set(templates.flatMap((text) => [...text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) => m[1].slice(1))));
  assert.ok(referenced.size >= 15, `found the references: ${[...referenced].join(', ')}`);
  for (const path of referenced) {
    let node: unknown = defaults;
    for (const part of path.split('.')) {
      assert.ok(node && typeof node === 'object' && Object.hasOwn(node, part), `.Values.${path} is in values.yaml`);
      node = (node as Json)[part];
    }
  }
  const leaves = (o: Json, prefix: string): string[] =>
    Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) && k !== 'resources' ? leaves(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
  for (const leaf of leaves(defaults, '')) {
    assert.ok([...referenced].some((r) => r === leaf || leaf.startsWith(`${r}.`)), `values.yaml key ${leaf} is used by a template`);
  }
  // Every key of the schema is in values.yaml (documented with its default), and the other way round.
  const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Json;
  assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(defaults).sort());
});

test('the MutatingWebhookConfiguration never blocks pod creation and is never called for kube-system, its own namespace or excludeNamespaces', { skip: problem }, () => {
  for (const [what, values, excluded] of [['defaults', byName, []], ['overrides', overrides, overrides.excludeNamespaces]] as const) {
    const objects = objectsOf(rendered(values, 'observability'));
    const config = only(objects, 'MutatingWebhookConfiguration');
    assert.equal(config.webhooks.length, 1, what);
    const hook = config.webhooks[0];
    assert.equal(hook.failurePolicy, 'Ignore', what);
    assert.equal(hook.sideEffects, 'None', what);
    assert.deepEqual(hook.admissionReviewVersions, ['v1'], what);
    assert.deepEqual(hook.rules, [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }], what);
    assert.deepEqual(hook.namespaceSelector, { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'observability', ...excluded] }] }, what);
    assert.equal(hook.timeoutSeconds, values === overrides ? 10 : defaults.webhook.timeoutSeconds, what);
    const service = only(objects, 'Service');
    assert.deepEqual(hook.clientConfig.service, { name: service.metadata.name, namespace: 'observability', path: '/mutate', port: 443 }, what);
  }
});

test('the API server trusts the webhook: the CA given, or the one cert-manager injects for the certificate the webhook serves', { skip: problem }, () => {
  const given = objectsOf(rendered(byName, 'observability'));
  const hook = only(given, 'MutatingWebhookConfiguration');
  assert.equal(Buffer.from(hook.webhooks[0].clientConfig.caBundle, 'base64').toString(), PEM);
  const secret = only(given, 'Secret');
  assert.equal(secret.type, 'kubernetes.io/tls');
  assert.equal(Buffer.from(secret.data['tls.crt'], 'base64').toString(), PEM);
  assert.equal(Buffer.from(secret.data['tls.key'], 'base64').toString(), KEY);
  assert.equal(podSpecOf(given).volumes.find((v: Json) => v.name === 'tls').secret.secretName, secret.metadata.name);

  const managed = objectsOf(rendered(overrides, 'observability'));
  const managedHook = only(managed, 'MutatingWebhookConfiguration');
  const certificate = only(managed, 'Certificate');
  assert.equal(managedHook.webhooks[0].clientConfig.caBundle, undefined, 'cert-manager fills the caBundle');
  assert.equal(managedHook.metadata.annotations['cert-manager.io/inject-ca-from'], `observability/${certificate.metadata.name}`);
  assert.deepEqual(certificate.spec.issuerRef, { name: 'ca-issuer', kind: 'ClusterIssuer' });
  const service = only(managed, 'Service').metadata.name;
  assert.deepEqual(certificate.spec.dnsNames, [`${service}.observability.svc`, `${service}.observability.svc.cluster.local`], 'the name the API server calls');
  assert.equal(podSpecOf(managed).volumes.find((v: Json) => v.name === 'tls').secret.secretName, certificate.spec.secretName);
  assert.equal(managed.filter((o) => o.kind === 'Secret').length, 0, 'no Secret of our own');
});

/** The webhook's configuration as the Deployment hands it to `podflow webhook`: the ConfigMap's file, POD_NAMESPACE from the downward API. */
function webhookConfigOf(objects: KubeObject[], namespace: string): WebhookConfig {
  const spec = podSpecOf(objects);
  const container = spec.containers[0];
  assert.deepEqual(container.args.slice(0, 1), ['webhook']);
  const file = (container.args as string[]).find((a) => a.startsWith('--config='))!.slice('--config='.length);
  const mount = container.volumeMounts.find((m: Json) => m.mountPath === file);
  const cm = only(objects, 'ConfigMap');
  assert.equal(spec.volumes.find((v: Json) => v.name === mount.name).configMap.name, cm.metadata.name);
  assert.equal(container.env.find((e: Json) => e.name === 'POD_NAMESPACE').valueFrom.fieldRef.fieldPath, 'metadata.namespace');
  const dir = mkdtempSync(join(tmpdir(), 'podflow-webhook-config-'));
  try {
    writeFileSync(join(dir, 'webhook.yaml'), cm.data[mount.subPath]);
    return loadWebhookConfig(join(dir, 'webhook.yaml'), { POD_NAMESPACE: namespace });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the ConfigMap is a configuration `podflow webhook` loads, and the container it injects is agent/inject.ts's for the values given", { skip: problem }, async () => {
  const cases: Array<[string, Json, SidecarSettings, Pick<WebhookConfig, 'selection' | 'excludeNamespaces'>]> = [
    ['defaults', byName, { ...DEFAULT_WEBHOOK_CONFIG.sidecar, collectors: ['udp://192.0.2.10:4739'] }, { selection: { deployments: ['frontend', 'data/backend'], label: '' }, excludeNamespaces: [] }],
    ['overrides', overrides, {
      image: 'registry.example.com/podflow:1.2.3',
      imagePullPolicy: 'Always',
      collectors: ['tcp://[fd00::10]:2055'],
      clusterName: 'prod-eu',
      enterpriseNumber: 4294967295,
      metricsPort: 9500,
      resources: overrides.sidecar.resources,
    }, { selection: { deployments: [], label: 'podflow.io/sidecar=enabled' }, excludeNamespaces: ['batch', 'ci'] }],
  ];
  for (const [what, values, sidecar, selection] of cases) {
    const objects = objectsOf(rendered(values, 'observability'));
    const config = webhookConfigOf(objects, 'observability');
    assert.deepEqual(sidecarContainer(config.sidecar), sidecarContainer(sidecar), `${what}: the injected container`);
    assert.deepEqual({ selection: config.selection, excludeNamespaces: config.excludeNamespaces }, selection, what);
    assert.equal(config.namespace, 'observability', `${what}: never injects its own namespace`);
    // The webhook listens where the Deployment's port and the Service point, with the certificate the tls volume mounts.
    const container = podSpecOf(objects).containers[0];
    assert.equal(container.image, sidecar.image, `${what}: the webhook runs the image it injects`);
    assert.equal(Number(config.listen.slice(config.listen.lastIndexOf(':') + 1)), container.ports.find((p: Json) => p.name === 'https').containerPort, what);
    const tlsMount = container.volumeMounts.find((m: Json) => m.name === 'tls').mountPath;
    assert.deepEqual([config.tls.certFile, config.tls.keyFile], [`${tlsMount}/tls.crt`, `${tlsMount}/tls.key`], what);
    assert.equal(config.log.level, values === overrides ? 'debug' : 'info', what);

    // A pod it selects gets the container, and the patched pod is a valid Pod.
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'frontend-7d4b9c-x2x', namespace: 'data', labels: { app: 'frontend', 'pod-template-hash': '7d4b9c', 'podflow.io/sidecar': 'enabled' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'backend-7d4b9c', uid: 'u', controller: true }] }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };
    assert.equal(decide(config, pod, 'data').inject, true, `${what}: selects the pod`);
    const patched = fastJsonPatch.applyPatch(structuredClone(pod), injectionPatch(config, pod) as fastJsonPatch.Operation[]).newDocument as KubeObject;
    assert.deepEqual((patched.spec as Json).containers.find((c: Json) => c.name === 'podflow'), sidecarContainer(sidecar), what);
    assert.deepEqual(await schemaProblems(patched), [], what);
    for (const ns of ['kube-system', 'observability', ...selection.excludeNamespaces]) assert.equal(decide(config, pod, ns).inject, false, `${what}: ${ns} is never injected`);
  }
});

test("the chart's defaults are the webhook's own defaults", { skip: problem }, () => {
  const config = webhookConfigOf(objectsOf(rendered(byName)), 'podflow');
  assert.deepEqual({ ...config.sidecar, collectors: [] }, DEFAULT_WEBHOOK_CONFIG.sidecar);
  assert.equal(config.listen, DEFAULT_WEBHOOK_CONFIG.listen);
  assert.deepEqual(config.tls, DEFAULT_WEBHOOK_CONFIG.tls);
  assert.deepEqual(config.log, DEFAULT_WEBHOOK_CONFIG.log);
});

test('the Deployment carries the SHA-256 of the rendered ConfigMap, so a changed configuration rolls the webhook', { skip: problem }, () => {
  const checksum = (r: Rendered) => {
    const cm = r.manifests.find((m) => m.template.endsWith('/configmap.yaml'))!;
    const annotation = only(objectsOf(r), 'Deployment').spec.template.metadata.annotations['checksum/config'];
    assert.equal(annotation, createHash('sha256').update(cm.text).digest('hex'));
    return annotation as string;
  };
  assert.notEqual(checksum(rendered(byName)), checksum(rendered({ ...byName, clusterName: 'other' })));
});

test('NOTES.txt names the namespace, the selection and the collector', { skip: problem }, () => {
  const notes = rendered({ ...overrides, selection: { deployments: ['frontend'], label: 'team=a' } }, 'observability').notes;
  assert.match(notes, /installed in observability\./);
  assert.match(notes, /belong to the Deployments frontend or carry the label team=a\./);
  assert.match(notes, /export IPFIX to tcp:\/\/\[fd00::10\]:2055\./);
});
