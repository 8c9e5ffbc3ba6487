// The webhook's Helm chart (manifests/charts/podflow-webhook), tested without
// a helm binary (there is none on these machines; rendering is untested here,
// docs/sidecar.md says so): values validate against values.schema.json with
// ajv, the schema rejects what it must, every .Values path a template uses
// exists in values.yaml and every value is used, the webhook configuration
// the ConfigMap template writes uses only keys `podflow webhook` knows, and
// the MutatingWebhookConfiguration can never block pod creation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { MANIFESTS } from './kustomize.ts';
import { webhookConfigSchema } from '../../agent/webhook.ts';

const CHART = join(MANIFESTS, 'charts/podflow-webhook');
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Json;
const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Json;
const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);
const templates = readdirSync(join(CHART, 'templates')).map((f) => ({ file: f, text: readFileSync(join(CHART, 'templates', f), 'utf8') }));

/** Helm's merge of user values over values.yaml: maps merge, everything else replaces. */
function merge(base: Json, over: Json): Json {
  const out = structuredClone(base);
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' && !Array.isArray(out[k]) ? merge(out[k], v) : v;
  }
  return out;
}
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n';
const byName = { collector: { address: '192.0.2.10' }, selection: { deployments: ['frontend', 'data/backend'] }, tls: { cert: PEM, key: KEY, caBundle: PEM } };
const byLabel = { collector: { address: 'collector.example.com', port: 2055, protocol: 'tcp' }, selection: { label: 'podflow.io/sidecar=enabled' }, tls: { certManager: { enabled: true, issuerName: 'ca-issuer' } } };
const errors = (values: Json) => (validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`));

test('values.yaml with the required settings validates against values.schema.json', () => {
  assert.deepEqual(errors(merge(defaults, byName)), []);
  assert.deepEqual(errors(merge(defaults, byLabel)), []);
  assert.deepEqual(errors(merge(defaults, { ...byLabel, selection: { deployments: ['a'], label: 'b' } })), [], 'both selections together');
  assert.deepEqual(errors(merge(defaults, { ...byName, collector: { address: 'fd00::10' } })), [], 'an IPv6 collector');
});

test('the schema rejects what would install a useless or broken webhook', () => {
  const rejected: Array<[string, Json]> = [
    ['the defaults alone (no collector, selection, TLS)', defaults],
    ['no collector address', merge(defaults, { ...byName, collector: { address: '' } })],
    ['no selection', merge(defaults, { ...byName, selection: { deployments: [], label: '' } })],
    ['a typo in a key', merge(defaults, { ...byName, selection: { deployment: ['x'] } })],
    ['an unknown top-level key', merge(defaults, { ...byName, colector: {} })],
    ['a bad Deployment name', merge(defaults, { ...byName, selection: { deployments: ['Front End'] } })],
    ['a port out of range', merge(defaults, { ...byName, collector: { address: 'c', port: 70000 } })],
    ['no TLS at all', merge(defaults, { ...byName, tls: { cert: '', key: '', caBundle: '' } })],
    ['a certificate without its CA', merge(defaults, { ...byName, tls: { cert: PEM, key: KEY, caBundle: '' } })],
    ['both TLS sources', merge(defaults, { ...byName, tls: { cert: PEM, key: KEY, caBundle: PEM, certManager: { enabled: true, issuerName: 'x' } } })],
    ['cert-manager without an issuer', merge(defaults, { ...byName, tls: { cert: '', key: '', caBundle: '', certManager: { enabled: true } } })],
    ['a protocol the sidecar cannot use here', merge(defaults, { ...byName, collector: { address: 'c', protocol: 'sctp' } })],
  ];
  for (const [what, values] of rejected) assert.notDeepEqual(errors(values), [], what);
});

/** Every .Values.a.b.c path in the templates. */
const referenced = new Set(templates.flatMap(({ text }) => [...text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) => m[1].slice(1))));

test('every value a template references exists in values.yaml, and every value is used', () => {
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
  assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(defaults).sort());
});

test("the ConfigMap template writes only keys of `podflow webhook`'s configuration schema", () => {
  const cm = templates.find((t) => t.file === 'configmap.yaml')!.text;
  const block = cm.slice(cm.indexOf('webhook.yaml: |') + 'webhook.yaml: |'.length + 1);
  // Template actions become plain strings: only the key structure is compared.
  const config = parse(block.split('\n').map((l) => l.slice(4)).join('\n').replace(/\{\{.*?\}\}/g, 'X').replace(/"X"/g, 'X').replace(/"0\.0\.0\.0:X"/g, 'X')) as Json;
  const unknown = (value: Json, node: Json, path: string): string[] =>
    Object.entries(value).flatMap(([k, v]) => {
      const sub = node.properties?.[k];
      if (!sub) return [`${path}${k}`];
      return v && typeof v === 'object' && !Array.isArray(v) ? unknown(v, sub, `${path}${k}.`) : [];
    });
  assert.deepEqual(unknown(config, webhookConfigSchema as unknown as Json, ''), []);
  for (const key of ['listen', 'tls', 'selection', 'sidecar', 'excludeNamespaces']) assert.ok(key in config, key);
  for (const key of ['collectors', 'clusterName', 'enterpriseNumber', 'image']) assert.ok(key in config.sidecar, `sidecar.${key}`);
});

test('the MutatingWebhookConfiguration never blocks pod creation and never calls for kube-system or its own namespace', () => {
  const text = templates.find((t) => t.file === 'mutatingwebhookconfiguration.yaml')!.text;
  assert.match(text, /^ {4}failurePolicy: Ignore$/m);
  assert.match(text, /^ {4}sideEffects: None$/m);
  assert.match(text, /^ {4}admissionReviewVersions: \[v1\]$/m);
  assert.match(text, /operations: \[CREATE\]/);
  assert.match(text, /resources: \[pods\]/);
  assert.match(text, /namespaceSelector:\n\s+matchExpressions:\n\s+- key: kubernetes\.io\/metadata\.name\n\s+operator: NotIn/);
  assert.match(text, /- kube-system\n\s+- \{\{ \.Release\.Namespace \}\}/);
  assert.match(text, /path: \/mutate/);
  assert.ok(/cert-manager\.io\/inject-ca-from/.test(text) && /caBundle:/.test(text), 'CA from cert-manager or from values');
  // Balanced template actions in every file (a cheap guard against a broken template).
  for (const { file, text: t } of templates) {
    assert.equal((t.match(/\{\{/g) ?? []).length, (t.match(/\}\}/g) ?? []).length, file);
    const opens = (t.match(/\{\{-? *(if|range|define|with) /g) ?? []).length;
    assert.equal(opens, (t.match(/\{\{-? *end *-?\}\}/g) ?? []).length, `${file}: every if/range/define/with has its end`);
  }
});
