// What the map says about one box when clicked: its conversations (peer,
// direction, rate, and round trips, retransmissions and DNS errors where the
// records carry them), its busiest pods, and a link that filters the table.
import type { EntityDetails, Perf } from './protocol.ts';
import { el, replace } from './dom.ts';
import { bytes, ms, rate } from './format.ts';

export function drawDetails(target: HTMLElement, details: EntityDetails | undefined, onFilter: (workload: string) => void, onClose: () => void): void {
  if (!details) {
    replace(target, el('p', { class: 'hint' }, 'Click a box on the map for its conversations and top talkers.'));
    return;
  }
  const e = details.entity;
  const close = el('button', { type: 'button', class: 'close' }, 'close');
  close.addEventListener('click', onClose);
  const filter = e.kind === 'workload' ? el('button', { type: 'button', id: 'filter-by-selected' }, 'show its flows') : undefined;
  filter?.addEventListener('click', () => onFilter(e.id.slice(2)));
  // The performance column only when some conversation's records carry the per-flow features.
  const withPerf = details.conversations.some((c) => perfText(c.perf) !== '');
  const conversations = el('table', { class: 'conversations' },
    el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'peer'), el('th', {}, 'rate'), el('th', {}, 'bytes'), el('th', {}, 'flows'), withPerf ? el('th', {}, 'performance') : undefined)),
    el('tbody', {}, ...details.conversations.map((c) =>
      el('tr', { 'data-peer': c.peerId },
        el('td', {}, c.direction === 'out' ? '→' : '←'),
        el('td', {}, c.peer),
        el('td', { class: 'num' }, rate(c.bytesPerSecond, 'bytes')),
        el('td', { class: 'num' }, bytes(c.bytes)),
        el('td', { class: 'num' }, String(c.flows)),
        withPerf ? el('td', {}, perfText(c.perf)) : undefined))));
  replace(target,
    el('div', { class: 'title' }, el('h3', {}, e.namespace ? `${e.namespace}/${e.name}` : e.name), close),
    el('p', {}, `${e.workloadKind || e.kind} · ${rate(e.bytesPerSecond, 'bytes')} over the last minute`, filter),
    perfText(details.perf) ? el('p', { class: 'perf' }, `${perfText(details.perf)}${details.perf.rttMs ? `, ${details.perf.rttMs.samples} handshakes` : ''}`) : undefined,
    el('h4', {}, 'conversations'),
    conversations,
    el('h4', {}, 'top talkers (held flows)'),
    el('ol', { class: 'talkers' }, ...details.topTalkers.map((t) => el('li', {}, `${t.name} · ${bytes(t.bytes)}`))));
}

function perfText(p: Perf): string {
  return [
    p.rttMs ? `RTT ${ms(p.rttMs.mean)} (max ${ms(p.rttMs.max)})` : undefined,
    p.retransmissions ? `${p.retransmissions} retransmitted` : undefined,
    p.dnsResponses ? `DNS ${p.dnsErrors ?? 0} errors of ${p.dnsResponses}` : undefined,
  ].filter((s) => s !== undefined).join(' · ');
}
