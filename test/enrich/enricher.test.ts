import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Enricher, type EnricherOptions } from '../../enrich/enricher.ts';
import { LeaseTable } from '../../enrich/leases.ts';
import { NetnsPods } from '../../enrich/netns-pods.ts';
import type { OwnerLookup } from '../../enrich/owners.ts';
import type { DiscoveredNamespace } from '../../netns/discovery.ts';
import type { ObservationPoint } from '../../netns/capture.ts';
import { type EndpointIdentity, type ExportRecord, FlowDirection } from '../../enrich/export-record.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { PodflowError } from '../../common/errors.ts';
import { flowRecord } from '../helpers/ipfix-records.ts';
import { link, node, owner, pod, service } from '../helpers/slim-objects.ts';

const T0 = 1_750_000_000_000;
const WEB = pod('web-7d-a', { podIPs: ['10.244.1.5'], owner: owner('ReplicaSet', 'web-7d'), labels: [['app', 'web']] });
const DB = pod('db-0', { namespace: 'data', nodeName: 'node-2', podIPs: ['10.244.2.9'], owner: owner('StatefulSet', 'db') });
const NS: DiscoveredNamespace = { key: '4:100', inode: 100, dev: 4, paths: ['/run/netns/web'], source: 'netns-dir' };
const ETH0: ObservationPoint = { id: 1, netnsInode: 100, netnsDev: 4, interfaceName: 'eth0', kind: 'pod' };
const LO: ObservationPoint = { id: 2, netnsInode: 100, netnsDev: 4, interfaceName: 'lo', kind: 'loopback' };
const owners: OwnerLookup = { replicaSet: (uid) => (uid === 'uid-web-7d' ? link('web-7d', owner('Deployment', 'web')) : undefined), job: () => undefined };

const ip = (text: string) => Uint8Array.from(text.split('.'), Number);
const flow = (src: string, dst: string, fields: Partial<FlowRecord> = {}) =>
  flowRecord({ observationPointId: 1, sourceAddress: ip(src), destinationAddress: ip(dst), flowStartMilliseconds: T0 + 1000, flowEndMilliseconds: T0 + 2000, ...fields });
const name = (e: EndpointIdentity) =>
  e.type === 'pod' ? `pod ${e.namespace}/${e.podName} ${e.workloadKind}/${e.workloadName}` :
  e.type === 'service' ? `service ${e.serviceNamespace}/${e.serviceName}:${e.servicePortName}` :
  e.type === 'node' ? `node ${e.nodeName}` : e.type;

async function setup(options: Partial<EnricherOptions> = {}, addresses = ['10.244.1.5']) {
  const leases = new LeaseTable({ clusterCidrs: ['10.244.0.0/16', '10.96.0.0/12'] });
  let enricher: Enricher | undefined;
  const namespaces = new NetnsPods({ nodeName: 'node-1', procRoot: null, listAddresses: () => addresses, onChange: (key) => enricher?.namespaceChanged(key) });
  const records: ExportRecord[] = [];
  for (const p of [WEB, DB]) {
    leases.applyPod('add', p, T0);
    namespaces.applyPod('add', p);
  }
  leases.applyService('add', service('db', ['10.96.0.20'], [{ name: 'postgres', port: 5432, protocol: 'TCP' }], 'data'), T0);
  leases.applyNode('add', node('node-2', ['192.168.5.11']), T0);
  await namespaces.addNamespace(NS);
  enricher = new Enricher({ clusterName: 'prod-eu', leases, owners, namespaces, onRecord: (r) => records.push(r), ...options });
  enricher.addObservationPoint(ETH0);
  enricher.addObservationPoint(LO);
  return { enricher, records, leases, namespaces };
}

test('a flow the observed pod started is egress: it is the source, the remote pod the destination', async () => {
  const { enricher, records } = await setup();
  enricher.markSynced();
  enricher.enrich(flow('10.244.1.5', '10.244.2.9'));
  const [r] = records;
  assert.equal(r?.flowDirection, FlowDirection.EGRESS);
  assert.equal(r.clusterName, 'prod-eu');
  assert.equal(r.interfaceName, 'eth0');
  assert.equal(name(r.source), 'pod default/web-7d-a Deployment/web');
  assert.deepEqual(r.source.labels, [['app', 'web']]);
  assert.equal(r.source.podUid, 'uid-web-7d-a');
  assert.equal(r.source.nodeName, 'node-1');
  assert.equal(name(r.destination), 'pod data/db-0 StatefulSet/db');
  assert.equal(r.destination.nodeName, 'node-2');
});

test('a flow that came to the observed pod is ingress: the remote end is the source', async () => {
  const { enricher, records } = await setup();
  enricher.markSynced();
  enricher.enrich(flow('10.244.2.9', '10.244.1.5', { sourceTransportPort: 5432 }));
  assert.equal(records[0]?.flowDirection, FlowDirection.INGRESS);
  assert.equal(name(records[0].source), 'pod data/db-0 StatefulSet/db');
  assert.equal(name(records[0].destination), 'pod default/web-7d-a Deployment/web');
});

test('the remote end is a service with its port name, a node, external or unknown', async () => {
  const { enricher, records } = await setup();
  enricher.markSynced();
  enricher.enrich(flow('10.244.1.5', '10.96.0.20', { destinationTransportPort: 5432 }));
  enricher.enrich(flow('10.244.1.5', '192.168.5.11', { destinationTransportPort: 10250 }));
  enricher.enrich(flow('10.244.1.5', '8.8.8.8', { destinationTransportPort: 53, protocolIdentifier: 17 }));
  enricher.enrich(flow('10.244.1.5', '10.244.9.9'));
  // A reply-first capture of a service flow: the service's port is the source port.
  enricher.enrich(flow('10.96.0.20', '10.244.1.5', { sourceTransportPort: 5432, destinationTransportPort: 40000 }));
  assert.deepEqual(records.map((r) => name(r.flowDirection === FlowDirection.EGRESS ? r.destination : r.source)), [
    'service data/db:postgres',
    'node node-2',
    'external',
    'unknown',
    'service data/db:postgres',
  ]);
});

test('the remote end is named as of the flow start, not as of its end', async () => {
  const { enricher, records, leases } = await setup();
  enricher.markSynced();
  leases.applyPod('delete', DB, T0 + 5000);
  leases.applyPod('add', pod('cache-1', { podIPs: ['10.244.2.9'] }), T0 + 6000);
  enricher.enrich(flow('10.244.1.5', '10.244.2.9', { flowStartMilliseconds: T0 + 4000, flowEndMilliseconds: T0 + 7000 }));
  enricher.enrich(flow('10.244.1.5', '10.244.2.9', { flowStartMilliseconds: T0 + 6500, flowEndMilliseconds: T0 + 7000 }));
  assert.deepEqual(records.map((r) => r.destination.podName), ['db-0', 'cache-1']);
});

test('a flow on lo has the observed pod at both ends', async () => {
  const { enricher, records } = await setup();
  enricher.markSynced();
  enricher.enrich(flow('127.0.0.1', '127.0.0.1', { observationPointId: LO.id }));
  assert.equal(records[0]?.interfaceName, 'lo');
  assert.equal(records[0].flowDirection, FlowDirection.EGRESS);
  assert.equal(name(records[0].source), 'pod default/web-7d-a Deployment/web');
  assert.equal(records[0].destination, records[0].source);
});

test('holds flows that finish before the first sync and enriches them, in order, at the sync', async () => {
  const { enricher, records } = await setup();
  enricher.enrich(flow('10.244.1.5', '10.244.2.9'));
  enricher.enrich(flow('10.244.2.9', '10.244.1.5'));
  assert.equal(records.length, 0);
  assert.equal(enricher.heldFlows, 2);
  enricher.markSynced();
  assert.deepEqual(records.map((r) => r.flowDirection), [FlowDirection.EGRESS, FlowDirection.INGRESS]);
  assert.equal(name(records[0]!.destination), 'pod data/db-0 StatefulSet/db');
  enricher.enrich(flow('10.244.1.5', '10.244.2.9'));
  assert.equal(records.length, 3);
  const { enriched, held, released, expiredHeld, overflowHeld } = enricher.stats;
  assert.deepEqual({ enriched, held, released, expiredHeld, overflowHeld }, { enriched: 3, held: 2, released: 2, expiredHeld: 0, overflowHeld: 0 });
});

test('a held flow is enriched with what is known after holdMaxAgeMs, and the oldest when holdMaxFlows are held', async () => {
  let now = T0;
  const { enricher, records } = await setup({ holdMaxAgeMs: 10_000, holdMaxFlows: 3, now: () => now });
  enricher.enrich(flow('10.244.1.5', '10.244.2.9', { sourceTransportPort: 1 }));
  now += 5000;
  enricher.enrich(flow('10.244.1.5', '10.244.2.9', { sourceTransportPort: 2 }));
  now += 4999;
  enricher.expireHeld();
  assert.equal(records.length, 0);
  now += 1;
  enricher.expireHeld();
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1]);
  for (const port of [3, 4, 5]) enricher.enrich(flow('10.244.1.5', '10.244.2.9', { sourceTransportPort: port }));
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1, 2]);
  enricher.flush();
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [1, 2, 3, 4, 5]);
  assert.equal(enricher.stats.held, 5);
  assert.equal(enricher.stats.expiredHeld, 4);
  assert.equal(enricher.stats.overflowHeld, 1);
  assert.equal(enricher.heldFlows, 0);
});

test('a flow of a namespace tied to no pod is held, then named by its address when held its longest or when its namespace goes, counted', async () => {
  let now = T0;
  const { enricher, records, namespaces } = await setup({ holdMaxAgeMs: 10_000, now: () => now }, []);
  enricher.markSynced();
  enricher.enrich(flow('10.244.2.9', '10.244.1.5'));
  assert.equal(records.length, 0, 'held, not guessed');
  now += 10_000;
  enricher.expireHeld();
  assert.equal(name(records[0]!.destination), 'pod default/web-7d-a Deployment/web');
  assert.equal(enricher.stats.expiredHeld, 1);
  assert.equal(enricher.stats.observedByAddress, 1);
  assert.equal(enricher.stats.directionGuessed, 1);
  enricher.enrich(flow('10.244.2.9', '10.244.1.5', { sourceTransportPort: 2 }));
  assert.equal(records.length, 1);
  namespaces.removeNamespace(NS.key);
  enricher.namespaceGone(NS.key);
  assert.deepEqual(records.map((r) => r.flow.sourceTransportPort), [43512, 2]);
  assert.equal(enricher.stats.releasedGone, 1);
  // A flow of a namespace that has gone is not held.
  enricher.enrich(flow('10.244.2.9', '10.244.1.5', { sourceTransportPort: 3 }));
  assert.equal(records.length, 3);
});

test("the last flows of a namespace whose pod was deleted, on lo too, are named by its address's lease at their start", async () => {
  const { enricher, records, leases, namespaces } = await setup();
  enricher.markSynced();
  leases.applyPod('delete', WEB, T0 + 5000);
  namespaces.applyPod('delete', WEB);
  assert.equal(namespaces.get(NS.key)?.pod, undefined, 'tied by address: untied at the delete');
  enricher.enrich(flow('127.0.0.1', '127.0.0.1', { observationPointId: LO.id }));
  enricher.enrich(flow('10.244.1.5', '10.244.2.9'));
  assert.equal(records.length, 0);
  namespaces.removeNamespace(NS.key);
  enricher.namespaceGone(NS.key);
  assert.deepEqual(records.map((r) => [r.interfaceName, name(r.source), r.flowDirection]), [
    ['lo', 'pod default/web-7d-a Deployment/web', FlowDirection.EGRESS],
    ['eth0', 'pod default/web-7d-a Deployment/web', FlowDirection.EGRESS],
  ]);
  assert.equal(enricher.stats.observedByAddress, 2);
});

test('a flow of an unregistered point is named at once, its observed end unknown, counted', async () => {
  const { enricher, records } = await setup();
  enricher.markSynced();
  enricher.enrich(flow('10.244.2.9', '10.244.7.7', { observationPointId: 99 }));
  assert.equal(records[0]?.destination.type, 'unknown');
  assert.equal(records[0].interfaceName, '');
  assert.equal(enricher.stats.unknownPoint, 1);
  assert.equal(enricher.stats.observedUnknown, 1);
});

test('the flows of a namespace whose address comes after them wait for it: right direction and observed pod', async () => {
  const { enricher, records, namespaces } = await setup({}, []);
  enricher.markSynced();
  // The pod is in the API, its veth has no address yet: the namespace is tied to nothing.
  enricher.enrich(flow('10.244.1.5', '10.244.2.9'));
  enricher.enrich(flow('10.244.2.9', '10.244.1.5', { sourceTransportPort: 5432 }));
  enricher.enrich(flow('127.0.0.1', '127.0.0.1', { observationPointId: LO.id }));
  assert.equal(records.length, 0);
  namespaces.setInterfaceAddresses(NS.key, ['127.0.0.1', '10.244.1.5']);
  assert.deepEqual(records.map((r) => [r.interfaceName, r.flowDirection, name(r.flowDirection === FlowDirection.EGRESS ? r.source : r.destination)]), [
    ['eth0', FlowDirection.EGRESS, 'pod default/web-7d-a Deployment/web'],
    ['eth0', FlowDirection.INGRESS, 'pod default/web-7d-a Deployment/web'],
    ['lo', FlowDirection.EGRESS, 'pod default/web-7d-a Deployment/web'],
  ]);
  assert.equal(enricher.stats.directionGuessed, 0);
  assert.equal(enricher.stats.released, 3);
});

test('a flow of a point registered before its namespace is tied once the namespace is known', async () => {
  const { enricher, records, namespaces } = await setup();
  enricher.markSynced();
  const other: ObservationPoint = { id: 3, netnsInode: 101, netnsDev: 4, interfaceName: 'eth0', kind: 'pod' };
  enricher.addObservationPoint(other);
  await namespaces.addNamespace({ key: '4:101', inode: 101, dev: 4, paths: ['/run/netns/x'], source: 'netns-dir' });
  enricher.enrich(flow('10.244.1.5', '10.244.2.9', { observationPointId: 3 }));
  assert.equal(records[0]?.source.podName, 'web-7d-a');
  assert.equal(enricher.stats.observedByAddress, 0);
});

test('rejects hold bounds that are not positive', () => {
  const base = { clusterName: '', leases: new LeaseTable(), owners, namespaces: { get: () => undefined }, onRecord: () => {} };
  for (const bad of [{ holdMaxFlows: 0 }, { holdMaxAgeMs: 0 }, { holdMaxFlows: 1.5 }]) {
    assert.throws(() => new Enricher({ ...base, ...bad }), (e: unknown) => e instanceof PodflowError && e.code === 'PODFLOW_ERR_ENRICH_CONFIG');
  }
});
