// Slim Kubernetes objects (enrich/types.ts) for unit tests, with defaults a
// test overrides only where it matters.
import type { SlimNode, SlimOwner, SlimOwnerLink, SlimPod, SlimService } from '../../enrich/types.ts';

export function pod(name: string, fields: Partial<SlimPod> = {}): SlimPod {
  return {
    uid: `uid-${name}`,
    namespace: 'default',
    name,
    nodeName: 'node-1',
    hostNetwork: false,
    phase: 'Running',
    podIPs: [],
    owner: undefined,
    labels: [],
    deletingSinceMs: undefined,
    ...fields,
  };
}

export function node(name: string, addresses: string[]): SlimNode {
  return { uid: `uid-${name}`, name, addresses };
}

export function service(name: string, clusterIPs: string[], ports: SlimService['ports'], namespace = 'default'): SlimService {
  return { uid: `uid-${name}`, namespace, name, clusterIPs, ports };
}

export function link(name: string, owner?: SlimOwner, namespace = 'default'): SlimOwnerLink {
  return { uid: `uid-${name}`, namespace, name, owner };
}

export function owner(kind: string, name: string): SlimOwner {
  return { kind, name, uid: `uid-${name}` };
}
