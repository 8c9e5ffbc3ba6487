// What the collector sends the page (agent/web/server.ts → web/main.ts): one
// Snapshot per server-sent event, shaped by the page's ViewQuery (the query
// string of its event stream). Types only: both sides import it.

export const DIMENSIONS = ['node', 'namespace', 'workload'] as const;
/** What the traffic chart stacks by: the node, namespace or workload of the pod the traffic was captured at. */
export type Dimension = (typeof DIMENSIONS)[number];
export const METRICS = ['bytes', 'packets'] as const;
export type Metric = (typeof METRICS)[number];

/** Filters of the flow table; a flow matches when either end matches each non-empty one. */
export interface FlowFilter {
  namespace: string;
  /** "namespace/Kind/name", as the map's workload ids without their prefix. */
  workload: string;
  /** Part of a pod name. */
  pod: string;
  /** Protocol name (TCP, UDP, ICMP, ...) or number. */
  protocol: string;
  /** A transport port of either end. */
  port: string;
  /** Words that must all appear somewhere in the row (names, addresses, labels, per-flow fields). */
  text: string;
}

export const FILTER_KEYS = ['namespace', 'workload', 'pod', 'protocol', 'port', 'text'] as const satisfies ReadonlyArray<keyof FlowFilter>;

export interface ViewQuery {
  dimension: Dimension;
  metric: Metric;
  filter: FlowFilter;
  /** A map entity whose details the page shows; '' for none. */
  selected: string;
}

export interface Snapshot {
  /** The collector's clock when this was made (ms since the epoch). */
  now: number;
  stepMs: number;
  windowMs: number;
  stats: ViewStats;
  chart: Chart;
  map: ServiceMap;
  /** The selected entity's details, when it is still on the map. */
  details: EntityDetails | undefined;
  flows: { rows: FlowRowView[]; matched: number; held: number };
  /** Values the filters can take, from the flows held. */
  choices: { namespaces: string[]; workloads: string[]; protocols: string[] };
}

export interface ViewStats {
  sessions: number;
  messages: number;
  flowRecords: number;
  badMessages: number;
  /** Everything the view let go of by its bounds, by what: non-zero means the picture is partial. */
  dropped: Record<string, number>;
}

export interface Chart {
  dimension: Dimension;
  metric: Metric;
  /** Start (ms) of the first point; points are stepMs apart. */
  start: number;
  /** The busiest series of the window first, per second; the rest summed as one series with key ''. */
  series: Array<{ key: string; values: number[] }>;
}

/** 'other': the entities over the window's limit, folded into one. */
export type EntityKind = 'workload' | 'service' | 'node' | 'external' | 'unknown' | 'other';

/** A box on the map: a workload (pods without an owner: each pod), a Service, a node, or the outside. */
export interface MapEntity {
  id: string;
  kind: EntityKind;
  /** '' for nodes, external and unknown. */
  namespace: string;
  name: string;
  /** Deployment, StatefulSet, ... for a workload; '' otherwise. */
  workloadKind: string;
  bytesPerSecond: number;
}

/** A conversation between two entities, from client to server (a Service stands in front of the workloads it was seen to lead to). */
export interface MapEdge {
  from: string;
  to: string;
  bytesPerSecond: number;
  packetsPerSecond: number;
  /** Over the window. */
  bytes: number;
  packets: number;
  flows: number;
}

export interface ServiceMap {
  entities: MapEntity[];
  edges: MapEdge[];
  /** Quieter edges left off the map to keep it readable. */
  hiddenEdges: number;
}

/** Per-flow performance fields, summed where the records carry them (they are optional). */
export interface Perf {
  /** Round-trip times in milliseconds. */
  rttMs?: { mean: number; max: number; samples: number };
  retransmissions?: number;
  dnsResponses?: number;
  /** DNS responses with a response code other than NOERROR. */
  dnsErrors?: number;
}

export interface Conversation {
  peerId: string;
  peer: string;
  /** 'out': this entity is the client; 'in': the peer is. */
  direction: 'out' | 'in';
  bytesPerSecond: number;
  bytes: number;
  packets: number;
  flows: number;
  perf: Perf;
}

export interface EntityDetails {
  entity: MapEntity;
  conversations: Conversation[];
  /** The entity's own pods (or addresses, for the outside) by bytes over the window. */
  topTalkers: Array<{ name: string; bytes: number }>;
  perf: Perf;
}

export interface EndView {
  type: string;
  /** "namespace/pod", "namespace/service:port", the node, or the address. */
  name: string;
  workload: string;
  namespace: string;
  address: string;
  labels: string;
}

export interface FlowRowView {
  id: number;
  /** flowEndMilliseconds, or when the record arrived. */
  end: number;
  source: EndView;
  destination: EndView;
  protocol: string;
  sourcePort: number;
  destinationPort: number;
  packets: number;
  bytes: number;
  reversePackets: number;
  reverseBytes: number;
  /** The node of the observed pod. */
  node: string;
  perf: { rttMs?: number; retransmissions?: number; dnsResponses?: number; dnsErrors?: number };
  /** Fields the record carries beyond the identity and counts (per-flow features), as [name, value]. */
  extra: Array<[string, string]>;
}
