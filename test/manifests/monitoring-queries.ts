// The PromQL of the install's monitoring: every query of the Grafana
// dashboard (manifests/grafana/podflow.json) and every alert of the
// PrometheusRule (built with the real `kubectl kustomize`), the Grafana
// variables replaced, and the metric selectors of an expression. Used by
// monitoring.test.ts (names against the agent's registry) and
// prometheus.test.ts (a real Prometheus scraping a real agent).
import { readFileSync } from 'node:fs';
import { find, kustomizeWith } from './kustomize.ts';

export interface Rule { alert?: string; record?: string; expr: string; annotations?: Record<string, string> }
export const rules = (): Array<{ name: string; rules: Rule[] }> => {
  const pr = find(kustomizeWith(['prometheusrule']), 'PrometheusRule', 'podflow') as unknown as { spec: { groups: Array<{ name: string; rules: Rule[] }> } };
  return pr.spec.groups;
};

/**
 * A query of the dashboard or the alerts. `label`: for a variable's
 * label_values(), the label whose values it lists. `resultLabels`: labels the
 * results must carry, named by a panel's legend (`{{collector}}`) or an
 * alert's annotations (`{{ $labels.node }}`).
 */
export interface MonitoringQuery { where: string; expr: string; label?: string; resultLabels?: string[] }

const named = (text: string, re: RegExp) => [...new Set([...text.matchAll(re)].map((m) => m[1]!))];

interface Panel { title: string; type: string; panels?: Panel[]; targets?: Array<{ expr: string; legendFormat?: string }> }
export const dashboardQueries = (): MonitoringQuery[] => {
  const d = JSON.parse(readFileSync(new URL('../../manifests/grafana/podflow.json', import.meta.url), 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; query?: { query: string } }> } };
  const out: MonitoringQuery[] = [];
  const walk = (ps: Panel[]) => ps.forEach((p) => {
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr, resultLabels: named(t.legendFormat ?? '', /\{\{\s*(\w+)\s*\}\}/g) });
    walk(p.panels ?? []);
  });
  walk(d.panels);
  for (const v of d.templating.list) {
    if (!v.query?.query) continue;
    const m = /^label_values\((.*), *(\w+)\)$/.exec(v.query.query);
    out.push(m ? { where: `variable ${v.name}`, expr: m[1]!, label: m[2]! } : { where: `variable ${v.name}`, expr: v.query.query });
  }
  return out;
};
export const alertQueries = (): MonitoringQuery[] =>
  rules().flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert ?? r.record}`, expr: r.expr, resultLabels: named(Object.values(r.annotations ?? {}).join('\n'), /\$labels\.(\w+)/g) })));

/**
 * The Grafana variables of a dashboard query replaced: $__rate_interval by
 * rateInterval, and $name / ${name} / [[name]] by values[name] (default:
 * node as Grafana's "All", `.*`; $__interval 1m; $__range 1h).
 */
export const grafanaToPromQL = (expr: string, rateInterval = '1m', values: Record<string, string> = {}) => {
  const all: Record<string, string> = { node: '.*', __interval: '1m', __range: '1h', ...values, __rate_interval: rateInterval };
  return expr.replace(/\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a?: string, b?: string, c?: string) => all[(a ?? b ?? c)!] ?? whole);
};

/**
 * The operand of an alert condition: the expression without its final
 * comparison with a number (`... > 0.01`, `... == 0`), so an empty result
 * means missing series, not a quiet alert. Other expressions unchanged.
 */
export const conditionOperand = (expr: string) => expr.replace(/\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?[0-9.]+(?:e[-+]?[0-9]+)?\s*$/, '').trim();

// Not metrics: PromQL functions, aggregations and keywords, label names inside by()/{}, durations.
const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'topk', 'bottomk', 'by', 'without', 'rate', 'increase', 'irate', 'changes', 'clamp_min',
  'clamp_max', 'histogram_quantile', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'label_values', 'abs', 'delta', 'deriv', 'time', 'vector']);
/** Metric selectors of a PromQL expression: name, label names matched, and the selector as written (`name{...}`, no range). */
export function selectors(expr: string): Array<{ name: string; labels: string[]; text: string }> {
  const out: Array<{ name: string; labels: string[]; text: string }> = [];
  // String contents blanked, same length: positions stay those of expr.
  const text = expr.replace(/"(?:[^"\\]|\\.)*"/g, (s) => `"${' '.repeat(s.length - 2)}"`);
  for (const m of text.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const [, name, braces] = m;
    const before = text.slice(0, m.index).trimEnd();
    if (PROMQL_WORDS.has(name!) || /\b(by|without|on|ignoring)\s*\([^)]*$/.test(before) || /[{,]\s*$/.test(before) || /\[\s*$/.test(before)) continue;
    if (/[0-9.]$/.test(text.slice(0, m.index))) continue; // the unit of a duration or number (5m, 1e3)
    if (text.slice(m.index + m[0].length).trimStart().startsWith('(')) continue; // a function call
    out.push({ name: name!, labels: [...(braces ?? '').matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!), text: expr.slice(m.index, m.index + m[0].length).trim() });
  }
  return out;
}
