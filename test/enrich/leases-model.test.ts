// enrich/leases.ts against its rules written plainly: a model that keeps
// leases as objects in one list and answers a lookup by scanning it, driven
// by the same random events (pods, nodes and services claiming, losing,
// superseding and reusing a few addresses; pods finishing and ending early;
// closed leases expiring and evicted). Every lookup, by key and by bytes, at
// times before, inside and after the leases, must name the same holder as the model does, so the
// table's representation (typed-array rows, the address slot that answers an
// address's one open lease alone) cannot drift from the rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CachedAsPodRows } from '../../enrich/cached-objects.ts';
import { LeaseTable } from '../../enrich/leases.ts';
import { type IpKey, ipKey, ipKeyBytes } from '../../enrich/ip-keys.ts';
import type { SlimPod, SlimService } from '../../enrich/types.ts';
import { node, pod, service } from '../helpers/slim-objects.ts';

type Kind = 'pod' | 'node' | 'service';
type Answer = { type: 'pod'; pod: SlimPod } | { type: 'node'; nodeName: string } | { type: 'service'; service: SlimService; portName: string };

interface ModelHolder {
  kind: Kind;
  ended: boolean;
  lost: Set<IpKey>;
  answer: Answer;
  ports: SlimService['ports'];
}

interface ModelLease {
  key: IpKey;
  holder: ModelHolder;
  from: number;
  until: number;
  seq: number;
  /** Frozen at close. */
  answer?: Answer;
  ports?: SlimService['ports'];
}

const PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132 };

/** The rules of enrich/leases.ts's header, one by one, on plain objects. */
class Model {
  readonly holders = new Map<string, ModelHolder>();
  leases: ModelLease[] = [];
  /** Closed leases, least recently closed first. */
  closed: ModelLease[] = [];
  #seq = 0;
  readonly #graceMs: number;
  readonly #maxClosed: number;

  constructor(graceMs: number, maxClosed: number) {
    this.#graceMs = graceMs;
    this.#maxClosed = maxClosed;
  }

  apply(kind: Kind, id: string, type: 'add' | 'update' | 'delete', addresses: readonly string[], answer: Answer, ports: SlimService['ports'], atMs: number): void {
    this.expire(atMs);
    const holderId = `${kind} ${id}`;
    let holder = this.holders.get(holderId);
    if (type === 'delete') {
      if (!holder) return;
      for (const lease of this.#openOf(holder)) this.#close(lease, atMs);
      this.holders.delete(holderId);
      return;
    }
    if (!holder) {
      holder = { kind, ended: false, lost: new Set(), answer, ports };
      this.holders.set(holderId, holder);
    }
    const wanted = new Set(holder.ended ? [] : addresses.map((a) => ipKey(a)!));
    for (const key of holder.lost) if (!wanted.has(key)) holder.lost.delete(key);
    for (const lease of this.#openOf(holder)) if (!wanted.has(lease.key)) this.#close(lease, atMs);
    holder.answer = answer;
    holder.ports = ports;
    for (const key of wanted) {
      if (this.#openOf(holder).some((l) => l.key === key) || holder.lost.has(key)) continue;
      this.#claim(holder, key, atMs);
    }
  }

  endPod(uid: string, atMs: number): void {
    const holder = this.holders.get(`pod ${uid}`);
    if (!holder || holder.ended) return;
    this.expire(atMs);
    holder.ended = true;
    for (const lease of this.#openOf(holder)) this.#close(lease, atMs);
  }

  expire(nowMs: number): void {
    while (this.closed.length > 0 && this.closed[0]!.until + this.#graceMs <= nowMs) this.#forget(this.closed.shift()!);
  }

  lookup(key: IpKey, atMs: number, port: number, protocol: number): Answer | undefined {
    const matching = this.leases.filter((l) => l.key === key && l.from <= atMs && atMs < l.until);
    const best = matching.reduce<ModelLease | undefined>((b, l) => (!b || l.from > b.from || (l.from === b.from && (l.until > b.until || (l.until === b.until && l.seq > b.seq))) ? l : b), undefined);
    if (!best) return undefined;
    const open = best.until === Infinity;
    const answer = open ? best.holder.answer : best.answer!;
    if (answer.type !== 'service') return answer;
    const ports = open ? best.holder.ports : best.ports!;
    const named = ports.find((p) => p.port === port && (PROTOCOLS[p.protocol] ?? -1) === protocol);
    return named ? { ...answer, portName: named.name } : answer;
  }

  #openOf(holder: ModelHolder): ModelLease[] {
    return this.leases.filter((l) => l.holder === holder && l.until === Infinity);
  }

  #claim(holder: ModelHolder, key: IpKey, atMs: number): void {
    let validFrom = -Infinity;
    for (const other of this.leases.filter((l) => l.key === key)) {
      if (other.until === Infinity) {
        if (other.holder.kind !== holder.kind) continue;
        other.holder.lost.add(key);
        this.#close(other, atMs);
      }
      validFrom = Math.max(validFrom, other.until);
    }
    this.leases.push({ key, holder, from: Math.min(validFrom, atMs), until: Infinity, seq: this.#seq++ });
  }

  #close(lease: ModelLease, atMs: number): void {
    lease.until = Math.max(lease.from, atMs);
    const answer = lease.holder.answer;
    lease.answer = answer.type === 'pod' ? { type: 'pod', pod: { ...answer.pod, podIPs: [] } } : answer;
    lease.ports = lease.holder.ports;
    if (this.closed.length === this.#maxClosed) this.#forget(this.closed.shift()!);
    this.closed.push(lease);
  }

  #forget(lease: ModelLease): void {
    this.leases = this.leases.filter((l) => l !== lease);
  }
}

/**
 * The random run; with `store`, the table answers pods from it (LeaseTableOptions.pods) and every pod event
 * is applied to the store first, as the caches do before they tell their listeners.
 */
function checkAgainstModel(store?: CachedAsPodRows): void {
  const T0 = 1_750_000_000_000;
  const graceMs = 5_000;
  const maxClosed = 6;
  const table = new LeaseTable({ graceMs, maxClosedLeases: maxClosed, pods: store });
  const model = new Model(graceMs, maxClosed);
  // A fixed pseudo-random sequence: the same run every time.
  let seed = 11;
  const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const pool = ['10.244.0.1', '10.244.0.2', '10.244.0.3', '10.244.0.4', '10.244.0.5', 'fd00::1', 'fd00::2', 'fd00::3'];
  const pick = (): string[] => [...new Set(Array.from({ length: random(3) }, () => pool[random(pool.length)]!))];
  const ports: SlimService['ports'] = [
    { name: 'http', port: 80, protocol: 'TCP' },
    { name: 'dns', port: 53, protocol: 'UDP' },
  ];
  let now = T0;
  let lookups = 0;
  for (let step = 0; step < 4000; step++) {
    now += random(4) === 0 ? 0 : random(3000);
    const roll = random(20);
    const type = (['add', 'update', 'update', 'delete'] as const)[random(4)]!;
    if (roll < 14) {
      const p = pod(`p${random(8)}`, { podIPs: pick(), phase: random(8) === 0 ? 'Succeeded' : 'Running', hostNetwork: random(20) === 0 });
      if (store === undefined) table.applyPod(type, p, now);
      else {
        const previous = store.get(p.namespace, p.name);
        if (type === 'delete') store.delete(p.namespace, p.name);
        else store.set(p.namespace, p.name, p);
        table.applyPod(type, p, now, previous);
      }
      const finished = p.phase === 'Succeeded' || p.phase === 'Failed';
      model.apply('pod', p.uid, type, p.hostNetwork || finished ? [] : p.podIPs, { type: 'pod', pod: p }, [], now);
    } else if (roll < 16) {
      const uid = `uid-p${random(8)}`;
      table.endPod(uid, now);
      model.endPod(uid, now);
    } else if (roll < 18) {
      const n = node(`n${random(2)}`, pick());
      table.applyNode(type, n, now);
      model.apply('node', n.name, type, n.addresses, { type: 'node', nodeName: n.name }, [], now);
    } else {
      const s = service(`s${random(2)}`, pick(), ports.slice(0, random(3)));
      table.applyService(type, s, now);
      model.apply('service', s.uid, type, s.clusterIPs, { type: 'service', service: s, portName: '' }, s.ports, now);
    }
    assert.equal(table.openLeases, model.leases.filter((l) => l.until === Infinity).length, `step ${step}: open leases`);
    assert.equal(table.closedLeases, model.closed.length, `step ${step}: closed leases`);
    for (const address of pool) {
      for (const atMs of [-Infinity, now - 20_000, now - random(8000), now - 1, now, now + random(5000)]) {
        const [port, protocol] = random(2) === 0 ? [80, 6] : [53, 17];
        const key = ipKey(address)!;
        // The same holder, and for a closed pod lease the same copy without addresses; by key and by bytes
        // (an IPv4 address also as IPv4-mapped IPv6).
        const expected = model.lookup(key, atMs, port, protocol) ?? { type: 'unknown' };
        assert.deepEqual(table.lookupKey(key, atMs, port, protocol), expected, `step ${step}: ${address} at ${atMs - T0}`);
        const bytes = ipKeyBytes(key);
        const mapped = bytes.length === 4 && random(2) === 0 ? Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...bytes) : bytes;
        assert.deepEqual(table.lookup(mapped, atMs, port, protocol), expected, `step ${step}: ${address} as bytes at ${atMs - T0}`);
        lookups++;
      }
    }
  }
  // The run reached every kind of answer and every rule that forgets or closes.
  const s = table.stats;
  assert.equal(lookups, 4000 * pool.length * 6);
  for (const kind of ['pod', 'node', 'service', 'unknown'] as const) assert.ok(s.lookups[kind] > 100, `${kind} answers: ${s.lookups[kind]}`);
  for (const counted of ['lookupsAmbiguous', 'superseded', 'staleClaimsIgnored', 'closedExpired', 'closedEvicted', 'podsEndedEarly'] as const) assert.ok(s[counted] > 10, `${counted}: ${s[counted]}`);
}

test('every lookup names the holder the rules name, through random claims, reuse, supersession, endings, expiry and eviction', () => {
  checkAgainstModel();
});

test('the same, with the pods answered from a store the events are applied to first (the caches\' pod rows)', () => {
  checkAgainstModel(new CachedAsPodRows());
});
