import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FreedMemoryReturn, listsOf } from '../../agent/freed-memory.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

test('memory is returned once after the first sync and once after each relist, not on every check', () => {
  const clock = new FakeClock();
  const lists = { synced: false, relists: 0 };
  let calls = 0;
  const freed = new FreedMemoryReturn({ lists: () => lists, returnFreeMemory: () => calls++, clock, checkMs: 1000 });
  freed.start();
  clock.advance(5000);
  assert.equal(calls, 0, 'nothing before the caches are synced');
  lists.synced = true;
  clock.advance(1000);
  assert.equal(calls, 1, 'once at the first sync');
  clock.advance(10_000);
  assert.equal(calls, 1, 'not again while nothing is listed');
  lists.relists = 2;
  clock.advance(1000);
  assert.equal(calls, 2, 'once after relists, however many came between two checks');
  clock.advance(10_000);
  assert.equal(calls, 2);
  freed.stop();
  assert.deepEqual(clock.pending(), [], 'stop() leaves no timer');
  lists.relists = 3;
  clock.advance(10_000);
  assert.equal(calls, 2, 'nothing after stop()');
});

test('the caches are synced when every resource is, and none (identity off) is not synced', () => {
  assert.deepEqual(listsOf({}), { synced: false, relists: 0 });
  assert.deepEqual(listsOf({ pod: { synced: true, relists: 1 }, node: { synced: false, relists: 0 } }), { synced: false, relists: 1 });
  assert.deepEqual(listsOf({ pod: { synced: true, relists: 1 }, node: { synced: true, relists: 2 } }), { synced: true, relists: 3 });
});
