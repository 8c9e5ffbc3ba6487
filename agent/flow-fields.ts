// Reading a decoded podflow flow record (ipfix/decoder.ts: values by element
// name) as people talk about it: the two ends by Kubernetes identity, which
// end the agent observed, and the per-flow features beyond the common fields. Shared by the
// terminal view (agent/collector-view.ts) and the browser view (agent/web/).
import type { FieldValue } from '../ipfix/decoder.ts';
import { type EndpointType, FlowDirection } from '../enrich/export-record.ts';
import { TCP_NO_TIME } from '../ipfix/feature-elements.ts';

export type Fields = Readonly<Record<string, FieldValue>>;

/** One end of a flow as the record names it. Empty strings where a field does not apply. */
export interface FlowEnd {
  type: EndpointType;
  /** The pod's namespace, or the Service's. */
  namespace: string;
  podName: string;
  /** "Kind/name" of the pod's top owner; '' without one. */
  workload: string;
  nodeName: string;
  serviceName: string;
  servicePortName: string;
  labels: string;
  /** The IP address of this end in the flow. */
  address: string;
}

const END_TYPES: ReadonlySet<string> = new Set<EndpointType>(['pod', 'node', 'service', 'external', 'unknown']);

const END_FIELDS = ['EndpointType', 'Namespace', 'PodName', 'WorkloadKind', 'WorkloadName', 'NodeName', 'ServiceNamespace', 'ServiceName', 'ServicePortName', 'Labels'] as const;
type EndField = (typeof END_FIELDS)[number];
/** Element names of each end's fields, made once: a collector reads every record's ends (measured: building them per record was the view's largest cost). */
const END_KEYS = {
  source: { ...keysOf('k8sSource'), v4: 'sourceIPv4Address', v6: 'sourceIPv6Address' },
  destination: { ...keysOf('k8sDestination'), v4: 'destinationIPv4Address', v6: 'destinationIPv6Address' },
};

function keysOf(prefix: string): Record<EndField, string> {
  return Object.fromEntries(END_FIELDS.map((name) => [name, `${prefix}${name}`])) as Record<EndField, string>;
}

/** The source or destination end of a record. */
export function flowEnd(f: Fields, side: 'source' | 'destination'): FlowEnd {
  const k = END_KEYS[side];
  const type = text(f[k.EndpointType]);
  const kind = text(f[k.WorkloadKind]);
  const workload = text(f[k.WorkloadName]);
  const service = type === 'service';
  return {
    type: END_TYPES.has(type) ? (type as EndpointType) : 'unknown',
    namespace: text(service ? f[k.ServiceNamespace] : f[k.Namespace]),
    podName: text(f[k.PodName]),
    workload: workload ? `${kind || 'Pod'}/${workload}` : '',
    nodeName: text(f[k.NodeName]),
    serviceName: text(f[k.ServiceName]),
    servicePortName: text(f[k.ServicePortName]),
    labels: text(f[k.Labels]),
    address: text(f[k.v4] ?? f[k.v6]) || '?',
  };
}

/**
 * An end as people name it: "namespace/pod" with "Kind/workload", a Service as
 * "namespace/service:port" with "Service", a node by name, else its address.
 */
export function endName(e: FlowEnd): { name: string; workload: string } {
  switch (e.type) {
    case 'pod':
      return { name: `${e.namespace}/${e.podName}`, workload: e.workload };
    case 'service':
      return { name: `${e.namespace}/${e.serviceName}${e.servicePortName ? `:${e.servicePortName}` : ''}`, workload: 'Service' };
    case 'node':
      return { name: e.nodeName, workload: 'Node' };
    default:
      return { name: e.address, workload: '' };
  }
}

/**
 * Which end the agent captured at: the source of an egress flow, the
 * destination of an ingress one (flowDirection is relative to the observed
 * pod); a flow on `lo` has the pod at both ends.
 */
export function observedSide(f: Fields): 'source' | 'destination' {
  return num(f.flowDirection) === FlowDirection.INGRESS && f.flowDirection !== undefined ? 'destination' : 'source';
}

/**
 * Fields every record carries and the views show in their own columns: the
 * rest (the per-flow features of issue 15: round trips, retransmissions, DNS,
 * TLS and HTTP names) are shown as they come, by element name.
 */
const COMMON_FIELDS: ReadonlySet<string> = new Set([
  'sourceIPv4Address', 'destinationIPv4Address', 'sourceIPv6Address', 'destinationIPv6Address',
  'sourceTransportPort', 'destinationTransportPort', 'protocolIdentifier',
  'tcpControlBits', 'reverseTcpControlBits', 'icmpTypeCodeIPv4', 'reverseIcmpTypeCodeIPv4', 'icmpTypeCodeIPv6', 'reverseIcmpTypeCodeIPv6',
  'vlanId', 'flowDirection', 'flowEndReason', 'octetDeltaCount', 'packetDeltaCount', 'reverseOctetDeltaCount', 'reversePacketDeltaCount',
  'flowStartMilliseconds', 'flowEndMilliseconds', 'observationPointId', 'interfaceName', 'k8sClusterName',
]);

/** Handshake round trip, retransmitted segments and DNS answers of one flow, where its record carries them. */
export interface FlowPerf {
  rttMs?: number;
  retransmissions?: number;
  dnsResponses?: number;
  /** DNS responses whose code is not NOERROR. */
  dnsErrors?: number;
}

/** A TCP flow's handshake round trip at its observation point (SYN → SYN/ACK → ACK), ms; undefined when the record has none. */
export function handshakeMs(f: Fields): number | undefined {
  const a = f.tcpSynToSynAckMicroseconds;
  const b = f.tcpSynAckToAckMicroseconds;
  if (a === undefined || b === undefined || num(a) === TCP_NO_TIME || num(b) === TCP_NO_TIME) return undefined;
  return (num(a) + num(b)) / 1000;
}

/** Retransmitted TCP segments of both directions; 0 when the record carries no TCP features. */
export function retransmittedSegments(f: Fields): number {
  return num(f.tcpRetransmittedSegmentCount) + num(f.reverseTcpRetransmittedSegmentCount);
}

/**
 * The record's fields beyond identity and counts, as [element name, value],
 * and the per-flow features the views sum (ipfix/feature-elements.ts): the
 * handshake round trip, retransmitted segments, DNS responses and errors.
 */
export function flowFeatures(f: Fields): { extra: Array<[string, string]>; perf: FlowPerf } {
  const extra: Array<[string, string]> = [];
  for (const name in f) if (!COMMON_FIELDS.has(name) && !name.startsWith('k8s')) extra.push([name, text(f[name]!)]);
  const perf: FlowPerf = {};
  const rtt = handshakeMs(f);
  if (rtt !== undefined) perf.rttMs = rtt;
  if (f.tcpRetransmittedSegmentCount !== undefined) perf.retransmissions = retransmittedSegments(f);
  if (f.dnsResponseCount !== undefined) {
    perf.dnsResponses = num(f.dnsResponseCount);
    perf.dnsErrors = num(f.dnsErrorResponseCount);
  }
  return { extra, perf };
}

export function num(v: FieldValue | undefined): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

function text(v: FieldValue | undefined): string {
  return v === undefined ? '' : String(v);
}
