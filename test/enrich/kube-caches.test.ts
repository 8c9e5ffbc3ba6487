import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PodflowError } from '../../common/errors.ts';
import { KubeCaches, type KubeCachesOptions, type KubeResource } from '../../enrich/kube-caches.ts';
import type { SlimPod, WatchEventType } from '../../enrich/types.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { KubeApiServer, type KubeApiServerOptions, type KubeObject } from '../../sim/kube-apiserver.ts';
import { waitFor } from '../helpers/wait.ts';
import { clusterObjects, clusterPod, podIp } from '../../sim/cluster-objects.ts';

const node = process.execPath;
const dir = mkdtempSync(join(tmpdir(), 'podflow-kube-caches-'));
const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(unhandled, [], 'no unhandled rejections');
});

let files = 0;
const fastRetry = { initialMs: 50, maxMs: 200, factor: 2 };

function pod(name: string, namespace: string, ip: string, extra: { labels?: Record<string, string>; owner?: string } = {}): KubeObject {
  return {
    metadata: {
      name,
      namespace,
      labels: extra.labels ?? {},
      ownerReferences: extra.owner ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: extra.owner, uid: `uid-${extra.owner}`, controller: true }] : [],
    },
    spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase: 'Running', podIPs: [{ ip }], podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** A started server and caches following it; both closed when the test ends. */
async function setUp(
  t: { after(fn: () => Promise<void>): void },
  serverOptions: KubeApiServerOptions = {},
  cacheOptions: KubeCachesOptions = {},
  seed: (server: KubeApiServer) => void = () => {},
): Promise<{ server: KubeApiServer; caches: KubeCaches; events: Array<[KubeResource, WatchEventType, string]> }> {
  const server = new KubeApiServer(serverOptions);
  await server.start();
  seed(server);
  const caches = new KubeCaches({ kubeconfig: server.writeKubeconfig(join(dir, `kubeconfig-${files++}`)), ...cacheOptions });
  const events: Array<[KubeResource, WatchEventType, string]> = [];
  for (const resource of ['pod', 'service', 'node', 'replicaset', 'job'] as const) {
    caches.on(resource, (type, object) => events.push([resource, type, object.name]));
  }
  t.after(async () => {
    await caches.close();
    await server.stop();
  });
  caches.start();
  return { server, caches, events };
}

function podNames(caches: KubeCaches): string[] {
  return [...caches.pods()].map((p) => `${p.namespace}/${p.name}`).sort();
}

test('lists every resource, reports synced, then follows creates, updates and deletes', async (t) => {
  const { server, caches, events } = await setUp(t, {}, {}, (s) => {
    s.create('pod', pod('web-1', 'shop', '198.18.0.11', { owner: 'web-7d9' }));
    s.create('service', { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIPs: ['198.18.100.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } });
    s.create('node', { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.2' }, { type: 'Hostname', address: 'node-a' }] } });
    s.create('replicaset', {
      metadata: { name: 'web-7d9', namespace: 'shop', uid: 'uid-web-7d9', ownerReferences: [{ kind: 'Deployment', name: 'web', uid: 'uid-web', controller: true }] },
    });
    s.create('job', { metadata: { name: 'backup-1', namespace: 'ops', uid: 'uid-backup-1', ownerReferences: [{ kind: 'CronJob', name: 'backup', uid: 'uid-cron', controller: true }] } });
  });
  await waitFor(() => caches.synced(), 5000, 'synced');
  await waitFor(() => server.watchers('job') === 1, 5000, 'the watches');
  for (const kind of ['pod', 'service', 'node', 'replicaset', 'job'] as const) assert.equal(server.watchers(kind), 1, kind);
  assert.deepEqual(podNames(caches), ['shop/web-1']);
  assert.deepEqual([...caches.services()].map((s) => s.clusterIPs), [['198.18.100.1']]);
  assert.deepEqual([...caches.nodes()].map((n) => n.addresses), [['198.18.0.2']]);
  assert.deepEqual(caches.replicaSet('uid-web-7d9')?.owner, { kind: 'Deployment', name: 'web', uid: 'uid-web' });
  assert.deepEqual(caches.job('uid-backup-1')?.owner, { kind: 'CronJob', name: 'backup', uid: 'uid-cron' });

  const seen: Array<[WatchEventType, string, string | undefined]> = [];
  caches.on('pod', (type, object, previous) => seen.push([type, object.podIPs.join(), previous?.podIPs.join()]));
  server.create('pod', pod('web-2', 'shop', '198.18.0.12'));
  server.update('pod', pod('web-1', 'shop', '198.18.0.21'));
  server.delete('pod', 'web-2', 'shop');
  server.delete('replicaset', 'web-7d9', 'shop');
  await waitFor(() => seen.length === 3 && caches.replicaSet('uid-web-7d9') === undefined, 5000, 'the changes');
  assert.deepEqual(seen, [
    ['add', '198.18.0.12', undefined],
    ['update', '198.18.0.21', '198.18.0.11'],
    ['delete', '198.18.0.12', '198.18.0.12'],
  ]);
  assert.deepEqual(podNames(caches), ['shop/web-1']);
  assert.ok(events.some(([resource, type, name]) => resource === 'replicaset' && type === 'delete' && name === 'web-7d9'));
  const status = caches.status();
  assert.equal(status.pod.objects, 1);
  assert.equal(status.pod.events, 4);
  assert.equal(status.pod.errors, 0);
});

test('keeps only the configured label keys and the fields podflow uses', async (t) => {
  const { server, caches } = await setUp(t, {}, { labelKeys: ['app.kubernetes.io/name', 'team', 'absent'] }, (s) => {
    const terminating = pod('api-0', 'shop', '198.18.0.30', { labels: { team: 'payments', 'pod-template-hash': '7d9', 'app.kubernetes.io/name': 'api' } });
    terminating.metadata.deletionTimestamp = '2026-01-02T03:04:05Z';
    s.create('pod', terminating);
    s.create('pod', { metadata: { name: 'kube-proxy', namespace: 'kube-system' }, spec: { nodeName: 'node-a', hostNetwork: true }, status: { phase: 'Running' } });
    s.create('service', { metadata: { name: 'db', namespace: 'shop' }, spec: { clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 5432 }] } });
  });
  await waitFor(() => caches.synced(), 5000, 'synced');
  const byName = new Map([...caches.pods()].map((p) => [p.name, p]));
  const expected: SlimPod = {
    uid: server.get('pod', 'api-0', 'shop')!.metadata.uid!,
    namespace: 'shop',
    name: 'api-0',
    nodeName: 'node-a',
    hostNetwork: false,
    phase: 'Running',
    podIPs: ['198.18.0.30'],
    owner: undefined,
    // Configuration order, not the object's; absent keys are skipped.
    labels: [
      ['app.kubernetes.io/name', 'api'],
      ['team', 'payments'],
    ],
    deletingSinceMs: Date.parse('2026-01-02T03:04:05Z'),
  };
  assert.deepEqual(byName.get('api-0'), expected);
  assert.equal(byName.get('kube-proxy')?.hostNetwork, true);
  assert.deepEqual(byName.get('kube-proxy')?.podIPs, []);
  assert.deepEqual([...caches.services()], [
    { uid: server.get('service', 'db', 'shop')!.metadata.uid, namespace: 'shop', name: 'db', clusterIPs: [], ports: [{ name: '', port: 5432, protocol: 'TCP' }] },
  ]);
});

test('an update that changes no slim field is not emitted', async (t) => {
  const { server, caches } = await setUp(t, {}, {}, (s) => s.create('pod', pod('a', 'ns', '198.18.0.1')));
  await waitFor(() => caches.synced(), 5000, 'synced');
  const seen: string[] = [];
  caches.on('pod', (type, object) => seen.push(`${type} ${object.phase}`));
  const changedCondition = pod('a', 'ns', '198.18.0.1');
  (changedCondition.status as { conditions: unknown[] }).conditions = [{ type: 'Ready', status: 'False' }];
  server.update('pod', changedCondition);
  server.update('pod', { ...pod('a', 'ns', '198.18.0.1'), status: { phase: 'Succeeded', podIPs: [{ ip: '198.18.0.1' }] } });
  // The watch delivers in order: once the phase change is seen, the condition change was handled before it.
  await waitFor(() => seen.includes('update Succeeded'), 5000, 'the phase change');
  assert.deepEqual(seen, ['update Succeeded']);
});

test('a listed object that is not valid JSON is skipped, counted and reported; the others of its page are cached', async (t) => {
  const { server, caches } = await setUp(t, {}, { listPageSize: 2 }, (s) => {
    for (const name of ['a', 'b', 'c']) s.create('pod', pod(name, 'shop', `198.18.0.${name.charCodeAt(0)}`));
  });
  const reported: string[] = [];
  caches.onBadObject((resource, err) => reported.push(`${resource} ${err.code} ${err.message}`));
  // Before the list: setUp's caches are started, the list is in flight. The malformed member is one podflow reads (uid).
  server.replaceText('pod', 'b', 'shop', '{"metadata":{"name":"b","namespace":"shop","uid" "x"},"spec":{}}');
  await waitFor(() => caches.synced(), 5000, 'synced');
  assert.deepEqual(podNames(caches), ['shop/a', 'shop/c']);
  assert.equal(caches.status().pod.badObjects, 1);
  assert.equal(caches.status().pod.errors, 0, 'no error stopped the informer');
  assert.equal(reported.length, 1);
  assert.match(reported[0]!, /^pod PODFLOW_ERR_KUBE_BAD_OBJECT .*pods: skipped one listed object \(expected ':', found '"'\)$/);
});

test('lists in pages of listPageSize', async (t) => {
  const { server, caches } = await setUp(t, {}, { listPageSize: 2 }, (s) => {
    for (let i = 0; i < 5; i++) s.create('pod', pod(`p${i}`, 'ns', `198.18.0.${i + 1}`));
  });
  await waitFor(() => caches.synced(), 5000, 'synced');
  assert.equal(podNames(caches).length, 5);
  const podLists = server.requests.filter((r) => r.kind === 'pod' && !r.watch);
  assert.deepEqual(podLists.map((r) => r.query.get('limit')), ['2', '2', '2']);
  // A continued page names no version or match (the server refuses a match with a continue token).
  assert.deepEqual(podLists.map((r) => r.query.get('resourceVersionMatch')), ['NotOlderThan', null, null]);
  assert.deepEqual(podLists.map((r) => r.status), [200, 200, 200]);
});

test('reads a list the server answers whole (as its watch cache does at resourceVersion=0) item by item; pods of one workload share their owner and labels', async (t) => {
  const shape = { pods: 300 };
  const { server, caches } = await setUp(t, { limitAtVersionZero: 'ignored' }, { listPageSize: 50, labelKeys: ['app', 'pod-template-hash'] }, (s) => {
    for (const [kind, object] of clusterObjects(shape)) s.create(kind, object);
  });
  await waitFor(() => caches.synced(), 10_000, 'synced');
  const podLists = server.requests.filter((r) => r.kind === 'pod' && !r.watch);
  assert.deepEqual(podLists.map((r) => [r.query.get('limit'), r.status]), [['50', 200]], 'one list, answered whole');
  const pods = [...caches.pods()];
  assert.equal(pods.length, 300);
  // Pods 1 and 2 belong to ReplicaSet 0 (sim/cluster-objects.ts): the same owner and labels, one copy.
  const [one, two] = [clusterPod(shape, 1), clusterPod(shape, 2)].map((p) => pods.find((c) => c.name === p.metadata.name)!);
  assert.deepEqual(one!.labels, [['app', 'svc-0'], ['pod-template-hash', one!.owner!.name.slice(-9)]]);
  assert.equal(one!.labels, two!.labels);
  assert.equal(one!.owner, two!.owner);
  assert.deepEqual(one!.podIPs, [podIp(1)]);
  assert.equal(caches.replicaSet(one!.owner!.uid)?.owner?.kind, 'Deployment');
});

const RESOURCES = ['pod', 'service', 'node', 'replicaset', 'job'] as const;

/**
 * The API server goes away for awayMs, with a create, an update and a delete
 * made meanwhile. The time is the caches' clock, a FakeClock: every restart
 * and reconnect delay runs on it, and their schedule is pinned by the
 * backoff test below, so no real time need pass. The clock moves to the next
 * timer only when every informer waits on one (or watches): none is in a
 * request then. Returns how long after the server's return, on that clock,
 * the caches had converged.
 */
async function outage(t: { after(fn: () => Promise<void>): void }, awayMs: number): Promise<{ convergedMs: number; caches: KubeCaches }> {
  const clock = new FakeClock();
  const { server, caches } = await setUp(t, {}, { clock }, (s) => {
    s.create('pod', pod('stays', 'ns', '198.18.0.1'));
    s.create('pod', pod('changes', 'ns', '198.18.0.2'));
    s.create('pod', pod('goes', 'ns', '198.18.0.3'));
  });
  await waitFor(() => caches.synced(), 5000, 'synced');
  const deleted: string[] = [];
  caches.on('pod', (type, object) => type === 'delete' && deleted.push(object.name));
  const watching = () => RESOURCES.reduce((n, r) => n + server.watchers(r), 0);
  const idle = () => clock.pending().length + watching() === RESOURCES.length;
  const untilIdle = () => waitFor(idle, 5000, () => `every informer waiting on the clock or watching: ${clock.pending().length} timers, ${watching()} watches`);
  await server.stop();
  server.create('pod', pod('new', 'ns', '198.18.0.4'));
  server.update('pod', pod('changes', 'ns', '198.18.0.20'));
  server.delete('pod', 'goes', 'ns');
  let now = 0;
  for (;;) {
    await untilIdle();
    const next = clock.pending()[0]!;
    if (now + next >= awayMs) break;
    clock.advance(next);
    now += next;
  }
  // No timer falls due before awayMs: nothing sees the server return earlier.
  await server.start();
  clock.advance(awayMs - now);
  const converged = () => {
    const ips = new Map([...caches.pods()].map((p) => [p.name, p.podIPs.join()]));
    return ips.size === 3 && ips.get('new') === '198.18.0.4' && ips.get('changes') === '198.18.0.20' && !ips.has('goes');
  };
  // Time moves on only while the pod informer waits on the clock: once it
  // watches again, the changes are on their way to it.
  let convergedMs = 0;
  for (;;) {
    await waitFor(() => converged() || (idle() && server.watchers('pod') === 0), 5000,
      () => `the caches to converge or the pod informer to wait on the clock: ${clock.pending().length} timers, ${watching()} watches`);
    if (converged()) break;
    const next = clock.pending()[0]!;
    clock.advance(next);
    convergedMs += next;
  }
  assert.deepEqual(deleted, ['goes']);
  const status = caches.status().pod;
  assert.ok(status.errors >= 1, 'the lost connection is counted');
  assert.match(status.lastError ?? '', /^cannot reach the Kubernetes API server: pods: /);
  // 1 s, then ×1.5: a few restarts, not a hot loop.
  assert.ok(status.restarts >= 1 && status.restarts <= 8, `restarts: ${status.restarts}`);
  return { convergedMs, caches };
}

for (const awayMs of [2500, 10_000]) {
  test(`converges within 5 s after the API server was away for ${awayMs / 1000} s, seeing what changed meanwhile`, async (t) => {
    const { convergedMs } = await outage(t, awayMs);
    t.diagnostic(`converged ${convergedMs} ms after the server returned (on the caches' clock)`);
    assert.ok(convergedMs <= 5000, `converged ${convergedMs} ms after the server returned`);
  });
}

for (const goneAs of ['event', 'http'] as const) {
  test(`relists after 410 Gone (sent as ${goneAs === 'event' ? 'an ERROR event' : 'HTTP 410'}) and fires deletes for what vanished`, async (t) => {
    const { server, caches } = await setUp(t, { goneAs }, { restartBackoff: fastRetry }, (s) => {
      s.create('pod', pod('stays', 'ns', '198.18.0.1'));
      s.create('pod', pod('goes', 'ns', '198.18.0.2'));
    });
    await waitFor(() => caches.synced(), 5000, 'synced');
    const seen: string[] = [];
    caches.on('pod', (type, object) => seen.push(`${type} ${object.name}`));
    await server.stop();
    server.delete('pod', 'goes', 'ns');
    server.create('pod', pod('new', 'ns', '198.18.0.3'));
    server.compact();
    await server.start();
    await waitFor(() => caches.status().pod.relists === 1 && podNames(caches).join() === 'ns/new,ns/stays', 5000, 'the relist');
    assert.deepEqual(seen.sort(), ['add new', 'delete goes']);
    // ListWatch handles both forms itself: a relist, not an error.
    assert.equal(server.requests.filter((r) => r.kind === 'pod' && r.status === 410).length, goneAs === 'http' ? 1 : 0);
    // 410 as a status, not as part of a port number in a connection error ("127.0.0.1:41085").
    assert.doesNotMatch(caches.status().pod.lastError ?? '', /\b410\b/);
  });
}

test('lists as client-go does: first from the watch cache (resourceVersion=0), after 410 Gone at the last version seen, unpaginated, both not older than their version', async (t) => {
  const { server, caches } = await setUp(t, {}, { restartBackoff: fastRetry }, (s) => s.create('pod', pod('stays', 'ns', '198.18.0.1')));
  await waitFor(() => caches.synced(), 5000, 'synced');
  const podLists = () => server.requests.filter((r) => r.kind === 'pod' && !r.watch);
  assert.deepEqual(podLists().map((r) => [r.query.get('resourceVersion'), r.query.get('resourceVersionMatch'), r.query.get('limit')]), [['0', 'NotOlderThan', '500']]);
  server.create('pod', pod('seen', 'ns', '198.18.0.2'));
  await waitFor(() => podNames(caches).includes('ns/seen'), 5000, 'the add');
  const seenAt = server.resourceVersion;
  await server.stop();
  server.create('pod', pod('new', 'ns', '198.18.0.3'));
  server.compact();
  await server.start();
  await waitFor(() => caches.status().pod.relists === 1 && podNames(caches).includes('ns/new'), 5000, 'the relist');
  const relist = podLists()[1]!;
  // The last version the pod watch saw (an event or a bookmark): not older than the add it saw.
  assert.ok(Number(relist.query.get('resourceVersion')) >= seenAt, `relist at ${relist.query.get('resourceVersion')}, the add was at ${seenAt}`);
  assert.equal(relist.query.get('limit'), null, 'a relist at a version is not paginated (it would be an exact read from etcd)');
  assert.equal(relist.query.get('resourceVersionMatch'), 'NotOlderThan');
  assert.equal(relist.status, 200);
  assert.equal(podLists().length, 2);
});

test('after the API server is restored from an older backup, the relist falls back to a consistent list and the caches follow it', async (t) => {
  const { server, caches } = await setUp(t, {}, { restartBackoff: fastRetry }, (s) => {
    s.create('pod', pod('a', 'ns', '198.18.0.1'));
    s.create('pod', pod('b', 'ns', '198.18.0.2'));
  });
  await waitFor(() => caches.synced(), 5000, 'synced');
  const backup = server.backup();
  server.create('pod', pod('c', 'ns', '198.18.0.3'));
  server.delete('pod', 'a', 'ns');
  await waitFor(() => podNames(caches).join() === 'ns/b,ns/c', 5000, 'the changes after the backup');
  server.restore(backup);
  await waitFor(() => podNames(caches).join() === 'ns/a,ns/b', 5000, 'the caches at the restored state');
  const lists = server.requests.filter((r) => r.kind === 'pod' && !r.watch).slice(1);
  // At the last version seen, which the restored server has not reached; then a consistent list, in pages.
  assert.deepEqual(lists.map((r) => [r.status, r.query.has('resourceVersion') ? 'at a version' : 'consistent', r.query.get('resourceVersionMatch'), r.query.get('limit')]), [
    [504, 'at a version', 'NotOlderThan', null],
    [200, 'consistent', null, '500'],
  ]);
  assert.equal(caches.status().pod.relists, 1);
});

test('an object recreated under the same name while away is a delete and an add', async (t) => {
  const { server, caches } = await setUp(t, {}, { restartBackoff: fastRetry }, (s) => s.create('pod', pod('db-0', 'ns', '198.18.0.1')));
  await waitFor(() => caches.synced(), 5000, 'synced');
  const oldUid = [...caches.pods()][0]!.uid;
  const seen: string[] = [];
  caches.on('pod', (type, object) => seen.push(`${type} ${object.uid === oldUid ? 'old' : 'new'}`));
  await server.stop();
  server.delete('pod', 'db-0', 'ns');
  server.create('pod', pod('db-0', 'ns', '198.18.0.9'));
  server.compact();
  await server.start();
  await waitFor(() => seen.length === 2, 5000, 'the replacement');
  assert.deepEqual(seen, ['delete old', 'add new']);
  assert.deepEqual([...caches.pods()].map((p) => p.podIPs), [['198.18.0.9']]);
});

test('a missing kubeconfig file is a PODFLOW_ERR_KUBE_CONFIG naming the file', () => {
  const file = join(dir, 'does-not-exist.yaml');
  assert.throws(() => new KubeCaches({ kubeconfig: file }), (err: unknown) => {
    assert.ok(err instanceof PodflowError);
    assert.equal(err.code, 'PODFLOW_ERR_KUBE_CONFIG');
    assert.equal(err.message, `cannot use the Kubernetes client configuration: kubeconfig ${file}: cannot read it (no such file)`);
    return true;
  });
});

test('a malformed kubeconfig is a PODFLOW_ERR_KUBE_CONFIG naming the file and the problem', () => {
  const cases: Array<[string, RegExp]> = [
    ['clusters: [unclosed\n', /: not a valid kubeconfig \(/],
    ['', /: the file is empty$/],
    ['apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n', /: no current-context$/],
    [
      'current-context: c\ncontexts: [{name: c, context: {cluster: gone, user: u}}]\nclusters: []\nusers: [{name: u, user: {token: t}}]\n',
      /: context "c" names cluster "gone", which is not among its clusters$/,
    ],
    [
      'current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: "http://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\n',
      /uses plain http \(http:\/\/127\.0\.0\.1:1\); client-node refuses that without insecure-skip-tls-verify$/,
    ],
    [
      'current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:1", certificate-authority: /nonexistent/ca.crt}}]\nusers: [{name: u, user: {token: t}}]\n',
      /cannot read its certificate-authority \/nonexistent\/ca\.crt \(ENOENT\)$/,
    ],
  ];
  for (const [i, [text, problem]] of cases.entries()) {
    const file = join(dir, `broken-${i}.yaml`);
    writeFileSync(file, text);
    assert.throws(() => new KubeCaches({ kubeconfig: file }), (err: unknown) => {
      assert.ok(err instanceof PodflowError, String(err));
      assert.equal(err.code, 'PODFLOW_ERR_KUBE_CONFIG');
      assert.ok(err.message.includes(`kubeconfig ${file}: `), err.message);
      assert.match(err.message, problem);
      return true;
    });
  }
});

test('without a kubeconfig outside a cluster the error says so', () => {
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  delete process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_PORT;
  try {
    assert.throws(() => new KubeCaches(), /not in a cluster \(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset\)/);
  } finally {
    if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host;
    if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port;
  }
});

test('a wrong token is reported as unauthorized (401) for every resource, counted and retried, never thrown', async (t) => {
  const server = new KubeApiServer();
  await server.start();
  const caches = new KubeCaches({ kubeconfig: server.writeKubeconfig(join(dir, 'wrong-token'), { token: 'wrong' }), restartBackoff: fastRetry });
  const reported: string[] = [];
  caches.onError((resource, err) => reported.push(`${resource} ${err.code}`));
  t.after(async () => {
    await caches.close();
    await server.stop();
  });
  caches.start();
  await waitFor(() => Object.values(caches.status()).every((s) => s.errors >= 3), 5000, 'three failed attempts each');
  for (const [resource, status] of Object.entries(caches.status())) {
    assert.equal(status.synced, false, resource);
    assert.ok(status.restarts >= 2, resource);
    assert.match(status.lastError ?? '', /: unauthorized \(401\): the API server rejected the credentials; check the token/, resource);
  }
  assert.equal(caches.status().pod.lastError?.split(': ').slice(1, 2).join(), 'pods');
  assert.ok(reported.includes('pod PODFLOW_ERR_KUBE_UNAUTHORIZED'));
  assert.equal(caches.synced(), false);
});

test('RBAC forbidden is reported as forbidden (403) for that resource; the others sync, and it recovers once allowed', async (t) => {
  const { server, caches } = await setUp(t, {}, { restartBackoff: fastRetry }, (s) => {
    s.forbid('pod');
    s.create('pod', pod('a', 'ns', '198.18.0.1'));
  });
  await waitFor(() => caches.status().pod.errors >= 2 && caches.status().node.synced, 5000, 'the 403s');
  assert.equal(caches.synced(), false);
  assert.equal(
    caches.status().pod.lastError,
    'the Kubernetes API server forbids the request (RBAC): pods: forbidden (403): the service account may not list or watch pods; check the ClusterRole ' +
      '(the server says: pods is forbidden: User "system:serviceaccount:podflow:podflow" cannot list resource "pods" in API group "" at the cluster scope)',
  );
  for (const resource of ['service', 'node', 'replicaset', 'job'] as const) assert.equal(caches.status()[resource].errors, 0);
  server.forbid('pod', false);
  await waitFor(() => caches.synced(), 5000, 'synced once allowed');
  assert.deepEqual(podNames(caches), ['ns/a']);
});

test('restarts after an error wait 1 s growing ×1.5 to 30 s on the clock, never sooner', async (t) => {
  const server = new KubeApiServer();
  await server.start();
  const kubeconfig = server.writeKubeconfig(join(dir, 'backoff'));
  server.forbid('node');
  const clock = new FakeClock();
  const caches = new KubeCaches({ kubeconfig, clock });
  t.after(async () => {
    await caches.close();
    await server.stop();
  });
  caches.start();
  const nodeLists = () => server.requests.filter((r) => r.kind === 'node').length;
  const delays: number[] = [];
  for (let attempt = 1; attempt <= 11; attempt++) {
    await waitFor(() => caches.status().node.errors === attempt, 5000, `error ${attempt}`);
    // One request per attempt, however long the last one took: only the clock restarts.
    assert.equal(nodeLists(), attempt);
    const pending = clock.pending();
    const delay = pending[pending.length - 1]!;
    delays.push(delay);
    // Never sooner: 1 ms short of its delay the restart has not happened, at its delay it has.
    clock.advance(delay - 1);
    assert.equal(caches.status().node.restarts, attempt - 1);
    clock.advance(1);
    assert.equal(caches.status().node.restarts, attempt);
  }
  assert.deepEqual(delays, [1000, 1500, 2250, 3375, 5062.5, 7593.75, 11390.625, 17085.9375, 25628.90625, 30000, 30000]);
  assert.equal(caches.status().node.restarts, 11);
});

test('close() leaves nothing open: a process using the caches exits by itself', () => {
  const script = join(dir, 'exits.ts');
  writeFileSync(
    script,
    `import { KubeApiServer } from ${JSON.stringify(new URL('../../sim/kube-apiserver.ts', import.meta.url).href)};
import { KubeCaches } from ${JSON.stringify(new URL('../../enrich/kube-caches.ts', import.meta.url).href)};
const server = new KubeApiServer();
await server.start();
server.create('pod', { metadata: { name: 'a', namespace: 'ns' } });
const caches = new KubeCaches({ kubeconfig: server.writeKubeconfig(${JSON.stringify(join(dir, 'exits-kubeconfig'))}) });
caches.start();
while (!caches.synced()) await new Promise((r) => setTimeout(r, 10));
// Close while watches are open and one informer is in its restart delay.
server.forbid('job');
await server.stop();
await server.start();
const open = (kind) => server.watchers(kind) === 1;
while (caches.status().job.errors === 0 || !['pod', 'service', 'node', 'replicaset'].every(open)) await new Promise((r) => setTimeout(r, 10));
await caches.close();
await caches.close();
await server.stop();
console.log('closed', [...caches.pods()].length);
`,
  );
  const started = Date.now();
  const child = spawnSync(node, [script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.signal, null, `the process did not exit by itself: ${child.stderr}`);
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), 'closed 1');
  assert.ok(Date.now() - started < 8000, `exit took ${Date.now() - started} ms`);
});

test('start() after close() throws PODFLOW_ERR_KUBE_CLOSED', async () => {
  const server = new KubeApiServer({ tls: false });
  const caches = new KubeCaches({ kubeconfig: server.writeKubeconfig(join(dir, 'closed')) });
  await caches.close();
  assert.throws(() => caches.start(), { code: 'PODFLOW_ERR_KUBE_CLOSED' });
});
