import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyHash, RowIndex } from '../../enrich/row-index.ts';
import { NO_ROW } from '../../enrich/rows.ts';

test('finds every row by its key through adds and deletes (probe runs, deletions moving entries back, growth), as a Map does', () => {
  const firsts: string[] = [];
  const seconds: string[] = [];
  const index = new RowIndex({
    holds: (row, first, second) => firsts[row] === first && seconds[row] === second,
    hashOf: (row) => keyHash(firsts[row]!, seconds[row]!),
  });
  const model = new Map<string, number>();
  let seed = 7;
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const free: number[] = [];
  let nextRow = 0;
  for (let step = 0; step < 20_000; step++) {
    const first = `ns-${random(5)}`;
    const second = `pod-${random(600)}`;
    const key = `${first}/${second}`;
    const known = model.get(key);
    if (random(3) === 0) {
      assert.equal(index.delete(first, second), known !== undefined, `step ${step}: delete ${key}`);
      if (known !== undefined) {
        model.delete(key);
        firsts[known] = '';
        seconds[known] = '';
        free.push(known);
      }
    } else if (known === undefined) {
      const row = free.pop() ?? nextRow++;
      firsts[row] = first;
      seconds[row] = second;
      index.set(row, first, second);
      model.set(key, row);
    }
    assert.equal(index.size, model.size);
    for (let probe = 0; probe < 4; probe++) {
      const f = `ns-${random(5)}`;
      const s = `pod-${random(600)}`;
      assert.equal(index.get(f, s), model.get(`${f}/${s}`) ?? NO_ROW, `step ${step}: get ${f}/${s}`);
    }
  }
  assert.deepEqual([...index.rows()].sort((a, b) => a - b), [...model.values()].sort((a, b) => a - b));
});

test('the hash of two strings tells their boundary apart', () => {
  assert.notEqual(keyHash('ab', 'c'), keyHash('a', 'bc'));
  assert.equal(keyHash('ab', 'c'), keyHash('ab', 'c'));
});
