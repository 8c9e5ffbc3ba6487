// helm-render renders as Helm does where a chart's output depends on it:
// each case is a behaviour of Helm 3's engine that charts rely on (or trip
// over), shown on a small chart made for the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { helmRenderProblem, helmTemplate, type Rendered } from './helm.ts';

const problem = helmRenderProblem();

/** Renders a chart made of these files (Chart.yaml and values.yaml added when absent). */
function renderChart(files: Record<string, string>, values: Record<string, unknown> = {}, options: { kubeVersion?: string } = {}): Rendered {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-chart-'));
  try {
    const all = { 'Chart.yaml': 'apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: "4.5"\n', 'values.yaml': '', ...files };
    for (const [name, text] of Object.entries(all)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return helmTemplate(values, { chart: dir, release: 'rel', namespace: 'ns', ...options });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const textOf = (r: Rendered, template: string) => r.manifests.find((m) => m.template === `demo/templates/${template}`)?.text;

test('a missing value renders as nothing, not "<no value>"', { skip: problem }, () => {
  const r = renderChart({ 'templates/a.yaml': 'a: "{{ .Values.nothing }}"\nb: "{{ .Values.some.deeper }}"\n' }, { some: {} });
  assert.equal(textOf(r, 'a.yaml'), 'a: ""\nb: ""\n');
});

test('numbers from values are floats: a large one prints in exponent form unless converted with int64', { skip: problem }, () => {
  const r = renderChart({ 'templates/a.yaml': 'a: {{ .Values.n }}\nb: {{ .Values.n | int64 }}\nc: {{ .Values.port }}\n' }, { n: 1000000, port: 8443 });
  assert.equal(textOf(r, 'a.yaml'), 'a: 1e+06\nb: 1000000\nc: 8443\n');
});

test('values files coalesce over values.yaml: maps merge, a null removes a default', { skip: problem }, () => {
  const r = renderChart({ 'values.yaml': 'a: {p: 1, q: 2, r: 3}\nb: keep\nc: drop\n', 'templates/a.yaml': '{{ toJson .Values }}\n' }, { a: { q: 20, r: null }, c: null });
  assert.deepEqual(r.values, { a: { p: 1, q: 20 }, b: 'keep' });
  assert.equal(textOf(r, 'a.yaml'), '{"a":{"p":1,"q":20},"b":"keep"}\n');
});

test('include and define across files, with nindent, trunc, trimSuffix and the built-in objects', { skip: problem }, () => {
  const r = renderChart({
    'templates/_helpers.tpl': '{{- define "demo.name" -}}{{ printf "%s-%s" .Release.Name "abcdefghij" | trunc 12 | trimSuffix "-" }}{{- end -}}\n{{- define "demo.labels" -}}\nchart: {{ .Chart.Name }}-{{ .Chart.Version }}\napp: {{ .Chart.AppVersion | quote }}\n{{- end -}}\n',
    'templates/a.yaml': 'name: {{ include "demo.name" . }}\nns: {{ .Release.Namespace }}\nservice: {{ .Release.Service }}\nlabels:\n  {{- include "demo.labels" . | nindent 2 }}\nbase: {{ .Template.BasePath }}\nself: {{ .Template.Name }}\nkube: {{ .Capabilities.KubeVersion.Version }}\n',
  });
  assert.equal(textOf(r, 'a.yaml'), 'name: rel-abcdefgh\nns: ns\nservice: Helm\nlabels:\n  chart: demo-1.2.3\n  app: "4.5"\nbase: demo/templates\nself: demo/templates/a.yaml\nkube: v1.27.1\n');
  assert.equal(textOf(r, '_helpers.tpl'), undefined, 'partials are not output');
});

test('toYaml writes keys sorted and quotes what YAML would misread; documents are read as the API server reads them', { skip: problem }, () => {
  const r = renderChart({ 'templates/a.yaml': 'kind: ConfigMap\ndata:\n  {{- toYaml .Values.data | nindent 2 }}\n---\n# only a comment\n---\nkind: Other\nflag: on\n' }, { data: { zeta: 'on', alpha: '0755', mid: 'x' } });
  assert.equal(textOf(r, 'a.yaml')!.split('---')[0], 'kind: ConfigMap\ndata:\n  alpha: "0755"\n  mid: x\n  zeta: "on"\n');
  // YAML 1.1 as sigs.k8s.io/yaml reads it: an unquoted on is true.
  assert.deepEqual(r.manifests[0].objects, [{ kind: 'ConfigMap', data: { alpha: '0755', mid: 'x', zeta: 'on' } }, { kind: 'Other', flag: true }]);
});

test('required and fail stop the rendering with their message, naming the template', { skip: problem }, () => {
  assert.throws(() => renderChart({ 'templates/a.yaml': 'a: {{ required "collector.address is required" .Values.address }}\n' }), /demo\/templates\/a\.yaml.*collector\.address is required/);
  assert.throws(() => renderChart({ 'templates/a.yaml': '{{ fail "no way" }}\n' }), /demo\/templates\/a\.yaml.*no way/);
  assert.equal(textOf(renderChart({ 'templates/a.yaml': 'a: {{ required "x" .Values.address }}\n' }, { address: 'c' }), 'a.yaml'), 'a: c\n');
});

test('tpl renders a value as a template; lookup finds nothing (no cluster); env is not a function', { skip: problem }, () => {
  const r = renderChart({ 'templates/a.yaml': 'a: {{ tpl .Values.t . }}\nb: {{ len (lookup "v1" "Secret" "ns" "x") }}\n' }, { t: '{{ .Release.Name }}-x' });
  assert.equal(textOf(r, 'a.yaml'), 'a: rel-x\nb: 0\n');
  assert.throws(() => renderChart({ 'templates/a.yaml': '{{ env "HOME" }}\n' }), /function "env" not defined/);
});

test("Chart.yaml's kubeVersion is checked; what the renderer does not support is refused, not rendered differently", { skip: problem }, () => {
  const chart = 'apiVersion: v2\nname: demo\nversion: 1.0.0\nkubeVersion: ">=1.28.0-0"\n';
  assert.throws(() => renderChart({ 'Chart.yaml': chart, 'templates/a.yaml': 'a: 1\n' }), /chart requires kubeVersion: >=1\.28\.0-0 which is incompatible with Kubernetes v1\.27\.1/);
  assert.equal(textOf(renderChart({ 'Chart.yaml': chart, 'templates/a.yaml': 'a: 1\n' }, {}, { kubeVersion: 'v1.30.2' }), 'a.yaml'), 'a: 1\n');
  assert.throws(() => renderChart({ 'charts/sub/Chart.yaml': 'apiVersion: v2\nname: sub\nversion: 1.0.0\n', 'templates/a.yaml': 'a: 1\n' }), /subcharts are not supported/);
  assert.throws(() => renderChart({ 'templates/a.yaml': '{{ .Files.Get "x" }}\n' }), /nil pointer evaluating interface \{\}\.Get/);
  assert.throws(() => renderChart({ 'templates/a.yaml': 'a: 1\na: 2\n' }), /a\.yaml renders YAML the API server cannot read/);
});
