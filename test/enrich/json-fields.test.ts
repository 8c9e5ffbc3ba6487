import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keptFields, keptFieldsAt, type FieldTree } from '../../enrich/json-fields.ts';
import { clusterNode, clusterPod, clusterReplicaSet, clusterService } from '../../sim/cluster-objects.ts';
import { nodeFields, ownerLinkFields, podFields, serviceFields } from '../../enrich/kube-slim.ts';

/** What keptFields must give: the parsed object with only the kept members, computed plainly on the parsed value. */
function keptOf(value: unknown, tree: FieldTree): unknown {
  const result: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(value as Record<string, unknown>)) {
    if (!Object.hasOwn(tree, name)) continue;
    const kept = tree[name]!;
    if (kept === true) result[name] = member;
    else if (typeof member === 'object' && member !== null && !Array.isArray(member)) result[name] = keptOf(member, kept);
  }
  return result;
}

const tree: FieldTree = { metadata: { name: true, labels: { app: true } }, spec: { nodeName: true }, status: true };
const tricky: unknown[] = [
  { metadata: { name: 'a', annotations: { 'x/y': '{"not":["an",{"item"}]', quote: 'say \\"metadata\\": {' }, labels: { app: 'v\\\\"}', other: '}' } } },
  { spec: { containers: [{ name: 'c', args: ['"', '\\', '{', ']'] }], nodeName: 'ü-∂-😀' }, metadata: { name: 'b', labels: null } },
  { metadata: 'not an object', spec: [1, 2], status: { podIPs: [{ ip: '198.18.0.1' }], n: -1.5e3, ok: true, none: null } },
  { constructor: 1, toString: { a: 1 }, metadata: { name: '' } },
  {},
];

test('keeps exactly the kept members, whatever the others hold', () => {
  for (const value of tricky) {
    for (const text of [JSON.stringify(value), JSON.stringify(value, null, 2)]) {
      assert.deepEqual(JSON.parse(keptFields(Buffer.from(text), tree)), keptOf(value, tree), text);
    }
  }
});

test("the trees podflow reads keep what its slimmers read of the sim's realistic objects, and little else", () => {
  const shape = { pods: 100 };
  const cases: Array<[unknown, FieldTree]> = [
    [clusterPod(shape, 7), podFields(['app', 'app.kubernetes.io/name'])],
    [clusterService(shape, 3), serviceFields],
    [clusterNode(2), nodeFields],
    [clusterReplicaSet(shape, 4), ownerLinkFields],
  ];
  for (const [object, fields] of cases) {
    const whole = JSON.stringify(object);
    const text = keptFields(Buffer.from(whole), fields);
    assert.deepEqual(JSON.parse(text), keptOf(object, fields));
  }
  const pod = JSON.stringify(clusterPod(shape, 7));
  const kept = keptFields(Buffer.from(pod), podFields(['app']));
  assert.ok(kept.length * 8 < pod.length, `a pod's kept part (${kept.length} B) is a small share of it (${pod.length} B)`);
});

test('an object cut anywhere is incomplete (undefined), never a wrong result; what follows a complete one is left alone', () => {
  for (const value of tricky) {
    const text = JSON.stringify(value);
    const bytes = Buffer.from(`${text},{"next":1}`);
    const whole = Buffer.byteLength(text);
    for (let cut = 1; cut < whole; cut++) assert.equal(keptFieldsAt(bytes.subarray(0, cut), 0, tree), undefined, `${text} cut at ${cut}`);
    assert.deepEqual(keptFieldsAt(bytes, 0, tree), { text: keptFields(Buffer.from(text), tree), end: whole });
  }
  // A number at the very end may go on in the next chunk.
  assert.equal(keptFieldsAt(Buffer.from('{"status":12'), 0, tree), undefined);
});

test('bytes that are not an object are a SyntaxError', () => {
  for (const bad of ['[1]', '{"a" 1}', '{"a":1 "b":2}', '{a:1}', '{"a":}', '{"status":1}x', '{"metadata":{"name":"a"}', '"s"']) {
    assert.throws(() => keptFields(Buffer.from(bad), tree), SyntaxError, bad);
  }
});
