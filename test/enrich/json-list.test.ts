import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonListSplitter } from '../../enrich/json-list.ts';

/** Feeds text to a splitter in chunks of the given sizes (cycled); returns the parsed items and the rest. */
function split(text: string, sizes: number[]): { items: unknown[]; rest: Record<string, unknown> } {
  const items: unknown[] = [];
  const splitter = new JsonListSplitter({ onItem: (json) => items.push(JSON.parse(json)), onBadItem: (err) => assert.fail(err) });
  const bytes = Buffer.from(text, 'utf8');
  for (let at = 0, n = 0; at < bytes.length; n++) {
    const size = sizes[n % sizes.length]!;
    splitter.push(bytes.subarray(at, at + size));
    at += size;
  }
  assert.equal(splitter.items, items.length);
  return { items, rest: splitter.end() };
}

const tricky = [
  { metadata: { name: 'a', annotations: { 'x/y': '{"not":["an",{"item"}]', quote: 'say \\"items\\": [' } } },
  { metadata: { name: 'ü-∂-😀', labels: { 'k\\\\': 'v\\\\"}' } }, spec: { items: [{ nested: [[], {}] }] } },
  { metadata: { name: 'c' }, status: { podIPs: [{ ip: '198.18.0.1' }, { ip: 'fd00::1' }] } },
];

test('splits a list into its items and the list without them, at every chunk boundary', () => {
  const list = { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '42', continue: 'tok{"' }, items: tricky };
  const text = JSON.stringify(list, null, 1);
  const whole = { ...list, items: [] };
  for (const sizes of [[text.length], [1], [2, 3, 5, 7], [64], [1, 1000]]) {
    const { items, rest } = split(text, sizes);
    assert.deepEqual(items, tricky, `chunks of ${sizes}`);
    assert.deepEqual(rest, whole, `chunks of ${sizes}`);
  }
});

test('reads the list members in any order, and a list without items', () => {
  const text = `{"items":[{"a":1}, {"b":[2]}],"metadata":{"resourceVersion":"7"},"kind":"NodeList"}`;
  for (const sizes of [[1], [3], [text.length]]) {
    assert.deepEqual(split(text, sizes), { items: [{ a: 1 }, { b: [2] }], rest: { items: [], metadata: { resourceVersion: '7' }, kind: 'NodeList' } });
  }
  assert.deepEqual(split('{"kind":"PodList","items":[]}', [1]), { items: [], rest: { kind: 'PodList', items: [] } });
  assert.deepEqual(split('{"kind":"PodList","metadata":{"items":[{"x":1}]}}', [2]), { items: [], rest: { kind: 'PodList', metadata: { items: [{ x: 1 }] } } });
});

test('a list cut short or malformed is a SyntaxError at its end, never a wrong result', () => {
  const full = JSON.stringify({ kind: 'PodList', metadata: {}, items: tricky });
  for (const cut of [10, full.indexOf('"items"') + 12, full.length - 2]) {
    const splitter = new JsonListSplitter({ onItem: () => {}, onBadItem: () => {} });
    splitter.push(Buffer.from(full.slice(0, cut)));
    assert.throws(() => splitter.end(), SyntaxError, `cut at ${cut}`);
  }
  const notObject = new JsonListSplitter({ onItem: () => {}, onBadItem: () => {} });
  notObject.push(Buffer.from('[1,2]'));
  assert.throws(() => notObject.end(), /not a JSON object/);
});

test('with the members to keep, each item is its kept members, at every chunk boundary', () => {
  const keep = { metadata: { name: true }, status: true } as const;
  const text = JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '9' }, items: tricky });
  const expected = tricky.map((item) => ({ metadata: { name: item.metadata.name }, ...('status' in item ? { status: item.status } : {}) }));
  for (const sizes of [[text.length], [1], [2, 3, 5, 7], [64], [1, 1000]]) {
    const items: unknown[] = [];
    const splitter = new JsonListSplitter({ keep, onItem: (json) => items.push(JSON.parse(json)), onBadItem: (err) => assert.fail(err) });
    const bytes = Buffer.from(text);
    for (let at = 0, n = 0; at < bytes.length; n++) {
      splitter.push(bytes.subarray(at, at + sizes[n % sizes.length]!));
      at += sizes[n % sizes.length]!;
    }
    assert.deepEqual(items, expected, `chunks of ${sizes}`);
    assert.deepEqual(splitter.end(), { kind: 'PodList', metadata: { resourceVersion: '9' }, items: [] });
  }
});

test('with the members to keep, an item longer than what is carried to the next chunk is read all the same', () => {
  const keep = { metadata: { name: true } } as const;
  const long = { metadata: { name: 'long', annotations: { big: 'x'.repeat(600 * 1024) } } };
  const text = JSON.stringify({ kind: 'PodList', items: [{ metadata: { name: 'a' } }, long, { metadata: { name: 'b' } }] });
  for (const size of [64 * 1024, 16 * 1024 + 3]) {
    const items: unknown[] = [];
    const splitter = new JsonListSplitter({ keep, onItem: (json) => items.push(JSON.parse(json)), onBadItem: (err) => assert.fail(err) });
    const bytes = Buffer.from(text);
    for (let at = 0; at < bytes.length; at += size) splitter.push(bytes.subarray(at, at + size));
    assert.deepEqual(items, [{ metadata: { name: 'a' } }, { metadata: { name: 'long' } }, { metadata: { name: 'b' } }], `chunks of ${size}`);
    assert.deepEqual(splitter.end(), { kind: 'PodList', items: [] });
  }
});

test('with the members to keep, a list cut inside an item is refused at its end', () => {
  const text = '{"kind":"PodList","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}';
  for (let cut = text.indexOf('{"metadata"') + 1; cut < text.length - 2; cut++) {
    const splitter = new JsonListSplitter({ keep: { metadata: { name: true } }, onItem: () => {}, onBadItem: () => {} });
    splitter.push(Buffer.from(text.slice(0, cut)));
    assert.throws(() => splitter.end(), SyntaxError, `cut at ${cut}`);
  }
});

test('a malformed item is handed to onBadItem and skipped; the items around it come through', () => {
  const text = '{"kind":"PodList","items":[{"metadata":{"name":"a"}},{"metadata":{"name" "b"}},{"metadata":{"name":"c"},"x":[1,,tru]}]}';
  for (const sizes of [[text.length], [1], [7]]) {
    const items: unknown[] = [];
    const bad: SyntaxError[] = [];
    const splitter = new JsonListSplitter({ keep: { metadata: { name: true } }, onItem: (json) => items.push(JSON.parse(json)), onBadItem: (err) => bad.push(err) });
    const bytes = Buffer.from(text);
    for (let at = 0, n = 0; at < bytes.length; n++) {
      splitter.push(bytes.subarray(at, at + sizes[n % sizes.length]!));
      at += sizes[n % sizes.length]!;
    }
    // The third is malformed in a member not kept: its extent is still found, and what is kept is read.
    assert.deepEqual(items, [{ metadata: { name: 'a' } }, { metadata: { name: 'c' } }], `chunks of ${sizes}`);
    assert.equal(bad.length, 1);
    assert.ok(bad[0] instanceof SyntaxError);
    assert.equal(splitter.items, 3);
    assert.deepEqual(splitter.end(), { kind: 'PodList', items: [] });
  }
});
