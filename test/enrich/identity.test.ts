// The wiring alone, with fake caches and capture and a fake clock; the real
// ones are in identity-e2e.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Identity, type IdentityCaches } from '../../enrich/identity.ts';
import type { SlimNode, SlimOwnerLink, SlimPod, SlimService, WatchEventType } from '../../enrich/types.ts';
import type { NodeCaptureEvent } from '../../netns/node-capture.ts';
import type { CaptureHandle, ObservationPoint } from '../../netns/capture.ts';
import type { ExportRecord } from '../../ipfix/types.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { flowRecord } from '../helpers/ipfix-records.ts';
import { link, owner, pod } from '../helpers/slim-objects.ts';

class FakeCaches extends EventEmitter implements IdentityCaches {
  isSynced = false;
  readonly current: SlimPod[] = [];
  replicaSets: SlimOwnerLink[] = [];
  synced = () => this.isSynced;
  pods = () => this.current;
  services = (): SlimService[] => [];
  nodes = (): SlimNode[] => [];
  replicaSet = (uid: string) => this.replicaSets.find((r) => r.uid === uid);
  job = () => undefined;
  change(type: WatchEventType, object: SlimPod): void {
    this.emit('pod', type, object, undefined);
  }
}

const POINT: ObservationPoint = { id: 5, netnsInode: 9, netnsDev: 4, interfaceName: 'eth0', kind: 'pod' };
const handle = { point: POINT } as CaptureHandle;

function setup() {
  const clock = new FakeClock();
  const caches = new FakeCaches();
  const capture = new EventEmitter<{ event: [NodeCaptureEvent] }>();
  const records: ExportRecord[] = [];
  const identity = new Identity({
    caches, capture, nodeName: 'node-1', clusterName: 'c1', onRecord: (r) => records.push(r), clock,
    procRoot: null, listAddresses: () => ['198.18.0.10'], holdMaxAgeMs: 5000,
  });
  return { clock, caches, capture, records, identity };
}

test('applies cached objects at start and change events after, and names flows from both', async () => {
  const { caches, capture, records, identity } = setup();
  caches.current.push(pod('web-1', { podIPs: ['198.18.0.10'], owner: owner('ReplicaSet', 'web-rs') }));
  caches.replicaSets = [link('web-rs', owner('Deployment', 'web'))];
  caches.isSynced = true;
  identity.start();
  capture.emit('event', { type: 'attached', ns: { key: '4:9', inode: 9, dev: 4, paths: ['/run/netns/a'], source: 'netns-dir' } });
  capture.emit('event', { type: 'opened', handle });
  caches.change('add', pod('db-1', { nodeName: 'node-2', podIPs: ['198.18.0.20'] }));
  await identity.namespaces.resolvePending();
  identity.enrich(flowRecord({ observationPointId: 5 }));
  assert.equal(records[0]?.source.workloadName, 'web');
  assert.equal(records[0].destination.podName, 'db-1');
  capture.emit('event', { type: 'closed', handle, reason: undefined });
  capture.emit('event', { type: 'detached', ns: { key: '4:9', inode: 9, dev: 4, paths: [], source: 'netns-dir' } });
  identity.enrich(flowRecord({ observationPointId: 5 }));
  assert.equal(identity.stats().enricher.unknownPoint, 1);
  identity.close();
  assert.equal(caches.listenerCount('pod'), 0);
  assert.equal(capture.listenerCount('event'), 0);
});

test('holds flows until the caches sync, found by the timer, and releases old ones on the timer before that', async () => {
  const { clock, caches, capture, records, identity } = setup();
  identity.start();
  capture.emit('event', { type: 'opened', handle });
  identity.enrich(flowRecord({ observationPointId: 5, sourceTransportPort: 1 }));
  clock.advance(5000);
  assert.equal(records.length, 1, 'released after holdMaxAgeMs');
  identity.enrich(flowRecord({ observationPointId: 5, sourceTransportPort: 2 }));
  caches.isSynced = true;
  clock.advance(1000);
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1, 2]);
  const { held, released, expiredUnsynced } = identity.stats().enricher;
  assert.deepEqual({ held, released, expiredUnsynced }, { held: 2, released: 1, expiredUnsynced: 1 });
  identity.close();
  assert.deepEqual(clock.pending(), []);
});

test('a handler that throws is counted and does not reach the caches', () => {
  const { caches, identity } = setup();
  identity.start();
  caches.change('add', { ...pod('bad'), podIPs: null as unknown as string[] });
  assert.equal(identity.stats().handlerErrors, 1);
  identity.close();
});
