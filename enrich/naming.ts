// Naming: gives both ends of every flow their identity (EndpointIdentity,
// enrich/export-record.ts), in both modes. Wiring only: it feeds the lease
// table and the namespace→pod lookup (NamingNamespaces: the DaemonSet's
// NetnsPods, the sidecar's one pod) from KubeCaches change events and
// NodeCapture events, and runs one coarse timer for what has no event of
// its own (lease expiry, release of flows held too long, namespaces still to
// tie to a pod).
// FlowMeter's onFlow goes to enrich(). Everything with logic lives in the
// pure pieces; this file only subscribes and forwards:
// - a namespace's interface addresses (NodeCapture 'interfaces') go to the
//   namespace→pod lookup, whose changes release the flows held for it;
// - a terminating pod's address leaving its namespace, or the namespace
//   going from the node, ends that pod's leases (the address is free now);
//   a namespace gone releases its held flows;
// - a lease that closes splits the flows still open on its address at its
//   end (splitFlowsAt), except where the address is the observed pod's own,
//   so each record names one remote holder.
// Without caches (no usable Kubernetes configuration, or a service account
// that may not read them: withoutCaches()) no flow waits for a sync and
// remote ends are named by what the lease table knows: by address alone.
//
// Start it before NodeCapture.start(), so it sees every namespace and
// observation point; KubeCaches may start before or after (current objects
// are applied at start()).
import type { ExportRecord } from './export-record.ts';
import { type Clock, type ClockTimer, systemClock } from '../common/clock.ts';
import type { FlowRecord } from '../flow/types.ts';
import type { NodeCaptureEvent } from '../netns/node-capture.ts';
import { type IpKey, ipKeyBytes } from './ip-keys.ts';
import { Enricher, type EnricherStats } from './enricher.ts';
import type { KubeChangeListener } from './kube-caches.ts';
import { LeaseTable, type LeaseStats, type LeaseTableOptions, type SharedPodRows } from './leases.ts';
import type { DiscoveredNamespace } from '../netns/discovery.ts';
import type { NamespacePod, NetnsPodsOptions, NetnsPodsStats } from './netns-pods.ts';
import type { OwnerLookup } from './owners.ts';
import type { SlimNode, SlimPod, SlimService, WatchEventType } from './types.ts';

/** What Naming uses of KubeCaches. */
export interface NamingCaches extends OwnerLookup {
  on(resource: 'pod', listener: KubeChangeListener<'pod'>): void;
  on(resource: 'service', listener: KubeChangeListener<'service'>): void;
  on(resource: 'node', listener: KubeChangeListener<'node'>): void;
  off(resource: 'pod', listener: KubeChangeListener<'pod'>): void;
  off(resource: 'service', listener: KubeChangeListener<'service'>): void;
  off(resource: 'node', listener: KubeChangeListener<'node'>): void;
  synced(): boolean;
  pods(): Iterable<SlimPod>;
  /** The caches' pods by row, which the lease table answers from instead of keeping a copy (KubeCaches has it). */
  podRows?(): SharedPodRows;
  services(): Iterable<SlimService>;
  nodes(): Iterable<SlimNode>;
}

/** What Naming uses of NodeCapture. */
export interface NamingCapture {
  on(event: 'event', listener: (event: NodeCaptureEvent) => void): unknown;
  off(event: 'event', listener: (event: NodeCaptureEvent) => void): unknown;
}

/**
 * Which pod a captured namespace is (the observed end of its flows), learnt
 * from the pods and the capture's namespaces: NetnsPods (enrich/netns-pods.ts)
 * for the DaemonSet, the one pod the process is in for the sidecar.
 */
export interface NamingNamespaces {
  /** By namespace key `${dev}:${inode}`. */
  get(key: string): NamespacePod | undefined;
  /** Namespaces not tied to a pod yet. */
  readonly pending: number;
  readonly stats: NetnsPodsStats;
  applyPod(type: WatchEventType, pod: SlimPod): void;
  addNamespace(ns: DiscoveredNamespace): Promise<void>;
  setInterfaceAddresses(key: string, addresses: readonly string[]): void;
  removeNamespace(key: string): void;
  resolvePending(): Promise<void>;
}

/** What the namespace→pod lookup tells Naming. */
export type NamingNamespaceEvents = Required<Pick<NetnsPodsOptions, 'onChange' | 'onAddressFreed'>>;

export interface NamingOptions {
  /** Pods, services and nodes: the remote ends' leases, the namespaces' pods. None: no flow waits for a sync, remote ends by address alone. */
  caches?: NamingCaches;
  /** ReplicaSets and Jobs by uid, for the workload of a pod. Default: the caches'. */
  owners?: OwnerLookup;
  capture: NamingCapture;
  /** Builds the namespace→pod lookup, given what it tells Naming. */
  namespaces: (events: NamingNamespaceEvents) => NamingNamespaces;
  clusterName: string;
  onRecord: (record: ExportRecord) => void;
  leases?: Omit<LeaseTableOptions, 'onClosed' | 'pods'>;
  /**
   * Splits the open flows with this address at either end at atMs, except
   * at the observation points keep() spares (FlowMeter.splitFlowsAt): called
   * when the address's lease closes, with its end. Default: none are split.
   */
  splitFlowsAt?: (address: Uint8Array, atMs: number, keep: (observationPointId: number) => boolean) => void;
  holdMaxFlows?: number;
  holdMaxAgeMs?: number;
  /** Period of the coarse timer. Default 1000 ms. */
  tickMs?: number;
  clock?: Clock;
}

export interface NamingStats {
  leases: LeaseStats & { open: number; closed: number };
  namespaces: NetnsPodsStats & { pending: number };
  enricher: EnricherStats & { heldNow: number };
  /** Exceptions caught in event handlers (a bug; never propagated into the caches or the capture). */
  handlerErrors: number;
}

/** The owner lookup without caches: no ReplicaSet or Job is known. */
const NO_OWNERS: OwnerLookup = { replicaSet: () => undefined, job: () => undefined };

export class Naming {
  readonly leases: LeaseTable;
  readonly namespaces: NamingNamespaces;
  readonly enricher: Enricher;
  #caches: NamingCaches | undefined;
  readonly #capture: NamingCapture;
  readonly #splitFlowsAt: NonNullable<NamingOptions['splitFlowsAt']>;
  /** The namespace key of every open observation point. */
  readonly #pointNamespaces = new Map<number, string>();
  readonly #clock: Clock;
  readonly #tickMs: number;
  #timer: ClockTimer | undefined;
  #resolving = false;
  #running = false;
  #handlerErrors = 0;

  readonly #onPod: KubeChangeListener<'pod'> = (type, pod, previous) =>
    this.#guard(() => {
      this.leases.applyPod(type, pod, this.#clock.now(), previous);
      this.namespaces.applyPod(type, pod);
      this.#checkSynced();
    });
  readonly #onService: KubeChangeListener<'service'> = (type, service) =>
    this.#guard(() => {
      this.leases.applyService(type, service, this.#clock.now());
      this.#checkSynced();
    });
  readonly #onNode: KubeChangeListener<'node'> = (type, node) =>
    this.#guard(() => {
      this.leases.applyNode(type, node, this.#clock.now());
      this.#checkSynced();
    });
  readonly #onCapture = (event: NodeCaptureEvent) =>
    this.#guard(() => {
      switch (event.type) {
        case 'attached':
          this.namespaces.addNamespace(event.ns).catch(() => this.#handlerErrors++);
          break;
        case 'interfaces':
          this.namespaces.setInterfaceAddresses(event.ns.key, event.interfaces.flatMap((i) => i.addresses.map((a) => a.address)));
          break;
        case 'detached':
          this.namespaces.removeNamespace(event.ns.key);
          this.enricher.namespaceGone(event.ns.key);
          break;
        case 'opened':
          this.#pointNamespaces.set(event.point.id, `${event.point.netnsDev}:${event.point.netnsInode}`);
          this.enricher.addObservationPoint(event.point);
          break;
        case 'closed':
          this.#pointNamespaces.delete(event.point.id);
          this.enricher.removeObservationPoint(event.point.id);
          break;
      }
    });

  constructor(options: NamingOptions) {
    this.#caches = options.caches;
    this.#capture = options.capture;
    this.#clock = options.clock ?? systemClock;
    this.#tickMs = options.tickMs ?? 1000;
    this.#splitFlowsAt = options.splitFlowsAt ?? (() => {});
    this.leases = new LeaseTable({ ...options.leases, pods: options.caches?.podRows?.(), onClosed: (key, atMs) => this.#addressReleased(key, atMs) });
    this.namespaces = options.namespaces({
      onChange: (key) => this.enricher.namespaceChanged(key),
      onAddressFreed: (uid) => this.leases.endPod(uid, this.#clock.now()),
    });
    this.enricher = new Enricher({
      clusterName: options.clusterName,
      leases: this.leases,
      owners: options.owners ?? options.caches ?? NO_OWNERS,
      namespaces: this.namespaces,
      onRecord: options.onRecord,
      holdMaxFlows: options.holdMaxFlows,
      holdMaxAgeMs: options.holdMaxAgeMs,
      now: () => this.#clock.now(),
    });
  }

  /** Subscribes to the caches and the capture, applies the objects cached now, starts the timer. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const caches = this.#caches;
    if (caches !== undefined) {
      const now = this.#clock.now();
      for (const node of caches.nodes()) this.leases.applyNode('add', node, now);
      for (const service of caches.services()) this.leases.applyService('add', service, now);
      for (const pod of caches.pods()) {
        this.leases.applyPod('add', pod, now);
        this.namespaces.applyPod('add', pod);
      }
      caches.on('pod', this.#onPod);
      caches.on('service', this.#onService);
      caches.on('node', this.#onNode);
    }
    this.#capture.on('event', this.#onCapture);
    this.#checkSynced();
    this.#schedule();
  }

  /** Unsubscribes, stops the timer and enriches every flow still held. Idempotent. */
  close(): void {
    if (!this.#running) return;
    this.#running = false;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribeCaches();
    this.#capture.off('event', this.#onCapture);
    this.enricher.flush();
  }

  /**
   * The caches cannot be used from now on (the service account may not read
   * them): unsubscribes from them, and no flow waits for their sync; what
   * the lease table knows stays, remote ends are named by it.
   */
  withoutCaches(): void {
    if (this.#running) this.#unsubscribeCaches();
    // The caches' store may change from now on unheard (or go): the lease table keeps its own copy of the pods.
    this.leases.keepOwnPods();
    this.#caches = undefined;
    this.#checkSynced();
  }

  /** FlowMeter's onFlow. */
  readonly enrich = (flow: FlowRecord): void => this.enricher.enrich(flow);

  stats(): NamingStats {
    return {
      leases: { ...this.leases.stats, lookups: { ...this.leases.stats.lookups }, open: this.leases.openLeases, closed: this.leases.closedLeases },
      namespaces: { ...this.namespaces.stats, pending: this.namespaces.pending },
      enricher: { ...this.enricher.stats, heldNow: this.enricher.heldFlows },
      handlerErrors: this.#handlerErrors,
    };
  }

  /** An address's lease closed at atMs: its flows still open are split there, but not where it is the observed pod's own address. */
  #addressReleased(key: IpKey, atMs: number): void {
    this.#splitFlowsAt(ipKeyBytes(key), atMs, (id) => this.namespaces.get(this.#pointNamespaces.get(id) ?? '')?.addresses.has(key) === true);
  }

  #unsubscribeCaches(): void {
    this.#caches?.off('pod', this.#onPod);
    this.#caches?.off('service', this.#onService);
    this.#caches?.off('node', this.#onNode);
  }

  #checkSynced(): void {
    if (!this.enricher.synced && (this.#caches?.synced() ?? true)) this.enricher.markSynced();
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#guard(() => this.#tick());
      if (this.#running) this.#schedule();
    }, this.#tickMs);
  }

  #tick(): void {
    this.leases.expire(this.#clock.now());
    this.#checkSynced();
    this.enricher.expireHeld();
    if (this.namespaces.pending > 0 && !this.#resolving) {
      this.#resolving = true;
      this.namespaces
        .resolvePending()
        .catch(() => this.#handlerErrors++)
        .finally(() => (this.#resolving = false));
    }
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch {
      // A bug in naming must not stop the caches' informers or the capture.
      this.#handlerErrors++;
    }
  }
}
