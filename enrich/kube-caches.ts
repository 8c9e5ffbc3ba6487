// Watched caches of the Kubernetes objects podflow names flows with: pods (all
// namespaces), services, nodes, and the owner-chain links (replica sets, jobs).
//
// Each resource is one client-node ListWatch, reused rather than rewritten: it
// runs the protocol (list, then watch from the list's version; resume after a
// timeout from the last version; relist after 410 Gone; reconnect backoff).
// The objects are ours, in one store per resource (enrich/cached-objects.ts:
// the pods as rows of a pod table, which the lease table answers from too;
// ListWatch's own map stays empty), and what ListWatch does not do, we add:
//  - slimming in place: the list function streams each page (enrich/kube-list.ts:
//    one item parsed at a time, no typed objects) and applies each item, slim
//    (enrich/kube-slim.ts), to the store as it arrives; a relist then deletes what
//    it did not list. So a relist of 100k pods holds one store, not the old
//    cache, the new one and the list at once. The Watch handed to ListWatch
//    applies each event itself and passes ListWatch only what it needs to
//    resume (the version, as a bookmark) and the 410 Gone that makes it relist;
//  - restarting: any other error (API server gone, 401, 403) stops a ListWatch
//    for good; we start it again with backoff, on our clock;
//  - clean shutdown: ListWatch can open a watch after stop() (a list or a
//    reconnect delay in flight); the Watch wrapper refuses once closed and
//    aborts every stream it opened, and the delays run on timers we cancel.
// The kubeconfig and the errors' descriptions are enrich/kube-config.ts's.
import { type KubeConfig, ListWatch, Watch, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { PodflowError } from '../common/errors.ts';
import { systemClock, type Clock, type ClockTimer } from '../common/clock.ts';
import { describeKubeError, loadInCluster, loadKubeconfigFile, versionUnavailable } from './kube-config.ts';
import { listPage, type ListPageQuery } from './kube-list.ts';
import type { SharedPodRows } from './leases.ts';
import { CachedAsObjects, CachedAsPodRows, type CachedObjects } from './cached-objects.ts';
import type { FieldTree } from './json-fields.ts';
import { checkLabelKeys, nodeFields, ownerLinkFields, podFields, serviceFields, slimNode, slimOwnerLink, slimPod, slimService, type RawObject } from './kube-slim.ts';
import type { SlimNode, SlimOwnerLink, SlimPod, SlimService, WatchEventType } from './types.ts';

/** The slim type each watched resource is reduced to. */
export interface KubeSlimObjects {
  pod: SlimPod;
  service: SlimService;
  node: SlimNode;
  replicaset: SlimOwnerLink;
  job: SlimOwnerLink;
}
export type KubeResource = keyof KubeSlimObjects;
export const kubeResources: readonly KubeResource[] = ['pod', 'service', 'node', 'replicaset', 'job'];

/** `previous` is the cached state before the event (undefined for an add). For a delete, `object` is the last state seen. */
export type KubeChangeListener<R extends KubeResource> = (
  type: WatchEventType,
  object: KubeSlimObjects[R],
  previous: KubeSlimObjects[R] | undefined,
) => void;

export interface KubeResourceStatus {
  /** The first list has completed and the watch is open or being resumed. */
  synced: boolean;
  /** Objects in the cache now. */
  objects: number;
  /** Add, update and delete events emitted to subscribers (no-op updates are not emitted). */
  events: number;
  /** Errors that stopped the informer (each one is followed by a restart). */
  errors: number;
  /** Times the informer was started again after an error. */
  restarts: number;
  /** Lists completed after the first one: each follows a 410 Gone (the watch version had expired). */
  relists: number;
  /**
   * Listed objects skipped because their JSON was malformed. Unread, such an
   * object is not in the cache (a relist deletes it if it was).
   */
  badObjects: number;
  /** The message of the last error, naming the resource and the cause; undefined until one happens. */
  lastError: string | undefined;
}

export interface KubeBackoff {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export interface KubeCachesOptions {
  /** A kubeconfig file. Without it: the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT and its token file). */
  kubeconfig?: string;
  /** Label keys kept on pods, in this order; all other labels are dropped on arrival. At most maxLabelKeys. */
  labelKeys?: readonly string[];
  /** Restart delay after an informer error. Default 1 s growing ×1.5 to 30 s (see defaultRestartBackoff). */
  restartBackoff?: KubeBackoff;
  /** Page size of the lists, so a list of 100k pods is never held whole. Default 500 (client-go's). */
  listPageSize?: number;
  /** Asked of the server per watch; it ends the stream after this and ListWatch resumes from the last version. Default 300. */
  watchTimeoutSeconds?: number;
  clock?: Clock;
}

// Factor 1.5, not 2: after an outage of T seconds the next attempt comes at
// most (factor - 1) × T after the server's return, so a 10 s outage is over
// for us within 5 s. Attempts while the server is down are cheap (a refused
// connection or a 401; a restart resumes the watch, it does not relist).
export const defaultRestartBackoff: KubeBackoff = { initialMs: 1000, maxMs: 30_000, factor: 1.5 };

/** Told of every error that stopped an informer (before its restart), e.g. for the agent's log. */
export type KubeErrorListener = (resource: KubeResource, error: PodflowError) => void;

/** Any resource's slim object, as the per-resource state holds it. */
type AnySlim = KubeSlimObjects[KubeResource];

type AnyListener = (type: WatchEventType, object: never, previous: never) => void;

interface ResourceState {
  resource: KubeResource;
  /** The API's plural name, used in messages ("pods: forbidden (403) ..."). */
  plural: string;
  informer: ListWatch<KubernetesObject>;
  /** The one store of the resource's slim objects, by namespace and name. */
  objects: CachedObjects<AnySlim>;
  /** uid → slim object, for the owner-chain resources. */
  byUid: Map<string, unknown> | undefined;
  listeners: Set<AnyListener>;
  status: KubeResourceStatus;
  listsDone: number;
  /** The newest resourceVersion seen, from a list, a watch event or a bookmark: where a relist starts. */
  lastSyncVersion: string;
  restartDelayMs: number;
  restartTimer: ClockTimer | undefined;
}

export class KubeCaches {
  readonly #clock: Clock;
  readonly #backoff: KubeBackoff;
  readonly #labelKeys: readonly string[];
  readonly #server: string;
  readonly #states: Map<KubeResource, ResourceState>;
  readonly #podStore = new CachedAsPodRows();
  /** Aborts every open watch stream and list request at close(). */
  readonly #closing = new AbortController();
  /** Reconnect delays handed to ListWatch; cancelled at close(), their promises then never settle. */
  readonly #delayTimers = new Set<ClockTimer>();
  readonly #openWatches = new Set<AbortController>();
  readonly #errorListeners = new Set<KubeErrorListener>();
  readonly #badObjectListeners = new Set<KubeErrorListener>();
  #started = false;
  #closed = false;

  /** Throws PODFLOW_ERR_KUBE_CONFIG for a missing or broken kubeconfig, PODFLOW_ERR_KUBE_SETTING for bad options. */
  constructor(options: KubeCachesOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#backoff = checkBackoff(options.restartBackoff ?? defaultRestartBackoff);
    this.#labelKeys = checkLabelKeys(options.labelKeys ?? []);
    const pageSize = options.listPageSize ?? 500;
    if (!Number.isInteger(pageSize) || pageSize < 1) {
      throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `listPageSize must be a positive integer, got ${pageSize}`);
    }
    const watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
    if (!Number.isInteger(watchTimeoutSeconds) || watchTimeoutSeconds < 1) {
      throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `watchTimeoutSeconds must be a positive integer, got ${watchTimeoutSeconds}`);
    }
    const kubeConfig = options.kubeconfig === undefined ? loadInCluster() : loadKubeconfigFile(options.kubeconfig);
    this.#server = kubeConfig.getCurrentCluster()?.server ?? '';

    // Every list request carries the close signal, so close() ends a list in flight too.
    const signal = this.#closing.signal;
    const listers: Record<KubeResource, [plural: string, path: string, keep: FieldTree, slim: (o: RawObject) => unknown]> = {
      pod: ['pods', '/api/v1/pods', podFields(this.#labelKeys), (o) => slimPod(o, this.#labelKeys)],
      service: ['services', '/api/v1/services', serviceFields, slimService],
      node: ['nodes', '/api/v1/nodes', nodeFields, slimNode],
      replicaset: ['replicasets', '/apis/apps/v1/replicasets', ownerLinkFields, (o) => slimOwnerLink(o, 'ReplicaSet')],
      job: ['jobs', '/apis/batch/v1/jobs', ownerLinkFields, (o) => slimOwnerLink(o, 'Job')],
    };

    this.#states = new Map();
    for (const resource of kubeResources) {
      const [plural, path, keep, slim] = listers[resource];
      const state: ResourceState = {
        resource,
        plural,
        informer: undefined as never,
        objects: resource === 'pod' ? this.#podStore : new CachedAsObjects(),
        byUid: resource === 'replicaset' || resource === 'job' ? new Map() : undefined,
        listeners: new Set(),
        status: { synced: false, objects: 0, events: 0, errors: 0, restarts: 0, relists: 0, badObjects: 0, lastError: undefined },
        listsDone: 0,
        lastSyncVersion: '',
        restartDelayMs: this.#backoff.initialMs,
        restartTimer: undefined,
      };
      // Which version a list asks for, as client-go's reflector does. The
      // first list: "0", any version, from the API server's watch cache (no
      // etcd read, however many agents start at once). A relist (after 410
      // Gone): at least the last version seen, unpaginated, from the watch
      // cache too (a paginated list at a version is an exact read from
      // etcd), and never older than what the cache already holds. Both say
      // resourceVersionMatch=NotOlderThan, so no server reads the version as
      // an exact one. If the server cannot serve that version (410 Expired,
      // or 504 "too large": e.g. etcd restored from a backup), a consistent
      // list, in pages. Each item is applied as it arrives (an add, an update,
      // or nothing when unchanged); `listed` holds the uid of each object
      // seen, the cache's own string (no copy of names or uids, which a
      // relist of 100k pods would hold until it ends), so what the list did
      // not name is deleted once it is complete.
      const listAt = async (resourceVersion: string | undefined, limit: number | undefined, listed: Set<string | undefined>): Promise<string> => {
        let listedAt = '';
        let next: string | undefined;
        const onItem = (item: unknown): void => {
          if (this.#closed) return;
          const raw = item as RawObject;
          listed.add(this.#apply(state, 'update', raw, slim));
        };
        const onBadItem = (error: SyntaxError): void => {
          if (this.#closed) return;
          state.status.badObjects++;
          const described = new PodflowError('PODFLOW_ERR_KUBE_BAD_OBJECT', `${plural}: skipped one listed object (${error.message})`, { cause: error });
          for (const listener of this.#badObjectListeners) listener(resource, described);
        };
        do {
          // A continued page carries no version: the token holds it (and the server refuses a match with it).
          const query: ListPageQuery =
            next !== undefined ? { limit, continue: next } : resourceVersion === undefined ? { limit } : { limit, resourceVersion, resourceVersionMatch: 'NotOlderThan' };
          const page = await listPage(kubeConfig, path, query, signal, { keep, onItem, onBadItem });
          // A paginated list has one resourceVersion: the first page's.
          if (next === undefined) listedAt = page.resourceVersion;
          next = page.continue;
        } while (next !== undefined);
        return listedAt;
      };
      const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
        const listed = new Set<string | undefined>();
        let version: string;
        if (state.listsDone === 0 || state.lastSyncVersion === '') version = await listAt('0', pageSize, listed);
        else {
          try {
            version = await listAt(state.lastSyncVersion, undefined, listed);
          } catch (err) {
            if (!versionUnavailable(err)) throw err;
            version = await listAt(undefined, pageSize, listed);
          }
        }
        for (const [namespace, name, uid] of state.objects.uids()) {
          if (listed.has(uid)) continue;
          const last = state.objects.get(namespace, name)!;
          this.#remove(state, namespace, name, last, last);
        }
        state.lastSyncVersion = version;
        if (state.listsDone++ > 0) state.status.relists++;
        // Applied already: ListWatch keeps nothing, and watches from this version.
        return { metadata: { resourceVersion: version }, items: [] };
      };
      const watch = this.#slimmingWatch(kubeConfig, state, slim, watchTimeoutSeconds);
      state.informer = new ListWatch<KubernetesObject>(path, watch, list, false, undefined, undefined, {
        delayFn: (ms) => this.#delay(ms),
      });
      state.informer.on('error', (err) => this.#failed(state, err));
      this.#states.set(resource, state);
    }
  }

  /** Starts every informer. Errors never throw: they are counted in status() and retried with backoff. */
  start(): void {
    if (this.#closed) throw new PodflowError('PODFLOW_ERR_KUBE_CLOSED', 'start() after close()');
    if (this.#started) return;
    this.#started = true;
    for (const state of this.#states.values()) this.#run(state);
  }

  /** Stops every watch, list and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#delayTimers) this.#clock.clearTimeout(timer);
    this.#delayTimers.clear();
    for (const state of this.#states.values()) {
      if (state.restartTimer !== undefined) this.#clock.clearTimeout(state.restartTimer);
      state.restartTimer = undefined;
      await state.informer.stop();
    }
    this.#closing.abort();
    for (const controller of this.#openWatches) controller.abort();
    this.#openWatches.clear();
  }

  on<R extends KubeResource>(resource: R, listener: KubeChangeListener<R>): void {
    this.#state(resource).listeners.add(listener as AnyListener);
  }

  off<R extends KubeResource>(resource: R, listener: KubeChangeListener<R>): void {
    this.#state(resource).listeners.delete(listener as AnyListener);
  }

  onError(listener: KubeErrorListener): void {
    this.#errorListeners.add(listener);
  }

  /** Told of every listed object skipped as malformed JSON (PODFLOW_ERR_KUBE_BAD_OBJECT), e.g. for the agent's log. */
  onBadObject(listener: KubeErrorListener): void {
    this.#badObjectListeners.add(listener);
  }

  /** True once every resource's first list is done. */
  synced(): boolean {
    for (const state of this.#states.values()) if (!state.status.synced) return false;
    return true;
  }

  status(): Record<KubeResource, KubeResourceStatus> {
    const result = {} as Record<KubeResource, KubeResourceStatus>;
    for (const [resource, state] of this.#states) result[resource] = { ...state.status, objects: state.objects.size };
    return result;
  }

  /** The pods' store by row, for the lease table to answer from (LeaseTableOptions.pods) rather than keep a copy. */
  podRows(): SharedPodRows {
    return this.#podStore;
  }

  pods(): IterableIterator<SlimPod> {
    return this.#state('pod').objects.values() as IterableIterator<SlimPod>;
  }

  services(): IterableIterator<SlimService> {
    return this.#state('service').objects.values() as IterableIterator<SlimService>;
  }

  nodes(): IterableIterator<SlimNode> {
    return this.#state('node').objects.values() as IterableIterator<SlimNode>;
  }

  replicaSet(uid: string): SlimOwnerLink | undefined {
    return this.#state('replicaset').byUid?.get(uid) as SlimOwnerLink | undefined;
  }

  job(uid: string): SlimOwnerLink | undefined {
    return this.#state('job').byUid?.get(uid) as SlimOwnerLink | undefined;
  }

  #state(resource: KubeResource): ResourceState {
    const state = this.#states.get(resource);
    if (!state) throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `unknown resource ${String(resource)}`);
    return state;
  }

  /** Starts (or restarts) one informer; ListWatch reports its failures through 'error', a rejection here is one too. */
  #run(state: ResourceState): void {
    state.informer.start().catch((err: unknown) => this.#failed(state, err));
  }

  #failed(state: ResourceState, err: unknown): void {
    if (this.#closed) return;
    const error = describeKubeError(state.plural, this.#server, err);
    state.status.errors++;
    state.status.lastError = error.message;
    for (const listener of this.#errorListeners) listener(state.resource, error);
    if (state.restartTimer !== undefined) return;
    const delay = state.restartDelayMs;
    state.restartDelayMs = Math.min(this.#backoff.maxMs, delay * this.#backoff.factor);
    state.restartTimer = this.#clock.setTimeout(() => {
      state.restartTimer = undefined;
      if (this.#closed) return;
      state.status.restarts++;
      this.#run(state);
    }, delay);
  }

  #delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#delayTimers.delete(timer);
        resolve();
      }, ms);
      this.#delayTimers.add(timer);
    });
  }

  /**
   * The Watch ListWatch uses: adds bookmarks and a server-side timeout to its
   * query, slims every event, marks the resource synced (ListWatch opens a
   * watch only after its list is applied), resets the restart backoff once a
   * stream is open, and opens nothing after close().
   */
  #slimmingWatch(kubeConfig: KubeConfig, state: ResourceState, slim: (o: RawObject) => unknown, timeoutSeconds: number): Watch {
    const inner = new Watch(kubeConfig);
    const slimming = new Watch(kubeConfig);
    slimming.watch = async (
      path: string,
      queryParams: Record<string, string | number | boolean | undefined>,
      callback: (phase: string, object: unknown, watchObject?: unknown) => void,
      done: (err: unknown) => void,
    ): Promise<AbortController> => {
      const refused = new AbortController();
      refused.abort();
      if (this.#closed) return refused;
      state.status.synced = true;
      let ended = false;
      let controller: AbortController | undefined;
      const slimmed = (phase: string, object: unknown, watchObject?: unknown): void => {
        // ERROR events carry a Status (410 Gone): ListWatch reads it as it is, and relists.
        if (phase === 'ERROR') return callback(phase, object, watchObject);
        const raw = object as RawObject;
        const version = raw.metadata?.resourceVersion || state.lastSyncVersion;
        state.lastSyncVersion = version;
        if (phase === 'ADDED' || phase === 'MODIFIED') this.#apply(state, 'update', raw, slim);
        else if (phase === 'DELETED') this.#apply(state, 'delete', raw, slim);
        // ListWatch needs only the version to resume from: a bookmark, so it stores nothing.
        callback('BOOKMARK', { metadata: { resourceVersion: version } }, watchObject);
      };
      const finished = (err: unknown): void => {
        ended = true;
        if (controller) this.#openWatches.delete(controller);
        done(err);
      };
      try {
        controller = await inner.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds }, slimmed, finished);
      } catch (err) {
        // Thrown before any request (authentication set-up): report it as the end of this watch.
        finished(err);
        return refused;
      }
      if (!ended) {
        if (this.#closed) controller.abort();
        else {
          this.#openWatches.add(controller);
          state.restartDelayMs = this.#backoff.initialMs;
        }
      }
      return controller;
    };
    return slimming;
  }

  /**
   * Applies an object's state: 'update' (from a list or an ADDED or MODIFIED
   * event) is an add for a name not cached, an update for a cached one (no
   * event when nothing podflow keeps changed); 'delete' removes it. Returns
   * the uid of the object cached under the name afterwards, the cache's own
   * string (undefined after a delete).
   */
  #apply(state: ResourceState, type: 'update' | 'delete', raw: RawObject, slim: (o: RawObject) => unknown): string | undefined {
    const namespace = raw.metadata?.namespace ?? '';
    const name = raw.metadata?.name ?? '';
    const objects = state.objects;
    const cachedUid = objects.uid(namespace, name);
    const next = slim(raw) as AnySlim;
    if (type === 'delete') {
      if (cachedUid !== undefined) this.#remove(state, namespace, name, next, objects.get(namespace, name)!);
      return undefined;
    }
    if (cachedUid !== undefined && cachedUid === next.uid && objects.holds(namespace, name, next)) return cachedUid;
    if (cachedUid === undefined) this.#store(state, namespace, name, next, undefined);
    else if (cachedUid !== next.uid) {
      // Same name, new object (a StatefulSet pod recreated while we were away, seen
      // by a relist as an update): to subscribers it is a delete and an add.
      const previous = objects.get(namespace, name)!;
      this.#remove(state, namespace, name, previous, previous);
      this.#store(state, namespace, name, next, undefined);
    } else this.#store(state, namespace, name, next, objects.get(namespace, name));
    // The store keeps the uid string of the object it was given.
    return next.uid;
  }

  /** `name` is the object's own (the slimmers keep metadata.name as it is), so the map holds no copy of it. */
  #store(state: ResourceState, namespace: string, name: string, next: AnySlim, previous: AnySlim | undefined): void {
    state.objects.set(namespace, name, next);
    state.byUid?.set(next.uid, next);
    this.#emit(state, previous === undefined ? 'add' : 'update', next, previous);
  }

  /** `last` is the object's last state seen (a delete event's, or the cached one). */
  #remove(state: ResourceState, namespace: string, name: string, last: AnySlim, previous: AnySlim): void {
    state.objects.delete(namespace, name);
    state.byUid?.delete(previous.uid);
    this.#emit(state, 'delete', last, previous);
  }

  #emit(state: ResourceState, type: WatchEventType, object: unknown, previous: unknown): void {
    state.status.events++;
    for (const listener of state.listeners) (listener as (t: WatchEventType, o: unknown, p: unknown) => void)(type, object, previous);
  }
}

function checkBackoff(backoff: KubeBackoff): KubeBackoff {
  const { initialMs, maxMs, factor } = backoff;
  if (!(initialMs > 0) || !(maxMs >= initialMs) || !(factor >= 1)) {
    throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `restartBackoff needs 0 < initialMs <= maxMs and factor >= 1, got ${JSON.stringify(backoff)}`);
  }
  return backoff;
}
