import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CachedAsPodRows } from '../../enrich/cached-objects.ts';
import { LeaseTable, type LeaseAnswer } from '../../enrich/leases.ts';
import { ipKey, ipKeyOf, parsePrefix } from '../../enrich/ip-keys.ts';
import { PodflowError } from '../../common/errors.ts';
import { node, pod, service } from '../helpers/slim-objects.ts';

const T0 = 1_750_000_000_000;
const X = '10.244.1.7';

/** What a lookup names, in one comparable string. */
function who(answer: LeaseAnswer): string {
  switch (answer.type) {
    case 'pod':
      return `pod ${answer.pod.name}`;
    case 'node':
      return `node ${answer.nodeName}`;
    case 'service':
      return `service ${answer.service.name}:${answer.portName}`;
    default:
      return answer.type;
  }
}

function at(table: LeaseTable, address: string, ms: number, port?: number, protocol?: number): string {
  return who(table.lookupKey(ipKey(address)!, ms, port, protocol));
}

test('keys an address the same from any text form and from its bytes', () => {
  assert.equal(ipKey('10.1.2.3'), ipKeyOf(Uint8Array.of(10, 1, 2, 3)));
  assert.equal(ipKey('::ffff:10.1.2.3'), ipKey('10.1.2.3'));
  const v6 = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a]);
  for (const text of ['fd00::2a', 'FD00:0:0:0::2A', 'fd00:0000:0000:0000:0000:0000:0000:002a']) assert.equal(ipKey(text), ipKeyOf(v6));
  assert.equal(ipKey('fd00::1%eth0'), undefined);
  assert.equal(ipKey('10.1.2'), undefined);
  assert.equal(ipKey('None'), undefined);
  const prefix = parsePrefix('fd00:1::/33')!;
  assert.ok(prefix.contains(ipKey('fd00:1:7fff::1')!));
  assert.ok(!prefix.contains(ipKey('fd00:1:8000::1')!));
  assert.ok(!prefix.contains(ipKey('10.0.0.1')!));
  assert.ok(parsePrefix('0.0.0.0/0')!.contains(ipKey('203.0.113.9')!));
  assert.equal(parsePrefix('10.0.0.0/33'), undefined);
});

test('names the pod that held the address when the flow started, for IPv4 and IPv6', () => {
  const table = new LeaseTable();
  table.applyPod('add', pod('a', { podIPs: [X, 'fd00::7'] }), T0);
  assert.equal(at(table, X, T0 + 10), 'pod a');
  assert.equal(who(table.lookup(Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]), T0 + 10)), 'pod a');
  // Listed at start-up: the pod also owns flows that began before the agent saw it.
  assert.equal(at(table, X, T0 - 60_000), 'pod a');
  assert.equal(table.openLeases, 2);
});

test('IP reuse within the grace period misattributes no flow before or after the handover', () => {
  const table = new LeaseTable({ graceMs: 300_000 });
  table.applyPod('add', pod('a', { podIPs: [X] }), T0);
  table.applyPod('delete', pod('a', { podIPs: [X] }), T0 + 1000);
  table.applyPod('add', pod('b', { podIPs: [X] }), T0 + 5000);
  // Flows that ended late but began while A held the address: A, even looked up after B arrived.
  for (const start of [T0 - 1, T0, T0 + 999]) assert.equal(at(table, X, start), 'pod a', `start ${start - T0}`);
  // From A's release on the address is B's (B's first flows may precede its watch event).
  for (const start of [T0 + 1000, T0 + 4999, T0 + 5000, T0 + 200_000]) assert.equal(at(table, X, start), 'pod b', `start ${start - T0}`);
  assert.equal(table.closedLeases, 1);
  // Past the grace period A's lease is forgotten; B never took over A's time.
  table.expire(T0 + 1000 + 300_000);
  assert.equal(table.closedLeases, 0);
  assert.equal(table.stats.closedExpired, 1);
  assert.equal(at(table, X, T0 + 999), 'unknown');
});

test('a Succeeded or Failed pod gives up its address although its status still lists it', () => {
  for (const phase of ['Succeeded', 'Failed']) {
    const table = new LeaseTable();
    const job = pod('job-x', { podIPs: [X] });
    table.applyPod('add', job, T0);
    table.applyPod('update', { ...job, phase }, T0 + 1000);
    table.applyPod('add', pod('next', { podIPs: [X] }), T0 + 2000);
    // The finished pod's later updates (still listing the address) do not take it back.
    table.applyPod('update', { ...job, phase, labels: [['k', 'v']] }, T0 + 3000);
    assert.equal(at(table, X, T0 + 500), 'pod job-x', phase);
    assert.equal(at(table, X, T0 + 1500), 'pod next', phase);
    assert.equal(at(table, X, T0 + 3500), 'pod next', phase);
    assert.equal(table.stats.superseded, 0, phase);
  }
});

test('a terminating pod whose namespace went ends its leases then: its later states claim nothing, the next pod owns flows from then on', () => {
  const closed: Array<[string, number]> = [];
  const table = new LeaseTable({ onClosed: (key, ms) => closed.push([String(key), ms]) });
  table.applyPod('add', pod('a', { podIPs: [X] }), T0);
  table.applyPod('update', pod('a', { podIPs: [X], deletingSinceMs: T0 + 30_000 }), T0 + 1000);
  table.endPod('uid-a', T0 + 2000);
  table.endPod('uid-a', T0 + 2500);
  table.endPod('uid-unknown', T0 + 2500);
  assert.equal(table.stats.podsEndedEarly, 1);
  assert.deepEqual(closed, [[String(ipKey(X)), T0 + 2000]]);
  // Its status still lists the address until it is deleted: no claim.
  table.applyPod('update', pod('a', { podIPs: [X], deletingSinceMs: T0 + 30_000 }), T0 + 2600);
  assert.equal(table.openLeases, 0);
  // The next pod's first flows began before its status event: named by it from the end of a's lease.
  table.applyPod('add', pod('b', { podIPs: [X] }), T0 + 4000);
  table.applyPod('delete', pod('a', { podIPs: [X] }), T0 + 5000);
  assert.equal(at(table, X, T0 + 1500), 'pod a');
  assert.equal(at(table, X, T0 + 2100), 'pod b');
  assert.equal(closed.length, 1, 'the delete closed nothing more');
});

test('every lease that closes is told, at the time it closes: delete, supersede, finish, an address dropped', () => {
  const closed: string[] = [];
  const table = new LeaseTable({ onClosed: (key, ms) => closed.push(`${String(key) === String(ipKey(X)) ? 'X' : 'Y'} ${ms - T0}`) });
  table.applyPod('add', pod('a', { podIPs: [X, '10.244.1.8'] }), T0);
  table.applyPod('update', pod('a', { podIPs: [X] }), T0 + 1);
  table.applyPod('add', pod('b', { podIPs: [X] }), T0 + 2);
  table.applyPod('update', pod('b', { podIPs: [X], phase: 'Succeeded' }), T0 + 3);
  table.applyPod('add', pod('c', { podIPs: [X] }), T0 + 4);
  table.applyPod('delete', pod('c', { podIPs: [X] }), T0 + 5);
  assert.deepEqual(closed, ['Y 1', 'X 2', 'X 3', 'X 5']);
});

test('a pod first seen already finished gets no lease', () => {
  const table = new LeaseTable();
  table.applyPod('add', pod('done', { podIPs: [X], phase: 'Succeeded' }), T0);
  table.applyPod('add', pod('live', { podIPs: [X] }), T0);
  assert.equal(at(table, X, T0 - 10_000), 'pod live');
  assert.equal(table.openLeases, 1);
});

test('a pod that loses or changes its address closes that lease at that time', () => {
  const table = new LeaseTable();
  const a = pod('a', { podIPs: [X] });
  table.applyPod('add', a, T0);
  table.applyPod('update', { ...a, podIPs: ['10.244.1.8'] }, T0 + 1000);
  assert.equal(at(table, X, T0 + 500), 'pod a');
  assert.equal(at(table, X, T0 + 1500), 'unknown');
  assert.equal(at(table, '10.244.1.8', T0 + 1500), 'pod a');
  table.applyPod('update', { ...a, podIPs: [] }, T0 + 2000);
  assert.equal(at(table, '10.244.1.8', T0 + 2500), 'unknown');
  assert.equal(table.openLeases, 0);
});

test('out-of-order events: update before add, delete of an unknown pod, duplicate add', () => {
  const table = new LeaseTable();
  table.applyPod('update', pod('a', { podIPs: [X] }), T0);
  assert.equal(at(table, X, T0), 'pod a');
  assert.equal(table.stats.updatesForUnknown, 1);
  table.applyPod('delete', pod('ghost', { podIPs: ['10.244.1.9'] }), T0);
  assert.equal(table.stats.deletesForUnknown, 1);
  assert.equal(at(table, '10.244.1.9', T0 - 1), 'unknown');
  table.applyPod('add', pod('a', { podIPs: [X], labels: [['app', 'x']] }), T0 + 10);
  assert.equal(table.stats.addsForKnown, 1);
  assert.equal(table.openLeases, 1);
  const answer = table.lookupKey(ipKey(X)!, T0 + 20);
  assert.deepEqual(answer.type === 'pod' && answer.pod.labels, [['app', 'x']]);
});

test('two pods claiming one address: the later claim wins from its time on, the loser cannot take it back with stale status', () => {
  const table = new LeaseTable();
  const a = pod('a', { podIPs: [X] });
  table.applyPod('add', a, T0);
  table.applyPod('add', pod('b', { podIPs: [X] }), T0 + 1000);
  assert.equal(table.stats.superseded, 1);
  assert.equal(at(table, X, T0 + 999), 'pod a');
  assert.equal(at(table, X, T0 + 1000), 'pod b');
  table.applyPod('update', { ...a, labels: [['v', '2']] }, T0 + 2000);
  assert.equal(table.stats.staleClaimsIgnored, 1);
  assert.equal(at(table, X, T0 + 2500), 'pod b');
  // Once A's status drops the address, a later claim by A is genuine.
  table.applyPod('update', { ...a, podIPs: [] }, T0 + 3000);
  table.applyPod('delete', pod('b', { podIPs: [X] }), T0 + 4000);
  table.applyPod('update', a, T0 + 5000);
  assert.equal(at(table, X, T0 + 3500), 'pod b');
  assert.equal(at(table, X, T0 + 4500), 'pod a');
  // The same events in the same order always give the same answers.
  assert.equal(table.stats.lookupsAmbiguous, 0);
});

test('a pod deleted and added again holds its address without a gap', () => {
  const table = new LeaseTable();
  table.applyPod('add', pod('a', { podIPs: [X] }), T0);
  table.applyPod('delete', pod('a', { podIPs: [X] }), T0 + 1000);
  table.applyPod('add', pod('a', { podIPs: [X] }), T0 + 2000);
  for (const start of [T0, T0 + 1500, T0 + 2500]) assert.equal(at(table, X, start), 'pod a');
  assert.equal(table.stats.lookupsAmbiguous, 0);
});

test('a ClusterIP names its service and the port name of the port and protocol used', () => {
  const table = new LeaseTable();
  const ports = [
    { name: 'http', port: 80, protocol: 'TCP' },
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
    { name: '', port: 8080, protocol: 'TCP' },
  ];
  table.applyService('add', service('web', ['10.96.0.10', 'fd00:96::a'], ports), T0);
  assert.equal(at(table, '10.96.0.10', T0, 80, 6), 'service web:http');
  assert.equal(at(table, '10.96.0.10', T0, 53, 17), 'service web:dns');
  assert.equal(at(table, 'fd00:96::a', T0, 53, 6), 'service web:dns-tcp');
  assert.equal(at(table, '10.96.0.10', T0, 8080, 6), 'service web:');
  assert.equal(at(table, '10.96.0.10', T0, 443, 6), 'service web:');
  assert.equal(at(table, '10.96.0.10', T0), 'service web:');
  // A port added later names later flows; a deleted service's ClusterIP goes to the next one.
  table.applyService('update', service('web', ['10.96.0.10'], [...ports, { name: 'https', port: 443, protocol: 'TCP' }]), T0 + 10);
  assert.equal(at(table, '10.96.0.10', T0 + 20, 443, 6), 'service web:https');
  table.applyService('delete', service('web', ['10.96.0.10'], ports), T0 + 1000);
  table.applyService('add', service('api', ['10.96.0.10'], [{ name: 'grpc', port: 80, protocol: 'TCP' }]), T0 + 2000);
  assert.equal(at(table, '10.96.0.10', T0 + 500, 80, 6), 'service web:http');
  assert.equal(at(table, '10.96.0.10', T0 + 2500, 80, 6), 'service api:grpc');
  assert.equal(at(table, 'fd00:96::a', T0 + 2500), 'unknown');
});

test('node addresses name the node; host-network pods are named by their node, not as pods', () => {
  const table = new LeaseTable();
  table.applyNode('add', node('node-1', ['192.168.5.10', '203.0.113.10']), T0);
  table.applyPod('add', pod('kube-proxy', { hostNetwork: true, podIPs: ['192.168.5.10'] }), T0);
  assert.equal(at(table, '192.168.5.10', T0 + 1), 'node node-1');
  assert.equal(at(table, '203.0.113.10', T0 + 1), 'node node-1');
  assert.equal(table.openLeases, 2);
  table.applyNode('update', node('node-1', ['192.168.5.10']), T0 + 100);
  assert.equal(at(table, '203.0.113.10', T0 + 50), 'node node-1');
  assert.equal(at(table, '203.0.113.10', T0 + 150), 'unknown');
  table.applyNode('delete', node('node-1', ['192.168.5.10']), T0 + 200);
  assert.equal(at(table, '192.168.5.10', T0 + 150), 'node node-1');
  assert.equal(at(table, '192.168.5.10', T0 + 250), 'unknown');
});

test('an address nobody holds is external outside the cluster CIDRs and unknown inside them or without them', () => {
  const withCidrs = new LeaseTable({ clusterCidrs: ['10.244.0.0/16', '10.96.0.0/12', 'fd00::/8'] });
  assert.equal(at(withCidrs, '10.244.9.9', T0), 'unknown');
  assert.equal(at(withCidrs, '10.100.0.1', T0), 'unknown');
  assert.equal(at(withCidrs, 'fd00::99', T0), 'unknown');
  assert.equal(at(withCidrs, '8.8.8.8', T0), 'external');
  assert.equal(at(withCidrs, '2001:db8::1', T0), 'external');
  assert.equal(at(new LeaseTable(), '8.8.8.8', T0), 'unknown');
  assert.deepEqual(withCidrs.stats.lookups, { pod: 0, node: 0, service: 0, external: 2, unknown: 3 });
  assert.throws(() => new LeaseTable({ clusterCidrs: ['10.0.0.0'] }), (e: unknown) => e instanceof PodflowError && e.code === 'PODFLOW_ERR_ENRICH_CONFIG');
  assert.throws(() => new LeaseTable({ maxClosedLeases: 0 }), (e: unknown) => e instanceof PodflowError && e.code === 'PODFLOW_ERR_ENRICH_CONFIG');
});

test('counts every lookup by its answer', () => {
  const table = new LeaseTable();
  table.applyPod('add', pod('a', { podIPs: [X] }), T0);
  table.applyNode('add', node('n', ['192.168.5.10']), T0);
  table.applyService('add', service('s', ['10.96.0.1'], []), T0);
  for (const address of [X, X, '192.168.5.10', '10.96.0.1', '1.1.1.1']) at(table, address, T0);
  assert.deepEqual(table.stats.lookups, { pod: 2, node: 1, service: 1, external: 0, unknown: 1 });
});

test('closed leases are bounded in number, the least recently closed dropped first and counted', () => {
  const table = new LeaseTable({ maxClosedLeases: 2, graceMs: 3_600_000 });
  for (let i = 1; i <= 3; i++) {
    table.applyPod('add', pod(`p${i}`, { podIPs: [`10.244.2.${i}`] }), T0);
    table.applyPod('delete', pod(`p${i}`, { podIPs: [`10.244.2.${i}`] }), T0 + i);
  }
  assert.equal(table.closedLeases, 2);
  assert.equal(table.stats.closedEvicted, 1);
  assert.equal(at(table, '10.244.2.1', T0), 'unknown');
  assert.equal(at(table, '10.244.2.2', T0), 'pod p2');
  assert.equal(at(table, '10.244.2.3', T0), 'pod p3');
});

test('applying an event expires closed leases whose grace period is over', () => {
  const table = new LeaseTable({ graceMs: 1000 });
  table.applyPod('add', pod('a', { podIPs: [X] }), T0);
  table.applyPod('delete', pod('a', { podIPs: [X] }), T0 + 10);
  table.applyPod('add', pod('b', { podIPs: ['10.244.3.3'] }), T0 + 1009);
  assert.equal(table.closedLeases, 1);
  table.applyPod('add', pod('c', { podIPs: ['10.244.3.4'] }), T0 + 1010);
  assert.equal(table.closedLeases, 0);
  assert.equal(table.stats.closedExpired, 1);
});

test("pods answered from a shared store (the caches' rows): a lookup names the store's pod, and after keepOwnPods the store can change unheard", () => {
  const store = new CachedAsPodRows();
  const table = new LeaseTable({ pods: store });
  const a = pod('a', { podIPs: [X], labels: [['app', 'one']] });
  store.set(a.namespace, a.name, a);
  table.applyPod('add', a, T0);
  assert.deepEqual(table.lookupKey(ipKey(X)!, T0 + 1), { type: 'pod', pod: a });
  // An update seen by the store first: the table answers the new state; a lease it closes names the state before.
  const relabelled = { ...a, labels: [['app', 'two']] as const };
  store.set(a.namespace, a.name, relabelled);
  table.applyPod('update', relabelled, T0 + 10, a);
  assert.deepEqual(table.lookupKey(ipKey(X)!, T0 + 11), { type: 'pod', pod: relabelled });
  const moved = { ...relabelled, podIPs: ['10.244.1.8'] };
  store.set(a.namespace, a.name, moved);
  table.applyPod('update', moved, T0 + 20, relabelled);
  assert.deepEqual(table.lookupKey(ipKey(X)!, T0 + 15), { type: 'pod', pod: { ...relabelled, podIPs: [] } });
  table.keepOwnPods();
  // The store's row now holds another pod, and the table was not told: it still names what it knew.
  store.delete(a.namespace, a.name);
  const b = pod('b', { podIPs: ['10.244.1.9'] });
  store.set(b.namespace, b.name, b);
  assert.deepEqual(table.lookupKey(ipKey('10.244.1.8')!, T0 + 21), { type: 'pod', pod: moved });
});

test('a pod answer is made from its row once and kept until the pod\'s next event', () => {
  const table = new LeaseTable();
  const a = pod('a', { podIPs: [X] });
  table.applyPod('add', a, T0);
  const first = table.lookupKey(ipKey(X)!, T0 + 1);
  assert.deepEqual(first, { type: 'pod', pod: a });
  // The same object while it is kept, so callers can key on it (the enricher's identities).
  assert.equal(table.lookupKey(ipKey(X)!, T0 + 2), first);
  const relabelled = { ...a, labels: [['app', 'new']] as const };
  table.applyPod('update', relabelled, T0 + 3);
  assert.deepEqual(table.lookupKey(ipKey(X)!, T0 + 4), { type: 'pod', pod: relabelled });
});
