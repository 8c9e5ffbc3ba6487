import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonListSplitter } from '../../enrich/json-list.ts';

/** Feeds text to a splitter in chunks of the given sizes (cycled); returns the parsed items and the rest. */
function split(text: string, sizes: number[]): { items: unknown[]; rest: Record<string, unknown> } {
  const items: unknown[] = [];
  const splitter = new JsonListSplitter((json) => items.push(JSON.parse(json)));
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
    const splitter = new JsonListSplitter(() => {});
    splitter.push(Buffer.from(full.slice(0, cut)));
    assert.throws(() => splitter.end(), SyntaxError, `cut at ${cut}`);
  }
  const notObject = new JsonListSplitter(() => {});
  notObject.push(Buffer.from('[1,2]'));
  assert.throws(() => notObject.end(), /not a JSON object/);
});
