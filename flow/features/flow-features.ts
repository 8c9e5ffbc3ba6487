// The per-flow features as the meter sees them: one object that gets every
// packet of every flow (FlowFeatureHooks.packet) and, when a flow ends for
// any reason (timeout, eviction, split, flush), fills its record and drops
// its state (FlowFeatureHooks.end). The contract is in docs/design.md,
// "Per-flow features".
//
// State lives in one Map per feature keyed by the meter's flow slot, and
// only for flows the feature applies to (DNS: port 53): a flow of another
// kind costs a port compare per packet and nothing else, and a feature that
// is off costs nothing at all (the meter is given no hooks when every
// feature is off). TCP, which applies to most flows, keeps typed arrays of
// one entry per slot instead (flow/features/tcp.ts).
import type { DecodedPacket } from '../decode.ts';
import { IpProtocol } from '../decode.ts';
import type { FlowRecord } from '../types.ts';
import { u32 } from './bytes.ts';
import { DnsFlow, type DnsStats, emptyDnsStats } from './dns-flow.ts';
import { emptyTcpStats, TcpTracker, type TcpTrackerStats } from './tcp.ts';

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
}

export type FeatureName = keyof FeatureSwitches;

export const DEFAULT_FEATURES: Readonly<FeatureSwitches> = Object.freeze({ dns: true, tcp: true });

/** The names of the features that are on. */
export function enabledFeatures(switches: FeatureSwitches): FeatureName[] {
  return (Object.keys(switches) as FeatureName[]).filter((name) => switches[name]);
}

export const DNS_PORT = 53;

export interface FlowFeatureStats {
  dns: DnsStats;
  /** Flows that carried each feature's state. */
  dnsFlows: number;
  /** TCP headers and options the TCP feature could not read whole, and sequence gaps it forgot (docs/tcp.md). */
  tcp: TcpTrackerStats;
}

export class FlowFeatures implements FlowFeatureHooks {
  readonly stats: FlowFeatureStats;
  readonly switches: Readonly<FeatureSwitches>;
  readonly #dns = new Map<number, DnsFlow>();
  readonly #tcp: TcpTracker | undefined;

  /** For a meter of `maxFlows` slots (the TCP feature keeps state for each). */
  constructor(switches: FeatureSwitches, maxFlows: number) {
    this.switches = Object.freeze({ ...switches });
    this.#tcp = switches.tcp ? new TcpTracker(maxFlows) : undefined;
    this.stats = { dns: emptyDnsStats(), dnsFlows: 0, tcp: this.#tcp?.stats ?? emptyTcpStats() };
  }

  /** Hooks for a meter of `maxFlows` slots, or undefined when every feature is off (the meter then does no feature work at all). */
  static hooks(switches: FeatureSwitches, maxFlows: number): FlowFeatures | undefined {
    return enabledFeatures(switches).length > 0 ? new FlowFeatures(switches, maxFlows) : undefined;
  }

  packet(flow: number, direction: number, p: DecodedPacket): void {
    const t = p.transportOffset;
    if (t < 0) return;
    if (this.#tcp !== undefined && p.protocol === IpProtocol.TCP) this.#tcp.packet(flow, direction, p);
    if (this.switches.dns && (p.sourcePort === DNS_PORT || p.destinationPort === DNS_PORT)) this.#dnsPacket(flow, direction, p, t);
  }

  end(flow: number, record: FlowRecord): void {
    if (this.#tcp !== undefined && record.protocolIdentifier === IpProtocol.TCP) record.tcp = this.#tcp.end(flow);
    if (this.#dns.size !== 0) {
      const dns = this.#dns.get(flow);
      if (dns !== undefined) {
        this.#dns.delete(flow);
        const fields = dns.fields();
        if (fields !== undefined) record.dns = fields;
      }
    }
  }

  /** Open flows holding state, per feature (for tests and /metrics: it must return to 0 when the meter is empty). */
  get openStates(): { dns: number } {
    return { dns: this.#dns.size };
  }

  #dnsPacket(flow: number, direction: number, p: DecodedPacket, t: number): void {
    const protocol = p.protocol;
    if (protocol !== IpProtocol.UDP && protocol !== IpProtocol.TCP) return;
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
    let dns = this.#dns.get(flow);
    if (dns === undefined) {
      dns = new DnsFlow(this.stats.dns);
      this.#dns.set(flow, dns);
      this.stats.dnsFlows++;
    }
    if (protocol === IpProtocol.UDP) {
      dns.message(buf, start, end, p.timestampMicros);
    } else {
      dns.segment(direction === 0, u32(buf, t + 4), buf, start, end, p.timestampMicros);
    }
  }
}
