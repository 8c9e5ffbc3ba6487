// The per-flow features as the meter sees them: one object that gets every
// packet of every flow (FlowFeatureHooks.packet) and, when a flow ends for
// any reason (timeout, eviction, split, flush), fills its record and drops
// its state (FlowFeatureHooks.end). The contract is in docs/design.md,
// "Per-flow features".
//
// State lives in one Map per feature keyed by the meter's flow slot, and
// only for flows the feature applies to (DNS: port 53; TLS and HTTP: TCP
// flows with payload; QUIC: UDP flows whose first datagram has a long
// header): a packet without payload costs a few compares, and a feature
// that is off nothing (the meter is given no hooks when every feature is
// off). A reader that has what it wants (or gave up) is no longer called.
// TCP, which applies to most flows, keeps typed arrays of one entry per
// slot instead (flow/features/tcp.ts).
import type { DecodedPacket } from '../decode.ts';
import { IpProtocol } from '../decode.ts';
import type { FlowRecord } from '../types.ts';
import { readU32BE } from '../records.ts';
import { DnsFlow, type DnsStats, emptyDnsStats } from './dns-flow.ts';
import { emptyHttpStats, HttpFlow, type HttpStats } from './http-flow.ts';
import { emptyTcpStats, TcpTracker, type TcpTrackerStats } from './tcp.ts';
import { emptyQuicStats, QuicFlow, type QuicStats } from './quic-flow.ts';
import { emptyTlsStats, TlsFlow, type TlsStats } from './tls-flow.ts';

/** What the meter calls. `flow` is the meter's slot of the flow: stable from its first packet to its end, reused after. */
export interface FlowFeatureHooks {
  /** Every packet, after the meter counted it; `direction` 0 is the flow's first packet's direction. */
  packet(flow: number, direction: number, p: DecodedPacket): void;
  /** The flow ended: put its fields on `record` and forget it (the slot is free from now on). */
  end(flow: number, record: FlowRecord): void;
}

/** Which features run (the agent's `features` configuration). */
export interface FeatureSwitches {
  dns: boolean;
  tcp: boolean;
  tls: boolean;
  quic: boolean;
  http: boolean;
}

export type FeatureName = keyof FeatureSwitches;

/** DNS and TCP are on by default (cheap); TLS, QUIC and HTTP read the first payloads of every TCP or UDP flow, and need a snaplen that keeps them. */
export const DEFAULT_FEATURES: Readonly<FeatureSwitches> = Object.freeze({ dns: true, tcp: true, tls: false, quic: false, http: false });

/** The names of the features that are on. */
export function enabledFeatures(switches: FeatureSwitches): FeatureName[] {
  return (Object.keys(switches) as FeatureName[]).filter((name) => switches[name]);
}

export const DNS_PORT = 53;
/** A QUIC long header (an Initial among them) has the first bit set: other UDP flows get no QUIC state. */
const QUIC_LONG_HEADER = 0x80;

export interface FlowFeatureStats {
  dns: DnsStats;
  /** Flows that carried DNS state. */
  dnsFlows: number;
  /** TCP headers and options the TCP feature could not read whole, and sequence gaps it forgot (docs/tcp.md). */
  tcp: TcpTrackerStats;
  tls: TlsStats;
  quic: QuicStats;
  http: HttpStats;
}

export class FlowFeatures implements FlowFeatureHooks {
  readonly stats: FlowFeatureStats;
  readonly switches: Readonly<FeatureSwitches>;
  readonly #dns = new Map<number, DnsFlow>();
  readonly #tcp: TcpTracker | undefined;
  readonly #tls = new Map<number, TlsFlow>();
  readonly #quic = new Map<number, QuicFlow>();
  readonly #http = new Map<number, HttpFlow>();
  /** TLS, QUIC or HTTP is on: the payloads of every TCP or UDP flow are looked at. */
  readonly #readsEveryPayload: boolean;

  /** For a meter of `maxFlows` slots (the TCP feature keeps state for each). */
  constructor(switches: FeatureSwitches, maxFlows: number) {
    this.switches = Object.freeze({ ...switches });
    this.#tcp = switches.tcp ? new TcpTracker(maxFlows) : undefined;
    this.#readsEveryPayload = switches.tls || switches.quic || switches.http;
    this.stats = { dns: emptyDnsStats(), dnsFlows: 0, tcp: this.#tcp?.stats ?? emptyTcpStats(), tls: emptyTlsStats(), quic: emptyQuicStats(), http: emptyHttpStats() };
  }

  /** Hooks for a meter of `maxFlows` slots, or undefined when every feature is off (the meter then does no feature work at all). */
  static hooks(switches: FeatureSwitches, maxFlows: number): FlowFeatures | undefined {
    return enabledFeatures(switches).length > 0 ? new FlowFeatures(switches, maxFlows) : undefined;
  }

  packet(flow: number, direction: number, p: DecodedPacket): void {
    const t = p.transportOffset;
    if (t < 0) return;
    const protocol = p.protocol;
    if (this.#tcp !== undefined && protocol === IpProtocol.TCP) this.#tcp.packet(flow, direction, p);
    if (protocol !== IpProtocol.UDP && protocol !== IpProtocol.TCP) return;
    // With the defaults (DNS and TCP) only port 53 has payloads to read.
    if (!this.#readsEveryPayload && p.sourcePort !== DNS_PORT && p.destinationPort !== DNS_PORT) return;
    const buf = p.buffer;
    // The IP packet's end, or what the capture kept of it.
    const end = Math.min(p.capturedEnd, t + p.transportBytes);
    let start: number;
    if (protocol === IpProtocol.UDP) {
      start = t + 8;
    } else {
      if (t + 13 > end) return;
      start = t + (buf[t + 12]! >> 4) * 4;
    }
    if (start >= end) return; // no payload (a TCP handshake or ACK)
    const switches = this.switches;
    const forward = direction === 0;
    if (p.sourcePort === DNS_PORT || p.destinationPort === DNS_PORT) {
      if (switches.dns) this.#dnsPacket(flow, forward, protocol, buf, start, end, t, p.timestampMicros);
      return;
    }
    if (protocol === IpProtocol.TCP) {
      const seq = readU32BE(buf, t + 4);
      if (switches.tls) {
        let tls = this.#tls.get(flow);
        if (tls === undefined) this.#tls.set(flow, (tls = new TlsFlow(this.stats.tls)));
        if (tls.wanted) tls.segment(forward, seq, buf, start, end);
      }
      if (switches.http) {
        let http = this.#http.get(flow);
        if (http === undefined) this.#http.set(flow, (http = new HttpFlow(this.stats.http)));
        if (http.wanted) http.segment(forward, buf, start, end);
      }
    } else if (switches.quic) {
      let quic = this.#quic.get(flow);
      if (quic === undefined) {
        if ((buf[start]! & QUIC_LONG_HEADER) === 0) return;
        this.#quic.set(flow, (quic = new QuicFlow(this.stats.quic)));
      }
      if (quic.wanted) quic.datagram(forward, buf, start, end);
    }
  }

  end(flow: number, record: FlowRecord): void {
    if (this.#tcp !== undefined && record.protocolIdentifier === IpProtocol.TCP) record.tcp = this.#tcp.end(flow);
    // At most one application feature per record: the first that read something.
    if (this.#dns.size !== 0) {
      const dns = this.#dns.get(flow);
      if (dns !== undefined) {
        this.#dns.delete(flow);
        const fields = dns.fields();
        if (fields !== undefined) record.dns = fields;
      }
    }
    if (this.#tls.size !== 0) {
      const tls = this.#tls.get(flow);
      if (tls !== undefined) {
        this.#tls.delete(flow);
        tls.end();
        const fields = tls.fields();
        if (fields !== undefined && record.dns === undefined) record.tls = fields;
      }
    }
    if (this.#quic.size !== 0) {
      const quic = this.#quic.get(flow);
      if (quic !== undefined) {
        this.#quic.delete(flow);
        quic.end();
        const fields = quic.fields();
        if (fields !== undefined && record.dns === undefined && record.tls === undefined) record.quic = fields;
      }
    }
    if (this.#http.size !== 0) {
      const http = this.#http.get(flow);
      if (http !== undefined) {
        this.#http.delete(flow);
        const fields = http.fields();
        if (fields !== undefined && record.dns === undefined && record.tls === undefined && record.quic === undefined) record.http = fields;
      }
    }
  }

  /** Open flows holding state, per feature kept by Map (for tests: it must return to 0 when the meter is empty). */
  get openStates(): Record<'dns' | 'tls' | 'quic' | 'http', number> {
    return { dns: this.#dns.size, tls: this.#tls.size, quic: this.#quic.size, http: this.#http.size };
  }

  #dnsPacket(flow: number, forward: boolean, protocol: number, buf: Uint8Array, start: number, end: number, t: number, timeMicros: number): void {
    let dns = this.#dns.get(flow);
    if (dns === undefined) {
      dns = new DnsFlow(this.stats.dns);
      this.#dns.set(flow, dns);
      this.stats.dnsFlows++;
    }
    if (protocol === IpProtocol.UDP) dns.message(buf, start, end, timeMicros);
    else dns.segment(forward, readU32BE(buf, t + 4), buf, start, end, timeMicros);
  }
}
