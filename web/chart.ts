// Traffic over time, stacked: one coloured area per node (or namespace, or
// workload), the seed's picture. d3-shape stacks the series and draws the
// areas, d3-scale makes the axes and their ticks; the SVG is redrawn from
// each snapshot (a few hundred points).
import { scaleLinear } from 'd3-scale';
import { area, curveMonotoneX, stack } from 'd3-shape';
import type { Chart } from './protocol.ts';
import { replace, svg } from './dom.ts';
import { clock, rate } from './format.ts';
import { colourOf, OTHER_COLOUR } from './colours.ts';

const HEIGHT = 240;
const MARGIN = { top: 10, right: 32, bottom: 22, left: 78 };

export function drawChart(target: SVGSVGElement, legend: HTMLElement, chart: Chart, stepMs: number, legendItem: (key: string, colour: string) => Node): void {
  const width = Math.max(320, target.clientWidth || 900);
  target.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
  target.setAttribute('height', String(HEIGHT));
  const points = chart.series[0]?.values.length ?? 0;
  const times = Array.from({ length: points }, (_, i) => chart.start + i * stepMs);
  const rows = times.map((_, i) => chart.series.map((s) => s.values[i]!));
  const stacked = stack<number[], number>().keys(chart.series.map((_, i) => i)).value((row, i) => row[i]!)(rows);
  const top = Math.max(1, ...stacked.flatMap((layer) => layer.map((p) => p[1])));
  const x = scaleLinear().domain([chart.start, chart.start + Math.max(1, points - 1) * stepMs]).range([MARGIN.left, width - MARGIN.right]);
  const y = scaleLinear().domain([0, top]).nice(4).range([HEIGHT - MARGIN.bottom, MARGIN.top]);
  const shape = area<[number, number]>()
    .x((_, i) => x(times[i]!))
    .y0((p) => y(p[0]))
    .y1((p) => y(p[1]))
    .curve(curveMonotoneX);

  const areas = stacked.map((layer, i) => {
    const key = chart.series[i]!.key;
    const path = svg('path', { class: 'area', 'data-key': key, d: shape(layer.map((p) => [p[0], p[1]])) ?? '', fill: key === '' ? OTHER_COLOUR : colourOf(key) });
    path.append(svg('title', {}, key || 'other'));
    return path;
  });
  const yTicks = y.ticks(4).map((v) =>
    svg('g', { class: 'tick' }, svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }), svg('text', { x: MARGIN.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, rate(v, chart.metric))),
  );
  const xTicks = x.ticks(Math.max(2, Math.floor(width / 120))).map((t) => svg('text', { class: 'tick', x: x(t), y: HEIGHT - 6, 'text-anchor': 'middle' }, clock(t)));
  replace(target, ...yTicks, ...areas, ...xTicks);
  replace(legend, ...chart.series.map((s) => legendItem(s.key, s.key === '' ? OTHER_COLOUR : colourOf(s.key))));
}
