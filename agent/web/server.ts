// The browser view's HTTP side, served by the collector process itself: the
// page (web/index.html, web/style.css and the bundle scripts/build-web.sh
// makes of web/main.ts), and /events, a server-sent event stream of
// Snapshots shaped by the page's query string. One timer pushes to every
// open stream; a client that does not read is skipped until it drains, never
// buffered for. Nothing from the network is put into HTML here: the page
// builds its DOM with textContent, and the Content-Security-Policy allows no
// inline script, so a `<script>` in a pod label stays text.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { gzipSync } from 'node:zlib';
import { PodflowError } from '../../common/errors.ts';
import { DIMENSIONS, type FlowFilter, FILTER_KEYS, METRICS, type ViewQuery, type ViewStats } from '../../web/protocol.ts';
import { hostAndPort } from '../http.ts';
import type { FlowWindow } from './flow-window.ts';

const WEB_DIR = new URL('../../web/', import.meta.url);
/** Streams open at once; more are refused (503): each costs a snapshot per push. */
export const MAX_STREAMS = 32;
/** Longest filter value taken from a query string. */
const MAX_FILTER_CHARS = 200;

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

export interface WebViewOptions {
  window: FlowWindow;
  stats: () => Omit<ViewStats, 'dropped'>;
  /** How often every open page gets a new snapshot; default 1 s. */
  pushMs?: number;
}

interface Stream {
  res: ServerResponse;
  query: ViewQuery;
  /** The last write did not fit: wait for 'drain'. */
  blocked: boolean;
}

export class WebView {
  readonly #options: WebViewOptions;
  readonly #assets: Map<string, Asset>;
  readonly #streams = new Set<Stream>();
  readonly #server: Server;
  #timer: NodeJS.Timeout | undefined;
  /** Bound to a loopback address: Host must then name an address or localhost (DNS rebinding). */
  #loopbackOnly = true;

  constructor(options: WebViewOptions) {
    this.#options = options;
    this.#assets = loadAssets();
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  /** Bytes of the page with gzip, as a browser fetches it (HTML, CSS, script). */
  pageBytes(): number {
    let n = 0;
    for (const a of this.#assets.values()) n += a.gzip.length;
    return n;
  }

  /** Listens on HOST:PORT; resolves with the address taken and whether it is reachable beyond this machine. */
  async listen(address: string): Promise<{ url: string; exposed: boolean }> {
    const { host, port } = hostAndPort(address);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--web wants HOST:PORT, got '${address}'`);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => reject(new PodflowError('PODFLOW_ERR_WEB_LISTEN', `${address}: ${err.code ?? err.message}`, { cause: err })));
      this.#server.listen({ host, port }, () => resolve());
    });
    const bound = this.#server.address() as AddressInfo;
    this.#loopbackOnly = isLoopback(bound.address);
    const shown = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    this.#timer = setInterval(() => this.#push(), this.#options.pushMs ?? 1_000);
    this.#timer.unref();
    return { url: `http://${shown}:${bound.port}/`, exposed: !this.#loopbackOnly };
  }

  /** Ends every stream and stops listening. Idempotent. */
  close(): Promise<void> {
    clearInterval(this.#timer);
    for (const s of this.#streams) s.res.end();
    this.#streams.clear();
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://view');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (this.#loopbackOnly && !hostAllowed(req.headers.host)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('podflow: the web view answers only to localhost or an IP address\n');
      return;
    }
    if (url.pathname === '/events') {
      this.#openStream(url.searchParams, res);
      return;
    }
    const asset = this.#assets.get(url.pathname === '/' ? '/index.html' : url.pathname);
    if (!asset) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    res.writeHead(200, {
      'content-type': asset.type,
      'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:",
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : gzip ? asset.gzip : asset.body);
  }

  #openStream(params: URLSearchParams, res: ServerResponse): void {
    if (this.#streams.size >= MAX_STREAMS) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end(`podflow: at most ${MAX_STREAMS} pages at once\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    const stream: Stream = { res, query: parseQuery(params), blocked: false };
    this.#streams.add(stream);
    res.on('close', () => this.#streams.delete(stream));
    res.on('drain', () => (stream.blocked = false));
    this.#send(stream);
  }

  #push(): void {
    for (const stream of this.#streams) if (!stream.blocked) this.#send(stream);
  }

  #send(stream: Stream): void {
    const snapshot = this.#options.window.snapshot(stream.query, this.#options.stats());
    stream.blocked = !stream.res.write(`data: ${JSON.stringify(snapshot)}\n\n`);
  }
}

/** The page's view from its query string; what is missing or unknown takes the default. */
export function parseQuery(params: URLSearchParams): ViewQuery {
  const pick = <T extends string>(name: string, allowed: readonly T[]): T => {
    const v = params.get(name) as T | null;
    return v !== null && allowed.includes(v) ? v : allowed[0]!;
  };
  const filter = {} as FlowFilter;
  for (const key of FILTER_KEYS) filter[key] = (params.get(key) ?? '').slice(0, MAX_FILTER_CHARS).trim();
  return { dimension: pick('dimension', DIMENSIONS), metric: pick('metric', METRICS), filter, selected: (params.get('selected') ?? '').slice(0, MAX_FILTER_CHARS) };
}

function loadAssets(): Map<string, Asset> {
  const read = (path: string) => {
    try {
      return readFileSync(new URL(path, WEB_DIR));
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_WEB_BUNDLE', `web/${path}: ${(err as Error).message} (./run setup bundles the page: scripts/build-web.sh)`, { cause: err });
    }
  };
  const asset = (path: string, type: string): Asset => {
    const body = read(path);
    return { type, body, gzip: gzipSync(body, { level: 9 }) };
  };
  return new Map([
    ['/index.html', asset('index.html', 'text/html; charset=utf-8')],
    ['/style.css', asset('style.css', 'text/css; charset=utf-8')],
    ['/app.js', asset('build/app.js', 'text/javascript; charset=utf-8')],
  ]);
}

export function isLoopback(address: string): boolean {
  return address === '::1' || address === 'localhost' || (isIP(address) === 4 && address.startsWith('127.')) || address.startsWith('::ffff:127.');
}

function hostAllowed(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || isIP(name) !== 0;
}
