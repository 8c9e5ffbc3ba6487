// Ties namespace discovery to capture: for every discovered namespace, one
// capture handle bound to all its interfaces (netns/capture.ts), opened as
// soon as the namespace is found, so the pod's interfaces, which the CNI
// plugin moves in later, are captured from their first packet. Each
// interface becomes an observation point (kind 'pod' for eth0-like
// interfaces, 'loopback' for lo, if asked) at its first packet. The
// namespace's interfaces and addresses are listed again when its netlink
// notifications say they changed, never on a timer. When a
// namespace vanishes or its handle fails, the handle finishes (the kernel's
// last ring block is read first) and each of its points is reported
// 'closed': whoever meters the points ends their flows then.
//
// Nothing here throws out of an event handler, and one namespace's failure
// never touches another's handle.
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import { type BatchSink, type CaptureHandle, type CaptureOptions, type CaptureStats, kindOf, linkTypeOf, type ObservationPoint, openCaptureAsync } from './capture.ts';
import type { DiscoveredNamespace } from './discovery.ts';
import { CURRENT_NETNS, listInterfaces, type NetnsInterface } from './interfaces.ts';
import { PodflowError } from '../common/errors.ts';

/** What NodeCapture needs from discovery (NetnsDiscovery provides it). */
export interface NamespaceEvents {
  on(event: 'added' | 'removed', listener: (ns: DiscoveredNamespace) => void): unknown;
  off(event: 'added' | 'removed', listener: (ns: DiscoveredNamespace) => void): unknown;
  namespaces(): DiscoveredNamespace[];
}

export interface NodeCaptureOptions {
  discovery: NamespaceEvents;
  /** Receives every batch, e.g. PacketIngest.ingest bound to its instance. */
  sink: BatchSink;
  /** Which non-loopback interfaces to capture, by name. Default: all. Packets of the others are read and skipped (counted). */
  podInterfaceFilter?: (name: string) => boolean;
  /** Capture each namespace's lo too (east-west between the pod's containers). Default false. */
  captureLoopback?: boolean;
  /** Which namespaces to attach to. Default: all discovered. */
  namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
  /** Ring, snaplen and timeout of every handle (its loopback is captureLoopback's). */
  capture?: CaptureOptions;
  /** After a failed open, the namespace is tried again after this long. Default 30 s. */
  openRetryMs?: number;
}

/** Every numeric field of CaptureStats. */
export type CaptureTotals = { [K in keyof CaptureStats as CaptureStats[K] extends number ? K : never]: number };

export interface NodeCaptureCounters {
  namespacesAttached: number;
  /** Capture handles open now: one per attached namespace. */
  handlesOpen: number;
  handlesOpened: number;
  openFailures: number;
  /** Handles that stopped on their own (the socket failed). */
  handlesLost: number;
  /** Observation points (captured interfaces) of the open handles now, and seen so far. */
  pointsOpen: number;
  pointsOpened: number;
  /** Packets of interfaces podInterfaceFilter leaves out: read, then skipped. */
  excludedPackets: number;
  /** Every counter of the capture handles (CaptureStats), summed over open and closed handles; empty before the first handle opens. */
  handles: Partial<CaptureTotals>;
  /** handles.packets: packets delivered. */
  packets: number;
  /**
   * Packets the kernel received and podflow never metered, by reason:
   * handles.dropped (the ring was full), handles.queueDropped (the capture
   * queue was full), handles.unread (still in the ring when a handle closed).
   */
  kernelDrops: number;
  queueDrops: number;
  unreadAtClose: number;
  /** Unexpected exceptions caught in event handlers and timers (a bug; never propagated). */
  handlerErrors: number;
}

export type NodeCaptureEvent =
  | { type: 'attached'; ns: DiscoveredNamespace }
  | { type: 'detached'; ns: DiscoveredNamespace }
  /** The namespace's capture is open: every packet of its interfaces from now on is captured. */
  | { type: 'capturing'; ns: DiscoveredNamespace }
  /**
   * A namespace's interfaces and their addresses as listed at attach, and
   * again whenever that list changed: announced by the namespace's netlink
   * link and address notifications (an address the CNI plugin set arrives
   * within a reader wake-up), or found at an interface's first packet.
   */
  | { type: 'interfaces'; ns: DiscoveredNamespace; interfaces: NetnsInterface[] }
  /** An interface's first packet: its observation point. */
  | { type: 'opened'; point: ObservationPoint }
  /**
   * The point's handle closed (reason: why, when it failed): every packet of
   * the point has been delivered to the sink, none comes after this. The
   * point's flows can be ended now.
   */
  | { type: 'closed'; point: ObservationPoint; reason: PodflowError | undefined }
  | { type: 'open-failed'; ns: DiscoveredNamespace; error: unknown };

/** An interface of an attached namespace: its point and packets, or null when podInterfaceFilter leaves it out. */
interface Point {
  point: ObservationPoint;
  linkType: number;
  packets: number;
}

interface Attached {
  ns: DiscoveredNamespace;
  handle: CaptureHandle | undefined;
  /** The path the handle opened at. */
  path: string;
  opening: boolean;
  retry: NodeJS.Timeout | undefined;
  /** Interfaces by ifindex, as their first packets came. */
  points: Map<number, Point | null>;
  /** The interfaces and addresses last reported ('interfaces' event), as text to compare. */
  reported: string | undefined;
}

export class NodeCapture extends EventEmitter<{ event: [NodeCaptureEvent] }> {
  readonly #options: Required<Omit<NodeCaptureOptions, 'capture'>> & { capture: CaptureOptions };
  readonly #attached = new Map<string, Attached>();
  /** Handles of detached namespaces, reading the kernel's last block before they close. */
  readonly #finishing = new Set<Attached>();
  #nextPointId = 1;
  #running = false;
  #counters = { handlesOpened: 0, openFailures: 0, handlesLost: 0, pointsOpened: 0, excludedPackets: 0, handlerErrors: 0 };
  /** CaptureTotals of the handles closed so far. */
  readonly #closedTotals: Record<string, number> = {};
  readonly #onAdded = (ns: DiscoveredNamespace) => this.#guard(() => this.#attach(ns));
  readonly #onRemoved = (ns: DiscoveredNamespace) => this.#guard(() => this.#detach(ns.key, 'finish'));

  constructor(options: NodeCaptureOptions) {
    super();
    this.#options = {
      podInterfaceFilter: () => true,
      captureLoopback: false,
      namespaceFilter: () => true,
      capture: {},
      openRetryMs: 30_000,
      ...options,
    };
  }

  /** Attaches to the namespaces known now and to every one discovered later. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#options.discovery.on('added', this.#onAdded);
    this.#options.discovery.on('removed', this.#onRemoved);
    for (const ns of this.#options.discovery.namespaces()) this.#onAdded(ns);
  }

  /**
   * Closes every handle at once (each of their points is reported 'closed')
   * and stops following discovery. What the kernel has handed over is
   * delivered; the ring blocks it is still filling are not (counted as
   * unread): use stop() to keep them. Idempotent.
   */
  close(): void {
    this.#unfollow();
    for (const key of [...this.#attached.keys()]) this.#detach(key, 'now');
    for (const a of [...this.#finishing]) a.handle?.close();
  }

  /**
   * The graceful end: stops following discovery (nothing new is attached),
   * keeps capturing until every packet that reached a ring before the call is
   * handed over (settleMs: two block timeouts, 250 ms by default), delivers
   * everything, then closes every handle (each of their points is reported
   * 'closed'). Idempotent; close() during the wait ends it at once.
   */
  async stop(): Promise<void> {
    this.#unfollow();
    await Promise.all(this.handles().map((h) => h.finish()));
    this.close();
  }

  counters(): NodeCaptureCounters {
    const c = this.#counters;
    let handlesOpen = 0;
    let pointsOpen = 0;
    const totals = { ...this.#closedTotals };
    for (const a of [...this.#attached.values(), ...this.#finishing]) {
      if (!a.handle) continue;
      handlesOpen++;
      addCounts(totals, a.handle.stats());
      for (const p of a.points.values()) if (p) pointsOpen++;
    }
    const handles: Partial<CaptureTotals> = totals;
    return {
      namespacesAttached: this.#attached.size,
      handlesOpen,
      handlesOpened: c.handlesOpened,
      openFailures: c.openFailures,
      handlesLost: c.handlesLost,
      pointsOpen,
      pointsOpened: c.pointsOpened,
      excludedPackets: c.excludedPackets,
      handles,
      packets: handles.packets ?? 0,
      kernelDrops: handles.dropped ?? 0,
      queueDrops: handles.queueDropped ?? 0,
      unreadAtClose: handles.unread ?? 0,
      handlerErrors: c.handlerErrors,
    };
  }

  /** The longest settleMs of the open handles: how long a packet may wait in a ring before it is readable. */
  settleMs(): number {
    let settle = 0;
    for (const h of this.handles()) settle = Math.max(settle, h.settleMs);
    return settle;
  }

  /** Open handles: one per attached namespace, and those of detached namespaces still finishing. */
  handles(): CaptureHandle[] {
    return [...this.#attached.values(), ...this.#finishing].flatMap((a) => (a.handle ? [a.handle] : []));
  }

  /** Observation points of the open handles, with the packets delivered for each. */
  points(): Array<{ point: ObservationPoint; packets: number }> {
    return [...this.#attached.values(), ...this.#finishing].flatMap((a) => [...a.points.values()].flatMap((p) => (p ? [{ point: p.point, packets: p.packets }] : [])));
  }

  #unfollow(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#options.discovery.off('added', this.#onAdded);
    this.#options.discovery.off('removed', this.#onRemoved);
  }

  #attach(ns: DiscoveredNamespace): void {
    if (!this.#running || this.#attached.has(ns.key) || !this.#options.namespaceFilter(ns)) return;
    const a: Attached = { ns, handle: undefined, path: '', opening: false, retry: undefined, points: new Map(), reported: undefined };
    this.#attached.set(ns.key, a);
    this.#report({ type: 'attached', ns });
    this.#listInterfaces(a);
    this.#open(a);
  }

  /**
   * 'finish': the namespace went away; its handle reads the kernel's last
   * ring block before it closes. 'now': close at once. 'detached' is reported
   * once the handle closed, after its points' 'closed'.
   */
  #detach(key: string, how: 'finish' | 'now'): void {
    const a = this.#attached.get(key);
    if (!a) return;
    this.#attached.delete(key);
    clearTimeout(a.retry);
    if (!a.handle) this.#report({ type: 'detached', ns: a.ns });
    else if (how === 'now') a.handle.close();
    else {
      this.#finishing.add(a);
      void a.handle.finish();
    }
  }

  /**
   * Opens the namespace's handle in the background: setting a ring up takes
   * the kernel 8-30 ms (an RCU grace period), which on the JS thread would
   * stall every other capture, 100 pods' worth at start. A handle that opens
   * after its namespace was detached, or after stop, is closed at once; a
   * failed open is tried again after openRetryMs.
   */
  #open(a: Attached): void {
    a.opening = true;
    const capture = { ...this.#options.capture, loopback: this.#options.captureLoopback };
    void (async () => {
      let handle: CaptureHandle | undefined;
      let lastError: unknown;
      for (const path of a.ns.paths) {
        try {
          handle = await openCaptureAsync(
            path,
            a.ns,
            (ifindex, hatype, buf, start, end, count) => this.#deliver(a, ifindex, hatype, buf, start, end, count),
            capture,
            () => this.#guard(() => a.handle && void this.#listInterfaces(a)),
          );
          a.path = path;
          break;
        } catch (err) {
          lastError = err;
          // Only a namespace path that vanished (or names another namespace now) is worth another path.
          if (!(err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER')) break;
        }
      }
      a.opening = false;
      this.#guard(() => this.#opened(a, handle, lastError));
    })();
  }

  #opened(a: Attached, handle: CaptureHandle | undefined, error: unknown): void {
    const current = this.#running && this.#attached.get(a.ns.key) === a;
    if (!handle) {
      this.#counters.openFailures++;
      this.#report({ type: 'open-failed', ns: a.ns, error });
      if (current) {
        a.retry = setTimeout(() => this.#guard(() => this.#attached.get(a.ns.key) === a && !a.handle && !a.opening && this.#open(a)), this.#options.openRetryMs);
        a.retry.unref();
      }
      return;
    }
    if (!current) {
      // Detached or stopped while it opened: nothing of it was reported.
      handle.close();
      return;
    }
    a.handle = handle;
    this.#counters.handlesOpened++;
    handle.once('closed', (reason) => this.#guard(() => this.#onHandleClosed(a, handle, reason)));
    this.#report({ type: 'capturing', ns: a.ns });
    // From here on every change is announced; one made between the listing at attach and the open is found now.
    this.#listInterfaces(a);
  }

  #deliver(a: Attached, ifindex: number, hatype: number, buf: Uint8Array, start: number, end: number, count: number): void {
    let p = a.points.get(ifindex);
    if (p === undefined) p = this.#newPoint(a, ifindex, hatype);
    if (p === null) {
      this.#counters.excludedPackets += count;
      return;
    }
    p.packets += count;
    this.#options.sink(p.point.id, p.linkType, buf, start, end);
  }

  /**
   * The namespace's interfaces now (undefined when no path opens it any
   * more: discovery reports the removal); reported when they changed.
   * Naming (enrich/naming.ts) re-reads a namespace's addresses from this.
   */
  #listInterfaces(a: Attached): NetnsInterface[] | undefined {
    let interfaces: NetnsInterface[] | undefined;
    for (const path of a.handle ? [a.path] : a.ns.paths) {
      // A path a new namespace took over (a pod's name came back) lists someone else's interfaces.
      if (!namesNamespace(path, a.ns)) continue;
      try {
        interfaces = listInterfaces(path);
        break;
      } catch {
        // This path is gone (e.g. the process behind a /proc path exited); try the next.
      }
    }
    if (!interfaces) return undefined;
    const listed = JSON.stringify(interfaces.map((i) => [i.name, i.index, i.addresses.map((x) => x.address)]));
    if (listed !== a.reported) {
      a.reported = listed;
      this.#report({ type: 'interfaces', ns: a.ns, interfaces });
    }
    return interfaces;
  }

  /** An interface's first packet: its point (named by listing the namespace's interfaces), or null when left out. */
  #newPoint(a: Attached, ifindex: number, hatype: number): Point | null {
    const kind = kindOf(hatype);
    const name = this.#listInterfaces(a)?.find((i) => i.index === ifindex)?.name ?? `if${ifindex}`;
    const wanted = kind === 'loopback' ? this.#options.captureLoopback : this.#options.podInterfaceFilter(name);
    if (!wanted) {
      a.points.set(ifindex, null);
      return null;
    }
    const point: ObservationPoint = { id: this.#nextPointId++, netnsInode: a.ns.inode, netnsDev: a.ns.dev, interfaceName: name, kind };
    const p: Point = { point, linkType: linkTypeOf(hatype), packets: 0 };
    a.points.set(ifindex, p);
    this.#counters.pointsOpened++;
    this.#report({ type: 'opened', point });
    return p;
  }

  #onHandleClosed(a: Attached, handle: CaptureHandle, reason: PodflowError | undefined): void {
    if (a.handle === handle) a.handle = undefined;
    this.#finishing.delete(a);
    if (reason) this.#counters.handlesLost++;
    addCounts(this.#closedTotals, handle.stats());
    for (const p of a.points.values()) {
      if (!p) continue;
      this.#report({ type: 'closed', point: p.point, reason });
    }
    a.points.clear();
    if (this.#attached.get(a.ns.key) !== a) this.#report({ type: 'detached', ns: a.ns });
    // A handle that failed while its namespace is still attached is opened again.
    else if (reason && this.#running) this.#open(a);
  }

  #report(event: NodeCaptureEvent): void {
    if (this.listenerCount('event') > 0) this.#guard(() => this.emit('event', event));
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch {
      // Never let one namespace's failure escape into discovery or a timer;
      // expected failures are events and counters already, this is a bug.
      this.#counters.handlerErrors++;
    }
  }
}

/** The namespace file at path is still ns (nsfs inodes identify a namespace while it lives); our own (CURRENT_NETNS) always is. */
function namesNamespace(path: string, ns: DiscoveredNamespace): boolean {
  if (path === CURRENT_NETNS) return true;
  try {
    const st = statSync(path);
    return st.ino === ns.inode && st.dev === ns.dev;
  } catch {
    return false;
  }
}

function addCounts(totals: Record<string, number>, stats: CaptureStats): void {
  for (const [key, value] of Object.entries(stats)) if (typeof value === 'number') totals[key] = (totals[key] ?? 0) + value;
}
