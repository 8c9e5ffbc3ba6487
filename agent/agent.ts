// The agent: wires namespace capture, decoding and metering, identity and
// IPFIX export, with metrics, health endpoints and a bounded graceful stop.
// The only place that knows all the other folders.
//
// One Agent serves both modes; what differs is injected as an AgentMode:
// how namespaces are found and attached (the DaemonSet: node-wide discovery,
// daemonsetMode below; the sidecar: the namespace the process is in,
// agent/sidecar.ts) and how the observed end is named (NetnsPods mapping via
// Identity, or the downward-API identity). Start order, export batching,
// metrics, HTTP, logging and the stop are shared.
//
// Start order: Kubernetes caches start syncing (not awaited: an unreachable
// API server must not stop capture; flows are held, then named 'unknown'
// after kubernetes.holdUnnamedSeconds; with no usable Kubernetes
// configuration at all there are no caches, and flows are named 'unknown'
// at once) → the naming (Identity) subscribes → namespaces are
// found and capture attaches to them as they appear → records go to the
// exporter (which connects and retries on its own) in batches on one coarse
// timer.
//
// Stop (SIGTERM/SIGINT): let capture settle and close it (packets already in
// the kernel rings are delivered; the flows of every observation point end with
// FORCED_END), end what is left in the meter, release held flows,
// hand every record to the exporter, then flush and close it within the
// shutdown time.
import type { Logger } from 'pino';
import type { AgentConfig } from './config.ts';
import { createMetrics, type MetricSources, WorkloadTraffic } from './metrics.ts';
import { AgentHttp } from './http.ts';
import { PacketDecoder } from '../flow/decode.ts';
import { PacketIngest } from '../flow/ingest.ts';
import { FlowMeter } from '../flow/meter.ts';
import { enabledFeatures, FlowFeatures } from '../flow/features/flow-features.ts';
import { EndReason } from '../flow/types.ts';
import type { FlowRecord } from '../flow/types.ts';
import { type DiscoveredNamespace, type DiscoveryStats, NetnsDiscovery } from '../netns/discovery.ts';
import { type NamespaceEvents, NodeCapture, type NodeCaptureEvent } from '../netns/node-capture.ts';
import { listAddresses } from '../netns/interfaces.ts';
import { captureQueue, configureCaptureQueue } from '../netns/capture-queue.ts';
import { Identity, type IdentityCapture, type IdentityStats } from '../enrich/identity.ts';
import { KubeCaches, type KubeResource, type KubeResourceStatus, kubeResources } from '../enrich/kube-caches.ts';
import { NetnsPods } from '../enrich/netns-pods.ts';
import { PodflowError } from '../common/errors.ts';
import { Exporter } from '../ipfix/exporter.ts';
import { notSentTotal } from '../ipfix/transport.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import type { Registry } from 'prom-client';

/** Records are handed to the exporter in batches of at most this many, or every tick. */
const EXPORT_BATCH = 512;
const TICK_MS = 250;
/** A repeated warning of the same kind is logged at most once per this period, with the count suppressed. */
const WARN_PERIOD_MS = 30_000;

/** Logs the first warning of a key, then at most one per period with how many were suppressed. */
export class RateLimitedWarn {
  readonly #log: Logger;
  readonly #periodMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  constructor(log: Logger, periodMs = WARN_PERIOD_MS) {
    this.#log = log;
    this.#periodMs = periodMs;
  }
  warn(key: string, fields: object, message: string): void {
    const now = Date.now();
    const seen = this.#last.get(key);
    if (seen && now - seen.at < this.#periodMs) {
      seen.suppressed++;
      return;
    }
    this.#log.warn({ ...fields, suppressed: seen?.suppressed ?? 0 }, message);
    this.#last.set(key, { at: now, suppressed: 0 });
  }
}

/** How namespaces are found: NetnsDiscovery node-wide, or the one namespace the process is in. */
export interface NamespaceSource extends NamespaceEvents {
  start(): Promise<void>;
  close(): void;
  /** Discovery's counters, when namespaces are discovered. */
  stats?(): DiscoveryStats;
}

/** How the observed end of a flow is named, with the Kubernetes caches behind it. */
export interface ObservedNaming {
  /** FlowMeter's onFlow. */
  enrich(flow: FlowRecord): void;
  /** Starts the caches syncing and subscribes (to the caches and the capture's events); before capture starts. */
  start(): void;
  /** At stop, after the meter's FORCED_END flush: unsubscribes and releases every flow still held. */
  close(): void;
  /** Ends the Kubernetes clients. */
  closeCaches(): Promise<unknown>;
  /** Why naming is not ready (the caches have not synced, or cannot be used), or undefined. */
  notReady(): string | undefined;
  cacheStatus(): Record<KubeResource, KubeResourceStatus>;
  stats(): IdentityStats;
}

/** What the naming is given of the agent. */
export interface NamingWiring {
  capture: IdentityCapture;
  onRecord: (record: ExportRecord) => void;
  /** Splits the meter's open flows with this address at atMs, except at the observation points keep() spares (the address's lease closed then). */
  splitFlowsAt: (address: Uint8Array, atMs: number, keep: (observationPointId: number) => boolean) => void;
}

/** What differs between the DaemonSet and the sidecar; everything else is Agent's. */
export interface AgentMode {
  /** Extra fields on the agent's own log lines. */
  readonly logFields: object;
  readonly namespaces: NamespaceSource;
  /** Which found namespaces to attach to. Default: all. */
  readonly namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
  /** Builds the naming once the capture exists (its events tell the observation points). */
  naming(wiring: NamingWiring): ObservedNaming;
  /** Fields of the 'agent started' line besides metrics and collectors. */
  startedFields(): object;
}

/** Builds a mode from the configuration and the root logger; may throw (before anything opens). */
export type AgentModeFactory = (config: AgentConfig, log: Logger) => AgentMode;

/** The DaemonSet: every pod namespace of the node (NetnsDiscovery), pods named through NetnsPods (Identity). */
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
      const identity = new Identity({
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
        // Without caches nothing will ever name a held flow better: it goes at Identity's next tick.
        holdMaxAgeMs: kube.caches ? config.kubernetes.holdUnnamedSeconds * 1000 : 1,
        onRecord,
      });
      return {
        enrich: identity.enrich,
        start: () => {
          kube.caches?.start();
          identity.start();
        },
        close: () => identity.close(), // flows held for the first sync are enriched now
        closeCaches: async () => kube.caches?.close(),
        notReady: () => (kube.caches ? cachesNotSynced(kube.caches.status()) : `Kubernetes identity off: ${kube.whyNot}; flows are exported with identity unknown`),
        cacheStatus: () => (kube.caches ? kube.caches.status() : unusableCachesStatus(kube.whyNot)),
        stats: () => identity.stats(),
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

/** Why the caches are not ready yet, naming the first resource that has not synced and its last error; undefined once all have. */
export function cachesNotSynced(status: Record<KubeResource, KubeResourceStatus>): string | undefined {
  const pending = kubeResources.filter((r) => !status[r].synced);
  if (pending.length === 0) return undefined;
  const failing = pending.find((r) => status[r].lastError !== undefined);
  return `Kubernetes caches not synced (${pending.join(', ')})${failing ? `: ${status[failing].lastError}` : ''}`;
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

export class Agent {
  readonly registry: Registry;
  /** Every stats object of the agent, as /metrics reads them. */
  readonly metricSources: MetricSources;
  readonly #c: AgentConfig;
  readonly #log: Logger;
  readonly #mode: AgentMode;
  readonly #decoder = new PacketDecoder();
  readonly #meter: FlowMeter;
  readonly #features: FlowFeatures | undefined;
  readonly #ingest: PacketIngest;
  readonly #capture: NodeCapture;
  readonly #naming: ObservedNaming;
  readonly #exporter: Exporter;
  readonly #http: AgentHttp;
  readonly #traffic: WorkloadTraffic;
  readonly #kindOfPoint = new Map<number, 'pod' | 'loopback'>();
  readonly #byKind = { pod: { buffers: 0, packets: 0, bytes: 0 }, loopback: { buffers: 0, packets: 0, bytes: 0 } };
  #batch: ExportRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #started = false;

  /** log: the root logger; each component gets its child. mode: the DaemonSet's by default. */
  constructor(config: AgentConfig, log: Logger, mode: AgentModeFactory = daemonsetMode) {
    this.#c = config;
    // First: a mode that cannot start (e.g. no downward-API identity) throws before any connection opens.
    this.#mode = mode(config, log);
    this.#log = log.child({ component: 'agent', ...this.#mode.logFields });
    const captureLog = log.child({ component: 'capture' });
    const exportLog = log.child({ component: 'export' });
    const captureWarn = new RateLimitedWarn(captureLog);
    const exportWarn = new RateLimitedWarn(exportLog);

    this.#exporter = new Exporter({
      targets: config.collectors,
      observationDomainId: observationDomainOf(config.nodeName),
      enterpriseNumber: config.enterpriseNumber,
      features: enabledFeatures(config.features),
      featureElements: config.featureElements,
      closeTimeoutMs: config.shutdown.timeoutSeconds * 1000 * 0.8,
      onError: (err, target) => exportWarn.warn(`${target}:${err.code}`, { collector: target, err }, 'export error (records are queued and retried)'),
    });
    this.#features = FlowFeatures.hooks(config.features, config.flow.maxFlows);
    this.#meter = new FlowMeter({
      idleTimeoutMs: config.flow.idleTimeoutSeconds * 1000,
      activeTimeoutMs: config.flow.activeTimeoutSeconds * 1000,
      maxFlows: config.flow.maxFlows,
      // Timed out on the agent's tick, behind every ring (#tick).
      expireOnAdd: false,
      ...(this.#features && { features: this.#features }),
      onFlow: (flow) => this.#naming.enrich(flow),
    });
    this.#ingest = new PacketIngest(this.#decoder, this.#meter);
    configureCaptureQueue({ queueBytes: config.capture.queueBytes });
    const interfaces = config.capture.interfaces ? new RegExp(config.capture.interfaces) : undefined;
    const namespaceFilter = this.#mode.namespaceFilter;
    this.#capture = new NodeCapture({
      discovery: this.#mode.namespaces,
      sink: (id, linkType, buf, start, end) => this.#sink(id, linkType, buf, start, end),
      // Only when set: NodeCapture's defaults are overridden by an explicit undefined.
      ...(interfaces && { podInterfaceFilter: (name: string) => interfaces.test(name) }),
      ...(namespaceFilter && { namespaceFilter }),
      captureLoopback: config.capture.loopback,
      // Whole DNS messages only when the DNS feature reads them.
      capture: { snaplen: config.capture.snaplen, dnsSnaplen: config.features.dns ? config.capture.dnsSnaplen : 0, bufferBytes: config.capture.bufferBytes },
    });
    // Subscribed before the naming: a closed point's flows end (and are named)
    // before the naming forgets the point on the same 'closed' event.
    this.#capture.on('event', (e) => this.#onCaptureEvent(e, captureLog, captureWarn));
    this.#naming = this.#mode.naming({
      capture: this.#capture,
      onRecord: (record) => this.#onRecord(record),
      // A flow on an address that passed to another holder ends there: each record names one holder.
      splitFlowsAt: (address, atMs, keep) => void this.#meter.splitFlowsAt(address, atMs, keep),
    });
    this.#traffic = new WorkloadTraffic(config.metrics.maxWorkloadSeries);
    this.metricSources = {
      capture: () => this.#capture.counters(),
      captureQueue: () => ({ allocatedBytes: captureQueue().allocatedBytes }),
      captureByKind: () => this.#byKind,
      discovery: () => this.#mode.namespaces.stats?.(),
      ingest: () => this.#ingest.stats,
      decodeErrors: () => this.#decoder.errors,
      fragments: () => this.#decoder.fragments,
      segments: () => this.#decoder.segments,
      meter: () => this.#meter.stats,
      features: () => this.#features?.stats,
      exporter: () => this.#exporter.stats(),
      caches: () => this.#naming.cacheStatus(),
      identity: () => this.#naming.stats(),
      traffic: () => this.#traffic.stats(),
    };
    this.registry = createMetrics(this.metricSources);
    this.#http = new AgentHttp({ registry: this.registry, notReady: () => this.notReady() });
  }

  /** Starts everything; resolves with the metrics address once capture is attaching. */
  async start(): Promise<{ metrics: string }> {
    let address;
    try {
      address = await this.#http.listen(this.#c.metrics.listen);
    } catch (err) {
      // Nothing else has started but the exporter's connection: end it, or it keeps the process alive.
      this.#exporter.destroy();
      throw err;
    }
    const metrics = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    this.#naming.start();
    await this.#mode.namespaces.start();
    this.#capture.start();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#started = true;
    this.#log.info({ metrics, collectors: this.#c.collectors, ...this.#mode.startedFields() }, 'agent started');
    return { metrics };
  }

  /**
   * Why the agent is not ready, or undefined: ready = capture started and the
   * caches synced (when in use), i.e. the agent itself works. Collectors are
   * not part of it: a collector that is down would stall every DaemonSet
   * rollout at its first node, while the agent queues and counts what it
   * cannot send; that shows in podflow_export_connected and the
   * PodflowCollectorDown alert instead.
   */
  notReady(): string | undefined {
    if (this.#stopping) return 'stopping';
    if (!this.#started) return 'starting';
    return this.#naming.notReady();
  }

  /** Graceful stop within shutdown.timeoutSeconds: nothing open is lost. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const started = Date.now();
    clearInterval(this.#timer);
    // Capture keeps delivering until every packet that reached a ring before
    // SIGTERM is readable (two block timeouts), reads the rings dry, then
    // closes: every observation point's flows end with FORCED_END.
    await this.#capture.stop();
    this.#mode.namespaces.close();
    const forced = this.#meter.stats.active;
    this.#meter.flush(EndReason.FORCED_END);
    this.#naming.close(); // flows still held are enriched now
    this.#flushBatch();
    const budgetMs = this.#c.shutdown.timeoutSeconds * 1000;
    const bounded = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<void>((r) => setTimeout(r, Math.max(ms, 0)).unref())]);
    await bounded(this.#exporter.close(), budgetMs * 0.8);
    this.#exporter.destroy();
    const exported = this.#exporter.stats().map((t) => ({ collector: t.target, records: t.records, notSent: notSentTotal(t), queued: t.queuedRecords }));
    await bounded(Promise.all([this.#naming.closeCaches(), this.#http.close()]), budgetMs - (Date.now() - started));
    this.#log.info({ forcedEnd: this.#meter.stats.ended[EndReason.FORCED_END], leftInMeter: forced, exported, ms: Date.now() - started }, 'agent stopped');
  }

  #sink(id: number, linkType: number, buf: Uint8Array, start: number, end: number): void {
    const stats = this.#ingest.stats;
    const { packets, bytes } = stats;
    const kind = this.#byKind[this.#kindOfPoint.get(id) ?? 'pod'];
    kind.buffers += this.#ingest.ingest(id, linkType, buf, start, end);
    kind.packets += stats.packets - packets;
    kind.bytes += stats.bytes - bytes;
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
    // Flows expire on the packets' clock, not the wall clock: a packet may sit
    // in a kernel ring up to the capture's settle time before it is readable
    // (a TPACKET_V3 block is handed over when its retire timer fires), so a
    // flow is timed out only as of now - settle. Reading every ring first
    // makes "every packet older than that has been delivered" hold even when
    // this timer ran late (timers run before I/O callbacks after a busy turn).
    for (const h of this.#capture.handles()) h.poll();
    this.#meter.expire(now - this.#capture.settleMs());
    this.#flushBatch();
  }

  #onCaptureEvent(e: NodeCaptureEvent, log: Logger, warn: RateLimitedWarn): void {
    switch (e.type) {
      case 'attached':
        log.info({ netns: e.ns.key, paths: e.ns.paths }, 'namespace attached');
        break;
      case 'detached':
        log.info({ netns: e.ns.key }, 'namespace detached');
        break;
      case 'capturing':
        log.info({ netns: e.ns.key }, 'capture open');
        break;
      case 'opened':
        this.#kindOfPoint.set(e.point.id, e.point.kind);
        log.debug({ point: e.point }, 'capturing an interface');
        break;
      case 'closed':
        this.#meter.endObservationPoint(e.point.id, EndReason.FORCED_END);
        this.#kindOfPoint.delete(e.point.id);
        if (e.reason) warn.warn(`lost:${e.reason.code}`, { err: e.reason, interface: e.point.interfaceName }, 'capture handle lost');
        break;
      case 'open-failed':
        warn.warn(`open-failed:${e.ns.key}`, { err: e.error, netns: e.ns.key }, 'cannot open capture (retried later)');
        break;
    }
  }
}

/** A stable, non-zero observation domain id per node (FNV-1a of the node name). */
export function observationDomainOf(nodeName: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < nodeName.length; i++) h = Math.imul(h ^ nodeName.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}
