// `podflow collect --listen URL`: a small IPFIX collector to look at what an
// agent exports. Decodes with podflow's own decoder (templates per transport
// session and observation domain) and shows the flows either as a live table
// of conversations with the Kubernetes identity of both ends, or as JSON lines
// (--json: one object per flow record, keys are element names). Bad messages
// are counted and skipped; the counters are printed on exit.
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import pc from 'picocolors';
import { PodflowError } from '../../common/errors.ts';
import { protocolName } from '../../flow/decode.ts';
import { type CollectedRecord, Collector, type CollectorStats } from '../../ipfix/collector.ts';
import type { FieldValue } from '../../ipfix/decoder.ts';

const USAGE = `usage: podflow collect --listen URL [--json] [--seconds N] [--enterprise PEN]

Receives IPFIX and shows the flows: a live table of conversations (both ends
named by namespace/pod and workload, bytes, packets, rate), or with --json one
JSON object per flow record on stdout (keys are IPFIX element names).

  --listen URL       udp://HOST:PORT, tcp://HOST:PORT or
                     tls://HOST:PORT?cert=FILE&key=FILE[&ca=FILE] (ca: require client certificates)
  --json             JSON lines instead of the table
  --seconds N        stop after N seconds (default: until Ctrl-C or SIGTERM)
  --enterprise PEN   the exporter's Private Enterprise Number (default 32473)
`;

/** Rate window of the table: bytes of the last RATE_WINDOW_MS, per second. */
const RATE_WINDOW_MS = 10_000;
const REDRAW_MS = 1_000;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        json: { type: 'boolean', default: false },
        seconds: { type: 'string' },
        enterprise: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `${(err as Error).message}\n\n${USAGE}`, { cause: err });
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.listen === undefined) throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--listen is required\n\n${USAGE}`);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (seconds !== undefined && !(seconds > 0)) throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--seconds wants a positive number, got '${values.seconds}'`);
  const enterprise = values.enterprise === undefined ? undefined : Number(values.enterprise);
  if (enterprise !== undefined && !Number.isInteger(enterprise)) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--enterprise wants an integer, got '${values.enterprise}'`);
  }

  const view = values.json ? new JsonLines() : new ConversationTable(process.stdout.isTTY === true);
  const collector = new Collector({
    listen: values.listen,
    enterpriseNumber: enterprise,
    onRecord: (r) => {
      if (!r.options) view.add(r);
    },
    onWarning: (message) => process.stderr.write(`podflow collect: ${message}\n`),
  });
  const { host, port } = await collector.start();
  const where = `${collector.listen.protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  process.stderr.write(`podflow collect: listening on ${where}\n`);

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (seconds !== undefined) setTimeout(stop, seconds * 1000).unref();
    const redraw = setInterval(() => view.redraw(collector.stats()), REDRAW_MS);
    redraw.unref();
  });
  await collector.close();
  view.end(collector.stats());
  process.stderr.write(summary(collector.stats()));
  return 0;
}

function summary(s: CollectorStats): string {
  const problems = Object.entries(s.problems).filter(([, n]) => n > 0).map(([p, n]) => `${p} ${n}`);
  return (
    `podflow collect: ${s.sessions} sessions, ${s.messages} messages, ${s.flowRecords} flow records, ${s.optionsRecords} options records\n` +
    `  bad messages: ${s.badMessages}${problems.length > 0 ? ` (${problems.join(', ')})` : ''}, garbage stream bytes ${s.garbageBytes}\n` +
    `  sequence mismatches ${s.sequenceMismatches}, TLS handshake failures ${s.tlsHandshakeFailures}, connection errors ${s.connectionErrors}\n`
  );
}

interface View {
  add(record: CollectedRecord): void;
  redraw(stats: CollectorStats): void;
  end(stats: CollectorStats): void;
}

/** Numbers above 2^53 arrive as bigint, which JSON cannot carry: written as decimal strings. */
const jsonValue = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

class JsonLines implements View {
  add(record: CollectedRecord): void {
    process.stdout.write(JSON.stringify(record.fields, jsonValue) + '\n');
  }
  redraw(): void {}
  end(): void {}
}

interface Conversation {
  source: string;
  sourceWorkload: string;
  destination: string;
  destinationWorkload: string;
  protocol: number;
  flows: number;
  packets: number;
  bytes: number;
  /** [arrival ms, bytes] of the flows within the rate window. */
  recent: Array<[number, number]>;
}

/** Flows summed per conversation: both ends (pod, or address when none) and the protocol. */
class ConversationTable implements View {
  readonly #tty: boolean;
  readonly #conversations = new Map<string, Conversation>();

  constructor(tty: boolean) {
    this.#tty = tty;
  }

  add(record: CollectedRecord): void {
    const f = record.fields;
    const source = end(f, 'Source', 'source');
    const destination = end(f, 'Destination', 'destination');
    const protocol = num(f.protocolIdentifier);
    const key = `${source.name}|${destination.name}|${protocol}`;
    let c = this.#conversations.get(key);
    if (!c) {
      c = { source: source.name, sourceWorkload: source.workload, destination: destination.name, destinationWorkload: destination.workload, protocol, flows: 0, packets: 0, bytes: 0, recent: [] };
      this.#conversations.set(key, c);
    }
    const bytes = num(f.octetDeltaCount) + num(f.reverseOctetDeltaCount);
    c.flows++;
    c.packets += num(f.packetDeltaCount) + num(f.reversePacketDeltaCount);
    c.bytes += bytes;
    c.recent.push([Date.now(), bytes]);
  }

  redraw(stats: CollectorStats): void {
    if (this.#tty) process.stdout.write(`\x1b[H\x1b[J${this.#render(stats, (process.stdout.rows ?? 24) - 6)}`);
  }

  end(stats: CollectorStats): void {
    // Not a terminal: no live redraws, the final table once.
    if (!this.#tty) process.stdout.write(this.#render(stats, Infinity));
  }

  #render(stats: CollectorStats, rows: number): string {
    const now = Date.now();
    const shown = [...this.#conversations.values()].map((c) => {
      while (c.recent.length > 0 && now - c.recent[0]![0] > RATE_WINDOW_MS) c.recent.shift();
      return { c, rate: c.recent.reduce((n, [, b]) => n + b, 0) / (RATE_WINDOW_MS / 1000) };
    });
    shown.sort((a, b) => b.rate - a.rate || b.c.bytes - a.c.bytes);
    const table = new Table({
      head: ['source', 'workload', 'destination', 'workload', 'proto', 'flows', 'packets', 'bytes', 'rate'].map((h) => pc.bold(h)),
      style: { head: [], border: [] },
      // One line per conversation: no rule between rows.
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const { c, rate } of shown.slice(0, Math.max(1, rows))) {
      table.push([c.source, c.sourceWorkload, c.destination, c.destinationWorkload, protocolName(c.protocol), c.flows, c.packets, bytes(c.bytes), `${bytes(rate)}/s`]);
    }
    const bad = stats.badMessages > 0 ? pc.red(`${stats.badMessages} bad messages`) : '0 bad messages';
    return `${pc.bold('podflow collect')}  ${stats.sessions} sessions, ${stats.messages} messages, ${stats.flowRecords} flows, ${bad}\n${table.toString()}\n`;
  }
}

/** An end as "namespace/pod" with "Kind/name", or its address when no pod is known. */
function end(f: Record<string, FieldValue>, prefix: 'Source' | 'Destination', address: 'source' | 'destination'): { name: string; workload: string } {
  const namespace = f[`k8s${prefix}Namespace`];
  const pod = f[`k8s${prefix}PodName`];
  const kind = f[`k8s${prefix}WorkloadKind`];
  const workload = f[`k8s${prefix}WorkloadName`];
  const ip = f[`${address}IPv4Address`] ?? f[`${address}IPv6Address`] ?? '?';
  return {
    name: pod ? `${namespace}/${pod}` : String(ip),
    workload: workload ? `${kind}/${workload}` : '',
  };
}

function num(v: FieldValue | undefined): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

function bytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}
