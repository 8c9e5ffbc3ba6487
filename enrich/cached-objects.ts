// How the caches (kube-caches.ts) hold one resource's slim objects, by
// namespace and name: as the objects themselves, or for pods (a cluster has
// ten to a hundred times more of them than of anything else) as rows of a
// pod table (pod-table.ts), from which a SlimPod is made when one is asked
// for. Both answer the same questions, so the caches treat every resource
// alike.
import { NamedObjects } from './named-objects.ts';
import type { SharedPodRows } from './leases.ts';
import { PodTable } from './pod-table.ts';
import { keyHash, RowIndex } from './row-index.ts';
import { NO_ROW } from './rows.ts';
import type { SlimPod } from './types.ts';

/** What every slim object has. */
interface WithUid {
  readonly uid: string;
}

export interface CachedObjects<T extends WithUid> {
  readonly size: number;
  /** The object cached under the name (for pods a new SlimPod equal to it), or undefined. */
  get(namespace: string, name: string): T | undefined;
  /** The uid of the object cached under the name: the string the cache holds, not a copy. */
  uid(namespace: string, name: string): string | undefined;
  /** Whether value equals the object cached under the name. */
  holds(namespace: string, name: string, value: T): boolean;
  /** Pass the object's own name string, so the cache keeps no copy of it. */
  set(namespace: string, name: string, value: T): void;
  delete(namespace: string, name: string): boolean;
  values(): IterableIterator<T>;
  /** Every cached object's namespace, name and uid. */
  uids(): IterableIterator<[namespace: string, name: string, uid: string]>;
}

/** The slim objects themselves. */
export class CachedAsObjects<T extends WithUid> implements CachedObjects<T> {
  readonly #objects = new NamedObjects<T>();

  get size(): number {
    return this.#objects.size;
  }

  get(namespace: string, name: string): T | undefined {
    return this.#objects.get(namespace, name);
  }

  uid(namespace: string, name: string): string | undefined {
    return this.#objects.get(namespace, name)?.uid;
  }

  /** Slim objects are small plain data; comparing their JSON is cheap next to the event that carried them. */
  holds(namespace: string, name: string, value: T): boolean {
    const cached = this.#objects.get(namespace, name);
    return cached !== undefined && JSON.stringify(cached) === JSON.stringify(value);
  }

  set(namespace: string, name: string, value: T): void {
    this.#objects.set(namespace, name, value);
  }

  delete(namespace: string, name: string): boolean {
    return this.#objects.delete(namespace, name);
  }

  values(): IterableIterator<T> {
    return this.#objects.values();
  }

  *uids(): IterableIterator<[namespace: string, name: string, uid: string]> {
    for (const [namespace, name, object] of this.#objects.entries()) yield [namespace, name, object.uid];
  }
}

/** Pods as rows of a pod table, which the lease table answers from too (SharedPodRows), found by namespace and name. */
export class CachedAsPodRows implements CachedObjects<SlimPod>, SharedPodRows {
  readonly #table = new PodTable();
  readonly #rows = new RowIndex({
    holds: (row, namespace, name) => this.#table.name(row) === name && this.#table.namespace(row) === namespace,
    hashOf: (row) => keyHash(this.#table.namespace(row), this.#table.name(row)),
  });

  get size(): number {
    return this.#rows.size;
  }

  get(namespace: string, name: string): SlimPod | undefined {
    const row = this.#rows.get(namespace, name);
    return row === NO_ROW ? undefined : this.#table.pod(row);
  }

  uid(namespace: string, name: string): string | undefined {
    const row = this.#rows.get(namespace, name);
    return row === NO_ROW ? undefined : this.#table.uid(row);
  }

  rowOf(pod: SlimPod): number {
    const row = this.#rows.get(pod.namespace, pod.name);
    return row !== NO_ROW && this.#table.uid(row) === pod.uid ? row : NO_ROW;
  }

  pod(row: number): SlimPod {
    return this.#table.pod(row);
  }

  holds(namespace: string, name: string, value: SlimPod): boolean {
    const row = this.#rows.get(namespace, name);
    return row !== NO_ROW && this.#table.same(row, value);
  }

  set(namespace: string, name: string, value: SlimPod): void {
    const row = this.#rows.get(namespace, name);
    if (row === NO_ROW) this.#rows.set(this.#table.add(value), namespace, name);
    else this.#table.set(row, value);
  }

  delete(namespace: string, name: string): boolean {
    const row = this.#rows.get(namespace, name);
    if (row === NO_ROW) return false;
    // Out of the index while the row still holds its key, then free.
    this.#rows.delete(namespace, name);
    this.#table.release(row);
    return true;
  }

  *values(): IterableIterator<SlimPod> {
    for (const row of this.#rows.rows()) yield this.#table.pod(row);
  }

  *uids(): IterableIterator<[namespace: string, name: string, uid: string]> {
    // The rows as they are now: a caller may delete as it goes, which moves index entries.
    for (const row of Array.from(this.#rows.rows())) yield [this.#table.namespace(row), this.#table.name(row), this.#table.uid(row)];
  }
}
