// A real Prometheus server (Debian's `prometheus`) for tests: a config written
// to a temporary directory, TSDB there too, listening on a free loopback port;
// queried over its HTTP API; stopped by PID (SIGTERM, then SIGKILL).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';

export const PROMETHEUS_BIN = process.env.PODFLOW_PROMETHEUS ?? 'prometheus';

/** Why no Prometheus server can run here, or undefined. */
export function prometheusProblem(): string | undefined {
  const r = spawnSync(PROMETHEUS_BIN, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${PROMETHEUS_BIN} not found (${(r.error as NodeJS.ErrnoException).code}): install the Debian package prometheus`;
  if (r.status !== 0) return `${PROMETHEUS_BIN} --version failed: ${r.stderr}`;
  return undefined;
}

/** A loopback TCP port free now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface PromSample { metric: Record<string, string>; value: [number, string] }

export interface PrometheusServer {
  readonly url: string;
  readonly child: ChildProcess;
  /** Its log (stderr) so far. */
  readonly log: string;
  /** An instant query (now): the vector's samples. Throws on a query error, with Prometheus' message. */
  query(expr: string): Promise<PromSample[]>;
  /** SIGTERM by PID, SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `prometheus` with scrapeConfigs (Prometheus' own YAML form) and the
 * given global scrape interval, data in dir; resolves once /-/ready answers 200.
 */
export async function startPrometheus(dir: string, scrapeConfigs: object[], scrapeInterval = '1s', timeoutMs = 20_000): Promise<PrometheusServer> {
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, stringify({ global: { scrape_interval: scrapeInterval, scrape_timeout: scrapeInterval, evaluation_interval: scrapeInterval }, scrape_configs: scrapeConfigs }));
  const address = `127.0.0.1:${await freePort()}`;
  const child = spawn(PROMETHEUS_BIN, [
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir, 'tsdb')}`,
    `--web.listen-address=${address}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://${address}`;
  const stop = async () => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid, 'SIGTERM');
    const timer = setTimeout(() => child.exitCode === null && child.signalCode === null && process.kill(child.pid!, 'SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  for (const started = Date.now(); ; await sleep(100)) {
    if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${log}`);
    const ok = await fetch(`${url}/-/ready`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() - started > timeoutMs) {
      await stop();
      throw new Error(`prometheus not ready after ${timeoutMs} ms: ${log}`);
    }
  }
  return {
    url,
    child,
    get log() {
      return log;
    },
    async query(expr: string) {
      const res = await fetch(`${url}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query: expr }) });
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] | [number, string] } };
      if (body.status !== 'success') throw new Error(`query ${expr}: ${body.error}`);
      const { resultType, result } = body.data!;
      // A scalar is one value; a vector its samples.
      return resultType === 'scalar' ? [{ metric: {}, value: result as [number, string] }] : (result as PromSample[]);
    },
    stop,
  };
}
