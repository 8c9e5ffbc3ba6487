// A Clock whose time moves only when the test says: advance(ms) runs the
// timers that fall due, in order.
import type { Clock, ClockTimer } from '../../common/clock.ts';

export class FakeClock implements Clock {
  #now: number;
  #timers: Array<{ at: number; fn: () => void; id: object }> = [];

  constructor(start = 1_750_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = {};
    this.#timers.push({ at: this.#now + ms, fn, id });
    return id;
  }

  clearTimeout(timer: ClockTimer): void {
    this.#timers = this.#timers.filter((t) => t.id !== timer);
  }

  /** Delays of the pending timers, soonest first. */
  pending(): number[] {
    return this.#timers.map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = end;
  }
}
