// `podflow webhook`: the mutating admission webhook that injects the podflow
// sidecar (agent/inject.ts decides and builds the patch). HTTPS only: the API
// server calls webhooks over TLS, so there is no plain-HTTP mode at all.
//
// POST /mutate takes an admission.k8s.io/v1 AdmissionReview of a pod and
// answers an AdmissionReview whose response always allows the pod: with a
// JSONPatch when the sidecar is injected, without one otherwise. Anything
// that is not a well-formed review of that version gets 400 with a message
// naming the problem (PODFLOW_ERR_WEBHOOK_REVIEW). GET /healthz is the probe.
//
// Configuration: a YAML file (the chart's ConfigMap), validated whole at
// start like the agent's (keys in docs/sidecar.md).
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { PodflowError } from '../common/errors.ts';
import { hostAndPort } from './http.ts';
import { deepMerge, listenSchema, type LogLevel, logSchema, objectSchema as obj, type Tree } from './config-tree.ts';
import { parseExportTarget } from '../ipfix/target.ts';
import { decide, injectionPatch, type InjectionConfig } from './inject.ts';

export interface WebhookConfig extends InjectionConfig {
  listen: string;
  tls: { certFile: string; keyFile: string };
  log: { level: LogLevel };
}

export const DEFAULT_WEBHOOK_CONFIG: WebhookConfig = {
  listen: '0.0.0.0:8443',
  tls: { certFile: '/etc/podflow/tls/tls.crt', keyFile: '/etc/podflow/tls/tls.key' },
  namespace: 'podflow',
  excludeNamespaces: [],
  selection: { deployments: [], label: '' },
  sidecar: {
    image: 'ghcr.io/podflow/podflow:0.1.0',
    imagePullPolicy: 'IfNotPresent',
    collectors: [],
    clusterName: '',
    enterpriseNumber: 32473,
    metricsPort: 9464,
    resources: { requests: { cpu: '20m', memory: '48Mi' }, limits: { memory: '160Mi' } },
  },
  log: { level: 'info' },
};

const quantities = { type: 'object', additionalProperties: { type: ['string', 'number'] } } as const;

export const webhookConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'podflow webhook configuration',
  ...obj({
    listen: listenSchema,
    tls: obj({ certFile: { type: 'string', minLength: 1 }, keyFile: { type: 'string', minLength: 1 } }),
    namespace: { type: 'string', minLength: 1 },
    excludeNamespaces: { type: 'array', items: { type: 'string', minLength: 1 } },
    selection: obj({
      deployments: { type: 'array', items: { type: 'string', pattern: '^([a-z0-9-]+/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' } },
      label: { type: 'string', pattern: '^(([a-zA-Z0-9.-]+/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?(=[-a-zA-Z0-9_.]*)?)?$' },
    }),
    sidecar: obj({
      image: { type: 'string', minLength: 1 },
      imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] },
      collectors: { type: 'array', items: { type: 'string', pattern: '^(udp|tcp|tls)://' } },
      clusterName: { type: 'string' },
      enterpriseNumber: { type: 'integer', minimum: 1, maximum: 4294967295 },
      metricsPort: { type: 'integer', minimum: 1, maximum: 65535 },
      resources: obj({ requests: quantities, limits: quantities }),
    }),
    log: logSchema,
  }),
} as const;

const validateConfig = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(webhookConfigSchema);

/** Defaults < file < POD_NAMESPACE (the webhook's own namespace, from the downward API); throws PODFLOW_ERR_WEBHOOK_CONFIG naming every problem. */
export function loadWebhookConfig(file: string | undefined, env: NodeJS.ProcessEnv = {}): WebhookConfig {
  const merged = structuredClone(DEFAULT_WEBHOOK_CONFIG) as unknown as Tree;
  if (file) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_WEBHOOK_CONFIG', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split('\n')[0]}`, { cause: err });
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new PodflowError('PODFLOW_ERR_WEBHOOK_CONFIG', `${file}: the top level must be a mapping of keys`);
      deepMerge(merged, parsed as Tree);
    }
  }
  if (env.POD_NAMESPACE) merged.namespace = env.POD_NAMESPACE;
  if (!validateConfig(merged)) {
    const problems = (validateConfig.errors ?? []).map((e) => {
      const path = e.instancePath.slice(1).replaceAll('/', '.');
      if (e.keyword === 'additionalProperties') return `${path ? `${path}.` : ''}${(e.params as { additionalProperty: string }).additionalProperty}: unknown key`;
      return `${path || '(top level)'}: ${e.message}`;
    });
    throw new PodflowError('PODFLOW_ERR_WEBHOOK_CONFIG', [...new Set(problems)].join('; '));
  }
  const c = merged as unknown as WebhookConfig;
  const problems: string[] = [];
  if (c.sidecar.collectors.length === 0) problems.push('sidecar.collectors: missing (the collector address the injected sidecar exports to)');
  c.sidecar.collectors.forEach((url, i) => {
    try {
      parseExportTarget(url);
    } catch (err) {
      problems.push(`sidecar.collectors[${i}]: ${(err as Error).message}`);
    }
  });
  if (c.selection.deployments.length === 0 && !c.selection.label) problems.push('selection: neither deployments nor label is set (nothing would be injected)');
  if (problems.length > 0) throw new PodflowError('PODFLOW_ERR_WEBHOOK_CONFIG', problems.join('; '));
  return c;
}

export interface ReviewResult {
  status: 200 | 400;
  body: Tree | { error: string; code: 'PODFLOW_ERR_WEBHOOK_REVIEW' };
  /** For the log and the counters. */
  outcome: 'injected' | 'skipped' | 'malformed';
  reason: string;
}

const bad = (message: string): ReviewResult => ({
  status: 400,
  body: { error: `${message}`, code: 'PODFLOW_ERR_WEBHOOK_REVIEW' },
  outcome: 'malformed',
  reason: message,
});

const isObject = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Answers one AdmissionReview (already JSON-parsed). Pure. */
export function review(config: InjectionConfig, input: unknown): ReviewResult {
  if (!isObject(input)) return bad('the body is not a JSON object');
  if (input.apiVersion !== 'admission.k8s.io/v1' || input.kind !== 'AdmissionReview') {
    return bad(`expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got ${JSON.stringify(input.apiVersion)} ${JSON.stringify(input.kind)}`);
  }
  const request = input.request;
  if (!isObject(request)) return bad('request: missing or not an object');
  if (typeof request.uid !== 'string' || request.uid === '') return bad('request.uid: missing');
  const kind = request.kind;
  if (!isObject(kind) || kind.group !== '' || kind.kind !== 'Pod') {
    return bad(`request.kind: this webhook only reviews core/v1 Pod, got ${JSON.stringify(kind)}`);
  }
  const uid = request.uid;
  const answer = (patch: unknown[] | undefined, outcome: 'injected' | 'skipped', reason: string): ReviewResult => ({
    status: 200,
    outcome,
    reason,
    body: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid,
        allowed: true,
        ...(patch && { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }),
      },
    },
  });
  if (request.operation !== 'CREATE') return answer(undefined, 'skipped', `operation ${String(request.operation)}`);
  const pod = request.object;
  if (!isObject(pod)) return bad('request.object: missing or not an object (the pod)');
  if (!isObject(pod.spec) || !Array.isArray(pod.spec.containers)) return bad('request.object.spec.containers: missing (not a pod)');
  if (pod.metadata !== undefined && !isObject(pod.metadata)) return bad('request.object.metadata: not an object');
  const meta = (pod.metadata ?? {}) as Tree;
  const ns = typeof request.namespace === 'string' && request.namespace ? request.namespace : (meta.namespace as string | undefined);
  if (!ns) return bad('request.namespace: missing');
  const decision = decide(config, pod, ns);
  if (!decision.inject) return answer(undefined, 'skipped', decision.reason);
  return answer(injectionPatch(config, pod), 'injected', decision.reason);
}

export interface WebhookStats {
  injected: number;
  skipped: number;
  malformed: number;
}

/** Largest request body accepted (the API server's own request limit is 3 MiB). */
const MAX_BODY = 3 << 20;

export interface WebhookServerOptions {
  config: WebhookConfig;
  /** PEM; default: read from config.tls. */
  cert?: string | Buffer;
  key?: string | Buffer;
  onReview?: (result: ReviewResult, request: Tree | undefined) => void;
}

export class WebhookServer {
  readonly stats: WebhookStats = { injected: 0, skipped: 0, malformed: 0 };
  readonly #server: Server;
  readonly #options: WebhookServerOptions;

  constructor(options: WebhookServerOptions) {
    this.#options = options;
    let cert = options.cert;
    let key = options.key;
    try {
      cert ??= readFileSync(options.config.tls.certFile);
      key ??= readFileSync(options.config.tls.keyFile);
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_WEBHOOK_TLS_FILES', `${(err as NodeJS.ErrnoException).path ?? ''}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    try {
      this.#server = createServer({ cert, key, minVersion: 'TLSv1.2' }, (req, res) => this.#handle(req, res));
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_WEBHOOK_TLS_FILES', `the certificate or key is not valid PEM or they do not match: ${(err as Error).message}`, { cause: err });
    }
    this.#server.keepAliveTimeout = 30_000;
  }

  /** Listens on config.listen ("HOST:PORT"); resolves with the bound address. */
  listen(): Promise<AddressInfo> {
    const listen = this.#options.config.listen;
    const { host = '0.0.0.0', port } = hostAndPort(listen);
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(new PodflowError('PODFLOW_ERR_WEBHOOK_LISTEN', `${listen}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }));
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && (url === '/healthz' || url === '/readyz')) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (url !== '/mutate') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: POST /mutate or GET /healthz\n');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'POST' }).end('POST an AdmissionReview to /mutate\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      let result: ReviewResult;
      let parsed: unknown;
      if (tooLarge) result = bad(`the body is larger than ${MAX_BODY} bytes`);
      else if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) result = bad(`content-type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}`);
      else {
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          result = review(this.#options.config, parsed);
        } catch (err) {
          result = bad(`the body is not valid JSON: ${(err as Error).message}`);
        }
      }
      this.stats[result.outcome]++;
      try {
        this.#options.onReview?.(result, isObject(parsed) && isObject(parsed.request) ? parsed.request : undefined);
      } catch {
        // Logging must never fail a review.
      }
      res.writeHead(result.status, { 'content-type': 'application/json' }).end(JSON.stringify(result.body));
    });
  }
}
