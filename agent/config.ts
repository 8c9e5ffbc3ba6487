// The agent's configuration: a YAML file (the ConfigMap), environment
// variables and command-line flags, in increasing precedence over defaults.
// Validated once at start with a JSON Schema (exported as a plain object, so
// the install manifests can be checked against it) plus the checks a schema
// cannot make (collector URLs parse, named files are readable); every problem
// names its key. docs/configuration.md documents each key.
import { accessSync, constants, readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { PodflowError } from '../common/errors.ts';
import { deepMerge, listenSchema, type LogLevel, logSchema, objectSchema as obj, type Tree } from './config-tree.ts';
import { parseExportTarget } from '../ipfix/target.ts';
import type { FeatureElementSet } from '../ipfix/feature-elements.ts';
import { DEFAULT_HOLD_MAX_AGE_MS } from '../enrich/enricher.ts';
import { DEFAULT_FEATURES, type FeatureSwitches } from '../flow/features/flow-features.ts';

export interface AgentConfig {
  clusterName: string;
  nodeName: string;
  collectors: string[];
  enterpriseNumber: number;
  /** The elements of the application features' fields: podflow's, or ipfixprobe's (ipfix/encoder.ts featureElements). */
  featureElements: FeatureElementSet;
  labelKeys: string[];
  clusterCidrs: string[];
  flow: { idleTimeoutSeconds: number; activeTimeoutSeconds: number; maxFlows: number };
  /** Per-flow features, each on or off (flow/features/flow-features.ts). */
  features: FeatureSwitches;
  capture: { interfaces: string; loopback: boolean; snaplen: number; dnsSnaplen: number; bufferBytes: number; queueBytes: number };
  namespaces: { netnsDirs: string[]; proc: boolean; procRoot: string; pathFilter: string; rescanSeconds: number };
  kubernetes: { kubeconfig: string; leaseGraceSeconds: number; holdUnnamedSeconds: number };
  metrics: { listen: string; maxWorkloadSeries: number };
  log: { level: LogLevel };
  shutdown: { timeoutSeconds: number };
}

export const DEFAULT_CONFIG: AgentConfig = {
  clusterName: '',
  nodeName: '',
  collectors: [],
  enterpriseNumber: 32473,
  featureElements: 'podflow',
  labelKeys: ['app', 'app.kubernetes.io/name'],
  clusterCidrs: [],
  flow: { idleTimeoutSeconds: 30, activeTimeoutSeconds: 300, maxFlows: 131_072 },
  features: { ...DEFAULT_FEATURES },
  capture: { interfaces: '', loopback: false, snaplen: 256, dnsSnaplen: 4096, bufferBytes: 512 << 10, queueBytes: 64 << 20 },
  namespaces: { netnsDirs: ['/var/run/netns', '/run/netns'], proc: true, procRoot: '/proc', pathFilter: '', rescanSeconds: 1 },
  kubernetes: { kubeconfig: '', leaseGraceSeconds: 360, holdUnnamedSeconds: DEFAULT_HOLD_MAX_AGE_MS / 1000 },
  metrics: { listen: '0.0.0.0:9464', maxWorkloadSeries: 2000 },
  log: { level: 'info' },
  shutdown: { timeoutSeconds: 10 },
};

/**
 * A flow is named by the lease of its remote address at the flow's start, and
 * looked up when its record is made: up to flow.activeTimeoutSeconds after the
 * start, plus the time a record is held (before the caches' first sync, or
 * while its namespace is not tied to a pod yet), plus whole-second timeouts
 * and the agent's timers (each ~1 s at most). A lease dropped before that
 * hands its address to the next holder from -Infinity, who would then own
 * those flows: so the grace must outlast all of it.
 */
const LEASE_GRACE_MARGIN_SECONDS = 10;
/**
 * Keys that were once valid and are accepted, ignored and reported, so a
 * ConfigMap written for an older podflow still starts the agent: each with
 * what replaced it.
 */
const RETIRED_KEYS: Record<string, string> = {
  'capture.idleBufferBytes': 'rings no longer change size; every ring is capture.bufferBytes, and bursts wait in capture.queueBytes',
  'capture.busyAbovePacketsPerSecond': 'rings no longer change size (see capture.queueBytes)',
  'capture.idleAfterSeconds': 'rings no longer change size (see capture.queueBytes)',
};
const positive = { type: 'number', exclusiveMinimum: 0 } as const;
const positiveInt = { type: 'integer', minimum: 1 } as const;
const strings = { type: 'array', items: { type: 'string', minLength: 1 } } as const;

/** The JSON Schema of the configuration file (and of the merged configuration). */
export const configSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'podflow agent configuration',
  ...obj({
    clusterName: { type: 'string' },
    nodeName: { type: 'string' },
    collectors: { type: 'array', items: { type: 'string', pattern: '^((udp|tcp|tls)://|file:)' } },
    enterpriseNumber: { type: 'integer', minimum: 1, maximum: 4294967295 },
    featureElements: { enum: ['podflow', 'ipfixprobe'] },
    labelKeys: { ...strings, maxItems: 16 },
    clusterCidrs: strings,
    flow: obj({ idleTimeoutSeconds: positive, activeTimeoutSeconds: positive, maxFlows: { ...positiveInt, maximum: 1 << 26 } }),
    features: obj({ dns: { type: 'boolean' }, tcp: { type: 'boolean' }, tls: { type: 'boolean' }, quic: { type: 'boolean' }, http: { type: 'boolean' } }),
    capture: obj({
      interfaces: { type: 'string' },
      loopback: { type: 'boolean' },
      snaplen: { type: 'integer', minimum: 64, maximum: 65535 },
      dnsSnaplen: { type: 'integer', minimum: 64, maximum: 65535 },
      bufferBytes: { type: 'integer', minimum: 65536 },
      queueBytes: { type: 'integer', minimum: 262144, maximum: 4294967295 },
    }),
    namespaces: obj({ netnsDirs: strings, proc: { type: 'boolean' }, procRoot: { type: 'string', minLength: 1 }, pathFilter: { type: 'string' }, rescanSeconds: positive }),
    kubernetes: obj({ kubeconfig: { type: 'string' }, leaseGraceSeconds: positive, holdUnnamedSeconds: positive }),
    metrics: obj({ listen: listenSchema, maxWorkloadSeries: { type: 'integer', minimum: 7 } }),
    log: logSchema,
    shutdown: obj({ timeoutSeconds: positive }),
  }),
} as const;

/** Environment variables read, and the key each sets. */
export const ENVIRONMENT: Record<string, string> = {
  NODE_NAME: 'nodeName',
  CLUSTER_NAME: 'clusterName',
  KUBECONFIG: 'kubernetes.kubeconfig',
  PODFLOW_COLLECTORS: 'collectors',
  PODFLOW_LOG_LEVEL: 'log.level',
  PODFLOW_METRICS_LISTEN: 'metrics.listen',
};

/** Named flags and the key each sets; `--set KEY=VALUE` sets any key. */
export const FLAGS: Record<string, string> = {
  'node-name': 'nodeName',
  'cluster-name': 'clusterName',
  kubeconfig: 'kubernetes.kubeconfig',
  collector: 'collectors',
  'metrics-listen': 'metrics.listen',
  'log-level': 'log.level',
};

export interface ConfigSources {
  /** The file: --config, else PODFLOW_CONFIG; none is fine (defaults, env and flags). */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by key path, already in order (later wins); strings are parsed as YAML scalars for non-string keys. */
  flags?: Array<[key: string, value: string]>;
}

/**
 * Merges defaults < file < env < flags and validates; throws
 * PODFLOW_ERR_CONFIG_* naming the key and the problem. Retired keys in the
 * file are dropped, each with a line in `notes` for the log.
 */
export function loadConfig(sources: ConfigSources, notes: string[] = []): AgentConfig {
  const env = sources.env ?? {};
  const merged = structuredClone(DEFAULT_CONFIG) as unknown as Tree;
  const file = sources.file ?? env.PODFLOW_CONFIG;
  if (file) {
    const fromFile = readConfigFile(file);
    for (const [key, why] of Object.entries(RETIRED_KEYS)) {
      const [section, name] = key.split('.') as [string, string];
      const parent = fromFile[section];
      if (!parent || typeof parent !== 'object' || !Object.hasOwn(parent, name)) continue;
      delete (parent as Tree)[name];
      notes.push(`${key} in ${file} is ignored: ${why}`);
    }
    check(fromFile, `in ${file}`);
    deepMerge(merged, fromFile);
  }
  for (const [name, key] of Object.entries(ENVIRONMENT)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setKey(merged, key, key === 'collectors' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value, `environment ${name}`);
  }
  const flagLists = new Map<string, unknown[]>();
  for (const [key, text] of sources.flags ?? []) {
    const value = scalar(merged, key, text, `flag for ${key}`);
    if (Array.isArray(getKey(DEFAULT_CONFIG as unknown as Tree, key)) && !Array.isArray(value)) {
      // Repeated flags of a list key (--collector A --collector B) make the list.
      const list = flagLists.get(key) ?? [];
      flagLists.set(key, list);
      list.push(value);
      setKey(merged, key, list, `flag for ${key}`);
    } else setKey(merged, key, value, `flag for ${key}`);
  }
  check(merged, '');
  const config = merged as unknown as AgentConfig;
  semanticChecks(config);
  return config;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CONFIG_FILE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CONFIG_FILE', `${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new PodflowError('PODFLOW_ERR_CONFIG_FILE', `${file}: the top level must be a mapping of keys`);
  return parsed as Tree;
}

const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
const validate = ajv.compile(configSchema);

function check(tree: Tree, where: string): void {
  if (validate(tree)) return;
  const problems = (validate.errors ?? []).map(describe);
  throw new PodflowError('PODFLOW_ERR_CONFIG_INVALID', `${[...new Set(problems)].join('; ')}${where ? ` (${where})` : ''}`);
}

function describe(e: ErrorObject): string {
  const path = e.instancePath.slice(1).replace(/\/(\d+)(?=\/|$)/g, '[$1]').replaceAll('/', '.');
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    return `${path ? `${path}.` : ''}${key}: unknown key`;
  }
  const value = JSON.stringify(valueAt(e));
  if (e.keyword === 'pattern' && path.startsWith('collectors')) return `${path}: bad URL ${value} (udp://, tcp://, tls:// or file:)`;
  if (e.keyword === 'pattern' && path === 'metrics.listen') return `${path}: bad address ${value} (HOST:PORT)`;
  if ((e.keyword === 'exclusiveMinimum' || e.keyword === 'minimum') && typeof valueAt(e) === 'number' && (valueAt(e) as number) < 0) {
    return `${path}: must not be negative, got ${value}`;
  }
  return `${path || '(top level)'}: ${e.message ?? e.keyword}${value === undefined ? '' : `, got ${value}`}`;
}

function valueAt(e: ErrorObject): unknown {
  return (e as ErrorObject & { data?: unknown }).data;
}

function semanticChecks(c: AgentConfig): void {
  const problems: string[] = [];
  if (!c.nodeName) problems.push('nodeName: missing (set NODE_NAME from the downward API, or --node-name)');
  if (c.collectors.length === 0) problems.push('collectors: missing (at least one udp://, tcp://, tls:// or file: URL)');
  c.collectors.forEach((url, i) => {
    try {
      const target = parseExportTarget(url);
      if (target.protocol === 'tls') {
        for (const [param, path] of Object.entries(target.tls)) {
          if (param !== 'servername' && path && !readable(path)) problems.push(`collectors[${i}]: unreadable file ${param}=${path}`);
        }
      }
    } catch (err) {
      problems.push(`collectors[${i}]: bad URL: ${(err as Error).message.replace(/^invalid export target: /, '')}`);
    }
  });
  if (c.flow.activeTimeoutSeconds < c.flow.idleTimeoutSeconds) problems.push(`flow.activeTimeoutSeconds: must be at least flow.idleTimeoutSeconds (${c.flow.idleTimeoutSeconds})`);
  const leaseGraceMin = c.flow.activeTimeoutSeconds + c.kubernetes.holdUnnamedSeconds + LEASE_GRACE_MARGIN_SECONDS;
  if (c.kubernetes.leaseGraceSeconds < leaseGraceMin) {
    problems.push(
      `kubernetes.leaseGraceSeconds: must be at least flow.activeTimeoutSeconds (${c.flow.activeTimeoutSeconds}) + the hold of unnamed flows (kubernetes.holdUnnamedSeconds, ${c.kubernetes.holdUnnamedSeconds}) + a margin (${LEASE_GRACE_MARGIN_SECONDS}) = ${leaseGraceMin}, got ${c.kubernetes.leaseGraceSeconds}: a closed lease dropped sooner lets the address's next holder own flows that started before it`,
    );
  }
  if (c.kubernetes.kubeconfig && !readable(c.kubernetes.kubeconfig)) problems.push(`kubernetes.kubeconfig: unreadable file ${c.kubernetes.kubeconfig}`);
  for (const [key, pattern] of [['capture.interfaces', c.capture.interfaces], ['namespaces.pathFilter', c.namespaces.pathFilter]] as const) {
    try {
      new RegExp(pattern);
    } catch (err) {
      problems.push(`${key}: not a regular expression: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new PodflowError('PODFLOW_ERR_CONFIG_INVALID', problems.join('; '));
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function getKey(tree: Tree, key: string): unknown {
  let node: unknown = tree;
  for (const part of key.split('.')) node = node && typeof node === 'object' ? (node as Tree)[part] : undefined;
  return node;
}

function setKey(tree: Tree, key: string, value: unknown, where: string): void {
  const parts = key.split('.');
  let node = tree;
  for (const [i, part] of parts.entries()) {
    if (!Object.hasOwn(node, part)) throw new PodflowError('PODFLOW_ERR_CONFIG_INVALID', `${parts.slice(0, i + 1).join('.')}: unknown key (${where})`);
    if (i === parts.length - 1) node[part] = value;
    else {
      const next = node[part];
      if (!next || typeof next !== 'object' || Array.isArray(next)) throw new PodflowError('PODFLOW_ERR_CONFIG_INVALID', `${key}: unknown key (${where})`);
      node = next as Tree;
    }
  }
}

/** A flag's text as the type of its key: strings stay text, anything else is read as a YAML scalar (numbers, booleans, [lists]). */
function scalar(tree: Tree, key: string, text: string, where: string): unknown {
  const current = getKey(DEFAULT_CONFIG as unknown as Tree, key);
  if (current === undefined && getKey(tree, key) === undefined) throw new PodflowError('PODFLOW_ERR_CONFIG_INVALID', `${key}: unknown key (${where})`);
  if (typeof current === 'string') return text;
  if (Array.isArray(current) && !text.trim().startsWith('[')) return text;
  try {
    return parseYaml(text);
  } catch {
    return text;
  }
}
