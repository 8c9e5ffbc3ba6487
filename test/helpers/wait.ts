// Polls a condition: for tests that wait on asynchronous capture and discovery.
import { setTimeout as sleep } from 'node:timers/promises';

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string, pollMs = 10): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
  return Date.now() - started;
}
