// The collector's memory for the browser view: the last windowMs of flow
// records in stepMs buckets (15 minutes at 10 s by default), kept as
//   - traffic series by the observed pod's node, namespace and workload,
//   - the service map: entities (workloads, Services, nodes, the outside) and
//     the conversations between them,
//   - the newest flows as table rows,
// each with a fixed bound, whatever the number of flows or conversations: what
// does not fit is folded into "other" (series, entities) or left out (edges)
// and counted in `dropped`. Pure: records and the clock's time in, Snapshots
// (web/protocol.ts) out; agent/web/server.ts does the I/O.
//
// Bytes of a flow are spread over the buckets between its start and end (an
// active-timeout record of a steady flow is steady on the chart, not a spike
// every 5 minutes). A conversation between two monitored pods is captured at
// both ends; its edge takes, per bucket, the larger of what was seen at the
// client and at the server, so it is neither doubled nor lost when only one
// end is monitored. The chart counts what was captured at each node's pods,
// both ends included, as the agents see it.
import { protocolName } from '../../flow/decode.ts';
import type { CollectedRecord } from '../../ipfix/collector.ts';
import type {
  Chart,
  Conversation,
  Dimension,
  EndView,
  EntityDetails,
  FlowFilter,
  FlowRowView,
  MapEdge,
  MapEntity,
  Perf,
  ServiceMap,
  Snapshot,
  ViewQuery,
  ViewStats,
} from '../../web/protocol.ts';
import { DIMENSIONS } from '../../web/protocol.ts';
import { endName, type Fields, type FlowEnd, flowEnd, flowFeatures, type FlowPerf, num, observedSide } from '../flow-fields.ts';

export interface FlowWindowOptions {
  /** Bucket width; default 10 s. */
  stepMs?: number;
  /** How far back the window reaches; default 15 minutes. */
  windowMs?: number;
  /** Milliseconds since the epoch; default Date.now. */
  now?: () => number;
}

/** The bounds: each is the most the window holds of its kind. */
export const LIMITS = {
  /** Series per chart dimension; more are summed into one series "other". */
  series: 64,
  /** Series drawn; the quieter rest is drawn as one. */
  chartSeries: 12,
  /** Map entities; more are folded into one entity "other". */
  entities: 2_000,
  /** Conversations between entities; flows of more are left off the map (their bytes still on the chart). */
  edges: 2_000,
  /** Edges drawn; the quieter rest is counted as hidden. */
  mapEdges: 80,
  /** Flows the table holds (the newest) and sends (the newest that match). */
  rows: 2_000,
  rowsSent: 200,
  /** Clients of a Service remembered to tie the Service to the workload behind it. */
  serviceLinks: 4_096,
  conversations: 30,
  topTalkers: 10,
} as const;

/** Edges' per-bucket values: bytes and packets seen at the client and at the server, flows. */
const EDGE_FIELDS = 5;
const [BYTES_AT_CLIENT, BYTES_AT_SERVER, PACKETS_AT_CLIENT, PACKETS_AT_SERVER, FLOWS] = [0, 1, 2, 3, 4];
/** Per-bucket performance sums of an edge, made when its first record with such fields arrives. */
const PERF_FIELDS = 6;
const [RTT_SUM, RTT_COUNT, RTT_MAX, RETRANSMISSIONS, DNS_RESPONSES, DNS_ERRORS] = [0, 1, 2, 3, 4, 5];
/** Rates (map edges, entities) are over the last minute, not the whole window. */
const RATE_SPAN_MS = 60_000;

const OTHER_ENTITY: MapEntity = { id: 'o:', kind: 'other', namespace: '', name: 'other (over the limit)', workloadKind: '', bytesPerSecond: 0 };

interface Edge {
  from: string;
  to: string;
  values: Float64Array;
  perf: Float64Array | undefined;
}

interface Row {
  view: FlowRowView;
  /** Entity ids of both ends, for the workload filter. */
  entities: [string, string];
  /** Lower-case text of the row, for the text filter: made when first asked for (most rows are never searched). */
  text: string | undefined;
}

type DropReason = 'late' | 'series' | 'entities' | 'edges';

/** A server's record of a flow whose client's record has not come yet: its edge's ends and what it added, per bucket. */
interface UnlinkedServerRecord {
  client: string;
  server: string;
  spans: Array<[index: number, bytes: number, packets: number]>;
  lastIndex: number;
  perf: FlowPerf;
}

export class FlowWindow {
  readonly stepMs: number;
  readonly windowMs: number;
  readonly #now: () => number;
  readonly #buckets: number;
  /** Index (time / stepMs) of the newest bucket. */
  #head: number;
  readonly #series = new Map<Dimension, Map<string, Float64Array>>(DIMENSIONS.map((d) => [d, new Map()]));
  readonly #entities = new Map<string, Omit<MapEntity, 'bytesPerSecond'>>();
  readonly #edges = new Map<string, Edge>();
  /** "clientAddress|clientPort|protocol" → the Service a client reached, oldest first. */
  readonly #serviceLinks = new Map<string, string>();
  /**
   * Servers' records that arrived before their client's record said a Service
   * was meant (the two ends' agents export independently), by the same key:
   * what each put on the client → server edge, moved to the Service → server
   * edge when the client's record comes. Oldest first, bounded like the links.
   */
  readonly #unlinkedServerRecords = new Map<string, UnlinkedServerRecord>();
  readonly #rows: Row[] = [];
  #nextRow = 0;
  #rowId = 0;
  readonly #dropped: Record<DropReason, number> = { late: 0, series: 0, entities: 0, edges: 0 };

  constructor(options: FlowWindowOptions = {}) {
    this.stepMs = options.stepMs ?? 10_000;
    this.windowMs = options.windowMs ?? 15 * 60_000;
    this.#now = options.now ?? Date.now;
    this.#buckets = Math.ceil(this.windowMs / this.stepMs);
    this.#head = Math.floor(this.#now() / this.stepMs);
  }

  add(record: CollectedRecord): void {
    const now = this.#now();
    this.#advance(now);
    const f = record.fields;
    const source = flowEnd(f, 'source');
    const destination = flowEnd(f, 'destination');
    const observedAt = observedSide(f);
    const observed = observedAt === 'source' ? source : destination;
    const end = Math.min(num(f.flowEndMilliseconds) || now, now);
    const start = Math.min(num(f.flowStartMilliseconds) || end, end);
    const bytes = num(f.octetDeltaCount) + num(f.reverseOctetDeltaCount);
    const packets = num(f.packetDeltaCount) + num(f.reversePacketDeltaCount);
    const spans = this.#spans(start, end);
    const { extra, perf } = flowFeatures(f);

    this.#addRow(f, source, destination, observed, end, extra, perf);
    if (spans.length === 0) {
      this.#dropped.late++;
      return;
    }
    for (const dimension of DIMENSIONS) {
      const series = this.#seriesFor(dimension, dimensionKey(dimension, observed));
      for (const [index, share] of spans) {
        const slot = this.#slot(index);
        series[slot * 2]! += bytes * share;
        series[slot * 2 + 1]! += packets * share;
      }
    }

    const client = this.#entity(source);
    const server = this.#entity(destination);
    const linkKey = `${source.address}|${num(f.sourceTransportPort)}|${num(f.protocolIdentifier)}`;
    if (destination.type === 'service') {
      this.#rememberService(linkKey, server);
      this.#linkServerRecord(linkKey, server);
    }
    // A server's own record of a flow a client sent to a Service: the Service leads to this workload.
    const service = observedAt === 'destination' && destination.type === 'pod' ? this.#serviceLinks.get(linkKey) : undefined;
    const edge = this.#edge(service ?? client, server);
    if (!edge) {
      this.#dropped.edges++;
      return;
    }
    const atClient = observedAt === 'source' && service === undefined;
    for (const [index, share] of spans) {
      const o = this.#slot(index) * EDGE_FIELDS;
      edge.values[o + (atClient ? BYTES_AT_CLIENT : BYTES_AT_SERVER)]! += bytes * share;
      edge.values[o + (atClient ? PACKETS_AT_CLIENT : PACKETS_AT_SERVER)]! += packets * share;
    }
    const lastIndex = spans[spans.length - 1]![0];
    const last = this.#slot(lastIndex);
    edge.values[last * EDGE_FIELDS + FLOWS]!++;
    this.#addPerf(edge, last, perf, 1);
    if (observedAt === 'destination' && destination.type === 'pod' && service === undefined) {
      this.#rememberServerRecord(linkKey, { client, server, spans: spans.map(([index, share]) => [index, bytes * share, packets * share]), lastIndex, perf });
    }
  }

  /** Adds (sign 1) or takes back (sign -1) a record's performance fields in one bucket of an edge; a maximum is not taken back. */
  #addPerf(edge: Edge, slot: number, perf: FlowPerf, sign: 1 | -1): void {
    if (perf.rttMs === undefined && perf.retransmissions === undefined && perf.dnsResponses === undefined) return;
    edge.perf ??= new Float64Array(this.#buckets * PERF_FIELDS);
    const o = slot * PERF_FIELDS;
    if (perf.rttMs !== undefined) {
      edge.perf[o + RTT_SUM]! += sign * perf.rttMs;
      edge.perf[o + RTT_COUNT]! += sign;
      if (sign > 0) edge.perf[o + RTT_MAX] = Math.max(edge.perf[o + RTT_MAX]!, perf.rttMs);
    }
    edge.perf[o + RETRANSMISSIONS]! += sign * (perf.retransmissions ?? 0);
    edge.perf[o + DNS_RESPONSES]! += sign * (perf.dnsResponses ?? 0);
    edge.perf[o + DNS_ERRORS]! += sign * (perf.dnsErrors ?? 0);
  }

  /** What one page asked for, as of now. */
  snapshot(query: ViewQuery, stats: Omit<ViewStats, 'dropped'>): Snapshot {
    const now = this.#now();
    this.#advance(now);
    const edges = this.#edgeTotals(now);
    const entityRates = new Map<string, number>();
    for (const e of edges) {
      entityRates.set(e.from, (entityRates.get(e.from) ?? 0) + e.bytesPerSecond);
      entityRates.set(e.to, (entityRates.get(e.to) ?? 0) + e.bytesPerSecond);
    }
    const entity = (id: string): MapEntity => ({ ...(this.#entities.get(id) ?? OTHER_ENTITY), bytesPerSecond: entityRates.get(id) ?? 0 });
    return {
      now,
      stepMs: this.stepMs,
      windowMs: this.windowMs,
      stats: { ...stats, dropped: { ...this.#dropped } },
      chart: this.#chart(query),
      map: this.#map(edges, entity),
      details: query.selected !== '' && entityRates.has(query.selected) ? this.#details(query.selected, edges, entity) : undefined,
      flows: this.#flows(query.filter),
      choices: this.#choices(),
    };
  }

  /** Buckets (their index: time / stepMs) and the share of a flow's bytes each gets: by the overlap of [start, end] with the bucket, within the window. */
  #spans(start: number, end: number): Array<[index: number, share: number]> {
    const first = Math.max(Math.floor(start / this.stepMs), this.#head - this.#buckets + 1);
    const last = Math.floor(end / this.stepMs);
    if (last < first) return [];
    if (end <= start) return [[last, 1]];
    const spans: Array<[number, number]> = [];
    for (let i = first; i <= last; i++) {
      const overlap = Math.min(end, (i + 1) * this.stepMs) - Math.max(start, i * this.stepMs);
      if (overlap > 0) spans.push([i, overlap / (end - start)]);
    }
    return spans;
  }

  #slot(index: number): number {
    return ((index % this.#buckets) + this.#buckets) % this.#buckets;
  }

  /** Moves the newest bucket to now: the buckets that fall out of the window are emptied, and what no longer has traffic is let go. */
  #advance(now: number): void {
    const head = Math.floor(now / this.stepMs);
    if (head <= this.#head) return;
    const steps = Math.min(head - this.#head, this.#buckets);
    const clear = (values: Float64Array, width: number) => {
      for (let i = 1; i <= steps; i++) values.fill(0, this.#slot(this.#head + i) * width, (this.#slot(this.#head + i) + 1) * width);
    };
    for (const byKey of this.#series.values()) {
      for (const [key, values] of byKey) {
        clear(values, 2);
        if (values.every((v) => v === 0)) byKey.delete(key);
      }
    }
    for (const [key, edge] of this.#edges) {
      clear(edge.values, EDGE_FIELDS);
      if (edge.perf) clear(edge.perf, PERF_FIELDS);
      if (edge.values.every((v) => v === 0)) this.#edges.delete(key);
    }
    const used = new Set<string>();
    for (const edge of this.#edges.values()) used.add(edge.from).add(edge.to);
    for (const id of this.#entities.keys()) if (!used.has(id)) this.#entities.delete(id);
    this.#head = head;
  }

  #seriesFor(dimension: Dimension, key: string): Float64Array {
    const byKey = this.#series.get(dimension)!;
    let values = byKey.get(key);
    if (values) return values;
    if (byKey.size >= LIMITS.series - 1 && key !== '') {
      this.#dropped.series++;
      return this.#seriesFor(dimension, '');
    }
    values = new Float64Array(this.#buckets * 2);
    byKey.set(key, values);
    return values;
  }

  #entity(end: FlowEnd): string {
    const e = entityOf(end);
    if (this.#entities.has(e.id)) return e.id;
    if (this.#entities.size >= LIMITS.entities) {
      this.#dropped.entities++;
      return OTHER_ENTITY.id;
    }
    this.#entities.set(e.id, e);
    return e.id;
  }

  #rememberService(key: string, service: string): void {
    this.#serviceLinks.delete(key);
    if (this.#serviceLinks.size >= LIMITS.serviceLinks) this.#serviceLinks.delete(this.#serviceLinks.keys().next().value!);
    this.#serviceLinks.set(key, service);
  }

  #rememberServerRecord(key: string, record: UnlinkedServerRecord): void {
    this.#unlinkedServerRecords.delete(key);
    if (this.#unlinkedServerRecords.size >= LIMITS.serviceLinks) this.#unlinkedServerRecords.delete(this.#unlinkedServerRecords.keys().next().value!);
    this.#unlinkedServerRecords.set(key, record);
  }

  /** A client's record names the Service it reached: a server's earlier record of the same flow moves to the Service → server edge. */
  #linkServerRecord(key: string, service: string): void {
    const record = this.#unlinkedServerRecords.get(key);
    if (!record) return;
    this.#unlinkedServerRecords.delete(key);
    // Buckets that left the window since were emptied: nothing of them to move.
    const inWindow = ([index]: [number, number, number]) => index > this.#head - this.#buckets;
    const from = this.#edges.get(`${record.client}\n${record.server}`);
    const to = this.#edge(service, record.server);
    if (!to) {
      this.#dropped.edges++;
      return;
    }
    for (const [index, bytes, packets] of record.spans.filter(inWindow)) {
      const o = this.#slot(index) * EDGE_FIELDS;
      to.values[o + BYTES_AT_SERVER]! += bytes;
      to.values[o + PACKETS_AT_SERVER]! += packets;
      if (from) {
        from.values[o + BYTES_AT_SERVER] = Math.max(0, from.values[o + BYTES_AT_SERVER]! - bytes);
        from.values[o + PACKETS_AT_SERVER] = Math.max(0, from.values[o + PACKETS_AT_SERVER]! - packets);
      }
    }
    if (record.lastIndex > this.#head - this.#buckets) {
      const last = this.#slot(record.lastIndex);
      to.values[last * EDGE_FIELDS + FLOWS]!++;
      this.#addPerf(to, last, record.perf, 1);
      if (from) {
        from.values[last * EDGE_FIELDS + FLOWS] = Math.max(0, from.values[last * EDGE_FIELDS + FLOWS]! - 1);
        this.#addPerf(from, last, record.perf, -1);
      }
    }
    if (from && from.values.every((v) => v === 0)) this.#edges.delete(`${record.client}\n${record.server}`);
  }

  #edge(from: string, to: string): Edge | undefined {
    const key = `${from}\n${to}`;
    let edge = this.#edges.get(key);
    if (edge) return edge;
    if (this.#edges.size >= LIMITS.edges) return undefined;
    edge = { from, to, values: new Float64Array(this.#buckets * EDGE_FIELDS), perf: undefined };
    this.#edges.set(key, edge);
    return edge;
  }

  #addRow(f: Fields, source: FlowEnd, destination: FlowEnd, observed: FlowEnd, end: number, extra: Array<[string, string]>, perf: FlowPerf): void {
    const view: FlowRowView = {
      id: this.#rowId++,
      end,
      source: endView(source),
      destination: endView(destination),
      protocol: protocolName(num(f.protocolIdentifier)),
      sourcePort: num(f.sourceTransportPort),
      destinationPort: num(f.destinationTransportPort),
      packets: num(f.packetDeltaCount),
      bytes: num(f.octetDeltaCount),
      reversePackets: num(f.reversePacketDeltaCount),
      reverseBytes: num(f.reverseOctetDeltaCount),
      node: observed.nodeName,
      perf,
      extra,
    };
    const row: Row = { view, entities: [entityOf(source).id, entityOf(destination).id], text: undefined };
    if (this.#rows.length < LIMITS.rows) this.#rows.push(row);
    else this.#rows[this.#nextRow] = row;
    this.#nextRow = (this.#nextRow + 1) % LIMITS.rows;
  }

  /** Every edge with its totals over the window and its rate over the last minute. */
  #edgeTotals(now: number): Array<MapEdge & { perf: Perf }> {
    const rateBuckets = Math.min(this.#buckets, Math.ceil(RATE_SPAN_MS / this.stepMs));
    const rateSeconds = (now - (this.#head - rateBuckets + 1) * this.stepMs) / 1000;
    const totals: Array<MapEdge & { perf: Perf }> = [];
    for (const edge of this.#edges.values()) {
      let bytes = 0;
      let packets = 0;
      let flows = 0;
      let recentBytes = 0;
      let recentPackets = 0;
      for (let age = 0; age < this.#buckets; age++) {
        const o = this.#slot(this.#head - age) * EDGE_FIELDS;
        const b = Math.max(edge.values[o + BYTES_AT_CLIENT]!, edge.values[o + BYTES_AT_SERVER]!);
        const p = Math.max(edge.values[o + PACKETS_AT_CLIENT]!, edge.values[o + PACKETS_AT_SERVER]!);
        bytes += b;
        packets += p;
        flows += edge.values[o + FLOWS]!;
        if (age < rateBuckets) {
          recentBytes += b;
          recentPackets += p;
        }
      }
      if (bytes === 0 && flows === 0) continue;
      totals.push({
        from: edge.from,
        to: edge.to,
        bytes,
        flows,
        packets,
        bytesPerSecond: recentBytes / rateSeconds,
        packetsPerSecond: recentPackets / rateSeconds,
        perf: edge.perf ? this.#perf(edge.perf) : {},
      });
    }
    return totals.sort((a, b) => b.bytes - a.bytes);
  }

  #perf(values: Float64Array): Perf {
    const sum = [0, 0, 0, 0, 0, 0];
    for (let slot = 0; slot < this.#buckets; slot++) {
      for (let i = 0; i < PERF_FIELDS; i++) {
        const v = values[slot * PERF_FIELDS + i]!;
        sum[i] = i === RTT_MAX ? Math.max(sum[i]!, v) : sum[i]! + v;
      }
    }
    const perf: Perf = {};
    if (sum[RTT_COUNT]! > 0) perf.rttMs = { mean: sum[RTT_SUM]! / sum[RTT_COUNT]!, max: sum[RTT_MAX]!, samples: sum[RTT_COUNT]! };
    if (sum[RETRANSMISSIONS]! > 0) perf.retransmissions = sum[RETRANSMISSIONS]!;
    if (sum[DNS_RESPONSES]! > 0) {
      perf.dnsResponses = sum[DNS_RESPONSES]!;
      perf.dnsErrors = sum[DNS_ERRORS]!;
    }
    return perf;
  }

  #chart(query: ViewQuery): Chart {
    const field = query.metric === 'bytes' ? 0 : 1;
    const perSecond = 1000 / this.stepMs;
    const all = [...this.#series.get(query.dimension)!].map(([key, values]) => {
      const points: number[] = [];
      for (let age = this.#buckets - 1; age >= 0; age--) points.push(values[this.#slot(this.#head - age) * 2 + field]! * perSecond);
      return { key, values: points, total: points.reduce((a, b) => a + b, 0) };
    });
    all.sort((a, b) => (a.key === '' ? 1 : b.key === '' ? -1 : b.total - a.total));
    const shown = all.slice(0, LIMITS.chartSeries - 1).filter((s) => s.key !== '');
    const rest = all.filter((s) => !shown.includes(s));
    const series = shown.map(({ key, values }) => ({ key, values }));
    if (rest.length > 0) series.push({ key: '', values: rest[0]!.values.map((_, i) => rest.reduce((n, s) => n + s.values[i]!, 0)) });
    return { dimension: query.dimension, metric: query.metric, start: (this.#head - this.#buckets + 1) * this.stepMs, series };
  }

  #map(edges: Array<MapEdge & { perf: Perf }>, entity: (id: string) => MapEntity): ServiceMap {
    const shown = edges.slice(0, LIMITS.mapEdges);
    const ids = new Set<string>();
    for (const e of shown) ids.add(e.from).add(e.to);
    return {
      entities: [...ids].map(entity),
      edges: shown.map(({ perf: _, ...edge }) => edge),
      hiddenEdges: edges.length - shown.length,
    };
  }

  #details(id: string, edges: Array<MapEdge & { perf: Perf }>, entity: (id: string) => MapEntity): EntityDetails {
    const mine = edges.filter((e) => e.from === id || e.to === id);
    const conversations: Conversation[] = mine.slice(0, LIMITS.conversations).map((e) => {
      const out = e.from === id;
      const peer = entity(out ? e.to : e.from);
      return {
        peerId: peer.id,
        peer: entityLabel(peer),
        direction: out ? 'out' : 'in',
        bytesPerSecond: e.bytesPerSecond,
        bytes: e.bytes,
        packets: e.packets,
        flows: e.flows,
        perf: e.perf,
      };
    });
    const talkers = new Map<string, number>();
    for (const row of this.#rows) {
      row.entities.forEach((entityId, i) => {
        if (entityId !== id) return;
        const end = i === 0 ? row.view.source : row.view.destination;
        const bytes = row.view.bytes + row.view.reverseBytes;
        talkers.set(end.name, (talkers.get(end.name) ?? 0) + bytes);
      });
    }
    return {
      entity: entity(id),
      conversations,
      topTalkers: [...talkers].sort((a, b) => b[1] - a[1]).slice(0, LIMITS.topTalkers).map(([name, bytes]) => ({ name, bytes })),
      perf: mergePerf(mine.map((e) => e.perf)),
    };
  }

  #flows(filter: FlowFilter): Snapshot['flows'] {
    const matches = compileFilter(filter);
    const rows: FlowRowView[] = [];
    let matched = 0;
    // Newest first: the ring's newest is just before #nextRow.
    for (let i = 1; i <= this.#rows.length; i++) {
      const row = this.#rows[(this.#nextRow - i + this.#rows.length * 2) % this.#rows.length]!;
      if (!matches(row)) continue;
      matched++;
      if (rows.length < LIMITS.rowsSent) rows.push(row.view);
    }
    return { rows, matched, held: this.#rows.length };
  }

  #choices(): Snapshot['choices'] {
    const namespaces = new Set<string>();
    const workloads = new Set<string>();
    const protocols = new Set<string>();
    for (const e of this.#entities.values()) {
      if (e.namespace) namespaces.add(e.namespace);
      if (e.kind === 'workload') workloads.add(e.id.slice(2));
    }
    for (const row of this.#rows) protocols.add(row.view.protocol);
    const sorted = (s: Set<string>) => [...s].sort();
    return { namespaces: sorted(namespaces), workloads: sorted(workloads), protocols: sorted(protocols) };
  }
}

/** The map entity an end belongs to. */
function entityOf(end: FlowEnd): Omit<MapEntity, 'bytesPerSecond'> {
  switch (end.type) {
    case 'pod': {
      const [kind, name] = end.workload ? splitOnce(end.workload, '/') : ['Pod', end.podName];
      return { id: `w:${end.namespace}/${kind}/${name}`, kind: 'workload', namespace: end.namespace, name, workloadKind: kind };
    }
    case 'service':
      return { id: `s:${end.namespace}/${end.serviceName}`, kind: 'service', namespace: end.namespace, name: end.serviceName, workloadKind: '' };
    case 'node':
      return { id: `n:${end.nodeName}`, kind: 'node', namespace: '', name: end.nodeName, workloadKind: '' };
    case 'external':
      return { id: 'x:', kind: 'external', namespace: '', name: 'outside the cluster', workloadKind: '' };
    default:
      return { id: 'u:', kind: 'unknown', namespace: '', name: 'unknown', workloadKind: '' };
  }
}

/** "data/db (StatefulSet)", "data/db (Service)", "node-a (node)": a Service and its workload often share a name. */
function entityLabel(e: MapEntity): string {
  return `${e.namespace ? `${e.namespace}/${e.name}` : e.name} (${e.workloadKind || e.kind})`;
}

function splitOnce(s: string, separator: string): [string, string] {
  const i = s.indexOf(separator);
  return [s.slice(0, i), s.slice(i + 1)];
}

function dimensionKey(dimension: Dimension, observed: FlowEnd): string {
  switch (dimension) {
    case 'node':
      return observed.nodeName || '(no node)';
    case 'namespace':
      return observed.namespace || '(no namespace)';
    case 'workload': {
      const e = entityOf(observed);
      return e.kind === 'workload' ? `${e.namespace}/${e.workloadKind}/${e.name}` : e.name;
    }
  }
}

function rowText(row: Row): string {
  const v = row.view;
  row.text ??= [v.source, v.destination]
    .flatMap((e) => [e.name, e.workload, e.address, e.labels])
    .concat(v.protocol, String(v.sourcePort), String(v.destinationPort), v.node, ...v.extra.flat())
    .join(' ')
    .toLowerCase();
  return row.text;
}

function endView(end: FlowEnd): EndView {
  const { name, workload } = endName(end);
  return { type: end.type, name, workload, namespace: end.namespace, address: end.address, labels: end.labels };
}

function mergePerf(all: Perf[]): Perf {
  const perf: Perf = {};
  let rttSum = 0;
  for (const p of all) {
    if (p.rttMs) {
      const r = (perf.rttMs ??= { mean: 0, max: 0, samples: 0 });
      rttSum += p.rttMs.mean * p.rttMs.samples;
      r.samples += p.rttMs.samples;
      r.max = Math.max(r.max, p.rttMs.max);
      r.mean = rttSum / r.samples;
    }
    if (p.retransmissions !== undefined) perf.retransmissions = (perf.retransmissions ?? 0) + p.retransmissions;
    if (p.dnsResponses !== undefined) {
      perf.dnsResponses = (perf.dnsResponses ?? 0) + p.dnsResponses;
      perf.dnsErrors = (perf.dnsErrors ?? 0) + (p.dnsErrors ?? 0);
    }
  }
  return perf;
}

/** A row test for the table's filters: each non-empty filter must match (either end, for the identity ones). */
function compileFilter(filter: FlowFilter): (row: Row) => boolean {
  const tests: Array<(row: Row) => boolean> = [];
  const ends = (row: Row) => [row.view.source, row.view.destination];
  if (filter.namespace) tests.push((r) => ends(r).some((e) => e.namespace === filter.namespace));
  if (filter.workload) tests.push((r) => r.entities.includes(`w:${filter.workload}`));
  if (filter.pod) {
    const pod = filter.pod.toLowerCase();
    tests.push((r) => ends(r).some((e) => e.type === 'pod' && e.name.toLowerCase().includes(pod)));
  }
  if (filter.protocol) {
    const protocol = (/^\d+$/.test(filter.protocol) ? protocolName(Number(filter.protocol)) : filter.protocol).toUpperCase();
    tests.push((r) => r.view.protocol.toUpperCase() === protocol);
  }
  if (filter.port) {
    const port = Number(filter.port);
    tests.push((r) => r.view.sourcePort === port || r.view.destinationPort === port);
  }
  const words = filter.text.toLowerCase().split(/\s+/).filter((w) => w !== '');
  if (words.length > 0) tests.push((r) => words.every((w) => rowText(r).includes(w)));
  return (row) => tests.every((t) => t(row));
}
