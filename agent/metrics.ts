// Prometheus metrics of the agent: the components keep plain counters on
// their hot paths; this module publishes them at scrape time (collect()), so
// nothing here runs per packet. One Registry per agent (a fresh one per test).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { FlowMeterStats } from '../flow/meter.ts';
import type { DecodeErrors } from '../flow/decode.ts';
import type { IngestStats } from '../flow/ingest.ts';
import type { TransportStats } from '../ipfix/transport.ts';
import type { KubeResource, KubeResourceStatus } from '../enrich/kube-caches.ts';
import type { IdentityStats } from '../enrich/identity.ts';
import type { NodeCaptureCounters } from '../netns/node-capture.ts';
import { type ExportRecord, FlowDirection } from '../ipfix/types.ts';
import { EndReason } from '../flow/types.ts';

/** What the metrics read, all at scrape time. */
export interface MetricSources {
  capture: () => NodeCaptureCounters;
  /** Packets and bytes captured, by interface kind ('pod', 'loopback'). */
  captureByKind: () => Record<string, { packets: number; bytes: number }>;
  ingest: () => IngestStats;
  decodeErrors: () => DecodeErrors;
  meter: () => FlowMeterStats;
  exporter: () => TransportStats[];
  caches: () => Record<KubeResource, KubeResourceStatus>;
  identity: () => IdentityStats;
  traffic: WorkloadTraffic;
}

const END_REASONS: Record<number, string> = {
  [EndReason.IDLE_TIMEOUT]: 'idle_timeout',
  [EndReason.ACTIVE_TIMEOUT]: 'active_timeout',
  [EndReason.END_OF_FLOW]: 'end_of_flow',
  [EndReason.FORCED_END]: 'forced_end',
  [EndReason.LACK_OF_RESOURCES]: 'lack_of_resources',
};

/** The label value standing for every workload past the series bound. */
export const OTHER_WORKLOAD = '_other';

/**
 * Traffic of the observed pod's workload, by namespace, workload and
 * direction, counted per exported record (never per packet). At most
 * maxSeries distinct series; later ones add to workload "_other".
 */
export class WorkloadTraffic {
  readonly #max: number;
  readonly #series = new Map<string, { namespace: string; workload: string; direction: string; bytes: number; packets: number }>();
  overflowed = 0;

  constructor(maxSeries: number) {
    this.#max = maxSeries;
  }

  add(record: ExportRecord): void {
    const egress = record.flowDirection === FlowDirection.EGRESS;
    const observed = egress ? record.source : record.destination;
    const namespace = observed.namespace || OTHER_WORKLOAD;
    const workload = observed.workloadName ? `${observed.workloadKind}/${observed.workloadName}` : observed.podName || OTHER_WORKLOAD;
    const direction = record.interfaceName === 'lo' ? 'loopback' : egress ? 'egress' : 'ingress';
    let key = `${namespace}\u0000${workload}\u0000${direction}`;
    let s = this.#series.get(key);
    if (!s) {
      if (this.#series.size >= this.#max - 3) {
        this.overflowed++;
        key = `${OTHER_WORKLOAD}\u0000${OTHER_WORKLOAD}\u0000${direction}`;
        s = this.#series.get(key);
        if (!s) this.#series.set(key, (s = { namespace: OTHER_WORKLOAD, workload: OTHER_WORKLOAD, direction, bytes: 0, packets: 0 }));
      } else this.#series.set(key, (s = { namespace, workload, direction, bytes: 0, packets: 0 }));
    }
    s.bytes += record.flow.octetDeltaCount + record.flow.reverseOctetDeltaCount;
    s.packets += record.flow.packetDeltaCount + record.flow.reversePacketDeltaCount;
  }

  series(): Iterable<{ namespace: string; workload: string; direction: string; bytes: number; packets: number }> {
    return this.#series.values();
  }
}

/** A counter whose value is read from a component at scrape time. */
function counter(registry: Registry, name: string, help: string, labelNames: readonly string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      read((labels, v) => this.inc(labels, v));
    },
  });
}

function gauge(registry: Registry, name: string, help: string, labelNames: readonly string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      read((labels, v) => this.set(labels, v));
    },
  });
}

export function createMetrics(s: MetricSources): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  // prom-client's gauges named *_total break the convention (promtool rejects
  // them); the same counts stay in nodejs_active_{handles,requests,resources} by type.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) r.removeSingleMetric(name);
  counter(r, 'podflow_capture_packets_total', 'Packets captured, by interface kind (pod: eth0-like; loopback: lo).', ['kind'], (set) => {
    for (const [kind, v] of Object.entries(s.captureByKind())) set({ kind }, v.packets);
  });
  counter(r, 'podflow_capture_bytes_total', 'On-the-wire bytes of the packets captured, by interface kind.', ['kind'], (set) => {
    for (const [kind, v] of Object.entries(s.captureByKind())) set({ kind }, v.bytes);
  });
  counter(r, 'podflow_capture_kernel_drops_total', 'Packets the kernel dropped for lack of ring space on capture handles.', [], (set) => set({}, s.capture().kernelDrops));
  counter(r, 'podflow_capture_open_failures_total', 'Capture handles that failed to open.', [], (set) => set({}, s.capture().openFailures));
  counter(r, 'podflow_capture_handles_lost_total', 'Capture handles that stopped on their own (interface gone or down).', [], (set) => set({}, s.capture().handlesLost));
  gauge(r, 'podflow_capture_handles', 'Capture handles open now, by the kernel ring they read (idle: small, busy: capture.bufferBytes; fixed: no ring tiers).', ['ring'], (set) => {
    for (const [ring, v] of Object.entries(s.capture().handlesByTier)) set({ ring }, v);
  });
  counter(r, 'podflow_capture_ring_switches_total', 'Capture handles moved between their idle and busy kernel ring.', [], (set) => set({}, s.capture().ringSwitches));
  counter(r, 'podflow_capture_ring_switch_failures_total', 'Ring moves given up (the new ring could not be opened); retried later.', [], (set) => set({}, s.capture().ringSwitchFailures));
  gauge(r, 'podflow_namespaces_attached', 'Pod network namespaces attached now.', [], (set) => set({}, s.capture().namespacesAttached));
  counter(r, 'podflow_decode_errors_total', 'Captured packets not metered, by reason.', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(s.decodeErrors())) set({ reason: snake(reason) }, v);
  });
  gauge(r, 'podflow_flows_active', 'Flows open in the flow table now.', [], (set) => set({}, s.meter().active));
  counter(r, 'podflow_flows_created_total', 'Flows created.', [], (set) => set({}, s.meter().created));
  counter(r, 'podflow_flows_ended_total', 'Flows ended, by IPFIX flowEndReason.', ['reason'], (set) => {
    const ended = s.meter().ended;
    for (const [i, reason] of Object.entries(END_REASONS)) set({ reason }, ended[Number(i)] ?? 0);
  });
  counter(r, 'podflow_flow_table_evictions_total', 'Flows ended early because the flow table was full.', [], (set) => set({}, s.meter().evictions));
  const perCollector = (name: string, help: string, pick: (t: TransportStats) => number, type: 'counter' | 'gauge' = 'counter') =>
    (type === 'counter' ? counter : gauge)(r, name, help, ['collector'], (set) => {
      for (const t of s.exporter()) set({ collector: t.target }, pick(t));
    });
  perCollector('podflow_export_records_total', 'IPFIX flow data records sent, per collector.', (t) => t.records);
  perCollector('podflow_export_messages_total', 'IPFIX messages sent, per collector.', (t) => t.messages);
  perCollector('podflow_export_bytes_total', 'IPFIX message bytes sent, per collector.', (t) => t.bytes);
  perCollector('podflow_export_errors_total', 'Export errors (connect, send, TLS, file), per collector.', (t) => t.errors);
  perCollector('podflow_export_reconnects_total', 'Reconnections to the collector after the first connection.', (t) => t.reconnects);
  perCollector('podflow_export_queue_dropped_records_total', 'Records dropped because the export queue was full or the close ran out of time.', (t) => t.droppedRecords);
  perCollector('podflow_export_queued_records', 'Records waiting for the collector now.', (t) => t.queuedRecords, 'gauge');
  perCollector('podflow_export_connected', '1 when the transport to the collector is up and has sent its templates.', (t) => (t.connected ? 1 : 0), 'gauge');
  const perResource = (name: string, help: string, pick: (st: KubeResourceStatus) => number, type: 'counter' | 'gauge') =>
    (type === 'counter' ? counter : gauge)(r, name, help, ['resource'], (set) => {
      for (const [resource, st] of Object.entries(s.caches())) set({ resource }, pick(st));
    });
  perResource('podflow_kube_cache_synced', '1 when the cache of the resource has completed its first list.', (st) => (st.synced ? 1 : 0), 'gauge');
  perResource('podflow_kube_cache_objects', 'Objects in the cache now.', (st) => st.objects, 'gauge');
  perResource('podflow_kube_cache_events_total', 'Add, update and delete events applied to the cache.', (st) => st.events, 'counter');
  perResource('podflow_kube_cache_errors_total', 'Errors that stopped the informer (each followed by a restart).', (st) => st.errors, 'counter');
  counter(r, 'podflow_lease_lookups_total', 'IP lease lookups for the remote end of a flow, by outcome.', ['outcome'], (set) => {
    for (const [outcome, v] of Object.entries(s.identity().leases.lookups)) set({ outcome }, v);
  });
  gauge(r, 'podflow_leases', 'IP leases in the lease table, by state.', ['state'], (set) => {
    const l = s.identity().leases;
    set({ state: 'open' }, l.open);
    set({ state: 'closed' }, l.closed);
  });
  counter(r, 'podflow_enriched_flows_total', 'Flows named with identity and handed to export.', [], (set) => set({ }, s.identity().enricher.enriched));
  gauge(r, 'podflow_enrich_held_flows', 'Flows held until the caches first sync.', [], (set) => set({}, s.identity().enricher.heldNow));
  counter(r, 'podflow_workload_traffic_bytes_total', `IP bytes of exported flows by the observed pod's namespace, workload and direction (at most the configured series; the rest under "${OTHER_WORKLOAD}").`, ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic.series()) set({ namespace: x.namespace, workload: x.workload, direction: x.direction }, x.bytes);
  });
  counter(r, 'podflow_workload_traffic_packets_total', "Packets of exported flows by the observed pod's namespace, workload and direction.", ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic.series()) set({ namespace: x.namespace, workload: x.workload, direction: x.direction }, x.packets);
  });
  return r;
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
