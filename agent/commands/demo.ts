// `podflow demo`: a newcomer's first minutes with podflow. It builds a
// simulated node (real network namespaces standing for three pods, joined by
// veth pairs to a bridge), runs real traffic between the pods and over one
// pod's own `lo`, and captures it the way the agent does: namespace discovery,
// a capture handle inside each pod namespace, the flow meter. The flows are
// shown live as they end. Ctrl-C (or --seconds) removes everything it made.
//
// Pod names here come from the demo's own table of the namespaces it made;
// the agent names both ends from Kubernetes (a later landing).
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import pc from 'picocolors';
import { PodflowError } from '../../common/errors.ts';
import { PacketDecoder, protocolName } from '../../flow/decode.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import { NetnsDiscovery } from '../../netns/discovery.ts';
import { NodeCapture } from '../../netns/node-capture.ts';
import { canRunSimNode, NODE_BIN, SimNode, type SimPod } from '../../sim/simnode.ts';
import { formatIPv4, formatIPv6 } from '../../flow/address.ts';

const DEMO_TRAFFIC = new URL('../../sim/demo-traffic.ts', import.meta.url).pathname;

/** The scene: who the pods are and what they say to each other. */
const PODS = [
  { index: 1, name: 'web' },
  { index: 2, name: 'api' },
  { index: 3, name: 'db' },
] as const;

/** Short timeouts so flows end (and show) within seconds; the agent's defaults are 30 s idle, 300 s active. */
const IDLE_TIMEOUT_MS = 2_000;
const ACTIVE_TIMEOUT_MS = 10_000;
const SHOWN_FLOWS = 14;

const END_REASON_NAMES: Record<EndReason, string> = {
  [EndReason.IDLE_TIMEOUT]: 'idle',
  [EndReason.ACTIVE_TIMEOUT]: 'active',
  [EndReason.END_OF_FLOW]: 'end of flow',
  [EndReason.FORCED_END]: 'forced end',
  [EndReason.LACK_OF_RESOURCES]: 'lack of resources',
};

const usage = `usage: podflow demo [--seconds N] [--plain]

  --seconds N   stop after N seconds (default: run until Ctrl-C)
  --plain       print each flow as a line instead of a live table (default when
                standard output is not a terminal)
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { seconds: { type: 'string' }, plain: { type: 'boolean' }, help: { type: 'boolean' } } });
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

  const demo = new Demo(live);
  const stop = () => demo.stop();
  // SIGHUP too: a closed terminal must not leave namespaces behind.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.once(signal, stop);
  try {
    await demo.start();
    await demo.running(seconds * 1000);
  } finally {
    for (const signal of signals) process.off(signal, stop);
    demo.close();
  }
  demo.printSummary();
  return 0;
}

interface ShownFlow {
  record: FlowRecord;
  observedAt: string;
}

class Demo {
  readonly #live: boolean;
  readonly #sim = new SimNode();
  readonly #pods = new Map<string, { name: string; pod: SimPod }>();
  readonly #podByAddress = new Map<string, string>();
  readonly #podByNetnsInode = new Map<number, string>();
  readonly #pointNames = new Map<number, string>();
  readonly #recent: ShownFlow[] = [];
  readonly #endedByReason = new Map<EndReason, number>();
  readonly #startedAt = Date.now();
  readonly #meter: FlowMeter;
  readonly #ingest: PacketIngest;
  readonly #discovery: NetnsDiscovery;
  readonly #capture: NodeCapture;
  #timers: NodeJS.Timeout[] = [];
  #wake: (() => void) | undefined;
  #stopped = false;

  constructor(live: boolean) {
    this.#live = live;
    this.#meter = new FlowMeter({
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      activeTimeoutMs: ACTIVE_TIMEOUT_MS,
      onFlow: (record) => this.#onFlow(record),
    });
    this.#ingest = new PacketIngest(new PacketDecoder(), this.#meter);
    // Only the demo's namespaces: on a real node the agent takes them all.
    this.#discovery = new NetnsDiscovery({ netnsDirs: ['/run/netns'], procRoot: null, rescanIntervalMs: 500 });
    this.#capture = new NodeCapture({
      discovery: this.#discovery,
      sink: (id, linkType, buf, start, end) => this.#ingest.ingest(id, linkType, buf, start, end),
      meter: this.#meter,
      namespaceFilter: (ns) => this.#podByNetnsInode.has(ns.inode),
    });
    this.#capture.on('event', (event) => {
      if (event.type === 'opened') {
        const pod = this.#podByNetnsInode.get(event.handle.point.netnsInode) ?? '?';
        this.#pointNames.set(event.handle.point.id, `${pod}/${event.handle.point.interfaceName}`);
      }
    });
  }

  async start(): Promise<void> {
    this.#say(pc.bold('podflow demo') + ': building a simulated node with three pods (network namespaces)…');
    for (const { index, name } of PODS) {
      const pod = this.#sim.addPod(index);
      this.#pods.set(name, { name, pod });
      this.#podByAddress.set(pod.ipv4, name).set(pod.ipv6, name);
      this.#podByNetnsInode.set(statSync(pod.nsPath).ino, name);
    }
    await this.#discovery.start();
    this.#capture.start();

    const web = this.#pods.get('web')!.pod;
    const api = this.#pods.get('api')!.pod;
    const db = this.#pods.get('db')!.pod;
    const traffic = (pod: SimPod, ...args: string[]) => this.#sim.spawn(pod.netns, NODE_BIN, [DEMO_TRAFFIC, ...args]);
    traffic(api, 'serve', '8080');
    traffic(db, 'serve', '5432');
    // Give the servers a moment to listen before the clients start.
    await new Promise((resolve) => setTimeout(resolve, 500));
    traffic(web, 'tcp-client', api.ipv4, '8080', '250000', '1500');
    traffic(web, 'tcp-client', api.ipv6, '8080', '40000', '2500');
    traffic(api, 'tcp-client', db.ipv4, '5432', '12000', '1000');
    traffic(api, 'udp-client', db.ipv4, '5432', '300', '200');
    traffic(db, 'loopback', '6379', '8000', '700');
    this.#sim.spawn(web.netns, 'ping', ['-q', '-i', '0.5', db.ipv4]);

    this.#timers.push(setInterval(() => this.#meter.expire(Date.now()), 250));
    if (this.#live) this.#timers.push(setInterval(() => this.#render(), 1000));
    this.#say(
      `capturing inside each pod's namespace (eth0 north-south, lo east-west); flows end after ${IDLE_TIMEOUT_MS / 1000} s idle or ${ACTIVE_TIMEOUT_MS / 1000} s active.` +
        (this.#live ? '' : '\n') + pc.dim(' Ctrl-C stops and removes everything.'),
    );
  }

  /** Resolves after ms, or at stop(). */
  running(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      if (this.#stopped) resolve();
      if (Number.isFinite(ms)) this.#timers.push(setTimeout(resolve, ms));
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  close(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#capture.close();
    this.#discovery.close();
    this.#meter.flush(EndReason.FORCED_END);
    this.#sim.destroy();
  }

  printSummary(): void {
    if (this.#live) this.#render();
    const c = this.#capture.counters();
    const s = this.#ingest.stats;
    const ended = [...this.#endedByReason].map(([r, n]) => `${END_REASON_NAMES[r]} ${n}`).join(', ');
    process.stdout.write(
      `\n${pc.bold('summary')}: ${s.packets} packets captured at ${c.handlesOpened} observation points, ` +
        `${this.#meter.stats.created} flows (${ended || 'none ended'}), kernel drops ${c.kernelDrops}.\n` +
        `Removed the simulated node. Next: ${pc.cyan('./run podflow replay FILE.pcap')} meters a capture file the same way.\n`,
    );
  }

  #onFlow(record: FlowRecord): void {
    this.#endedByReason.set(record.flowEndReason, (this.#endedByReason.get(record.flowEndReason) ?? 0) + 1);
    const shown = { record, observedAt: this.#pointNames.get(record.observationPointId) ?? '?' };
    this.#recent.unshift(shown);
    this.#recent.length = Math.min(this.#recent.length, SHOWN_FLOWS);
    if (!this.#live) process.stdout.write(`${this.#flowLine(shown)}\n`);
  }

  #endpoint(address: Uint8Array, port: number, protocol: number): string {
    const ip = address.length === 4 ? formatIPv4(address) : formatIPv6(address);
    const name = this.#podByAddress.get(ip) ?? (ip === '127.0.0.1' ? 'localhost' : '');
    const where = address.length === 4 ? ip : `[${ip}]`;
    const withPort = protocol === 6 || protocol === 17 || protocol === 132 ? `${where}:${port}` : where;
    return name ? `${pc.bold(name)} ${pc.dim(withPort)}` : withPort;
  }

  #cells(f: ShownFlow): string[] {
    const r = f.record;
    return [
      pc.cyan(f.observedAt),
      this.#endpoint(r.sourceAddress, r.sourceTransportPort, r.protocolIdentifier),
      this.#endpoint(r.destinationAddress, r.destinationTransportPort, r.protocolIdentifier),
      protocolName(r.protocolIdentifier),
      `${r.packetDeltaCount} / ${r.reversePacketDeltaCount}`,
      `${formatBytes(r.octetDeltaCount)} / ${formatBytes(r.reverseOctetDeltaCount)}`,
      END_REASON_NAMES[r.flowEndReason],
    ];
  }

  #flowLine(f: ShownFlow): string {
    const [at, src, dst, proto, packets, bytes, end] = this.#cells(f);
    return `${at}  ${src} → ${dst}  ${proto}  packets ${packets}  bytes ${bytes}  (${end})`;
  }

  #render(): void {
    const c = this.#capture.counters();
    const elapsed = Math.round((Date.now() - this.#startedAt) / 1000);
    const table = new Table({
      head: ['observed at', 'source', 'destination', 'proto', 'packets → / ←', 'bytes → / ←', 'ended by'].map((h) => pc.bold(h)),
      style: { head: [], border: [] },
      // One line per flow: no rule between rows.
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const f of this.#recent) table.push(this.#cells(f));
    const pods = [...this.#pods.values()].map(({ name, pod }) => `${pc.bold(name)} ${pc.dim(`${pod.ipv4} ${pod.ipv6}`)}`).join('   ');
    const header =
      `${pc.bold('podflow demo')} · simulated node ${pc.dim(this.#sim.tag)} · ${elapsed}s · ` +
      `${c.handlesOpen} capture handles in ${c.namespacesAttached} pod namespaces\n` +
      `pods: ${pods}\n` +
      `${this.#ingest.stats.packets} packets captured · ${this.#meter.stats.active} flows open · ` +
      `${this.#meter.stats.created - this.#meter.stats.active} ended · kernel drops ${c.kernelDrops}\n\n` +
      `${pc.bold('latest finished flows')} ${pc.dim('(web→api TCP over IPv4 and IPv6, api→db TCP and UDP, web pings db, db talks to itself over lo)')}\n`;
    process.stdout.write(`\x1b[H\x1b[J${header}${table.toString()}\n${pc.dim('Ctrl-C stops and removes everything.')}\n`);
  }

  #say(line: string): void {
    process.stdout.write(`${line}\n`);
  }
}

function formatBytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}
