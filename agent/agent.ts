// The agent: wires namespace discovery and capture, decoding and metering,
// identity and IPFIX export, with metrics, health endpoints and a bounded
// graceful stop. The only place that knows all the other folders.
//
// Start order: Kubernetes caches start syncing (not awaited: an unreachable
// API server must not stop capture; flows are held, then named 'unknown'
// after the hold time) → Identity subscribes → discovery and capture attach
// to namespaces as they appear → records go to the exporter (which connects
// and retries on its own) in batches on one coarse timer.
//
// Stop (SIGTERM/SIGINT): drain and close capture (packets already in the
// kernel rings are delivered; the flows of every observation point end with
// FORCED_END), end what is left in the meter, release held flows,
// hand every record to the exporter, then flush and close it within the
// shutdown time.
import type { Logger } from 'pino';
import type { AgentConfig } from './config.ts';
import { createMetrics, WorkloadTraffic } from './metrics.ts';
import { AgentHttp } from './http.ts';
import { PacketDecoder } from '../flow/decode.ts';
import { PacketIngest } from '../flow/ingest.ts';
import { FlowMeter } from '../flow/meter.ts';
import { EndReason } from '../flow/types.ts';
import { NetnsDiscovery } from '../netns/discovery.ts';
import { NodeCapture, type NodeCaptureEvent } from '../netns/node-capture.ts';
import { Identity } from '../enrich/identity.ts';
import { KubeCaches } from '../enrich/kube-caches.ts';
import { Exporter } from '../ipfix/exporter.ts';
import type { ExportRecord } from '../ipfix/types.ts';
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

export class Agent {
  readonly registry: Registry;
  readonly #c: AgentConfig;
  readonly #log: Logger;
  readonly #caches: KubeCaches;
  readonly #decoder = new PacketDecoder();
  readonly #meter: FlowMeter;
  readonly #ingest: PacketIngest;
  readonly #discovery: NetnsDiscovery;
  readonly #capture: NodeCapture;
  readonly #identity: Identity;
  readonly #exporter: Exporter;
  readonly #http: AgentHttp;
  readonly #traffic: WorkloadTraffic;
  readonly #kindOfPoint = new Map<number, 'pod' | 'loopback'>();
  readonly #byKind = { pod: { packets: 0, bytes: 0 }, loopback: { packets: 0, bytes: 0 } };
  #batch: ExportRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;

  /** log: the root logger; each component gets its child. */
  constructor(config: AgentConfig, log: Logger) {
    this.#c = config;
    this.#log = log.child({ component: 'agent' });
    const kubeLog = log.child({ component: 'kube' });
    const captureLog = log.child({ component: 'capture' });
    const exportLog = log.child({ component: 'export' });
    const kubeWarn = new RateLimitedWarn(kubeLog);
    const captureWarn = new RateLimitedWarn(captureLog);
    const exportWarn = new RateLimitedWarn(exportLog);

    this.#caches = new KubeCaches({ kubeconfig: config.kubernetes.kubeconfig || undefined, labelKeys: config.labelKeys });
    this.#caches.onError((resource, err) => kubeWarn.warn(`${resource}:${err.code}`, { resource, err }, 'informer stopped; restarting with backoff'));
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
      onFlow: (flow) => this.#identity.enrich(flow),
    });
    this.#ingest = new PacketIngest(this.#decoder, this.#meter);
    this.#discovery = new NetnsDiscovery({
      netnsDirs: config.namespaces.netnsDirs,
      procRoot: config.namespaces.proc ? config.namespaces.procRoot : null,
      rescanIntervalMs: config.namespaces.rescanSeconds * 1000,
    });
    const interfaces = config.capture.interfaces ? new RegExp(config.capture.interfaces) : undefined;
    const paths = config.namespaces.pathFilter ? new RegExp(config.namespaces.pathFilter) : undefined;
    this.#capture = new NodeCapture({
      discovery: this.#discovery,
      meter: this.#meter,
      sink: (id, linkType, buf, start, end) => this.#sink(id, linkType, buf, start, end),
      // Only when set: NodeCapture's defaults are overridden by an explicit undefined.
      ...(interfaces && { podInterfaceFilter: (name: string) => interfaces.test(name) }),
      ...(paths && { namespaceFilter: (ns: { paths: string[] }) => ns.paths.some((p) => paths.test(p)) }),
      captureLoopback: config.capture.loopback,
      capture: { snaplen: config.capture.snaplen, bufferBytes: config.capture.bufferBytes },
      interfaceRescanMs: config.namespaces.rescanSeconds * 1000,
    });
    this.#capture.on('event', (e) => this.#onCaptureEvent(e, captureLog, captureWarn));
    this.#identity = new Identity({
      caches: this.#caches,
      capture: this.#capture,
      nodeName: config.nodeName,
      clusterName: config.clusterName,
      procRoot: config.namespaces.proc ? config.namespaces.procRoot : null,
      leases: { graceMs: config.kubernetes.leaseGraceSeconds * 1000, clusterCidrs: config.clusterCidrs },
      onRecord: (record) => this.#onRecord(record),
    });
    this.#traffic = new WorkloadTraffic(config.metrics.maxWorkloadSeries);
    this.registry = createMetrics({
      capture: () => this.#capture.counters(),
      captureByKind: () => this.#byKind,
      ingest: () => this.#ingest.stats,
      decodeErrors: () => this.#decoder.errors,
      meter: () => this.#meter.stats,
      exporter: () => this.#exporter.stats(),
      caches: () => this.#caches.status(),
      identity: () => this.#identity.stats(),
      traffic: this.#traffic,
    });
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
    this.#caches.start();
    this.#identity.start();
    await this.#discovery.start();
    this.#capture.start();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#log.info({ metrics, collectors: this.#c.collectors, nodeName: this.#c.nodeName }, 'agent started');
    return { metrics };
  }

  /** Why the agent is not ready, or undefined: ready = caches synced and every collector working. */
  notReady(): string | undefined {
    if (this.#stopping) return 'stopping';
    if (!this.#caches.synced()) return 'Kubernetes caches not synced';
    const down = this.#exporter.stats().filter((t) => !t.connected).map((t) => t.target);
    return down.length > 0 ? `not connected to ${down.join(', ')}` : undefined;
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
    this.#discovery.close();
    const forced = this.#meter.stats.active;
    this.#meter.flush(EndReason.FORCED_END);
    this.#identity.close(); // flows held for the first sync are enriched now
    this.#flushBatch();
    const budgetMs = this.#c.shutdown.timeoutSeconds * 1000;
    const bounded = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<void>((r) => setTimeout(r, Math.max(ms, 0)).unref())]);
    await bounded(this.#exporter.close(), budgetMs * 0.8);
    this.#exporter.destroy();
    const exported = this.#exporter.stats().map((t) => ({ collector: t.target, records: t.records, dropped: t.droppedRecords, queued: t.queuedRecords }));
    await bounded(Promise.all([this.#caches.close(), this.#http.close()]), budgetMs - (Date.now() - started));
    this.#log.info({ forcedEnd: this.#meter.stats.ended[EndReason.FORCED_END], leftInMeter: forced, exported, ms: Date.now() - started }, 'agent stopped');
  }

  #sink(id: number, linkType: number, buf: Uint8Array, start: number, end: number): void {
    const bytes = this.#ingest.stats.bytes;
    const packets = this.#ingest.ingest(id, linkType, buf, start, end);
    const kind = this.#byKind[this.#kindOfPoint.get(id) ?? 'pod'];
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
    this.#meter.expire(Date.now());
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
      case 'opened':
        this.#kindOfPoint.set(e.handle.point.id, e.handle.point.kind);
        log.debug({ point: e.handle.point }, 'capture opened');
        break;
      case 'closed':
        this.#kindOfPoint.delete(e.handle.point.id);
        if (e.reason) warn.warn(`lost:${e.reason.code}`, { err: e.reason, interface: e.handle.point.interfaceName }, 'capture handle lost');
        break;
      case 'open-failed':
        warn.warn(`open-failed:${e.interfaceName}`, { err: e.error, netns: e.ns.key, interface: e.interfaceName }, 'cannot open capture (retried later)');
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
