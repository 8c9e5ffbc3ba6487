// A small Kubernetes API server for tests, benchmarks and `podflow demo` (never
// used by the agent): list and watch of pods, services, nodes, replica sets and
// jobs with the real resourceVersion semantics client-node relies on. One
// global, increasing resourceVersion; a list answers items plus the version
// they are as of; a watch from version N streams (chunked, one JSON object per
// line) every change after N, BOOKMARKs when asked, and 410 Gone when N is
// older than the retained event window. The window is per resource, as
// kube-apiserver keeps a watch cache per resource: a storm of pod changes does
// not expire the version a quiet resource's watch resumes from. The test drives changes with
// create/update/delete, can forbid a resource (RBAC 403), and can stop the
// server and start it again on the same port with its state kept.
//
// At cluster scale (bench/enrich/identity-scale.bench.ts: 100k pods of ~7 KiB
// JSON each): objects are kept as their JSON text, not as object graphs (a
// tenth of the memory, and nothing for the collector to walk), and a list is
// written item by item as the socket drains, never built as one string (a
// whole list of 100k pods is longer than V8's longest string).
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type KubeKind = 'pod' | 'service' | 'node' | 'replicaset' | 'job';

/** The JSON of a Kubernetes object; metadata.uid, resourceVersion and creationTimestamp are filled in by the server. */
export interface KubeObject {
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; [field: string]: unknown };
  [field: string]: unknown;
}

/** What KubeApiServer.backup() keeps. */
export interface KubeServerBackup {
  readonly resourceVersion: number;
  readonly objects: ReadonlyMap<KubeKind, ReadonlyMap<string, KubeObject>>;
}

export interface KubeApiServerOptions {
  /** Serve HTTPS with a CA made for the test (default), or plain HTTP. */
  tls?: boolean;
  /** The bearer token clients must send; default a random one. */
  token?: string;
  /** Changes kept per resource for watches to resume from; a watch from before its resource's gets 410 Gone. Default 1000. */
  eventWindow?: number;
  /** How a too-old watch version is refused: an ERROR event with a 410 Status in a 200 stream (as kube-apiserver does), or an HTTP 410. */
  goneAs?: 'event' | 'http';
  /** Interval of BOOKMARK events on watches that allow them. Default 1000 ms. */
  bookmarkIntervalMs?: number;
  /**
   * A list at resourceVersion=0 with a limit: 'honoured' answers in pages (the
   * default here), 'ignored' answers every item at once, as kube-apiserver
   * does: such a list is served from its watch cache, which cannot paginate
   * (k8s.io/apiserver cacher.go: "limits are ignored when resource version is
   * zero").
   */
  limitAtVersionZero?: 'honoured' | 'ignored';
}

export interface KubeRequest {
  kind: KubeKind;
  watch: boolean;
  query: URLSearchParams;
  status: number;
}

interface KindInfo {
  plural: string;
  group: string;
  version: string;
  kind: string;
  namespaced: boolean;
}

const kinds: Record<KubeKind, KindInfo> = {
  pod: { plural: 'pods', group: '', version: 'v1', kind: 'Pod', namespaced: true },
  service: { plural: 'services', group: '', version: 'v1', kind: 'Service', namespaced: true },
  node: { plural: 'nodes', group: '', version: 'v1', kind: 'Node', namespaced: false },
  replicaset: { plural: 'replicasets', group: 'apps', version: 'v1', kind: 'ReplicaSet', namespaced: true },
  job: { plural: 'jobs', group: 'batch', version: 'v1', kind: 'Job', namespaced: true },
};

/** An object as stored: its JSON text, and the namespace lists and watches filter on. */
interface StoredObject {
  namespace: string | undefined;
  json: string;
}

interface ChangeEvent {
  rv: number;
  kind: KubeKind;
  namespace: string | undefined;
  /** The whole watch event line, as written to every watcher. */
  line: string;
}

interface Watcher {
  kind: KubeKind;
  namespace: string | undefined;
  response: ServerResponse;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
}

export class KubeApiServer {
  readonly token: string;
  /** Every list and watch request, in order: tests count them (e.g. to see there is no hot loop). */
  readonly requests: KubeRequest[] = [];
  readonly #tls: { ca: string; cert: string; key: string } | undefined;
  readonly #eventWindow: number;
  readonly #goneAs: 'event' | 'http';
  readonly #bookmarkIntervalMs: number;
  readonly #limitAtVersionZero: 'honoured' | 'ignored';
  readonly #objects = new Map<KubeKind, Map<string, StoredObject>>();
  /** By resource: its retained changes, oldest first. */
  readonly #events = new Map<KubeKind, ChangeEvent[]>();
  /** By resource: watches from a version below this have lost events: 410 Gone. */
  readonly #oldestResumable = new Map<KubeKind, number>();
  #resourceVersion = 1;
  readonly #forbidden = new Set<KubeKind>();
  readonly #watchers = new Set<Watcher>();
  readonly #sockets = new Set<Socket>();
  /** Snapshots of paginated lists, by continue token prefix. */
  readonly #snapshots = new Map<string, { rv: number; items: StoredObject[] }>();
  #server: Server | undefined;
  #port = 0;

  constructor(options: KubeApiServerOptions = {}) {
    this.token = options.token ?? `token-${randomUUID()}`;
    this.#tls = options.tls === false ? undefined : makeTestCertificates();
    this.#eventWindow = options.eventWindow ?? 1000;
    this.#goneAs = options.goneAs ?? 'event';
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000;
    this.#limitAtVersionZero = options.limitAtVersionZero ?? 'honoured';
    for (const kind of Object.keys(kinds) as KubeKind[]) this.#objects.set(kind, new Map());
    this.#forgetEvents(0);
  }

  get url(): string {
    return `${this.#tls ? 'https' : 'http'}://127.0.0.1:${this.#port}`;
  }

  /** The PEM of the test CA (undefined for plain HTTP). */
  get ca(): string | undefined {
    return this.#tls?.ca;
  }

  get resourceVersion(): number {
    return this.#resourceVersion;
  }

  /** Listens on 127.0.0.1: a free port the first time, the same port after stop(). */
  async start(): Promise<void> {
    if (this.#server) return;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    const server = this.#tls ? createHttpsServer({ cert: this.#tls.cert, key: this.#tls.key }, handler) : createHttpServer(handler);
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    // A TLS connection closed mid-handshake by a stopping test is not a test failure.
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Kills every connection (watches end abruptly, as when an API server dies) and the listener; the state is kept. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    for (const watcher of this.#watchers) for (const timer of watcher.timers) clearTimeout(timer);
    this.#watchers.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Makes list and watch of this kind answer 403 Forbidden (or stop doing so), like a missing RBAC rule. */
  forbid(kind: KubeKind, forbidden = true): void {
    if (forbidden) this.#forbidden.add(kind);
    else this.#forbidden.delete(kind);
  }

  /** Drops every retained event: a watch from any earlier version now gets 410 Gone. */
  compact(): void {
    this.#forgetEvents(this.#resourceVersion);
  }

  /** Drops every resource's retained events: watches from below `version` get 410 Gone. */
  #forgetEvents(version: number): void {
    for (const kind of Object.keys(kinds) as KubeKind[]) {
      this.#events.set(kind, []);
      this.#oldestResumable.set(kind, version);
    }
  }

  /**
   * Ends every open watch stream, as an API server does at a watch's timeout:
   * clients watch again from the last version they saw (after compact(), they
   * are refused with 410 Gone and relist).
   */
  endWatches(): void {
    for (const watcher of [...this.#watchers]) this.#endWatch(watcher);
  }

  /** Objects of a kind now. */
  count(kind: KubeKind): number {
    return this.#objects.get(kind)!.size;
  }

  /** Open watch streams of a kind. */
  watchers(kind: KubeKind): number {
    let count = 0;
    for (const watcher of this.#watchers) if (watcher.kind === kind) count++;
    return count;
  }

  /** The object as stored (a copy: changing it changes nothing on the server). */
  get(kind: KubeKind, name: string, namespace?: string): KubeObject | undefined {
    const stored = this.#objects.get(kind)!.get(keyOf(kind, name, namespace));
    return stored && (JSON.parse(stored.json) as KubeObject);
  }

  create(kind: KubeKind, object: KubeObject): KubeObject {
    const key = keyOf(kind, object.metadata.name, object.metadata.namespace);
    if (this.#objects.get(kind)!.has(key)) throw new Error(`${kind} ${key} already exists`);
    const stored = this.#stamp(kind, object, object.metadata.uid ?? randomUUID());
    stored.metadata.creationTimestamp = new Date().toISOString();
    this.#store(kind, key, 'ADDED', stored);
    return stored;
  }

  /** Replaces an existing object (found by namespace and name); its uid and creation time are kept. */
  update(kind: KubeKind, object: KubeObject): KubeObject {
    const key = keyOf(kind, object.metadata.name, object.metadata.namespace);
    const current = this.get(kind, object.metadata.name, object.metadata.namespace);
    if (!current) throw new Error(`${kind} ${key} does not exist`);
    const stored = this.#stamp(kind, object, current.metadata.uid!);
    stored.metadata.creationTimestamp = current.metadata.creationTimestamp;
    this.#store(kind, key, 'MODIFIED', stored);
    return stored;
  }

  delete(kind: KubeKind, name: string, namespace?: string): void {
    const key = keyOf(kind, name, namespace);
    const current = this.get(kind, name, namespace);
    if (!current) throw new Error(`${kind} ${key} does not exist`);
    this.#objects.get(kind)!.delete(key);
    // The DELETED event carries the object at the version of its deletion, as the real server's does.
    current.metadata.resourceVersion = String(++this.#resourceVersion);
    this.#record(kind, 'DELETED', current.metadata.namespace, JSON.stringify(current));
  }

  /**
   * Stores `json` as the text of an existing object, as it is (malformed
   * JSON too): lists then serve it, for tests of what a client does with a
   * broken object. No watch event is sent.
   */
  replaceText(kind: KubeKind, name: string, namespace: string | undefined, json: string): void {
    const stored = this.#objects.get(kind)!.get(keyOf(kind, name, namespace));
    if (!stored) throw new Error(`${kind} ${keyOf(kind, name, namespace)} does not exist`);
    stored.json = json;
  }

  /** The objects and version now, for restore(). */
  backup(): KubeServerBackup {
    const objects = new Map<KubeKind, Map<string, KubeObject>>();
    for (const [kind, stored] of this.#objects) {
      objects.set(kind, new Map([...stored].map(([key, s]) => [key, JSON.parse(s.json) as KubeObject])));
    }
    return { resourceVersion: this.#resourceVersion, objects };
  }

  /**
   * Puts a backup back, as an API server whose etcd was restored from it: the
   * objects and the resourceVersion are as they were then (changes since are
   * lost), every watch ends, and a watch from an earlier or a later version
   * is refused as Gone (kube-apiserver answers a watch from a version it has
   * not reached with a "too large resource version" error; the sim refuses it
   * at once so the client relists).
   */
  restore(backup: KubeServerBackup): void {
    for (const watcher of [...this.#watchers]) this.#endWatch(watcher);
    for (const [kind, objects] of backup.objects) {
      this.#objects.set(kind, new Map([...objects].map(([key, o]) => [key, { namespace: o.metadata.namespace, json: JSON.stringify(o) }])));
    }
    this.#resourceVersion = backup.resourceVersion;
    this.#forgetEvents(backup.resourceVersion);
  }

  /** Writes a kubeconfig for this server (server URL, CA, token) and returns its path. */
  writeKubeconfig(path: string, options: { token?: string } = {}): string {
    const cluster: Record<string, unknown> = { server: this.url };
    if (this.#tls) cluster['certificate-authority-data'] = Buffer.from(this.#tls.ca).toString('base64');
    else cluster['insecure-skip-tls-verify'] = true;
    // JSON is YAML: client-node reads it as a kubeconfig.
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
      'current-context': 'test',
      users: [{ name: 'test', user: { token: options.token ?? this.token } }],
    };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  #stamp(kind: KubeKind, object: KubeObject, uid: string): KubeObject {
    const copy = structuredClone(object);
    const info = kinds[kind];
    copy.apiVersion = info.group ? `${info.group}/${info.version}` : info.version;
    copy.kind = info.kind;
    copy.metadata.uid = uid;
    copy.metadata.resourceVersion = String(++this.#resourceVersion);
    if (!info.namespaced) delete copy.metadata.namespace;
    return copy;
  }

  #store(kind: KubeKind, key: string, type: 'ADDED' | 'MODIFIED', object: KubeObject): void {
    const stored: StoredObject = { namespace: object.metadata.namespace, json: JSON.stringify(object) };
    this.#objects.get(kind)!.set(key, stored);
    this.#record(kind, type, stored.namespace, stored.json);
  }

  #record(kind: KubeKind, type: 'ADDED' | 'MODIFIED' | 'DELETED', namespace: string | undefined, json: string): void {
    const event: ChangeEvent = { rv: this.#resourceVersion, kind, namespace, line: eventLine(type, json) };
    const events = this.#events.get(kind)!;
    events.push(event);
    if (events.length > this.#eventWindow) this.#oldestResumable.set(kind, events.shift()!.rv);
    for (const watcher of this.#watchers) if (matches(watcher, event)) watcher.response.write(event.line);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = parsePath(url.pathname);
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const answer = (status: number, body: unknown): void => {
      if (route) this.requests.push({ kind: route.kind, watch, query: url.searchParams, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      return answer(401, statusObject(401, 'Unauthorized', 'Unauthorized'));
    }
    if (req.method !== 'GET' || !route) return answer(404, statusObject(404, 'NotFound', `the server could not find the requested resource`));
    const { plural } = kinds[route.kind];
    if (this.#forbidden.has(route.kind)) {
      const scope = route.namespace ? `in the namespace "${route.namespace}"` : 'at the cluster scope';
      const verb = watch ? 'watch' : 'list';
      const group = kinds[route.kind].group;
      return answer(
        403,
        statusObject(403, 'Forbidden', `${plural} is forbidden: User "system:serviceaccount:podflow:podflow" cannot ${verb} resource "${plural}" in API group "${group}" ${scope}`),
      );
    }
    if (!watch) return this.#list(route.kind, route.namespace, url.searchParams, res, answer);
    this.#watch(route.kind, route.namespace, url.searchParams, res, answer);
  }

  #list(kind: KubeKind, namespace: string | undefined, query: URLSearchParams, res: ServerResponse, answer: (status: number, body: unknown) => void): void {
    const token = query.get('continue');
    const atZero = !token && query.get('resourceVersion') === '0';
    const limit = atZero && this.#limitAtVersionZero === 'ignored' ? 0 : Number(query.get('limit') ?? 0);
    // resourceVersion: unset or "" is the most recent (a consistent read), "0"
    // any version, "N" at least as new as N, or exactly N when paginated;
    // resourceVersionMatch says which of the last two explicitly
    // (NotOlderThan, Exact), checked as kube-apiserver checks ListOptions.
    // The sim keeps no history: an exact list at an older version is refused
    // as expired. A version it has not reached is refused as kube-apiserver
    // does (504, "Too large resource version").
    const version = token ? '' : (query.get('resourceVersion') ?? '');
    const match = query.get('resourceVersionMatch') ?? '';
    const invalid = listOptionsProblem(query.get('resourceVersion') ?? '', match, token ?? '');
    if (invalid) {
      return answer(422, { ...statusObject(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: ${invalid}`), details: { group: 'meta.k8s.io', kind: 'ListOptions' } });
    }
    if (version !== '' && version !== '0') {
      const wanted = Number(version);
      if (wanted > this.#resourceVersion) {
        return answer(504, {
          ...statusObject(504, 'Timeout', `Timeout: Too large resource version: ${wanted}, current: ${this.#resourceVersion}`),
          details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1 },
        });
      }
      const exact = match === 'Exact' || (match === '' && limit > 0);
      if (exact && wanted !== this.#resourceVersion) {
        return answer(410, statusObject(410, 'Expired', `The resourceVersion for the provided list is too old.`));
      }
    }
    let snapshot: { rv: number; items: StoredObject[] };
    let offset = 0;
    let id: string;
    if (token) {
      const [tokenId, tokenOffset] = token.split(':');
      const found = this.#snapshots.get(tokenId ?? '');
      if (!found || found.rv < this.#oldestResumable.get(kind)!) {
        return answer(410, statusObject(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      }
      snapshot = found;
      offset = Number(tokenOffset);
      id = tokenId!;
    } else {
      const items = [...this.#objects.get(kind)!.values()].filter((o) => namespace === undefined || o.namespace === namespace);
      snapshot = { rv: this.#resourceVersion, items };
      id = randomUUID();
    }
    const end = limit > 0 ? Math.min(snapshot.items.length, offset + limit) : snapshot.items.length;
    const metadata: Record<string, string> = { resourceVersion: String(snapshot.rv) };
    if (end < snapshot.items.length) {
      this.#snapshots.set(id, snapshot);
      metadata.continue = `${id}:${end}`;
    } else {
      this.#snapshots.delete(id);
    }
    const info = kinds[kind];
    this.requests.push({ kind, watch: false, query, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' });
    const head = JSON.stringify({ kind: `${info.kind}List`, apiVersion: info.group ? `${info.group}/${info.version}` : info.version, metadata });
    writeItems(res, `${head.slice(0, -1)},"items":[`, snapshot.items, offset, end, ']}');
  }

  #watch(kind: KubeKind, namespace: string | undefined, query: URLSearchParams, res: ServerResponse, answer: (status: number, body: unknown) => void): void {
    const from = query.get('resourceVersion') ?? '';
    const fromVersion = Number(from);
    const oldest = this.#oldestResumable.get(kind)!;
    if (from !== '' && from !== '0' && (fromVersion < oldest || fromVersion > this.#resourceVersion)) {
      const gone = statusObject(410, 'Expired', `too old resource version: ${from} (${oldest})`);
      if (this.#goneAs === 'http') return answer(410, gone);
      this.requests.push({ kind, watch: true, query, status: 200 });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(eventLine('ERROR', JSON.stringify(gone)));
      res.end();
      return;
    }
    this.requests.push({ kind, watch: true, query, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const watcher: Watcher = { kind, namespace, response: res, bookmarks: query.get('allowWatchBookmarks') === 'true', timers: [] };
    // Version "" or "0" means "from any version": the stream starts with the current objects as ADDED.
    if (from === '' || from === '0') {
      for (const object of this.#objects.get(kind)!.values()) {
        if (namespace === undefined || object.namespace === namespace) res.write(eventLine('ADDED', object.json));
      }
    } else {
      for (const event of this.#events.get(kind)!) if (event.rv > fromVersion && matches(watcher, event)) res.write(event.line);
    }
    const info = kinds[kind];
    const bookmark = (): void => {
      const object = { kind: info.kind, apiVersion: info.group ? `${info.group}/${info.version}` : info.version, metadata: { resourceVersion: String(this.#resourceVersion) } };
      res.write(eventLine('BOOKMARK', JSON.stringify(object)));
    };
    if (watcher.bookmarks) watcher.timers.push(setInterval(bookmark, this.#bookmarkIntervalMs));
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? 0);
    if (timeoutSeconds > 0) {
      watcher.timers.push(
        setTimeout(() => {
          // As kube-apiserver does: a last bookmark, so the client resumes from the newest version.
          if (watcher.bookmarks) bookmark();
          this.#endWatch(watcher);
        }, timeoutSeconds * 1000),
      );
    }
    this.#watchers.add(watcher);
    res.on('close', () => this.#endWatch(watcher));
  }

  #endWatch(watcher: Watcher): void {
    for (const timer of watcher.timers) clearTimeout(timer);
    this.#watchers.delete(watcher);
    watcher.response.end();
  }
}

/** What kube-apiserver's ValidateListOptions refuses about resourceVersionMatch (HTTP 422), or undefined. */
function listOptionsProblem(version: string, match: string, token: string): string | undefined {
  if (match === '') return undefined;
  if (match !== 'NotOlderThan' && match !== 'Exact') return `resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan", ""`;
  if (token !== '') return 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided';
  if (version === '') return 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided';
  if (match === 'Exact' && version === '0') return 'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"';
  return undefined;
}

function keyOf(kind: KubeKind, name: string, namespace: string | undefined): string {
  return kinds[kind].namespaced ? `${namespace ?? 'default'}/${name}` : name;
}

function matches(watcher: Watcher, event: ChangeEvent): boolean {
  return watcher.kind === event.kind && (watcher.namespace === undefined || watcher.namespace === event.namespace);
}

/** One watch event line; the object is JSON already. */
function eventLine(type: string, json: string): string {
  return `{"type":"${type}","object":${json}}\n`;
}

/** Writes head, items[from..to) joined by commas, and tail, waiting for the socket to drain whenever it asks to. */
function writeItems(res: ServerResponse, head: string, items: readonly StoredObject[], from: number, to: number, tail: string): void {
  res.write(head);
  let i = from;
  const more = (): void => {
    while (i < to) {
      const ok = res.write(i === from ? items[i]!.json : `,${items[i]!.json}`);
      i++;
      if (!ok) {
        res.once('drain', more);
        return;
      }
    }
    res.end(tail);
  };
  // A client that goes away mid-list leaves nothing waiting.
  res.once('close', () => (i = to));
  more();
}

function statusObject(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** /api/v1/pods, /api/v1/namespaces/NS/pods, /apis/apps/v1/replicasets, ... */
function parsePath(pathname: string): { kind: KubeKind; namespace: string | undefined } | undefined {
  const match = /^\/(?:api\/v1|apis\/(apps|batch)\/v1)(?:\/namespaces\/([^/]+))?\/([a-z]+)$/.exec(pathname);
  if (!match) return undefined;
  const [, group = '', namespace, plural] = match;
  for (const [kind, info] of Object.entries(kinds) as Array<[KubeKind, KindInfo]>) {
    if (info.plural === plural && info.group === group && (info.namespaced || namespace === undefined)) return { kind, namespace };
  }
  return undefined;
}

/** A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI in a directory removed at once. */
function makeTestCertificates(): { ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'podflow-kube-ca-'));
  try {
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl('req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=podflow-test-kube-ca');
    openssl('req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver');
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
    const read = (name: string) => readFileSync(join(dir, name), 'utf8');
    return { ca: read('ca.pem'), cert: read('server.pem'), key: read('server.key') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
