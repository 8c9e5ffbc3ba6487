// The time-bounded IP lease table: for every address, who held it when.
// Pure: watch events and lookups carry their time; no I/O, no timers.
//
// A lease is [validFrom, validUntil) on one address for one holder: a pod
// (status.podIPs), a node (InternalIP/ExternalIP) or a service (ClusterIPs).
// Rules, in the order they matter for naming a flow correctly:
//
// - A holder's lease closes when it is deleted, when its address leaves its
//   object, and for pods when they finish (Succeeded/Failed): a finished Job
//   pod keeps its podIPs in status while the CNI hands the address to the next
//   pod, which is how flows were misattributed elsewhere.
// - A closed lease stays for graceMs (and at most maxClosedLeases of them,
//   least recently closed dropped first, counted) so flows that end late are
//   still named.
// - A new lease starts where the address's last known lease ended, or at
//   -Infinity when nothing earlier is known: the holder owns the time since
//   the address was released (its first flows may precede the watch event
//   that announced its address) but never the previous holder's time. Pods
//   listed at start-up thereby also own flows that began before the agent.
// - One address has one holder of a kind at a time: a claim by a second pod
//   (node, service) closes the first one's open lease at that moment
//   ("superseded"), and the loser's later claims on that address are ignored
//   while its own object still lists it (stale status).
// - Where leases of different kinds overlap, a lookup takes the one that
//   started last (then the one still open, then the newer), and counts it.
// - A terminating pod's leases end when its namespace goes from this node
//   (endPod), if that comes before its delete event: the address is free
//   then, and the next pod's first flows (which precede its status event)
//   start after it.
// - Host-network pods have no lease: their addresses are their node's, named
//   by the node's lease.
//
// Out-of-order events: an update for an unknown holder is applied as an add,
// an add for a known one as an update, a delete for an unknown one changes
// nothing; each is counted.
import { LRUCache } from 'lru-cache';
import { PodflowError } from '../common/errors.ts';
import { type IpKey, type IpPrefix, ipKey, ipKeyOf, parsePrefix } from './ip-keys.ts';
import type { SlimNode, SlimPod, SlimService, WatchEventType } from './types.ts';

/** The agent's default too (kubernetes.leaseGraceSeconds): the default active timeout, the hold and a margin. */
export const DEFAULT_LEASE_GRACE_MS = 6 * 60_000;
export const DEFAULT_MAX_CLOSED_LEASES = 65_536;

export interface LeaseTableOptions {
  /** How long a closed lease still names flows that started before it closed. Default 6 min. */
  graceMs?: number;
  /** Bound on closed leases kept; the least recently closed go first (counted in closedEvicted). Default 65536. */
  maxClosedLeases?: number;
  /**
   * The cluster's pod and service CIDRs (e.g. ["10.244.0.0/16", "10.96.0.0/12"]).
   * An address nobody holds is 'external' outside them and 'unknown' inside;
   * without them every such address is 'unknown'.
   */
  clusterCidrs?: string[];
  /**
   * Told of every lease that closes (the address passes from its holder), at
   * the time it closes: a flow still open on that address was the previous
   * holder's until then (the agent ends such flows, so each record names one
   * holder).
   */
  onClosed?: (key: IpKey, atMs: number) => void;
}

export interface PodAnswer {
  readonly type: 'pod';
  readonly pod: SlimPod;
}
export interface NodeAnswer {
  readonly type: 'node';
  readonly nodeName: string;
}
export interface ServiceAnswer {
  readonly type: 'service';
  readonly service: SlimService;
  /** The service port matching the looked-up port and protocol; '' when none does or the port is unnamed. */
  readonly portName: string;
}
export interface NoHolderAnswer {
  /** 'external': outside the configured cluster CIDRs; 'unknown': inside them, or no CIDRs configured. */
  readonly type: 'external' | 'unknown';
}
/** Answers are shared, frozen objects: a lookup allocates nothing. */
export type LeaseAnswer = PodAnswer | NodeAnswer | ServiceAnswer | NoHolderAnswer;

export interface LeaseStats {
  /** Lookups by answer. */
  readonly lookups: Record<LeaseAnswer['type'], number>;
  /** Lookups where leases of more than one holder matched (the latest-starting answered). */
  lookupsAmbiguous: number;
  /** Open leases closed because another holder of the same kind claimed the address. */
  superseded: number;
  /** Claims ignored because the holder had lost that address to another (stale status). */
  staleClaimsIgnored: number;
  /** Update events for holders not seen before, applied as adds. */
  updatesForUnknown: number;
  /** Add events for holders already known, applied as updates. */
  addsForKnown: number;
  /** Delete events for holders not known; nothing changed. */
  deletesForUnknown: number;
  /** Addresses in objects that do not parse; skipped. */
  invalidAddresses: number;
  /** Closed leases dropped after their grace period. */
  closedExpired: number;
  /** Closed leases dropped by the maxClosedLeases bound before their grace period ended. */
  closedEvicted: number;
  /** Pods whose leases ended before their delete event: terminating, and their namespace gone from this node (endPod). */
  podsEndedEarly: number;
}

type HolderKind = 'pod' | 'node' | 'service';

interface Holder {
  kind: HolderKind;
  /** Ended before its delete event (endPod): its object's later states claim nothing. */
  ended: boolean;
  /** Open leases by address. */
  open: Map<IpKey, Lease>;
  /** Addresses lost to another holder while this one's object still lists them. */
  lost: Set<IpKey>;
  answer: PodAnswer | NodeAnswer | ServiceAnswer;
  /** Services: one answer per port, tried in order. */
  portAnswers: readonly ServicePortAnswer[];
}

interface ServicePortAnswer {
  port: number;
  protocol: number;
  answer: ServiceAnswer;
}

interface Lease {
  id: number;
  key: IpKey;
  holder: Holder;
  validFrom: number;
  /** Infinity while open. */
  validUntil: number;
  /** Copied from the holder while open; frozen at close so a closed lease names the holder as it was. */
  answer: PodAnswer | NodeAnswer | ServiceAnswer;
  portAnswers: readonly ServicePortAnswer[];
}

const EXTERNAL: NoHolderAnswer = Object.freeze({ type: 'external' });
const UNKNOWN: NoHolderAnswer = Object.freeze({ type: 'unknown' });

/** IANA protocol numbers of the protocols a Service port can name. */
const SERVICE_PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export class LeaseTable {
  readonly stats: LeaseStats = {
    lookups: { pod: 0, node: 0, service: 0, external: 0, unknown: 0 },
    lookupsAmbiguous: 0,
    superseded: 0,
    staleClaimsIgnored: 0,
    updatesForUnknown: 0,
    addsForKnown: 0,
    deletesForUnknown: 0,
    invalidAddresses: 0,
    closedExpired: 0,
    closedEvicted: 0,
    podsEndedEarly: 0,
  };
  readonly #graceMs: number;
  readonly #clusterCidrs: IpPrefix[];
  readonly #onClosed: ((key: IpKey, atMs: number) => void) | undefined;
  /** Every lease, open and closed, by address. Arrays stay short: an address has few holders within a grace period. */
  readonly #byAddress = new Map<IpKey, Lease[]>();
  /** Closed leases in closing order, so expiry stops at the first one still in its grace period. */
  readonly #closed: LRUCache<number, Lease>;
  readonly #pods = new Map<string, Holder>();
  readonly #nodes = new Map<string, Holder>();
  readonly #services = new Map<string, Holder>();
  #nextId = 1;
  #open = 0;

  constructor(options: LeaseTableOptions = {}) {
    this.#graceMs = options.graceMs ?? DEFAULT_LEASE_GRACE_MS;
    this.#onClosed = options.onClosed;
    const maxClosed = options.maxClosedLeases ?? DEFAULT_MAX_CLOSED_LEASES;
    if (!(this.#graceMs >= 0) || !Number.isInteger(maxClosed) || maxClosed < 1) {
      throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', `lease graceMs must be >= 0 and maxClosedLeases a positive integer, got ${this.#graceMs} and ${maxClosed}`);
    }
    this.#clusterCidrs = (options.clusterCidrs ?? []).map((text) => {
      const prefix = parsePrefix(text);
      if (!prefix) throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', `cluster CIDR ${JSON.stringify(text)} is not address/length`);
      return prefix;
    });
    this.#closed = new LRUCache<number, Lease>({
      max: maxClosed,
      dispose: (lease, _id, reason) => {
        if (reason === 'evict') this.stats.closedEvicted++;
        this.#forget(lease);
      },
    });
  }

  /** Leases open now. */
  get openLeases(): number {
    return this.#open;
  }

  /** Closed leases kept for their grace period. */
  get closedLeases(): number {
    return this.#closed.size;
  }

  applyPod(type: WatchEventType, pod: SlimPod, atMs: number): void {
    const finished = pod.phase === 'Succeeded' || pod.phase === 'Failed';
    const addresses = pod.hostNetwork || finished ? [] : pod.podIPs;
    this.#apply(this.#pods, 'pod', pod.uid, type, addresses, () => ({ answer: Object.freeze({ type: 'pod', pod }), portAnswers: [] }), atMs);
  }

  /**
   * Ends a pod's leases now, before its delete event: it is terminating and
   * its namespace has gone from this node, so its address is free for the
   * next pod. Its object's later states (still listing the address until it
   * is deleted) claim nothing. Nothing happens for a pod not known.
   */
  endPod(uid: string, atMs: number): void {
    const holder = this.#pods.get(uid);
    if (holder === undefined || holder.ended) return;
    this.expire(atMs);
    holder.ended = true;
    this.stats.podsEndedEarly++;
    for (const lease of [...holder.open.values()]) this.#close(lease, atMs);
  }

  applyNode(type: WatchEventType, node: SlimNode, atMs: number): void {
    // Keyed by name: a node that re-registers gets a new uid but is the same node.
    const answer = Object.freeze({ type: 'node', nodeName: node.name }) satisfies NodeAnswer;
    this.#apply(this.#nodes, 'node', node.name, type, node.addresses, () => ({ answer, portAnswers: [] }), atMs);
  }

  applyService(type: WatchEventType, service: SlimService, atMs: number): void {
    this.#apply(this.#services, 'service', service.uid, type, service.clusterIPs, () => serviceAnswers(service), atMs);
  }

  /**
   * Who held the address (4 or 16 bytes, network order) at atMs. For a
   * service, port and protocol (IANA number) are the flow's port on the
   * service's side and give the port name.
   */
  lookup(address: Uint8Array, atMs: number, port = 0, protocol = 0): LeaseAnswer {
    return this.lookupKey(ipKeyOf(address), atMs, port, protocol);
  }

  lookupKey(key: IpKey, atMs: number, port = 0, protocol = 0): LeaseAnswer {
    const leases = this.#byAddress.get(key);
    let best: Lease | undefined;
    let matches = 0;
    if (leases !== undefined) {
      for (const lease of leases) {
        if (lease.validFrom <= atMs && atMs < lease.validUntil) {
          matches++;
          if (best === undefined || later(lease, best)) best = lease;
        }
      }
    }
    if (matches > 1) this.stats.lookupsAmbiguous++;
    let answer: LeaseAnswer;
    if (best === undefined) answer = this.#noHolder(key);
    else if (best.answer.type !== 'service') answer = best.answer;
    else answer = portAnswer(best, port, protocol);
    this.stats.lookups[answer.type]++;
    return answer;
  }

  /** Drops closed leases whose grace period has ended by nowMs. Applying an event does this too. */
  expire(nowMs: number): void {
    const due: number[] = [];
    for (const lease of this.#closed.rvalues()) {
      if (lease === undefined || lease.validUntil + this.#graceMs > nowMs) break;
      due.push(lease.id);
    }
    for (const id of due) this.#closed.delete(id);
    this.stats.closedExpired += due.length;
  }

  #apply(
    holders: Map<string, Holder>,
    kind: HolderKind,
    id: string,
    type: WatchEventType,
    addresses: readonly string[],
    answers: () => Pick<Holder, 'answer' | 'portAnswers'>,
    atMs: number,
  ): void {
    this.expire(atMs);
    let holder = holders.get(id);
    if (type === 'delete') {
      if (holder === undefined) {
        this.stats.deletesForUnknown++;
        return;
      }
      for (const lease of [...holder.open.values()]) this.#close(lease, atMs);
      holders.delete(id);
      return;
    }
    if (holder === undefined) {
      if (type === 'update') this.stats.updatesForUnknown++;
      holder = { kind, ended: false, open: new Map(), lost: new Set(), ...answers() };
      holders.set(id, holder);
    } else {
      if (type === 'add') this.stats.addsForKnown++;
      Object.assign(holder, answers());
    }

    const wanted = new Set<IpKey>();
    for (const text of holder.ended ? [] : addresses) {
      const key = ipKey(text);
      if (key === undefined) this.stats.invalidAddresses++;
      else wanted.add(key);
    }
    // An address the object no longer lists may be claimed again later, genuinely.
    for (const key of holder.lost) if (!wanted.has(key)) holder.lost.delete(key);
    for (const [key, lease] of holder.open) {
      if (wanted.has(key)) {
        lease.answer = holder.answer;
        lease.portAnswers = holder.portAnswers;
      } else {
        this.#close(lease, atMs);
      }
    }
    for (const key of wanted) {
      if (holder.open.has(key)) continue;
      if (holder.lost.has(key)) this.stats.staleClaimsIgnored++;
      else this.#claim(holder, key, atMs);
    }
  }

  #claim(holder: Holder, key: IpKey, atMs: number): void {
    let leases = this.#byAddress.get(key);
    if (leases === undefined) this.#byAddress.set(key, (leases = []));
    let validFrom = -Infinity;
    for (const other of [...leases]) {
      if (other.validUntil !== Infinity) {
        validFrom = Math.max(validFrom, other.validUntil);
      } else if (other.holder.kind === holder.kind) {
        this.stats.superseded++;
        other.holder.lost.add(key);
        this.#close(other, atMs);
        validFrom = Math.max(validFrom, other.validUntil);
      }
    }
    const lease: Lease = {
      id: this.#nextId++,
      key,
      holder,
      validFrom: Math.min(validFrom, atMs),
      validUntil: Infinity,
      answer: holder.answer,
      portAnswers: holder.portAnswers,
    };
    leases.push(lease);
    holder.open.set(key, lease);
    this.#open++;
  }

  #close(lease: Lease, atMs: number): void {
    // A clock step backwards must not make a lease end before it began.
    lease.validUntil = Math.max(lease.validFrom, atMs);
    lease.holder.open.delete(lease.key);
    this.#open--;
    this.#closed.set(lease.id, lease);
    this.#onClosed?.(lease.key, lease.validUntil);
  }

  #forget(lease: Lease): void {
    const leases = this.#byAddress.get(lease.key);
    if (leases === undefined) return;
    const at = leases.indexOf(lease);
    if (at >= 0) leases.splice(at, 1);
    if (leases.length === 0) this.#byAddress.delete(lease.key);
  }

  #noHolder(key: IpKey): NoHolderAnswer {
    if (this.#clusterCidrs.length === 0) return UNKNOWN;
    for (const prefix of this.#clusterCidrs) if (prefix.contains(key)) return UNKNOWN;
    return EXTERNAL;
  }
}

function later(a: Lease, b: Lease): boolean {
  if (a.validFrom !== b.validFrom) return a.validFrom > b.validFrom;
  if (a.validUntil !== b.validUntil) return a.validUntil > b.validUntil;
  return a.id > b.id;
}

function serviceAnswers(service: SlimService): Pick<Holder, 'answer' | 'portAnswers'> {
  return {
    answer: Object.freeze({ type: 'service', service, portName: '' }),
    portAnswers: service.ports.map((p) => ({
      port: p.port,
      protocol: SERVICE_PROTOCOLS[p.protocol] ?? -1,
      answer: Object.freeze({ type: 'service', service, portName: p.name }),
    })),
  };
}

function portAnswer(lease: Lease, port: number, protocol: number): ServiceAnswer {
  for (const p of lease.portAnswers) if (p.port === port && p.protocol === protocol) return p.answer;
  return lease.answer as ServiceAnswer;
}
