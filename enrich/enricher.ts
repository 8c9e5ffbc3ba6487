// Turns a finished flow and its observation point into an ExportRecord with
// the Kubernetes identity of both ends. Pure: state comes from the lease
// table, the owner lookups and the namespace→pod map it is given; the clock is
// injected and only decides when held flows are released.
//
// - The observed end is the pod whose namespace the flow was captured in
//   (NetnsPods), not an address lookup. Only when that namespace is not tied
//   to a pod (yet) is its side's address looked up instead (counted).
// - The remote end is the lease table's holder of the other address at the
//   flow's start, with the service port name from the remote side's port.
// - flowDirection: egress when the flow's source address is the observed
//   pod's (its IPs or its namespace's interface addresses), else ingress.
// - A flow on lo is the pod talking to itself: both ends are the observed pod,
//   and it is reported as egress (the first packet left a socket of the pod).
// - A flow is held rather than named by a guess: before the caches' first
//   sync, and while its namespace is tied to no pod or none of its addresses
//   is known yet (a new pod's namespace before its veth has an address or its
//   pod is in the API; the IP-reuse case, where the namespace's address still
//   names a terminating pod). It is named when what it waits for comes
//   (markSynced, namespaceChanged), or with what is known then when it was
//   held holdMaxAgeMs, when holdMaxFlows are held, or when its namespace goes
//   (namespaceGone).
import { PodflowError } from '../common/errors.ts';
import type { FlowRecord } from '../flow/types.ts';
import { type EndpointIdentity, type ExportRecord, FlowDirection, UNKNOWN_ENDPOINT } from './export-record.ts';
import type { ObservationPoint } from '../netns/capture.ts';
import { type IpKey, ipKey, ipKeyOf } from './ip-keys.ts';
import type { LeaseAnswer } from './leases.ts';
import type { NamespacePod } from './netns-pods.ts';
import { type OwnerLookup, resolveOwner } from './owners.ts';
import type { SlimPod } from './types.ts';

export const DEFAULT_HOLD_MAX_FLOWS = 10_000;
export const DEFAULT_HOLD_MAX_AGE_MS = 30_000;

export interface EnricherOptions {
  /** k8sClusterName of every record. */
  clusterName: string;
  /** The lease table (LeaseTable). */
  leases: { lookup(address: Uint8Array, atMs: number, port?: number, protocol?: number): LeaseAnswer; lookupKey(key: IpKey, atMs: number): LeaseAnswer };
  /** ReplicaSets and Jobs by uid (KubeCaches). */
  owners: OwnerLookup;
  /** The namespace→pod map (NetnsPods), by namespace key `${dev}:${inode}`. */
  namespaces: { get(key: string): NamespacePod | undefined };
  onRecord: (record: ExportRecord) => void;
  /** Flows held, at most. Default 10000; beyond it the oldest is released. */
  holdMaxFlows?: number;
  /** How long a flow is held, at most. Default 30 s. */
  holdMaxAgeMs?: number;
  now?: () => number;
}

export interface EnricherStats {
  /** Records handed to onRecord. */
  enriched: number;
  /** Flows held: finished before the caches' first sync, or in a namespace tied to no pod (or with no address known) yet. */
  held: number;
  /** Held flows named once what they waited for came (the sync; the namespace's pod and addresses). */
  released: number;
  /** Held flows named with what was known because they were held holdMaxAgeMs (or at flush()). */
  expiredHeld: number;
  /** Held flows named with what was known because holdMaxFlows were held. */
  overflowHeld: number;
  /** Held flows named with what was known because their namespace went from this node still untied. */
  releasedGone: number;
  /** Flows of an observation point never registered: observed end unknown, direction guessed. */
  unknownPoint: number;
  /** Flows whose observed namespace was not tied to a pod and whose observed end was named by its address (on lo: the namespace's) instead. */
  observedByAddress: number;
  /** Flows whose observed end stayed unknown. */
  observedUnknown: number;
  /** Flows whose direction was guessed (ingress): nothing known of the observed pod's addresses. */
  directionGuessed: number;
}

interface Point {
  point: ObservationPoint | undefined;
  /** `${dev}:${inode}` of the point's namespace; '' for an unknown point. */
  key: string;
  namespace: NamespacePod | undefined;
}

interface Held {
  flow: FlowRecord;
  point: Point;
  at: number;
  /** Named already (out of order: its namespace was tied, or went). */
  done: boolean;
}

const LOOPBACK_V6: IpKey = ipKey('::1')!;
const EXTERNAL_ENDPOINT: EndpointIdentity = Object.freeze({ ...UNKNOWN_ENDPOINT, type: 'external' });
const NO_POINT: Point = Object.freeze({ point: undefined, key: '', namespace: undefined });

export class Enricher {
  readonly stats: EnricherStats = {
    enriched: 0,
    held: 0,
    released: 0,
    expiredHeld: 0,
    overflowHeld: 0,
    releasedGone: 0,
    unknownPoint: 0,
    observedByAddress: 0,
    observedUnknown: 0,
    directionGuessed: 0,
  };
  readonly #options: Required<Omit<EnricherOptions, 'clusterName' | 'onRecord'>>;
  readonly #clusterName: string;
  readonly #onRecord: (record: ExportRecord) => void;
  readonly #points = new Map<number, Point>();
  /** Identities by the object they were made from: a lease answer (node, service) or a pod whose owner chain is complete. */
  readonly #identities = new WeakMap<object, EndpointIdentity>();
  /** Held flows in arrival order from #heldHead on; some may be done already. */
  #held: Held[] = [];
  #heldHead = 0;
  #heldNow = 0;
  #synced = false;

  constructor(options: EnricherOptions) {
    this.#options = {
      leases: options.leases,
      owners: options.owners,
      namespaces: options.namespaces,
      holdMaxFlows: options.holdMaxFlows ?? DEFAULT_HOLD_MAX_FLOWS,
      holdMaxAgeMs: options.holdMaxAgeMs ?? DEFAULT_HOLD_MAX_AGE_MS,
      now: options.now ?? Date.now,
    };
    this.#clusterName = options.clusterName;
    this.#onRecord = options.onRecord;
    if (!Number.isInteger(this.#options.holdMaxFlows) || this.#options.holdMaxFlows < 1 || !(this.#options.holdMaxAgeMs > 0)) {
      throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', `holdMaxFlows must be a positive integer and holdMaxAgeMs positive, got ${this.#options.holdMaxFlows} and ${this.#options.holdMaxAgeMs}`);
    }
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Flows held now. */
  get heldFlows(): number {
    return this.#heldNow;
  }

  /** Registers a capture's observation point (NodeCapture 'opened'). */
  addObservationPoint(point: ObservationPoint): void {
    const key = `${point.netnsDev}:${point.netnsInode}`;
    this.#points.set(point.id, { point, key, namespace: this.#options.namespaces.get(key) });
  }

  /** Forgets a point (NodeCapture 'closed', after its flows were flushed); flows of it still held keep what they need. */
  removeObservationPoint(id: number): void {
    this.#points.delete(id);
  }

  /** A finished flow (FlowMeter onFlow): enriched now, or held until it can be named. */
  enrich(flow: FlowRecord): void {
    let point = this.#points.get(flow.observationPointId);
    if (point === undefined) {
      this.stats.unknownPoint++;
      point = NO_POINT;
    }
    if (!this.#waits(point)) {
      this.#emit(flow, point);
      return;
    }
    this.stats.held++;
    this.#held.push({ flow, point, at: this.#options.now(), done: false });
    this.#heldNow++;
    if (this.#heldNow > this.#options.holdMaxFlows) {
      this.stats.overflowHeld++;
      this.#releaseOldest();
    }
  }

  /** The caches have synced: every held flow that waited only for that is enriched now, in order. Idempotent. */
  markSynced(): void {
    if (this.#synced) return;
    this.#synced = true;
    this.#releaseWhere(() => true);
  }

  /** A namespace's pod or addresses changed (NetnsPods onChange): its held flows that can be named now are. */
  namespaceChanged(key: string): void {
    this.#releaseWhere((h) => h.point.key === key);
  }

  /** A namespace went from this node: its flows still held are named now with what is known (nothing more will be). */
  namespaceGone(key: string): void {
    this.#releaseWhere((h) => h.point.key === key, true);
  }

  /** Releases flows held holdMaxAgeMs or longer. Called periodically (one coarse timer for all). */
  expireHeld(): void {
    const due = this.#options.now() - this.#options.holdMaxAgeMs;
    for (let h = this.#oldestHeld(); h !== undefined && h.at <= due; h = this.#oldestHeld()) {
      this.stats.expiredHeld++;
      this.#releaseOldest();
    }
  }

  /** Releases every held flow now with what is known (shutdown). */
  flush(): void {
    this.stats.expiredHeld += this.#heldNow;
    while (this.#heldNow > 0) this.#releaseOldest();
  }

  /** Whether a flow at this point must wait to be named: before the first sync, or while its namespace has no pod or no address known. */
  #waits(p: Point): boolean {
    if (!this.#synced) return true;
    const namespace = this.#namespaceOf(p);
    if (namespace === undefined || namespace.gone) return false;
    return namespace.pod === undefined || (p.point?.kind !== 'loopback' && namespace.addresses.size === 0);
  }

  #namespaceOf(p: Point): NamespacePod | undefined {
    // The namespace may have been registered after the point.
    if (p.point !== undefined && p.namespace === undefined) p.namespace = this.#options.namespaces.get(p.key);
    return p.namespace;
  }

  /** Names the held flows that match and need not wait any more (or all that match, when gone), in order. */
  #releaseWhere(match: (h: Held) => boolean, gone = false): void {
    for (let i = this.#heldHead; i < this.#held.length; i++) {
      const h = this.#held[i]!;
      if (h.done || !match(h) || (!gone && this.#waits(h.point))) continue;
      if (gone) this.stats.releasedGone++;
      else this.stats.released++;
      this.#release(h);
    }
    this.#compact();
  }

  #oldestHeld(): Held | undefined {
    while (this.#heldHead < this.#held.length && this.#held[this.#heldHead]!.done) this.#heldHead++;
    return this.#held[this.#heldHead];
  }

  #releaseOldest(): void {
    const held = this.#oldestHeld();
    if (held === undefined) return;
    this.#release(held);
    this.#compact();
  }

  #release(held: Held): void {
    held.done = true;
    this.#heldNow--;
    this.#emit(held.flow, held.point);
  }

  /** Drops released entries from the front, and compacts once half the array is behind the head. */
  #compact(): void {
    this.#oldestHeld();
    if (this.#heldHead * 2 >= this.#held.length) {
      this.#held = this.#held.slice(this.#heldHead);
      this.#heldHead = 0;
    }
  }

  #emit(flow: FlowRecord, p: Point): void {
    const point = p.point;
    const pod = this.#namespaceOf(p)?.pod;
    let record: ExportRecord;
    if (point?.kind === 'loopback') {
      const self = pod !== undefined ? this.#podIdentity(pod) : this.#observedByNamespace(p.namespace, flow);
      record = { flow, interfaceName: point.interfaceName, flowDirection: FlowDirection.EGRESS, clusterName: this.#clusterName, source: self, destination: self };
    } else {
      const ours = p.namespace?.addresses;
      let egress = false;
      if (ours === undefined || ours.size === 0) this.stats.directionGuessed++;
      else egress = ours.has(ipKeyOf(flow.sourceAddress));
      const observedAddress = egress ? flow.sourceAddress : flow.destinationAddress;
      const observed = pod !== undefined ? this.#podIdentity(pod) : this.#observedByAddress(observedAddress, flow);
      const remote = egress
        ? this.#remote(flow.destinationAddress, flow.destinationTransportPort, flow)
        : this.#remote(flow.sourceAddress, flow.sourceTransportPort, flow);
      record = {
        flow,
        interfaceName: point?.interfaceName ?? '',
        flowDirection: egress ? FlowDirection.EGRESS : FlowDirection.INGRESS,
        clusterName: this.#clusterName,
        source: egress ? observed : remote,
        destination: egress ? remote : observed,
      };
    }
    this.stats.enriched++;
    this.#onRecord(record);
  }

  #observedByAddress(address: Uint8Array, flow: FlowRecord): EndpointIdentity {
    const answer = this.#options.leases.lookup(address, flow.flowStartMilliseconds);
    if (answer.type !== 'pod') return this.#observedUnknown();
    this.stats.observedByAddress++;
    return this.#podIdentity(answer.pod);
  }

  /** A flow on lo of a namespace tied to no pod: named by the lease of one of the namespace's own addresses at the flow's start. */
  #observedByNamespace(namespace: NamespacePod | undefined, flow: FlowRecord): EndpointIdentity {
    for (const key of namespace?.addresses ?? []) {
      if (key === LOOPBACK_V6 || (typeof key === 'number' && key >>> 24 === 127)) continue;
      const answer = this.#options.leases.lookupKey(key, flow.flowStartMilliseconds);
      if (answer.type !== 'pod') continue;
      this.stats.observedByAddress++;
      return this.#podIdentity(answer.pod);
    }
    return this.#observedUnknown();
  }

  #observedUnknown(): EndpointIdentity {
    this.stats.observedUnknown++;
    return UNKNOWN_ENDPOINT;
  }

  #remote(address: Uint8Array, port: number, flow: FlowRecord): EndpointIdentity {
    const answer = this.#options.leases.lookup(address, flow.flowStartMilliseconds, port, flow.protocolIdentifier);
    switch (answer.type) {
      case 'pod':
        return this.#podIdentity(answer.pod);
      case 'node': {
        let identity = this.#identities.get(answer);
        if (identity === undefined) {
          identity = Object.freeze({ ...UNKNOWN_ENDPOINT, type: 'node', nodeName: answer.nodeName });
          this.#identities.set(answer, identity);
        }
        return identity;
      }
      case 'service': {
        let identity = this.#identities.get(answer);
        if (identity === undefined) {
          const { service, portName } = answer;
          identity = Object.freeze({
            ...UNKNOWN_ENDPOINT,
            type: 'service',
            serviceNamespace: service.namespace,
            serviceName: service.name,
            servicePortName: portName,
          });
          this.#identities.set(answer, identity);
        }
        return identity;
      }
      case 'external':
        return EXTERNAL_ENDPOINT;
      default:
        return UNKNOWN_ENDPOINT;
    }
  }

  #podIdentity(pod: SlimPod): EndpointIdentity {
    const cached = this.#identities.get(pod);
    if (cached !== undefined) return cached;
    const { workloadKind, workloadName, complete } = resolveOwner(pod, this.#options.owners);
    const identity: EndpointIdentity = Object.freeze({
      type: 'pod',
      namespace: pod.namespace,
      podName: pod.name,
      podUid: pod.uid,
      workloadKind,
      workloadName,
      nodeName: pod.nodeName,
      serviceNamespace: '',
      serviceName: '',
      servicePortName: '',
      labels: pod.labels,
    });
    // Slim pods are replaced, never changed, on update: the object is the cache key. An
    // incomplete owner chain is resolved again next time (its ReplicaSet may have arrived).
    if (complete) this.#identities.set(pod, identity);
    return identity;
  }
}
