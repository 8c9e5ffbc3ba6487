// `podflow demo`: a newcomer's first minutes with podflow, with every real
// part running. It builds simulated nodes (real network namespaces standing
// for pods, joined by veth pairs to a bridge; two nodes, each with the pods
// its own agent captures), starts the test Kubernetes API server holding the
// matching objects (two Deployments and a StatefulSet in two namespaces, a
// Service), runs `podflow agent` for each node as its own process against
// both, exactly as on a node, and shows what the agents export in the
// collector view: flows named by namespace, pod and workload at both ends.
// Real traffic runs between the pods, through the Service's ClusterIP and
// over one pod's own `lo`. The collector also serves the browser view
// (agent/web/), and the demo prints its URL. Ctrl-C (or --seconds) stops the
// agents (they flush every open flow) and removes everything the demo made.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pc from 'picocolors';
import { PodflowError } from '../../common/errors.ts';
import { type CollectedRecord, Collector } from '../../ipfix/collector.ts';
import { KubeApiServer, type KubeObject } from '../../sim/kube-apiserver.ts';
import { canRunSimNode, SimNode, type SimPod } from '../../sim/simnode.ts';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { ConversationTable, flowLine, statsLine } from '../collector-view.ts';
import { type StartedWebView, startWebView } from '../web/start.ts';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const DEMO_TRAFFIC = fileURLToPath(new URL('../../sim/demo-traffic.ts', import.meta.url));
/**
 * Two nodes, so the page's traffic by node has a colour per node (the seed's
 * picture): the pods share one bridge, and a node is which agent captures them
 * (its namespaces.pathFilter) and where the API server says they run.
 */
const NODES = [
  { name: 'demo-node-1', address: '198.18.0.253', pods: [1, 2] },
  { name: 'demo-node-2', address: '198.18.0.254', pods: [3] },
] as const;
type DemoNode = (typeof NODES)[number];
/** The ClusterIP of the db Service: an extra address on db-0's eth0, as there is no kube-proxy to translate it. */
const DB_SERVICE_IP = '198.18.0.200';
/** Short timeouts so flows end (and show) within seconds; the agent's defaults are 30 s idle, 300 s active. */
const IDLE_TIMEOUT_SECONDS = 2;
const ACTIVE_TIMEOUT_SECONDS = 10;
const SHUTDOWN_SECONDS = 5;
/** The page's address unless --web says otherwise; when it is taken, any free port of 127.0.0.1. */
const WEB_ADDRESS = '127.0.0.1:8484';
/** The demo's flows are short: the page's chart steps 2 s over 5 minutes (the collector's default is 10 s over 15). */
const WEB_WINDOW = { stepMs: 2_000, windowMs: 5 * 60_000 };

const usage = `usage: podflow demo [--seconds N] [--plain] [--web HOST:PORT]

  --seconds N   stop after N seconds (default: run until Ctrl-C)
  --web HOST:PORT  where the collector serves the view in a browser (default
                ${WEB_ADDRESS}, or any free port of 127.0.0.1 when that is taken)
  --plain       print each flow as a line instead of the live table (default when
                standard output is not a terminal)
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { seconds: { type: 'string' }, plain: { type: 'boolean' }, web: { type: 'string' }, help: { type: 'boolean' } } });
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', (err as Error).message, { cause: err });
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const seconds = parsed.values.seconds === undefined ? Infinity : Number(parsed.values.seconds);
  if (!(seconds > 0)) throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--seconds must be a positive number, got ${parsed.values.seconds}`);
  const live = !parsed.values.plain && process.stdout.isTTY === true;

  const able = canRunSimNode();
  if (!able.ok) {
    process.stderr.write(`podflow demo ${able.reason}: it builds network namespaces and captures in them. Run it as root.\n`);
    return 1;
  }

  const demo = new Demo(live, parsed.values.web);
  let stopping: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (stopping = resolve));
  // SIGHUP too: a closed terminal must not leave namespaces behind.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.once(signal, stopping!);
  // A reader that goes away (`podflow demo --plain | head`) stops the demo as
  // Ctrl-C does: unhandled, the write error would end the process before it
  // removed its namespaces.
  const onOutputError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`podflow demo: standard output failed: ${err.message}; stopping\n`);
    stopping!();
  };
  process.stdout.on('error', onOutputError);
  const timer = Number.isFinite(seconds) ? setTimeout(stopping!, seconds * 1000) : undefined;
  try {
    await demo.start();
    await stopped;
    await demo.stopAgents();
  } finally {
    clearTimeout(timer);
    for (const signal of signals) process.off(signal, stopping!);
    await demo.close();
  }
  demo.printSummary();
  return 0;
}

/** Pod objects as the API server would hold them, for a pod of the simulated node. */
function podObject(name: string, namespace: string, sim: SimPod, owner: { kind: string; name: string }, app: string, node: DemoNode): KubeObject {
  return {
    metadata: {
      name,
      namespace,
      uid: `uid-${name}`,
      labels: { app },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: `uid-${owner.name}`, controller: true }],
    },
    spec: { nodeName: node.name, containers: [{ name: app, image: `example/${app}` }] },
    status: { phase: 'Running', podIP: sim.ipv4, podIPs: [{ ip: sim.ipv4 }, { ip: sim.ipv6 }] },
  };
}

function replicaSet(name: string, namespace: string, deployment: string): KubeObject {
  return { metadata: { name, namespace, uid: `uid-${name}`, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment, uid: `uid-${deployment}`, controller: true }] } };
}

class Demo {
  readonly #live: boolean;
  readonly #webAddress: string | undefined;
  #web: StartedWebView | undefined;
  readonly #dir = mkdtempSync(join(tmpdir(), 'podflow-demo-'));
  readonly #sim = new SimNode();
  readonly #api = new KubeApiServer();
  readonly #table = new ConversationTable();
  readonly #collector: Collector;
  readonly #startedAt = Date.now();
  readonly #agents: Array<{ node: DemoNode; child: ChildProcess; exit: Promise<number | null>; log: string }> = [];
  #redraw: NodeJS.Timeout | undefined;
  readonly #killAgents = () => {
    for (const { child } of this.#agents) if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
  };

  constructor(live: boolean, webAddress: string | undefined) {
    this.#live = live;
    this.#webAddress = webAddress;
    this.#collector = new Collector({ listen: 'tcp://127.0.0.1:0', onRecord: (r) => this.#onRecord(r) });
    process.once('exit', this.#killAgents);
  }

  async start(): Promise<void> {
    this.#say(`${pc.bold('podflow demo')}: two simulated nodes (network namespaces ${this.#sim.tag}…) with three pods, a Kubernetes API server, an agent per node and a collector`);
    const web = this.#sim.addPod(1);
    const api = this.#sim.addPod(2);
    const db = this.#sim.addPod(3);
    // The Service's ClusterIP lives on db-0 (no kube-proxy here), and api reaches it directly.
    this.#sim.exec(db.netns, 'ip', ['addr', 'add', `${DB_SERVICE_IP}/32`, 'dev', 'eth0']);
    this.#sim.exec(api.netns, 'ip', ['neigh', 'replace', DB_SERVICE_IP, 'lladdr', db.mac, 'dev', 'eth0', 'nud', 'permanent']);

    await this.#api.start();
    for (const node of NODES) this.#api.create('node', { metadata: { name: node.name }, status: { addresses: [{ type: 'InternalIP', address: node.address }] } });
    const [node1, node2] = NODES;
    this.#api.create('replicaset', replicaSet('web-7d9f5', 'shop', 'web'));
    this.#api.create('replicaset', replicaSet('api-6c4b8', 'shop', 'api'));
    this.#api.create('pod', podObject('web-7d9f5-k2x8q', 'shop', web, { kind: 'ReplicaSet', name: 'web-7d9f5' }, 'web', node1));
    this.#api.create('pod', podObject('api-6c4b8-m4t7z', 'shop', api, { kind: 'ReplicaSet', name: 'api-6c4b8' }, 'api', node1));
    this.#api.create('pod', podObject('db-0', 'data', db, { kind: 'StatefulSet', name: 'db' }, 'db', node2));
    this.#api.create('service', {
      metadata: { name: 'db', namespace: 'data', uid: 'uid-svc-db' },
      spec: { clusterIP: DB_SERVICE_IP, clusterIPs: [DB_SERVICE_IP], ports: [{ name: 'postgres', port: 5432, protocol: 'TCP' }] },
    });

    const { port } = await this.#collector.start();
    await this.#startWeb();
    for (const node of NODES) await this.#startAgent(port, node);

    const traffic = (pod: SimPod, ...args: string[]) => this.#sim.spawn(pod.netns, NODE_BIN, [DEMO_TRAFFIC, ...args]);
    traffic(api, 'serve', '8080');
    traffic(db, 'serve', '5432');
    await sleep(500); // the servers listen before the clients start
    traffic(web, 'tcp-client', api.ipv4, '8080', '250000', '1500');
    traffic(web, 'tcp-client', api.ipv6, '8080', '40000', '2500');
    traffic(api, 'tcp-client', DB_SERVICE_IP, '5432', '120000', '1000');
    traffic(api, 'udp-client', db.ipv4, '5432', '300', '200');
    traffic(db, 'loopback', '6379', '8000', '700');
    this.#sim.spawn(web.netns, 'ping', ['-q', '-i', '0.5', db.ipv4]);

    this.#say(
      `nodes: ${NODES[0].name} runs shop/web and shop/api, ${NODES[1].name} data/db-0.\n` +
      `traffic: web → api (TCP over IPv4 and IPv6), api → the db Service (TCP) and db-0 (UDP), web pings db-0, db-0 talks to itself over lo.\n` +
        `flows end after ${IDLE_TIMEOUT_SECONDS} s idle or ${ACTIVE_TIMEOUT_SECONDS} s active; agents' logs: ${this.#agents.map((a) => a.log).join(', ')}. ${pc.dim('Ctrl-C stops and removes everything.')}`,
    );
    if (this.#live) this.#redraw = setInterval(() => this.#render(), 1000);
  }

  /** SIGTERM: each agent ends every open flow, exports and exits; the collector gets them all. */
  async stopAgents(): Promise<void> {
    clearInterval(this.#redraw);
    const running = this.#agents.filter((a) => a.child.exitCode === null);
    if (running.length === 0) return;
    for (const a of running) a.child.kill('SIGTERM');
    await Promise.all(running.map(async (a) => {
      const code = await Promise.race([a.exit, sleep((SHUTDOWN_SECONDS + 2) * 1000).then(() => 'timeout' as const)]);
      if (code !== 0) process.stderr.write(`podflow demo: the agent of ${a.node.name} ended with ${code}; its log: ${a.log}\n`);
    }));
    await sleep(200); // the last records are on their way over loopback
  }

  async close(): Promise<void> {
    clearInterval(this.#redraw);
    this.#killAgents();
    process.off('exit', this.#killAgents);
    await this.#collector.close();
    await this.#web?.view.close();
    this.#sim.destroy();
    await this.#api.stop();
    if (this.#live) this.#render();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  printSummary(): void {
    const s = this.#collector.stats();
    process.stdout.write(
      `\n${pc.bold('summary')}: the collector received ${s.flowRecords} flows in ${s.messages} IPFIX messages (${s.badMessages} bad). ` +
        `Removed the simulated nodes, the API server and the agents.\n` +
        `Next: ${pc.cyan('./run podflow replay FILE.pcap --output file:flows.ipfix')} meters a capture file; ` +
        `${pc.cyan('./run podflow collect --listen udp://127.0.0.1:4739')} is this collector view on its own.\n`,
    );
  }

  async #startAgent(collectorPort: number, node: DemoNode): Promise<void> {
    const config = join(this.#dir, `agent-${node.name}.yaml`);
    writeFileSync(config, [
      'clusterName: demo',
      `collectors: ['tcp://127.0.0.1:${collectorPort}']`,
      'labelKeys: [app]',
      `flow: {idleTimeoutSeconds: ${IDLE_TIMEOUT_SECONDS}, activeTimeoutSeconds: ${ACTIVE_TIMEOUT_SECONDS}}`,
      // Only this node's pods of the demo: on a real node the agent takes every pod namespace.
      `namespaces: {netnsDirs: [/run/netns], proc: false, pathFilter: '^/run/netns/${this.#sim.tag}p(${node.pods.join('|')})$', rescanSeconds: 0.2}`,
      "metrics: {listen: '127.0.0.1:0'}",
      // lo too (off by default): the demo's database pod talks to its own sidecar over it.
      'capture: {loopback: true}',
      `shutdown: {timeoutSeconds: ${SHUTDOWN_SECONDS}}`,
      '',
    ].join('\n'));
    const kubeconfig = this.#api.writeKubeconfig(join(this.#dir, 'kubeconfig'));
    const log = join(this.#dir, `agent-${node.name}.log`);
    writeFileSync(log, '');
    const out = openSync(log, 'a');
    // Its own process group: Ctrl-C reaches the demo, which stops the agent with SIGTERM.
    const child = spawn(NODE_BIN, [...NODE_FLAGS, CLI, 'agent', '--config', config, '--kubeconfig', kubeconfig], {
      env: { PATH: process.env.PATH, NODE_NAME: node.name },
      stdio: ['ignore', out, out],
      detached: true,
    });
    closeSync(out); // the agent has its own copy
    this.#agents.push({ node, child, log, exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))) });
    const started = Date.now();
    while (!readFileSync(log, 'utf8').includes('"agent started"')) {
      if (child.exitCode !== null || Date.now() - started > 20_000) {
        throw new PodflowError('PODFLOW_ERR_DEMO_AGENT', `the agent of ${node.name}; its log:\n${readFileSync(log, 'utf8')}`);
      }
      await sleep(100);
    }
    this.#say(`the agent of ${node.name} runs (pid ${child.pid}), watching the API server at ${this.#api.url} and exporting IPFIX over TCP to the collector.`);
  }

  async #startWeb(): Promise<void> {
    const start = (address: string) => startWebView(address, () => this.#collector.stats(), (line) => this.#say(line), WEB_WINDOW);
    try {
      this.#web = await start(this.#webAddress ?? WEB_ADDRESS);
    } catch (err) {
      // Another demo (or anything) has the default port: any free one will do.
      if (this.#webAddress !== undefined || !(err instanceof PodflowError && err.code === 'PODFLOW_ERR_WEB_LISTEN')) throw err;
      this.#web = await start('127.0.0.1:0');
    }
  }

  #onRecord(record: CollectedRecord): void {
    if (record.options) return;
    this.#table.add(record);
    this.#web?.window.add(record);
    if (!this.#live) process.stdout.write(`${flowLine(record)}\n`);
  }

  #render(): void {
    const elapsed = Math.round((Date.now() - this.#startedAt) / 1000);
    const header =
      `${pc.bold('podflow demo')} · nodes ${pc.dim(`${NODES.map((n) => n.name).join(', ')} (${this.#sim.tag})`)} · ${elapsed}s · collector: ${statsLine(this.#collector.stats())}\n` +
      `pods: ${pc.bold('shop/web')} ${pc.dim('Deployment')}  ${pc.bold('shop/api')} ${pc.dim('Deployment')} ${pc.dim(`on ${NODES[0].name}`)}  ${pc.bold('data/db-0')} ${pc.dim(`StatefulSet, behind Service data/db, on ${NODES[1].name}`)}\n` +
      `in a browser: ${pc.cyan(this.#web?.url ?? '')} ${pc.dim('(traffic over time, the service map, the flows)')}\n\n` +
      `${pc.bold('what the collector received')} ${pc.dim('(IPFIX from the agent, named with Kubernetes identity)')}\n`;
    const rows = (process.stdout.rows ?? 30) - 10;
    process.stdout.write(`\x1b[H\x1b[J${header}${this.#table.render(rows)}\n${pc.dim('Ctrl-C stops the agent (it flushes every open flow) and removes everything.')}\n`);
  }

  #say(line: string): void {
    process.stdout.write(`${line}\n`);
  }
}
