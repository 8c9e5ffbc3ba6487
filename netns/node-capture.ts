// Ties namespace discovery to capture handles: for every discovered
// namespace, a handle on each pod-facing interface that is up (observation
// kind 'pod') and on its `lo` ('loopback'). Interfaces appear after the
// namespace does (CNI moves the veth in later), so attached namespaces are
// re-listed periodically. When a namespace vanishes or a handle fails, its
// handles close and the meter ends their flows with FORCED_END.
//
// Nothing here throws out of an event handler, and one namespace's failure
// never touches another's handles.
import { EventEmitter } from 'node:events';
import { type BatchSink, type CaptureHandle, type CaptureOptions, type CaptureStats, DEFAULT_CAPTURE_OPTIONS, type ObservationKind, openCaptureAsync, type RingTier } from './capture.ts';
import type { DiscoveredNamespace } from './discovery.ts';
import { listInterfaces, type NetnsInterface } from './interfaces.ts';
import { PodflowError } from '../common/errors.ts';
import { EndReason } from '../flow/types.ts';

/** Default kernel ring of a pod's lo handle (NodeCaptureOptions.loopbackBufferBytes). */
export const DEFAULT_LOOPBACK_BUFFER_BYTES = 1 << 20;

/** What NodeCapture needs from discovery (NetnsDiscovery provides it). */
export interface NamespaceEvents {
  on(event: 'added' | 'removed', listener: (ns: DiscoveredNamespace) => void): unknown;
  off(event: 'added' | 'removed', listener: (ns: DiscoveredNamespace) => void): unknown;
  namespaces(): DiscoveredNamespace[];
}

/** What NodeCapture needs from the flow meter. */
export interface ObservationPointSink {
  endObservationPoint(id: number, reason: EndReason): number;
}

export interface NodeCaptureOptions {
  discovery: NamespaceEvents;
  /** Receives every batch, e.g. PacketIngest.ingest bound to its instance. */
  sink: BatchSink;
  meter: ObservationPointSink;
  /** Which non-loopback interfaces to capture. Default: all. */
  podInterfaceFilter?: (name: string) => boolean;
  /** Capture each namespace's lo too (east-west inside the pod). Default true. */
  captureLoopback?: boolean;
  /** Which namespaces to attach to. Default: all discovered. */
  namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
  capture?: CaptureOptions;
  /**
   * Kernel ring bytes of a loopback handle: the smaller of this and
   * capture.bufferBytes. Default 1 MiB (four 256 KiB TPACKET_V3 blocks).
   * Every ring is mmapped whole into the process at open and counts in its
   * RSS, and most pods' lo is quiet: with 100 pods, lo at 4 MiB would be
   * 400 MiB. 512 KiB (two blocks) dropped packets of a TCP stream over lo
   * (~23k GSO packets/s) with the agent's two cores busy
   * (test/agent/agent-lifecycle.test.ts); four blocks did not.
   */
  loopbackBufferBytes?: number;
  /**
   * Capture on pod interfaces only frames to or from the interface's own MAC
   * and multicast/broadcast (default true). A bridge floods unicast to every
   * port until it learns where a MAC is; a veth delivers those frames to the
   * pod and capture sees them, though the pod drops them. Without this filter
   * such a flow is also reported at bystander pods (seen on the simulated node).
   */
  ownFramesOnly?: boolean;
  /** How often attached namespaces are re-listed for new or vanished interfaces, and handles with ring tiers reconsider their ring. Default 1000 ms. */
  interfaceRescanMs?: number;
  /** After a failed open, the same interface is retried after this long. Default 30 s. */
  openRetryMs?: number;
  /** Clock for retry decisions; injectable for tests. */
  now?: () => number;
}

/** Every numeric field of CaptureStats. */
export type CaptureTotals = { [K in keyof CaptureStats as CaptureStats[K] extends number ? K : never]: number };

export interface NodeCaptureCounters {
  namespacesAttached: number;
  handlesOpen: number;
  handlesOpened: number;
  openFailures: number;
  /** Handles that stopped on their own (interface deleted or down). */
  handlesLost: number;
  /** Every counter of the capture handles (CaptureStats), summed over open and closed handles; empty before the first handle opens. */
  handles: Partial<CaptureTotals>;
  /** handles.dropped: kernel ring drops. */
  kernelDrops: number;
  /** handles.packets: packets delivered to the sink. */
  packets: number;
  /** Open handles by the ring they read now (capture.idleBufferBytes: 'idle' and 'busy'; else all 'fixed'). */
  handlesByTier: Record<RingTier, number>;
  /** handles.ringSwitches and handles.ringSwitchFailures: moves between a handle's quiet and busy ring, and moves given up. */
  ringSwitches: number;
  ringSwitchFailures: number;
  /** Unexpected exceptions caught in event handlers and timers (a bug; never propagated). */
  handlerErrors: number;
}

export type NodeCaptureEvent =
  | { type: 'attached'; ns: DiscoveredNamespace }
  | { type: 'detached'; ns: DiscoveredNamespace }
  /** A namespace's interfaces or their addresses as listed at attach, and again whenever that list changed. */
  | { type: 'interfaces'; ns: DiscoveredNamespace; interfaces: NetnsInterface[] }
  | { type: 'opened'; handle: CaptureHandle }
  | { type: 'closed'; handle: CaptureHandle; reason: PodflowError | undefined }
  | { type: 'open-failed'; ns: DiscoveredNamespace; interfaceName: string; error: unknown };

interface Attached {
  ns: DiscoveredNamespace;
  /** Open handles by interface name. */
  handles: Map<string, CaptureHandle>;
  /** Interfaces whose handle is being opened (the kernel sets its ring up on a pool thread). */
  opening: Set<string>;
  /** Failed opens by interface name, retried when the ifindex changes (a new interface) or openRetryMs has passed. */
  failures: Map<string, { index: number; at: number }>;
  /** The interfaces and addresses last reported ('interfaces' event), as text to compare. */
  reported: string | undefined;
}

export class NodeCapture extends EventEmitter<{ event: [NodeCaptureEvent] }> {
  readonly #o: Required<Omit<NodeCaptureOptions, 'capture'>> & { capture: CaptureOptions };
  readonly #attached = new Map<string, Attached>();
  #nextPointId = 1;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #counters = { handlesOpened: 0, openFailures: 0, handlesLost: 0, handlerErrors: 0 };
  /** CaptureTotals of the handles closed so far. */
  readonly #closedTotals: Record<string, number> = {};
  readonly #onAdded = (ns: DiscoveredNamespace) => this.#guard(() => this.#attach(ns));
  readonly #onRemoved = (ns: DiscoveredNamespace) => this.#guard(() => this.#detach(ns.key));

  constructor(options: NodeCaptureOptions) {
    super();
    this.#o = {
      podInterfaceFilter: () => true,
      captureLoopback: true,
      namespaceFilter: () => true,
      capture: {},
      loopbackBufferBytes: DEFAULT_LOOPBACK_BUFFER_BYTES,
      ownFramesOnly: true,
      interfaceRescanMs: 1000,
      openRetryMs: 30_000,
      now: Date.now,
      ...options,
    };
    if (!(this.#o.interfaceRescanMs > 0)) {
      throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `interfaceRescanMs must be positive, got ${this.#o.interfaceRescanMs}`);
    }
  }

  /** Attaches to the namespaces known now and to every one discovered later. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#o.discovery.on('added', this.#onAdded);
    this.#o.discovery.on('removed', this.#onRemoved);
    for (const ns of this.#o.discovery.namespaces()) this.#onAdded(ns);
    this.#timer = setInterval(() => this.#guard(() => this.#tick()), this.#o.interfaceRescanMs);
    this.#timer.unref();
  }

  /**
   * Closes every handle at once (their flows end with FORCED_END) and stops
   * following discovery. Packets still in the kernel rings are dropped; use
   * stop() to deliver them first. Idempotent.
   */
  close(): void {
    this.#unfollow();
    for (const key of [...this.#attached.keys()]) this.#detach(key);
  }

  /**
   * The graceful end: stops following discovery (nothing new is attached),
   * keeps capturing until every packet that reached a ring before the call is
   * readable (the longest settleMs of the open handles: two TPACKET_V3 block
   * timeouts, 250 ms by default), reads every ring dry, then closes every
   * handle (their flows end with FORCED_END). Packets arriving after the call
   * are delivered if their block was retired by then. Idempotent; close()
   * during the wait ends it at once.
   */
  async stop(): Promise<void> {
    this.#unfollow();
    const settleMs = this.settleMs();
    if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
    for (const h of this.handles()) this.#guard(() => void h.drain());
    this.close();
  }

  counters(): NodeCaptureCounters {
    let handlesOpen = 0;
    const totals = { ...this.#closedTotals };
    const handlesByTier: Record<RingTier, number> = { fixed: 0, idle: 0, busy: 0 };
    for (const a of this.#attached.values()) {
      for (const h of a.handles.values()) {
        handlesOpen++;
        const s = h.stats();
        addCounts(totals, s);
        handlesByTier[s.tier]++;
      }
    }
    const handles: Partial<CaptureTotals> = totals;
    return {
      namespacesAttached: this.#attached.size,
      handlesOpen,
      handlesOpened: this.#counters.handlesOpened,
      openFailures: this.#counters.openFailures,
      handlesLost: this.#counters.handlesLost,
      handles,
      kernelDrops: handles.dropped ?? 0,
      packets: handles.packets ?? 0,
      handlesByTier,
      ringSwitches: handles.ringSwitches ?? 0,
      ringSwitchFailures: handles.ringSwitchFailures ?? 0,
      handlerErrors: this.#counters.handlerErrors,
    };
  }

  /** The longest settleMs of the open handles: how long a packet may wait in a ring before it is readable. */
  settleMs(): number {
    let settle = 0;
    for (const a of this.#attached.values()) for (const h of a.handles.values()) settle = Math.max(settle, h.settleMs);
    return settle;
  }

  /** Open handles (one per observation point). */
  handles(): CaptureHandle[] {
    return [...this.#attached.values()].flatMap((a) => [...a.handles.values()]);
  }

  /** Re-lists every attached namespace's interfaces and opens what is new. Runs periodically; callable by tests. */
  rescanInterfaces(): void {
    for (const a of this.#attached.values()) this.#guard(() => this.#syncInterfaces(a));
  }

  #tick(): void {
    this.rescanInterfaces();
    for (const h of this.handles()) h.adaptRing();
  }

  #unfollow(): void {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#timer);
    this.#o.discovery.off('added', this.#onAdded);
    this.#o.discovery.off('removed', this.#onRemoved);
  }

  #attach(ns: DiscoveredNamespace): void {
    if (!this.#running || this.#attached.has(ns.key) || !this.#o.namespaceFilter(ns)) return;
    const a: Attached = { ns, handles: new Map(), opening: new Set(), failures: new Map(), reported: undefined };
    this.#attached.set(ns.key, a);
    this.#report({ type: 'attached', ns });
    this.#syncInterfaces(a);
  }

  #detach(key: string): void {
    const a = this.#attached.get(key);
    if (!a) return;
    this.#attached.delete(key);
    for (const h of [...a.handles.values()]) h.close();
    this.#report({ type: 'detached', ns: a.ns });
  }

  #syncInterfaces(a: Attached): void {
    let interfaces: NetnsInterface[] | undefined;
    for (const path of a.ns.paths) {
      try {
        interfaces = listInterfaces(path);
        break;
      } catch {
        // This path is gone (e.g. the process behind a /proc path exited); try the next.
      }
    }
    // No path opens it any more: discovery reports the removal on its next scan.
    if (!interfaces) return;
    // Identity re-reads a namespace's addresses from this (a new pod's veth gets its address after the namespace appears).
    const listed = JSON.stringify(interfaces.map((i) => [i.name, i.index, i.addresses.map((x) => x.address)]));
    if (listed !== a.reported) {
      a.reported = listed;
      this.#report({ type: 'interfaces', ns: a.ns, interfaces });
    }
    for (const ifc of interfaces) {
      const kind: ObservationKind = ifc.loopback ? 'loopback' : 'pod';
      const wanted = ifc.up && (kind === 'loopback' ? this.#o.captureLoopback : this.#o.podInterfaceFilter(ifc.name));
      if (!wanted || a.handles.has(ifc.name) || a.opening.has(ifc.name)) continue;
      const failed = a.failures.get(ifc.name);
      if (failed && failed.index === ifc.index && this.#o.now() - failed.at < this.#o.openRetryMs) continue;
      this.#open(a, ifc, kind);
    }
  }

  /**
   * Opens the interface's handle in the background: setting a ring up takes
   * the kernel 8-30 ms (an RCU grace period), which on the JS thread would
   * stall every other capture, 100 pods' worth at start. A handle that opens
   * after its namespace was detached, or after stop, is closed at once.
   */
  #open(a: Attached, ifc: NetnsInterface, kind: ObservationKind): void {
    const point = { id: this.#nextPointId++, netnsInode: a.ns.inode, netnsDev: a.ns.dev, interfaceName: ifc.name, kind };
    const options =
      kind === 'pod'
        ? this.#o.ownFramesOnly && ifc.mac ? ownFramesOptions(this.#o.capture, ifc.mac) : this.#o.capture
        : { ...this.#o.capture, bufferBytes: Math.min(this.#o.capture.bufferBytes ?? DEFAULT_CAPTURE_OPTIONS.bufferBytes, this.#o.loopbackBufferBytes) };
    a.opening.add(ifc.name);
    void (async () => {
      let handle: CaptureHandle | undefined;
      let lastError: unknown;
      for (const path of a.ns.paths) {
        try {
          handle = await openCaptureAsync(path, point, this.#o.sink, options);
          break;
        } catch (err) {
          lastError = err;
          // Only a namespace path that vanished is worth another path.
          if (!(err instanceof PodflowError && err.code === 'PODFLOW_ERR_NETNS_ENTER')) break;
        }
      }
      a.opening.delete(ifc.name);
      this.#guard(() => this.#opened(a, ifc, handle, lastError));
    })();
  }

  #opened(a: Attached, ifc: NetnsInterface, handle: CaptureHandle | undefined, error: unknown): void {
    if (!handle) {
      this.#counters.openFailures++;
      a.failures.set(ifc.name, { index: ifc.index, at: this.#o.now() });
      this.#report({ type: 'open-failed', ns: a.ns, interfaceName: ifc.name, error });
      return;
    }
    if (!this.#running || this.#attached.get(a.ns.key) !== a) {
      // Detached or stopped while it opened: nothing of it was reported.
      handle.close();
      return;
    }
    a.failures.delete(ifc.name);
    a.handles.set(ifc.name, handle);
    this.#counters.handlesOpened++;
    handle.once('closed', (reason) => this.#guard(() => this.#onHandleClosed(a, handle, reason)));
    this.#report({ type: 'opened', handle });
  }

  #onHandleClosed(a: Attached, handle: CaptureHandle, reason: PodflowError | undefined): void {
    if (a.handles.get(handle.point.interfaceName) === handle) a.handles.delete(handle.point.interfaceName);
    if (reason) this.#counters.handlesLost++;
    addCounts(this.#closedTotals, handle.stats());
    this.#o.meter.endObservationPoint(handle.point.id, EndReason.FORCED_END);
    this.#report({ type: 'closed', handle, reason });
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

/** Adds every numeric field of stats to totals (so a counter added to CaptureStats is summed, and published, without a change here). */
function addCounts(totals: Record<string, number>, stats: CaptureStats): void {
  for (const [key, value] of Object.entries(stats)) if (typeof value === 'number') totals[key] = (totals[key] ?? 0) + value;
}

function ownFramesOptions(capture: CaptureOptions, mac: string): CaptureOptions {
  const own = `(ether host ${mac} or ether multicast)`;
  return { ...capture, filter: capture.filter ? `${own} and (${capture.filter})` : own };
}
