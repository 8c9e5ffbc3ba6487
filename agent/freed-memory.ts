// Gives the kernel back what the Kubernetes caches' lists leave free. A
// list of a large cluster streams hundreds of MB of JSON through 64 KiB
// socket buffers; once read, V8 keeps the old-space pages its garbage
// fragmented and glibc's malloc the pages the buffers freed between blocks
// that stay. The addon's returnFreeMemory (netns/native/memory.c) has V8
// collect all it can, compacting, and release its spare pages, then calls
// malloc_trim(0). It holds the main thread (285 ms at 100k pods, 102 ms at
// 10k; the capture queue takes the packets meanwhile), so it runs after the
// first sync and after each relist, the lists' big reads, and on no
// schedule of its own. At 100k pods: RSS after sync 208 -> 193 MiB, after a
// relist 250 -> 194 MiB against malloc_trim alone
// (bench/enrich/identity-scale.bench.ts).
import type { Clock, ClockTimer } from '../common/clock.ts';

/** What the options' lists() asks, from the caches' status by resource; no resources (no caches in use): not synced. */
export function listsOf(status: Record<string, { synced: boolean; relists: number }>): { synced: boolean; relists: number } {
  const resources = Object.values(status);
  return { synced: resources.length > 0 && resources.every((r) => r.synced), relists: resources.reduce((n, r) => n + r.relists, 0) };
}

export interface FreedMemoryOptions {
  /** Whether every cache is synced, and how many relists they have made in all. */
  lists: () => { synced: boolean; relists: number };
  /** The addon's returnFreeMemory: V8's full collection, then malloc_trim(0). */
  returnFreeMemory: () => unknown;
  clock: Clock;
  /** How often the caches are looked at. Default 10 s. */
  checkMs?: number;
}

export class FreedMemoryReturn {
  readonly #options: FreedMemoryOptions;
  readonly #checkMs: number;
  /** The relist count last acted on; undefined until the first sync. */
  #relistsSeen: number | undefined;
  #timer: ClockTimer | undefined;

  constructor(options: FreedMemoryOptions) {
    this.#options = options;
    this.#checkMs = options.checkMs ?? 10_000;
  }

  start(): void {
    this.#timer = this.#options.clock.setTimeout(() => this.#check(), this.#checkMs);
  }

  stop(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const { synced, relists } = this.#options.lists();
    if (synced && relists !== this.#relistsSeen) {
      this.#relistsSeen = relists;
      this.#options.returnFreeMemory();
    }
    this.start();
  }
}
