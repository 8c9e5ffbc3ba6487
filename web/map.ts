// The service map: workloads grouped by namespace, Services, nodes and the
// outside as boxes, conversations as arrows from client to server, as thick
// as their rate. dagre lays it out (a layered graph with namespaces as
// clusters: clients to the left of what they call); the layout is made again
// only when the set of boxes and arrows changes, so the map holds still
// while rates move.
import dagre from '@dagrejs/dagre';
import { scaleSqrt } from 'd3-scale';
import type { MapEntity, ServiceMap } from './protocol.ts';
import { replace, svg } from './dom.ts';
import { rate } from './format.ts';

const BOX_HEIGHT = 38;
const CHAR_WIDTH = 7.2;

interface Layout {
  signature: string;
  width: number;
  height: number;
  boxes: Map<string, { x: number; y: number; width: number; height: number }>;
  clusters: Array<{ namespace: string; x: number; y: number; width: number; height: number }>;
  routes: Map<string, Array<{ x: number; y: number }>>;
}

/** What is drawn: the layout, and the elements a new snapshot updates in place. */
interface Drawn {
  layout: Layout;
  edges: Map<string, { path: SVGPathElement; title: SVGTitleElement }>;
  entities: Map<string, { box: SVGGElement; kind: SVGTextElement }>;
}

let drawn: Drawn | undefined;

export function drawMap(target: SVGSVGElement, map: ServiceMap, selected: string, onSelect: (id: string) => void): void {
  const signature = JSON.stringify([map.entities.map((e) => e.id), map.edges.map((e) => [e.from, e.to])]);
  // The same boxes and arrows: the elements stay (a click in progress keeps its target), only rates and the selection change.
  if (drawn?.layout.signature !== signature) drawn = draw(target, layout(map, signature), map, onSelect);
  const widest = Math.max(1, ...map.edges.map((e) => e.bytesPerSecond));
  const thickness = scaleSqrt().domain([0, widest]).range([1, 12]);
  for (const e of map.edges) {
    const { path, title } = drawn.edges.get(`${e.from}\n${e.to}`)!;
    path.setAttribute('stroke-width', thickness(e.bytesPerSecond).toFixed(1));
    title.textContent = `${rate(e.bytesPerSecond, 'bytes')} · ${rate(e.packetsPerSecond, 'packets')} · ${e.flows} flows`;
  }
  for (const e of map.entities) {
    const { box, kind } = drawn.entities.get(e.id)!;
    box.classList.toggle('selected', e.id === selected);
    kind.textContent = `${kindLabel(e)} · ${rate(e.bytesPerSecond, 'bytes')}`;
  }
}

function draw(target: SVGSVGElement, l: Layout, map: ServiceMap, onSelect: (id: string) => void): Drawn {
  const { boxes, clusters, routes, width, height } = l;
  // Its own size in pixels: the style shrinks it to the frame's width when wider, keeping its proportions.
  target.setAttribute('viewBox', `0 0 ${Math.max(width, 200)} ${Math.max(height, 80)}`);
  target.setAttribute('width', String(Math.max(width, 200)));
  target.setAttribute('height', String(Math.max(height, 80)));
  const clusterShapes = clusters.map((c) =>
    svg('g', { class: 'namespace', 'data-namespace': c.namespace },
      svg('rect', { x: c.x - c.width / 2, y: c.y - c.height / 2, width: c.width, height: c.height, rx: 8 }),
      svg('text', { x: c.x - c.width / 2 + 8, y: c.y - c.height / 2 + 14 }, c.namespace)),
  );
  const edges = new Map<string, { path: SVGPathElement; title: SVGTitleElement }>();
  for (const e of map.edges) {
    const key = `${e.from}\n${e.to}`;
    const d = (routes.get(key) ?? []).map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join('');
    const title = svg('title');
    edges.set(key, { path: svg('path', { class: 'edge', 'data-from': e.from, 'data-to': e.to, d, 'marker-end': 'url(#arrow)' }, title), title });
  }
  const entities = new Map<string, { box: SVGGElement; kind: SVGTextElement }>();
  for (const e of map.entities) {
    const b = boxes.get(e.id)!;
    const kind = svg('text', { class: 'kind', x: b.x, y: b.y + 12, 'text-anchor': 'middle' });
    const box = svg('g', { class: `entity ${e.kind}`, 'data-id': e.id, tabindex: 0, role: 'button' },
      svg('rect', { x: b.x - b.width / 2, y: b.y - b.height / 2, width: b.width, height: b.height, rx: e.kind === 'service' ? 18 : 4 }),
      svg('text', { class: 'name', x: b.x, y: b.y - 2, 'text-anchor': 'middle' }, e.name),
      kind);
    box.addEventListener('click', () => onSelect(e.id));
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') onSelect(e.id);
    });
    entities.set(e.id, { box, kind });
  }
  const arrow = svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto', markerUnits: 'userSpaceOnUse' }, svg('path', { d: 'M0,0L10,5L0,10z' })));
  replace(target, arrow, ...clusterShapes, ...[...edges.values()].map((e) => e.path), ...[...entities.values()].map((e) => e.box));
  return { layout: l, edges, entities };
}

function kindLabel(e: MapEntity): string {
  switch (e.kind) {
    case 'workload':
      return e.workloadKind;
    case 'service':
      return 'Service';
    case 'node':
      return 'node';
    default:
      return e.kind;
  }
}

function layout(map: ServiceMap, signature: string): Layout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 18, ranksep: 70, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  const namespaces = new Set<string>();
  for (const e of map.entities) {
    const label = Math.max(e.name.length, kindLabel(e).length + 12);
    g.setNode(e.id, { width: Math.min(260, 24 + label * CHAR_WIDTH), height: BOX_HEIGHT });
    if (e.namespace) {
      namespaces.add(e.namespace);
      g.setNode(`ns\n${e.namespace}`, { paddingTop: 22 });
      g.setParent(e.id, `ns\n${e.namespace}`);
    }
  }
  for (const e of map.edges) if (e.from !== e.to) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const boxes = new Map<string, { x: number; y: number; width: number; height: number }>();
  for (const e of map.entities) {
    const n = g.node(e.id);
    boxes.set(e.id, { x: n.x, y: n.y, width: n.width, height: n.height });
  }
  const clusters = [...namespaces].map((namespace) => {
    const n = g.node(`ns\n${namespace}`);
    return { namespace, x: n.x, y: n.y - 8, width: n.width, height: n.height + 16 };
  });
  const routes = new Map<string, Array<{ x: number; y: number }>>();
  for (const e of map.edges) {
    if (e.from === e.to) {
      // A workload talking to itself (over lo, or between its own pods): a loop above its box.
      const b = boxes.get(e.from)!;
      const top = b.y - b.height / 2;
      routes.set(`${e.from}\n${e.to}`, [{ x: b.x - 12, y: top }, { x: b.x - 12, y: top - 14 }, { x: b.x + 12, y: top - 14 }, { x: b.x + 12, y: top }]);
    } else {
      routes.set(`${e.from}\n${e.to}`, g.edge(e.from, e.to).points ?? []);
    }
  }
  const graph = g.graph();
  return { signature, width: (graph.width ?? 0) + 20, height: (graph.height ?? 0) + 20, boxes, clusters, routes };
}
