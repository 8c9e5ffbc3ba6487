// A capture handle: the patched `cap` (patches/cap+0.2.1.patch) opened inside
// a network namespace on one interface, delivering batches of pcap-format
// records to a sink such as PacketIngest.ingest.
//
// The packet socket is created by a libuv pool thread that enters the pod's
// namespace for the call (openCaptureAsync), and stays bound to that
// namespace after the thread switches back. It also keeps that namespace (and
// its veth) alive, so a handle must be closed when its pod goes.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { addon, enterError } from './addon.ts';
import { CURRENT_NETNS } from './interfaces.ts';
import { PodflowError } from '../common/errors.ts';
import { LinkType, RECORD_HEADER_BYTES } from '../flow/types.ts';
import { recordEnd } from '../flow/ingest.ts';

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
  /** Kernel ring buffer bytes (pcap_set_buffer_size); with idleBufferBytes, the ring of a busy handle. Default 4 MiB. */
  bufferBytes?: number;
  /**
   * 0 (default): one ring of bufferBytes for the handle's life. Otherwise the
   * ring of a quiet handle: see RING TIERS below. Every ring is mapped whole
   * into the process when it opens (it counts in RSS, though not in the memory
   * cgroup), so 4 MiB rings on every pod's eth0 and lo are 800 MiB for 100
   * pods, most of which carry next to nothing.
   */
  idleBufferBytes?: number;
  /** A quiet handle that delivers this many packets within one second (or 64 at one wake-up, or sees a kernel drop) moves to its busy ring. Default 1000. */
  busyAbovePacketsPerSecond?: number;
  /** A busy handle that stays under a quarter of busyAbovePacketsPerSecond for this long moves back to its quiet ring. Default 60. */
  idleAfterSeconds?: number;
  /** Bytes of the batch buffer handed to the sink; at least snaplen + 16. Default 1 MiB. */
  batchBytes?: number;
  /** BPF filter; default none. */
  filter?: string;
  /** Default false: a pod's own interface carries the pod's traffic without it. */
  promiscuous?: boolean;
  /**
   * false (default): TPACKET_V3 blocks retired every timeoutMs, so one wake-up
   * carries many packets. true: a wake-up per packet at low rates (TPACKET_V2).
   * Ignored for the quiet ring of a tiered handle, which is always immediate.
   */
  immediate?: boolean;
  /** Read / block timeout in ms: the longest a packet waits before delivery. Default 100. */
  timeoutMs?: number;
  /** Cap on packets handled per event-loop turn so one busy interface cannot starve the loop. Default 10000. */
  maxPacketsPerCallback?: number;
  /** Clock (ms) for the packet rate of a tiered handle; injectable for tests. */
  now?: () => number;
}

// RING TIERS. A handle with idleBufferBytes starts on a small TPACKET_V2 ring
// (libpcap's immediate mode: fixed frames of about snaplen bytes, each handed
// over as soon as it is written, so 128 KiB holds ~400 packets and never sits
// on an unretired block). Past busyAbovePacketsPerSecond it moves to a
// TPACKET_V3 ring of bufferBytes (blocks retired every timeoutMs: one wake-up
// per block instead of per packet), and back when it has been quiet for
// idleAfterSeconds. The move loses and repeats nothing: both packet sockets
// belong to one PACKET_FANOUT_CBPF group, in which every packet goes to
// exactly one member, the one the group's one-instruction program names.
//   1. the new ring opens and joins the group while the program names the old
//      one, so from the join on it receives nothing; what it read before the
//      join is a copy of what the old ring read: once readable, it is discarded;
//   2. the program is switched to name the new ring (one pointer store in the
//      kernel): every later packet goes to it. Its batches are held (copied)
//      while the old ring's last packets become readable and are delivered,
//      so each flow's packets reach the sink in order;
//   3. the old ring closes, leaving the group; the held batches are delivered.
// A failed move (the new ring cannot open) leaves the old ring in place and is
// retried after RETRY_SWITCH_MS.

export interface CaptureStats {
  packets: number;
  batches: number;
  /** Record bytes delivered (headers + captured bytes). */
  bytes: number;
  /** pcap_stats summed over the handle's rings: packets the kernel passed to the socket, dropped for lack of ring space, dropped by the interface. */
  received: number;
  dropped: number;
  ifDropped: number;
  /** Exceptions thrown by the sink (a bug there; counted, never fatal here). */
  sinkErrors: number;
  /** Ring tiers: 'fixed' without them; else the ring in use now. */
  tier: RingTier;
  /** Completed moves between the quiet and the busy ring. */
  ringSwitches: number;
  /** Moves abandoned because the new ring could not be opened or joined. */
  ringSwitchFailures: number;
  /** Packets a new ring read before it joined the fanout group: copies of what the old ring delivered, discarded. */
  duplicatesDiscarded: number;
}

export type RingTier = 'fixed' | 'idle' | 'busy';

export const DEFAULT_CAPTURE_OPTIONS = {
  snaplen: 256,
  bufferBytes: 4 << 20,
  idleBufferBytes: 0,
  busyAbovePacketsPerSecond: 1000,
  idleAfterSeconds: 60,
  batchBytes: 1 << 20,
  filter: '',
  promiscuous: false,
  immediate: false,
  timeoutMs: 100,
  maxPacketsPerCallback: 10_000,
  now: () => performance.now(),
} as const satisfies Required<CaptureOptions>;

interface PcapStats {
  received: number;
  dropped: number;
  ifDropped: number;
}

/** The patched cap's Cap object, as far as it is used here. */
interface Cap {
  /** Opens the capture with the ring set up on a libuv pool thread inside the namespace at nsPath ('' = this thread's); callback(null, DLT link type) or callback(err). */
  openAsync(
    nsPath: string,
    device: string,
    filter: string,
    bufferBytes: number,
    buffer: Buffer,
    options: { snaplen: number; promisc: boolean; immediate: boolean; timeoutMs: number; maxPacketsPerCallback: number },
    callback: (err: (Error & { code?: string; stage?: 'netns' | 'pcap' | 'closed' }) | null, linkType?: number) => void,
  ): void;
  /** Stops and releases everything; call it on every Cap, also one whose open failed. */
  close(): boolean;
  /** Reads synchronously every packet the kernel has made readable (no per-call limit), emitting 'batch'; returns the packet count. */
  drain(): number;
  stats(): PcapStats;
  /** The packet socket's descriptor; -1 when closed. */
  fileno(): number;
  on(event: 'batch', listener: (count: number, bytesUsed: number) => void): this;
  on(event: 'error', listener: (err: Error & { code?: string }) => void): this;
  removeAllListeners(): this;
}

const { Cap } = createRequire(import.meta.url)('cap') as { Cap: new () => Cap };

/** Added to two block timeouts: timer slack and jiffy rounding of the kernel's retire timer. */
const SETTLE_MARGIN_MS = 50;
/** Waited on top of a ring's settleMs during a move, for a packet the kernel is writing into it on another CPU right then (microseconds). */
const SWITCH_GRACE_MS = 5;
/**
 * A quiet ring that hands over this many packets at one wake-up is falling
 * behind (they queued while the loop was busy): it moves to its busy ring at
 * once rather than at busyAbovePacketsPerSecond, since a 128 KiB TPACKET_V2
 * ring holds only ~400 packets of snaplen 256.
 */
const BACKLOG_PACKETS = 64;
/** After a failed move, the next attempt waits this long. */
const RETRY_SWITCH_MS = 30_000;

// DLT_RAW is 12 or 14 depending on the platform; pcap files and flow/types.ts use LINKTYPE_RAW.
const DLT_RAW_VALUES = new Set([12, 14]);

// One batch buffer per size for every handle: a handle's batch is written
// and handed to the sink synchronously on the JS thread (the poll callback or
// drain()), and the sink must be done with it when it returns, so no two
// batches are ever alive at once. One per handle was 200 MiB of buffers for
// 100 pods, much of it resident.
const batchBuffers = new Map<number, Buffer>();
function batchBuffer(bytes: number): Buffer {
  let buffer = batchBuffers.get(bytes);
  if (!buffer) batchBuffers.set(bytes, (buffer = Buffer.allocUnsafe(bytes)));
  return buffer;
}

/** One open packet socket of a handle. */
interface Ring {
  cap: Cap;
  tier: RingTier;
  settleMs: number;
}

/**
 * The ring being moved to. Its first packets are copies, taken before it
 * joined the group, of packets the old ring delivers too. Before the switch
 * ('joining') it receives nothing else, so what it delivers then is dropped.
 * After the switch ('hold') its batches wait for the old ring's last ones.
 * The copies not yet delivered at the switch (`copies.left`: its pcap count
 * then, less those dropped) are dropped from the head of its stream when
 * they come, which for a TPACKET_V3 ring may be after the move completed.
 */
interface Move {
  ring: Ring;
  phase: 'joining' | 'hold';
  copies: Copies;
  held: Uint8Array[];
}

/** Copies still to come at the head of a new ring's stream, and the old ring's packets since the move began (by recordKey) to check each against. */
interface Copies {
  left: number;
  seen: Map<string, number>;
}

/** Opens one of a handle's rings, with the kernel's slow ring set-up on a libuv pool thread (see openCaptureAsync). */
type RingOpener = (tier: RingTier) => Promise<OpenedRing>;

interface OpenedRing {
  ring: Ring;
  /** LINKTYPE_* of its records. */
  linkType: number;
}

export class CaptureHandle extends EventEmitter<{ closed: [reason: PodflowError | undefined] }> {
  readonly point: ObservationPoint;
  /** LINKTYPE_* of the records (flow/types.ts LinkType). */
  readonly linkType: number;
  #ring: Ring | undefined;
  #next: Move | undefined;
  /** The old ring's packets since the current move began (see Move.copies.seen), recorded from before the new ring exists. */
  #moveSeen: Map<string, number> | undefined;
  /** Copies still expected at the head of the current ring's stream after a move (see Move). */
  #copies: Copies | undefined;
  /** A move is under way (from its decision until the old ring closes or it is given up). */
  #moving = false;
  readonly #buffer: Buffer;
  readonly #sink: BatchSink;
  readonly #open: RingOpener;
  readonly #o: Required<CaptureOptions>;
  readonly #fanoutGroup: number;
  #packets = 0;
  #batches = 0;
  #bytes = 0;
  #sinkErrors = 0;
  #switches = 0;
  #switchFailures = 0;
  #duplicates = 0;
  #retrySwitchAt = -Infinity;
  #windowStart = 0;
  #windowPackets = 0;
  #quietSince: number | undefined;
  #lastAdapt = { at: 0, packets: 0, dropped: 0 };
  /** pcap_stats of closed rings, and the last read of each open one (a failed socket keeps its last counts). */
  #closedStats: PcapStats = { received: 0, dropped: 0, ifDropped: 0 };
  readonly #lastStats = new Map<Ring, PcapStats>();

  /** Use openCaptureAsync(). */
  constructor(point: ObservationPoint, open: RingOpener, first: OpenedRing, buffer: Buffer, sink: BatchSink, options: Required<CaptureOptions>) {
    super();
    this.point = point;
    this.#open = open;
    this.#buffer = buffer;
    this.#sink = sink;
    this.#o = options;
    this.linkType = first.linkType;
    this.#fanoutGroup = first.ring.tier === 'fixed' ? -1 : this.#joinFanout(first.ring, -1);
    this.#adopt(first.ring);
    this.#ring = first.ring;
    this.#windowStart = options.now();
    this.#lastAdapt.at = this.#windowStart;
  }

  /**
   * How long after its arrival a packet may still sit in the kernel ring
   * unreadable: with TPACKET_V3 (immediate off) the block the kernel is
   * filling is handed over when its retire timer fires, which is up to two
   * timeouts after the packet arrived (the timer skips a block that changed
   * since its last tick). 0 for an immediate (TPACKET_V2) ring.
   */
  get settleMs(): number {
    return Math.max(this.#ring?.settleMs ?? 0, this.#next?.ring.settleMs ?? 0);
  }

  get closed(): boolean {
    return this.#ring === undefined;
  }

  stats(): CaptureStats {
    const pcap = { ...this.#closedStats };
    for (const ring of [this.#ring, this.#next?.ring]) {
      if (!ring) continue;
      const s = this.#pcapStats(ring);
      pcap.received += s.received;
      pcap.dropped += s.dropped;
      pcap.ifDropped += s.ifDropped;
    }
    return {
      packets: this.#packets,
      batches: this.#batches,
      bytes: this.#bytes,
      ...pcap,
      sinkErrors: this.#sinkErrors,
      tier: this.#ring?.tier ?? 'fixed',
      ringSwitches: this.#switches,
      ringSwitchFailures: this.#switchFailures,
      duplicatesDiscarded: this.#duplicates,
    };
  }

  /**
   * Delivers to the sink, now, every packet the kernel has made readable,
   * however many (the poll callback stops at maxPacketsPerCallback per turn).
   * Packets in the ring block the kernel is still filling are not readable
   * until it is retired (settleMs): for a final read, wait that long, then
   * drain, then close. In the middle of a ring move, the old ring is read
   * first, then the new one. Returns the packets delivered; 0 when closed.
   * Never throws.
   */
  drain(): number {
    const before = this.#packets;
    if (this.#ring) drainRing(this.#ring);
    const next = this.#next;
    if (next) {
      drainRing(next.ring);
      if (next.phase === 'hold') this.#deliverHeld(next);
    }
    return this.#packets - before;
  }

  /**
   * Ring tiers: called about once a second (NodeCapture's interface rescan).
   * A quiet handle whose kernel ring dropped moves to its busy ring; a busy
   * one that has been quiet for idleAfterSeconds moves back. Never throws.
   */
  adaptRing(): void {
    const ring = this.#ring;
    if (!ring || ring.tier === 'fixed' || this.#moving) return;
    const now = this.#o.now();
    const { dropped } = this.#pcapStats(ring);
    const seconds = (now - this.#lastAdapt.at) / 1000;
    const rate = seconds > 0 ? (this.#packets - this.#lastAdapt.packets) / seconds : 0;
    const droppedNow = dropped > this.#lastAdapt.dropped;
    this.#lastAdapt = { at: now, packets: this.#packets, dropped };
    if (ring.tier === 'idle') {
      if (droppedNow) this.#moveTo('busy');
      return;
    }
    if (rate >= this.#o.busyAbovePacketsPerSecond / 4) this.#quietSince = undefined;
    else if (this.#quietSince === undefined) this.#quietSince = now;
    else if (now - this.#quietSince >= this.#o.idleAfterSeconds * 1000) this.#moveTo('idle');
  }

  /** Stops capturing and releases the socket (and with it the namespace). Idempotent; emits 'closed' once. Packets not yet read are dropped: see drain(). */
  close(): void {
    this.#stop(undefined);
  }

  /** Routes a ring's batches: the current ring's to the sink, a new ring's by its phase. */
  #adopt(ring: Ring): void {
    ring.cap.on('batch', (count, bytesUsed) => {
      const next = this.#next;
      if (ring === this.#ring) {
        if (this.#moveSeen) rememberRecords(this.#moveSeen, this.#buffer, bytesUsed);
        const start = this.#copies ? this.#dropCopies(this.#buffer, bytesUsed) : 0;
        if (start === 0) this.#deliver(count, bytesUsed);
        else if (start < bytesUsed) this.#deliver(countRecords(this.#buffer, start, bytesUsed), bytesUsed - start, this.#buffer.subarray(start, bytesUsed));
      } else if (next?.ring === ring) {
        if (next.phase === 'hold') next.held.push(new Uint8Array(this.#buffer.subarray(0, bytesUsed)));
        else {
          next.copies.left -= count;
          this.#duplicates += count;
        }
      }
    });
    ring.cap.on('error', (err) => {
      if (ring !== this.#ring) {
        // The new ring failed during a move: the old one carries on.
        this.#abandonMove();
        return;
      }
      // The interface went away: what the kernel already handed over is still
      // in the ring and readable; deliver it before the handle closes.
      this.drain();
      this.#stop(new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_LOST', this.#describe(err), { cause: err }));
    });
  }

  #deliver(count: number, bytesUsed: number, buf: Uint8Array = this.#buffer): void {
    this.#packets += count;
    this.#batches++;
    this.#bytes += bytesUsed;
    try {
      this.#sink(this.point.id, this.linkType, buf, 0, bytesUsed);
    } catch {
      this.#sinkErrors++;
    }
    if (this.#ring?.tier !== 'idle' || this.#moving) return;
    const now = this.#o.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#windowPackets = 0;
    }
    this.#windowPackets += count;
    if (this.#windowPackets >= this.#o.busyAbovePacketsPerSecond || count >= BACKLOG_PACKETS) this.#moveTo('busy');
  }

  /** Delivers what the new ring held, less the copies at its head (see Move). */
  #deliverHeld(next: Move): void {
    if (next.copies.left > 0) this.#copies = next.copies;
    for (const batch of next.held.splice(0)) {
      const start = this.#copies ? this.#dropCopies(batch, batch.length) : 0;
      if (start < batch.length) this.#deliver(countRecords(batch, start, batch.length), batch.length - start, batch.subarray(start));
    }
  }

  /** Drops the copies at the head of buf[0, end); returns where the rest starts. */
  #dropCopies(buf: Uint8Array, end: number): number {
    const copies = this.#copies!;
    let start = 0;
    while (copies.left > 0 && start < end) {
      const next = recordEnd(buf, start);
      const key = recordKey(buf, start, next);
      const left = copies.seen.get(key) ?? 0;
      // Not among the old ring's packets: the copies are over (the kernel
      // counted one that libpcap then filtered out and never delivered).
      if (left === 0) break;
      copies.seen.set(key, left - 1);
      copies.left--;
      this.#duplicates++;
      start = next;
    }
    if (copies.left <= 0 || start < end) this.#copies = undefined;
    return start;
  }

  /** Moves to the other ring (see RING TIERS); runs in the background, never throws. */
  #moveTo(tier: 'idle' | 'busy'): void {
    const old = this.#ring;
    if (!old || this.#moving || this.#o.now() < this.#retrySwitchAt) return;
    this.#moving = true;
    void this.#startMove(old, tier);
  }

  async #startMove(old: Ring, tier: 'idle' | 'busy'): Promise<void> {
    if (this.#ring !== old) return;
    // The new socket takes copies from the moment it is bound, on the pool
    // thread: their originals, read from the old ring from now on, are
    // what a copy is checked against.
    const seen = new Map<string, number>();
    this.#moveSeen = seen;
    let ring: Ring | undefined;
    try {
      // The old ring is read on as usual while the new one is set up.
      ring = (await this.#open(tier)).ring;
    } catch {
      this.#abandonMove();
      return;
    }
    if (this.#ring !== old) {
      // The handle closed meanwhile.
      ring.cap.close();
      this.#moveSeen = undefined;
      return;
    }
    try {
      drainRing(old);
      // A member that joins gets nothing while the program names member 0 (the old ring).
      addon.fanoutSelect(old.cap.fileno(), 0);
      this.#next = { ring, phase: 'joining', copies: { left: 0, seen }, held: [] };
      this.#adopt(ring);
      this.#joinFanout(ring, this.#fanoutGroup);
      drainRing(old);
    } catch {
      this.#abandonMove(ring);
      return;
    }
    const next = this.#next;
    const joined = ring;
    const moving = () => this.#next === next && this.#ring === old;
    // After a grace for a packet the kernel was still handing to the new ring
    // on another CPU: its pcap count is the number of copies it holds.
    setTimeout(() => {
      if (!moving()) return;
      drainRing(joined);
      next.copies.left += this.#pcapStats(joined).received;
      next.phase = 'hold';
      try {
        addon.fanoutSelect(joined.cap.fileno(), 1);
      } catch {
        this.#abandonMove();
        return;
      }
      setTimeout(() => {
        if (!moving()) return;
        drainRing(old);
        drainRing(joined);
        this.#ring = joined;
        this.#next = undefined;
        this.#moveSeen = undefined;
        this.#moving = false;
        this.#closeRing(old);
        // Copies not yet readable are dropped when they come; by then every one has (a TPACKET_V3 block retires within settleMs).
        setTimeout(() => this.#copies === next.copies && (this.#copies = undefined), joined.settleMs + SWITCH_GRACE_MS).unref();
        this.#switches++;
        this.#quietSince = undefined;
        this.#windowStart = this.#o.now();
        this.#windowPackets = 0;
        this.#deliverHeld(next);
      }, old.settleMs + SWITCH_GRACE_MS).unref();
    }, SWITCH_GRACE_MS).unref();
  }

  /** Gives a move up: the new ring closes, what it held is delivered, the old ring stays; tried again after RETRY_SWITCH_MS. */
  #abandonMove(ring = this.#next?.ring): void {
    const next = this.#next;
    this.#next = undefined;
    this.#moveSeen = undefined;
    this.#moving = false;
    if (ring) this.#closeRing(ring);
    if (next?.phase === 'hold') this.#deliverHeld(next);
    // The old ring stays: nothing of its stream is a copy.
    this.#copies = undefined;
    this.#switchFailures++;
    this.#retrySwitchAt = this.#o.now() + RETRY_SWITCH_MS;
    // A failed switch to the new ring may have left the program naming it: name the old one again.
    try {
      if (this.#ring) addon.fanoutSelect(this.#ring.cap.fileno(), 0);
    } catch {
      // The old ring's socket failed too: its poll reports that as 'error'.
    }
  }

  #joinFanout(ring: Ring, group: number): number {
    try {
      return addon.fanoutJoin(ring.cap.fileno(), group);
    } catch (err) {
      this.#closeRing(ring);
      throw new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_OPEN', `${this.#describe(err as Error)}: cannot join a packet fanout group, needed to change ring size (capture.idleBufferBytes 0 keeps one fixed ring)`, { cause: err });
    }
  }

  #pcapStats(ring: Ring): PcapStats {
    try {
      this.#lastStats.set(ring, ring.cap.stats());
    } catch {
      // The socket already failed: the last counts read are the final ones.
    }
    return this.#lastStats.get(ring) ?? { received: 0, dropped: 0, ifDropped: 0 };
  }

  #closeRing(ring: Ring): void {
    const s = this.#pcapStats(ring);
    this.#lastStats.delete(ring);
    this.#closedStats.received += s.received;
    this.#closedStats.dropped += s.dropped;
    this.#closedStats.ifDropped += s.ifDropped;
    ring.cap.close();
    ring.cap.removeAllListeners();
  }

  #stop(reason: PodflowError | undefined): void {
    const ring = this.#ring;
    if (!ring) return;
    const next = this.#next;
    this.#next = undefined;
    this.#moveSeen = undefined;
    this.#moving = false;
    if (next) {
      this.#closeRing(next.ring);
      if (next.phase === 'hold') {
        // Already read: deliver them rather than drop them with the handle.
        this.#ring = ring;
        this.#deliverHeld(next);
      }
    }
    this.#ring = undefined;
    this.#closeRing(ring);
    this.emit('closed', reason);
  }

  #describe(err: Error & { code?: string }): string {
    const p = this.point;
    return `${p.interfaceName} in netns ${p.netnsInode}${err.code ? ` (${err.code})` : ''}`;
  }
}

/** A record's identity for matching a copy to its original: wire length and captured bytes, not the timestamp (each socket stamps its own). */
function recordKey(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start + 12, end - start - 12).toString('latin1');
}

/** Counts every record of buf[0, end) into seen. */
function rememberRecords(seen: Map<string, number>, buf: Uint8Array, end: number): void {
  for (let at = 0; at < end; ) {
    const next = recordEnd(buf, at);
    const key = recordKey(buf, at, next);
    seen.set(key, (seen.get(key) ?? 0) + 1);
    at = next;
  }
}

function countRecords(buf: Uint8Array, start: number, end: number): number {
  let count = 0;
  for (let at = start; at < end; count++) at = recordEnd(buf, at);
  return count;
}

/** Reads a ring dry into its 'batch' listener. Never throws (a failed socket reports itself by 'error'). */
function drainRing(ring: Ring): void {
  try {
    ring.cap.drain();
  } catch {
    // See above.
  }
}

/**
 * Opens a capture on interfaceName inside the namespace at nsPath
 * (CURRENT_NETNS: the calling thread's own, with no setns). The kernel's ring
 * set-up waits for an RCU grace period (8-30 ms), so libpcap's activation
 * runs on a libuv pool thread that enters the namespace for the call, and
 * the JS thread reads every other capture meanwhile. Rejects with
 * PODFLOW_ERR_NETNS_ENTER if the namespace cannot be entered, and
 * PODFLOW_ERR_NETNS_CAPTURE_OPEN if libpcap refuses (no such interface, bad
 * filter) or, with ring tiers, the socket cannot join a fanout group; in
 * every case nothing stays open. A handle with ring tiers opens the same way
 * again when it moves to its other ring.
 */
export async function openCaptureAsync(nsPath: string, point: ObservationPoint, sink: BatchSink, options: CaptureOptions = {}): Promise<CaptureHandle> {
  const o: Required<CaptureOptions> = { ...DEFAULT_CAPTURE_OPTIONS, ...options };
  if (!Number.isInteger(o.snaplen) || o.snaplen <= 0 || o.batchBytes < o.snaplen + RECORD_HEADER_BYTES) {
    throw new PodflowError('PODFLOW_ERR_NETNS_CONFIG', `snaplen ${o.snaplen} must be a positive integer and at most batchBytes - ${RECORD_HEADER_BYTES}`);
  }
  const buffer = batchBuffer(o.batchBytes);
  const open = ringOpener(nsPath, point, o, buffer);
  return new CaptureHandle(point, open, await open(o.idleBufferBytes > 0 ? 'idle' : 'fixed'), buffer, sink, o);
}

function ringOpener(nsPath: string, point: ObservationPoint, o: Required<CaptureOptions>, buffer: Buffer): RingOpener {
  return (tier) => {
    const immediate = tier === 'idle' || (tier === 'fixed' && o.immediate);
    const settleMs = immediate ? 0 : 2 * o.timeoutMs + SETTLE_MARGIN_MS;
    const bufferBytes = tier === 'idle' ? o.idleBufferBytes : o.bufferBytes;
    const options = { snaplen: o.snaplen, promisc: o.promiscuous, immediate, timeoutMs: o.timeoutMs, maxPacketsPerCallback: o.maxPacketsPerCallback };
    const cap = new Cap();
    return new Promise((resolve, reject) => {
      cap.openAsync(nsPath === CURRENT_NETNS ? '' : nsPath, point.interfaceName, o.filter, bufferBytes, buffer, options, (err, dlt) => {
        if (!err) return resolve({ ring: { cap, tier, settleMs }, linkType: DLT_RAW_VALUES.has(dlt!) ? LinkType.RAW : dlt! });
        // Also a Cap that never opened is closed (the patched cap ends its async resource there, not at GC).
        cap.close();
        if (err.stage === 'netns') return reject(enterError(nsPath, err));
        reject(new PodflowError('PODFLOW_ERR_NETNS_CAPTURE_OPEN', `${err.message} (netns ${nsPath})`, { cause: err }));
      });
    });
  };
}
