// The time seam: code that reads the time or sets timers (the exporter's
// template refresh, reconnect backoff and close deadlines; the Kubernetes
// caches' restart backoff; the lease table's tick) does so only through a Clock, so a test steps time with a
// fake clock (test/helpers/fake-clock.ts) instead of waiting for it.

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
