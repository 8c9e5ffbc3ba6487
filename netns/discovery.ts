// Finds the node's network namespaces: entries in /var/run/netns and
// /run/netns (made by CNI plugins and `ip netns add`; watched with inotify
// and rescanned) and /proc/<pid>/ns/net (rescanned; needs hostPID), merged by
// namespace identity (st_dev, st_ino) and without the agent's own namespace.
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { PodflowError } from '../common/errors.ts';

export type NamespaceSource = 'netns-dir' | 'proc';

export interface DiscoveredNamespace {
  /** `${dev}:${inode}`: the namespace's identity while it exists. */
  key: string;
  inode: number;
  dev: number;
  /**
   * Paths that open it, the most durable first: netns-dir entries (under the
   * directory's real path, then under each configured spelling of it, e.g.
   * /run/netns/x and /var/run/netns/x), then /proc by pid.
   */
  paths: string[];
  /** Where it was seen first. */
  source: NamespaceSource;
}

export interface NetnsDiscoveryOptions {
  /** Directories of namespace bind mounts. Default ['/var/run/netns', '/run/netns']. */
  netnsDirs?: string[];
  /** procfs root to scan /proc/<pid>/ns/net in; null disables the scan. Default '/proc'. */
  procRoot?: string | null;
  /** Rescan period in ms for both sources (watch events also trigger a directory rescan). Default 1000. */
  rescanIntervalMs?: number;
  /** The namespace never reported (the agent's own). Default: that of /proc/self/ns/net. */
  ownNamespacePath?: string;
}

export interface DiscoveryStats {
  scans: number;
  scanErrors: number;
  namespaces: number;
}

interface Seen {
  key: string;
  inode: number;
  dev: number;
  source: NamespaceSource;
}

const WATCH_DEBOUNCE_MS = 20;
// `ip netns add` creates the file first and bind-mounts the namespace on it a
// moment later (no inotify event for the mount): look again shortly.
const NOT_YET_MOUNTED_RECHECK_MS = 100;

export class NetnsDiscovery extends EventEmitter<{
  added: [ns: DiscoveredNamespace];
  removed: [ns: DiscoveredNamespace];
}> {
  readonly #dirs: string[];
  readonly #procRoot: string | null;
  readonly #intervalMs: number;
  readonly #ownPath: string;
  #ownKey: string | undefined;
  #nsfsDev: number | undefined;
  #dirSeen = new Map<string, Seen>();
  #procSeen = new Map<string, Seen>();
  #known = new Map<string, DiscoveredNamespace>();
  #knownDirPaths = new Map<string, string[]>();
  #watchers = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | undefined;
  #dirTimer: NodeJS.Timeout | undefined;
  #running = false;
  #scanning: Promise<void> | undefined;
  #dirRescanWanted = false;
  #stats: DiscoveryStats = { scans: 0, scanErrors: 0, namespaces: 0 };

  constructor(options: NetnsDiscoveryOptions = {}) {
    super();
    this.#dirs = options.netnsDirs ?? ['/var/run/netns', '/run/netns'];
    this.#procRoot = options.procRoot === undefined ? '/proc' : options.procRoot;
    this.#intervalMs = options.rescanIntervalMs ?? 1000;
    this.#ownPath = options.ownNamespacePath ?? '/proc/self/ns/net';
    if (!(this.#intervalMs > 0)) {
      throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `rescanIntervalMs must be positive, got ${this.#intervalMs}`);
    }
  }

  /** Starts watching; resolves after the first full scan, so namespaces present now are reported by then. Idempotent. */
  async start(): Promise<void> {
    if (this.#running) return this.#scanning;
    this.#running = true;
    const own = await stat(this.#ownPath);
    this.#ownKey = `${own.dev}:${own.ino}`;
    // Every namespace file lives on nsfs: its st_dev tells a mounted
    // namespace from the empty file `ip netns add` creates first.
    this.#nsfsDev = own.dev;
    this.#timer = setInterval(() => this.#scan(true), this.#intervalMs);
    this.#timer.unref();
    await this.#scan(true);
  }

  /** Stops watching; reports nothing more. Idempotent. */
  close(): void {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#timer);
    clearTimeout(this.#dirTimer);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  namespaces(): DiscoveredNamespace[] {
    return [...this.#known.values()];
  }

  get(key: string): DiscoveredNamespace | undefined {
    return this.#known.get(key);
  }

  stats(): DiscoveryStats {
    return { ...this.#stats, namespaces: this.#known.size };
  }

  /** Runs one scan now (both sources) and resolves when its events are emitted. */
  rescan(): Promise<void> {
    return this.#scan(true);
  }

  #scan(includeProc: boolean): Promise<void> {
    if (this.#scanning) {
      // One scan at a time; a request during a scan gets one more afterwards.
      this.#dirRescanWanted = true;
      return this.#scanning;
    }
    this.#scanning = this.#runScan(includeProc).finally(() => {
      this.#scanning = undefined;
      if (this.#dirRescanWanted && this.#running) {
        this.#dirRescanWanted = false;
        void this.#scan(false);
      }
    });
    return this.#scanning;
  }

  async #runScan(includeProc: boolean): Promise<void> {
    if (!this.#running) return;
    this.#stats.scans++;
    try {
      const [dirs, proc] = await Promise.all([
        this.#scanDirs(),
        includeProc && this.#procRoot !== null ? this.#scanProc(this.#procRoot) : Promise.resolve(this.#procSeen),
      ]);
      if (!this.#running) return;
      this.#dirSeen = dirs;
      this.#procSeen = proc;
      this.#reconcile();
    } catch {
      // Scans read only what exists; an unexpected failure is counted and the next tick tries again.
      this.#stats.scanErrors++;
    }
  }

  async #scanDirs(): Promise<Map<string, Seen>> {
    const seen = new Map<string, Seen>();
    let notYetMounted = false;
    // /var/run is usually a symlink to /run: read each real directory once,
    // and report each entry under the real path and every configured spelling
    // of it, so namespaces.pathFilter matches what the user wrote.
    const spellings = new Map<string, string[]>();
    for (const dir of this.#dirs) {
      const real = await realpath(dir).catch(() => undefined);
      if (real === undefined) continue;
      const known = spellings.get(real) ?? [real];
      const spelled = normalize(dir).replace(/(?<=.)\/$/, '');
      if (!known.includes(spelled)) known.push(spelled);
      spellings.set(real, known);
    }
    for (const [real, dirs] of spellings) {
      this.#ensureWatch(real);
      const names = await readdir(real).catch(() => [] as string[]);
      await Promise.all(
        names.map(async (name) => {
          const st = await stat(join(real, name)).catch(() => undefined);
          if (!st) return;
          if (st.dev !== this.#nsfsDev) {
            notYetMounted = true;
            return;
          }
          for (const dir of dirs) seen.set(join(dir, name), { key: `${st.dev}:${st.ino}`, inode: st.ino, dev: st.dev, source: 'netns-dir' });
        }),
      );
    }
    if (notYetMounted) this.#scheduleDirScan(NOT_YET_MOUNTED_RECHECK_MS);
    return seen;
  }

  async #scanProc(root: string): Promise<Map<string, Seen>> {
    const seen = new Map<string, Seen>();
    const pids = (await readdir(root).catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
    await Promise.all(
      pids.map(async (pid) => {
        const path = join(root, pid, 'ns', 'net');
        // Processes come and go during the scan; a vanished one is simply not seen.
        const st = await stat(path).catch(() => undefined);
        if (st) seen.set(path, { key: `${st.dev}:${st.ino}`, inode: st.ino, dev: st.dev, source: 'proc' });
      }),
    );
    return seen;
  }

  #ensureWatch(dir: string): void {
    if (this.#watchers.has(dir)) return;
    try {
      const w = watch(dir, { persistent: false }, () => this.#scheduleDirScan(WATCH_DEBOUNCE_MS));
      // The directory vanished or the watch broke: the periodic rescan re-creates it.
      w.on('error', () => {
        w.close();
        this.#watchers.delete(dir);
      });
      this.#watchers.set(dir, w);
    } catch {
      // Not watchable now; rescans still see it and retry the watch.
    }
  }

  #scheduleDirScan(delayMs: number): void {
    if (!this.#running || this.#dirTimer) return;
    this.#dirTimer = setTimeout(() => {
      this.#dirTimer = undefined;
      void this.#scan(false);
    }, delayMs);
    this.#dirTimer.unref();
  }

  #reconcile(): void {
    const next = new Map<string, { seen: Seen; paths: string[]; dirPaths: string[] }>();
    const collect = (entries: Map<string, Seen>, fromDir: boolean) => {
      for (const [path, seen] of entries) {
        if (seen.key === this.#ownKey) continue;
        let entry = next.get(seen.key);
        if (!entry) next.set(seen.key, (entry = { seen, paths: [], dirPaths: [] }));
        entry.paths.push(path);
        if (fromDir) entry.dirPaths.push(path);
      }
    };
    collect(this.#dirSeen, true);
    collect(this.#procSeen, false);

    for (const [key, old] of this.#known) {
      const now = next.get(key);
      if (!now || this.#replaced(key, now.dirPaths)) {
        this.#known.delete(key);
        this.#knownDirPaths.delete(key);
        this.#emitSafely('removed', old);
      }
    }
    for (const [key, { seen, paths, dirPaths }] of next) {
      this.#knownDirPaths.set(key, dirPaths);
      const known = this.#known.get(key);
      if (known) {
        known.paths = paths;
        continue;
      }
      const ns: DiscoveredNamespace = { key, inode: seen.inode, dev: seen.dev, paths, source: seen.source };
      this.#known.set(key, ns);
      this.#emitSafely('added', ns);
    }
  }

  // nsfs inode numbers are reused. The same key now under netns-dir names
  // none of which it had before is a new namespace that replaced a vanished
  // one. (A /proc path changing is normal: the process holding it exited.)
  #replaced(key: string, dirPaths: string[]): boolean {
    const before = this.#knownDirPaths.get(key) ?? [];
    return before.length > 0 && dirPaths.length > 0 && !dirPaths.some((p) => before.includes(p));
  }

  #emitSafely(event: 'added' | 'removed', ns: DiscoveredNamespace): void {
    try {
      this.emit(event, ns);
    } catch {
      // A listener's failure must not stop discovery of the other namespaces.
      this.#stats.scanErrors++;
    }
  }
}
