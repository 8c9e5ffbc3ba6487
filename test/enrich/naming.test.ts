// The wiring alone, with fake caches and capture and a fake clock; the real
// ones are in identity-e2e.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Naming, type NamingCaches } from '../../enrich/naming.ts';
import type { SlimNode, SlimOwnerLink, SlimPod, SlimService, WatchEventType } from '../../enrich/types.ts';
import type { NodeCaptureEvent } from '../../netns/node-capture.ts';
import type { ObservationPoint } from '../../netns/capture.ts';
import type { ExportRecord } from '../../enrich/export-record.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { flowRecord } from '../helpers/ipfix-records.ts';
import { link, owner, pod } from '../helpers/slim-objects.ts';
import { ipKey } from '../../enrich/ip-keys.ts';
import { NetnsPods } from '../../enrich/netns-pods.ts';

class FakeCaches extends EventEmitter implements NamingCaches {
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

function setup(addresses = ['198.18.0.10']) {
  const clock = new FakeClock();
  const caches = new FakeCaches();
  const capture = new EventEmitter<{ event: [NodeCaptureEvent] }>();
  const records: ExportRecord[] = [];
  const ended: Array<{ address: string; atMs: number; kept: number[] }> = [];
  const naming = new Naming({
    caches, capture, clusterName: 'c1', onRecord: (r) => records.push(r), clock,
    namespaces: (events) => new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => addresses, ...events }), holdMaxAgeMs: 5000,
    splitFlowsAt: (address, atMs, keep) => ended.push({ address: address.join('.'), atMs, kept: [5, 6].filter(keep) }),
  });
  return { clock, caches, capture, records, naming, ended };
}

const NS_A = { key: '4:9', inode: 9, dev: 4, paths: ['/run/netns/a'], source: 'netns-dir' } as const;

test('applies cached objects at start and change events after, and names flows from both', async () => {
  const { caches, capture, records, naming } = setup();
  caches.current.push(pod('web-1', { podIPs: ['198.18.0.10'], owner: owner('ReplicaSet', 'web-rs') }));
  caches.replicaSets = [link('web-rs', owner('Deployment', 'web'))];
  caches.isSynced = true;
  naming.start();
  capture.emit('event', { type: 'attached', ns: { key: '4:9', inode: 9, dev: 4, paths: ['/run/netns/a'], source: 'netns-dir' } });
  capture.emit('event', { type: 'opened', point: POINT });
  caches.change('add', pod('db-1', { nodeName: 'node-2', podIPs: ['198.18.0.20'] }));
  await naming.namespaces.resolvePending();
  naming.enrich(flowRecord({ observationPointId: 5 }));
  assert.equal(records[0]?.source.workloadName, 'web');
  assert.equal(records[0].destination.podName, 'db-1');
  capture.emit('event', { type: 'closed', point: POINT, reason: undefined });
  capture.emit('event', { type: 'detached', ns: { key: '4:9', inode: 9, dev: 4, paths: [], source: 'netns-dir' } });
  naming.enrich(flowRecord({ observationPointId: 5 }));
  assert.equal(naming.stats().enricher.unknownPoint, 1);
  naming.close();
  assert.equal(caches.listenerCount('pod'), 0);
  assert.equal(capture.listenerCount('event'), 0);
});

test('holds flows until the caches sync, found by the timer, and releases old ones on the timer before that', async () => {
  const { clock, caches, capture, records, naming } = setup();
  naming.start();
  capture.emit('event', { type: 'opened', point: POINT });
  naming.enrich(flowRecord({ observationPointId: 5, sourceTransportPort: 1 }));
  clock.advance(5000);
  assert.equal(records.length, 1, 'released after holdMaxAgeMs');
  naming.enrich(flowRecord({ observationPointId: 5, sourceTransportPort: 2 }));
  caches.isSynced = true;
  clock.advance(1000);
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1, 2]);
  const { held, released, expiredHeld } = naming.stats().enricher;
  assert.deepEqual({ held, released, expiredHeld }, { held: 2, released: 1, expiredHeld: 1 });
  naming.close();
  assert.deepEqual(clock.pending(), []);
});

test("a closed lease ends the flows on its address, except at points where it is the observed pod's own", async () => {
  const { clock, caches, capture, naming, ended } = setup();
  caches.isSynced = true;
  naming.start();
  caches.change('add', pod('a', { podIPs: ['198.18.0.10'] }));
  capture.emit('event', { type: 'attached', ns: { ...NS_A, paths: [...NS_A.paths] } });
  capture.emit('event', { type: 'opened', point: POINT });
  capture.emit('event', { type: 'opened', point: { ...POINT, id: 6, netnsInode: 77 } });
  await naming.namespaces.resolvePending();
  clock.advance(500);
  caches.change('delete', pod('a', { podIPs: ['198.18.0.10'] }));
  assert.deepEqual(ended, [{ address: '198.18.0.10', atMs: clock.now(), kept: [5] }]);
  naming.close();
});

test("a terminating pod's namespace gone from the node ends its lease then; its held flows are named", async () => {
  const listed: string[] = [];
  const { clock, caches, capture, records, naming, ended } = setup(listed);
  caches.isSynced = true;
  naming.start();
  caches.change('add', pod('a', { podIPs: ['198.18.0.10'] }));
  capture.emit('event', { type: 'attached', ns: { ...NS_A, paths: [...NS_A.paths] } });
  capture.emit('event', { type: 'opened', point: POINT });
  // The namespace's address comes with the capture's interface listing.
  listed.push('198.18.0.10');
  capture.emit('event', { type: 'interfaces', ns: { ...NS_A, paths: [...NS_A.paths] }, interfaces: [{ name: 'eth0', index: 2, mac: '', up: true, running: true, loopback: false, addresses: [{ family: 'inet', address: '198.18.0.10', prefixLength: 24 }] }] });
  assert.equal(naming.namespaces.get(NS_A.key)?.pod?.name, 'a');
  caches.change('update', pod('a', { podIPs: ['198.18.0.10'], deletingSinceMs: clock.now() + 30_000 }));
  naming.enrich(flowRecord({ observationPointId: 5, sourceAddress: Uint8Array.of(198, 18, 0, 10) }));
  assert.equal(records.length, 0, 'held: the namespace is tied to no pod while its pod terminates');
  clock.advance(1000);
  capture.emit('event', { type: 'detached', ns: { ...NS_A, paths: [] } });
  assert.deepEqual(ended.map((e) => e.address), ['198.18.0.10']);
  assert.equal(naming.stats().leases.podsEndedEarly, 1);
  assert.equal(naming.leases.lookupKey(ipKey('198.18.0.10')!, clock.now() + 1).type, 'unknown', 'the address is free now');
  assert.deepEqual(records.map((r) => r.source.podName), ['a'], 'named by its address, held no longer');
  naming.close();
});

test('a handler that throws is counted and does not reach the caches', () => {
  const { caches, naming } = setup();
  naming.start();
  caches.change('add', { ...pod('bad'), podIPs: null as unknown as string[] });
  assert.equal(naming.stats().handlerErrors, 1);
  naming.close();
});

test('caches that cannot be used (withoutCaches) are no longer listened to, and no flow waits for their sync', () => {
  const { clock, caches, capture, records, naming } = setup();
  naming.start();
  capture.emit('event', { type: 'opened', point: POINT });
  naming.enrich(flowRecord({ observationPointId: 5, sourceTransportPort: 1 }));
  assert.equal(records.length, 0, 'held for the first sync');
  naming.withoutCaches();
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1], 'released at once');
  assert.equal(caches.listenerCount('pod'), 0);
  caches.change('add', pod('web-1', { podIPs: ['198.18.0.10'] }));
  assert.equal(naming.leases.lookupKey(ipKey('198.18.0.10')!, clock.now() + 1).type, 'unknown', 'a change event of the caches is not applied');
  naming.close();
});

test('without caches, no flow waits for a sync', () => {
  const clock = new FakeClock();
  const capture = new EventEmitter<{ event: [NodeCaptureEvent] }>();
  const records: ExportRecord[] = [];
  const naming = new Naming({
    capture, clusterName: 'c1', onRecord: (r) => records.push(r), clock,
    namespaces: (events) => new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => [], ...events }),
  });
  naming.start();
  capture.emit('event', { type: 'opened', point: POINT });
  assert.equal(naming.enricher.synced, true);
  naming.enrich(flowRecord({ observationPointId: 5 }));
  assert.equal(records.length, 1, 'named at once');
  assert.equal(naming.stats().enricher.held, 0);
  naming.close();
});
