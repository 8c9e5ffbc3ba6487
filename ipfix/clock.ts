// The time seam of the exporter (STYLE point 5): template refresh, reconnect
// backoff and close deadlines read the time and set timers only through a
// Clock, so tests step time with a fake clock instead of waiting.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer): void;
}

/** Opaque to callers; whatever the clock's setTimeout returned. */
export type ClockTimer = object;

export const systemClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};
