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
//
// Representation (a cluster's every pod, node and service is here, on every
// node): a lease is a row of numbers in one Float64Array (its fields side by
// side) and its answer (a service's answers per port in a map aside: most
// leases are pods'), a holder a row of typed arrays (struct of arrays)
// found by its id through an index of rows (row-index.ts), an address a slot of an open-addressing table (address-table.ts) naming its
// first lease, the leases of an address a chain through their rows. A lease
// costs ~70 bytes. A pod holder's pod is a row of a pod table
// (pod-table.ts: the caches' own when they share it, else the table's), not
// the object it was given: its answer is made from the row when a lookup
// first asks, and kept until the pod's next event (a node's flows name a
// working set of the cluster's pods; one that names them all, a scraper's,
// costs ~230 bytes a pod more). Nearly every address has one lease, open, a
// pod's or a node's: its slot then also holds that lease's start, so a
// lookup reads the slot (one cache line) and the answer's pointer and
// nothing else; otherwise it walks the chain's rows. A lease object, its
// holder's Map and Set and its answers cost ~900 bytes and ~10 dependent
// loads. The closed leases wait in a ring in closing order.

import { PodflowError } from '../common/errors.ts';
import { AddressTable } from './address-table.ts';
import { PodTable } from './pod-table.ts';
import { keyHash, RowIndex, type RowKeys } from './row-index.ts';
import { grown, NO_ROW, Rows } from './rows.ts';
import { type IpKey, type IpPrefix, ipKey, ipKeyOf, isIpv4Mapped, parsePrefix } from './ip-keys.ts';
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
  /**
   * Where the pods are kept already (the caches' store), so the table keeps
   * no second copy: a pod applied that is found there is answered from its
   * row there. The pods' events must then come from that store (each after
   * the store has applied it) and say the state before them (applyPod's
   * previous); keepOwnPods() ends the sharing.
   */
  pods?: SharedPodRows;
}

/** Pods kept by someone else, by row (see LeaseTableOptions.pods). */
export interface SharedPodRows {
  /** The row holding pod as it is now (same namespace, name and uid), or NO_ROW. */
  rowOf(pod: SlimPod): number;
  pod(row: number): SlimPod;
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
/** Answers are shared, frozen objects: a lookup allocates nothing but a pod's answer the first time it is asked after each of the pod's events. */
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

/** Holder kinds, as stored. */
const POD = 0;
const NODE = 1;
const SERVICE = 2;
type HolderKind = typeof POD | typeof NODE | typeof SERVICE;

type HolderAnswer = PodAnswer | NodeAnswer | ServiceAnswer;

interface ServicePortAnswer {
  port: number;
  protocol: number;
  answer: ServiceAnswer;
}

/** No lease, holder or chain link. */
const NONE = -1;
const NO_PORTS: readonly ServicePortAnswer[] = Object.freeze([]);
const NO_ADDRESSES: readonly string[] = Object.freeze([]);

const EXTERNAL: NoHolderAnswer = Object.freeze({ type: 'external' });
const UNKNOWN: NoHolderAnswer = Object.freeze({ type: 'unknown' });

/** IANA protocol numbers of the protocols a Service port can name. */
const SERVICE_PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132 };

// A lease's row: [validFrom, validUntil (Infinity while open), claim order (the
// newer of two leases alike in time), next lease at the address, next open
// lease of the holder, holder row × 4 + holder kind]. Its address is beside
// the rows (#leaseV4, #leaseV6): only closing and expiry read it.
const LEASE_FIELDS = 6;
const FROM = 0;
const UNTIL = 1;
const SEQ = 2;
const NEXT_AT_ADDRESS = 3;
const NEXT_OF_HOLDER = 4;
const HOLDER_KIND = 5;

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
  readonly #maxClosed: number;
  readonly #clusterCidrs: IpPrefix[];
  readonly #onClosed: ((key: IpKey, atMs: number) => void) | undefined;

  /** Holder rows by id (#holderId): pods and services by uid, nodes by name. */
  readonly #pods = new RowIndex(this.#holderKeys());
  readonly #nodes = new RowIndex(this.#holderKeys());
  readonly #services = new RowIndex(this.#holderKeys());
  /** Each holder's id, the key it is found by: a pod's or service's uid, a node's name. */
  readonly #holderId: string[] = [];
  readonly #holderRows = new Rows(1024);
  #holderKind = new Uint8Array(1024);
  /** Ended before its delete event (endPod): its object's later states claim nothing. */
  #holderEnded = new Uint8Array(1024);
  /** The holder's first open lease; the others follow through their NEXT_OF_HOLDER. */
  #holderOpen = new Int32Array(1024).fill(NONE);
  /** A pod holder's row in #podRows; NO_ROW for the others. */
  #holderPod = new Int32Array(1024).fill(NO_ROW);
  /** Whether a pod holder's row is in the shared store (LeaseTableOptions.pods) rather than in #podRows. */
  #holderPodShared = new Uint8Array(1024);
  /** Pod holders' pods, as their answers name them, where no shared store has them. */
  readonly #podRows = new PodTable();
  #sharedPods: SharedPodRows | undefined;
  /** Addresses lost to another holder while its object still lists them: only for holders that lost one. */
  readonly #holderLost = new Map<number, Set<IpKey>>();

  readonly #leaseRows = new Rows(1024);
  /** Every lease's row of LEASE_FIELDS numbers, so a lookup reads one cache line per lease. */
  #leases = new Float64Array(1024 * LEASE_FIELDS);
  /** IPv4 leases' addresses. */
  #leaseV4 = new Uint32Array(1024);
  /** IPv6 leases' addresses (their IpKey strings); undefined for an IPv4 one. */
  readonly #leaseV6: Array<string | undefined> = [];
  /**
   * Every lease's answer, by lease, so a lookup reads it without its holder's row: an open lease's is its
   * holder's current one (set again on each of the holder's events; a pod's undefined until a lookup makes
   * it from the pod's row), a closed one's frozen at its close, so it names the holder as it was.
   */
  readonly #leaseAnswer: Array<HolderAnswer | undefined> = [];
  /**
   * A service lease's answer per port, tried in order, by lease; only service leases with ports are here
   * (by lease in an array, every pod's lease would pay a slot for it).
   */
  readonly #leasePorts = new Map<number, readonly ServicePortAnswer[]>();

  /**
   * Address → its first lease (open or closed) × 4 + that lease's holder kind; the others follow through
   * their NEXT_AT_ADDRESS. The slot's time is the first lease's validFrom when that lease alone answers
   * every lookup from then on (the only lease at the address, open, a pod's or a node's: nearly every
   * address), NaN otherwise: such a lookup reads the slot and the answer, no lease row.
   */
  readonly #addresses = new AddressTable();
  /** Closed leases in closing order (a ring), so expiry stops at the first one still in its grace period. */
  #closedRing = new Int32Array(1024);
  #closedFirst = 0;
  #closedCount = 0;
  #nextSeq = 1;
  #open = 0;

  constructor(options: LeaseTableOptions = {}) {
    this.#graceMs = options.graceMs ?? DEFAULT_LEASE_GRACE_MS;
    this.#onClosed = options.onClosed;
    this.#sharedPods = options.pods;
    const maxClosed = options.maxClosedLeases ?? DEFAULT_MAX_CLOSED_LEASES;
    if (!(this.#graceMs >= 0) || !Number.isInteger(maxClosed) || maxClosed < 1) {
      throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', `lease graceMs must be >= 0 and maxClosedLeases a positive integer, got ${this.#graceMs} and ${maxClosed}`);
    }
    this.#maxClosed = maxClosed;
    this.#clusterCidrs = (options.clusterCidrs ?? []).map((text) => {
      const prefix = parsePrefix(text);
      if (!prefix) throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', `cluster CIDR ${JSON.stringify(text)} is not address/length`);
      return prefix;
    });
  }

  /** Leases open now. */
  get openLeases(): number {
    return this.#open;
  }

  /** Closed leases kept for their grace period. */
  get closedLeases(): number {
    return this.#closedCount;
  }

  /** previous: the pod's state before this event (the caches' cached one), when known; its leases that this event closes name it. */
  applyPod(type: WatchEventType, pod: SlimPod, atMs: number, previous?: SlimPod): void {
    const finished = pod.phase === 'Succeeded' || pod.phase === 'Failed';
    const addresses = pod.hostNetwork || finished ? [] : pod.podIPs;
    // The pod's row is written after the leases its event closes have taken their answer from it.
    this.#apply(this.#pods, POD, pod.uid, type, addresses, (holder) => this.#writePod(holder, pod), NO_PORTS, atMs, previous);
  }

  /**
   * Ends a pod's leases now, before its delete event: it is terminating and
   * its namespace has gone from this node, so its address is free for the
   * next pod. Its object's later states (still listing the address until it
   * is deleted) claim nothing. Nothing happens for a pod not known.
   */
  endPod(uid: string, atMs: number): void {
    const holder = this.#pods.get(uid);
    if (holder === NO_ROW || this.#holderEnded[holder] === 1) return;
    this.expire(atMs);
    this.#holderEnded[holder] = 1;
    this.stats.podsEndedEarly++;
    for (const lease of this.#openOf(holder)) this.#close(lease, atMs);
  }

  applyNode(type: WatchEventType, node: SlimNode, atMs: number): void {
    // Keyed by name: a node that re-registers gets a new uid but is the same node.
    this.#apply(this.#nodes, NODE, node.name, type, node.addresses, () => Object.freeze({ type: 'node', nodeName: node.name }), NO_PORTS, atMs);
  }

  applyService(type: WatchEventType, service: SlimService, atMs: number): void {
    const answer = Object.freeze({ type: 'service', service, portName: '' }) satisfies ServiceAnswer;
    const ports = service.ports.map((p) => ({
      port: p.port,
      protocol: SERVICE_PROTOCOLS[p.protocol] ?? -1,
      answer: Object.freeze({ type: 'service', service, portName: p.name }) satisfies ServiceAnswer,
    }));
    this.#apply(this.#services, SERVICE, service.uid, type, service.clusterIPs, () => answer, ports, atMs);
  }

  /**
   * Who held the address (4 or 16 bytes, network order) at atMs. For a
   * service, port and protocol (IANA number) are the flow's port on the
   * service's side and give the port name.
   */
  lookup(address: Uint8Array, atMs: number, port = 0, protocol = 0): LeaseAnswer {
    if (address.length === 4 || isIpv4Mapped(address)) return this.lookupKey(ipKeyOf(address), atMs, port, protocol);
    // IPv6 from its bytes: its key (a string) is made only for an address no lease answers.
    const indexed = this.#addresses.getIpv6(address);
    return this.#answerAlone(indexed, atMs) ?? this.#walk(indexed, atMs, port, protocol, undefined, address);
  }

  lookupKey(key: IpKey, atMs: number, port = 0, protocol = 0): LeaseAnswer {
    const indexed = this.#addresses.get(key);
    return this.#answerAlone(indexed, atMs) ?? this.#walk(indexed, atMs, port, protocol, key, undefined);
  }

  /** The answer of the address's one open lease if its slot has one since atMs or earlier (#addresses), without its row. */
  #answerAlone(indexed: number, atMs: number): LeaseAnswer | undefined {
    // NaN (no lone open lease) compares false.
    if (!(atMs >= this.#addresses.foundTime)) return undefined;
    if ((indexed & 3) === POD) this.stats.lookups.pod++;
    else this.stats.lookups.node++;
    return this.#leaseAnswer[indexed >> 2] ?? this.#podAnswer(indexed >> 2);
  }

  /** The answer at atMs from the address's leases, first to last (indexed: its #addresses value); the address is its key or its bytes. */
  #walk(indexed: number, atMs: number, port: number, protocol: number, key: IpKey | undefined, address: Uint8Array | undefined): LeaseAnswer {
    const leases = this.#leases;
    let best = NONE;
    let matches = 0;
    for (let lease = indexed >> 2; lease !== NONE; lease = leases[lease * LEASE_FIELDS + NEXT_AT_ADDRESS]!) {
      const row = lease * LEASE_FIELDS;
      if (leases[row + FROM]! <= atMs && atMs < leases[row + UNTIL]!) {
        matches++;
        if (best === NONE || this.#later(lease, best)) best = lease;
      }
    }
    if (matches > 1) this.stats.lookupsAmbiguous++;
    if (best === NONE) {
      const answer = this.#noHolder(key ?? ipKeyOf(address!));
      this.stats.lookups[answer.type]++;
      return answer;
    }
    // Counted by the kind in the row, so the answer object itself is not read here.
    switch (leases[best * LEASE_FIELDS + HOLDER_KIND]! & 3) {
      case POD:
        this.stats.lookups.pod++;
        break;
      case NODE:
        this.stats.lookups.node++;
        break;
      default: {
        this.stats.lookups.service++;
        for (const p of this.#leasePorts.get(best) ?? NO_PORTS) if (p.port === port && p.protocol === protocol) return p.answer;
      }
    }
    return this.#leaseAnswer[best] ?? this.#podAnswer(best);
  }

  /** An open pod lease's answer, made from its holder's row and kept until the holder's next event. */
  #podAnswer(lease: number): PodAnswer {
    const holder = this.#leases[lease * LEASE_FIELDS + HOLDER_KIND]! >> 2;
    const answer: PodAnswer = Object.freeze({ type: 'pod', pod: this.#podOf(holder) });
    this.#leaseAnswer[lease] = answer;
    return answer;
  }

  /**
   * What a closed lease answers for its grace period: its holder as it was
   * before the event that closed it. A pod's is made from its row (or from
   * `before`) without addresses, so the row can go with the pod (the copy
   * shares its strings, owner and labels). Node and service answers are
   * small and kept as they are.
   */
  #closedAnswer(lease: number, holder: number, before: SlimPod | undefined): HolderAnswer {
    if (this.#holderKind[holder] !== POD) return this.#leaseAnswer[lease]!;
    return Object.freeze({ type: 'pod', pod: Object.freeze({ ...(before ?? this.#podOf(holder)), podIPs: NO_ADDRESSES }) });
  }

  /** A pod holder's pod, from its row in the shared store or in the table's own. */
  #podOf(holder: number): SlimPod {
    const row = this.#holderPod[holder]!;
    return this.#holderPodShared[holder] === 1 ? this.#sharedPods!.pod(row) : this.#podRows.pod(row);
  }

  /** Points a pod holder at its row in the shared store, or writes the pod into a row of the table's own. */
  #writePod(holder: number, pod: SlimPod): undefined {
    const row = this.#holderPod[holder]!;
    const ownRow = row !== NO_ROW && this.#holderPodShared[holder] === 0;
    const sharedRow = this.#sharedPods?.rowOf(pod) ?? NO_ROW;
    if (sharedRow !== NO_ROW) {
      if (ownRow) this.#podRows.release(row);
      this.#holderPod[holder] = sharedRow;
      this.#holderPodShared[holder] = 1;
    } else if (ownRow) this.#podRows.set(row, pod);
    else {
      this.#holderPod[holder] = this.#podRows.add(pod);
      this.#holderPodShared[holder] = 0;
    }
    return undefined;
  }

  /**
   * Ends the sharing of the pods' store (LeaseTableOptions.pods): every pod
   * answered from it is copied into the table's own rows, so the store may
   * change or go from now on without the table being told.
   */
  keepOwnPods(): void {
    if (this.#sharedPods === undefined) return;
    for (const holder of this.#pods.rows()) {
      if (this.#holderPodShared[holder] === 0 || this.#holderPod[holder] === NO_ROW) continue;
      this.#holderPod[holder] = this.#podRows.add(this.#sharedPods.pod(this.#holderPod[holder]!));
      this.#holderPodShared[holder] = 0;
    }
    this.#sharedPods = undefined;
  }

  /** Drops closed leases whose grace period has ended by nowMs. Applying an event does this too. */
  expire(nowMs: number): void {
    let due = 0;
    while (this.#closedCount > 0) {
      const lease = this.#closedRing[this.#closedFirst]!;
      if (this.#leases[lease * LEASE_FIELDS + UNTIL]! + this.#graceMs > nowMs) break;
      this.#dropOldestClosed();
      due++;
    }
    this.stats.closedExpired += due;
  }

  #apply(
    holders: RowIndex,
    kind: HolderKind,
    id: string,
    type: WatchEventType,
    addresses: readonly string[],
    /** The holder's answer from now on; undefined: made from its pod row when a lookup asks (#podAnswer). */
    answer: (holder: number) => HolderAnswer | undefined,
    ports: readonly ServicePortAnswer[],
    atMs: number,
    before?: SlimPod,
  ): void {
    this.expire(atMs);
    let holder = holders.get(id);
    if (type === 'delete') {
      if (holder === NO_ROW) {
        this.stats.deletesForUnknown++;
        return;
      }
      for (const lease of this.#openOf(holder)) this.#close(lease, atMs, before);
      holders.delete(id);
      this.#releaseHolder(holder);
      return;
    }
    if (holder === NO_ROW) {
      if (type === 'update') this.stats.updatesForUnknown++;
      holder = this.#newHolder(kind, id);
      holders.set(holder, id);
    } else if (type === 'add') this.stats.addsForKnown++;

    const wanted = new Set<IpKey>();
    if (this.#holderEnded[holder] === 0) {
      for (const text of addresses) {
        const key = ipKey(text);
        if (key === undefined) this.stats.invalidAddresses++;
        else wanted.add(key);
      }
    }
    // An address the object no longer lists may be claimed again later, genuinely.
    const lost = this.#holderLost.get(holder);
    if (lost !== undefined) {
      for (const key of lost) if (!wanted.has(key)) lost.delete(key);
      if (lost.size === 0) this.#holderLost.delete(holder);
    }
    // A lease whose address left the object closes naming the holder as it was before this event;
    // one still listed follows the holder's answer by itself.
    for (const lease of this.#openOf(holder)) if (!wanted.has(this.#keyOf(lease))) this.#close(lease, atMs, before);
    const current = answer(holder);
    for (let lease = this.#holderOpen[holder]!; lease !== NONE; lease = this.#leases[lease * LEASE_FIELDS + NEXT_OF_HOLDER]!) {
      this.#leaseAnswer[lease] = current;
      this.#setPorts(lease, ports);
    }
    for (const key of wanted) {
      if (this.#openLeaseAt(holder, key) !== NONE) continue;
      if (this.#holderLost.get(holder)?.has(key)) this.stats.staleClaimsIgnored++;
      else this.#claim(holder, key, atMs, current, ports);
    }
  }

  /** A new open lease of the holder on the address, answering `answer` (and per port `ports`). */
  #claim(holder: number, key: IpKey, atMs: number, answer: HolderAnswer | undefined, ports: readonly ServicePortAnswer[]): void {
    // The address's leases as they are now: closing one below may forget an older one (maxClosedLeases).
    const others: number[] = [];
    for (let other = this.#firstLease(key); other !== NONE; other = this.#leases[other * LEASE_FIELDS + NEXT_AT_ADDRESS]!) others.push(other);
    let validFrom = -Infinity;
    for (const other of others) {
      if (this.#leases[other * LEASE_FIELDS + UNTIL] !== Infinity) {
        validFrom = Math.max(validFrom, this.#leases[other * LEASE_FIELDS + UNTIL]!);
      } else {
        const otherHolder = this.#leases[other * LEASE_FIELDS + HOLDER_KIND]! >> 2;
        if (this.#holderKind[otherHolder] !== this.#holderKind[holder]) continue;
        this.stats.superseded++;
        let lost = this.#holderLost.get(otherHolder);
        if (lost === undefined) this.#holderLost.set(otherHolder, (lost = new Set()));
        lost.add(key);
        this.#close(other, atMs);
        validFrom = Math.max(validFrom, this.#leases[other * LEASE_FIELDS + UNTIL]!);
      }
    }
    const lease = this.#leaseRows.take((capacity) => {
      this.#leases = grown(this.#leases, capacity * LEASE_FIELDS);
      this.#leaseV4 = grown(this.#leaseV4, capacity);
    });
    const row = lease * LEASE_FIELDS;
    const leases = this.#leases;
    leases[row + FROM] = Math.min(validFrom, atMs);
    leases[row + UNTIL] = Infinity;
    leases[row + SEQ] = this.#nextSeq++;
    leases[row + HOLDER_KIND] = holder * 4 + this.#holderKind[holder]!;
    if (typeof key === 'number') {
      this.#leaseV4[lease] = key;
      this.#leaseV6[lease] = undefined;
    } else this.#leaseV6[lease] = key;
    // Read the address's first lease again: closing one above may have forgotten an older one (maxClosedLeases).
    leases[row + NEXT_AT_ADDRESS] = this.#firstLease(key);
    leases[row + NEXT_OF_HOLDER] = this.#holderOpen[holder]!;
    this.#holderOpen[holder] = lease;
    this.#leaseAnswer[lease] = answer;
    this.#setPorts(lease, ports);
    this.#indexAddress(key, lease);
    this.#open++;
  }

  /** before: the holder's pod as it was before the event being applied, if it is not what its row says any more (a shared row). */
  #close(lease: number, atMs: number, before?: SlimPod): void {
    // A clock step backwards must not make a lease end before it began.
    const until = Math.max(this.#leases[lease * LEASE_FIELDS + FROM]!, atMs);
    this.#leases[lease * LEASE_FIELDS + UNTIL] = until;
    const holder = this.#leases[lease * LEASE_FIELDS + HOLDER_KIND]! >> 2;
    this.#unlinkFromHolder(holder, lease);
    this.#open--;
    this.#leaseAnswer[lease] = this.#closedAnswer(lease, holder, before);
    const key = this.#keyOf(lease);
    // A closed lease no longer answers alone.
    this.#indexAddress(key, this.#firstLease(key));
    if (this.#closedCount === this.#maxClosed) {
      this.stats.closedEvicted++;
      this.#dropOldestClosed();
    }
    this.#pushClosed(lease);
    this.#onClosed?.(key, until);
  }

  /** The holder's open leases, in the order they were claimed (a copy: closing them changes the chain). */
  #openOf(holder: number): number[] {
    const leases: number[] = [];
    for (let lease = this.#holderOpen[holder]!; lease !== NONE; lease = this.#leases[lease * LEASE_FIELDS + NEXT_OF_HOLDER]!) leases.push(lease);
    return leases.reverse();
  }

  #openLeaseAt(holder: number, key: IpKey): number {
    for (let lease = this.#holderOpen[holder]!; lease !== NONE; lease = this.#leases[lease * LEASE_FIELDS + NEXT_OF_HOLDER]!) {
      if (this.#keyOf(lease) === key) return lease;
    }
    return NONE;
  }

  #unlinkFromHolder(holder: number, lease: number): void {
    const leases = this.#leases;
    const after = leases[lease * LEASE_FIELDS + NEXT_OF_HOLDER]!;
    if (this.#holderOpen[holder] === lease) {
      this.#holderOpen[holder] = after;
      return;
    }
    for (let at = this.#holderOpen[holder]!; at !== NONE; at = leases[at * LEASE_FIELDS + NEXT_OF_HOLDER]!) {
      if (leases[at * LEASE_FIELDS + NEXT_OF_HOLDER] === lease) {
        leases[at * LEASE_FIELDS + NEXT_OF_HOLDER] = after;
        return;
      }
    }
  }

  /** The address's first lease, or NONE. */
  #firstLease(key: IpKey): number {
    return this.#addresses.get(key) >> 2;
  }

  /** Points the address at its first lease (NONE: forgets the address), marking whether that lease alone answers (#addresses). */
  #indexAddress(key: IpKey, first: number): void {
    if (first === NONE) {
      this.#addresses.delete(key);
      return;
    }
    const leases = this.#leases;
    const row = first * LEASE_FIELDS;
    const kind = leases[row + HOLDER_KIND]! & 3;
    const alone = leases[row + NEXT_AT_ADDRESS] === NONE && leases[row + UNTIL] === Infinity && kind !== SERVICE;
    this.#addresses.set(key, first * 4 + kind, alone ? leases[row + FROM]! : NaN);
  }

  #setPorts(lease: number, ports: readonly ServicePortAnswer[]): void {
    if (ports.length > 0) this.#leasePorts.set(lease, ports);
    else this.#leasePorts.delete(lease);
  }

  #keyOf(lease: number): IpKey {
    return this.#leaseV6[lease] ?? this.#leaseV4[lease]!;
  }

  #pushClosed(lease: number): void {
    if (this.#closedCount === this.#closedRing.length) {
      // Unroll the ring into a bigger one, oldest first.
      const bigger = new Int32Array(Math.min(this.#maxClosed, this.#closedRing.length * 2));
      for (let i = 0; i < this.#closedCount; i++) bigger[i] = this.#closedRing[(this.#closedFirst + i) % this.#closedRing.length]!;
      this.#closedRing = bigger;
      this.#closedFirst = 0;
    }
    this.#closedRing[(this.#closedFirst + this.#closedCount) % this.#closedRing.length] = lease;
    this.#closedCount++;
  }

  /** Forgets the least recently closed lease: off its address's chain, its row free. */
  #dropOldestClosed(): void {
    const lease = this.#closedRing[this.#closedFirst]!;
    this.#closedFirst = (this.#closedFirst + 1) % this.#closedRing.length;
    this.#closedCount--;
    const key = this.#keyOf(lease);
    const leases = this.#leases;
    const after = leases[lease * LEASE_FIELDS + NEXT_AT_ADDRESS]!;
    const first = this.#firstLease(key);
    if (first === lease) this.#indexAddress(key, after);
    else {
      for (let at = first; at !== NONE; at = leases[at * LEASE_FIELDS + NEXT_AT_ADDRESS]!) {
        if (leases[at * LEASE_FIELDS + NEXT_AT_ADDRESS] === lease) {
          leases[at * LEASE_FIELDS + NEXT_AT_ADDRESS] = after;
          break;
        }
      }
      // The open lease left behind may now be the only one.
      this.#indexAddress(key, first);
    }
    this.#leaseAnswer[lease] = undefined;
    this.#leasePorts.delete(lease);
    this.#leaseV6[lease] = undefined;
    this.#leaseRows.release(lease);
  }

  /** How the holder indexes find a holder: by the id it was made with. */
  #holderKeys(): RowKeys {
    return { holds: (holder, id) => this.#holderId[holder] === id, hashOf: (holder) => keyHash(this.#holderId[holder]!, '') };
  }

  #newHolder(kind: HolderKind, id: string): number {
    const holder = this.#holderRows.take((capacity) => {
      this.#holderKind = grown(this.#holderKind, capacity);
      this.#holderEnded = grown(this.#holderEnded, capacity);
      this.#holderOpen = grown(this.#holderOpen, capacity, NONE);
      this.#holderPod = grown(this.#holderPod, capacity, NO_ROW);
      this.#holderPodShared = grown(this.#holderPodShared, capacity);
    });
    this.#holderKind[holder] = kind;
    this.#holderId[holder] = id;
    this.#holderEnded[holder] = 0;
    this.#holderOpen[holder] = NONE;
    this.#holderPod[holder] = NO_ROW;
    this.#holderPodShared[holder] = 0;
    return holder;
  }

  /** A deleted holder's row: its closed leases keep their own answers, nothing else refers to it. */
  #releaseHolder(holder: number): void {
    this.#holderId[holder] = '';
    this.#holderLost.delete(holder);
    if (this.#holderPod[holder] !== NO_ROW && this.#holderPodShared[holder] === 0) this.#podRows.release(this.#holderPod[holder]!);
    this.#holderRows.release(holder);
  }

  /** Whether lease a wins over b where both match: the one that started last, then the one still open, then the newer. */
  #later(a: number, b: number): boolean {
    const leases = this.#leases;
    const ra = a * LEASE_FIELDS;
    const rb = b * LEASE_FIELDS;
    if (leases[ra + FROM] !== leases[rb + FROM]) return leases[ra + FROM]! > leases[rb + FROM]!;
    if (leases[ra + UNTIL] !== leases[rb + UNTIL]) return leases[ra + UNTIL]! > leases[rb + UNTIL]!;
    return leases[ra + SEQ]! > leases[rb + SEQ]!;
  }

  #noHolder(key: IpKey): NoHolderAnswer {
    if (this.#clusterCidrs.length === 0) return UNKNOWN;
    for (const prefix of this.#clusterCidrs) if (prefix.contains(key)) return UNKNOWN;
    return EXTERNAL;
  }
}
