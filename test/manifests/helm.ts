// `helm template` for the tests, without a helm binary (none is packaged for
// Debian bookworm or npm, the only registries these machines reach, and no
// npm implementation of Go templates has Helm's functions and include):
// test/manifests/helm-render, a small Go program that ./run setup builds from
// Debian's Go packages with the libraries Helm 3 renders with. Its header and
// docs/install.md say what it renders as Helm does and what it does not.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MANIFESTS, type KubeObject } from './kustomize.ts';

export const CHART = join(MANIFESTS, 'charts/podflow-webhook');
export const HELM_RENDER = fileURLToPath(new URL('./helm-render/build/helm-render', import.meta.url));
/** .Capabilities.KubeVersion: the Kubernetes release whose API schemas kubernetes-models carries (its README). */
export const KUBE_VERSION = 'v1.27.1';

export interface Rendered {
  /** The values the templates saw: values.yaml coalesced with the given ones. */
  values: Record<string, unknown>;
  manifests: Array<{ template: string; text: string; objects: KubeObject[] }>;
  notes: string;
}

/** Why helm-render cannot run here, or undefined. */
export function helmRenderProblem(): string | undefined {
  return existsSync(HELM_RENDER) ? undefined : `${HELM_RENDER} is missing: ./run setup builds it (Debian's golang-go and Go library packages)`;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  kubeVersion?: string;
  chart?: string;
}

/** `helm template RELEASE CHART -n NAMESPACE -f VALUES` (values as JSON, which is YAML). Throws with the renderer's message on failure. */
export function helmTemplate(values: Record<string, unknown>, options: RenderOptions = {}): Rendered {
  const { release = 'podflow', namespace = 'podflow', kubeVersion = KUBE_VERSION, chart = CHART } = options;
  const r = spawnSync(HELM_RENDER, [chart, release, namespace, kubeVersion, '-'], { input: JSON.stringify(values), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 && r.stderr) throw new Error(`helm-render failed (${r.status}): ${r.stderr.trim()}`);
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`helm-render failed (${r.status ?? r.signal}) without a message`);
  return JSON.parse(r.stdout) as Rendered;
}

/** Every object of a rendering, in template order. */
export const objectsOf = (r: Rendered): KubeObject[] => r.manifests.flatMap((m) => m.objects);
