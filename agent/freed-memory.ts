// Gives the kernel back what malloc keeps free after the Kubernetes caches'
// lists. A list of a large cluster streams hundreds of MB of JSON through
// 64 KiB socket buffers; once read, glibc's malloc keeps the pages they freed
// between blocks that stay. malloc_trim(0) (the addon's returnFreeMemory,
// ~2 ms) hands them back; it runs after the first sync and after each
// relist, the lists' big reads, not on a schedule of its own. At 100k pods:
// RSS after sync 249 -> 225 MiB, after a relist 304 -> 283 MiB
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
  /** malloc_trim(0). */
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
