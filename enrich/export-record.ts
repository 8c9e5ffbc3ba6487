// What enrichment hands on: a finished flow with the Kubernetes identity of
// both ends. Pure data, defined here because enrich/ makes it; ipfix/ encodes
// it and agent/ counts it, both later in the data path (docs/design.md,
// "Layering"). An end the enricher cannot name is UNKNOWN_ENDPOINT, as is
// every end of `podflow replay`, which has no cluster to ask.
import type { FlowRecord } from '../flow/types.ts';

/** Why an end has (or lacks) identity; exported as a string so an empty field says why. */
export type EndpointType = 'pod' | 'node' | 'service' | 'external' | 'unknown';

/** Kubernetes identity of one end of a flow. Empty strings where a field does not apply. */
export interface EndpointIdentity {
  type: EndpointType;
  namespace: string;
  podName: string;
  podUid: string;
  /** Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet or Pod (bare pod). */
  workloadKind: string;
  workloadName: string;
  nodeName: string;
  /** For an end that is a ClusterIP. */
  serviceNamespace: string;
  serviceName: string;
  servicePortName: string;
  /** The operator-chosen label keys (bounded) and their values on the pod. */
  labels: ReadonlyArray<readonly [key: string, value: string]>;
}

export const UNKNOWN_ENDPOINT: EndpointIdentity = Object.freeze({
  type: 'unknown',
  namespace: '',
  podName: '',
  podUid: '',
  workloadKind: '',
  workloadName: '',
  nodeName: '',
  serviceNamespace: '',
  serviceName: '',
  servicePortName: '',
  labels: Object.freeze([]),
});

/** flowDirection (IANA 61) seen from the observation point: into the pod or out of it. */
export const FlowDirection = { INGRESS: 0, EGRESS: 1 } as const;
export type FlowDirection = (typeof FlowDirection)[keyof typeof FlowDirection];

export interface ExportRecord {
  flow: FlowRecord;
  /** interfaceName (IANA 82) of the observation point, e.g. "eth0" or "lo"; the file name for a replay. */
  interfaceName: string;
  /** Direction of the flow's forward (first-seen) packets relative to the observed pod. */
  flowDirection: FlowDirection;
  clusterName: string;
  source: EndpointIdentity;
  destination: EndpointIdentity;
}
