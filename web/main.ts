// The collector's page: one server-sent event stream (/events) shaped by what
// the page shows (chart dimension and metric, table filters, the selected map
// box); a change of any of them opens a new stream, whose first snapshot
// comes at once. web/protocol.ts is the contract with agent/web/server.ts.
import { byId, el, replace } from './dom.ts';
import { drawChart } from './chart.ts';
import { drawDetails } from './details.ts';
import { clock } from './format.ts';
import { drawMap } from './map.ts';
import { DIMENSIONS, type Dimension, FILTER_KEYS, type FlowFilter, METRICS, type Metric, type Snapshot, type ViewQuery } from './protocol.ts';
import { drawTable } from './table.ts';

const query: ViewQuery = {
  dimension: 'node',
  metric: 'bytes',
  filter: { namespace: '', workload: '', pod: '', protocol: '', port: '', text: '' },
  selected: '',
};
let events: EventSource | undefined;
let latest: Snapshot | undefined;

function connect(): void {
  events?.close();
  const params = new URLSearchParams({ dimension: query.dimension, metric: query.metric, selected: query.selected });
  for (const key of FILTER_KEYS) if (query.filter[key]) params.set(key, query.filter[key]);
  events = new EventSource(`/events?${params}`);
  events.onmessage = (message: MessageEvent<string>) => {
    latest = JSON.parse(message.data) as Snapshot;
    render(latest);
  };
  events.onerror = () => byId('status').classList.add('stale');
  events.onopen = () => byId('status').classList.remove('stale');
}

function render(s: Snapshot): void {
  const dropped = Object.entries(s.stats.dropped).filter(([, n]) => n > 0);
  replace(byId('status'),
    `${s.stats.sessions} exporter sessions · ${s.stats.flowRecords} flow records · ${s.stats.badMessages} bad messages · updated ${clock(s.now)}`,
    dropped.length > 0 ? el('span', { class: 'dropped' }, ` · over the view's bounds: ${dropped.map(([what, n]) => `${what} ${n}`).join(', ')}`) : undefined);
  replace(byId('window'), `last ${Math.round(s.windowMs / 60_000)} min at ${s.stepMs / 1000} s`);
  drawChart(byId<HTMLElement>('chart') as unknown as SVGSVGElement, byId('legend'), s.chart, s.stepMs, legendItem);
  drawMap(byId<HTMLElement>('map') as unknown as SVGSVGElement, s.map, query.selected, select);
  replace(byId('map-note'), s.map.hiddenEdges > 0 ? `${s.map.hiddenEdges} quieter conversations not drawn` : '');
  drawDetails(byId('details'), s.details, (workload) => setFilter({ workload }), () => select(''));
  updateChoices(s.choices);
  drawTable(byId('flow-rows'), byId('flow-caption'), s.flows);
}

function legendItem(key: string, colour: string): Node {
  const swatch = el('span', { class: 'swatch' });
  // Through the CSSOM: the page's policy allows no style attributes.
  swatch.style.background = colour;
  return el('li', { 'data-key': key }, swatch, key || 'other');
}

function select(id: string): void {
  query.selected = query.selected === id ? '' : id;
  connect();
}

function setFilter(change: Partial<FlowFilter>): void {
  Object.assign(query.filter, change);
  for (const key of FILTER_KEYS) byId<HTMLInputElement | HTMLSelectElement>(`f-${key}`).value = query.filter[key];
  connect();
}

/** The filters' drop-downs list what the window holds, keeping the current choice. */
function updateChoices(choices: Snapshot['choices']): void {
  const fill = (id: string, values: string[]) => {
    const select = byId<HTMLSelectElement>(id);
    const current = select.value;
    const wanted = ['', ...new Set([...values, current].filter((v) => v !== ''))];
    const have = [...select.options].map((o) => o.value);
    if (have.join('\n') === wanted.join('\n')) return;
    replace(select, ...wanted.map((v) => el('option', { value: v }, v || 'any')));
    select.value = current;
  };
  fill('f-namespace', choices.namespaces);
  fill('f-workload', choices.workloads);
  fill('f-protocol', choices.protocols);
}

function setUp(): void {
  const toggles = (name: string, values: readonly string[], set: (v: string) => void) => {
    const group = byId(name);
    group.querySelectorAll<HTMLButtonElement>('button').forEach((button) => {
      button.addEventListener('click', () => {
        if (!values.includes(button.value)) return;
        set(button.value);
        group.querySelectorAll('button').forEach((b) => b.classList.toggle('on', b === button));
        connect();
      });
    });
  };
  toggles('dimension', DIMENSIONS, (v) => (query.dimension = v as Dimension));
  toggles('metric', METRICS, (v) => (query.metric = v as Metric));
  let typing: number | undefined;
  for (const key of FILTER_KEYS) {
    const input = byId<HTMLInputElement | HTMLSelectElement>(`f-${key}`);
    input.addEventListener('change', () => setFilter({ [key]: input.value.trim() }));
    // Typing filters after a pause, not on every key.
    input.addEventListener('input', () => {
      clearTimeout(typing);
      typing = window.setTimeout(() => setFilter({ [key]: input.value.trim() }), 300);
    });
  }
  byId('filters').addEventListener('submit', (event) => event.preventDefault());
  byId('clear-filters').addEventListener('click', () => setFilter({ namespace: '', workload: '', pod: '', protocol: '', port: '', text: '' }));
  // The chart takes the page's width: drawn again when it changes.
  window.addEventListener('resize', () => latest && render(latest));
  connect();
}

setUp();
