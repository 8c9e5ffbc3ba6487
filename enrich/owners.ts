// Owner resolution: the workload a pod belongs to, as kind and name.
// Pod → ReplicaSet → Deployment and Pod → Job → CronJob go one level through
// the cached ReplicaSet or Job; any other controller (StatefulSet, DaemonSet,
// a custom one) is the pod's own controlling owner; a pod without one is its
// own workload (kind 'Pod'). Pure: lookups come from the caller.
import type { SlimOwnerLink, SlimPod } from './types.ts';

/** Cached ReplicaSets and Jobs by uid (KubeCaches provides these). */
export interface OwnerLookup {
  replicaSet(uid: string): SlimOwnerLink | undefined;
  job(uid: string): SlimOwnerLink | undefined;
}

export interface Workload {
  workloadKind: string;
  workloadName: string;
  /**
   * False when the pod's ReplicaSet or Job is not (yet) cached: the answer is
   * then that ReplicaSet or Job, though it may belong to a Deployment or CronJob.
   */
  complete: boolean;
}

export function resolveOwner(pod: SlimPod, lookup: OwnerLookup): Workload {
  const owner = pod.owner;
  if (owner === undefined) return { workloadKind: 'Pod', workloadName: pod.name, complete: true };
  let link: SlimOwnerLink | undefined;
  if (owner.kind === 'ReplicaSet') link = lookup.replicaSet(owner.uid);
  else if (owner.kind === 'Job') link = lookup.job(owner.uid);
  else return { workloadKind: owner.kind, workloadName: owner.name, complete: true };
  if (link === undefined) return { workloadKind: owner.kind, workloadName: owner.name, complete: false };
  // A ReplicaSet or Job without a controller of its own is the workload itself.
  if (link.owner === undefined) return { workloadKind: owner.kind, workloadName: owner.name, complete: true };
  return { workloadKind: link.owner.kind, workloadName: link.owner.name, complete: true };
}
