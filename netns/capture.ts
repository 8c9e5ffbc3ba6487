// A capture handle: podflow's packet socket (netns/native/packet_socket.c)
// opened inside one network namespace, bound to all its interfaces, handing
// batches of pcap-style records, each with the kernel's virtio_net_hdr before
// the frame (flow/records.ts VNET_HEADER), to a sink, one interface per batch.
//
// The socket is set up by a libuv pool thread that enters the namespace for
// the call (openCaptureAsync), and stays bound to that namespace after the
// thread switches back. It also keeps that namespace (and its interfaces)
// alive, so a handle must be closed when its pod goes. Its ring is read by
// the addon's reader thread into the queue every handle shares
// (netns/capture-queue.ts), from which batches reach the sink on the JS
// thread.
import { EventEmitter } from 'node:events';
import { addon, enterError, type PacketSocket } from './addon.ts';
import { CURRENT_NETNS } from './interfaces.ts';
import { PodflowError } from '../common/errors.ts';
import { LinkType, VNET_HEADER } from '../flow/records.ts';

/** 'pod': the pod's own interface (eth0-like, north-south); 'loopback': its lo (east-west between containers). */
export type ObservationKind = 'pod' | 'loopback';

export interface ObservationPoint {
  /** Numeric id carried by every packet and flow of this point; never reused in a process. */
  id: number;
  /** Network namespace identity (stat of the namespace file). */
  netnsInode: number;
  netnsDev: number;
  interfaceName: string;
  kind: ObservationKind;
}

/** Receives records [start, end) of buf; buf is reused after the call returns. */
export type BatchSink = (observationPointId: number, linkType: number, buf: Uint8Array, start: number, end: number) => void;

/** Receives count records of interface ifindex (ARPHRD_* hatype) in buf[start, end); buf is reused after the call returns. */
export type InterfaceBatchSink = (ifindex: number, hatype: number, buf: Uint8Array, start: number, end: number, count: number) => void;

export interface CaptureOptions {
  /** Bytes kept per packet. Flow metering needs headers only; IP lengths come from the headers. Default 256. */
  snaplen?: number;
  /**
   * Bytes kept of a DNS packet (UDP or TCP, port 53 at either end; the
   * kernel filter tells them apart, native/packet_socket.c), so the DNS
   * feature reads whole messages while other packets keep snaplen. Below
   * snaplen (the default, 0): snaplen.
   */
  dnsSnaplen?: number;
  /**
   * Kernel ring bytes. The ring holds what arrives until the reader thread
   * copies it out (a scheduler wake-up), not until the JS thread gets to it,
   * so it can be small; it is mapped whole into the process for the handle's
   * life. Default 512 KiB (~1,500 packets at snaplen 256).
   */
  bufferBytes?: number;
  /** The kernel hands a ring block over when it is full or this many ms after its first packet: the longest a packet waits. Default 100. */
  timeoutMs?: number;
  /** Capture lo too (each packet once). Default false. */
  loopback?: boolean;
  /** Drop frames addressed to another host's MAC: a bridge still learning floods unicast to every port, and those frames are not the pod's. Default true. */
  ownFramesOnly?: boolean;
}

export interface CaptureStats {
  /** Packets delivered to the sink, in batches. */
  packets: number;
  batches: number;
  /** Record bytes delivered (headers + captured bytes). */
  bytes: number;
  /** Kernel counters: packets passed to the socket after its filter (dropped ones included), and dropped for lack of ring space. */
  received: number;
  dropped: number;
  /** Packets copied out of the ring but refused by the full capture queue (the JS thread fell that far behind). */
  queueDropped: number;
  /**
   * Packets the kernel received that were still in the ring when the handle
   * closed: the block it was filling, when the handle closed without the
   * settle wait (close() rather than finish()). 0 while open.
   */
  unread: number;
  /** Exceptions thrown by the sink (a bug there; counted, never fatal here). */
  sinkErrors: number;
}

export const DEFAULT_CAPTURE_OPTIONS = {
  snaplen: 256,
  dnsSnaplen: 0,
  bufferBytes: 512 << 10,
  timeoutMs: 100,
  loopback: false,
  ownFramesOnly: true,
} as const satisfies Required<CaptureOptions>;

/** Added to two block timeouts: timer slack and jiffy rounding of the kernel's retire timer. */
const SETTLE_MARGIN_MS = 50;

const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;

/** LINKTYPE_* of a capture's records from an interface of this ARPHRD_* type, with the VNET_HEADER flag. */
export function linkTypeOf(hatype: number): number {
  // Frames keep their link header where there is one (Ethernet; lo's is
  // Ethernet with zero MACs); headerless devices (tun, wireguard, IP
  // tunnels) hand their frames over from the IP header.
  return (hatype === ARPHRD_ETHER || hatype === ARPHRD_LOOPBACK ? LinkType.ETHERNET : LinkType.RAW) | VNET_HEADER;
}

/** The observation kind of an interface of this ARPHRD_* type. */
export function kindOf(hatype: number): ObservationKind {
  return hatype === ARPHRD_LOOPBACK ? 'loopback' : 'pod';
}

export class CaptureHandle extends EventEmitter<{ closed: [reason: PodflowError | undefined] }> {
  /** The namespace path the handle was opened at. */
  readonly nsPath: string;
  /**
   * How long after its arrival a packet may still sit in the kernel ring
   * unreadable: the block the kernel is filling is handed over when its
   * retire timer fires, up to two timeouts after the packet arrived (the
   * timer skips a block that changed since its last tick).
   */
  readonly settleMs: number;
  #socket: PacketSocket | undefined;
  readonly #sink: InterfaceBatchSink;
  #finishing = false;
  #batches = 0;
  #bytes = 0;
  #sinkErrors = 0;
  #final: CaptureStats | undefined;

  /** Use openCaptureAsync(). */
  constructor(nsPath: string, socket: PacketSocket, sink: InterfaceBatchSink, timeoutMs: number) {
    super();
    this.nsPath = nsPath;
    this.#socket = socket;
    this.#sink = sink;
    this.settleMs = 2 * timeoutMs + SETTLE_MARGIN_MS;
  }

  get closed(): boolean {
    return this.#socket === undefined;
  }

  stats(): CaptureStats {
    if (this.#final) return this.#final;
    return this.#stats(this.#socket!.stats(), 0);
  }

  /**
   * Delivers to the sink, now, every packet the kernel has handed over (and
   * whatever else the shared queue holds, to every handle's sink). Packets in
   * the ring block the kernel is still filling are not handed over until it
   * is retired (settleMs): see finish(). Returns this handle's packets
   * delivered; 0 when closed. Never throws.
   */
  poll(): number {
    return this.#socket ? this.#socket.poll() : 0;
  }

  /**
   * The graceful end: waits settleMs (the kernel hands over the block it was
   * filling: typically a pod's last packets, its FIN or RST), delivers
   * everything, then closes. Idempotent; close() during the wait ends it at once.
   */
  async finish(reason?: PodflowError): Promise<void> {
    if (!this.#socket || this.#finishing) return;
    this.#finishing = true;
    // Not unref'd: the last block is work still to do.
    await new Promise((resolve) => setTimeout(resolve, this.settleMs));
    this.#stop(reason);
  }

  /** Stops capturing and releases the socket (and with it the namespace). Idempotent; emits 'closed' once. Delivers what the kernel has handed over; what is still in the block it is filling is counted in stats().unread: see finish(). */
  close(): void {
    this.#stop(undefined);
  }

  /** Called by the socket for each run of one interface's records. */
  deliver(ifindex: number, hatype: number, buf: Uint8Array, start: number, end: number, count: number): void {
    this.#batches++;
    this.#bytes += end - start;
    try {
      this.#sink(ifindex, hatype, buf, start, end, count);
    } catch {
      this.#sinkErrors++;
    }
  }

  /** Called by the socket when it fails. The kernel's last block is kept: see finish(). */
  lost(err: Error & { code?: string }): void {
    void this.finish(new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_LOST', `${this.nsPath || 'own namespace'}${err.code ? ` (${err.code})` : ''}`, { cause: err }));
  }

  #stats(s: ReturnType<PacketSocket['stats']>, unread: number): CaptureStats {
    return {
      packets: s.delivered,
      batches: this.#batches,
      bytes: this.#bytes,
      received: s.received,
      dropped: s.dropped,
      queueDropped: s.queueDropped,
      unread,
      sinkErrors: this.#sinkErrors,
    };
  }

  #stop(reason: PodflowError | undefined): void {
    const socket = this.#socket;
    if (!socket) return;
    socket.close();
    this.#socket = undefined;
    const s = socket.stats();
    this.#final = this.#stats(s, Math.max(0, s.received - s.dropped - s.queueDropped - s.delivered));
    this.emit('closed', reason);
  }
}

/**
 * Opens a capture of every interface of the namespace at nsPath
 * (CURRENT_NETNS: the calling thread's own, with no setns), also of those
 * that appear later. `expect` is the namespace nsPath must still name (a
 * path a new namespace took over fails); 0s: not checked. The kernel's ring
 * set-up waits for an RCU grace period (8-30 ms), so the socket is set up
 * on a libuv pool thread that enters the namespace for the call, and the JS
 * thread reads every other capture meanwhile. Rejects with
 * PODFLOW_ERR_NETNS_ENTER if the namespace cannot be entered (or another one
 * is at nsPath now), and PODFLOW_ERR_NETNS_CAPTURE_OPEN if the socket cannot
 * be set up; in every case nothing stays open. With onLinksChanged, the
 * namespace's link and address changes are followed (netlink, from before
 * the packet socket exists): it is called after each burst of them.
 */
export async function openCaptureAsync(
  nsPath: string,
  expect: { inode: number; dev: number },
  sink: InterfaceBatchSink,
  options: CaptureOptions = {},
  onLinksChanged?: () => void,
): Promise<CaptureHandle> {
  const settings: Required<CaptureOptions> = { ...DEFAULT_CAPTURE_OPTIONS, ...options };
  if (!Number.isInteger(settings.snaplen) || settings.snaplen <= 0 || settings.snaplen > 65535) {
    throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `snaplen ${settings.snaplen} must be an integer from 1 to 65535`);
  }
  if (!Number.isInteger(settings.dnsSnaplen) || settings.dnsSnaplen < 0 || settings.dnsSnaplen > 65535) {
    throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `dnsSnaplen ${settings.dnsSnaplen} must be an integer from 0 to 65535`);
  }
  let handle: CaptureHandle | undefined;
  const socket = new addon.PacketSocket(
    (buf, start, end, count, ifindex, hatype) => handle?.deliver(ifindex, hatype, buf, start, end, count),
    (err) => handle?.lost(err),
    onLinksChanged && (() => void (handle && !handle.closed && onLinksChanged())),
  );
  const socketOptions = {
    bufferBytes: settings.bufferBytes,
    snaplen: settings.snaplen,
    dnsSnaplen: settings.dnsSnaplen,
    blockTimeoutMs: settings.timeoutMs,
    loopback: settings.loopback,
    ownFramesOnly: settings.ownFramesOnly,
    expectInode: expect.inode,
    expectDev: expect.dev,
  };
  await new Promise<void>((resolve, reject) => {
    socket.openAsync(nsPath === CURRENT_NETNS ? '' : nsPath, socketOptions, (err) => {
      if (!err) return resolve();
      if (err.stage === 'netns') return reject(enterError(nsPath, err));
      reject(new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_OPEN', `${err.message} (netns ${nsPath})`, { cause: err }));
    });
  });
  // Nothing is delivered before this: delivery runs on a later event-loop
  // turn than the open's callback and this continuation.
  handle = new CaptureHandle(nsPath, socket, sink, settings.timeoutMs);
  return handle;
}
