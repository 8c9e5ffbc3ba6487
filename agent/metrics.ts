// Prometheus metrics of the agent: the components keep plain counters on
// their hot paths; this module publishes them at scrape time (collect()), so
// nothing here runs per packet. One Registry per agent (a fresh one per test).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { FlowMeterStats } from '../flow/meter.ts';
import type { DecodeErrors, FragmentCounts, SegmentCounts } from '../flow/decode.ts';
import type { IngestStats } from '../flow/ingest.ts';
import type { FlowFeatureStats } from '../flow/features/flow-features.ts';
import { NOT_SENT_REASONS, type TransportStats } from '../ipfix/transport.ts';
import type { KubeResource, KubeResourceStatus } from '../enrich/kube-caches.ts';
import type { NamingStats } from '../enrich/naming.ts';
import type { NodeCaptureCounters } from '../netns/node-capture.ts';
import type { DiscoveryStats } from '../netns/discovery.ts';
import { type ExportRecord, FlowDirection } from '../enrich/export-record.ts';
import { EndReason } from '../flow/types.ts';
import { DnsRcodeName } from '../flow/features/dns.ts';

/**
 * What the metrics read, all at scrape time: every stats object of the agent.
 * Every number in them reaches /metrics (test/agent/metrics-coverage.test.ts
 * walks them and fails on a field no metric carries).
 */
export interface MetricSources {
  capture: () => NodeCaptureCounters;
  /** Buffers, wire packets and wire bytes captured, by interface kind ('pod', 'loopback'). */
  captureByKind: () => Record<string, { buffers: number; packets: number; bytes: number }>;
  /** The shared capture queue (netns/capture.ts captureQueue). */
  captureQueue: () => { allocatedBytes: number };
  /** Namespace discovery; undefined when namespaces are not discovered (the sidecar). */
  discovery: () => DiscoveryStats | undefined;
  ingest: () => IngestStats;
  decodeErrors: () => DecodeErrors;
  fragments: () => FragmentCounts;
  segments: () => SegmentCounts;
  meter: () => FlowMeterStats;
  /** The per-flow features; undefined when every feature is off. */
  features: () => FlowFeatureStats | undefined;
  exporter: () => TransportStats[];
  caches: () => Record<KubeResource, KubeResourceStatus>;
  naming: () => NamingStats;
  traffic: () => WorkloadTrafficStats;
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
/** The namespace and workload label value of records whose observed end is not known (not a pod of the cluster, as far as podflow knows). */
export const UNKNOWN_WORKLOAD = '_unknown';

/** Upper bounds (seconds) of the TCP handshake histogram's buckets: a node's pods (tens of µs) to another continent (hundreds of ms) and SYN retransmissions (1 s, 3 s). */
export const HANDSHAKE_BUCKETS_SECONDS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface WorkloadSeries {
  namespace: string;
  workload: string;
  direction: string;
  bytes: number;
  packets: number;
  /** TCP (features.tcp): segments with sequence space, both ways, as the pod's interface saw them (docs/tcp.md). */
  tcpSegments: number;
  /** Of them, retransmitted. */
  tcpRetransmittedSegments: number;
  /** RST segments, both ways. */
  tcpResets: number;
  /** Handshakes seen whole (SYN, SYN/ACK and ACK): how many, their total time, and how many took at most each HANDSHAKE_BUCKETS_SECONDS bound (cumulative). */
  tcpHandshakes: number;
  tcpHandshakeSeconds: number;
  tcpHandshakeBuckets: number[];
  /** DNS responses in the series' flows, by RCODE (index 0-15). */
  dnsResponses: number[];
  /** DNS query-to-response latencies: how many, their sum in seconds, and how many took at most each DNS_LATENCY_BUCKETS_SECONDS bound (cumulative). */
  dnsLatencies: number;
  dnsLatencySeconds: number;
  dnsLatencyBuckets: number[];
}

/** Upper bounds (seconds) of the DNS latency histogram: in-cluster answers take well under a millisecond, upstream ones tens. */
export const DNS_LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface WorkloadTrafficStats {
  series: WorkloadSeries[];
  /** Records counted under "_other" because maxSeries series existed. */
  overflowed: number;
}

/**
 * Traffic of the observed pod's workload, by namespace, workload and
 * direction, counted per exported record (never per packet). At most
 * maxSeries distinct series; later ones add to workload "_other". Records
 * whose observed end is unknown count under "_unknown", not "_other".
 */
export class WorkloadTraffic {
  /** Series of named workloads allowed: maxSeries less one per direction for "_other" and for "_unknown". */
  readonly #maxNamed: number;
  readonly #series = new Map<string, WorkloadSeries>();
  #named = 0;
  #overflowed = 0;

  constructor(maxSeries: number) {
    this.#maxNamed = maxSeries - 6;
  }

  add(record: ExportRecord): void {
    const egress = record.flowDirection === FlowDirection.EGRESS;
    const observed = egress ? record.source : record.destination;
    const namespace = observed.namespace || UNKNOWN_WORKLOAD;
    const workload = observed.workloadName ? `${observed.workloadKind}/${observed.workloadName}` : observed.podName || UNKNOWN_WORKLOAD;
    const direction = record.interfaceName === 'lo' ? 'loopback' : egress ? 'egress' : 'ingress';
    let key = `${namespace}\u0000${workload}\u0000${direction}`;
    let s = this.#series.get(key);
    if (!s) {
      const named = namespace !== UNKNOWN_WORKLOAD;
      if (named && this.#named >= this.#maxNamed) {
        this.#overflowed++;
        key = `${OTHER_WORKLOAD}\u0000${OTHER_WORKLOAD}\u0000${direction}`;
        s = this.#series.get(key);
        if (!s) this.#series.set(key, (s = newSeries(OTHER_WORKLOAD, OTHER_WORKLOAD, direction)));
      } else {
        if (named) this.#named++;
        this.#series.set(key, (s = newSeries(namespace, workload, direction)));
      }
    }
    s.bytes += record.flow.octetDeltaCount + record.flow.reverseOctetDeltaCount;
    s.packets += record.flow.packetDeltaCount + record.flow.reversePacketDeltaCount;
    const tcp = record.flow.tcp;
    if (tcp !== undefined) {
      s.tcpSegments += tcp.forward.segments + tcp.reverse.segments;
      s.tcpRetransmittedSegments += tcp.forward.retransmittedSegments + tcp.reverse.retransmittedSegments;
      s.tcpResets += tcp.forward.resets + tcp.reverse.resets;
      if (tcp.synToSynAckMicros !== undefined && tcp.synAckToAckMicros !== undefined) {
        // The whole round trip as the pod's interface saw it: on the client's side nearly all before the SYN/ACK, on the server's after it.
        const seconds = (tcp.synToSynAckMicros + tcp.synAckToAckMicros) / 1e6;
        s.tcpHandshakes++;
        s.tcpHandshakeSeconds += seconds;
        for (let i = HANDSHAKE_BUCKETS_SECONDS.length - 1; i >= 0 && seconds <= HANDSHAKE_BUCKETS_SECONDS[i]!; i--) s.tcpHandshakeBuckets[i]!++;
      }
    }
    const dns = record.flow.dns;
    if (dns !== undefined) {
      for (let rcode = 0; rcode < dns.responseCodes.length; rcode++) s.dnsResponses[rcode]! += dns.responseCodes[rcode]!;
      for (const micros of dns.latenciesMicros) {
        const seconds = micros / 1e6;
        s.dnsLatencies++;
        s.dnsLatencySeconds += seconds;
        for (let i = DNS_LATENCY_BUCKETS_SECONDS.length - 1; i >= 0 && seconds <= DNS_LATENCY_BUCKETS_SECONDS[i]!; i--) s.dnsLatencyBuckets[i]!++;
      }
    }
  }

  stats(): WorkloadTrafficStats {
    return { series: [...this.#series.values()], overflowed: this.#overflowed };
  }
}

function newSeries(namespace: string, workload: string, direction: string): WorkloadSeries {
  return {
    namespace, workload, direction, bytes: 0, packets: 0,
    tcpSegments: 0, tcpRetransmittedSegments: 0, tcpResets: 0,
    tcpHandshakes: 0, tcpHandshakeSeconds: 0, tcpHandshakeBuckets: HANDSHAKE_BUCKETS_SECONDS.map(() => 0),
    dnsResponses: new Array<number>(16).fill(0), dnsLatencies: 0, dnsLatencySeconds: 0, dnsLatencyBuckets: DNS_LATENCY_BUCKETS_SECONDS.map(() => 0),
  };
}

/** A counter whose value is read from a component at scrape time. */
type ScrapedMetric = typeof Counter | typeof Gauge;

/**
 * A Counter or a Gauge whose series are read from the components at scrape
 * time: collect() resets it, then read() gives every series its value. A
 * Counter has no set(): inc() by the value from the reset sets it.
 */
function scraped(metric: ScrapedMetric, registry: Registry, name: string, help: string, labelNames: readonly string[], read: (set: (labels: Record<string, string>, value: number) => void) => void): void {
  new metric({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      read((labels, value) => (this instanceof Gauge ? this.set(labels, value) : this.inc(labels, value)));
    },
  });
}

/** One labelled histogram's state as kept by a component: cumulative counts per bucket bound, their sum and count. */
interface HistogramSeries {
  labels: Record<string, string>;
  /** Observations at most each bound (cumulative), aligned with the histogram's buckets. */
  buckets: readonly number[];
  sum: number;
  count: number;
}

/**
 * A histogram whose buckets a component counts itself (prom-client's
 * Histogram can only be observed value by value): published at scrape time
 * like the counters, in the exposition format's _bucket, _sum and _count.
 */
function histogram(registry: Registry, name: string, help: string, buckets: readonly number[], read: () => HistogramSeries[]): void {
  registry.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => ({
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      values: read().flatMap((h) => [
        ...buckets.map((le, i) => ({ metricName: `${name}_bucket`, labels: { ...h.labels, le }, value: h.buckets[i]! })),
        { metricName: `${name}_bucket`, labels: { ...h.labels, le: '+Inf' }, value: h.count },
        { metricName: `${name}_sum`, labels: h.labels, value: h.sum },
        { metricName: `${name}_count`, labels: h.labels, value: h.count },
      ]),
    }),
  } as unknown as Parameters<Registry['registerMetric']>[0]);
}

/** A metric with one label whose values are the keys of what read() returns. */
function byLabel(registry: Registry, metric: ScrapedMetric, name: string, help: string, label: string, read: () => Record<string, number>): void {
  scraped(metric, registry, name, help, [label], (set) => {
    for (const [value, v] of Object.entries(read())) set({ [label]: value }, v);
  });
}

export function createMetrics(s: MetricSources): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  // prom-client's gauges named *_total break the convention (promtool rejects
  // them); the same counts stay in nodejs_active_{handles,requests,resources} by type.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) r.removeSingleMetric(name);
  scraped(Counter, r, 'podflow_capture_packets_total', 'Packets captured as they crossed the wire (a GSO/GRO super-packet counts its segments), by interface kind (pod: eth0-like; loopback: lo).', ['kind'], (set) => {
    for (const [kind, v] of Object.entries(s.captureByKind())) set({ kind }, v.packets);
  });
  scraped(Counter, r, 'podflow_capture_buffers_total', 'Buffers the kernel handed to capture (a GSO/GRO super-packet is one), by interface kind.', ['kind'], (set) => {
    for (const [kind, v] of Object.entries(s.captureByKind())) set({ kind }, v.buffers);
  });
  scraped(Counter, r, 'podflow_capture_bytes_total', 'On-the-wire bytes of the packets captured (link headers included), by interface kind.', ['kind'], (set) => {
    for (const [kind, v] of Object.entries(s.captureByKind())) set({ kind }, v.bytes);
  });
  scraped(Counter, r, 'podflow_capture_unmetered_packets_total', 'Packets the kernel received that podflow never metered, by reason: ring_full (the kernel ring overflowed), queue_full (the capture queue overflowed), unread_at_close (in the ring when its handle closed).', ['reason'], (set) => {
    const c = s.capture().handles;
    set({ reason: 'ring_full' }, c.dropped ?? 0);
    set({ reason: 'queue_full' }, c.queueDropped ?? 0);
    set({ reason: 'unread_at_close' }, c.unread ?? 0);
  });
  scraped(Counter, r, 'podflow_capture_kernel_received_total', 'Packets the kernel passed to the capture rings after their filters (dropped ones included).', [], (set) => set({}, s.capture().handles.received ?? 0));
  scraped(Counter, r, 'podflow_capture_batches_total', 'Batches of packets read from the capture queue and handed on.', [], (set) => set({}, s.capture().handles.batches ?? 0));
  scraped(Counter, r, 'podflow_capture_record_bytes_total', 'Bytes read from the capture queue (16-byte record headers, vnet headers and the captured bytes).', [], (set) => set({}, s.capture().handles.bytes ?? 0));
  scraped(Counter, r, 'podflow_capture_sink_errors_total', 'Batches whose processing threw (a bug; the packets of such a batch may not be metered).', [], (set) => set({}, s.capture().handles.sinkErrors ?? 0));
  scraped(Counter, r, 'podflow_capture_truncated_batches_total', 'Capture batches that ended inside a record; the cut record was skipped.', [], (set) => set({}, s.ingest().truncatedRecords));
  scraped(Counter, r, 'podflow_capture_open_failures_total', 'Capture handles that failed to open.', [], (set) => set({}, s.capture().openFailures));
  scraped(Counter, r, 'podflow_capture_handles_lost_total', 'Capture handles that stopped on their own (interface gone or down).', [], (set) => set({}, s.capture().handlesLost));
  scraped(Gauge, r, 'podflow_capture_handles', 'Capture handles open now: one per pod network namespace, for all its interfaces.', [], (set) => set({}, s.capture().handlesOpen));
  scraped(Gauge, r, 'podflow_capture_points', 'Observation points now: the pod interfaces captured (each from its first packet).', [], (set) => set({}, s.capture().pointsOpen));
  scraped(Counter, r, 'podflow_capture_points_opened_total', 'Observation points seen: pod interfaces at their first packet.', [], (set) => set({}, s.capture().pointsOpened));
  scraped(Counter, r, 'podflow_capture_excluded_packets_total', 'Packets of interfaces capture.interfaces leaves out: read, then skipped.', [], (set) => set({}, s.capture().excludedPackets));
  scraped(Counter, r, 'podflow_capture_handles_opened_total', 'Capture handles opened.', [], (set) => set({}, s.capture().handlesOpened));
  scraped(Gauge, r, 'podflow_capture_queue_bytes', 'Bytes of the capture queue allocated now: packets copied out of the kernel rings wait there for the agent (at most capture.queueBytes).', [], (set) => set({}, s.captureQueue().allocatedBytes));
  scraped(Gauge, r, 'podflow_namespaces_attached', 'Pod network namespaces attached now.', [], (set) => set({}, s.capture().namespacesAttached));
  scraped(Gauge, r, 'podflow_namespaces_discovered', 'Network namespaces discovery knows now (before namespaces.pathFilter).', [], (set) => {
    const d = s.discovery();
    if (d) set({}, d.namespaces);
  });
  scraped(Counter, r, 'podflow_namespace_scans_total', 'Scans of the namespace directories and /proc.', [], (set) => {
    const d = s.discovery();
    if (d) set({}, d.scans);
  });
  scraped(Counter, r, 'podflow_namespace_scan_errors_total', 'Namespace scans that failed unexpectedly (retried at the next scan).', [], (set) => {
    const d = s.discovery();
    if (d) set({}, d.scanErrors);
  });
  byLabel(r, Counter, 'podflow_handler_errors_total', 'Exceptions caught in event handlers and timers, by component (a bug; never propagated).', 'component', () => ({
    capture: s.capture().handlerErrors,
    identity: s.naming().handlerErrors, // the exported label value of the naming stage (enrich/naming.ts)
  }));
  scraped(Counter, r, 'podflow_decode_errors_total', 'Captured packets not metered, by reason.', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(s.decodeErrors())) set({ reason: snake(reason) }, v);
  });
  scraped(Counter, r, 'podflow_decode_super_packets_total', 'Captured buffers with a GSO size (GSO/GRO super-packets): counted as their wire segments (split), or as one packet when their headers could not be read that far (unparsed).', ['outcome'], (set) => {
    for (const [outcome, v] of Object.entries(s.segments())) set({ outcome }, v);
  });
  scraped(Counter, r, 'podflow_decode_fragments_total', 'Non-first IP fragments metered: with the ports of their first fragment (joined), or without one seen (orphaned: ports 0).', ['outcome'], (set) => {
    for (const [outcome, v] of Object.entries(s.fragments())) set({ outcome: snake(outcome) }, v);
  });
  scraped(Counter, r, 'podflow_metered_packets_total', 'Captured packets decoded and added to the flow table.', [], (set) => set({}, s.meter().packets));
  scraped(Gauge, r, 'podflow_flows_active', 'Flows open in the flow table now.', [], (set) => set({}, s.meter().active));
  scraped(Counter, r, 'podflow_flows_created_total', 'Flows created.', [], (set) => set({}, s.meter().created));
  scraped(Counter, r, 'podflow_flows_ended_total', 'Flows ended, by IPFIX flowEndReason.', ['reason'], (set) => {
    const ended = s.meter().ended;
    for (const [i, reason] of Object.entries(END_REASONS)) set({ reason }, ended[Number(i)] ?? 0);
  });
  scraped(Counter, r, 'podflow_dns_flows_total', 'Flows on port 53 (UDP or TCP) the DNS feature read.', [], (set) => {
    const f = s.features();
    if (f) set({}, f.dnsFlows);
  });
  scraped(Counter, r, 'podflow_dns_messages_total', 'DNS messages read, by kind (query, response).', ['kind'], (set) => {
    const f = s.features();
    if (!f) return;
    set({ kind: 'query' }, f.dns.queries);
    set({ kind: 'response' }, f.dns.responses);
  });
  scraped(Counter, r, 'podflow_dns_problems_total', "DNS messages or transactions not read whole, by reason: truncated (cut by the snaplen, a fragment or a TCP segment not read), malformed, unmatched_response (its query not seen), pending_overflow (a query pushed out of a flow's 16 waiting before its answer), latencies_not_kept (past 32 per flow).", ['reason'], (set) => {
    const f = s.features();
    if (!f) return;
    for (const [reason, v] of Object.entries(f.dns)) if (reason !== 'queries' && reason !== 'responses') set({ reason: snake(reason) }, v);
  });
  scraped(Counter, r, 'podflow_tcp_problems_total', "TCP packets the TCP feature could not read whole, by reason: truncated_headers (the capture cut the TCP header before its 20 bytes), malformed_options (an option length below 2 or past the header), gaps_forgotten (a direction had 4 sequence gaps: a later fill of the oldest counts as a retransmission; docs/tcp.md).", ['reason'], (set) => {
    const f = s.features();
    if (!f) return;
    for (const [reason, v] of Object.entries(f.tcp)) set({ reason: snake(reason) }, v);
  });
  scraped(Counter, r, 'podflow_app_features_total', 'What the TLS, QUIC and HTTP features read and could not read, by feature and outcome (tls: client_hellos, server_hellos, reassembled, incomplete, malformed, too_long; quic: initials, client_hellos, malformed, incomplete; http: requests, responses, incomplete).', ['feature', 'outcome'], (set) => {
    const f = s.features();
    if (!f) return;
    for (const feature of ['tls', 'quic', 'http'] as const) for (const [outcome, v] of Object.entries(f[feature])) set({ feature, outcome: snake(outcome) }, v);
  });
  scraped(Counter, r, 'podflow_flow_table_evictions_total', 'Flows ended early because the flow table was full.', [], (set) => set({}, s.meter().evictions));
  const perCollector = (name: string, help: string, pick: (t: TransportStats) => number, metric: ScrapedMetric = Counter) =>
    scraped(metric, r, name, help, ['collector'], (set) => {
      for (const t of s.exporter()) set({ collector: t.target }, pick(t));
    });
  perCollector('podflow_export_records_total', 'IPFIX flow data records handed to the socket or file, per collector (TCP/TLS: written; what a lost connection may have taken is also in podflow_export_not_sent_records_total).', (t) => t.records);
  perCollector('podflow_export_messages_total', 'IPFIX messages sent, per collector.', (t) => t.messages);
  perCollector('podflow_export_bytes_total', 'IPFIX message bytes sent, per collector.', (t) => t.bytes);
  perCollector('podflow_export_errors_total', 'Export errors (connect, send, TLS, file), per collector.', (t) => t.errors);
  perCollector('podflow_export_template_sends_total', 'Times the templates (with type information and reliability statistics) were sent, per collector.', (t) => t.templateSends);
  perCollector('podflow_export_reconnects_total', 'Reconnections to the collector after the first connection.', (t) => t.reconnects);
  scraped(Counter, r, 'podflow_export_not_sent_records_total', 'Flow records not sent to the collector, by reason: queue_full, too_large (one record exceeds a message), send_failed, connection_lost (written to a TCP/TLS connection that ended before they were known read: conservative), closed (still queued at stop).', ['collector', 'reason'], (set) => {
    for (const t of s.exporter()) for (const reason of NOT_SENT_REASONS) set({ collector: t.target, reason: snake(reason) }, t.notSent[reason]);
  });
  perCollector('podflow_export_strings_truncated_total', 'Identity strings cut at the longest string exported, per collector (counted per record).', (t) => t.stringsTruncated);
  perCollector('podflow_export_queued_records', 'Records waiting for the collector now.', (t) => t.queuedRecords, Gauge);
  perCollector('podflow_export_connected', '1 when the transport to the collector is up and has sent its templates: UDP, the name resolved; TCP/TLS, connected and the collector reading (0 from a stall until a new session has run the stall timeout without one).', (t) => (t.connected ? 1 : 0), Gauge);
  const perResource = (name: string, help: string, pick: (st: KubeResourceStatus) => number, metric: ScrapedMetric) =>
    scraped(metric, r, name, help, ['resource'], (set) => {
      for (const [resource, st] of Object.entries(s.caches())) set({ resource }, pick(st));
    });
  perResource('podflow_kube_cache_synced', '1 when the cache of the resource has completed its first list.', (st) => (st.synced ? 1 : 0), Gauge);
  perResource('podflow_kube_cache_objects', 'Objects in the cache now.', (st) => st.objects, Gauge);
  perResource('podflow_kube_cache_events_total', 'Add, update and delete events applied to the cache.', (st) => st.events, Counter);
  perResource('podflow_kube_cache_errors_total', 'Errors that stopped the informer (each followed by a restart).', (st) => st.errors, Counter);
  perResource('podflow_kube_cache_restarts_total', 'Informers started again after an error.', (st) => st.restarts, Counter);
  perResource('podflow_kube_cache_bad_objects_total', 'Listed objects skipped because their JSON was malformed.', (st) => st.badObjects, Counter);
  perResource('podflow_kube_cache_relists_total', 'Lists after the first one (each follows a 410 Gone: the watch version had expired).', (st) => st.relists, Counter);
  const leases = () => s.naming().leases;
  scraped(Counter, r, 'podflow_lease_lookups_total', "IP lease lookups, by outcome: the remote end of every flow, and the observed end of a flow whose namespace is not tied to a pod.", ['outcome'], (set) => {
    for (const [outcome, v] of Object.entries(s.naming().leases.lookups)) set({ outcome }, v);
  });
  scraped(Counter, r, 'podflow_lease_lookups_ambiguous_total', 'Lease lookups where leases of more than one holder matched (the one that started last answered).', [], (set) => set({}, s.naming().leases.lookupsAmbiguous));
  scraped(Counter, r, 'podflow_lease_pods_ended_early_total', "Terminating pods whose leases ended before their delete event: their address left their namespace on this node, or the namespace went.", [], (set) => set({}, leases().podsEndedEarly));
  scraped(Counter, r, 'podflow_lease_superseded_total', 'Open leases closed because another holder of the same kind claimed the address.', [], (set) => set({}, s.naming().leases.superseded));
  scraped(Counter, r, 'podflow_lease_stale_claims_ignored_total', 'Claims of an address ignored because its holder had lost it to another (stale status).', [], (set) => set({}, s.naming().leases.staleClaimsIgnored));
  byLabel(r, Counter, 'podflow_lease_closed_dropped_total', "Closed leases dropped: after their grace period (expired), or before it by the bound on closed leases (evicted: late flows of that address are then named by its next holder or 'unknown').", 'reason', () => ({
    expired: leases().closedExpired,
    evicted: leases().closedEvicted,
  }));
  byLabel(r, Counter, 'podflow_lease_event_anomalies_total', 'Watch events out of the usual order (applied anyway) and addresses that do not parse (skipped), by kind.', 'kind', () => {
    const l = leases();
    return { update_for_unknown: l.updatesForUnknown, add_for_known: l.addsForKnown, delete_for_unknown: l.deletesForUnknown, invalid_address: l.invalidAddresses };
  });
  byLabel(r, Counter, 'podflow_namespace_pod_ties_total', "Namespaces tied to their pod, by how: the pod UID in a cgroup path, or the namespace's addresses.", 'via', () => ({
    cgroup: s.naming().namespaces.byCgroup,
    address: s.naming().namespaces.byAddress,
  }));
  scraped(Counter, r, 'podflow_namespace_pod_untied_total', 'Ties by address undone: the pod terminated, finished or was deleted, or another pod claimed the address (the namespace is tied again to a single live holder, if any).', [], (set) => set({}, s.naming().namespaces.untied));
  scraped(Counter, r, 'podflow_namespace_pod_ambiguous_total', "Times a namespace's addresses matched more than one live pod of this node (tied to none then).", [], (set) => set({}, s.naming().namespaces.ambiguous));
  scraped(Counter, r, 'podflow_namespace_read_errors_total', "Reads of a namespace's processes or interfaces that failed (gone, or no permission).", [], (set) => set({}, s.naming().namespaces.readErrors));
  scraped(Gauge, r, 'podflow_namespaces_untied', 'Attached namespaces tied to no pod now (their flows are held).', [], (set) => set({}, s.naming().namespaces.pending));
  byLabel(r, Gauge, 'podflow_leases', 'IP leases in the lease table, by state.', 'state', () => ({ open: leases().open, closed: leases().closed }));
  scraped(Counter, r, 'podflow_enriched_flows_total', 'Flows named with identity and handed to export.', [], (set) => set({ }, s.naming().enricher.enriched));
  scraped(Gauge, r, 'podflow_enrich_held_flows', "Flows held now, to be named once the caches have synced and their namespace is tied to a pod with an address known.", [], (set) => set({}, s.naming().enricher.heldNow));
  scraped(Counter, r, 'podflow_enrich_held_total', "Flows held: finished before the caches' first sync, or in a namespace tied to no pod (or with no address known) yet.", [], (set) => set({}, s.naming().enricher.held));
  const enricher = () => s.naming().enricher;
  byLabel(r, Counter, 'podflow_enrich_hold_releases_total', "Held flows named, by why: what they waited for came (named), or with what was known because they were held their longest or the agent stopped (expired), too many were held (overflow), or their namespace went untied (namespace_gone).", 'reason', () => ({
    named: enricher().released,
    expired: enricher().expiredHeld,
    overflow: enricher().overflowHeld,
    namespace_gone: enricher().releasedGone,
  }));
  byLabel(r, Counter, 'podflow_enrich_observed_fallbacks_total', "Flows whose observed namespace was not tied to a pod: its end named by the lease of its address (by_address), or left unknown.", 'outcome', () => ({
    by_address: enricher().observedByAddress,
    unknown: enricher().observedUnknown,
  }));
  scraped(Counter, r, 'podflow_enrich_unknown_point_total', 'Flows of an observation point never registered: observed end unknown.', [], (set) => set({}, s.naming().enricher.unknownPoint));
  scraped(Counter, r, 'podflow_enrich_direction_guessed_total', "Flows whose direction was guessed (ingress): none of the observed pod's addresses was known.", [], (set) => set({}, s.naming().enricher.directionGuessed));
  scraped(Counter, r, 'podflow_workload_traffic_bytes_total', `IP bytes of exported flows by the observed pod's namespace, workload and direction (observed end unknown: "${UNKNOWN_WORKLOAD}"; at most the configured series, the rest under "${OTHER_WORKLOAD}").`, ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic().series) set({ namespace: x.namespace, workload: x.workload, direction: x.direction }, x.bytes);
  });
  scraped(Counter, r, 'podflow_workload_traffic_packets_total', "Packets of exported flows by the observed pod's namespace, workload and direction.", ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic().series) set({ namespace: x.namespace, workload: x.workload, direction: x.direction }, x.packets);
  });
  const workloadLabels = (x: WorkloadSeries) => ({ namespace: x.namespace, workload: x.workload, direction: x.direction });
  scraped(Counter, r, 'podflow_workload_tcp_segments_total', "TCP segments with sequence space (payload, SYN or FIN), both ways, of exported flows by the observed pod's namespace, workload and direction (features.tcp; docs/tcp.md).", ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic().series) set(workloadLabels(x), x.tcpSegments);
  });
  scraped(Counter, r, 'podflow_workload_tcp_retransmitted_segments_total', "Of podflow_workload_tcp_segments_total, those that repeated sequence space the pod's interface had seen sent: the retransmission ratio is the rate of this over that.", ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic().series) set(workloadLabels(x), x.tcpRetransmittedSegments);
  });
  scraped(Counter, r, 'podflow_workload_tcp_resets_total', "TCP RST segments, both ways, of exported flows by the observed pod's namespace, workload and direction.", ['namespace', 'workload', 'direction'], (set) => {
    for (const x of s.traffic().series) set(workloadLabels(x), x.tcpResets);
  });
  histogram(r, 'podflow_workload_tcp_handshake_seconds', "TCP handshakes seen whole at the pod's interface (SYN to SYN/ACK plus SYN/ACK to ACK: the round trip beyond the pod, and the pod's own stack), by the observed pod's namespace, workload and direction (egress: the pod connected; ingress: it accepted).", HANDSHAKE_BUCKETS_SECONDS, () =>
    s.traffic().series.map((x) => ({ labels: workloadLabels(x), buckets: x.tcpHandshakeBuckets, sum: x.tcpHandshakeSeconds, count: x.tcpHandshakes })),
  );
  scraped(Counter, r, 'podflow_workload_dns_responses_total', "DNS responses in exported flows by the observed pod's namespace, workload and direction, and RCODE (NOERROR, NXDOMAIN, SERVFAIL, ...): egress for a client's queries, ingress for a server's answers.", ['namespace', 'workload', 'direction', 'rcode'], (set) => {
    for (const x of s.traffic().series) {
      x.dnsResponses.forEach((v, rcode) => {
        if (v > 0) set({ ...workloadLabels(x), rcode: DnsRcodeName[rcode] ?? String(rcode) }, v);
      });
    }
  });
  histogram(r, 'podflow_workload_dns_latency_seconds', "DNS query-to-response time at the observation point, by the observed pod's namespace, workload and direction: a client's wait (egress) or a server's answer time (ingress).", DNS_LATENCY_BUCKETS_SECONDS, () =>
    s.traffic().series.filter((x) => x.dnsLatencies > 0).map((x) => ({ labels: workloadLabels(x), buckets: x.dnsLatencyBuckets, sum: x.dnsLatencySeconds, count: x.dnsLatencies })),
  );
  scraped(Counter, r, 'podflow_workload_traffic_overflow_total', `Exported records counted under workload "${OTHER_WORKLOAD}" because metrics.maxWorkloadSeries series existed.`, [], (set) => set({}, s.traffic().overflowed));
  return r;
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
