// ExportRecords for IPFIX tests and benchmarks: a flow with both ends named.
import type { FlowRecord } from '../../flow/types.ts';
import { type EndpointIdentity, type ExportRecord, FlowDirection, UNKNOWN_ENDPOINT } from '../../enrich/export-record.ts';

export function podEnd(name: string, overrides: Partial<EndpointIdentity> = {}): EndpointIdentity {
  return {
    type: 'pod',
    namespace: 'shop',
    podName: name,
    podUid: '7f1c2a9e-5b0d-4c1e-9a53-0d8e2b6c4f11',
    workloadKind: 'Deployment',
    workloadName: name.replace(/-[a-z0-9]+-[a-z0-9]+$/, ''),
    nodeName: 'node-a',
    serviceNamespace: '',
    serviceName: '',
    servicePortName: '',
    labels: [['app', name.split('-')[0]!], ['tier', 'web']],
    ...overrides,
  };
}

export function flowRecord(overrides: Partial<FlowRecord> = {}): FlowRecord {
  return {
    observationPointId: 7,
    ipVersion: 4,
    sourceAddress: Uint8Array.of(198, 18, 0, 10),
    destinationAddress: Uint8Array.of(198, 18, 0, 20),
    sourceTransportPort: 43512,
    destinationTransportPort: 8080,
    protocolIdentifier: 6,
    vlanId: 0,
    packetDeltaCount: 12,
    octetDeltaCount: 1804,
    reversePacketDeltaCount: 10,
    reverseOctetDeltaCount: 9120,
    tcpControlBits: 0x1b,
    reverseTcpControlBits: 0x1a,
    icmpTypeCode: 0,
    reverseIcmpTypeCode: 0,
    flowStartMilliseconds: 1_750_000_000_123,
    flowEndMilliseconds: 1_750_000_004_456,
    flowEndReason: 3,
    ...overrides,
  };
}

export function exportRecord(overrides: Partial<ExportRecord> = {}, flow: Partial<FlowRecord> = {}): ExportRecord {
  return {
    flow: flowRecord(flow),
    interfaceName: 'eth0',
    flowDirection: FlowDirection.EGRESS,
    clusterName: 'test-cluster',
    source: podEnd('frontend-6d8f9c7b5-x2k4q'),
    destination: { ...UNKNOWN_ENDPOINT, type: 'service', serviceNamespace: 'shop', serviceName: 'cart', servicePortName: 'http' },
    ...overrides,
  };
}

/** A UDP DNS flow whose first query got NXDOMAIN after 1.5 ms; a second query on the flow was answered NOERROR. */
export const DNS_FLOW: Partial<FlowRecord> = {
  protocolIdentifier: 17,
  sourceTransportPort: 51515,
  destinationTransportPort: 53,
  tcpControlBits: 0,
  reverseTcpControlBits: 0,
  dns: {
    id: 0x1234,
    queryName: 'cart.shop.svc.cluster.local',
    queryType: 1,
    queryClass: 1,
    response: { rcode: 3, answerCount: 0, answerType: 0, answerTtl: 0, answerData: '' },
    latencyMicros: 1500,
    queries: 2,
    responses: 2,
    responseCodes: [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    latenciesMicros: [1500, 700],
  },
};

/** A TCP flow seen from the client's side: a 20.5 ms handshake, 7 retransmitted segments of 10,136 bytes forward, a reset back. */
export const TCP_FLOW: Partial<FlowRecord> = {
  tcp: {
    synToSynAckMicros: 20_500,
    synAckToAckMicros: 40,
    clientDirection: 'forward',
    synSize: 60,
    forward: {
      segments: 700, retransmittedSegments: 7, retransmittedBytes: 10_136, outOfOrderSegments: 0, zeroWindowSegments: 0, resets: 0,
      initialWindow: 64240, maximumSegmentSize: 1460, windowScale: 7, optionKinds: [1, 2, 3, 4, 8],
      ttlFirst: 64, ttlLast: 64, ttlMinimum: 64, ttlMaximum: 64,
    },
    reverse: {
      segments: 2, retransmittedSegments: 0, retransmittedBytes: 0, outOfOrderSegments: 1, zeroWindowSegments: 3, resets: 1,
      initialWindow: 65160, maximumSegmentSize: 1400, windowScale: undefined, optionKinds: [2],
      ttlFirst: 61, ttlLast: 63, ttlMinimum: 61, ttlMaximum: 63,
    },
  },
};

export const IPV6_FLOW: Partial<FlowRecord> = {
  ipVersion: 6,
  sourceAddress: Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a),
  destinationAddress: Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34),
  protocolIdentifier: 58,
  icmpTypeCode: 128 * 256,
  reverseIcmpTypeCode: 129 * 256,
  sourceTransportPort: 0,
  destinationTransportPort: 0,
  tcpControlBits: 0,
  reverseTcpControlBits: 0,
};
