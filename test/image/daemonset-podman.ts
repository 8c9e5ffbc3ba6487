// The DaemonSet's pod as one `podman run`: what the kubelet would ask of the
// container runtime, read from the built install (`kubectl kustomize
// manifests/`), so the image test runs whatever the manifest says: host PID
// and network, capabilities, read-only root, privilege escalation, seccomp,
// user, volumes with their mount propagation, env, resources, args, the
// grace period and the probes. Every field of the pod spec, the container
// and its security context is either translated here or listed as not
// applying to one container on one machine (with why); any other field
// fails, so a field added to the manifest is never silently left out.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeObject } from '../manifests/kustomize.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface PodmanRunOptions {
  /** The image to run in place of the manifest's (built here, never pulled). */
  image: string;
  /** The container's name (podman's). */
  name: string;
  /** spec.nodeName, for the downward API. */
  nodeName: string;
  /** Where the ConfigMaps' files and the service account are written. */
  workDir: string;
  /**
   * The cluster as the kubelet presents it: KUBERNETES_SERVICE_HOST/PORT and
   * the service account's token, CA and namespace mounted where client
   * libraries look. Absent: not in a cluster at all.
   */
  cluster?: { host: string; port: number; token: string; ca: string };
  /** The test's own settings, after the manifest's env (a user's overlay would patch the same). */
  env?: Record<string, string>;
  /** After the manifest's args. */
  args?: readonly string[];
}

export interface PodmanRun {
  /** `podman run` arguments, image and command included. */
  args: string[];
  /** terminationGracePeriodSeconds: `podman stop --time`. */
  graceSeconds: number;
  /** HTTP paths of the probes. */
  probes: { liveness: string; readiness: string };
  /** The manifest's resource limits in bytes and cores, to check the container's cgroup against. */
  limits: { memoryBytes?: number; cpus?: number };
}

/** Pod spec fields that do not apply to one container run on one machine, and why. */
const POD_FIELDS_NOT_APPLYING: Record<string, string> = {
  dnsPolicy: 'ClusterFirstWithHostNet names cluster DNS, which this machine has not; with the host network the host resolver answers',
  tolerations: 'scheduling',
  nodeSelector: 'scheduling',
  priorityClassName: 'eviction order under node pressure',
};
const CONTAINER_FIELDS_NOT_APPLYING: Record<string, string> = {
  imagePullPolicy: 'nothing is pulled here (--pull=never)',
};

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A Kubernetes memory quantity in bytes ("128Mi", "1G", "1000"). */
export function bytesOf(quantity: string | number): number {
  const m = /^([0-9.]+)([KMGT]i|[kMGT])?$/.exec(String(quantity));
  if (!m) throw new Error(`not a memory quantity: ${quantity}`);
  return Math.round(Number(m[1]) * (m[2] ? (BINARY[m[2]] ?? DECIMAL[m[2]]!) : 1));
}

/** A Kubernetes CPU quantity in cores ("50m", "1", "0.5"). */
export function coresOf(quantity: string | number): number {
  const m = /^([0-9.]+)(m)?$/.exec(String(quantity));
  if (!m) throw new Error(`not a CPU quantity: ${quantity}`);
  return Number(m[1]) / (m[2] ? 1000 : 1);
}

function onlyKnown(what: string, object: Json, known: readonly string[], notApplying: Record<string, string> = {}): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key) && !(key in notApplying)) throw new Error(`${what}.${key}: not translated to podman (test/image/daemonset-podman.ts)`);
  }
}

/** `podman run` for the DaemonSet of a built install; the ConfigMaps it mounts are written under workDir. */
export function daemonSetRun(objects: readonly KubeObject[], o: PodmanRunOptions): PodmanRun {
  const daemonSet = objects.find((x) => x.kind === 'DaemonSet') as Json | undefined;
  if (!daemonSet) throw new Error('no DaemonSet in the build');
  const pod = daemonSet.spec.template.spec as Json;
  onlyKnown('spec.template.spec', pod, ['serviceAccountName', 'automountServiceAccountToken', 'terminationGracePeriodSeconds', 'hostPID', 'hostNetwork', 'containers', 'volumes'], POD_FIELDS_NOT_APPLYING);
  if (pod.containers.length !== 1) throw new Error(`one container expected, the DaemonSet has ${pod.containers.length}`);
  const c = pod.containers[0] as Json;
  onlyKnown('container', c, ['name', 'image', 'command', 'args', 'env', 'ports', 'livenessProbe', 'readinessProbe', 'resources', 'securityContext', 'volumeMounts'], CONTAINER_FIELDS_NOT_APPLYING);

  const args = ['run', '--name', o.name, '--rm', '--pull=never'];
  if (pod.hostPID) args.push('--pid=host');
  if (pod.hostNetwork) args.push('--network=host');
  else throw new Error('the DaemonSet runs on the host network; a pod network is not translated (it would need a bridge and NAT on this host)');

  const sc = (c.securityContext ?? {}) as Json;
  onlyKnown('securityContext', sc, ['privileged', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'runAsUser', 'runAsGroup', 'runAsNonRoot', 'seccompProfile', 'capabilities']);
  if (sc.privileged) args.push('--privileged');
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt=no-new-privileges');
  // The kubelet mounts nothing writable on a read-only root but the volumes: no tmpfs of podman's own on /tmp, /run.
  if (sc.readOnlyRootFilesystem) args.push('--read-only', '--read-only-tmpfs=false');
  if (sc.runAsUser !== undefined) args.push(`--user=${sc.runAsUser}:${sc.runAsGroup ?? 0}`);
  if (sc.runAsNonRoot && sc.runAsUser === 0) throw new Error('runAsNonRoot with runAsUser 0: the kubelet would refuse to start it');
  const seccomp = sc.seccompProfile?.type;
  if (seccomp === 'Unconfined') args.push('--security-opt=seccomp=unconfined');
  else if (seccomp !== undefined && seccomp !== 'RuntimeDefault') throw new Error(`seccompProfile ${seccomp}: not translated`);
  for (const cap of sc.capabilities?.drop ?? []) args.push(`--cap-drop=${cap}`);
  for (const cap of sc.capabilities?.add ?? []) args.push(`--cap-add=${cap}`);

  const limits = c.resources?.limits ?? {};
  const requests = c.resources?.requests ?? {};
  const memoryBytes = limits.memory === undefined ? undefined : bytesOf(limits.memory);
  const cpus = limits.cpu === undefined ? undefined : coresOf(limits.cpu);
  if (memoryBytes !== undefined) args.push(`--memory=${memoryBytes}`);
  if (cpus !== undefined) args.push(`--cpus=${cpus}`);
  if (requests.memory !== undefined) args.push(`--memory-reservation=${bytesOf(requests.memory)}`);
  // The kubelet's shares for a CPU request: millicores × 1024 / 1000, at least 2.
  if (requests.cpu !== undefined) args.push(`--cpu-shares=${Math.max(2, Math.round(coresOf(requests.cpu) * 1024))}`);

  const volumes = new Map<string, Json>((pod.volumes ?? []).map((v: Json) => [v.name, v]));
  for (const m of (c.volumeMounts ?? []) as Json[]) {
    onlyKnown(`volumeMounts[${m.name}]`, m, ['name', 'mountPath', 'readOnly', 'mountPropagation']);
    const v = volumes.get(m.name);
    if (!v) throw new Error(`volumeMount ${m.name}: no such volume`);
    const propagation = { HostToContainer: 'rslave', Bidirectional: 'rshared', None: 'rprivate' }[(m.mountPropagation ?? 'None') as string];
    if (!propagation) throw new Error(`volumeMount ${m.name}: mountPropagation ${m.mountPropagation} not translated`);
    const options = [m.readOnly ? 'ro' : 'rw', propagation].join(',');
    if (v.configMap) {
      onlyKnown(`volume ${m.name}.configMap`, v.configMap, ['name']);
      const map = objects.find((x) => x.kind === 'ConfigMap' && x.metadata.name === v.configMap.name) as Json | undefined;
      if (!map) throw new Error(`volume ${m.name}: ConfigMap ${v.configMap.name} is not in the build`);
      const dir = join(o.workDir, `configmap-${m.name}`);
      mkdirSync(dir, { recursive: true });
      for (const [file, text] of Object.entries(map.data ?? {})) writeFileSync(join(dir, file), String(text));
      args.push('-v', `${dir}:${m.mountPath}:${options}`);
    } else if (v.hostPath) {
      onlyKnown(`volume ${m.name}.hostPath`, v.hostPath, ['path', 'type']);
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(v.hostPath.path, { recursive: true });
      else if (v.hostPath.type !== undefined && v.hostPath.type !== 'Directory') throw new Error(`volume ${m.name}: hostPath type ${v.hostPath.type} not translated`);
      args.push('-v', `${v.hostPath.path}:${m.mountPath}:${options}`);
    } else if (v.emptyDir) {
      onlyKnown(`volume ${m.name}.emptyDir`, v.emptyDir, ['sizeLimit']);
      // Memory-backed here (node disk in a cluster): a scratch directory on a read-only root either way.
      const size = v.emptyDir.sizeLimit === undefined ? '' : `,tmpfs-size=${bytesOf(v.emptyDir.sizeLimit)}`;
      args.push('--mount', `type=tmpfs,destination=${m.mountPath}${size}${m.readOnly ? ',ro=true' : ''}`);
    } else throw new Error(`volume ${m.name}: only configMap, hostPath and emptyDir are translated, got ${Object.keys(v).join(', ')}`);
  }

  if (o.cluster && pod.automountServiceAccountToken !== false && pod.serviceAccountName) {
    const dir = join(o.workDir, 'serviceaccount');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'token'), o.cluster.token);
    writeFileSync(join(dir, 'ca.crt'), o.cluster.ca);
    writeFileSync(join(dir, 'namespace'), daemonSet.metadata.namespace ?? 'default');
    args.push('-v', `${dir}:/var/run/secrets/kubernetes.io/serviceaccount:ro`);
  }
  const env: Array<[string, string]> = [];
  if (o.cluster) env.push(['KUBERNETES_SERVICE_HOST', o.cluster.host], ['KUBERNETES_SERVICE_PORT', String(o.cluster.port)]);
  for (const e of (c.env ?? []) as Json[]) {
    if (e.value !== undefined) env.push([e.name, String(e.value)]);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env.push([e.name, o.nodeName]);
    else throw new Error(`env ${e.name}: only values and the fieldRef spec.nodeName are translated`);
  }
  env.push(...Object.entries(o.env ?? {}));
  for (const [k, v] of env) args.push('--env', `${k}=${v}`);

  if (c.command) args.push(`--entrypoint=${JSON.stringify(c.command)}`);
  args.push(o.image, ...(c.args ?? []), ...(o.args ?? []));

  const probePath = (probe: Json | undefined, what: string): string => {
    const path = probe?.httpGet?.path;
    if (typeof path !== 'string') throw new Error(`${what}: an httpGet probe is expected`);
    return path;
  };
  return {
    args,
    graceSeconds: pod.terminationGracePeriodSeconds ?? 30,
    probes: { liveness: probePath(c.livenessProbe, 'livenessProbe'), readiness: probePath(c.readinessProbe, 'readinessProbe') },
    limits: { memoryBytes, cpus },
  };
}
