// The install (manifests/) built offline with kubectl kustomize: it builds
// with every component, every object is valid against the Kubernetes API
// schemas, nothing is privileged by default, RBAC is read-only and covers
// exactly what the agent watches, and the agent's own configuration loader
// accepts what the DaemonSet gives it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_CONFIG, ENVIRONMENT, FLAGS, configSchema, loadConfig } from '../../agent/config.ts';
import { COMPONENTS, consistencyProblems, find, kubectlProblem, kustomize, kustomizeWith, MANIFESTS, schemaProblems, type KubeObject } from './kustomize.ts';

const problem = kubectlProblem();
test('kubectl is installed and new enough to build the install offline', () => {
  assert.equal(problem, undefined, problem);
});

const base = problem ? [] : kustomize(MANIFESTS);

interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  securityContext?: { privileged?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { add?: string[]; drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }>;
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface PodSpec {
  hostPID?: boolean;
  hostNetwork?: boolean;
  priorityClassName?: string;
  terminationGracePeriodSeconds?: number;
  tolerations?: Array<{ operator?: string; key?: string; effect?: string }>;
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; hostPath?: { path: string } }>;
}
const podSpec = (objects: KubeObject[]): PodSpec => (find(objects, 'DaemonSet', 'podflow').spec as { template: { spec: PodSpec } }).template.spec;
const allContainers = (s: PodSpec) => [...s.containers, ...(s.initContainers ?? [])];

test('the install builds with kubectl kustomize, alone and with each component', { skip: problem }, () => {
  const kinds = base.map((o) => `${o.kind}/${o.metadata.name}`).sort();
  assert.deepEqual(kinds.filter((k) => !k.startsWith('ConfigMap/')), [
    'ClusterRole/podflow', 'ClusterRoleBinding/podflow', 'DaemonSet/podflow', 'Namespace/podflow', 'Service/podflow', 'ServiceAccount/podflow',
  ]);
  assert.ok(kinds.some((k) => /^ConfigMap\/podflow-config-[a-z0-9]+$/.test(k)), 'the configuration is a generated ConfigMap with a content hash');
  for (const o of base) if (o.kind !== 'Namespace' && !o.kind.startsWith('Cluster')) assert.equal(o.metadata.namespace, 'podflow', `${o.kind}/${o.metadata.name}`);
  const added: Record<string, string> = { servicemonitor: 'ServiceMonitor', prometheusrule: 'PrometheusRule', 'grafana-dashboard': 'ConfigMap' };
  for (const c of COMPONENTS) {
    const objects = kustomizeWith([c]);
    if (added[c]) assert.ok(objects.length > base.length && objects.some((o) => o.kind === added[c]), `component ${c} adds a ${added[c]}`);
  }
  assert.ok(kustomizeWith(COMPONENTS).length >= base.length + 3, 'all components together');
});

test('every object, with all components, validates against the Kubernetes API schemas, and every reference between them resolves', { skip: problem }, async () => {
  const objects = kustomizeWith(COMPONENTS);
  const problems = (await Promise.all(objects.map(schemaProblems))).flat();
  assert.deepEqual(problems, []);
  assert.deepEqual(consistencyProblems(objects), []);
});

test('the consistency check catches references that lead nowhere', { skip: problem }, () => {
  const objects = structuredClone(base);
  const spec = podSpec(objects);
  spec.volumes!.find((v) => v.configMap)!.configMap!.name = 'podflow-config';
  spec.containers[0].readinessProbe!.httpGet!.port = 'metric';
  spec.containers[0].env!.push({ name: 'FROM_NOWHERE', valueFrom: { configMapKeyRef: { name: 'podflow-extra', key: 'k' } } } as never);
  (find(objects, 'Service', 'podflow').spec as { ports: Array<{ targetPort: string }> }).ports[0].targetPort = 'metric';
  (find(objects, 'ClusterRoleBinding', 'podflow') as KubeObject & { subjects: Array<{ name: string }> }).subjects[0].name = 'podflow-agent';
  assert.deepEqual(consistencyProblems(objects).map((p) => p.replace(/:.*/, '')).sort(), ['ClusterRoleBinding/podflow', 'DaemonSet/podflow', 'DaemonSet/podflow', 'DaemonSet/podflow', 'Service/podflow']);
});

test('the schema check catches what the API server would reject', { skip: problem }, async () => {
  const ds = structuredClone(find(base, 'DaemonSet'));
  const c = (ds.spec as { template: { spec: PodSpec } }).template.spec.containers[0] as Container & Record<string, unknown>;
  (c.securityContext as Record<string, unknown>).readOnlyRootFileSystem = true; // typo: unknown field
  c.ports![0].containerPort = 'metrics' as unknown as number; // wrong type
  const problems = await schemaProblems(ds);
  assert.ok(problems.some((p) => p.includes('unknown field spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('containerPort')), problems.join('\n'));
});

test('no container is privileged by default; the agent has exactly its capabilities and a read-only root', { skip: problem }, () => {
  const spec = podSpec(base);
  for (const c of allContainers(spec)) {
    const sc = c.securityContext ?? {};
    assert.notEqual(sc.privileged, true, `${c.name} is privileged`);
    assert.equal(sc.allowPrivilegeEscalation, false, c.name);
    assert.equal(sc.readOnlyRootFilesystem, true, c.name);
    assert.deepEqual(sc.capabilities?.drop, ['ALL'], c.name);
  }
  // Each one is justified in daemonset.yaml and docs/install.md, and proven needed by capabilities.test.ts.
  assert.deepEqual([...(spec.containers[0].securityContext?.capabilities?.add ?? [])].sort(), ['NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE']);
  const docs = readFileSync(new URL('../../docs/install.md', import.meta.url), 'utf8');
  for (const cap of ['SYS_ADMIN', 'NET_RAW', 'SYS_PTRACE', 'hostPID', 'hostNetwork']) assert.match(docs, new RegExp(cap), `docs/install.md explains ${cap}`);
});

test('the privileged component is the only way to privileged', { skip: problem }, () => {
  const spec = podSpec(kustomizeWith(['privileged']));
  assert.equal(spec.containers[0].securityContext?.privileged, true);
  const others = kustomizeWith(COMPONENTS.filter((c) => c !== 'privileged'));
  for (const c of allContainers(podSpec(others))) assert.notEqual(c.securityContext?.privileged, true);
});

test('RBAC is read-only and grants exactly the resources the agent watches', { skip: problem }, () => {
  const role = find(base, 'ClusterRole', 'podflow') as KubeObject & { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; nonResourceURLs?: string[] }> };
  const granted = new Set<string>();
  for (const r of role.rules) {
    assert.equal(r.nonResourceURLs, undefined);
    for (const v of r.verbs) assert.ok(['get', 'list', 'watch'].includes(v), `verb ${v} is not read-only`);
    for (const g of r.apiGroups) for (const res of r.resources) {
      assert.ok(!res.includes('*') && g !== '*', 'no wildcards');
      granted.add(`${g}/${res}`);
    }
  }
  for (const o of base) assert.ok(!['Role', 'RoleBinding'].includes(o.kind) || o.metadata.name === 'podflow');
  // The list/watch paths in enrich/kube-caches.ts, e.g. '/api/v1/pods', '/apis/apps/v1/replicasets'.
  const source = readFileSync(new URL('../../enrich/kube-caches.ts', import.meta.url), 'utf8');
  const watched = new Set([...source.matchAll(/'\/api(?:s\/([a-z0-9.-]+))?\/v[0-9a-z]+\/([a-z]+)'/g)].map((m) => `${m[1] ?? ''}/${m[2]}`));
  assert.ok(watched.size >= 5, `found the watched paths: ${[...watched]}`);
  assert.deepEqual([...granted].sort(), [...watched].sort());
  const binding = find(base, 'ClusterRoleBinding', 'podflow') as KubeObject & { subjects: Array<{ name: string; namespace: string }>; roleRef: { name: string } };
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'podflow', namespace: 'podflow' }]);
  assert.equal(binding.roleRef.name, 'podflow');
  assert.equal((find(base, 'DaemonSet').spec as { template: { spec: { serviceAccountName: string } } }).template.spec.serviceAccountName, 'podflow');
});

test('the DaemonSet runs on every node, sees host processes and new pod namespaces, and outlives its flush', { skip: problem }, () => {
  const spec = podSpec(base);
  assert.equal(spec.hostPID, true);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.ok(spec.tolerations?.some((t) => t.operator === 'Exists' && !t.key && !t.effect), 'tolerates every taint');
  const agent = spec.containers[0];
  const netns = agent.volumeMounts?.find((m) => m.mountPath === '/var/run/netns');
  assert.ok(netns, '/var/run/netns is mounted');
  assert.equal(netns.readOnly, true);
  assert.equal(netns.mountPropagation, 'HostToContainer');
  assert.equal(spec.volumes?.find((v) => v.name === netns.name)?.hostPath?.path, '/var/run/netns');
  for (const m of agent.volumeMounts ?? []) {
    const v: { hostPath?: { path: string } } | undefined = spec.volumes?.find((x) => x.name === m.name);
    if (v?.hostPath) assert.equal(m.readOnly, true, `host path ${v.hostPath.path} is read-only`);
  }
  const node = agent.env?.find((e) => e.name === 'NODE_NAME');
  assert.equal(node?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  for (const r of ['cpu', 'memory']) {
    assert.ok(agent.resources?.requests?.[r], `requests.${r}`);
    if (r === 'memory') assert.ok(agent.resources?.limits?.[r], `limits.${r}`);
  }
});

/** The DaemonSet's configuration, as the agent would load it: the ConfigMap file, the env (downward API filled in) and the args. */
function agentInputs(objects: KubeObject[]) {
  const spec = podSpec(objects);
  const agent = spec.containers[0];
  const args = agent.args ?? [];
  assert.equal(args[0], 'agent', 'the container runs `podflow agent`');
  const flags: Array<[string, string]> = [];
  let configPath: string | undefined;
  for (const a of args.slice(1)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    assert.ok(m, `argument ${a} is --flag=value`);
    if (m[1] === 'config') configPath = m[2];
    else if (m[1] === 'set') flags.push([m[2].slice(0, m[2].indexOf('=')), m[2].slice(m[2].indexOf('=') + 1)]);
    else {
      assert.ok(m[1] in FLAGS, `--${m[1]} is a flag of podflow agent`);
      flags.push([FLAGS[m[1]], m[2]]);
    }
  }
  assert.ok(configPath, '--config is given');
  const mount = agent.volumeMounts?.find((v) => configPath!.startsWith(`${v.mountPath}/`));
  assert.ok(mount, `${configPath} is on a mounted volume`);
  const cmName = spec.volumes?.find((v) => v.name === mount.name)?.configMap?.name;
  assert.ok(cmName, `${mount.mountPath} is a ConfigMap`);
  const cm = find(objects, 'ConfigMap', cmName) as KubeObject & { data: Record<string, string> };
  const text = cm.data[configPath.slice(mount.mountPath.length + 1)];
  assert.ok(text, `ConfigMap ${cmName} holds ${configPath}`);
  const env: Record<string, string> = {};
  for (const e of agent.env ?? []) {
    // Every variable the DaemonSet sets is one the agent reads, and names a key of its schema.
    assert.ok(e.name in ENVIRONMENT || e.name === 'PODFLOW_CONFIG', `env ${e.name} is read by the agent`);
    env[e.name] = e.value ?? `value-of-${e.valueFrom?.fieldRef?.fieldPath ?? 'ref'}`;
  }
  return { text, env, flags, agent, spec };
}

function keyInSchema(key: string): boolean {
  let node: { properties?: Record<string, unknown> } = configSchema as unknown as { properties: Record<string, unknown> };
  for (const part of key.split('.')) {
    const next = node.properties?.[part];
    if (!next) return false;
    node = next as typeof node;
  }
  return true;
}

test("the ConfigMap's configuration loads with the agent's own loader, and every key the DaemonSet sets is in its schema", { skip: problem }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-cm-'));
  try {
    for (const objects of [base, kustomizeWith(['privileged'])]) {
      const { text, env, flags, agent, spec } = agentInputs(objects);
      for (const key of [...Object.keys(env).filter((n) => n in ENVIRONMENT).map((n) => ENVIRONMENT[n]), ...flags.map(([k]) => k)]) {
        assert.ok(keyInSchema(key), `${key} is a key of the agent's configuration schema`);
      }
      const file = join(dir, 'podflow.yaml');
      writeFileSync(file, text);
      const config = loadConfig({ file, env, flags });
      assert.equal(config.nodeName, 'value-of-spec.nodeName');
      assert.ok(config.collectors.length > 0);
      // The namespace sources it reads are mounted (or are the container's own /proc with hostPID).
      for (const d of config.namespaces.netnsDirs) {
        assert.ok(agent.volumeMounts?.some((m) => m.mountPath === d || (d === '/run/netns' && m.mountPath === '/var/run/netns')), `${d} is mounted`);
      }
      assert.equal(config.namespaces.procRoot, '/proc');
      // Its metrics port is the container's and the probes' port.
      const port = Number(config.metrics.listen.slice(config.metrics.listen.lastIndexOf(':') + 1));
      const metricsPort = agent.ports?.find((p) => p.name === 'metrics');
      assert.equal(metricsPort?.containerPort, port);
      assert.equal(agent.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(agent.readinessProbe?.httpGet?.path, '/readyz');
      // The grace period covers the bounded flush (the agent exits at timeout + 1 s on its own).
      assert.ok((spec.terminationGracePeriodSeconds ?? 30) >= config.shutdown.timeoutSeconds + 5, `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} covers shutdown.timeoutSeconds ${config.shutdown.timeoutSeconds}`);
      const svc = find(objects, 'Service', 'podflow') as KubeObject & { spec: { ports: Array<{ name: string; port: number; targetPort: string | number }> } };
      assert.equal(svc.spec.ports.find((p) => p.name === 'metrics')?.targetPort, 'metrics');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Every key path of a configuration tree down to its leaves (lists are leaves). */
function leafKeys(tree: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(tree).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? leafKeys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

test("the ConfigMap shows every key of the agent's configuration schema, so a new key ships with its value", { skip: problem }, () => {
  const { text } = agentInputs(base);
  const shown = leafKeys(parse(text) as Record<string, unknown>);
  // nodeName is per node: the DaemonSet sets it from the downward API (NODE_NAME).
  const expected = leafKeys(DEFAULT_CONFIG as unknown as Record<string, unknown>).filter((k) => k !== 'nodeName');
  assert.deepEqual(shown.sort(), expected.sort());
  for (const key of expected) assert.ok(keyInSchema(key), `${key} is in the schema`);
});

test('a wrong key in the ConfigMap would be caught', { skip: problem }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-cm-'));
  try {
    const { text, env, flags } = agentInputs(base);
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, text.replace('idleTimeoutSeconds:', 'idleTimeout:'));
    assert.throws(() => loadConfig({ file, env, flags }), /flow\.idleTimeout: unknown key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
