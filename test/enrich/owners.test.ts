import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type OwnerLookup, resolveOwner } from '../../enrich/owners.ts';
import type { SlimOwnerLink } from '../../enrich/types.ts';
import { link, owner, pod } from '../helpers/slim-objects.ts';

function lookup(replicaSets: SlimOwnerLink[], jobs: SlimOwnerLink[]): OwnerLookup {
  return {
    replicaSet: (uid) => replicaSets.find((r) => r.uid === uid),
    job: (uid) => jobs.find((j) => j.uid === uid),
  };
}

const caches = lookup(
  [link('web-7d9f', owner('Deployment', 'web')), link('bare-rs')],
  [link('backup-29011', owner('CronJob', 'backup')), link('migrate')],
);

test('a pod of a ReplicaSet of a Deployment belongs to the Deployment', () => {
  assert.deepEqual(resolveOwner(pod('web-7d9f-x2', { owner: owner('ReplicaSet', 'web-7d9f') }), caches), {
    workloadKind: 'Deployment', workloadName: 'web', complete: true,
  });
});

test('a pod of a ReplicaSet without a Deployment belongs to the ReplicaSet', () => {
  assert.deepEqual(resolveOwner(pod('bare-rs-q', { owner: owner('ReplicaSet', 'bare-rs') }), caches), {
    workloadKind: 'ReplicaSet', workloadName: 'bare-rs', complete: true,
  });
});

test('a pod of a Job of a CronJob belongs to the CronJob; of a bare Job, to the Job', () => {
  assert.deepEqual(resolveOwner(pod('backup-29011-z', { owner: owner('Job', 'backup-29011') }), caches), {
    workloadKind: 'CronJob', workloadName: 'backup', complete: true,
  });
  assert.deepEqual(resolveOwner(pod('migrate-k', { owner: owner('Job', 'migrate') }), caches), {
    workloadKind: 'Job', workloadName: 'migrate', complete: true,
  });
});

test('StatefulSet, DaemonSet and other controllers are the pod\'s owner itself', () => {
  for (const kind of ['StatefulSet', 'DaemonSet', 'ReplicationController', 'Rollout']) {
    assert.deepEqual(resolveOwner(pod('p-0', { owner: owner(kind, 'thing') }), caches), { workloadKind: kind, workloadName: 'thing', complete: true });
  }
});

test('a pod without a controller is its own workload', () => {
  assert.deepEqual(resolveOwner(pod('debug'), caches), { workloadKind: 'Pod', workloadName: 'debug', complete: true });
});

test('a ReplicaSet or Job not yet cached names itself and says the chain is incomplete', () => {
  assert.deepEqual(resolveOwner(pod('new-5c-a', { owner: owner('ReplicaSet', 'new-5c') }), caches), {
    workloadKind: 'ReplicaSet', workloadName: 'new-5c', complete: false,
  });
  assert.deepEqual(resolveOwner(pod('j-a', { owner: owner('Job', 'j') }), caches), { workloadKind: 'Job', workloadName: 'j', complete: false });
});
