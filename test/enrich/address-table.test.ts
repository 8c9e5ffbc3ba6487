import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressTable } from '../../enrich/address-table.ts';
import { ipKey, ipKeyBytes, type IpKey } from '../../enrich/ip-keys.ts';

test('holds what a Map holds through growth, churn and shrinking, for IPv4 and IPv6 keys, each value with its time', () => {
  const table = new AddressTable();
  const model = new Map<IpKey, [number, number]>();
  // A fixed pseudo-random sequence: the same run every time.
  let seed = 7;
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  // Keys close together (the same /16 or /112), as a cluster's pod addresses are; IPv4 above 2^31 too.
  const keyOf = (i: number): IpKey => (i % 3 === 0 ? ipKey(`fd00::${(i >> 2).toString(16)}`)! : ipKey(`${i % 2 ? 10 : 192}.168.${(i >> 8) & 255}.${i & 255}`)!);
  for (let step = 0; step < 60_000; step++) {
    // Grow to ~4000 keys, then churn, then shrink to nearly nothing.
    const phase = step < 20_000 ? 0 : step < 40_000 ? 1 : 2;
    const key = keyOf(random(6000));
    const op = random(10);
    if (phase === 0 ? op < 7 : phase === 1 ? op < 5 : op < 1) {
      const value = random(1 << 30);
      // Times as the lease table sets them: a start, -Infinity, or none (NaN).
      const time = [1_750_000_000_000 + random(1 << 30), -Infinity, NaN][random(3)]!;
      table.set(key, value, time);
      model.set(key, [value, time]);
    } else {
      table.delete(key);
      model.delete(key);
    }
    if (step % 97 === 0) {
      for (const [k, [value, time]] of model) {
        assert.equal(table.get(k), value, `step ${step}`);
        assert.equal(table.foundTime, time, `step ${step}`);
        if (typeof k === 'string') {
          assert.equal(table.getIpv6(ipKeyBytes(k)), value, `step ${step}: by bytes`);
          assert.equal(table.foundTime, time, `step ${step}: by bytes`);
        }
      }
    }
    assert.equal(table.size, model.size);
  }
  for (let i = 0; i < 6000; i++) {
    assert.equal(table.get(keyOf(i)), model.get(keyOf(i))?.[0] ?? -1);
    assert.equal(table.foundTime, model.get(keyOf(i))?.[1] ?? NaN);
  }
});

test('an absent key is -1 with no time (NaN), also where a deleted one was, and deleting it changes nothing', () => {
  const table = new AddressTable();
  assert.equal(table.get(ipKey('10.0.0.1')!), -1);
  assert.ok(Number.isNaN(table.foundTime));
  table.delete(ipKey('10.0.0.1')!);
  table.set(ipKey('10.0.0.1')!, 0);
  table.set(ipKey('fd00::1')!, 5, 1234);
  assert.equal(table.get(ipKey('10.0.0.1')!), 0);
  assert.ok(Number.isNaN(table.foundTime));
  assert.equal(table.get(ipKey('fd00::1')!), 5);
  assert.equal(table.foundTime, 1234);
  assert.equal(table.get(ipKey('fd00::2')!), -1);
  assert.equal(table.getIpv6(ipKeyBytes(ipKey('fd00::1')!)), 5);
  assert.equal(table.foundTime, 1234);
  assert.equal(table.getIpv6(ipKeyBytes(ipKey('fd00::2')!)), -1);
  assert.ok(Number.isNaN(table.foundTime));
  table.set(ipKey('10.0.0.2')!, 7, 99);
  table.delete(ipKey('10.0.0.2')!);
  assert.equal(table.get(ipKey('10.0.0.2')!), -1);
  assert.ok(Number.isNaN(table.foundTime));
  assert.equal(table.size, 2);
});
