// `podflow agent`: the DaemonSet's process. Configuration from --config (or
// PODFLOW_CONFIG), environment and flags (see docs/configuration.md); runs
// until SIGTERM or SIGINT, then stops gracefully within shutdown.timeoutSeconds.
import { parseArgs } from 'node:util';
import { rootLogger } from '../log.ts';
import { PodflowError } from '../../common/errors.ts';
import { FLAGS, loadConfig } from '../config.ts';

const usage = `usage: podflow agent [--mode daemonset|sidecar] [--config FILE] [--node-name NAME] [--cluster-name NAME] [--kubeconfig FILE]
                     [--collector URL]... [--metrics-listen HOST:PORT] [--log-level LEVEL] [--set KEY=VALUE]...

  --mode MODE     daemonset (default: every pod namespace of the node) or sidecar (only the
                  namespace the process is in, identity from the downward API; docs/sidecar.md).
                  Default: $PODFLOW_MODE, else daemonset.
  --config FILE   YAML configuration (default: $PODFLOW_CONFIG; keys in docs/configuration.md)
  --set KEY=VALUE any key, e.g. --set flow.idleTimeoutSeconds=10
Precedence: flags > environment (NODE_NAME, CLUSTER_NAME, KUBECONFIG, PODFLOW_*) > file > defaults.
`;

export async function run(args: string[]): Promise<number> {
  const options = Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string', multiple: true }] as const));
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, mode: { type: 'string' }, config: { type: 'string' }, set: { type: 'string', multiple: true }, help: { type: 'boolean' } } });
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', (err as Error).message, { cause: err });
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const flags: Array<[string, string]> = [];
  for (const [flag, key] of Object.entries(FLAGS)) {
    for (const v of (parsed.values as Record<string, string[] | undefined>)[flag] ?? []) flags.push([key, v]);
  }
  for (const s of parsed.values.set ?? []) {
    const i = s.indexOf('=');
    if (i <= 0) throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--set takes KEY=VALUE, got '${s}'`);
    flags.push([s.slice(0, i), s.slice(i + 1)]);
  }
  const mode = parsed.values.mode ?? (process.env.PODFLOW_MODE || 'daemonset');
  if (mode !== 'daemonset' && mode !== 'sidecar') throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--mode takes daemonset or sidecar, got '${mode}'`);
  const notes: string[] = [];
  const config = loadConfig({ file: parsed.values.config, env: process.env, flags }, notes);

  const log = rootLogger(config.log.level, { node: config.nodeName });
  for (const note of notes) log.warn(note);
  // Loaded after the configuration is valid: a bad config fails fast, before the native addon and the clients load.
  // Both modes are one Agent given its mode: every pod namespace of the node (agent/daemonset.ts), or the pod's own namespace and its downward-API identity (agent/sidecar.ts).
  const { Agent } = await import('../agent.ts');
  const agent = new Agent(config, log, mode === 'sidecar' ? (await import('../sidecar.ts')).sidecarMode : (await import('../daemonset.ts')).daemonsetMode);
  let signalled: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (signalled = resolve));
  const onSignal = (signal: NodeJS.Signals) => signalled(signal);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await agent.start();
  const signal = await stopped;
  log.info({ signal }, 'stopping');
  // A second signal, or the bound passing, ends the process at once.
  const hard = setTimeout(() => {
    log.error({ timeoutSeconds: config.shutdown.timeoutSeconds }, 'shutdown took too long; exiting');
    process.exit(1);
  }, config.shutdown.timeoutSeconds * 1000 + 1000);
  hard.unref();
  process.once('SIGTERM', () => process.exit(1));
  process.once('SIGINT', () => process.exit(1));
  await agent.stop();
  clearTimeout(hard);
  log.flush();
  // Handles of client libraries (keep-alive agents) must not keep a stopped agent alive.
  setTimeout(() => process.exit(0), 100).unref();
  return 0;
}
