// `podflow webhook`: the mutating admission webhook that injects the podflow
// sidecar into selected pods (agent/webhook.ts). HTTPS only. Runs until
// SIGTERM or SIGINT; every review is logged at debug, every injection at info.
import { parseArgs } from 'node:util';
import { rootLogger } from '../log.ts';
import { PodflowError } from '../../common/errors.ts';
import { loadWebhookConfig, WebhookServer } from '../webhook.ts';

const usage = `usage: podflow webhook [--config FILE]

  --config FILE   YAML configuration (default: $PODFLOW_WEBHOOK_CONFIG; keys in docs/sidecar.md)
Serves POST /mutate (admission.k8s.io/v1 AdmissionReview of pods) and GET /healthz over HTTPS only.
POD_NAMESPACE (downward API) names the webhook's own namespace, which is never injected.
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { config: { type: 'string' }, help: { type: 'boolean' } } });
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', (err as Error).message, { cause: err });
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const config = loadWebhookConfig(parsed.values.config ?? process.env.PODFLOW_WEBHOOK_CONFIG, process.env);
  const log = rootLogger(config.log.level);
  const server = new WebhookServer({
    config,
    onReview: (result, request) => {
      const fields = { uid: request?.uid, namespace: request?.namespace, name: request?.name, reason: result.reason };
      if (result.outcome === 'injected') log.info(fields, 'sidecar injected');
      else if (result.outcome === 'malformed') log.warn(fields, 'malformed review (400)');
      else log.debug(fields, 'not injected');
    },
  });
  const address = await server.listen();
  log.info({ listen: `${address.address}:${address.port}`, namespace: config.namespace, selection: config.selection }, 'webhook started');
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({ signal, ...server.stats }, 'webhook stopping');
  await server.close();
  return 0;
}
