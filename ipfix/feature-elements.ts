// The per-flow features in IPFIX: their enterprise elements (IANA has none
// for DNS, and some for TCP: its window, window scale, options and TTL
// range), and for each feature the fields a record carries and how they
// are written. The encoder (ipfix/encoder.ts) makes one template per IP
// version and set of features a record can carry, each the flow template
// with the features' fields after it; docs/design.md "Per-flow features"
// says how a feature is added.
//
// HTTP uses IANA's elements (httpRequestMethod 459, httpRequestHost 460,
// httpRequestTarget 461, httpUserAgent 468, httpStatusCode 457).
//
// Enterprise ids: DNS 100-112, TLS 120-125, QUIC 130-132, TCP 150-170. They stay clear of the identity elements (10-20, 50,
// 60-70) and of the RFC 5103 reverse elements' ids in any template (1, 2, 6,
// 32, 139), which nfacctd 1.7.7 confuses with enterprise elements of the
// same id (registry.ts).
import type { FeatureName } from '../flow/features/flow-features.ts';
import type { FlowRecord } from '../flow/types.ts';
import type { TcpDirection } from '../flow/features/tcp.ts';
import type { DataType, InformationElement, Semantics, Units } from './registry.ts';

/** An enterprise element of a feature, before it gets the configured PEN. */
export type FeatureElementSpec = Omit<InformationElement, 'enterprise'>;

/** dnsResponseCode when the flow's first query got no response. */
export const DNS_NO_RESPONSE = 255;
/** dnsLatencyMicroseconds when there is none to give (no response, or a response whose query was not seen). */
export const DNS_NO_LATENCY = 0xffffffff;

const spec = (id: number, name: string, dataType: DataType, semantics: Semantics, units: Units, description: string): FeatureElementSpec =>
  Object.freeze({ id, name, dataType, semantics, units, description });

export const DNS_ELEMENTS: readonly FeatureElementSpec[] = Object.freeze([
  spec(100, 'dnsTransactionId', 'unsigned16', 'identifier', 'none', "DNS: the ID of the flow's first transaction (its query, or its response when the query was not seen)."),
  spec(101, 'dnsQueryName', 'string', 'default', 'none', 'DNS: the name the first transaction asked for, without the final dot.'),
  spec(102, 'dnsQueryType', 'unsigned16', 'identifier', 'none', 'DNS: the type the first transaction asked for (1 A, 28 AAAA, 33 SRV, ...).'),
  spec(103, 'dnsQueryClass', 'unsigned16', 'identifier', 'none', 'DNS: the class the first transaction asked for (1 IN).'),
  spec(104, 'dnsResponseCode', 'unsigned8', 'identifier', 'none', `DNS: the RCODE of the first transaction's response (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...); ${DNS_NO_RESPONSE} when no response was seen.`),
  spec(105, 'dnsAnswerCount', 'unsigned16', 'quantity', 'none', "DNS: the answer records of the first transaction's response."),
  spec(106, 'dnsAnswerType', 'unsigned16', 'identifier', 'none', 'DNS: the type of the first answer record; 0 when there is none.'),
  spec(107, 'dnsAnswerTtl', 'unsigned32', 'quantity', 'seconds', 'DNS: the TTL of the first answer record.'),
  spec(108, 'dnsAnswerData', 'string', 'default', 'none', 'DNS: the data of the first answer record as text (an address, a name, the first TXT string), at most 255 characters.'),
  spec(109, 'dnsLatencyMicroseconds', 'unsigned32', 'quantity', 'microseconds', `DNS: the first transaction's query-to-response time where this observation point saw both; ${DNS_NO_LATENCY} otherwise.`),
  spec(110, 'dnsQueryCount', 'unsigned32', 'deltaCounter', 'messages', 'DNS: queries seen in the flow.'),
  spec(111, 'dnsResponseCount', 'unsigned32', 'deltaCounter', 'messages', 'DNS: responses seen in the flow.'),
  spec(112, 'dnsErrorResponseCount', 'unsigned32', 'deltaCounter', 'messages', 'DNS: responses in the flow whose RCODE is not NOERROR (NXDOMAIN, SERVFAIL, REFUSED, ...).'),
]);

/** tcpSynToSynAckMicroseconds and tcpSynAckToAckMicroseconds when the handshake was not seen. */
export const TCP_NO_TIME = 0xffffffff;
/** tcpWindowScale when the side's SYN had no window scale option (or was not seen). */
export const TCP_NO_WINDOW_SCALE = 0xffff;

/** A TCP counter of one direction and its reverse, the reverse one id up. */
const tcpPair = (id: number, name: string, dataType: DataType, semantics: Semantics, units: Units, description: string): FeatureElementSpec[] => [
  spec(id, name, dataType, semantics, units, `TCP, forward direction: ${description}`),
  spec(id + 1, `reverse${name[0]!.toUpperCase()}${name.slice(1)}`, dataType, semantics, units, `TCP, reverse direction: ${description}`),
];

/** The TCP feature's own elements (docs/tcp.md); with IANA's tcpWindowSize, tcpWindowScale, tcpOptions, minimumTTL and maximumTTL and their reverses. */
export const TCP_ELEMENTS: readonly FeatureElementSpec[] = Object.freeze([
  spec(150, 'tcpSynToSynAckMicroseconds', 'unsigned32', 'quantity', 'microseconds', `TCP: from the SYN to the SYN/ACK that answers it, both seen at this observation point (the round trip beyond it when the point is on the client's side); ${TCP_NO_TIME} when not seen.`),
  spec(151, 'tcpSynAckToAckMicroseconds', 'unsigned32', 'quantity', 'microseconds', `TCP: from the SYN/ACK to the client's ACK of it, both seen at this observation point (the round trip beyond it when the point is on the server's side); ${TCP_NO_TIME} when not seen.`),
  spec(152, 'tcpClientDirection', 'unsigned8', 'identifier', 'none', "TCP: which way the SYN went: 1 the flow's forward direction, 2 its reverse, 0 no SYN seen."),
  ...tcpPair(153, 'tcpSegmentCount', 'unsigned64', 'deltaCounter', 'packets', 'segments with sequence space (payload, SYN or FIN), as wire segments.'),
  ...tcpPair(155, 'tcpRetransmittedSegmentCount', 'unsigned64', 'deltaCounter', 'packets', 'wire segments that repeated sequence space this observation point had seen sent.'),
  ...tcpPair(157, 'tcpRetransmittedOctetCount', 'unsigned64', 'deltaCounter', 'octets', 'payload bytes of the retransmitted segments.'),
  ...tcpPair(159, 'tcpOutOfOrderSegmentCount', 'unsigned64', 'deltaCounter', 'packets', 'segments that filled a gap below the highest sequence number seen (lost before this point, or late).'),
  ...tcpPair(161, 'tcpZeroWindowSegmentCount', 'unsigned64', 'deltaCounter', 'packets', 'segments advertising a zero receive window (not SYN or RST).'),
  ...tcpPair(163, 'tcpResetCount', 'unsigned32', 'deltaCounter', 'packets', 'RST segments sent this way.'),
  ...tcpPair(165, 'tcpMaximumSegmentSize', 'unsigned16', 'quantity', 'octets', "the MSS option of this side's SYN or SYN/ACK; 0 when none was seen."),
  ...tcpPair(167, 'firstTTL', 'unsigned8', 'quantity', 'hops', 'the TTL (IPv4) or hop limit (IPv6) of the first packet; 0 when none was seen.'),
  ...tcpPair(169, 'lastTTL', 'unsigned8', 'quantity', 'hops', 'the TTL (IPv4) or hop limit (IPv6) of the last packet; 0 when none was seen.'),
]);

export const TLS_ELEMENTS: readonly FeatureElementSpec[] = Object.freeze([
  spec(120, 'tlsServerName', 'string', 'default', 'none', 'TLS: the server name (SNI) of the ClientHello.'),
  spec(121, 'tlsClientAlpn', 'string', 'default', 'none', 'TLS: the application protocols (ALPN) the client offered, comma-separated, in its order.'),
  spec(122, 'tlsAlpn', 'string', 'default', 'none', "TLS: the application protocol the server chose (ServerHello); empty with TLS 1.3, which sends it encrypted."),
  spec(123, 'tlsVersion', 'unsigned16', 'identifier', 'none', "TLS: the version agreed on (the ServerHello's, its supported_versions extension included), else the ClientHello's (0x0303 TLS 1.2, 0x0304 TLS 1.3)."),
  spec(124, 'tlsJa3', 'string', 'default', 'none', "TLS: the ClientHello's JA3 fingerprint (MD5, hex)."),
  spec(125, 'tlsJa4', 'string', 'default', 'none', "TLS: the ClientHello's JA4 fingerprint (FoxIO's definition)."),
]);

export const QUIC_ELEMENTS: readonly FeatureElementSpec[] = Object.freeze([
  spec(130, 'quicVersion', 'unsigned32', 'identifier', 'none', "QUIC: the version of the client's Initial (0x00000001 v1, 0x6b3343cf v2, drafts)."),
  spec(131, 'quicServerName', 'string', 'default', 'none', "QUIC: the server name (SNI) of the ClientHello in the client's Initial packets."),
  spec(132, 'quicClientAlpn', 'string', 'default', 'none', 'QUIC: the application protocols (ALPN) the client offered ("h3"), comma-separated.'),
]);

/** Every feature element, in id order. */
export const FEATURE_ELEMENTS: readonly FeatureElementSpec[] = [...DNS_ELEMENTS, ...TLS_ELEMENTS, ...QUIC_ELEMENTS, ...TCP_ELEMENTS];

/** Where a feature writes its values: the encoder's writer, in template field order. */
export interface FieldWriter {
  unsigned(length: 1 | 2 | 4 | 8, value: number): void;
  /** A variable-length octetArray. */
  octets(bytes: Uint8Array): void;
  /** An unsigned64 given as its high and low 32 bits (a bit field beyond 2^53, which a number cannot hold). */
  unsigned64(high: number, low: number): void;
  string(text: string): void;
}

/** One feature as the encoder sees it. */
export interface FeatureEncoding {
  readonly name: FeatureName;
  /**
   * 'application': what a flow carried (DNS, TLS, QUIC, HTTP), at most one
   * per record; the encoder has templates for each with any of the
   * 'transport' features (what every flow of a protocol has).
   */
  readonly layer: 'application' | 'transport';
  /** Whether the record carries the feature. */
  present(flow: FlowRecord): boolean;
  /** Its element names, in the order write() puts their values. */
  readonly fields: readonly string[];
  write(flow: FlowRecord, w: FieldWriter): void;
  /**
   * The same fields as CESNET's ipfixprobe exports them (featureElements:
   * ipfixprobe): its element names (IPFIXPROBE_ELEMENTS) and their writer.
   * Only the fields podflow reads; a feature without them keeps its own.
   */
  readonly ipfixprobe?: { readonly fields: readonly string[]; write(flow: FlowRecord, w: FieldWriter): void };
}

/** Which elements carry the application features' fields: podflow's own, or those of CESNET's ipfixprobe. */
export type FeatureElementSet = 'podflow' | 'ipfixprobe';

/** CESNET's Private Enterprise Number, and Flowmon's (which ipfixprobe uses for some HTTP and TLS fields). */
export const CESNET_PEN = 8057;
export const FLOWMON_PEN = 39499;

const foreign = (enterprise: number, id: number, name: string, dataType: DataType, description: string): InformationElement =>
  Object.freeze({ enterprise, id, name, dataType, semantics: 'default', units: 'none', description });

/**
 * The elements CESNET's ipfixprobe exports for DNS, TLS, QUIC and HTTP
 * (include/ipfixprobe/ipfix-elements.hpp, v5.7.0), for the fields podflow
 * reads, named after ipfixprobe's field names. Their enterprise numbers
 * are fixed (CESNET's, Flowmon's), whatever podflow's own is.
 */
export const IPFIXPROBE_ELEMENTS: readonly InformationElement[] = Object.freeze([
  foreign(CESNET_PEN, 1, 'ipfixprobeDnsRcode', 'unsigned8', "ipfixprobe DNS_RCODE: the response's RCODE (0 when no response was seen)."),
  foreign(CESNET_PEN, 2, 'ipfixprobeDnsName', 'string', 'ipfixprobe DNS_NAME: the name asked for.'),
  foreign(CESNET_PEN, 3, 'ipfixprobeDnsQtype', 'unsigned16', 'ipfixprobe DNS_QTYPE: the type asked for.'),
  foreign(CESNET_PEN, 4, 'ipfixprobeDnsClass', 'unsigned16', 'ipfixprobe DNS_CLASS: the class asked for.'),
  foreign(CESNET_PEN, 5, 'ipfixprobeDnsRrTtl', 'unsigned32', "ipfixprobe DNS_RR_TTL: the first answer's TTL."),
  foreign(CESNET_PEN, 6, 'ipfixprobeDnsRlength', 'unsigned16', "ipfixprobe DNS_RLENGTH: the length of DNS_RDATA."),
  foreign(CESNET_PEN, 7, 'ipfixprobeDnsRdata', 'octetArray', "ipfixprobe DNS_RDATA: the first answer's data as text."),
  foreign(CESNET_PEN, 10, 'ipfixprobeDnsId', 'unsigned16', 'ipfixprobe DNS_ID: the transaction ID.'),
  foreign(CESNET_PEN, 14, 'ipfixprobeDnsAnswers', 'unsigned16', 'ipfixprobe DNS_ANSWERS: the answer records of the response.'),
  foreign(CESNET_PEN, 200, 'ipfixprobeHttpMethod', 'string', 'ipfixprobe HTTP_METHOD: the request method.'),
  foreign(CESNET_PEN, 808, 'ipfixprobeTlsSni', 'string', 'ipfixprobe TLS_SNI: the ClientHello server name.'),
  foreign(CESNET_PEN, 809, 'ipfixprobeTlsJa4', 'string', "ipfixprobe TLS_JA4: the ClientHello's JA4 (podflow's count of extensions leaves GREASE values out, as JA4 says)."),
  foreign(CESNET_PEN, 890, 'ipfixprobeQuicSni', 'string', "ipfixprobe QUIC_SNI: the server name of the client Initial's ClientHello."),
  foreign(CESNET_PEN, 892, 'ipfixprobeQuicVersion', 'unsigned32', "ipfixprobe QUIC_VERSION: the Initial's version."),
  foreign(FLOWMON_PEN, 1, 'ipfixprobeHttpDomain', 'string', 'ipfixprobe HTTP_DOMAIN: the request Host.'),
  foreign(FLOWMON_PEN, 2, 'ipfixprobeHttpUri', 'string', 'ipfixprobe HTTP_URI: the request target.'),
  foreign(FLOWMON_PEN, 12, 'ipfixprobeHttpStatus', 'unsigned16', 'ipfixprobe HTTP_STATUS: the response status code.'),
  foreign(FLOWMON_PEN, 20, 'ipfixprobeHttpUseragent', 'string', 'ipfixprobe HTTP_USERAGENT: the request User-Agent.'),
  foreign(FLOWMON_PEN, 333, 'ipfixprobeTlsVersion', 'unsigned16', 'ipfixprobe TLS_VERSION: the version agreed on.'),
  foreign(FLOWMON_PEN, 337, 'ipfixprobeTlsAlpn', 'string', 'ipfixprobe TLS_ALPN: the protocol the server chose.'),
  foreign(FLOWMON_PEN, 357, 'ipfixprobeTlsJa3', 'octetArray', "ipfixprobe TLS_JA3: the ClientHello's JA3 MD5, 16 bytes."),
  foreign(CESNET_PEN, 900, 'ipfixprobeTcpMss', 'unsigned32', "ipfixprobe TCP_MSS: the MSS option of the forward direction's SYN (podflow sends the MSS itself; ipfixprobe reads 4 bytes from the option's value, so on a SYN with an option after the MSS its number is not the MSS)."),
  foreign(CESNET_PEN, 901, 'ipfixprobeTcpMssRev', 'unsigned32', "ipfixprobe TCP_MSS_REV: the MSS option of the reverse direction's SYN/ACK."),
  foreign(CESNET_PEN, 902, 'ipfixprobeTcpSynSize', 'unsigned16', "ipfixprobe TCP_SYN_SIZE: the IP length of the flow's first packet when it was a bare SYN, else 0."),
]);

/** A latin1 string's bytes (the readers' texts are bytes as read). */
function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

export type { FeatureName };

const DNS: FeatureEncoding = {
  name: 'dns',
  layer: 'application',
  present: (flow) => flow.dns !== undefined,
  fields: DNS_ELEMENTS.map((e) => e.name),
  write(flow, w) {
    const d = flow.dns!;
    const response = d.response;
    let errors = 0;
    for (let rcode = 1; rcode < d.responseCodes.length; rcode++) errors += d.responseCodes[rcode]!;
    w.unsigned(2, d.id);
    w.string(d.queryName);
    w.unsigned(2, d.queryType);
    w.unsigned(2, d.queryClass);
    w.unsigned(1, response === undefined ? DNS_NO_RESPONSE : response.rcode);
    w.unsigned(2, response?.answerCount ?? 0);
    w.unsigned(2, response?.answerType ?? 0);
    w.unsigned(4, response?.answerTtl ?? 0);
    w.string(response?.answerData ?? '');
    w.unsigned(4, d.latencyMicros === undefined ? DNS_NO_LATENCY : Math.min(d.latencyMicros, DNS_NO_LATENCY - 1));
    w.unsigned(4, d.queries);
    w.unsigned(4, d.responses);
    w.unsigned(4, errors);
  },
  ipfixprobe: {
    fields: ['ipfixprobeDnsAnswers', 'ipfixprobeDnsRcode', 'ipfixprobeDnsQtype', 'ipfixprobeDnsClass', 'ipfixprobeDnsRrTtl', 'ipfixprobeDnsRlength', 'ipfixprobeDnsId', 'ipfixprobeDnsName', 'ipfixprobeDnsRdata'],
    write(flow, w) {
      const d = flow.dns!;
      const r = d.response;
      const data = latin1Bytes(r?.answerData ?? '');
      w.unsigned(2, r?.answerCount ?? 0);
      w.unsigned(1, r?.rcode ?? 0);
      w.unsigned(2, d.queryType);
      w.unsigned(2, d.queryClass);
      w.unsigned(4, r?.answerTtl ?? 0);
      w.unsigned(2, data.length);
      w.unsigned(2, d.id);
      w.string(d.queryName);
      w.octets(data);
    },
  },
};

/**
 * tcpOptions (IANA 209, RFC 5102): option kind X is bit X counted from the
 * most significant bit of the first octet, so kinds 0-31 are the high word.
 */
function writeOptions(w: FieldWriter, kinds: readonly number[]): void {
  let high = 0;
  let low = 0;
  for (const kind of kinds) {
    if (kind < 32) high |= 1 << (31 - kind);
    else low |= 1 << (63 - kind);
  }
  w.unsigned64(high >>> 0, low >>> 0);
}

/**
 * tcpOptions as ipfixprobe writes it (input/parser.cpp, v5.7.0): kind k is
 * bit (k & 0xF8) + 7 - (k & 7) of a 64-bit number, the bits of each byte
 * reversed but the bytes in little-endian order; the same set of kinds as
 * writeOptions, another number. As [high, low] 32-bit words.
 */
export function ipfixprobeOptionWords(kinds: readonly number[]): [number, number] {
  let high = 0;
  let low = 0;
  for (const kind of kinds) {
    const bit = (kind & 0xf8) + 7 - (kind & 7);
    if (bit < 32) low |= 1 << bit;
    else high |= 1 << (bit - 32);
  }
  return [high >>> 0, low >>> 0];
}

/** A direction's TCP performance counts: podflow's elements in either element set (ipfixprobe has none for them). */
const TCP_PERFORMANCE_FIELDS = [
  'tcpSegmentCount',
  'tcpRetransmittedSegmentCount',
  'tcpRetransmittedOctetCount',
  'tcpOutOfOrderSegmentCount',
  'tcpZeroWindowSegmentCount',
  'tcpResetCount',
];

const TCP_DIRECTION_FIELDS = [
  ...TCP_PERFORMANCE_FIELDS,
  'tcpMaximumSegmentSize',
  'tcpWindowSize',
  'tcpWindowScale',
  'tcpOptions',
  'firstTTL',
  'lastTTL',
  'minimumTTL',
  'maximumTTL',
];

function writeTcpPerformance(w: FieldWriter, d: TcpDirection): void {
  w.unsigned(8, d.segments);
  w.unsigned(8, d.retransmittedSegments);
  w.unsigned(8, d.retransmittedBytes);
  w.unsigned(8, d.outOfOrderSegments);
  w.unsigned(8, d.zeroWindowSegments);
  w.unsigned(4, d.resets);
}

function writeTcpDirection(w: FieldWriter, d: TcpDirection): void {
  writeTcpPerformance(w, d);
  w.unsigned(2, d.maximumSegmentSize ?? 0);
  w.unsigned(2, d.initialWindow ?? 0);
  w.unsigned(2, d.windowScale ?? TCP_NO_WINDOW_SCALE);
  writeOptions(w, d.optionKinds);
  w.unsigned(1, d.ttlFirst ?? 0);
  w.unsigned(1, d.ttlLast ?? 0);
  w.unsigned(1, d.ttlMinimum ?? 0);
  w.unsigned(1, d.ttlMaximum ?? 0);
}

const TCP: FeatureEncoding = {
  name: 'tcp',
  layer: 'transport',
  present: (flow) => flow.tcp !== undefined,
  fields: [
    'tcpSynToSynAckMicroseconds',
    'tcpSynAckToAckMicroseconds',
    'tcpClientDirection',
    ...TCP_DIRECTION_FIELDS,
    ...TCP_DIRECTION_FIELDS.map((name) => `reverse${name[0]!.toUpperCase()}${name.slice(1)}`),
  ],
  write(flow, w) {
    const t = flow.tcp!;
    w.unsigned(4, t.synToSynAckMicros === undefined ? TCP_NO_TIME : Math.min(t.synToSynAckMicros, TCP_NO_TIME - 1));
    w.unsigned(4, t.synAckToAckMicros === undefined ? TCP_NO_TIME : Math.min(t.synAckToAckMicros, TCP_NO_TIME - 1));
    w.unsigned(1, t.clientDirection === 'forward' ? 1 : t.clientDirection === 'reverse' ? 2 : 0);
    writeTcpDirection(w, t.forward);
    writeTcpDirection(w, t.reverse);
  },
  // ipfixprobe's basicplus fields (no IP_FLG: podflow does not read IP
  // flags), ipfixprobe's numbers (the highest TTL, its option bit order),
  // then podflow's handshake and performance counts, which ipfixprobe has no
  // element for.
  ipfixprobe: {
    fields: [
      'ipTTL', 'reverseIpTTL', 'tcpWindowSize', 'reverseTcpWindowSize', 'tcpOptions', 'reverseTcpOptions',
      'ipfixprobeTcpMss', 'ipfixprobeTcpMssRev', 'ipfixprobeTcpSynSize',
      'tcpSynToSynAckMicroseconds', 'tcpSynAckToAckMicroseconds', 'tcpClientDirection',
      ...TCP_PERFORMANCE_FIELDS,
      ...TCP_PERFORMANCE_FIELDS.map((name) => `reverse${name[0]!.toUpperCase()}${name.slice(1)}`),
    ],
    write(flow, w) {
      const t = flow.tcp!;
      w.unsigned(1, t.forward.ttlMaximum ?? 0);
      w.unsigned(1, t.reverse.ttlMaximum ?? 0);
      w.unsigned(2, t.forward.initialWindow ?? 0);
      w.unsigned(2, t.reverse.initialWindow ?? 0);
      w.unsigned64(...ipfixprobeOptionWords(t.forward.optionKinds));
      w.unsigned64(...ipfixprobeOptionWords(t.reverse.optionKinds));
      w.unsigned(4, t.forward.maximumSegmentSize ?? 0);
      w.unsigned(4, t.reverse.maximumSegmentSize ?? 0);
      w.unsigned(2, t.synSize);
      w.unsigned(4, t.synToSynAckMicros === undefined ? TCP_NO_TIME : Math.min(t.synToSynAckMicros, TCP_NO_TIME - 1));
      w.unsigned(4, t.synAckToAckMicros === undefined ? TCP_NO_TIME : Math.min(t.synAckToAckMicros, TCP_NO_TIME - 1));
      w.unsigned(1, t.clientDirection === 'forward' ? 1 : t.clientDirection === 'reverse' ? 2 : 0);
      writeTcpPerformance(w, t.forward);
      writeTcpPerformance(w, t.reverse);
    },
  },
};

const TLS: FeatureEncoding = {
  name: 'tls',
  layer: 'application',
  present: (flow) => flow.tls !== undefined,
  fields: TLS_ELEMENTS.map((e) => e.name),
  write(flow, w) {
    const t = flow.tls!;
    w.string(t.serverName);
    w.string(t.clientAlpn);
    w.string(t.alpn);
    w.unsigned(2, t.version);
    w.string(t.ja3);
    w.string(t.ja4);
  },
  ipfixprobe: {
    fields: ['ipfixprobeTlsVersion', 'ipfixprobeTlsSni', 'ipfixprobeTlsAlpn', 'ipfixprobeTlsJa3', 'ipfixprobeTlsJa4'],
    write(flow, w) {
      const t = flow.tls!;
      w.unsigned(2, t.version);
      w.string(t.serverName);
      w.string(t.alpn);
      w.octets(t.ja3 === '' ? new Uint8Array(0) : Uint8Array.from(t.ja3.match(/../g)!, (h) => parseInt(h, 16)));
      w.string(t.ja4);
    },
  },
};

const QUIC: FeatureEncoding = {
  name: 'quic',
  layer: 'application',
  present: (flow) => flow.quic !== undefined,
  fields: QUIC_ELEMENTS.map((e) => e.name),
  write(flow, w) {
    const q = flow.quic!;
    w.unsigned(4, q.version);
    w.string(q.serverName);
    w.string(q.clientAlpn);
  },
  ipfixprobe: {
    fields: ['ipfixprobeQuicSni', 'ipfixprobeQuicVersion'],
    write(flow, w) {
      w.string(flow.quic!.serverName);
      w.unsigned(4, flow.quic!.version);
    },
  },
};

const HTTP: FeatureEncoding = {
  name: 'http',
  layer: 'application',
  present: (flow) => flow.http !== undefined,
  fields: ['httpRequestMethod', 'httpRequestHost', 'httpRequestTarget', 'httpUserAgent', 'httpStatusCode'],
  write(flow, w) {
    const h = flow.http!;
    w.string(h.method);
    w.string(h.host);
    w.string(h.target);
    w.string(h.userAgent);
    w.unsigned(2, h.statusCode);
  },
  ipfixprobe: {
    fields: ['ipfixprobeHttpUseragent', 'ipfixprobeHttpMethod', 'ipfixprobeHttpDomain', 'ipfixprobeHttpUri', 'ipfixprobeHttpStatus'],
    write(flow, w) {
      const h = flow.http!;
      w.string(h.userAgent);
      w.string(h.method);
      w.string(h.host);
      w.string(h.target);
      w.unsigned(2, h.statusCode);
    },
  },
};

/** Every feature the encoder knows, in the order their fields follow the flow fields. */
export const FEATURE_ENCODINGS: readonly FeatureEncoding[] = [DNS, TCP, TLS, QUIC, HTTP];
