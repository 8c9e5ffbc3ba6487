// The agent: wires namespace capture, decoding and metering, naming (the
// Kubernetes identity of both ends) and IPFIX export, with metrics, health endpoints and a bounded graceful stop.
// The only place that knows all the other folders.
//
// One Agent serves both modes; what differs is injected as an AgentMode
// (agent/mode.ts): how namespaces are found and attached (the DaemonSet:
// node-wide discovery, agent/daemonset.ts; the sidecar: the namespace the
// process is in, agent/sidecar.ts) and Naming's namespace→pod lookup
// (NetnsPods, or the downward-API pod). Start order, export batching,
// metrics, HTTP, logging and the stop are shared.
//
// Start order: Kubernetes caches start syncing (not awaited: an unreachable
// API server must not stop capture; flows are held, then named 'unknown'
// after kubernetes.holdUnnamedSeconds; with no usable Kubernetes
// configuration at all there are no caches, and flows are named 'unknown'
// at once) → the naming subscribes → namespaces are
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
import type { AgentMode, AgentModeFactory, ModeNaming } from './mode.ts';
import { RateLimitedWarn } from './rate-limited-warn.ts';
import { FreedMemoryReturn, listsOf } from './freed-memory.ts';
import { PacketDecoder } from '../flow/decode.ts';
import { PacketIngest } from '../flow/ingest.ts';
import { FlowMeter } from '../flow/meter.ts';
import { enabledFeatures, FlowFeatures } from '../flow/features/flow-features.ts';
import { EndReason } from '../flow/types.ts';
import { NodeCapture, type NodeCaptureEvent } from '../netns/node-capture.ts';
import { captureQueue, configureCaptureQueue } from '../netns/capture-queue.ts';
import { addon } from '../netns/addon.ts';
import { systemClock } from '../common/clock.ts';
import { Exporter } from '../ipfix/exporter.ts';
import { notSentTotal } from '../ipfix/transport.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import type { Registry } from 'prom-client';

/** Records are handed to the exporter in batches of at most this many, or every tick. */
const EXPORT_BATCH = 512;
const TICK_MS = 250;

export class Agent {
  readonly registry: Registry;
  /** Every stats object of the agent, as /metrics reads them. */
  readonly metricSources: MetricSources;
  readonly #config: AgentConfig;
  readonly #log: Logger;
  readonly #mode: AgentMode;
  readonly #decoder = new PacketDecoder();
  readonly #meter: FlowMeter;
  readonly #features: FlowFeatures | undefined;
  readonly #ingest: PacketIngest;
  readonly #capture: NodeCapture;
  readonly #naming: ModeNaming;
  readonly #freedMemory: FreedMemoryReturn;
  readonly #exporter: Exporter;
  readonly #http: AgentHttp;
  readonly #traffic: WorkloadTraffic;
  readonly #kindOfPoint = new Map<number, 'pod' | 'loopback'>();
  readonly #byKind = { pod: { buffers: 0, packets: 0, bytes: 0 }, loopback: { buffers: 0, packets: 0, bytes: 0 } };
  #batch: ExportRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #started = false;

  /** log: the root logger; each component gets its child. mode: daemonsetMode (agent/daemonset.ts) or sidecarMode (agent/sidecar.ts). */
  constructor(config: AgentConfig, log: Logger, mode: AgentModeFactory) {
    this.#config = config;
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
    this.#freedMemory = new FreedMemoryReturn({
      lists: () => listsOf(this.#naming.cacheStatus()),
      // Logged: the collection holds the main thread (~0.3 s at 100k pods), so a spike of event-loop delay after a list has its cause in the log.
      returnFreeMemory: () => {
        const rssBefore = process.memoryUsage.rss();
        const started = performance.now();
        addon.returnFreeMemory();
        const pauseMs = Math.round(performance.now() - started);
        this.#log.info({ rssBeforeBytes: rssBefore, rssAfterBytes: process.memoryUsage.rss(), pauseMs }, "returned free memory after the caches' lists");
      },
      clock: systemClock,
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
      naming: () => this.#naming.stats(),
      traffic: () => this.#traffic.stats(),
    };
    this.registry = createMetrics(this.metricSources);
    this.#http = new AgentHttp({ registry: this.registry, notReady: () => this.notReady() });
  }

  /** Starts everything; resolves with the metrics address once capture is attaching. */
  async start(): Promise<{ metrics: string }> {
    let address;
    try {
      address = await this.#http.listen(this.#config.metrics.listen);
    } catch (err) {
      // Nothing else has started but the exporter's connection: end it, or it keeps the process alive.
      this.#exporter.destroy();
      throw err;
    }
    const metrics = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    this.#naming.start();
    this.#freedMemory.start();
    await this.#mode.namespaces.start();
    this.#capture.start();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#started = true;
    this.#log.info({ metrics, collectors: this.#config.collectors, ...this.#mode.startedFields() }, 'agent started');
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
    this.#freedMemory.stop();
    // Capture keeps delivering until every packet that reached a ring before
    // SIGTERM is readable (two block timeouts), reads the rings dry, then
    // closes: every observation point's flows end with FORCED_END.
    await this.#capture.stop();
    this.#mode.namespaces.close();
    const forced = this.#meter.stats.active;
    this.#meter.flush(EndReason.FORCED_END);
    this.#naming.close(); // flows still held are enriched now
    this.#flushBatch();
    const budgetMs = this.#config.shutdown.timeoutSeconds * 1000;
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
