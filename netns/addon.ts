// Typed loader for the netns native addon (netns/native, built by
// scripts/build-native.sh). The one place that knows its functions.
import { createRequire } from 'node:module';
import { PodflowError } from '../common/errors.ts';

/** One getifaddrs(3) entry; 'packet' entries exist for every interface, with or without addresses. */
export type InterfaceAddressEntry =
  | { name: string; flags: number; family: 'packet'; index: number; /** Link-layer address, e.g. "02:70:66:00:00:01"; '' if none. */ mac: string }
  | { name: string; flags: number; family: 'inet' | 'inet6'; address: string; prefixLength: number };

/** What PacketSocket.openAsync sets a socket up with. */
export interface PacketSocketOptions {
  /** TPACKET_V3 ring bytes (rounded down to whole blocks). */
  bufferBytes: number;
  /** Bytes kept of each frame (the kernel filter truncates to it). */
  snaplen: number;
  /** Bytes kept of a DNS frame (UDP or TCP, port 53); below snaplen: snaplen. */
  dnsSnaplen: number;
  /** A ring block is handed over when full or this long after its first packet. */
  blockTimeoutMs: number;
  /** Keep lo's packets (each once: the copy leaving lo is dropped). */
  loopback: boolean;
  /** Drop frames to another host's MAC (a bridge floods unicast to every port while it learns). */
  ownFramesOnly: boolean;
  /** The namespace (st_ino, st_dev) nsPath must still name, or the open fails (ESTALE, stage 'netns'); 0: not checked. */
  expectInode: number;
  expectDev: number;
}

/**
 * An AF_PACKET socket bound to every interface of one network namespace,
 * with a memory-mapped ring and PACKET_VNET_HDR (native/packet_socket.c),
 * read by the addon's reader thread into the shared capture queue. Its
 * records (flow/records.ts) reach onBatch on the JS thread, in
 * order, one interface per call.
 */
export interface PacketSocket {
  /**
   * Sets the socket up on a libuv pool thread inside the namespace at nsPath
   * ('' = this thread's own), then hands it to the reader thread.
   * callback(undefined) or callback(err) with err.stage 'netns' (cannot
   * enter, or another namespace at nsPath), 'socket' or 'closed' (close()
   * came first); nothing stays open after a failure. Once per socket.
   */
  openAsync(nsPath: string, options: PacketSocketOptions, callback: (err: (Error & { code?: string; stage?: 'netns' | 'socket' | 'closed' }) | undefined) => void): void;
  /** Delivers, now, every packet the kernel has handed over (and the rest of the queue); returns this socket's count. */
  poll(): number;
  /**
   * Kernel counters (packets passed to the socket after its filter, dropped
   * ones included; dropped for lack of ring space), packets refused by the
   * full queue, and delivered. Final after close.
   */
  stats(): { received: number; dropped: number; queueDropped: number; delivered: number };
  /** Delivers what was handed over, then releases the socket and its ring. Idempotent; during openAsync the callback fails with stage 'closed'. */
  close(): boolean;
}

export interface NetnsAddon {
  /**
   * onBatch(buffer, start, end, count, ifindex, hatype): count records of the
   * interface ifindex (ARPHRD_* hatype) in buffer[start, end), valid only
   * during the call. onError(err): the socket failed, after its queued
   * records; what the kernel hands over later can still be polled.
   * onLinks(): given, a netlink socket in the namespace follows its link and
   * address changes, and onLinks is called (once per burst of them) after a
   * change: list the interfaces again.
   */
  PacketSocket: new (
    onBatch: (buffer: Buffer, start: number, end: number, count: number, ifindex: number, hatype: number) => void,
    onError: (err: Error & { code?: string }) => void,
    onLinks?: () => void,
  ) => PacketSocket;
  /** The shared capture queue's bound (at least 256 KiB) and the records delivered per event-loop turn. */
  configureCapture(options: { queueBytes?: number; recordsPerTurn?: number }): void;
  /** The shared capture queue now. */
  captureQueue(): { allocatedBytes: number; maxBytes: number };
  /**
   * Runs fn synchronously with the calling (JS) thread in the network
   * namespace at nsPath, then switches back, also when fn throws. Throws an
   * Error with code ENOENT (no such path), EINVAL (not a network namespace) or
   * EPERM (no CAP_SYS_ADMIN). If switching back fails the process aborts.
   */
  runInNetns<T>(nsPath: string, fn: () => T): T;
  /** getifaddrs(3) of the calling thread's current namespace. */
  listInterfaceAddresses(): InterfaceAddressEntry[];
  /** Inode of the calling thread's network namespace. */
  threadNetnsInode(): number;
  /**
   * V8 collects all the garbage it can and gives back its free pages, then malloc_trim(0) hands the kernel
   * every page malloc keeps free (native/memory.c); true if malloc returned any. A full, compacting
   * collection: a pause of the main thread (~0.1-0.3 s at a 100 MiB heap), for after the caches' lists.
   */
  returnFreeMemory(): boolean;
}

const addonPath = './native/build/Release/netns.node';

function load(): NetnsAddon {
  try {
    return createRequire(import.meta.url)(addonPath) as NetnsAddon;
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_NETNS_ADDON_LOAD', `netns/${addonPath.slice(2)}`, { cause: err });
  }
}

// Loading the addon also starts the libuv threadpool while this thread is in
// the agent's own namespace (see native/netns.c), so import this module before
// the first switch: every module that switches does.
export const addon: NetnsAddon = load();

/** Wraps an error thrown by runInNetns itself (open or setns of the namespace failed). */
export function enterError(nsPath: string, cause: unknown): PodflowError {
  const code = (cause as { code?: unknown } | null)?.code;
  const detail = typeof code === 'string' ? `${nsPath} (${code})` : nsPath;
  return new PodflowError('PODFLOW_ERR_NETNS_ENTER', detail, { cause });
}

/** IFF_* interface flags (linux/if.h). */
export const InterfaceFlag = {
  UP: 0x1,
  LOOPBACK: 0x8,
  RUNNING: 0x40,
} as const;
