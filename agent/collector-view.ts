// What a person sees of collected flows: a table of conversations (both ends
// by Kubernetes identity, or by address where there is none), summed over
// their flows, with a rate over the last seconds. Shared by `podflow collect`
// and `podflow demo`, so the demo shows exactly the collector view.
import Table from 'cli-table3';
import pc from 'picocolors';
import { protocolName } from '../flow/decode.ts';
import type { CollectedRecord, CollectorStats } from '../ipfix/collector.ts';
import type { FieldValue } from '../ipfix/decoder.ts';
import { DNS_NO_RESPONSE } from '../ipfix/feature-elements.ts';
import { DnsRcodeName } from '../flow/features/dns.ts';
import { endName, flowEnd, handshakeMs, num, retransmittedSegments } from './flow-fields.ts';

/** Rate window of the table: bytes of the last RATE_WINDOW_MS, per second. */
const RATE_WINDOW_MS = 10_000;
/** Conversations the table holds; flows of more are summed into one row (a collector of a big cluster must not grow without bound). */
export const MAX_CONVERSATIONS = 20_000;
const OTHER = '(other conversations)';

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
  /** [arrival second × 1000, bytes] of the flows within the rate window, one entry per second (at most 11). */
  recent: Array<[number, number]>;
}

/** Flows summed per conversation: both ends and the protocol. */
export class ConversationTable {
  readonly #conversations = new Map<string, Conversation>();

  add(record: CollectedRecord): void {
    const f = record.fields;
    const source = endName(flowEnd(f, 'source'));
    const destination = endName(flowEnd(f, 'destination'));
    const protocol = num(f.protocolIdentifier);
    let key = `${source.name}|${destination.name}|${protocol}`;
    let c = this.#conversations.get(key);
    if (!c && this.#conversations.size >= MAX_CONVERSATIONS) {
      key = OTHER;
      c = this.#conversations.get(key);
    }
    if (!c) {
      const counts = { name: '', flows: 0, packets: 0, bytes: 0, rttMs: undefined, tcpSegments: 0, retransmitted: 0, recent: [] };
      c =
        key === OTHER
          ? { source: OTHER, sourceWorkload: '', destination: '', destinationWorkload: '', protocol: -1, ...counts }
          : { source: source.name, sourceWorkload: source.workload, destination: destination.name, destinationWorkload: destination.workload, protocol, ...counts };
      this.#conversations.set(key, c);
    }
    c.name = flowName(f) || c.name;
    const bytes = num(f.octetDeltaCount) + num(f.reverseOctetDeltaCount);
    const now = Date.now();
    c.flows++;
    c.packets += num(f.packetDeltaCount) + num(f.reversePacketDeltaCount);
    c.bytes += bytes;
    c.rttMs = handshakeMs(f) ?? c.rttMs;
    c.tcpSegments += num(f.tcpSegmentCount) + num(f.reverseTcpSegmentCount);
    c.retransmitted += retransmittedSegments(f);
    const second = Math.floor(now / 1000) * 1000;
    const last = c.recent.at(-1);
    if (last?.[0] === second) last[1] += bytes;
    else c.recent.push([second, bytes]);
    // Pruned here too, not only when drawn: without a terminal the table is drawn once, at the end.
    pruneRecent(c, now);
  }

  /** The table of at most `rows` conversations, busiest first. */
  render(rows: number): string {
    const now = Date.now();
    const shown = [...this.#conversations.values()].map((c) => {
      pruneRecent(c, now);
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
        c.source, pc.dim(c.sourceWorkload), c.destination, pc.dim(c.destinationWorkload), c.protocol < 0 ? '' : protocolName(c.protocol), c.name, c.flows, c.packets,
        formatBytes(c.bytes), `${formatBytes(rate)}/s`, c.rttMs === undefined ? '' : formatMs(c.rttMs), c.retransmitted > 0 ? pc.yellow(retrans) : retrans,
      ]);
    }
    return table.toString();
  }
}

function pruneRecent(c: Conversation, now: number): void {
  let old = 0;
  while (old < c.recent.length && now - c.recent[old]![0] > RATE_WINDOW_MS) old++;
  if (old > 0) c.recent.splice(0, old);
}

/** The collector's counters in one line. */
export function statsLine(stats: CollectorStats): string {
  const bad = stats.badMessages > 0 ? pc.red(`${stats.badMessages} bad messages`) : '0 bad messages';
  return `${stats.sessions} sessions, ${stats.messages} messages, ${stats.flowRecords} flows, ${bad}`;
}

/** One flow record as a line: both ends, protocol, packets and bytes each way. */
export function flowLine(record: CollectedRecord): string {
  const f = record.fields;
  const source = endName(flowEnd(f, 'source'));
  const destination = endName(flowEnd(f, 'destination'));
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

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

/**
 * The name a flow's per-flow features read from it (ipfix/feature-elements.ts):
 * a DNS query's name with its answer code when that is not NOERROR or no
 * answer came, a TLS or QUIC server name, an HTTP request's host and target
 * with the response's status; '' when the record carries none.
 */
export function flowName(f: Record<string, FieldValue>): string {
  if (typeof f.dnsQueryName === 'string' && f.dnsQueryName !== '') {
    const rcode = num(f.dnsResponseCode);
    if (rcode === 0) return f.dnsQueryName;
    return `${f.dnsQueryName} ${rcode === DNS_NO_RESPONSE ? 'no answer' : (DnsRcodeName[rcode] ?? `rcode ${rcode}`)}`;
  }
  for (const name of [f.tlsServerName, f.quicServerName]) if (typeof name === 'string' && name !== '') return name;
  if (typeof f.httpRequestHost === 'string' && (f.httpRequestHost !== '' || f.httpRequestTarget)) {
    const status = num(f.httpStatusCode);
    return `${f.httpRequestHost}${String(f.httpRequestTarget ?? '')}${status !== 0 ? ` ${status}` : ''}`;
  }
  return '';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}
