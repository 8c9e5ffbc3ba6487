// The flow table: the newest flows that match the filters, both ends named as
// the terminal view names them (namespace/pod with the workload, a Service
// with its port, a node, else the address), the pod labels under the name,
// and the per-flow features the records carry.
import type { EndView, FlowRowView, Snapshot } from './protocol.ts';
import { el, replace } from './dom.ts';
import { bytes, clock, count, ms } from './format.ts';

export function drawTable(body: HTMLElement, caption: HTMLElement, flows: Snapshot['flows']): void {
  replace(caption, `${flows.matched} of ${flows.held} held flows match${flows.matched > flows.rows.length ? ` (newest ${flows.rows.length} shown)` : ''}`);
  replace(body, ...flows.rows.map(row));
}

function row(f: FlowRowView): HTMLElement {
  const summary = [
    f.perf.rttMs !== undefined ? `RTT ${ms(f.perf.rttMs)}` : undefined,
    f.perf.retransmissions ? `${f.perf.retransmissions} retransmitted` : undefined,
    f.perf.dnsErrors ? `${f.perf.dnsErrors} DNS errors` : undefined,
  ].filter((s) => s !== undefined);
  // Every other field of the record by element name, folded: a TCP flow carries some thirty.
  const fields = f.extra.length === 0 ? undefined : el('details', {}, el('summary', {}, `${f.extra.length} fields`), ...f.extra.map(([name, value]) => el('div', {}, `${name}=${value}`)));
  return el('tr', { 'data-id': String(f.id) },
    el('td', { class: 'time' }, clock(f.end)),
    end(f.source, f.sourcePort),
    end(f.destination, f.destinationPort),
    el('td', {}, f.protocol),
    el('td', { class: 'num' }, `${count(f.packets)} / ${count(f.reversePackets)}`),
    el('td', { class: 'num' }, `${bytes(f.bytes)} / ${bytes(f.reverseBytes)}`),
    el('td', {}, f.node),
    el('td', { class: 'features' }, summary.join(' · '), fields));
}

function end(e: EndView, port: number): HTMLElement {
  return el('td', { class: `end ${e.type}` },
    el('div', { class: 'name' }, port ? `${e.name} :${port}` : e.name),
    e.workload ? el('div', { class: 'workload' }, e.workload) : undefined,
    e.labels ? el('div', { class: 'labels' }, e.labels) : undefined,
    e.type === 'pod' || e.type === 'service' ? el('div', { class: 'address' }, e.address) : undefined);
}
