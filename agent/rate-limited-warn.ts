// A warning that can repeat at a high rate (a collector down, an informer
// restarting, a capture handle lost per pod) logged so that the first one of
// a kind shows at once and the log is not flooded after it.
import type { Logger } from 'pino';

/** A repeated warning of the same kind is logged at most once per this period, with the count suppressed. */
const WARN_PERIOD_MS = 30_000;

/** Logs the first warning of a key, then at most one per period with how many were suppressed. */
export class RateLimitedWarn {
  readonly #log: Logger;
  readonly #periodMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  constructor(log: Logger, periodMs = WARN_PERIOD_MS) {
    this.#log = log;
    this.#periodMs = periodMs;
  }
  warn(key: string, fields: object, message: string): void {
    const now = Date.now();
    const seen = this.#last.get(key);
    if (seen && now - seen.at < this.#periodMs) {
      seen.suppressed++;
      return;
    }
    this.#log.warn({ ...fields, suppressed: seen?.suppressed ?? 0 }, message);
    this.#last.set(key, { at: now, suppressed: 0 });
  }
}
