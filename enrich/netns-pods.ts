// Ties each captured network namespace to its pod, so the observed end of a
// flow is named by where it was captured, not by an address lookup.
//
// (a) By the pod UID in the cgroup path of a process inside the namespace:
//     /proc/<pid>/cgroup holds ".../kubepods/burstable/pod<uid>/<container>"
//     (cgroupfs driver) or ".../kubepods-burstable-pod<uid with _>.slice/..."
//     (systemd driver), on cgroup v1 and v2 alike. The processes are those
//     discovery found the namespace through (/proc/<pid>/ns/net), else those
//     whose ns/net is the namespace (a scan of /proc; needs hostPID).
// (b) Else by the namespace's interface addresses matching the podIPs of
//     exactly one pod on this node (NODE_NAME) that has not finished.
//
// A namespace not resolved yet (its pause process or its veth may come after
// the namespace, the pod's IP after both) is tried again when a pod of this
// node changes and on every resolvePending(). A resolved namespace keeps its
// pod after the pod is deleted: the namespace's last flows are flushed when it
// goes, often after the pod object has.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PodflowError } from '../common/errors.ts';
import type { DiscoveredNamespace } from '../netns/discovery.ts';
import { listInterfaces } from '../netns/interfaces.ts';
import { type IpKey, ipKey } from './ip-keys.ts';
import type { SlimPod, WatchEventType } from './types.ts';

export interface NetnsPodsOptions {
  /** This node's name (NODE_NAME): only its pods can own its namespaces. */
  nodeName: string;
  /** procfs root for cgroup lookups; null skips them (address matching only). Default '/proc'. */
  procRoot?: string | null;
  /** The addresses of a namespace's interfaces. Default: read inside it with getifaddrs (netns/interfaces.ts). */
  listAddresses?: (nsPath: string) => string[];
}

/** One namespace and what is known of its pod. Updated in place as pods and addresses become known. */
export interface NamespacePod {
  readonly key: string;
  /** The pod's UID once known (from the cgroup path, or from the matched pod). */
  readonly uid: string | undefined;
  /** The pod as last seen; kept after the pod is deleted. */
  readonly pod: SlimPod | undefined;
  readonly via: 'cgroup' | 'address' | undefined;
  /** The pod's IPs and the namespace's interface addresses: an address here is the observed pod's side of a flow. */
  readonly addresses: ReadonlySet<IpKey>;
}

export interface NetnsPodsStats {
  /** Namespaces tied to a pod by a cgroup path / by their addresses. */
  byCgroup: number;
  byAddress: number;
  /** Address matches refused because more than one live pod of this node has the address. */
  ambiguous: number;
  /** Reads of a namespace's processes or interfaces that failed (the namespace or process was gone, or no permission). */
  readErrors: number;
}

interface Entry extends NamespacePod {
  key: string;
  ns: DiscoveredNamespace;
  uid: string | undefined;
  pod: SlimPod | undefined;
  via: 'cgroup' | 'address' | undefined;
  addresses: Set<IpKey>;
  /** Interface addresses as last listed. */
  interfaceAddresses: IpKey[];
  /** Cgroup lookups done; they stop at MAX_CGROUP_TRIES. */
  cgroupTries: number;
  removed: boolean;
}

// A pod's pause process joins its namespace within seconds. Past that, a
// namespace without a pod UID in any cgroup (not a pod's, or cgroups not
// visible) is not worth a scan of every process each second; address
// matching goes on, it costs one getifaddrs.
const MAX_CGROUP_TRIES = 5;

const UUID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}';
const CGROUP_POD_UID = new RegExp(`[/-]pod(${UUID})(?:\\.slice)?(?:/|$)`, 'im');

/** The pod UID in the text of a /proc/<pid>/cgroup file, with '-' separators; undefined if none. */
export function podUidFromCgroup(text: string): string | undefined {
  return CGROUP_POD_UID.exec(text)?.[1]?.replaceAll('_', '-').toLowerCase();
}

export class NetnsPods {
  readonly stats: NetnsPodsStats = { byCgroup: 0, byAddress: 0, ambiguous: 0, readErrors: 0 };
  readonly #nodeName: string;
  readonly #procRoot: string | null;
  readonly #listAddresses: (nsPath: string) => string[];
  readonly #entries = new Map<string, Entry>();
  /** Pods of this node by uid. */
  readonly #pods = new Map<string, SlimPod>();

  constructor(options: NetnsPodsOptions) {
    if (!options.nodeName) throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', 'nodeName (NODE_NAME) is empty');
    this.#nodeName = options.nodeName;
    this.#procRoot = options.procRoot === undefined ? '/proc' : options.procRoot;
    this.#listAddresses = options.listAddresses ?? ((path) => listInterfaces(path).flatMap((i) => i.addresses.map((a) => a.address)));
  }

  get(key: string): NamespacePod | undefined {
    return this.#entries.get(key);
  }

  /** Namespaces not tied to a pod yet. */
  get pending(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.pod === undefined) n++;
    return n;
  }

  applyPod(type: WatchEventType, pod: SlimPod): void {
    if (pod.nodeName !== this.#nodeName || pod.hostNetwork) {
      // Moved away or never here: no namespace here is its.
      this.#pods.delete(pod.uid);
      return;
    }
    if (type === 'delete') this.#pods.delete(pod.uid);
    else this.#pods.set(pod.uid, pod);
    for (const e of this.#entries.values()) {
      if (e.uid === pod.uid) this.#setPod(e, pod);
      // A new address may match; a deleted pod may leave one match where there were two.
      else if (e.uid === undefined) this.#matchAddresses(e);
    }
  }

  /** Starts tracking a namespace and tries to resolve it; resolves when that try is done. */
  async addNamespace(ns: DiscoveredNamespace): Promise<void> {
    if (this.#entries.has(ns.key)) return;
    const entry: Entry = {
      key: ns.key, ns, uid: undefined, pod: undefined, via: undefined,
      addresses: new Set(), interfaceAddresses: [], cgroupTries: 0, removed: false,
    };
    this.#entries.set(ns.key, entry);
    await this.#resolve(entry);
  }

  /** Stops tracking a namespace; a NamespacePod already handed out keeps what it knew. */
  removeNamespace(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.removed = true;
    this.#entries.delete(key);
  }

  /** Tries every namespace not tied to a pod yet again (new processes, interfaces, addresses). */
  async resolvePending(): Promise<void> {
    await Promise.all([...this.#entries.values()].filter((e) => e.pod === undefined).map((e) => this.#resolve(e)));
  }

  async #resolve(entry: Entry): Promise<void> {
    if (entry.uid === undefined && this.#procRoot !== null && entry.cgroupTries < MAX_CGROUP_TRIES) {
      entry.cgroupTries++;
      const uid = await this.#uidFromProcesses(entry.ns, this.#procRoot);
      if (uid !== undefined && !entry.removed && entry.uid === undefined) {
        entry.uid = uid;
        entry.via = 'cgroup';
        this.stats.byCgroup++;
        const pod = this.#pods.get(uid);
        if (pod) this.#setPod(entry, pod);
      }
    }
    if (entry.removed) return;
    entry.interfaceAddresses = this.#readAddresses(entry.ns);
    this.#refreshAddresses(entry);
    if (entry.uid === undefined) this.#matchAddresses(entry);
  }

  async #uidFromProcesses(ns: DiscoveredNamespace, procRoot: string): Promise<string | undefined> {
    const prefix = `${procRoot}/`;
    let pids = ns.paths.filter((p) => p.startsWith(prefix) && p.endsWith('/ns/net')).map((p) => p.slice(prefix.length, -'/ns/net'.length));
    if (pids.length === 0) pids = await this.#pidsIn(ns, procRoot);
    for (const pid of pids) {
      try {
        const uid = podUidFromCgroup(await readFile(join(procRoot, pid, 'cgroup'), 'utf8'));
        if (uid !== undefined) return uid;
      } catch {
        // The process exited since; another may still tell.
        this.stats.readErrors++;
      }
    }
    return undefined;
  }

  async #pidsIn(ns: DiscoveredNamespace, procRoot: string): Promise<string[]> {
    const names = await readdir(procRoot).catch(() => {
      this.stats.readErrors++;
      return [] as string[];
    });
    const pids = names.filter((n) => /^\d+$/.test(n));
    const found = await Promise.all(
      pids.map(async (pid) => {
        const st = await stat(join(procRoot, pid, 'ns', 'net')).catch(() => undefined);
        return st !== undefined && st.ino === ns.inode && st.dev === ns.dev ? pid : undefined;
      }),
    );
    return found.filter((pid) => pid !== undefined);
  }

  #readAddresses(ns: DiscoveredNamespace): IpKey[] {
    for (const path of ns.paths) {
      try {
        const keys: IpKey[] = [];
        for (const text of this.#listAddresses(path)) {
          const key = ipKey(text);
          if (key !== undefined) keys.push(key);
        }
        return keys;
      } catch {
        // This path is gone (a /proc path whose process exited): try the next.
        this.stats.readErrors++;
      }
    }
    return [];
  }

  #matchAddresses(entry: Entry): void {
    if (entry.interfaceAddresses.length === 0) return;
    let match: SlimPod | undefined;
    let matches = 0;
    for (const pod of this.#pods.values()) {
      if (pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
      if (pod.podIPs.some((ip) => entry.interfaceAddresses.includes(ipKey(ip) ?? ''))) {
        match = pod;
        matches++;
      }
    }
    if (matches > 1) this.stats.ambiguous++;
    if (matches !== 1 || match === undefined) return;
    entry.uid = match.uid;
    entry.via = 'address';
    this.stats.byAddress++;
    this.#setPod(entry, match);
  }

  #setPod(entry: Entry, pod: SlimPod): void {
    entry.pod = pod;
    this.#refreshAddresses(entry);
  }

  #refreshAddresses(entry: Entry): void {
    entry.addresses = new Set(entry.interfaceAddresses);
    for (const ip of entry.pod?.podIPs ?? []) {
      const key = ipKey(ip);
      if (key !== undefined) entry.addresses.add(key);
    }
  }
}
