// Typed loader for the netns native addon (netns/native, built by
// scripts/build-native.sh). The one place that knows its functions.
import { createRequire } from 'node:module';
import { PodflowError } from '../common/errors.ts';

/** One getifaddrs(3) entry; 'packet' entries exist for every interface, with or without addresses. */
export type InterfaceAddressEntry =
  | { name: string; flags: number; family: 'packet'; index: number; /** Link-layer address, e.g. "02:70:66:00:00:01"; '' if none. */ mac: string }
  | { name: string; flags: number; family: 'inet' | 'inet6'; address: string; prefixLength: number };

export interface NetnsAddon {
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
   * The bound packet socket fd joins PACKET_FANOUT_CBPF group groupId of its
   * namespace, or with -1 creates one with an unused id. Returns the group id.
   * Throws an Error with .code (errno name) on failure.
   */
  fanoutJoin(fd: number, groupId: number): number;
  /** From now on, every packet of fd's fanout group goes to its member number `member` (0: the oldest). */
  fanoutSelect(fd: number, member: number): void;
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
