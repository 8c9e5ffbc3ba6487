import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PodTable } from '../../enrich/pod-table.ts';
import { owner, pod } from '../helpers/slim-objects.ts';

// Every form a pod's fields take: the addresses kept as one uint32 (a canonical dotted quad) and as given.
const pods = [
  pod('none'),
  pod('one', { podIPs: ['10.244.1.7'], owner: owner('ReplicaSet', 'web-5d8f'), labels: [['app', 'web']] }),
  pod('zero-octet', { podIPs: ['10.0.0.0'] }),
  pod('top', { podIPs: ['255.255.255.255'] }),
  pod('leading-zero', { podIPs: ['10.244.01.7'] }),
  pod('v6', { podIPs: ['fd00::7'] }),
  pod('dual', { podIPs: ['10.244.1.8', 'fd00::8'] }),
  pod('not-an-address', { podIPs: ['10.244.1'] }),
  pod('host', { hostNetwork: true, phase: 'Pending', nodeName: '' }),
  pod('terminating', { podIPs: ['10.244.1.9'], deletingSinceMs: 1_750_000_000_123 }),
];

test('a pod written into a row comes back equal, in every form its fields take', () => {
  const table = new PodTable();
  const rows = pods.map((p) => table.add(p));
  assert.equal(table.size, pods.length);
  pods.forEach((p, i) => {
    assert.deepEqual(table.pod(rows[i]!), p, p.name);
    assert.equal(table.uid(rows[i]!), p.uid);
    assert.ok(table.same(rows[i]!, p), p.name);
  });
});

test('same() tells every field apart, owners and labels by content', () => {
  const table = new PodTable();
  const base = pods[1]!;
  const row = table.add(base);
  assert.ok(table.same(row, { ...base, owner: owner('ReplicaSet', 'web-5d8f'), labels: [['app', 'web']] }));
  const changes: Array<Partial<typeof base>> = [
    { uid: 'other' }, { namespace: 'other' }, { name: 'other' }, { nodeName: 'other' }, { hostNetwork: true }, { phase: 'Failed' },
    { podIPs: [] }, { podIPs: ['10.244.1.70'] }, { podIPs: ['10.244.1.7', 'fd00::7'] }, { owner: undefined }, { owner: owner('Job', 'web-5d8f') },
    { labels: [] }, { labels: [['app', 'api']] }, { deletingSinceMs: 0 },
  ];
  for (const change of changes) assert.ok(!table.same(row, { ...base, ...change }), JSON.stringify(change));
});

test('a released row is taken again, with nothing of its last pod; rows grow past the first thousand', () => {
  const table = new PodTable();
  const dual = table.add(pods[6]!);
  table.release(dual);
  assert.equal(table.size, 0);
  assert.equal(table.add(pods[0]!), dual);
  assert.deepEqual(table.pod(dual), pods[0]);
  const many = Array.from({ length: 3000 }, (_, i) => pod(`p${i}`, { podIPs: [`10.${i >> 8}.${i & 255}.1`], deletingSinceMs: i }));
  const rows = many.map((p) => table.add(p));
  many.forEach((p, i) => assert.deepEqual(table.pod(rows[i]!), p));
});
