// Sidecar mode (`podflow agent --mode=sidecar`): the agent inside one pod,
// injected by `podflow webhook` or added by the Kustomize component.
//
// Differences from the DaemonSet (agent/agent.ts), and nothing else:
// - Capture: only the pod's own network namespace, opened where the process
//   already is (CURRENT_NETNS: no setns, so no CAP_SYS_ADMIN, no hostPID, no
//   host paths; CAP_NET_RAW for the packet sockets is all it needs). Its
//   interfaces (eth0 and lo) are captured as the DaemonSet captures a pod's.
// - The observed end is this pod, from the downward API (POD_NAME,
//   POD_NAMESPACE, POD_UID, NODE_NAME, POD_IPS and the labels file in
//   PODFLOW_PODINFO_DIR), not from a namespace→pod map. Its workload comes
//   from well-known labels (pod-template-hash → Deployment, ...), since
//   ownerReferences are not in the downward API.
// - The remote end: through the Kubernetes caches when the pod's service
//   account may list and watch them (the same lease table as the DaemonSet);
//   when it may not (403) or there is no API access at all, by IP alone
//   (endpoint type 'unknown', or 'external' outside clusterCidrs), with no
//   flows held waiting for a sync that will never come.
// - Export, metering, metrics and the graceful stop are the DaemonSet's: the
//   same Exporter (same IPFIX elements and templates), FlowMeter, Enricher
//   and createMetrics.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { PodflowError } from '../common/errors.ts';
import type { AgentConfig } from './config.ts';
import { createMetrics, WorkloadTraffic } from './metrics.ts';
import { AgentHttp } from './http.ts';
import { RateLimitedWarn, observationDomainOf } from './agent.ts';
import { PacketDecoder } from '../flow/decode.ts';
import { PacketIngest } from '../flow/ingest.ts';
import { FlowMeter } from '../flow/meter.ts';
import { EndReason } from '../flow/types.ts';
import type { DiscoveredNamespace } from '../netns/discovery.ts';
import { CURRENT_NETNS, listCurrentInterfaces } from '../netns/interfaces.ts';
import { NodeCapture, type NodeCaptureEvent } from '../netns/node-capture.ts';
import { Enricher } from '../enrich/enricher.ts';
import type { IdentityStats } from '../enrich/identity.ts';
import { type IpKey, ipKey } from '../enrich/ip-keys.ts';
import { KubeCaches, type KubeChangeListener, type KubeResource, type KubeResourceStatus } from '../enrich/kube-caches.ts';
import { LeaseTable } from '../enrich/leases.ts';
import type { NamespacePod } from '../enrich/netns-pods.ts';
import type { OwnerLookup } from '../enrich/owners.ts';
import type { SlimOwner, SlimOwnerLink, SlimPod } from '../enrich/types.ts';
import { Exporter } from '../ipfix/exporter.ts';
import type { ExportRecord } from '../ipfix/types.ts';

const EXPORT_BATCH = 512;
const TICK_MS = 250;

/** This pod, as the downward API tells it. */
export interface DownwardIdentity {
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

/** Reads the pod's identity from the environment and the labels file; throws PODFLOW_ERR_SIDECAR_IDENTITY naming what is missing. */
export function readDownwardIdentity(env: NodeJS.ProcessEnv, nodeName: string): DownwardIdentity {
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
export function slimSelf(id: DownwardIdentity, labelKeys: readonly string[]): SlimPod {
  return {
    uid: id.uid,
    namespace: id.namespace,
    name: id.podName,
    nodeName: id.nodeName,
    hostNetwork: false,
    phase: 'Running',
    podIPs: id.podIPs,
    owner: ownerFromLabels(id.podName, id.labels)[0],
    labels: labelKeys.filter((k) => id.labels[k] !== undefined).map((k) => [k, id.labels[k]!] as [string, string]),
    deletingSinceMs: undefined,
  };
}

/** The namespace the process is in, as discovery would report it, opened with no setns. */
export function currentNamespace(): DiscoveredNamespace {
  const st = statSync('/proc/self/ns/net');
  return { key: `${st.dev}:${st.ino}`, dev: st.dev, inode: st.ino, paths: [CURRENT_NETNS], source: 'proc' };
}

export class SidecarAgent {
  readonly registry: Registry;
  readonly identity: DownwardIdentity;
  readonly #c: AgentConfig;
  readonly #log: Logger;
  readonly #caches: KubeCaches | undefined;
  #cachesUsable: boolean;
  readonly #decoder = new PacketDecoder();
  readonly #meter: FlowMeter;
  readonly #ingest: PacketIngest;
  readonly #capture: NodeCapture;
  readonly #leases: LeaseTable;
  readonly #enricher: Enricher;
  readonly #exporter: Exporter;
  readonly #http: AgentHttp;
  readonly #traffic: WorkloadTraffic;
  readonly #ns: DiscoveredNamespace;
  readonly #self: NamespacePod;
  readonly #byKind: Record<string, { packets: number; bytes: number }> = { pod: { packets: 0, bytes: 0 }, loopback: { packets: 0, bytes: 0 } };
  readonly #kindOfPoint = new Map<number, string>();
  #batch: ExportRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #handlerErrors = 0;

  readonly #onPod: KubeChangeListener<'pod'> = (type, pod) => this.#guard(() => this.#leases.applyPod(type, pod, Date.now()));
  readonly #onService: KubeChangeListener<'service'> = (type, s) => this.#guard(() => this.#leases.applyService(type, s, Date.now()));
  readonly #onNode: KubeChangeListener<'node'> = (type, n) => this.#guard(() => this.#leases.applyNode(type, n, Date.now()));

  constructor(config: AgentConfig, log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.#c = config;
    this.#log = log.child({ component: 'agent', mode: 'sidecar' });
    this.identity = readDownwardIdentity(env, config.nodeName);
    const kubeLog = log.child({ component: 'kube' });
    const exportLog = log.child({ component: 'export' });
    const kubeWarn = new RateLimitedWarn(kubeLog);
    const exportWarn = new RateLimitedWarn(exportLog);

    // The caches, when the pod may use the API server at all; a 403 turns them off (remote ends by IP alone).
    try {
      this.#caches = new KubeCaches({ kubeconfig: config.kubernetes.kubeconfig || undefined, labelKeys: config.labelKeys });
      this.#cachesUsable = true;
    } catch (err) {
      this.#caches = undefined;
      this.#cachesUsable = false;
      kubeLog.info({ err }, 'no Kubernetes API access: remote ends are named by IP alone');
    }
    this.#caches?.onError((resource, err) => {
      if (err.code === 'PODFLOW_ERR_KUBE_FORBIDDEN' && this.#cachesUsable) {
        this.#cachesUsable = false;
        kubeLog.info({ resource, err }, "the pod's service account may not read the caches: remote ends are named by IP alone");
        void this.#caches?.close();
        this.#enricher.markSynced();
        return;
      }
      kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'informer stopped; restarting with backoff');
    });

    this.#exporter = new Exporter({
      targets: config.collectors,
      observationDomainId: observationDomainOf(config.nodeName),
      enterpriseNumber: config.enterpriseNumber,
      closeTimeoutMs: config.shutdown.timeoutSeconds * 1000 * 0.8,
      onError: (err, target) => exportWarn.warn(`${target}:${err.code}`, { collector: target, err }, 'export error (records are queued and retried)'),
    });
    this.#meter = new FlowMeter({
      idleTimeoutMs: config.flow.idleTimeoutSeconds * 1000,
      activeTimeoutMs: config.flow.activeTimeoutSeconds * 1000,
      maxFlows: config.flow.maxFlows,
      onFlow: (flow) => this.#enricher.enrich(flow),
    });
    this.#ingest = new PacketIngest(this.#decoder, this.#meter);

    this.#ns = currentNamespace();
    const addresses = new Set<IpKey>();
    for (const ip of this.identity.podIPs) addresses.add(ipKey(ip)!);
    const self = slimSelf(this.identity, config.labelKeys);
    this.#self = { key: this.#ns.key, uid: self.uid, pod: self, via: undefined, addresses };
    this.#leases = new LeaseTable({ graceMs: config.kubernetes.leaseGraceSeconds * 1000, clusterCidrs: config.clusterCidrs });
    const [, rsOwner] = ownerFromLabels(this.identity.podName, this.identity.labels);
    const owners: OwnerLookup = {
      replicaSet: (uid) => (uid === self.owner?.uid ? ({ uid, namespace: self.namespace, name: self.owner.name, owner: rsOwner } satisfies SlimOwnerLink) : this.#caches?.replicaSet(uid)),
      job: (uid) => this.#caches?.job(uid),
    };
    this.#enricher = new Enricher({
      clusterName: config.clusterName,
      leases: this.#leases,
      owners,
      namespaces: { get: (key) => (key === this.#ns.key ? this.#self : undefined) },
      onRecord: (record) => this.#onRecord(record),
    });
    if (!this.#cachesUsable) this.#enricher.markSynced();

    const interfaces = config.capture.interfaces ? new RegExp(config.capture.interfaces) : undefined;
    const ns = this.#ns;
    this.#capture = new NodeCapture({
      // One namespace, known from the start, never removed.
      discovery: { on: () => undefined, off: () => undefined, namespaces: () => [ns] },
      meter: this.#meter,
      sink: (id, linkType, buf, start, end) => this.#sink(id, linkType, buf, start, end),
      ...(interfaces && { podInterfaceFilter: (name: string) => interfaces.test(name) }),
      captureLoopback: config.capture.loopback,
      capture: { snaplen: config.capture.snaplen, bufferBytes: config.capture.bufferBytes },
      interfaceRescanMs: config.namespaces.rescanSeconds * 1000,
    });
    const captureLog = log.child({ component: 'capture' });
    const captureWarn = new RateLimitedWarn(captureLog);
    this.#capture.on('event', (e) => this.#guard(() => this.#onCaptureEvent(e, captureLog, captureWarn)));
    this.#traffic = new WorkloadTraffic(config.metrics.maxWorkloadSeries);
    this.registry = createMetrics({
      capture: () => this.#capture.counters(),
      captureByKind: () => this.#byKind,
      ingest: () => this.#ingest.stats,
      decodeErrors: () => this.#decoder.errors,
      meter: () => this.#meter.stats,
      exporter: () => this.#exporter.stats(),
      caches: () => (this.#caches && this.#cachesUsable ? this.#caches.status() : ({} as Record<KubeResource, KubeResourceStatus>)),
      identity: () => this.#stats(),
      traffic: this.#traffic,
    });
    this.#http = new AgentHttp({ registry: this.registry, notReady: () => this.notReady() });
  }

  async start(): Promise<{ metrics: string }> {
    let address;
    try {
      address = await this.#http.listen(this.#c.metrics.listen);
    } catch (err) {
      this.#exporter.destroy();
      throw err;
    }
    const metrics = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    // The namespace's own addresses also mark the pod's side of a flow (as NetnsPods does for the DaemonSet).
    try {
      for (const ifc of listCurrentInterfaces()) {
        if (ifc.loopback) continue;
        for (const a of ifc.addresses) {
          const key = ipKey(a.address);
          if (key !== undefined) (this.#self.addresses as Set<IpKey>).add(key);
        }
      }
    } catch (err) {
      this.#log.warn({ err }, 'cannot list the pod network interfaces; direction from POD_IPS only');
    }
    if (this.#caches && this.#cachesUsable) {
      const now = Date.now();
      this.#caches.on('pod', this.#onPod);
      this.#caches.on('service', this.#onService);
      this.#caches.on('node', this.#onNode);
      for (const n of this.#caches.nodes()) this.#leases.applyNode('add', n, now);
      for (const s of this.#caches.services()) this.#leases.applyService('add', s, now);
      for (const p of this.#caches.pods()) this.#leases.applyPod('add', p, now);
      this.#caches.start();
    }
    this.#capture.start();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    const id = this.identity;
    this.#log.info({ metrics, collectors: this.#c.collectors, pod: `${id.namespace}/${id.podName}`, uid: id.uid, nodeName: id.nodeName, workload: this.#self.pod?.owner }, 'agent started');
    return { metrics };
  }

  notReady(): string | undefined {
    if (this.#stopping) return 'stopping';
    if (this.#caches && this.#cachesUsable && !this.#caches.synced()) return 'Kubernetes caches not synced';
    const down = this.#exporter.stats().filter((t) => !t.connected).map((t) => t.target);
    return down.length > 0 ? `not connected to ${down.join(', ')}` : undefined;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const started = Date.now();
    clearInterval(this.#timer);
    await this.#capture.stop();
    const forced = this.#meter.stats.active;
    this.#meter.flush(EndReason.FORCED_END);
    this.#enricher.flush();
    this.#flushBatch();
    const budgetMs = this.#c.shutdown.timeoutSeconds * 1000;
    const bounded = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<void>((r) => setTimeout(r, Math.max(ms, 0)).unref())]);
    await bounded(this.#exporter.close(), budgetMs * 0.8);
    this.#exporter.destroy();
    const exported = this.#exporter.stats().map((t) => ({ collector: t.target, records: t.records, dropped: t.droppedRecords, queued: t.queuedRecords }));
    if (this.#caches) {
      this.#caches.off('pod', this.#onPod);
      this.#caches.off('service', this.#onService);
      this.#caches.off('node', this.#onNode);
    }
    await bounded(Promise.all([this.#caches?.close(), this.#http.close()]), budgetMs - (Date.now() - started));
    this.#log.info({ forcedEnd: this.#meter.stats.ended[EndReason.FORCED_END], leftInMeter: forced, exported, ms: Date.now() - started }, 'agent stopped');
  }

  #stats(): IdentityStats {
    return {
      leases: { ...this.#leases.stats, lookups: { ...this.#leases.stats.lookups }, open: this.#leases.openLeases, closed: this.#leases.closedLeases },
      namespaces: { byCgroup: 0, byAddress: 0, ambiguous: 0, readErrors: 0, pending: 0 },
      enricher: { ...this.#enricher.stats, heldNow: this.#enricher.heldFlows },
      handlerErrors: this.#handlerErrors,
    };
  }

  #sink(id: number, linkType: number, buf: Uint8Array, start: number, end: number): void {
    const bytes = this.#ingest.stats.bytes;
    const packets = this.#ingest.ingest(id, linkType, buf, start, end);
    const kind = this.#byKind[this.#kindOfPoint.get(id) ?? 'pod']!;
    kind.packets += packets;
    kind.bytes += this.#ingest.stats.bytes - bytes;
  }

  #onRecord(record: ExportRecord): void {
    this.#traffic.add(record);
    this.#batch.push(record);
    if (this.#batch.length >= EXPORT_BATCH) this.#flushBatch();
  }

  #flushBatch(): void {
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#exporter.export(batch);
  }

  #tick(): void {
    const now = Date.now();
    this.#meter.expire(now);
    this.#guard(() => {
      this.#leases.expire(now);
      if (!this.#enricher.synced && this.#caches?.synced()) this.#enricher.markSynced();
      this.#enricher.expireHeld();
    });
    this.#flushBatch();
  }

  #onCaptureEvent(e: NodeCaptureEvent, log: Logger, warn: RateLimitedWarn): void {
    switch (e.type) {
      case 'attached':
        log.info({ netns: e.ns.key }, 'namespace attached');
        break;
      case 'opened':
        this.#kindOfPoint.set(e.handle.point.id, e.handle.point.kind);
        this.#enricher.addObservationPoint(e.handle.point);
        log.debug({ point: e.handle.point }, 'capture opened');
        break;
      case 'closed':
        this.#kindOfPoint.delete(e.handle.point.id);
        this.#enricher.removeObservationPoint(e.handle.point.id);
        if (e.reason) warn.warn(`lost:${e.reason.code}`, { err: e.reason, interface: e.handle.point.interfaceName }, 'capture handle lost');
        break;
      case 'open-failed':
        warn.warn(`open-failed:${e.interfaceName}`, { err: e.error, interface: e.interfaceName }, 'cannot open capture (retried later)');
        break;
      default:
        break;
    }
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch {
      this.#handlerErrors++;
    }
  }
}
