// Reaching the API server: the kubeconfig (a file, or the in-cluster service
// account) loaded and checked at start-up, so a broken one fails then with its
// file named; and what client-node reports when a request fails, turned into
// one coded error naming the resource and the cause.
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { PodflowError, type ErrorCode } from '../common/errors.ts';

/** Throws PODFLOW_ERR_KUBE_CONFIG for a missing, empty or broken file. */
export function loadKubeconfigFile(file: string): KubeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new PodflowError('PODFLOW_ERR_KUBE_CONFIG', `kubeconfig ${file}: cannot read it (${why})`, { cause: err });
  }
  if (text.trim() === '') throw new PodflowError('PODFLOW_ERR_KUBE_CONFIG', `kubeconfig ${file}: the file is empty`);
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromFile(file);
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_KUBE_CONFIG', `kubeconfig ${file}: not a valid kubeconfig (${firstLine(err)})`, { cause: err });
  }
  checkKubeConfig(kubeConfig, `kubeconfig ${file}`);
  return kubeConfig;
}

/** Throws PODFLOW_ERR_KUBE_CONFIG outside a cluster or for a broken service account. */
export function loadInCluster(): KubeConfig {
  const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port } = process.env;
  if (!host || !port) {
    throw new PodflowError(
      'PODFLOW_ERR_KUBE_CONFIG',
      'no kubeconfig given and not in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset)',
    );
  }
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromCluster();
  checkKubeConfig(kubeConfig, 'in-cluster config');
  return kubeConfig;
}

/** Checks what client-node only finds out at the first request, so a broken config fails at start-up with its file named. */
function checkKubeConfig(kubeConfig: KubeConfig, where: string): void {
  const fail = (problem: string): never => {
    throw new PodflowError('PODFLOW_ERR_KUBE_CONFIG', `${where}: ${problem}`);
  };
  const contextName = kubeConfig.getCurrentContext();
  if (!contextName) fail('no current-context');
  const context = kubeConfig.getContextObject(contextName);
  if (!context) fail(`current-context "${contextName}" is not among its contexts`);
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) fail(`context "${contextName}" names cluster "${context?.cluster}", which is not among its clusters`);
  if (!cluster?.server) fail(`cluster "${cluster?.name}" has no server URL`);
  let url: URL | undefined;
  try {
    url = new URL(cluster!.server);
  } catch {
    fail(`cluster "${cluster!.name}" has a malformed server URL "${cluster!.server}"`);
  }
  if (url!.protocol === 'http:' && !cluster!.skipTLSVerify) {
    fail(`cluster "${cluster!.name}" uses plain http (${cluster!.server}); client-node refuses that without insecure-skip-tls-verify`);
  }
  if (url!.protocol !== 'http:' && url!.protocol !== 'https:') fail(`cluster "${cluster!.name}" server URL is not http(s): ${cluster!.server}`);
  for (const [what, file] of [['certificate-authority', cluster!.caFile], ['token file', tokenFileOf(kubeConfig)]] as const) {
    if (file === undefined) continue;
    try {
      readFileSync(file);
    } catch (err) {
      fail(`cannot read its ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  if (!kubeConfig.getCurrentUser()) fail(`context "${contextName}" names user "${context?.user}", which is not among its users`);
}

function tokenFileOf(kubeConfig: KubeConfig): string | undefined {
  const config = kubeConfig.getCurrentUser()?.authProvider?.config as { tokenFile?: string } | undefined;
  return config?.tokenFile;
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0] ?? '';
}

/**
 * Turns what client-node reports (ApiException from a list, an Error with a
 * statusCode from a watch, a fetch TypeError with a socket cause) into one
 * coded error whose message names the resource and the cause.
 */
export function describeKubeError(plural: string, server: string, err: unknown): PodflowError {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; name?: string; message?: string; cause?: { code?: string; message?: string } };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : typeof e?.code === 'number' ? e.code : undefined;
  const serverSays = statusMessage(e?.body);
  const suffix = serverSays ? ` (the server says: ${serverSays})` : '';
  let code: ErrorCode;
  let detail: string;
  if (status === 401) {
    code = 'PODFLOW_ERR_KUBE_UNAUTHORIZED';
    detail = `${plural}: unauthorized (401): the API server rejected the credentials; check the token of the kubeconfig user or service account${suffix}`;
  } else if (status === 403) {
    code = 'PODFLOW_ERR_KUBE_FORBIDDEN';
    detail = `${plural}: forbidden (403): the service account may not list or watch ${plural}; check the ClusterRole${suffix}`;
  } else if (status !== undefined) {
    code = 'PODFLOW_ERR_KUBE_API';
    detail = `${plural}: the API server answered HTTP ${status}${suffix || `: ${firstLine(err)}`}`;
  } else if (isConnectionError(e)) {
    code = 'PODFLOW_ERR_KUBE_UNREACHABLE';
    const cause = e.cause?.code ?? (typeof e.code === 'string' ? e.code : undefined) ?? e.cause?.message ?? firstLine(err);
    detail = `${plural}: cannot reach the API server at ${server} or the connection was lost (${cause})`;
  } else {
    code = 'PODFLOW_ERR_KUBE_API';
    detail = `${plural}: unexpected error from the Kubernetes client: ${firstLine(err)}`;
  }
  return new PodflowError(code, detail, { cause: err });
}

/** undici's fetch fails with "fetch failed" (cause: the socket error) and a cut stream with "terminated"; client timeouts are TimeoutErrors. */
function isConnectionError(e: { code?: unknown; name?: string; message?: string; cause?: { code?: string } }): boolean {
  return (
    typeof e?.cause?.code === 'string' ||
    typeof e?.code === 'string' ||
    e?.name === 'TimeoutError' ||
    e?.message === 'fetch failed' ||
    e?.message === 'terminated'
  );
}

/** The message of a Kubernetes Status body (parsed or as text), or the start of a body that is not one. */
export function statusMessage(body: unknown): string | undefined {
  if (typeof body === 'string') {
    try {
      return statusMessage(JSON.parse(body));
    } catch {
      return body.slice(0, 200) || undefined;
    }
  }
  const message = (body as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

/** A list refused because the server cannot serve the version asked for: 410 Expired, or 504 "Too large resource version". */
export function versionUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; body?: unknown };
  if (e?.code === 410) return true;
  return e?.code === 504 && /too large resource version/i.test(statusMessage(e.body) ?? '');
}
