// What a person sees of collected flows: a table of conversations (both ends
// by Kubernetes identity, or by address where there is none), summed over
// their flows, with a rate over the last seconds. Shared by `podflow collect`
// and `podflow demo`, so the demo shows exactly the collector view.
import Table from 'cli-table3';
import pc from 'picocolors';
import { protocolName } from '../flow/decode.ts';
import type { CollectedRecord, CollectorStats } from '../ipfix/collector.ts';
import type { FieldValue } from '../ipfix/decoder.ts';
import { DNS_NO_RESPONSE, TCP_NO_TIME } from '../ipfix/feature-elements.ts';
import { DnsRcodeName } from '../flow/features/dns.ts';

/** Rate window of the table: bytes of the last RATE_WINDOW_MS, per second. */
const RATE_WINDOW_MS = 10_000;

interface Conversation {
  source: string;
  sourceWorkload: string;
  destination: string;
  destinationWorkload: string;
  protocol: number;
  /** The service name its last flow asked for (flowName), '' when none said. */
  name: string;
  flows: number;
  packets: number;
  bytes: number;
  /** The TCP handshake round trip of its last flow that had one (handshakeMs), ms; undefined before. */
  rttMs: number | undefined;
  /** TCP segments with sequence space, and of them retransmitted, both ways, over its flows. */
  tcpSegments: number;
  retransmitted: number;
  /** [arrival ms, bytes] of the flows within the rate window. */
  recent: Array<[number, number]>;
}

/** Flows summed per conversation: both ends and the protocol. */
export class ConversationTable {
  readonly #conversations = new Map<string, Conversation>();

  add(record: CollectedRecord): void {
    const f = record.fields;
    const source = endpoint(f, 'Source', 'source');
    const destination = endpoint(f, 'Destination', 'destination');
    const protocol = num(f.protocolIdentifier);
    const key = `${source.name}|${destination.name}|${protocol}`;
    let c = this.#conversations.get(key);
    if (!c) {
      c = {
        source: source.name, sourceWorkload: source.workload, destination: destination.name, destinationWorkload: destination.workload,
        protocol, name: '', flows: 0, packets: 0, bytes: 0, rttMs: undefined, tcpSegments: 0, retransmitted: 0, recent: [],
      };
      this.#conversations.set(key, c);
    }
    c.name = flowName(f) || c.name;
    const bytes = num(f.octetDeltaCount) + num(f.reverseOctetDeltaCount);
    c.flows++;
    c.packets += num(f.packetDeltaCount) + num(f.reversePacketDeltaCount);
    c.bytes += bytes;
    c.rttMs = handshakeMs(f) ?? c.rttMs;
    c.tcpSegments += num(f.tcpSegmentCount) + num(f.reverseTcpSegmentCount);
    c.retransmitted += num(f.tcpRetransmittedSegmentCount) + num(f.reverseTcpRetransmittedSegmentCount);
    c.recent.push([Date.now(), bytes]);
  }

  /** The table of at most `rows` conversations, busiest first. */
  render(rows: number): string {
    const now = Date.now();
    const shown = [...this.#conversations.values()].map((c) => {
      while (c.recent.length > 0 && now - c.recent[0]![0] > RATE_WINDOW_MS) c.recent.shift();
      return { c, rate: c.recent.reduce((n, [, b]) => n + b, 0) / (RATE_WINDOW_MS / 1000) };
    });
    shown.sort((a, b) => b.rate - a.rate || b.c.bytes - a.c.bytes);
    const table = new Table({
      head: ['source', 'workload', 'destination', 'workload', 'proto', 'name', 'flows', 'packets', 'bytes', 'rate', 'rtt', 'retrans'].map((h) => pc.bold(h)),
      style: { head: [], border: [] },
      // One line per conversation: no rule between rows.
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const { c, rate } of shown.slice(0, Math.max(1, rows))) {
      const retrans = c.tcpSegments === 0 ? '' : `${c.retransmitted} (${((100 * c.retransmitted) / c.tcpSegments).toFixed(1)}%)`;
      table.push([
        c.source, pc.dim(c.sourceWorkload), c.destination, pc.dim(c.destinationWorkload), protocolName(c.protocol), c.name, c.flows, c.packets,
        formatBytes(c.bytes), `${formatBytes(rate)}/s`, c.rttMs === undefined ? '' : formatMs(c.rttMs), c.retransmitted > 0 ? pc.yellow(retrans) : retrans,
      ]);
    }
    return table.toString();
  }
}

/** The collector's counters in one line. */
export function statsLine(stats: CollectorStats): string {
  const bad = stats.badMessages > 0 ? pc.red(`${stats.badMessages} bad messages`) : '0 bad messages';
  return `${stats.sessions} sessions, ${stats.messages} messages, ${stats.flowRecords} flows, ${bad}`;
}

/** One flow record as a line: both ends, protocol, packets and bytes each way. */
export function flowLine(record: CollectedRecord): string {
  const f = record.fields;
  const source = endpoint(f, 'Source', 'source');
  const destination = endpoint(f, 'Destination', 'destination');
  const side = (e: { name: string; workload: string }) => (e.workload ? `${e.name} (${e.workload})` : e.name);
  const name = flowName(f);
  const rtt = handshakeMs(f);
  return (
    `${side(source)} → ${side(destination)}  ${protocolName(num(f.protocolIdentifier))}  ` +
    (name ? `${name}  ` : '') +
    `packets ${num(f.packetDeltaCount)} / ${num(f.reversePacketDeltaCount)}  ` +
    `bytes ${formatBytes(num(f.octetDeltaCount))} / ${formatBytes(num(f.reverseOctetDeltaCount))}` +
    (rtt === undefined ? '' : `  rtt ${formatMs(rtt)}`) +
    (f.tcpRetransmittedSegmentCount === undefined ? '' : `  retrans ${num(f.tcpRetransmittedSegmentCount)} / ${num(f.reverseTcpRetransmittedSegmentCount)}`)
  );
}

/** A TCP flow's handshake round trip at its observation point (SYN → SYN/ACK → ACK), ms; undefined when the record has none. */
function handshakeMs(f: Record<string, FieldValue>): number | undefined {
  const a = f.tcpSynToSynAckMicroseconds;
  const b = f.tcpSynAckToAckMicroseconds;
  if (a === undefined || b === undefined || num(a) === TCP_NO_TIME || num(b) === TCP_NO_TIME) return undefined;
  return (num(a) + num(b)) / 1000;
}

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

/**
 * An end as people name it: "namespace/pod" with "Kind/workload", a Service as
 * "namespace/service:port" with "Service", a node by name, else its address.
 */
function endpoint(f: Record<string, FieldValue>, prefix: 'Source' | 'Destination', address: 'source' | 'destination'): { name: string; workload: string } {
  const field = (name: string) => String(f[`k8s${prefix}${name}`] ?? '');
  const ip = String(f[`${address}IPv4Address`] ?? f[`${address}IPv6Address`] ?? '?');
  switch (field('EndpointType')) {
    case 'pod':
      return { name: `${field('Namespace')}/${field('PodName')}`, workload: field('WorkloadName') ? `${field('WorkloadKind')}/${field('WorkloadName')}` : '' };
    case 'service': {
      const port = field('ServicePortName');
      return { name: `${field('ServiceNamespace')}/${field('ServiceName')}${port ? `:${port}` : ''}`, workload: 'Service' };
    }
    case 'node':
      return { name: field('NodeName'), workload: 'Node' };
    default:
      return { name: ip, workload: '' };
  }
}

/**
 * The name a flow's per-flow features read from it (ipfix/feature-elements.ts):
 * a DNS query's name with its answer code when that is not NOERROR or no
 * answer came; '' when the record carries none.
 */
export function flowName(f: Record<string, FieldValue>): string {
  if (typeof f.dnsQueryName === 'string' && f.dnsQueryName !== '') {
    const rcode = num(f.dnsResponseCode);
    if (rcode === 0) return f.dnsQueryName;
    return `${f.dnsQueryName} ${rcode === DNS_NO_RESPONSE ? 'no answer' : (DnsRcodeName[rcode] ?? `rcode ${rcode}`)}`;
  }
  return '';
}

function num(v: FieldValue | undefined): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}
