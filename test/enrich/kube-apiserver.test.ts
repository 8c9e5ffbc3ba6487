import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { clusterObjects, clusterPod } from '../../sim/cluster-objects.ts';
import { waitFor } from '../helpers/wait.ts';

interface Reply {
  status: number;
  lines: Array<{ type?: string; object?: { metadata?: { name?: string; resourceVersion?: string }; code?: number }; [k: string]: unknown }>;
}

/** GETs a path and reads the whole body (a watch ends by its timeoutSeconds); JSON per line. */
function request(server: KubeApiServer, path: string, token = server.token): Promise<Reply> {
  const get = server.ca ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    get(`${server.url}${path}`, { headers: { authorization: `Bearer ${token}` }, ca: server.ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, lines: body.split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
    }).on('error', reject);
  });
}

test('answers 401 with a Status to a wrong token and 403 to a forbidden resource, over HTTPS with its CA', async (t) => {
  const server = new KubeApiServer();
  await server.start();
  t.after(() => server.stop());
  assert.deepEqual((await request(server, '/api/v1/pods', 'wrong')).lines[0], {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401,
  });
  server.forbid('service');
  const forbidden = await request(server, '/api/v1/namespaces/shop/services');
  assert.equal(forbidden.status, 403);
  assert.match(String(forbidden.lines[0]!.message), /cannot list resource "services" in API group "" in the namespace "shop"/);
  assert.equal((await request(server, '/apis/batch/v1/jobs')).status, 200);
});

test('lists with the current resourceVersion and watches from a version with the changes after it, bookmarks and a timeout', async (t) => {
  const server = new KubeApiServer({ tls: false, bookmarkIntervalMs: 400 });
  await server.start();
  t.after(() => server.stop());
  server.create('pod', { metadata: { name: 'a', namespace: 'x' } });
  server.create('pod', { metadata: { name: 'b', namespace: 'y' } });
  server.create('node', { metadata: { name: 'n' } });
  const list = await request(server, '/api/v1/namespaces/x/pods');
  const listed = list.lines[0] as { kind: string; metadata: { resourceVersion: string }; items: Array<{ metadata: { name: string } }> };
  assert.equal(listed.kind, 'PodList');
  assert.equal(listed.metadata.resourceVersion, String(server.resourceVersion));
  assert.deepEqual(listed.items.map((i) => i.metadata.name), ['a']);
  const from = listed.metadata.resourceVersion;
  server.update('pod', { metadata: { name: 'a', namespace: 'x', labels: { v: '2' } } });
  server.delete('pod', 'b', 'y');
  server.create('pod', { metadata: { name: 'c', namespace: 'x' } });
  server.delete('pod', 'a', 'x');
  const started = Date.now();
  const watch = await request(server, `/api/v1/pods?watch=true&resourceVersion=${from}&allowWatchBookmarks=true&timeoutSeconds=1`);
  assert.ok(Date.now() - started >= 1000, 'the stream lasts timeoutSeconds');
  const changes = watch.lines.filter((l) => l.type !== 'BOOKMARK').map((l) => `${l.type} ${l.object?.metadata?.name}`);
  assert.deepEqual(changes, ['MODIFIED a', 'DELETED b', 'ADDED c', 'DELETED a']);
  const versions = watch.lines.filter((l) => l.type !== 'BOOKMARK').map((l) => Number(l.object?.metadata?.resourceVersion));
  assert.deepEqual(versions, [...versions].sort((p, q) => p - q), 'versions increase');
  const bookmarks = watch.lines.filter((l) => l.type === 'BOOKMARK');
  assert.ok(bookmarks.length >= 2, 'periodic and final bookmarks');
  assert.equal(bookmarks.at(-1)!.object?.metadata?.resourceVersion, String(server.resourceVersion));
});

test('refuses a watch from before the retained window with 410 Gone, as an ERROR event or an HTTP 410', async (t) => {
  for (const goneAs of ['event', 'http'] as const) {
    const server = new KubeApiServer({ tls: false, eventWindow: 2, goneAs });
    await server.start();
    t.after(() => server.stop());
    server.create('node', { metadata: { name: 'n1' } });
    const old = server.resourceVersion;
    for (let i = 2; i <= 4; i++) server.create('node', { metadata: { name: `n${i}` } });
    const gone = await request(server, `/api/v1/nodes?watch=true&resourceVersion=${old}`);
    if (goneAs === 'http') assert.equal(gone.status, 410);
    else assert.deepEqual([gone.status, gone.lines[0]!.type, gone.lines[0]!.object?.code], [200, 'ERROR', 410]);
    const recent = await request(server, `/api/v1/nodes?watch=true&resourceVersion=${server.resourceVersion - 1}&timeoutSeconds=1`);
    assert.deepEqual(recent.lines.map((l) => l.object?.metadata?.name), ['n4']);
  }
});

test('keeps the window per resource, as the watch cache does: changes of pods do not expire a quiet resource\'s version', async (t) => {
  const server = new KubeApiServer({ tls: false, eventWindow: 2 });
  await server.start();
  t.after(() => server.stop());
  server.create('node', { metadata: { name: 'n1' } });
  const quiet = server.resourceVersion;
  for (let i = 0; i < 5; i++) server.create('pod', { metadata: { name: `p${i}`, namespace: 'ns' } });
  server.create('node', { metadata: { name: 'n2' } });
  const nodes = await request(server, `/api/v1/nodes?watch=true&resourceVersion=${quiet}&timeoutSeconds=1`);
  assert.deepEqual(nodes.lines.map((l) => `${l.type} ${l.object?.metadata?.name}`), ['ADDED n2']);
  const pods = await request(server, `/api/v1/pods?watch=true&resourceVersion=${quiet}`);
  assert.deepEqual([pods.lines[0]!.type, pods.lines[0]!.object?.code], ['ERROR', 410], 'the pods\' window has moved past it');
});

test('keeps its state and port across stop() and start()', async (t) => {
  const server = new KubeApiServer({ tls: false });
  await server.start();
  t.after(() => server.stop());
  const url = server.url;
  server.create('job', { metadata: { name: 'j', namespace: 'ops' } });
  await server.stop();
  await assert.rejects(request(server, '/apis/batch/v1/jobs'), { code: 'ECONNREFUSED' });
  server.delete('job', 'j', 'ops');
  await server.start();
  assert.equal(server.url, url);
  const list = await request(server, '/apis/batch/v1/jobs');
  assert.deepEqual((list.lines[0] as { items: unknown[] }).items, []);
});

test('lists at a resourceVersion as kube-apiserver does: any, not older than N, exactly N when paginated, too large refused', async (t) => {
  const server = new KubeApiServer({ tls: false });
  await server.start();
  t.after(() => server.stop());
  server.create('node', { metadata: { name: 'n1' } });
  const old = server.resourceVersion;
  server.create('node', { metadata: { name: 'n2' } });
  const names = (reply: Reply) => (reply.lines[0] as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name);
  assert.deepEqual(names(await request(server, '/api/v1/nodes?resourceVersion=0')), ['n1', 'n2']);
  assert.deepEqual(names(await request(server, `/api/v1/nodes?resourceVersion=${old}`)), ['n1', 'n2'], 'not older than N: the current state');
  assert.equal((await request(server, `/api/v1/nodes?resourceVersion=${old}&limit=1`)).status, 410, 'exactly N: gone');
  const tooLarge = await request(server, `/api/v1/nodes?resourceVersion=${server.resourceVersion + 5}`);
  assert.equal(tooLarge.status, 504);
  assert.match(String(tooLarge.lines[0]!.message), /Too large resource version/);
  // A backup restored: back to n1 at its version; a watch from after it is gone.
  const backup = server.backup();
  server.create('node', { metadata: { name: 'n3' } });
  const later = server.resourceVersion;
  server.restore(backup);
  assert.deepEqual(names(await request(server, '/api/v1/nodes')), ['n1', 'n2']);
  assert.equal(server.resourceVersion, backup.resourceVersion);
  const gone = await request(server, `/api/v1/nodes?watch=true&resourceVersion=${later}`);
  assert.deepEqual([gone.lines[0]!.type, gone.lines[0]!.object?.code], ['ERROR', 410]);
});

test('a list at resourceVersion=0 ignores limit when told to, as the watch cache does, and streams a list larger than the socket buffer whole', async (t) => {
  const server = new KubeApiServer({ tls: false, limitAtVersionZero: 'ignored' });
  await server.start();
  t.after(() => server.stop());
  const shape = { pods: 500 };
  for (const [kind, object] of clusterObjects(shape)) server.create(kind, object);
  assert.equal(server.count('pod'), 500);
  const whole = await request(server, '/api/v1/pods?resourceVersion=0&limit=100');
  const listed = whole.lines[0] as { metadata: { continue?: string }; items: Array<{ metadata: { name: string } }> };
  assert.equal(listed.items.length, 500, 'every pod, in one answer');
  assert.equal(listed.metadata.continue, undefined);
  assert.deepEqual(listed.items.at(-1), server.get('pod', clusterPod(shape, 499).metadata.name, clusterPod(shape, 499).metadata.namespace));
  const paged = await request(server, '/api/v1/pods?limit=100');
  assert.equal((paged.lines[0] as { items: unknown[] }).items.length, 100, 'a consistent list is paginated');
});

test('endWatches() ends every watch stream; the client resumes from its version', async (t) => {
  const server = new KubeApiServer({ tls: false });
  await server.start();
  t.after(() => server.stop());
  server.create('node', { metadata: { name: 'n1' } });
  const watch = request(server, `/api/v1/nodes?watch=true&resourceVersion=0`);
  await waitFor(() => server.watchers('node') === 1, 10_000, 'the watch is open');
  server.endWatches();
  assert.deepEqual((await watch).lines.map((l) => [l.type, l.object?.metadata?.name]), [['ADDED', 'n1']]);
  assert.equal(server.watchers('node'), 0);
});

test('honours resourceVersionMatch as kube-apiserver does: NotOlderThan paginated is the current state, Exact an exact read; misuse is 422', async (t) => {
  const server = new KubeApiServer({ tls: false });
  await server.start();
  t.after(() => server.stop());
  server.create('node', { metadata: { name: 'n1' } });
  const old = server.resourceVersion;
  server.create('node', { metadata: { name: 'n2' } });
  const listed = (reply: Reply) => reply.lines[0] as { metadata: { resourceVersion: string; continue?: string }; items: Array<{ metadata: { name: string } }> };
  const notOlder = await request(server, `/api/v1/nodes?resourceVersion=${old}&resourceVersionMatch=NotOlderThan&limit=1`);
  assert.equal(notOlder.status, 200);
  assert.deepEqual(listed(notOlder).items.map((i) => i.metadata.name), ['n1']);
  assert.equal(listed(notOlder).metadata.resourceVersion, String(server.resourceVersion), 'the current state, not the one at N');
  const next = await request(server, `/api/v1/nodes?limit=1&continue=${encodeURIComponent(listed(notOlder).metadata.continue!)}`);
  assert.deepEqual(listed(next).items.map((i) => i.metadata.name), ['n2']);
  assert.equal((await request(server, `/api/v1/nodes?resourceVersion=0&resourceVersionMatch=NotOlderThan&limit=1`)).status, 200);
  assert.equal((await request(server, `/api/v1/nodes?resourceVersion=${old}&resourceVersionMatch=Exact`)).status, 410, 'exactly N, unpaginated: gone');
  assert.deepEqual(listed(await request(server, `/api/v1/nodes?resourceVersion=${server.resourceVersion}&resourceVersionMatch=Exact`)).items.length, 2);
  assert.equal((await request(server, `/api/v1/nodes?resourceVersion=${server.resourceVersion + 1}&resourceVersionMatch=NotOlderThan`)).status, 504);
  for (const [query, problem] of [
    ['resourceVersionMatch=NotOlderThan', /forbidden unless resourceVersion is provided/],
    ['resourceVersion=0&resourceVersionMatch=Exact', /"exact" is forbidden for resourceVersion "0"/],
    [`resourceVersionMatch=NotOlderThan&limit=1&continue=${encodeURIComponent(listed(notOlder).metadata.continue!)}`, /forbidden when continue is provided/],
    ['resourceVersion=1&resourceVersionMatch=Newest', /Unsupported value: "Newest"/],
  ] as const) {
    const refused = await request(server, `/api/v1/nodes?${query}`);
    assert.equal(refused.status, 422, query);
    assert.match(String(refused.lines[0]!.message), problem);
  }
});
