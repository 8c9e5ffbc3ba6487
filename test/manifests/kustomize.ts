// Builds the install with the real `kubectl kustomize` (offline) and checks
// objects against the Kubernetes API schemas of two npm libraries:
// kubernetes-models (+ @kubernetes-models/prometheus-operator and
// @kubernetes-models/cert-manager): the OpenAPI schemas of every built-in
// kind and of the prometheus-operator and cert-manager CRDs, with
// validate() (types, enums, required fields); and @kubernetes/client-node's
// generated models (the agent's own client): their attribute maps list every
// field of every type, so an unknown field (a typo such as
// readOnlyRootFileSystem) is caught as the API server's strict field
// validation would.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

export const MANIFESTS = fileURLToPath(new URL('../../manifests/', import.meta.url));
export const COMPONENTS = ['servicemonitor', 'prometheusrule', 'grafana-dashboard', 'privileged'] as const;

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

/** Why kubectl cannot build the install here, or undefined. kustomize components need kustomize >= 3.7 (kubectl >= 1.21). */
export function kubectlProblem(): string | undefined {
  const r = spawnSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
  if (r.error) {
    return `kubectl not found on PATH (${(r.error as NodeJS.ErrnoException).code}): install kubectl >= 1.21 (the machine image's "kubectl" package; Debian's kubernetes-client 1.20 is too old for kustomize components)`;
  }
  try {
    const v = JSON.parse(r.stdout) as { clientVersion: { major: string; minor: string } };
    const minor = Number.parseInt(v.clientVersion.minor, 10);
    if (Number(v.clientVersion.major) === 1 && minor < 21) return `kubectl 1.${minor} is too old: kustomize components need kubectl >= 1.21`;
  } catch {
    return `kubectl version printed no JSON: ${r.stderr || r.stdout}`;
  }
  return undefined;
}

/** `kubectl kustomize DIR`, parsed. Throws with kubectl's message on failure. */
export function kustomize(dir: string): KubeObject[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed (${r.status}): ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => {
    if (d.errors.length > 0) throw d.errors[0];
    return d.toJS() as KubeObject;
  }).filter(Boolean);
}

/** Builds manifests/ with the given components, from an overlay in a temporary directory (as a user would). */
export function kustomizeWith(components: readonly string[]): KubeObject[] {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-overlay-'));
  try {
    const rel = relative(dir, MANIFESTS);
    writeFileSync(join(dir, 'kustomization.yaml'), [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      `resources: [${rel}]`,
      `components: [${components.map((c) => `${rel}/components/${c}`).join(', ')}]`,
      '',
    ].join('\n'));
    return kustomize(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The custom resources of the install and the package with their schemas. */
const CRD_MODELS: Record<string, string> = {
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator',
  'cert-manager.io/v1': '@kubernetes-models/cert-manager',
};

// apiVersion -> the kubernetes-models module folder (core "v1" is "v1").
async function modelOf(apiVersion: string, kind: string): Promise<(new (data: unknown) => { validate(): void }) | undefined> {
  const path = `${CRD_MODELS[apiVersion] ?? 'kubernetes-models'}/${apiVersion}/${kind}`;
  try {
    const mod = (await import(path)) as Record<string, new (data: unknown) => { validate(): void }>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** Problems of one object against the Kubernetes API schemas: [] when valid. */
export async function schemaProblems(o: KubeObject): Promise<string[]> {
  const what = `${o.kind}/${o.metadata?.name}`;
  const Model = await modelOf(o.apiVersion, o.kind);
  if (!Model) return [`${what}: no schema for ${o.apiVersion} ${o.kind}`];
  const problems: string[] = [];
  try {
    new Model(o).validate();
  } catch (err) {
    problems.push(`${what}: ${(err as Error).message}`);
  }
  const typeName = `V1${o.kind}`;
  if (!(o.apiVersion in CRD_MODELS) && typeName in k8s) {
    for (const p of unknownFields(o, typeName, '')) problems.push(`${what}: unknown field ${p}`);
  }
  return problems;
}

interface Attribute { baseName: string; type: string }
type ModelClass = { getAttributeTypeMap(): Attribute[] };

function unknownFields(value: unknown, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1], `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return typeof value === 'object' ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1], `${path}.${k}`)) : [];
  const model = (k8s as unknown as Record<string, ModelClass | undefined>)[type];
  if (!model || typeof model.getAttributeTypeMap !== 'function' || typeof value !== 'object') return [];
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => {
    const t = attributes.get(k);
    return t === undefined ? [`${path}.${k}`.replace(/^\./, '')] : unknownFields(v, t, `${path}.${k}`);
  });
}

export const find = (objects: KubeObject[], kind: string, name?: string): KubeObject => {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!o) throw new Error(`no ${kind}${name ? `/${name}` : ''} in the build`);
  return o;
};

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const WORKLOADS = ['Deployment', 'DaemonSet', 'StatefulSet'];
const namespaceOf = (o: KubeObject) => o.metadata.namespace ?? 'default';

/**
 * What the API schemas pass but a cluster would not run: references between
 * the objects of one install that lead nowhere. A workload's selector matches
 * its pod template; its service account and the ConfigMaps and Secrets its
 * volumes and environment name are in the install (a Secret may be a
 * cert-manager Certificate's secretName); every
 * volume mount names a volume; a probe's or a Service's named port is a
 * container port; a Service selects some workload's pods; a webhook calls a
 * Service of the install on a port it has; a binding's service account and
 * role exist. [] when all hold.
 */
export function consistencyProblems(objects: KubeObject[]): string[] {
  const problems: string[] = [];
  const has = (kind: string, name: string, ns?: string) => objects.some((o) => o.kind === kind && o.metadata.name === name && (ns === undefined || namespaceOf(o) === ns));
  const secretFrom = (name: string, ns: string) => has('Secret', name, ns) || objects.some((o) => o.kind === 'Certificate' && namespaceOf(o) === ns && (o.spec as Json)?.secretName === name);
  const workloads = objects.filter((o) => WORKLOADS.includes(o.kind));
  const podLabels = (w: KubeObject): Record<string, string> => (w.spec as Json).template?.metadata?.labels ?? {};
  const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  for (const w of workloads) {
    const what = `${w.kind}/${w.metadata.name}`;
    const ns = namespaceOf(w);
    const spec = (w.spec as Json).template?.spec ?? {};
    if (!selects((w.spec as Json).selector?.matchLabels ?? {}, podLabels(w))) problems.push(`${what}: the selector does not match the pod template's labels`);
    const sa = spec.serviceAccountName as string | undefined;
    if (sa && sa !== 'default' && !has('ServiceAccount', sa, ns)) problems.push(`${what}: service account ${sa} is not in the install`);
    const volumes = (spec.volumes ?? []) as Json[];
    for (const v of volumes) {
      if (v.configMap && !v.configMap.optional && !has('ConfigMap', v.configMap.name, ns)) problems.push(`${what}: volume ${v.name}: ConfigMap ${v.configMap.name} is not in the install`);
      if (v.secret && !v.secret.optional && !secretFrom(v.secret.secretName, ns)) problems.push(`${what}: volume ${v.name}: Secret ${v.secret.secretName} is not in the install`);
    }
    for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])] as Json[]) {
      const ports = new Set(((c.ports ?? []) as Json[]).map((p) => p.name).filter(Boolean));
      const sources = [...((c.envFrom ?? []) as Json[]), ...((c.env ?? []) as Json[]).map((e) => ({ configMapRef: e.valueFrom?.configMapKeyRef, secretRef: e.valueFrom?.secretKeyRef }))];
      for (const { configMapRef: cm, secretRef: secret } of sources) {
        if (cm && !cm.optional && !has('ConfigMap', cm.name, ns)) problems.push(`${what}: container ${c.name} reads ConfigMap ${cm.name}, which is not in the install`);
        if (secret && !secret.optional && !secretFrom(secret.name, ns)) problems.push(`${what}: container ${c.name} reads Secret ${secret.name}, which is not in the install`);
      }
      for (const m of (c.volumeMounts ?? []) as Json[]) if (!volumes.some((v) => v.name === m.name)) problems.push(`${what}: container ${c.name} mounts ${m.name}, which is no volume`);
      for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
        if (typeof port === 'string' && !ports.has(port)) problems.push(`${what}: container ${c.name} ${probe} uses port ${port}, which it does not have`);
      }
    }
  }
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const spec = svc.spec as Json;
    if (!spec.selector) continue;
    const selected = workloads.filter((w) => namespaceOf(w) === namespaceOf(svc) && selects(spec.selector, podLabels(w)));
    if (selected.length === 0) problems.push(`Service/${svc.metadata.name}: selects no workload's pods`);
    for (const p of (spec.ports ?? []) as Json[]) {
      if (typeof p.targetPort !== 'string') continue;
      const named = selected.some((w) => ((w.spec as Json).template.spec.containers as Json[]).some((c) => ((c.ports ?? []) as Json[]).some((cp) => cp.name === p.targetPort)));
      if (!named) problems.push(`Service/${svc.metadata.name}: targetPort ${p.targetPort} is no container port of the pods it selects`);
    }
  }
  for (const hook of objects.filter((o) => o.kind === 'MutatingWebhookConfiguration' || o.kind === 'ValidatingWebhookConfiguration')) {
    for (const w of ((hook as Json).webhooks ?? []) as Json[]) {
      const ref = w.clientConfig?.service;
      if (!ref) continue;
      const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === ref.name && namespaceOf(o) === ref.namespace);
      if (!svc) problems.push(`${hook.kind}/${hook.metadata.name}: webhook ${w.name} calls Service ${ref.namespace}/${ref.name}, which is not in the install`);
      else if (!((svc.spec as Json).ports as Json[]).some((p) => p.port === (ref.port ?? 443))) problems.push(`${hook.kind}/${hook.metadata.name}: webhook ${w.name} calls port ${ref.port ?? 443}, which Service ${ref.name} does not have`);
    }
  }
  for (const b of objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
    const { roleRef, subjects = [] } = b as Json;
    if (!has(roleRef.kind, roleRef.name)) problems.push(`${b.kind}/${b.metadata.name}: ${roleRef.kind} ${roleRef.name} is not in the install`);
    for (const s of subjects as Json[]) {
      if (s.kind === 'ServiceAccount' && !has('ServiceAccount', s.name, s.namespace ?? namespaceOf(b))) problems.push(`${b.kind}/${b.metadata.name}: service account ${s.namespace}/${s.name} is not in the install`);
    }
  }
  return problems;
}
