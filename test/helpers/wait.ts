// Polls a condition: how tests wait for something to have happened (a
// counter, a socket, a process state), never for a fixed time.
import { setTimeout as sleep } from 'node:timers/promises';

/** What is awaited, or a function saying so with the state seen last (called only for the timeout's message). */
export type Awaited = string | (() => string);

const timedOut = (timeoutMs: number, what: Awaited) => new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);

export async function waitFor(condition: () => boolean, timeoutMs: number, what: Awaited, pollMs = 10): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw timedOut(timeoutMs, what);
    await sleep(pollMs);
  }
  return Date.now() - started;
}

/** waitFor with an asynchronous condition (a scrape, a command in a namespace), checked one at a time. */
export async function waitForAsync(condition: () => Promise<boolean>, timeoutMs: number, what: Awaited, pollMs = 50): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw timedOut(timeoutMs, what);
    await sleep(pollMs);
  }
  return Date.now() - started;
}
