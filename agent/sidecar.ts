// Sidecar mode (`podflow agent --mode=sidecar`): the agent inside one pod,
// injected by `podflow webhook` or added by the Kustomize component.
//
// Differences from the DaemonSet (agent/daemonset.ts), and nothing else:
// - Capture: only the pod's own network namespace, opened where the process
//   already is (CURRENT_NETNS: no setns, so no CAP_SYS_ADMIN, no hostPID, no
//   host paths; CAP_NET_RAW for the packet sockets is all it needs). Its
//   interfaces are captured as the DaemonSet captures a pod's (eth0; lo only
//   with capture.loopback).
// - The observed end is this pod, from the downward API (POD_NAME,
//   POD_NAMESPACE, POD_UID, NODE_NAME, POD_IPS and the labels file in
//   PODFLOW_PODINFO_DIR), not from NetnsPods: Naming's namespace→pod
//   lookup is that one pod (onePod). Its workload comes from well-known
//   labels (pod-template-hash → Deployment, ...), since ownerReferences are
//   not in the downward API.
// - The remote end: through the Kubernetes caches when the pod's service
//   account may list and watch them (the same lease table as the DaemonSet);
//   when it may not (403) or there is no API access at all, by IP alone
//   (endpoint type 'unknown', or 'external' outside clusterCidrs), with no
//   flows held waiting for a sync that will never come (Naming without
//   caches, or told withoutCaches() at the 403).
// - Everything else is the DaemonSet's, by being the same Agent
//   (agent/agent.ts) with this file's AgentMode (agent/mode.ts): the same start
//   order, Exporter (same IPFIX elements and templates) and export batching,
//   FlowMeter, Naming (lease table, Enricher, its timer), createMetrics,
//   HTTP, logging, and the same graceful stop (capture drained, FORCED_END,
//   flush, exporter closed).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PodflowError } from '../common/errors.ts';
import type { AgentConfig } from './config.ts';
import { type AgentMode, cachesNotSynced } from './mode.ts';
import { RateLimitedWarn } from './rate-limited-warn.ts';
import type { DiscoveredNamespace } from '../netns/discovery.ts';
import { CURRENT_NETNS, listCurrentInterfaces } from '../netns/interfaces.ts';
import { Naming, type NamingNamespaces } from '../enrich/naming.ts';
import { type IpKey, ipKey } from '../enrich/ip-keys.ts';
import { KubeCaches, type KubeResource, type KubeResourceStatus } from '../enrich/kube-caches.ts';
import type { NamespacePod } from '../enrich/netns-pods.ts';
import type { OwnerLookup } from '../enrich/owners.ts';
import type { SlimOwner, SlimOwnerLink, SlimPod } from '../enrich/types.ts';

/** This pod, as the downward API tells it. */
export interface DownwardPod {
  podName: string;
  namespace: string;
  uid: string;
  nodeName: string;
  podIPs: string[];
  labels: Record<string, string>;
}

/**
 * Parses a downward API labels file: one `key="value"` per line, the value
 * quoted as Go's %q does (a JSON-compatible string for printable text).
 */
export function parseLabelsFile(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const raw = line.slice(i + 1).trim();
    try {
      labels[line.slice(0, i).trim()] = JSON.parse(raw) as string;
    } catch {
      labels[line.slice(0, i).trim()] = raw.replace(/^"|"$/g, '');
    }
  }
  return labels;
}

/** Reads the pod from the environment and the labels file; throws PODFLOW_ERR_SIDECAR_IDENTITY naming what is missing. */
export function readDownwardPod(env: NodeJS.ProcessEnv, nodeName: string): DownwardPod {
  const missing = ['POD_NAME', 'POD_NAMESPACE', 'POD_UID'].filter((k) => !env[k]);
  if (!nodeName) missing.push('NODE_NAME');
  if (missing.length > 0) {
    throw new PodflowError('PODFLOW_ERR_SIDECAR_IDENTITY', `${missing.join(', ')} not set: the sidecar takes its pod's identity from the downward API (see docs/sidecar.md)`);
  }
  let labels: Record<string, string> = {};
  const dir = env.PODFLOW_PODINFO_DIR;
  if (dir) {
    try {
      labels = parseLabelsFile(readFileSync(join(dir, 'labels'), 'utf8'));
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_SIDECAR_IDENTITY', `cannot read the labels file ${join(dir, 'labels')} (downward API volume): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  }
  const podIPs = (env.POD_IPS ?? env.POD_IP ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const ip of podIPs) {
    if (ipKey(ip) === undefined) throw new PodflowError('PODFLOW_ERR_SIDECAR_IDENTITY', `POD_IPS: not an IP address: ${JSON.stringify(ip)}`);
  }
  return { podName: env.POD_NAME!, namespace: env.POD_NAMESPACE!, uid: env.POD_UID!, nodeName, podIPs, labels };
}

/**
 * The pod's controlling owner, from the labels controllers set (the downward
 * API has no ownerReferences): pod-template-hash → ReplicaSet NAME-HASH of
 * Deployment NAME; statefulset.kubernetes.io/pod-name → StatefulSet; the Job
 * labels → Job; pod-template-generation → DaemonSet. Else none (the pod is
 * its own workload). The second value is the ReplicaSet's owner, if any.
 */
export function ownerFromLabels(podName: string, labels: Record<string, string>): [SlimOwner | undefined, SlimOwner | undefined] {
  const synthetic = (kind: string, name: string): SlimOwner => ({ kind, name, uid: `podflow-sidecar:${kind}/${name}` });
  const hash = labels['pod-template-hash'];
  const dash = podName.lastIndexOf('-');
  if (hash && dash > 0) {
    const rs = podName.slice(0, dash);
    if (rs.endsWith(`-${hash}`) && rs.length > hash.length + 1) return [synthetic('ReplicaSet', rs), synthetic('Deployment', rs.slice(0, -(hash.length + 1)))];
    return [synthetic('ReplicaSet', rs), undefined];
  }
  if (labels['statefulset.kubernetes.io/pod-name'] === podName && /-\d+$/.test(podName)) return [synthetic('StatefulSet', podName.replace(/-\d+$/, '')), undefined];
  const job = labels['batch.kubernetes.io/job-name'] ?? labels['job-name'];
  if (job) return [synthetic('Job', job), undefined];
  if (labels['pod-template-generation'] && labels['controller-revision-hash'] && dash > 0) return [synthetic('DaemonSet', podName.slice(0, dash)), undefined];
  return [undefined, undefined];
}

/** The pod as a slim pod (the enricher's view), with the configured label keys only. */
export function slimSelf(downward: DownwardPod, labelKeys: readonly string[]): SlimPod {
  return {
    uid: downward.uid,
    namespace: downward.namespace,
    name: downward.podName,
    nodeName: downward.nodeName,
    hostNetwork: false,
    phase: 'Running',
    podIPs: downward.podIPs,
    owner: ownerFromLabels(downward.podName, downward.labels)[0],
    labels: labelKeys.filter((k) => downward.labels[k] !== undefined).map((k) => [k, downward.labels[k]!] as [string, string]),
    deletingSinceMs: undefined,
  };
}

/** The namespace the process is in, as discovery would report it, opened with no setns. */
export function currentNamespace(): DiscoveredNamespace {
  const st = statSync('/proc/self/ns/net');
  return { key: `${st.dev}:${st.ino}`, dev: st.dev, inode: st.ino, paths: [CURRENT_NETNS], source: 'proc' };
}

/**
 * The namespace→pod lookup of the sidecar: the one namespace the process is
 * in, tied to its pod from the start and never removed, so there is nothing
 * to learn from the pods or the capture's namespaces and nothing to tie.
 */
function onePod(self: NamespacePod): NamingNamespaces {
  return {
    get: (key) => (key === self.key ? self : undefined),
    pending: 0,
    stats: { byCgroup: 0, byAddress: 0, untied: 0, ambiguous: 0, readErrors: 0 },
    applyPod: () => undefined,
    addNamespace: async () => undefined,
    setInterfaceAddresses: () => undefined,
    removeNamespace: () => undefined,
    resolvePending: async () => undefined,
  };
}

/**
 * Sidecar mode for Agent: the one namespace the process is in, the observed
 * end named from the downward API, the remote end through the caches while
 * the pod may read them, else by IP alone.
 */
export function sidecarMode(config: AgentConfig, log: Logger, env: NodeJS.ProcessEnv = process.env): AgentMode {
  const downward = readDownwardPod(env, config.nodeName);
  const agentLog = log.child({ component: 'agent', mode: 'sidecar' });
  const kubeLog = log.child({ component: 'kube' });
  const kubeWarn = new RateLimitedWarn(kubeLog);

  // The caches, when the pod may use the API server at all; a 403 turns them off (remote ends by IP alone).
  let caches: KubeCaches | undefined;
  let cachesUsable: boolean;
  /** Told at a 403 that the caches cannot be used. */
  let naming: Naming | undefined;
  try {
    caches = new KubeCaches({ kubeconfig: config.kubernetes.kubeconfig || undefined, labelKeys: config.labelKeys });
    cachesUsable = true;
  } catch (err) {
    caches = undefined;
    cachesUsable = false;
    kubeLog.info({ err }, 'no Kubernetes API access: remote ends are named by IP alone');
  }
  caches?.onError((resource, err) => {
    if (err.code === 'PODFLOW_ERR_KUBE_FORBIDDEN' && cachesUsable) {
      cachesUsable = false;
      kubeLog.info({ resource, err }, "the pod's service account may not read the caches: remote ends are named by IP alone");
      naming?.withoutCaches();
      void caches?.close();
      return;
    }
    kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'informer stopped; restarting with backoff');
  });
  caches?.onBadObject((resource, err) => kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'skipped a listed object'));

  // One namespace, known from the start, never removed.
  const ns = currentNamespace();
  const addresses = new Set<IpKey>();
  for (const ip of downward.podIPs) addresses.add(ipKey(ip)!);
  const self = slimSelf(downward, config.labelKeys);
  const [, rsOwner] = ownerFromLabels(downward.podName, downward.labels);
  const owners: OwnerLookup = {
    replicaSet: (uid) => (uid === self.owner?.uid ? ({ uid, namespace: self.namespace, name: self.owner.name, owner: rsOwner } satisfies SlimOwnerLink) : caches?.replicaSet(uid)),
    job: (uid) => caches?.job(uid),
  };

  return {
    logFields: { mode: 'sidecar' },
    namespaces: { on: () => undefined, off: () => undefined, namespaces: () => [ns], start: async () => undefined, close: () => undefined },
    naming: ({ capture, onRecord, splitFlowsAt }) => {
      const sidecarNaming = new Naming({
        caches: cachesUsable ? caches : undefined,
        owners,
        capture,
        splitFlowsAt,
        namespaces: () => onePod({ key: ns.key, uid: self.uid, pod: self, via: undefined, addresses, gone: false }),
        clusterName: config.clusterName,
        leases: { graceMs: config.kubernetes.leaseGraceSeconds * 1000, clusterCidrs: config.clusterCidrs },
        holdMaxAgeMs: config.kubernetes.holdUnnamedSeconds * 1000,
        onRecord,
      });
      naming = sidecarNaming;
      return {
        enrich: sidecarNaming.enrich,
        start: () => {
          // The namespace's own addresses also mark the pod's side of a flow (as NetnsPods does for the DaemonSet).
          try {
            for (const ifc of listCurrentInterfaces()) {
              if (ifc.loopback) continue;
              for (const a of ifc.addresses) {
                const key = ipKey(a.address);
                if (key !== undefined) addresses.add(key);
              }
            }
          } catch (err) {
            agentLog.warn({ err }, 'cannot list the pod network interfaces; direction from POD_IPS only');
          }
          sidecarNaming.start();
          if (cachesUsable) caches?.start();
        },
        close: () => sidecarNaming.close(),
        closeCaches: async () => caches?.close(),
        notReady: () => (caches && cachesUsable ? cachesNotSynced(caches.status()) : undefined),
        cacheStatus: () => (caches && cachesUsable ? caches.status() : ({} as Record<KubeResource, KubeResourceStatus>)),
        stats: () => sidecarNaming.stats(),
      };
    },
    startedFields: () => ({ pod: `${downward.namespace}/${downward.podName}`, uid: downward.uid, nodeName: downward.nodeName, workload: self.owner }),
  };
}
