// `podflow demo` as a test runs it: a child process that is stopped as a user
// stops it (SIGINT) when the test ends, also when it fails, so that the demo
// itself ends its agents and traffic processes and removes its namespaces.
// A SIGKILL alone left those children running: the demo could not end them.
import type { TestContext } from 'node:test';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { waitFor } from './wait.ts';

const CLI = fileURLToPath(new URL('../../agent/cli.ts', import.meta.url));
/** How long a demo may take to stop its agents (they flush) and remove its namespaces. */
const STOP_GRACE_MS = 60_000;

export function startDemo(t: TestContext, args: readonly string[]): { demo: ChildProcessByStdio<null, Readable, Readable>; exited: Promise<number | null> } {
  const demo = spawn(NODE_BIN, [...NODE_FLAGS, CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => demo.once('close', (code) => resolve(code)));
  const running = () => demo.exitCode === null && demo.signalCode === null;
  t.after(async () => {
    if (demo.pid === undefined || !running()) return;
    demo.kill('SIGINT');
    try {
      await waitFor(() => !running(), STOP_GRACE_MS, 'the demo to stop on SIGINT');
    } catch {
      demo.kill('SIGKILL');
    }
  });
  return { demo, exited };
}
