// A network namespace's interfaces and addresses, read inside it.
//
// getifaddrs(3) (netlink) in the addon, called within runInNetns, sees the
// pod's interfaces, including those that are down or have no address.
// Neither alternative works: os.networkInterfaces() skips interfaces that are
// not up and running, and /sys/class/net shows the namespace sysfs was
// mounted in (the host's), not the calling thread's (checked 2026-11-25).
import { addon, enterError, InterfaceFlag } from './addon.ts';
import { PodflowError } from '../common/errors.ts';

export interface InterfaceAddress {
  family: 'inet' | 'inet6';
  address: string;
  prefixLength: number;
}

export interface NetnsInterface {
  name: string;
  /** ifindex inside the namespace; a recreated interface gets a new one. */
  index: number;
  /** Link-layer address ("02:70:66:00:00:01"); '' for interfaces without one. */
  mac: string;
  up: boolean;
  running: boolean;
  loopback: boolean;
  addresses: InterfaceAddress[];
}

/** Interfaces of the calling thread's current namespace. */
export function listCurrentInterfaces(): NetnsInterface[] {
  const byName = new Map<string, NetnsInterface>();
  const entries = addon.listInterfaceAddresses();
  for (const e of entries) {
    if (e.family !== 'packet') continue;
    byName.set(e.name, {
      name: e.name,
      index: e.index,
      mac: e.mac,
      up: (e.flags & InterfaceFlag.UP) !== 0,
      running: (e.flags & InterfaceFlag.RUNNING) !== 0,
      loopback: (e.flags & InterfaceFlag.LOOPBACK) !== 0,
      addresses: [],
    });
  }
  for (const e of entries) {
    if (e.family === 'packet') continue;
    byName.get(e.name)?.addresses.push({ family: e.family, address: e.address, prefixLength: e.prefixLength });
  }
  return [...byName.values()];
}

/**
 * The nsPath meaning "the calling thread's own namespace, entered with no
 * setns" (the sidecar: no CAP_SYS_ADMIN, its pod's namespace only).
 */
export const CURRENT_NETNS = '';

/** Interfaces of the network namespace at nsPath (e.g. /run/netns/x, /proc/<pid>/ns/net; CURRENT_NETNS: our own). */
export function listInterfaces(nsPath: string): NetnsInterface[] {
  if (nsPath === CURRENT_NETNS) return listCurrentInterfaces();
  let result: NetnsInterface[] | undefined;
  let listError: unknown;
  try {
    addon.runInNetns(nsPath, () => {
      try {
        result = listCurrentInterfaces();
      } catch (err) {
        listError = err;
      }
    });
  } catch (err) {
    throw enterError(nsPath, err);
  }
  if (result === undefined) {
    throw new PodflowError('PODFLOW_ERR_NETNS_INTERFACES', nsPath, { cause: listError });
  }
  return result;
}

/** The addresses of every interface of the network namespace at nsPath, as text (what NetnsPods ties a namespace by). */
export function listAddresses(nsPath: string): string[] {
  return listInterfaces(nsPath).flatMap((i) => i.addresses.map((a) => a.address));
}
