// The sidecar injection decision and patch, pure (no I/O): given the
// webhook's configuration and one pod from an AdmissionReview, whether to
// inject, and the RFC 6902 JSON Patch that adds the podflow sidecar.
//
// Selection: a pod is injected when its Deployment's name is in
// `selection.deployments` (a bare name matches in every namespace,
// `NAMESPACE/NAME` in one) or when it carries the label `selection.label`
// (`KEY` or `KEY=VALUE`); both may be set (either matches). Never injected:
// pods in the webhook's own namespace, in kube-system or in
// `excludeNamespaces`; pods that already have the sidecar (a container of
// its name or the injected annotation: "never twice"); pods annotated
// `podflow.io/inject: "false"`.
//
// A pod's Deployment is found from its controlling ReplicaSet owner
// reference: the ReplicaSet is named DEPLOYMENT-HASH, with HASH the pod's
// `pod-template-hash` label.

/** The injected container's name, and the annotation marking an injected pod. */
export const SIDECAR_NAME = 'podflow';
export const INJECTED_ANNOTATION = 'podflow.io/injected';
export const INJECT_ANNOTATION = 'podflow.io/inject';
/** The downward API volume holding the pod's labels (a file, since labels are not available as env). */
export const PODINFO_VOLUME = 'podflow-podinfo';
export const PODINFO_DIR = '/etc/podflow/podinfo';
export const ALWAYS_EXCLUDED = ['kube-system'];

export interface SidecarSettings {
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** Export targets of the injected agent (udp://, tcp://, tls://). */
  collectors: string[];
  clusterName: string;
  enterpriseNumber: number;
  /** Port of the sidecar's /metrics, /healthz, /readyz (shares the pod's network: must not clash with the app). */
  metricsPort: number;
  resources: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
}

export interface InjectionConfig {
  /** The webhook's own namespace: never injected. */
  namespace: string;
  excludeNamespaces: string[];
  selection: { deployments: string[]; label: string };
  sidecar: SidecarSettings;
}

export type Decision = { inject: true; reason: string } | { inject: false; reason: string };

type Json = Record<string, unknown>;
export type PatchOperation = { op: 'add'; path: string; value: unknown };

interface PodLike {
  metadata?: { name?: string; generateName?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }> };
  spec?: { containers?: Array<{ name?: string }>; initContainers?: Array<{ name?: string }>; volumes?: Array<{ name?: string }> };
}

/** The name of the Deployment that owns the pod (via its ReplicaSet), or undefined. */
export function deploymentOf(pod: PodLike): string | undefined {
  const meta = pod.metadata ?? {};
  const rs = (meta.ownerReferences ?? []).find((o) => o.kind === 'ReplicaSet' && o.controller !== false)?.name;
  const hash = meta.labels?.['pod-template-hash'];
  if (!rs || !hash) return undefined;
  return rs.endsWith(`-${hash}`) && rs.length > hash.length + 1 ? rs.slice(0, -(hash.length + 1)) : undefined;
}

/** Whether the pod (in namespace ns, from the review's request) gets the sidecar, and why. */
export function decide(config: InjectionConfig, pod: PodLike, ns: string): Decision {
  const meta = pod.metadata ?? {};
  if (ns === config.namespace) return { inject: false, reason: `namespace ${ns} is the webhook's own` };
  if (ALWAYS_EXCLUDED.includes(ns) || config.excludeNamespaces.includes(ns)) return { inject: false, reason: `namespace ${ns} is excluded` };
  const names = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].map((c) => c.name);
  if (meta.annotations?.[INJECTED_ANNOTATION] !== undefined || names.includes(SIDECAR_NAME)) return { inject: false, reason: 'already injected' };
  if (meta.annotations?.[INJECT_ANNOTATION] === 'false') return { inject: false, reason: `annotated ${INJECT_ANNOTATION}: "false"` };
  const { deployments, label } = config.selection;
  if (label) {
    const i = label.indexOf('=');
    const [key, value] = i < 0 ? [label, undefined] : [label.slice(0, i), label.slice(i + 1)];
    const has = meta.labels?.[key];
    if (has !== undefined && (value === undefined || has === value)) return { inject: true, reason: `label ${label}` };
  }
  const deployment = deploymentOf(pod);
  if (deployment !== undefined && (deployments.includes(deployment) || deployments.includes(`${ns}/${deployment}`))) {
    return { inject: true, reason: `Deployment ${ns}/${deployment}` };
  }
  return { inject: false, reason: deployment ? `Deployment ${ns}/${deployment} not selected` : 'not selected' };
}

/** The sidecar container: `podflow agent --mode=sidecar`, identity from the downward API, only NET_RAW. */
export function sidecarContainer(s: SidecarSettings): Json {
  const field = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  return {
    name: SIDECAR_NAME,
    image: s.image,
    imagePullPolicy: s.imagePullPolicy,
    args: [
      'agent',
      '--mode=sidecar',
      ...s.collectors.map((c) => `--collector=${c}`),
      ...(s.clusterName ? [`--cluster-name=${s.clusterName}`] : []),
      `--set=enterpriseNumber=${s.enterpriseNumber}`,
      `--metrics-listen=0.0.0.0:${s.metricsPort}`,
    ],
    env: [
      field('POD_NAME', 'metadata.name'),
      field('POD_NAMESPACE', 'metadata.namespace'),
      field('POD_UID', 'metadata.uid'),
      field('NODE_NAME', 'spec.nodeName'),
      field('POD_IPS', 'status.podIPs'),
      { name: 'PODFLOW_PODINFO_DIR', value: PODINFO_DIR },
    ],
    ports: [{ name: 'podflow-metrics', containerPort: s.metricsPort, protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: '/healthz', port: s.metricsPort }, periodSeconds: 10 },
    resources: s.resources,
    securityContext: {
      // Capture needs a packet socket in the pod's own namespace: CAP_NET_RAW, nothing else.
      capabilities: { drop: ['ALL'], add: ['NET_RAW'] },
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsUser: 0,
      runAsNonRoot: false,
    },
    volumeMounts: [{ name: PODINFO_VOLUME, mountPath: PODINFO_DIR, readOnly: true }],
  };
}

export const podinfoVolume = (): Json => ({
  name: PODINFO_VOLUME,
  downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] },
});

const escape = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');

/** The JSON Patch adding the sidecar, its volume and the injected annotation to the pod. */
export function injectionPatch(config: InjectionConfig, pod: PodLike): PatchOperation[] {
  const ops: PatchOperation[] = [];
  ops.push({ op: 'add', path: '/spec/containers/-', value: sidecarContainer(config.sidecar) });
  if (pod.spec?.volumes === undefined) ops.push({ op: 'add', path: '/spec/volumes', value: [podinfoVolume()] });
  else ops.push({ op: 'add', path: '/spec/volumes/-', value: podinfoVolume() });
  if (pod.metadata?.annotations === undefined) ops.push({ op: 'add', path: '/metadata/annotations', value: { [INJECTED_ANNOTATION]: 'true' } });
  else ops.push({ op: 'add', path: `/metadata/annotations/${escape(INJECTED_ANNOTATION)}`, value: 'true' });
  return ops;
}
