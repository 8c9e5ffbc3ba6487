// Slim Kubernetes objects: only the fields podflow uses, so a large cluster's
// caches stay small on every node. Informers reduce each object to one of
// these on arrival; nothing else keeps the full object.

/** The controlling owner (ownerReferences[controller=true]). */
export interface SlimOwner {
  kind: string;
  name: string;
  uid: string;
}

export interface SlimPod {
  uid: string;
  namespace: string;
  name: string;
  /** '' while unscheduled. */
  nodeName: string;
  hostNetwork: boolean;
  /** Pending, Running, Succeeded, Failed, Unknown. */
  phase: string;
  /** status.podIPs (all families); empty before the CNI has given one. */
  podIPs: readonly string[];
  owner: SlimOwner | undefined;
  /** Values of the configured label keys only, in configuration order. */
  labels: ReadonlyArray<readonly [key: string, value: string]>;
  /** metadata.deletionTimestamp as ms, when the pod is terminating. */
  deletingSinceMs: number | undefined;
}

export interface SlimServicePort {
  name: string;
  port: number;
  /** TCP, UDP or SCTP. */
  protocol: string;
}

export interface SlimService {
  uid: string;
  namespace: string;
  name: string;
  /** spec.clusterIPs without "None" (headless services have none). */
  clusterIPs: string[];
  ports: SlimServicePort[];
}

export interface SlimNode {
  uid: string;
  name: string;
  /** status.addresses of type InternalIP and ExternalIP. */
  addresses: string[];
}

/** ReplicaSets and Jobs: only what owner chains need (Pod → ReplicaSet → Deployment, Pod → Job → CronJob). */
export interface SlimOwnerLink {
  uid: string;
  namespace: string;
  name: string;
  owner: SlimOwner | undefined;
}

export type WatchEventType = 'add' | 'update' | 'delete';
