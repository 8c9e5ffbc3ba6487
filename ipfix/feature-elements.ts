// The per-flow features in IPFIX: their enterprise elements (IANA has none
// for DNS), and for each feature the fields a record carries and how they
// are written. The encoder (ipfix/encoder.ts) makes one template per IP
// version and set of features a record can carry, each the flow template
// with the features' fields after it; docs/design.md "Per-flow features"
// says how a feature is added.
//
// Ids: DNS 100-112. They stay clear of the identity elements (10-20, 50,
// 60-70) and of the RFC 5103 reverse elements' ids in any template (1, 2, 6,
// 32, 139), which nfacctd 1.7.7 confuses with enterprise elements of the
// same id (registry.ts).
import type { FeatureName } from '../flow/features/flow-features.ts';
import type { FlowRecord } from '../flow/types.ts';
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

/** Every feature element, in id order. */
export const FEATURE_ELEMENTS: readonly FeatureElementSpec[] = DNS_ELEMENTS;

/** Where a feature writes its values: the encoder's writer, in template field order. */
export interface FieldWriter {
  unsigned(length: 1 | 2 | 4 | 8, value: number): void;
  string(text: string): void;
}

/** One feature as the encoder sees it. */
export interface FeatureEncoding {
  readonly name: FeatureName;
  /** Whether the record carries the feature. */
  present(flow: FlowRecord): boolean;
  /** Its element names, in the order write() puts their values. */
  readonly fields: readonly string[];
  write(flow: FlowRecord, w: FieldWriter): void;
}

export type { FeatureName };

const DNS: FeatureEncoding = {
  name: 'dns',
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
};

/** Every feature the encoder knows, in the order their fields follow the flow fields. */
export const FEATURE_ENCODINGS: readonly FeatureEncoding[] = [DNS];
