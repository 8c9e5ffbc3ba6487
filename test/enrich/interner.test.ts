import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Interner } from '../../enrich/interner.ts';

test('gives back the first value kept for a key, and starts again empty when full', () => {
  const interner = new Interner<object>(3);
  const first = { v: 1 };
  assert.equal(interner.intern('a', first), first);
  assert.equal(interner.intern('a', { v: 1 }), first, 'the kept copy');
  interner.intern('b', {});
  interner.intern('c', {});
  assert.equal(interner.size, 3);
  const later = { v: 1 };
  // Full: the table starts over, so it never holds more than its bound.
  assert.equal(interner.intern('d', later), later);
  assert.equal(interner.size, 1);
  assert.notEqual(interner.intern('a', later), first, 'forgotten at the restart');
});
