// Information elements podflow exports, by (enterprise, id) and by name.
//
// Three sources, as in vmware/go-ipfix's `registry`:
// - IANA elements: generated from the checked-in extract ipfix/iana-elements.csv
//   (ipfix/iana-csv.ts writes ipfix/iana-elements.ts; a test fails when they differ);
// - RFC 5103 reverse elements: derived from the IANA ones (PEN 29305, same id,
//   name "reverse" + Name), never typed by hand;
// - podflow's enterprise elements (Kubernetes identity of both ends, and the
//   per-flow features' fields: ipfix/feature-elements.ts), under a
//   configurable Private Enterprise Number. The default 32473 is reserved for
//   documentation (RFC 5612): set your own PEN in production.
//
// IPFIX is hand-written here: it sits on the hot path, and no maintained
// TypeScript library encodes RFC 7011 with enterprise elements.
import { PodflowError } from '../common/errors.ts';
import { FEATURE_ELEMENTS, IPFIXPROBE_ELEMENTS } from './feature-elements.ts';
import { IANA_ELEMENTS } from './iana-elements.ts';

/** Abstract data types (RFC 7012 §3.1) with their RFC 5610 informationElementDataType codes. */
export const DataTypeCode = {
  octetArray: 0,
  unsigned8: 1,
  unsigned16: 2,
  unsigned32: 3,
  unsigned64: 4,
  signed8: 5,
  signed16: 6,
  signed32: 7,
  signed64: 8,
  float32: 9,
  float64: 10,
  boolean: 11,
  macAddress: 12,
  string: 13,
  dateTimeSeconds: 14,
  dateTimeMilliseconds: 15,
  dateTimeMicroseconds: 16,
  dateTimeNanoseconds: 17,
  ipv4Address: 18,
  ipv6Address: 19,
  basicList: 20,
  subTemplateList: 21,
  subTemplateMultiList: 22,
} as const;
export type DataType = keyof typeof DataTypeCode;

/** Data type semantics (RFC 7012 §3.2) with their RFC 5610 informationElementSemantics codes. */
export const SemanticsCode = {
  default: 0,
  quantity: 1,
  totalCounter: 2,
  deltaCounter: 3,
  identifier: 4,
  flags: 5,
  list: 6,
  snmpCounter: 7,
  snmpGauge: 8,
} as const;
export type Semantics = keyof typeof SemanticsCode;

/** IANA "IPFIX Information Element Units" codes (RFC 5610 informationElementUnits). */
export const UnitsCode = {
  none: 0,
  bits: 1,
  octets: 2,
  packets: 3,
  flows: 4,
  seconds: 5,
  milliseconds: 6,
  microseconds: 7,
  nanoseconds: 8,
  '4-octet words': 9,
  messages: 10,
  hops: 11,
  entries: 12,
  frames: 13,
  ports: 14,
  inferred: 15,
} as const;
export type Units = keyof typeof UnitsCode;

export interface InformationElement {
  /** Private Enterprise Number; 0 for IANA elements. */
  readonly enterprise: number;
  /** Element id, without the enterprise bit. */
  readonly id: number;
  readonly name: string;
  readonly dataType: DataType;
  readonly semantics: Semantics;
  readonly units: Units;
  readonly description: string;
}

export const IANA_ENTERPRISE = 0;
/** RFC 5103 §6.1: reverse elements are the IANA ones under this PEN. */
export const REVERSE_ENTERPRISE = 29305;
/** RFC 5612 documentation PEN. Use your own in production (the agent's `enterpriseNumber` setting). */
export const DEFAULT_ENTERPRISE_NUMBER = 32473;
/** Field length announcing a variable-length field (RFC 7011 §7). */
export const VARIABLE_LENGTH = 65535;

/** The fixed encoded length of a data type, or VARIABLE_LENGTH. */
export function naturalLength(type: DataType): number {
  switch (type) {
    case 'unsigned8':
    case 'signed8':
    case 'boolean':
      return 1;
    case 'unsigned16':
    case 'signed16':
      return 2;
    case 'unsigned32':
    case 'signed32':
    case 'float32':
    case 'dateTimeSeconds':
    case 'ipv4Address':
      return 4;
    case 'unsigned64':
    case 'signed64':
    case 'float64':
    case 'dateTimeMilliseconds':
    case 'dateTimeMicroseconds':
    case 'dateTimeNanoseconds':
      return 8;
    case 'macAddress':
      return 6;
    case 'ipv6Address':
      return 16;
    default:
      return VARIABLE_LENGTH;
  }
}

/**
 * IANA elements that describe the exporting or metering process rather than a
 * flow direction; RFC 5103 §6.1 does not reverse such elements.
 */
const NOT_REVERSIBLE = new Set([40, 41, 42, 138, 144, 149, 166, 167, 168, 303, 323, 339, 340, 341, 342, 343, 344, 345, 346]);

function deriveReverse(element: InformationElement): InformationElement {
  return Object.freeze({
    ...element,
    enterprise: REVERSE_ENTERPRISE,
    name: `reverse${element.name[0]!.toUpperCase()}${element.name.slice(1)}`,
    description: `The reverse-direction (RFC 5103) counterpart of ${element.name}.`,
  });
}

/** The derived RFC 5103 reverse elements. */
export const REVERSE_ELEMENTS: readonly InformationElement[] = Object.freeze(
  IANA_ELEMENTS.filter((e) => !NOT_REVERSIBLE.has(e.id)).map(deriveReverse),
);

/**
 * Identity fields of one end of a flow, in export order: [name suffix,
 * EndpointIdentity key, description]. Source elements are ids 10.., destination
 * elements the same field + 50 (60..), so the two ends line up in any listing.
 */
export const ENDPOINT_FIELDS = [
  ['EndpointType', 'type', 'What the end is: pod, node, service, external or unknown (no identity found at flow start).'],
  ['Namespace', 'namespace', 'Kubernetes namespace of the pod.'],
  ['PodName', 'podName', 'Name of the pod.'],
  ['PodUid', 'podUid', 'UID of the pod (tells apart pods that reused a name).'],
  ['WorkloadKind', 'workloadKind', 'Kind of the pod\'s top owner: Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, or Pod for a bare pod.'],
  ['WorkloadName', 'workloadName', 'Name of the pod\'s top owner.'],
  ['NodeName', 'nodeName', 'Kubernetes node the pod ran on, or the node itself for a node end.'],
  ['ServiceNamespace', 'serviceNamespace', 'Namespace of the Service when the end is a ClusterIP.'],
  ['ServiceName', 'serviceName', 'Name of the Service when the end is a ClusterIP.'],
  ['ServicePortName', 'servicePortName', 'Name of the Service port the flow used.'],
  ['Labels', 'labels', 'The operator-chosen pod labels as "k1=v1,k2=v2" (bounded; truncated at the string limit).'],
] as const;

// pmacct 1.7.7's nfacctd ignores the enterprise number among enterprise
// elements: a podflow id equal to the id of an RFC 5103 reverse element in the
// same template (PEN 29305: reverseOctetDeltaCount 1, reversePacketDeltaCount
// 2, reverseTcpControlBits 6, reverseIcmpTypeCodeIPv4 32,
// reverseIcmpTypeCodeIPv6 139) is read as that element, e.g. the destination
// pod name (then id 32) was empty on every IPv4 flow. So no template holds two
// enterprise elements with one id (the encoder checks it at construction;
// test/ipfix/interop.test.ts reads every identity string back from nfacctd).
export const SOURCE_FIRST_ID = 10;
export const DESTINATION_FIRST_ID = 60;
export const CLUSTER_NAME_ID = 50;

function enterpriseElements(pen: number): InformationElement[] {
  const str = (id: number, name: string, description: string): InformationElement =>
    Object.freeze({ enterprise: pen, id, name, dataType: 'string', semantics: 'default', units: 'none', description });
  const out = [str(CLUSTER_NAME_ID, 'k8sClusterName', 'Name of the Kubernetes cluster the exporting agent runs in.')];
  for (const [end, first] of [['Source', SOURCE_FIRST_ID], ['Destination', DESTINATION_FIRST_ID]] as const) {
    ENDPOINT_FIELDS.forEach(([suffix, , description], i) => {
      out.push(str(first + i, `k8s${end}${suffix}`, `${end} end: ${description}`));
    });
  }
  for (const e of FEATURE_ELEMENTS) out.push(Object.freeze({ ...e, enterprise: pen }));
  return out;
}

function key(enterprise: number, id: number): number {
  // PENs are below 2^32 and ids below 2^15: the pair fits a double exactly.
  return enterprise * 65536 + id;
}

/** Elements by (enterprise, id) and by name, for one enterprise number. */
export class InformationElementRegistry {
  readonly enterpriseNumber: number;
  /** podflow's own elements under `enterpriseNumber`, in id order. */
  readonly enterpriseElements: readonly InformationElement[];
  /** Every element: IANA, reverse, podflow's, then those of ipfixprobe podflow can export (featureElements: ipfixprobe). */
  readonly elements: readonly InformationElement[];
  readonly #byKey = new Map<number, InformationElement>();
  readonly #byName = new Map<string, InformationElement>();

  constructor(enterpriseNumber: number = DEFAULT_ENTERPRISE_NUMBER) {
    if (!Number.isInteger(enterpriseNumber) || enterpriseNumber < 1 || enterpriseNumber > 0xffffffff || enterpriseNumber === REVERSE_ENTERPRISE) {
      throw new PodflowError('PODFLOW_ERR_IPFIX_CONFIG', `enterprise number must be an integer from 1 to 2^32-1 other than ${REVERSE_ENTERPRISE}, got ${enterpriseNumber}`);
    }
    this.enterpriseNumber = enterpriseNumber;
    this.enterpriseElements = Object.freeze(enterpriseElements(enterpriseNumber));
    this.elements = Object.freeze([...IANA_ELEMENTS, ...REVERSE_ELEMENTS, ...this.enterpriseElements, ...IPFIXPROBE_ELEMENTS]);
    for (const e of this.elements) {
      this.#byKey.set(key(e.enterprise, e.id), e);
      this.#byName.set(e.name, e);
    }
  }

  byId(enterprise: number, id: number): InformationElement | undefined {
    return this.#byKey.get(key(enterprise, id));
  }

  byName(name: string): InformationElement | undefined {
    return this.#byName.get(name);
  }

  /** Like byName, for names the code itself uses: a missing one is a programming error. */
  get(name: string): InformationElement {
    const e = this.#byName.get(name);
    if (!e) throw new Error(`no information element named ${name}`);
    return e;
  }
}

/** The name a decoder shows for an element nobody described: `e<pen>id<id>`. */
export function unknownElementName(enterprise: number, id: number): string {
  return `e${enterprise}id${id}`;
}
