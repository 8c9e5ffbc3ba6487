// Ties each captured network namespace to its pod, so the observed end of a
// flow is named by where it was captured, not by an address lookup.
//
// (a) By the pod UID in the cgroup path of a process inside the namespace:
//     /proc/<pid>/cgroup holds ".../kubepods/burstable/pod<uid>/<container>"
//     (cgroupfs driver) or ".../kubepods-burstable-pod<uid with _>.slice/..."
//     (systemd driver), on cgroup v1 and v2 alike. The processes are those
//     discovery found the namespace through (/proc/<pid>/ns/net), else those
//     whose ns/net is the namespace (a scan of /proc; needs hostPID). This is
//     the pod's own word and is preferred: it replaces a tie by address, and
//     it stays after the pod is deleted (the namespace's last flows are
//     flushed when it goes, often after the pod object has).
// (b) Else by the namespace's interface addresses matching the podIPs of
//     exactly one live pod on this node (NODE_NAME): not finished, and not
//     terminating, since a terminating pod never gets a new namespace, while
//     the next pod given its address does (the IP-reuse case: pod A
//     terminating with IP X, its namespace gone, a new namespace with X, pod
//     B with X in the API only later). A tie by address is no promise: it is
//     made again at every change of this node's pods and of the namespace's
//     addresses, so it ends when its pod terminates, finishes or is deleted,
//     or another pod claims the address, and moves to a new unique holder.
//
// A namespace not tied to a pod (its pause process or its veth may come after
// the namespace, the pod's IP after both) is tried again when a pod of this
// node changes, when its addresses change (setInterfaceAddresses, from the
// capture's interface events) and on every resolvePending(). onChange says
// when a namespace's pod or addresses changed.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PodflowError } from '../common/errors.ts';
import type { DiscoveredNamespace } from '../netns/discovery.ts';
import { type IpKey, ipKey } from './ip-keys.ts';
import type { SlimPod, WatchEventType } from './types.ts';

export interface NetnsPodsOptions {
  /** This node's name (NODE_NAME): only its pods can own its namespaces. */
  nodeName: string;
  /** procfs root for cgroup lookups; null skips them (address matching only). Default '/proc'. */
  procRoot?: string | null;
  /**
   * The addresses of a namespace's interfaces, read inside it: the agent
   * passes netns/interfaces.ts's listAddresses (getifaddrs in the native
   * addon), so enrich/ loads no native code and its tests need no build.
   */
  listAddresses: (nsPath: string) => string[];
  /** Told when a namespace's pod or addresses changed (tied, untied, tied to another pod, an address came or went). */
  onChange?: (key: string) => void;
  /**
   * Told when a terminating pod's address left its namespace (its veth went,
   * as at a CNI DEL) or the namespace went from this node: the address is
   * free from now on, for the next pod.
   */
  onAddressFreed?: (uid: string) => void;
}

/** One namespace and what is known of its pod. Updated in place as pods and addresses become known. */
export interface NamespacePod {
  readonly key: string;
  /** The pod's UID once known (from the cgroup path, or from the matched pod). */
  readonly uid: string | undefined;
  /** The pod as last seen; undefined while the namespace is tied to no pod. */
  readonly pod: SlimPod | undefined;
  readonly via: 'cgroup' | 'address' | undefined;
  /**
   * The pod's IPs and every interface address the namespace has had: an
   * address here is the observed pod's side of a flow. Kept after an address
   * leaves (a CNI DEL removes the veth before the namespace), since the
   * namespace's last flows are named after that.
   */
  readonly addresses: ReadonlySet<IpKey>;
  /** The namespace has gone from this node: nothing more will be learnt of it. */
  readonly gone: boolean;
}

export interface NetnsPodsStats {
  /** Namespaces tied to a pod by a cgroup path / by their addresses. */
  byCgroup: number;
  byAddress: number;
  /** Ties by address undone: the pod terminated, finished or was deleted, or another pod claimed the address. */
  untied: number;
  /** Times a namespace's addresses matched more than one live pod of this node (no tie then). */
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
  /** Interface addresses as last listed: what ties it by address. */
  interfaceAddresses: IpKey[];
  /** Every interface address listed since it was added. */
  everListed: Set<IpKey>;
  /** Cgroup lookups done; they stop at MAX_CGROUP_TRIES. */
  cgroupTries: number;
  /** Its addresses matched more than one live pod at the last try. */
  ambiguous: boolean;
  gone: boolean;
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
  readonly stats: NetnsPodsStats = { byCgroup: 0, byAddress: 0, untied: 0, ambiguous: 0, readErrors: 0 };
  readonly #nodeName: string;
  readonly #procRoot: string | null;
  readonly #listAddresses: (nsPath: string) => string[];
  readonly #onChange: (key: string) => void;
  readonly #onAddressFreed: (uid: string) => void;
  readonly #entries = new Map<string, Entry>();
  /** Pods of this node by uid. */
  readonly #pods = new Map<string, SlimPod>();

  constructor(options: NetnsPodsOptions) {
    if (!options.nodeName) throw new PodflowError('PODFLOW_ERR_ENRICH_CONFIG', 'nodeName (NODE_NAME) is empty');
    this.#nodeName = options.nodeName;
    this.#procRoot = options.procRoot === undefined ? '/proc' : options.procRoot;
    this.#listAddresses = options.listAddresses;
    this.#onChange = options.onChange ?? (() => {});
    this.#onAddressFreed = options.onAddressFreed ?? (() => {});
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
      if (!this.#pods.delete(pod.uid)) return;
    } else if (type === 'delete') this.#pods.delete(pod.uid);
    else this.#pods.set(pod.uid, pod);
    for (const e of this.#entries.values()) {
      if (e.via === 'cgroup') {
        // Kept after a delete: its last state names the namespace's last flows.
        if (e.uid === pod.uid) this.#setPod(e, pod, 'cgroup');
      } else this.#matchAddresses(e);
    }
  }

  /** Starts tracking a namespace and tries to resolve it; resolves when that try is done. */
  async addNamespace(ns: DiscoveredNamespace): Promise<void> {
    if (this.#entries.has(ns.key)) return;
    const entry: Entry = {
      key: ns.key, ns, uid: undefined, pod: undefined, via: undefined,
      addresses: new Set(), interfaceAddresses: [], everListed: new Set(), cgroupTries: 0, ambiguous: false, gone: false,
    };
    this.#entries.set(ns.key, entry);
    await this.#resolve(entry);
  }

  /** The namespace's interface addresses as listed now (the capture's interface events): re-ties it if they changed. */
  setInterfaceAddresses(key: string, addresses: readonly string[]): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#setInterfaceAddresses(entry, keysOf(addresses));
  }

  /**
   * Stops tracking a namespace (it has gone from this node); a NamespacePod
   * already handed out keeps what it knew and says it is gone. The
   * terminating pods it belonged to (its pod, or those with one of its
   * addresses) have their address freed (onAddressFreed).
   */
  removeNamespace(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.gone = true;
    this.#entries.delete(key);
    const owners = new Set(this.#terminatingHolders(entry.interfaceAddresses));
    if (entry.pod?.deletingSinceMs !== undefined) owners.add(entry.pod.uid);
    for (const uid of owners) this.#onAddressFreed(uid);
  }

  /** Tries every namespace not tied to a pod yet again, and those tied by address for their cgroup (new processes, interfaces, addresses). */
  async resolvePending(): Promise<void> {
    const due = [...this.#entries.values()].filter((e) => e.pod === undefined || (e.via !== 'cgroup' && this.#cgroupDue(e)));
    await Promise.all(due.map((e) => this.#resolve(e)));
  }

  #cgroupDue(entry: Entry): boolean {
    return entry.via !== 'cgroup' && this.#procRoot !== null && entry.cgroupTries < MAX_CGROUP_TRIES;
  }

  async #resolve(entry: Entry): Promise<void> {
    if (this.#procRoot !== null && this.#cgroupDue(entry)) {
      entry.cgroupTries++;
      const uid = await this.#uidFromProcesses(entry.ns, this.#procRoot);
      if (uid !== undefined && !entry.gone && entry.via !== 'cgroup') {
        this.stats.byCgroup++;
        entry.uid = uid;
        entry.via = 'cgroup';
        entry.ambiguous = false;
        const pod = this.#pods.get(uid);
        entry.pod = pod;
        this.#refreshAddresses(entry);
        this.#onChange(entry.key);
      }
    }
    if (entry.gone) return;
    this.#setInterfaceAddresses(entry, this.#readAddresses(entry.ns));
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
        return keysOf(this.#listAddresses(path));
      } catch {
        // This path is gone (a /proc path whose process exited): try the next.
        this.stats.readErrors++;
      }
    }
    return [];
  }

  #setInterfaceAddresses(entry: Entry, keys: IpKey[]): void {
    const left = entry.interfaceAddresses.filter((k) => !keys.includes(k));
    if (left.length === 0 && keys.every((k) => entry.interfaceAddresses.includes(k))) return;
    entry.interfaceAddresses = keys;
    for (const key of keys) entry.everListed.add(key);
    for (const uid of this.#terminatingHolders(left)) this.#onAddressFreed(uid);
    this.#refreshAddresses(entry);
    if (entry.via !== 'cgroup' && this.#matchAddresses(entry)) return;
    this.#onChange(entry.key);
  }

  /** Ties an entry not tied by cgroup to the one live pod of this node with one of its addresses, or to none. Returns whether that changed (onChange told). */
  #matchAddresses(entry: Entry): boolean {
    let match: SlimPod | undefined;
    let matches = 0;
    for (const pod of this.#pods.values()) {
      if (pod.phase === 'Succeeded' || pod.phase === 'Failed' || pod.deletingSinceMs !== undefined) continue;
      if (this.#holdsOneOf(pod, entry.interfaceAddresses)) {
        match = pod;
        matches++;
      }
    }
    if (matches > 1 && !entry.ambiguous) this.stats.ambiguous++;
    entry.ambiguous = matches > 1;
    const next = matches === 1 ? match : undefined;
    if (next === entry.pod) return false;
    if (next !== undefined && next.uid === entry.uid) {
      // The same pod, a newer state of it.
      this.#setPod(entry, next, 'address');
      return true;
    }
    if (entry.pod !== undefined) this.stats.untied++;
    if (next !== undefined) this.stats.byAddress++;
    this.#setPod(entry, next, next && 'address');
    return true;
  }

  /** The terminating pods of this node with one of these addresses. */
  #terminatingHolders(keys: readonly IpKey[]): string[] {
    if (keys.length === 0) return [];
    return [...this.#pods.values()].filter((pod) => pod.deletingSinceMs !== undefined && this.#holdsOneOf(pod, keys)).map((pod) => pod.uid);
  }

  #holdsOneOf(pod: SlimPod, keys: readonly IpKey[]): boolean {
    return keys.length > 0 && pod.podIPs.some((ip) => keys.includes(ipKey(ip) ?? ''));
  }

  #setPod(entry: Entry, pod: SlimPod | undefined, via: 'cgroup' | 'address' | undefined): void {
    entry.pod = pod;
    entry.uid = via === 'cgroup' ? entry.uid : pod?.uid;
    entry.via = via;
    this.#refreshAddresses(entry);
    this.#onChange(entry.key);
  }

  #refreshAddresses(entry: Entry): void {
    entry.addresses = new Set(entry.everListed);
    for (const ip of entry.pod?.podIPs ?? []) {
      const key = ipKey(ip);
      if (key !== undefined) entry.addresses.add(key);
    }
  }
}

function keysOf(addresses: readonly string[]): IpKey[] {
  const keys: IpKey[] = [];
  for (const text of addresses) {
    const key = ipKey(text);
    if (key !== undefined) keys.push(key);
  }
  return keys;
}
