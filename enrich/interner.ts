// One shared copy of values that repeat across thousands of cached objects:
// namespaces, node names, owners (three pods to a ReplicaSet), label values
// and whole label sets (every pod of a workload has the same ones). Each
// parsed object brings its own copy of every string; keeping the first copy
// instead makes a pod's share of them a pointer. Bounded: when a table is
// full it starts again empty (values come back as they are seen again), so
// churn (new ReplicaSets, new Job names) cannot grow it without end. Sharing
// is only about memory: a value shared or not is the same value.

export class Interner<T> {
  readonly #max: number;
  #table = new Map<string, T>();

  constructor(max: number) {
    this.#max = max;
  }

  /** Values held now. */
  get size(): number {
    return this.#table.size;
  }

  /** The value kept for key, or `value` (kept from now on). */
  intern(key: string, value: T): T {
    const kept = this.#table.get(key);
    if (kept !== undefined) return kept;
    if (this.#table.size >= this.#max) this.#table = new Map();
    this.#table.set(key, value);
    return value;
  }
}
