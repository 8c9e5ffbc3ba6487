// Builds the install with the real `kubectl kustomize` (offline) and checks
// objects against the Kubernetes API schemas of two npm libraries:
// kubernetes-models (+ @kubernetes-models/prometheus-operator): the OpenAPI
// schemas of every built-in kind and of the prometheus-operator CRDs, with
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

// apiVersion -> the kubernetes-models module folder (core "v1" is "v1").
async function modelOf(apiVersion: string, kind: string): Promise<(new (data: unknown) => { validate(): void }) | undefined> {
  const path = apiVersion === 'monitoring.coreos.com/v1'
    ? `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`
    : `kubernetes-models/${apiVersion}/${kind}`;
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
  if (o.apiVersion !== 'monitoring.coreos.com/v1' && typeName in k8s) {
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
