// A capture handle: the patched `cap` (patches/cap+0.2.1.patch) opened inside
// a network namespace on one interface, delivering batches of pcap-format
// records to a sink such as PacketIngest.ingest.
//
// The packet socket is created inside runInNetns and stays bound to the pod's
// namespace after the thread switches back. It also keeps that namespace (and
// its veth) alive, so a handle must be closed when its pod goes.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { addon, enterError } from './addon.ts';
import { CURRENT_NETNS } from './interfaces.ts';
import { PodflowError } from '../common/errors.ts';
import { LinkType, RECORD_HEADER_BYTES } from '../flow/types.ts';

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

export interface CaptureOptions {
  /** Bytes kept per packet. Flow metering needs headers only; IP lengths come from the headers. Default 256. */
  snaplen?: number;
  /** Kernel ring buffer bytes (pcap_set_buffer_size). Default 4 MiB. */
  bufferBytes?: number;
  /** Bytes of the batch buffer handed to the sink; at least snaplen + 16. Default 1 MiB. */
  batchBytes?: number;
  /** BPF filter; default none. */
  filter?: string;
  /** Default false: a pod's own interface carries the pod's traffic without it. */
  promiscuous?: boolean;
  /**
   * false (default): TPACKET_V3 blocks retired every timeoutMs, so one wake-up
   * carries many packets. true: a wake-up per packet at low rates (TPACKET_V2).
   */
  immediate?: boolean;
  /** Read / block timeout in ms: the longest a packet waits before delivery. Default 100. */
  timeoutMs?: number;
  /** Cap on packets handled per event-loop turn so one busy interface cannot starve the loop. Default 10000. */
  maxPacketsPerCallback?: number;
}

export interface CaptureStats {
  packets: number;
  batches: number;
  /** Record bytes delivered (headers + captured bytes). */
  bytes: number;
  /** pcap_stats: packets the kernel passed to the socket, dropped for lack of ring space, dropped by the interface. */
  received: number;
  dropped: number;
  ifDropped: number;
  /** Exceptions thrown by the sink (a bug there; counted, never fatal here). */
  sinkErrors: number;
}

export const DEFAULT_CAPTURE_OPTIONS = {
  snaplen: 256,
  bufferBytes: 4 << 20,
  batchBytes: 1 << 20,
  filter: '',
  promiscuous: false,
  immediate: false,
  timeoutMs: 100,
  maxPacketsPerCallback: 10_000,
} as const satisfies Required<CaptureOptions>;

interface PcapStats {
  received: number;
  dropped: number;
  ifDropped: number;
}

/** The patched cap's Cap object, as far as it is used here. */
interface Cap {
  open(
    device: string,
    filter: string,
    bufferBytes: number,
    buffer: Buffer,
    options: { snaplen: number; promisc: boolean; immediate: boolean; timeoutMs: number; maxPacketsPerCallback: number },
  ): number;
  close(): boolean;
  /** Reads synchronously every packet the kernel has made readable (no per-call limit), emitting 'batch'; returns the packet count. */
  drain(): number;
  stats(): PcapStats;
  on(event: 'batch', listener: (count: number, bytesUsed: number) => void): this;
  on(event: 'error', listener: (err: Error & { code?: string }) => void): this;
  removeAllListeners(): this;
}

const { Cap } = createRequire(import.meta.url)('cap') as { Cap: new () => Cap };

/** Added to two block timeouts: timer slack and jiffy rounding of the kernel's retire timer. */
const SETTLE_MARGIN_MS = 50;

// DLT_RAW is 12 or 14 depending on the platform; pcap files and flow/types.ts use LINKTYPE_RAW.
const DLT_RAW_VALUES = new Set([12, 14]);

export class CaptureHandle extends EventEmitter<{ closed: [reason: PodflowError | undefined] }> {
  readonly point: ObservationPoint;
  /** LINKTYPE_* of the records (flow/types.ts LinkType). */
  readonly linkType: number;
  /**
   * How long after its arrival a packet may still sit in the kernel ring
   * unreadable: with TPACKET_V3 (immediate off) the block the kernel is
   * filling is handed over when its retire timer fires, which is up to two
   * timeouts after the packet arrived (the timer skips a block that changed
   * since its last tick). 0 in immediate mode.
   */
  readonly settleMs: number;
  #cap: Cap | undefined;
  readonly #buffer: Buffer;
  readonly #sink: BatchSink;
  #packets = 0;
  #batches = 0;
  #bytes = 0;
  #sinkErrors = 0;
  #final: PcapStats = { received: 0, dropped: 0, ifDropped: 0 };

  /** Use openCapture(). */
  constructor(point: ObservationPoint, cap: Cap, linkType: number, buffer: Buffer, sink: BatchSink, settleMs = 0) {
    super();
    this.point = point;
    this.#cap = cap;
    this.linkType = linkType;
    this.settleMs = settleMs;
    this.#buffer = buffer;
    this.#sink = sink;
    cap.on('batch', (count, bytesUsed) => this.#deliver(count, bytesUsed));
    cap.on('error', (err) => {
      // The interface went away: what the kernel already handed over is still
      // in the ring and readable; deliver it before the handle closes.
      this.drain();
      this.#stop(new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_LOST', this.#describe(err), { cause: err }));
    });
  }

  get closed(): boolean {
    return this.#cap === undefined;
  }

  stats(): CaptureStats {
    const pcap = this.#cap ? this.#pcapStats(this.#cap) : this.#final;
    return {
      packets: this.#packets,
      batches: this.#batches,
      bytes: this.#bytes,
      ...pcap,
      sinkErrors: this.#sinkErrors,
    };
  }

  /**
   * Delivers to the sink, now, every packet the kernel has made readable,
   * however many (the poll callback stops at maxPacketsPerCallback per turn).
   * Packets in the ring block the kernel is still filling are not readable
   * until it is retired (settleMs): for a final read, wait that long, then
   * drain, then close. Returns the packets delivered; 0 when closed. Never throws.
   */
  drain(): number {
    const cap = this.#cap;
    if (!cap) return 0;
    try {
      return cap.drain();
    } catch {
      return 0;
    }
  }

  /** Stops capturing and releases the socket (and with it the namespace). Idempotent; emits 'closed' once. Packets not yet delivered are dropped: see drain(). */
  close(): void {
    this.#stop(undefined);
  }

  #deliver(count: number, bytesUsed: number): void {
    this.#packets += count;
    this.#batches++;
    this.#bytes += bytesUsed;
    try {
      this.#sink(this.point.id, this.linkType, this.#buffer, 0, bytesUsed);
    } catch {
      this.#sinkErrors++;
    }
  }

  #pcapStats(cap: Cap): PcapStats {
    try {
      this.#final = cap.stats();
    } catch {
      // The socket already failed: the last counts read are the final ones.
    }
    return this.#final;
  }

  #stop(reason: PodflowError | undefined): void {
    const cap = this.#cap;
    if (!cap) return;
    this.#pcapStats(cap);
    this.#cap = undefined;
    cap.close();
    cap.removeAllListeners();
    this.emit('closed', reason);
  }

  #describe(err: Error & { code?: string }): string {
    const p = this.point;
    return `${p.interfaceName} in netns ${p.netnsInode}${err.code ? ` (${err.code})` : ''}`;
  }
}

/**
 * Opens a capture on interfaceName inside the namespace at nsPath
 * (CURRENT_NETNS: the calling thread's own, with no setns). Throws
 * PODFLOW_ERR_NETNS_ENTER if the namespace cannot be entered, and
 * PODFLOW_ERR_NETNS_CAPTURE_OPEN if libpcap refuses (no such interface, bad
 * filter); in both cases nothing stays open.
 */
export function openCapture(nsPath: string, point: ObservationPoint, sink: BatchSink, options: CaptureOptions = {}): CaptureHandle {
  const o = { ...DEFAULT_CAPTURE_OPTIONS, ...options };
  if (!Number.isInteger(o.snaplen) || o.snaplen <= 0 || o.batchBytes < o.snaplen + RECORD_HEADER_BYTES) {
    throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `snaplen ${o.snaplen} must be a positive integer and at most batchBytes - ${RECORD_HEADER_BYTES}`);
  }
  const buffer = Buffer.allocUnsafe(o.batchBytes);
  const cap = new Cap();
  let dlt: number | undefined;
  let openError: unknown;
  try {
    // CURRENT_NETNS: open right here, without entering any namespace (the sidecar).
    const inNetns = nsPath === CURRENT_NETNS ? (fn: () => void) => fn() : (fn: () => void) => addon.runInNetns(nsPath, fn);
    inNetns(() => {
      try {
        dlt = cap.open(point.interfaceName, o.filter, o.bufferBytes, buffer, {
          snaplen: o.snaplen,
          promisc: o.promiscuous,
          immediate: o.immediate,
          timeoutMs: o.timeoutMs,
          maxPacketsPerCallback: o.maxPacketsPerCallback,
        });
      } catch (err) {
        openError = err;
      }
    });
  } catch (err) {
    throw enterError(nsPath, err);
  }
  if (dlt === undefined) {
    const message = openError instanceof Error ? openError.message : String(openError);
    throw new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_OPEN', `${message} (netns ${nsPath})`, { cause: openError });
  }
  return new CaptureHandle(point, cap, DLT_RAW_VALUES.has(dlt) ? LinkType.RAW : dlt, buffer, sink, o.immediate ? 0 : 2 * o.timeoutMs + SETTLE_MARGIN_MS);
}
