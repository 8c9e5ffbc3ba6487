// One page of a Kubernetes list, read as it streams: each item's JSON is
// cut to the members the caller keeps (enrich/json-fields.ts), parsed on its
// own and handed on, so neither the whole body nor a typed object graph of
// it is ever held (enrich/json-list.ts says why). The request
// is made as client-node's Watch makes its own (its authentication, TLS and
// proxy set-up through RequestContext and its undici dispatcher), so a list
// and a watch reach the server the same way; a refusal is client-node's
// ApiException, as its generated list functions throw. The body is read with
// undici's request, not fetch: a Node stream of the socket's buffers as they
// came, read with backpressure, where fetch's byte stream copies each chunk
// into a new one (bench/enrich/identity-scale.bench.ts, a relist of 100k
// pods, two runs against fetch in the same run: peaks 232 and 236 MiB
// against 260 and 253).
import { ApiException, HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { request } from 'undici';
import type { FieldTree } from './json-fields.ts';
import { JsonListSplitter } from './json-list.ts';

export interface ListPageQuery {
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: 'NotOlderThan';
}

/** The list's own metadata: the version it is as of, and the token of the next page. */
export interface ListPageMetadata {
  resourceVersion: string;
  continue: string | undefined;
}

export interface ListPageItems {
  /** The members of each item read (the rest is skipped unparsed). */
  keep: FieldTree;
  /** Each item, parsed (kept members only). */
  onItem: (item: unknown) => void;
  /** An item that is not valid JSON: skipped, the list goes on. */
  onBadItem: (error: SyntaxError) => void;
}

/** A Status body is small; a proxy's error page need not be: what is kept of it for the error. */
const maxErrorBodyBytes = 64 * 1024;

/**
 * GETs path (e.g. /api/v1/pods) with the query, calling onItem with each
 * item, parsed, in order, or onBadItem. Throws ApiException for an answer other than 200
 * (its body the server's Status text), a SyntaxError for a body that is not
 * a list, and what undici throws for a lost connection or the signal.
 */
export async function listPage(kubeConfig: KubeConfig, path: string, query: ListPageQuery, signal: AbortSignal, items: ListPageItems): Promise<ListPageMetadata> {
  const url = new URL(`${kubeConfig.getCurrentCluster()?.server ?? ''}${path}`);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  const context = new RequestContext(url.toString(), HttpMethod.GET);
  await kubeConfig.applySecurityAuthentication(context);
  const response = await request(url, {
    method: 'GET',
    headers: { ...context.getHeaders(), accept: 'application/json' },
    dispatcher: context.getDispatcher(),
    signal,
  });
  if (response.statusCode !== 200) {
    const body = (await response.body.text()).slice(0, maxErrorBodyBytes);
    const headers = Object.fromEntries(Object.entries(response.headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : String(value)]));
    throw new ApiException(response.statusCode, `HTTP ${response.statusCode} listing ${path}`, body, headers);
  }
  const onItem = (json: string): void => {
    let item: unknown;
    try {
      item = JSON.parse(json);
    } catch (err) {
      return items.onBadItem(err as SyntaxError);
    }
    items.onItem(item);
  };
  const splitter = new JsonListSplitter({ keep: items.keep, onItem, onBadItem: items.onBadItem });
  for await (const chunk of response.body) splitter.push(chunk as Buffer);
  const metadata = splitter.end().metadata as { resourceVersion?: unknown; continue?: unknown } | undefined;
  return {
    resourceVersion: typeof metadata?.resourceVersion === 'string' ? metadata.resourceVersion : '',
    continue: typeof metadata?.continue === 'string' && metadata.continue !== '' ? metadata.continue : undefined,
  };
}
