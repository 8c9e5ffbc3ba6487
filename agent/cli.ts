#!/usr/bin/env node
// The `podflow` command: one entry point, one module per subcommand, loaded
// only when asked for so `podflow replay` never loads the agent's dependencies.
//
// Start-up: Node strips the types of every .ts module it loads, and the
// stripper (a WebAssembly build of swc) alone costs ~25 ms to load. With the
// module compile cache on, modules imported after this point come from the
// cache (stripped source and V8 code cache, keyed by a checksum of the source,
// so an edit is never served stale): `podflow replay --help` measured 80 ms →
// 50 ms, a 1M-packet replay ~40 ms less. This file itself was stripped before
// it could ask, hence no static imports here but builtins. The cache lives
// with the install (not in a shared /tmp other users could write to); when it
// cannot be created (read-only install) Node reports FAILED and runs on
// uncached. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import module from 'node:module';

module.enableCompileCache?.(`${import.meta.dirname}/../node_modules/.cache/podflow-compile`);

interface Subcommand {
  summary: string;
  load: () => Promise<{ run(args: string[]): Promise<number> }>;
}

const subcommands: Record<string, Subcommand> = {
  replay: {
    summary: 'meter a pcap/pcapng file into flows, one JSON object per flow',
    load: () => import('./commands/replay.ts'),
  },
  elements: {
    summary: 'print podflow\'s IPFIX enterprise elements for a collector (ipfixDump, nfacctd, python-ipfix)',
    load: () => import('./commands/elements.ts'),
  },
  collect: {
    summary: 'receive IPFIX and show the flows: a live table, or JSON lines',
    load: () => import('./commands/collect.ts'),
  },
  agent: {
    summary: 'the node agent: capture every pod namespace, name flows with Kubernetes identity, export IPFIX',
    load: () => import('./commands/agent.ts'),
  },
  webhook: {
    summary: 'the mutating admission webhook that injects the podflow sidecar into selected pods (HTTPS)',
    load: () => import('./commands/webhook.ts'),
  },
  demo: {
    summary: 'a simulated node, API server, agent and collector: pod traffic named by Kubernetes identity, live',
    load: () => import('./commands/demo.ts'),
  },
};

function usage(): string {
  const lines = Object.entries(subcommands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: podflow <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'podflow <command> --help' for a command's options\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = subcommands[name];
  if (!command) {
    process.stderr.write(`podflow: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return (await command.load()).run(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  // Loaded here, not statically: see the start-up note at the top.
  const { PodflowError } = await import('../common/errors.ts');
  if (err instanceof PodflowError) {
    process.stderr.write(`podflow: ${err.message} [${err.code}]\n`);
    process.exitCode = err.code === 'PODFLOW_ERR_CLI_USAGE' ? 2 : 1;
  } else {
    throw err;
  }
}
