// DaemonSet mode (`podflow agent`, the default): one agent per node, in the
// node's network namespace (hostNetwork), capturing every pod namespace
// NetnsDiscovery finds (network namespace directories and /proc), each tied
// to its pod by NetnsPods (cgroup path, else addresses). The observed end is
// named by Naming with NetnsPods as its namespace→pod lookup, the remote
// end by the lease table from the Kubernetes caches; without a usable
// Kubernetes configuration the agent runs on with identity unknown and
// /readyz says why. Its counterpart is agent/sidecar.ts; everything else is
// the one Agent (agent/agent.ts).
import type { Logger } from 'pino';
import type { AgentConfig } from './config.ts';
import { type AgentModeFactory, cachesNotSynced } from './mode.ts';
import { RateLimitedWarn } from './rate-limited-warn.ts';
import { type DiscoveredNamespace, NetnsDiscovery } from '../netns/discovery.ts';
import { listAddresses } from '../netns/interfaces.ts';
import { Naming } from '../enrich/naming.ts';
import { KubeCaches, type KubeResource, type KubeResourceStatus, kubeResources } from '../enrich/kube-caches.ts';
import { NetnsPods } from '../enrich/netns-pods.ts';
import { PodflowError } from '../common/errors.ts';

/** The DaemonSet: every pod namespace of the node (NetnsDiscovery), pods named through NetnsPods (Naming). */
export const daemonsetMode: AgentModeFactory = (config, log) => {
  const kubeLog = log.child({ component: 'kube' });
  const kubeWarn = new RateLimitedWarn(kubeLog);
  const kube = kubeCachesOrWhyNot(config, kubeLog);
  if (kube.caches) kube.caches.onError((resource, err) => kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'informer stopped; restarting with backoff'));
  kube.caches?.onBadObject((resource, err) => kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'skipped a listed object'));
  const discovery = new NetnsDiscovery({
    netnsDirs: config.namespaces.netnsDirs,
    procRoot: config.namespaces.proc ? config.namespaces.procRoot : null,
    rescanIntervalMs: config.namespaces.rescanSeconds * 1000,
  });
  return {
    logFields: {},
    namespaces: discovery,
    ...(config.namespaces.pathFilter && { namespaceFilter: pathFilter(config.namespaces.pathFilter, discovery, log.child({ component: 'capture' })) }),
    naming: ({ capture, onRecord, splitFlowsAt }) => {
      const naming = new Naming({
        caches: kube.caches,
        capture,
        splitFlowsAt,
        namespaces: (events) =>
          new NetnsPods({
            nodeName: config.nodeName,
            procRoot: config.namespaces.proc ? config.namespaces.procRoot : null,
            listAddresses,
            ...events,
          }),
        clusterName: config.clusterName,
        leases: { graceMs: config.kubernetes.leaseGraceSeconds * 1000, clusterCidrs: config.clusterCidrs },
        // Without caches nothing will ever name a held flow better: it goes at Naming's next tick.
        holdMaxAgeMs: kube.caches ? config.kubernetes.holdUnnamedSeconds * 1000 : 1,
        onRecord,
      });
      return {
        enrich: naming.enrich,
        start: () => {
          kube.caches?.start();
          naming.start();
        },
        close: () => naming.close(), // flows held for the first sync are enriched now
        closeCaches: async () => kube.caches?.close(),
        notReady: () => (kube.caches ? cachesNotSynced(kube.caches.status()) : `Kubernetes identity off: ${kube.whyNot}; flows are exported with identity unknown`),
        cacheStatus: () => (kube.caches ? kube.caches.status() : unusableCachesStatus(kube.whyNot)),
        stats: () => naming.stats(),
      };
    },
    startedFields: () => ({ nodeName: config.nodeName }),
  };
};

/**
 * The Kubernetes caches, or why there are none: a configuration that cannot
 * be used (no kubeconfig and not in a cluster, a kubeconfig or service
 * account that cannot be read) must not stop capture and export, as an API
 * server that cannot be reached does not. The problem is logged once as an
 * error and /readyz names it; flows go out with identity unknown (counted in
 * podflow_lease_lookups_total and podflow_enrich_observed_fallbacks_total).
 */
function kubeCachesOrWhyNot(config: AgentConfig, log: Logger): { caches: KubeCaches; whyNot?: undefined } | { caches?: undefined; whyNot: string } {
  try {
    return { caches: new KubeCaches({ kubeconfig: config.kubernetes.kubeconfig || undefined, labelKeys: config.labelKeys }) };
  } catch (err) {
    if (!(err instanceof PodflowError) || err.code !== 'PODFLOW_ERR_KUBE_CONFIG') throw err;
    log.error({ err }, 'no usable Kubernetes configuration: capturing and exporting with identity unknown');
    return { whyNot: err.message };
  }
}

/** Every resource not synced, with why: the caches' metrics and alert show an agent that has none. */
function unusableCachesStatus(why: string): Record<KubeResource, KubeResourceStatus> {
  const status = { synced: false, objects: 0, events: 0, errors: 0, restarts: 0, relists: 0, lastError: why };
  return Object.fromEntries(kubeResources.map((r) => [r, { ...status }])) as Record<KubeResource, KubeResourceStatus>;
}


/**
 * namespaces.pathFilter: a namespace is attached when any of its paths (as
 * configured and as resolved, netns/discovery.ts) matches. Warns once when
 * the filter has excluded every namespace found so far: a filter that never
 * matches is otherwise only podflow_namespaces_attached staying 0.
 */
function pathFilter(pattern: string, discovery: NetnsDiscovery, log: Logger): (ns: DiscoveredNamespace) => boolean {
  const paths = new RegExp(pattern);
  const excluded = new Set<string>();
  let matched = false;
  let warned = false;
  return (ns) => {
    if (ns.paths.some((p) => paths.test(p))) {
      matched = true;
      excluded.clear();
      return true;
    }
    if (matched || warned) return false;
    excluded.add(ns.key);
    const known = discovery.namespaces();
    if (known.every((k) => excluded.has(k.key))) {
      warned = true;
      log.warn({ pathFilter: pattern, namespaces: known.length, paths: known.slice(0, 5).flatMap((k) => k.paths) }, 'namespaces.pathFilter excludes every namespace found: nothing is captured');
    }
    return false;
  };
}

