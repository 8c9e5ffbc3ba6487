// The agent's HTTP endpoints: /healthz (the process runs), /readyz (the
// agent itself works: capture started, caches synced; collectors are not part
// of it, see Agent.notReady) and /metrics (Prometheus text format).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { PodflowError } from '../common/errors.ts';

export interface HttpEndpoints {
  registry: Registry;
  /** undefined when ready, else why not (the body of the 503). */
  notReady: () => string | undefined;
}

export class AgentHttp {
  readonly #server: Server;
  readonly #endpoints: HttpEndpoints;

  constructor(endpoints: HttpEndpoints) {
    this.#endpoints = endpoints;
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const why = this.#endpoints.notReady();
        res.writeHead(why ? 503 : 200, { 'content-type': 'text/plain' }).end(why ? `not ready: ${why}\n` : 'ok\n');
      } else if (path === '/metrics') {
        this.#endpoints.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.#endpoints.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
        );
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /healthz, /readyz, /metrics\n');
      }
    });
  }

  /** Listens on HOST:PORT ('[::]:9464', '127.0.0.1:0'); resolves with the address taken. */
  listen(address: string): Promise<AddressInfo> {
    const { host, port } = hostAndPort(address);
    return new Promise((resolve, reject) => {
      this.#server.once('error', (err) => reject(new PodflowError('PODFLOW_ERR_AGENT_LISTEN', `${address}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err })));
      this.#server.listen({ host, port }, () => resolve(this.#server.address() as AddressInfo));
    });
  }

  /** Stops listening and ends idle keep-alive connections. Idempotent. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

/** HOST:PORT, [IPv6]:PORT or :PORT (every address) as node:net's listen wants them. */
export function hostAndPort(address: string): { host: string | undefined; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[(.*)\]$/, '$1') || undefined, port: Number(address.slice(i + 1)) };
}
