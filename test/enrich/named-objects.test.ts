import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NamedObjects } from '../../enrich/named-objects.ts';

test('objects by namespace and name: set, replace, get, delete, count and iterate', () => {
  const objects = new NamedObjects<string>();
  objects.set('shop', 'web-1', 'a');
  objects.set('shop', 'web-2', 'b');
  objects.set('ops', 'web-1', 'c');
  objects.set('', 'node-a', 'd');
  objects.set('shop', 'web-1', 'a2');
  assert.equal(objects.size, 4);
  assert.equal(objects.get('shop', 'web-1'), 'a2');
  assert.equal(objects.get('ops', 'web-1'), 'c');
  assert.equal(objects.get('ops', 'web-2'), undefined);
  assert.equal(objects.get('nowhere', 'web-1'), undefined);
  assert.ok(objects.has('', 'node-a'));
  assert.ok(!objects.has('shop', 'node-a'));
  assert.deepEqual([...objects.values()].sort(), ['a2', 'b', 'c', 'd']);
  assert.equal(objects.delete('shop', 'web-3'), false);
  assert.equal(objects.delete('ops', 'web-1'), true);
  assert.equal(objects.delete('ops', 'web-1'), false);
  assert.equal(objects.size, 3);
  assert.deepEqual([...objects.entries()].sort(), [['', 'node-a', 'd'], ['shop', 'web-1', 'a2'], ['shop', 'web-2', 'b']]);
});

test('deleting while iterating the entries (a relist deleting what it did not list) visits every entry once', () => {
  const objects = new NamedObjects<number>();
  for (let i = 0; i < 100; i++) objects.set(`ns-${i % 7}`, `pod-${i}`, i);
  const seen: number[] = [];
  for (const [namespace, name, value] of objects.entries()) {
    seen.push(value);
    if (value % 2 === 1) objects.delete(namespace, name);
  }
  assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
  assert.equal(objects.size, 50);
  assert.ok([...objects.values()].every((value) => value % 2 === 0));
});
