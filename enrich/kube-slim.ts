// Slimming: a Kubernetes object as parsed JSON reduced to the fields podflow
// keeps (enrich/types.ts), with the values many objects repeat kept once.
// Pure but for the shared intern tables: JSON in, slim objects out.
import { PodflowError } from '../common/errors.ts';
import { Interner } from './interner.ts';
import type { FieldTree } from './json-fields.ts';
import type { SlimNode, SlimOwner, SlimOwnerLink, SlimPod, SlimService, SlimServicePort } from './types.ts';

const maxLabelKeys = 16;
/** Label values are at most 63 characters in valid objects; the bound keeps an invalid one from growing the cache. */
const maxLabelValueLength = 63;

/** The fields the slimmers read of an object as parsed from JSON (a list item or a watch event). */
export interface RawObject {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    ownerReferences?: Array<{ kind?: string; name?: string; uid?: string; controller?: boolean }>;
    deletionTimestamp?: Date | string;
  };
  spec?: {
    nodeName?: string;
    hostNetwork?: boolean;
    clusterIPs?: string[];
    ports?: Array<{ name?: string; port?: number; protocol?: string }>;
  };
  status?: {
    phase?: string;
    podIPs?: Array<{ ip?: string }>;
    addresses?: Array<{ type?: string; address?: string }>;
  };
}

// What a list reads of each item (enrich/json-fields.ts): the members the
// slimmers below read, and the version. Of a pod's labels only the
// configured keys.
const objectMetadata = { name: true, namespace: true, uid: true, resourceVersion: true } as const;

export function podFields(labelKeys: readonly string[]): FieldTree {
  const labels = Object.fromEntries(labelKeys.map((key) => [key, true] as const));
  return {
    metadata: { ...objectMetadata, labels, ownerReferences: true, deletionTimestamp: true },
    spec: { nodeName: true, hostNetwork: true },
    status: { phase: true, podIPs: true },
  };
}
export const serviceFields: FieldTree = { metadata: objectMetadata, spec: { clusterIPs: true, ports: true } };
export const nodeFields: FieldTree = { metadata: objectMetadata, status: { addresses: true } };
export const ownerLinkFields: FieldTree = { metadata: { ...objectMetadata, ownerReferences: true } };

// Values many cached objects share, kept once (enrich/interner.ts). One set
// per process: equal values are interchangeable wherever they come from.
const internedBound = 1 << 16;
/** Namespaces, node names, phases, owner kinds. (An owner's name is kept once by its owner, shared by uid below.) */
const strings = new Interner<string>(internedBound);
/** Controlling owners by uid: the pods of a ReplicaSet, the ReplicaSets of a Deployment. */
const owners = new Interner<SlimOwner>(internedBound);
/** Kept labels by content: every pod of a workload has the same. */
const labelSets = new Interner<SlimPod['labels']>(internedBound);
const noLabels: SlimPod['labels'] = Object.freeze([]);

function shared(text: string): string {
  return strings.intern(text, text);
}

/** The owner kept for uid (the one object every reference to it shares), or a new one. */
function ownerOf(kind: string, name: string, uid: string): SlimOwner {
  const owner: SlimOwner = Object.freeze({ kind: shared(kind), name, uid });
  const kept = owners.intern(uid, owner);
  // A uid names one object; should two differ anyway, each keeps its own.
  return kept.kind === owner.kind && kept.name === owner.name ? kept : owner;
}

function controllerOwner(raw: RawObject): SlimOwner | undefined {
  const reference = raw.metadata?.ownerReferences?.find((r) => r.controller === true);
  if (reference === undefined) return undefined;
  return ownerOf(reference.kind ?? '', reference.name ?? '', reference.uid ?? '');
}

export function slimPod(raw: RawObject, labelKeys: readonly string[]): SlimPod {
  const metadata = raw.metadata ?? {};
  let labels = noLabels;
  if (metadata.labels !== undefined) {
    const found: Array<readonly [string, string]> = [];
    let content = '';
    for (const key of labelKeys) {
      const value = metadata.labels[key];
      if (value === undefined) continue;
      const cut = value.slice(0, maxLabelValueLength);
      found.push(Object.freeze([key, cut] as const));
      content += `${key}\u0000${cut}\u0000`;
    }
    if (found.length > 0) labels = labelSets.intern(content, Object.freeze(found));
  }
  // Exactly as long as needed (a pushed array keeps room to grow): most pods have one address.
  const entries = raw.status?.podIPs ?? [];
  const podIPs = entries.length === 1 && entries[0]!.ip ? [entries[0]!.ip] : entries.filter((e) => e.ip).map((e) => e.ip!);
  return {
    uid: metadata.uid ?? '',
    namespace: shared(metadata.namespace ?? ''),
    name: metadata.name ?? '',
    nodeName: shared(raw.spec?.nodeName ?? ''),
    hostNetwork: raw.spec?.hostNetwork === true,
    phase: shared(raw.status?.phase ?? ''),
    podIPs,
    owner: controllerOwner(raw),
    labels,
    deletingSinceMs: metadata.deletionTimestamp === undefined ? undefined : new Date(metadata.deletionTimestamp).getTime(),
  };
}

export function slimService(raw: RawObject): SlimService {
  const metadata = raw.metadata ?? {};
  const ports: SlimServicePort[] = (raw.spec?.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port ?? 0, protocol: p.protocol ?? 'TCP' }));
  return {
    uid: metadata.uid ?? '',
    namespace: metadata.namespace ?? '',
    name: metadata.name ?? '',
    clusterIPs: (raw.spec?.clusterIPs ?? []).filter((ip) => ip !== 'None' && ip !== ''),
    ports,
  };
}

export function slimNode(raw: RawObject): SlimNode {
  const addresses: string[] = [];
  for (const a of raw.status?.addresses ?? []) {
    if ((a.type === 'InternalIP' || a.type === 'ExternalIP') && a.address) addresses.push(a.address);
  }
  return { uid: raw.metadata?.uid ?? '', name: raw.metadata?.name ?? '', addresses };
}

/**
 * kind: the object's own kind (ReplicaSet, Job). Its pods name it as their owner: the owner kept for its
 * uid, made here if its pods come later, lends it its name and uid strings, so each is kept once.
 */
export function slimOwnerLink(raw: RawObject, kind: string): SlimOwnerLink {
  const metadata = raw.metadata ?? {};
  const asOwner = ownerOf(kind, metadata.name ?? '', metadata.uid ?? '');
  return { uid: asOwner.uid, namespace: shared(metadata.namespace ?? ''), name: asOwner.name, owner: controllerOwner(raw) };
}

/** Throws PODFLOW_ERR_KUBE_SETTING for more than maxLabelKeys keys or an invalid one. */
export function checkLabelKeys(keys: readonly string[]): readonly string[] {
  if (keys.length > maxLabelKeys) {
    throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `at most ${maxLabelKeys} label keys are kept, got ${keys.length}`);
  }
  for (const key of keys) {
    if (typeof key !== 'string' || key === '' || key.length > 317) {
      throw new PodflowError('PODFLOW_ERR_KUBE_SETTING', `invalid label key ${JSON.stringify(key)}`);
    }
  }
  return [...keys];
}
