// `podflow collect --listen URL`: a small IPFIX collector to look at what an
// agent exports. Decodes with podflow's own decoder (templates per transport
// session and observation domain) and shows the flows either as a live table
// of conversations with the Kubernetes identity of both ends, or as JSON lines
// (--json: one object per flow record, keys are element names). Bad messages
// are counted and skipped; the counters are printed on exit. Each transport
// session keeps at most DEFAULT_MAX_DOMAINS observation domains and
// DEFAULT_MAX_TEMPLATE_FIELDS template fields (ipfix/decoder.ts); what it
// refuses is counted (domain-limit, template-limit).
import { parseArgs } from 'node:util';
import pc from 'picocolors';
import { PodflowError } from '../../common/errors.ts';
import { type CollectedRecord, Collector, type CollectorStats } from '../../ipfix/collector.ts';
import { ConversationTable, statsLine } from '../collector-view.ts';
import { startWebView } from '../web/start.ts';

const USAGE = `usage: podflow collect --listen URL [--json] [--web HOST:PORT] [--seconds N] [--enterprise PEN]

Receives IPFIX and shows the flows: a live table of conversations (both ends
named by namespace/pod and workload, bytes, packets, rate), or with --json one
JSON object per flow record on stdout (keys are IPFIX element names). With
--json, a full stdout pauses TCP/TLS input and drops (and counts) UDP
datagrams. Each transport session keeps at most 16 observation domains and
4096 template fields; what is refused is counted (domain-limit,
template-limit in the summary).

  --listen URL       udp://HOST:PORT, tcp://HOST:PORT or
                     tls://HOST:PORT?cert=FILE&key=FILE[&ca=FILE] (ca: require client certificates)
  --json             JSON lines instead of the table
  --web HOST:PORT    also serve the view in a browser at http://HOST:PORT/ (the
                     traffic by node over the last 15 minutes, a map of who talks
                     to whom, the flows with filters); bind 127.0.0.1 and use
                     kubectl port-forward or an SSH tunnel: there is no login
  --seconds N        stop after N seconds (default: until Ctrl-C or SIGTERM)
  --enterprise PEN   the exporter's Private Enterprise Number (default 32473)
`;

const REDRAW_MS = 1_000;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        json: { type: 'boolean', default: false },
        web: { type: 'string' },
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

  let view: View;
  let web: Awaited<ReturnType<typeof startWebView>> | undefined;
  const collector: Collector = new Collector({
    listen: values.listen,
    enterpriseNumber: enterprise,
    onRecord: (r) => {
      if (r.options) return;
      view.add(r);
      web?.window.add(r);
    },
    onWarning: (message) => process.stderr.write(`podflow collect: ${message}\n`),
  });
  view = values.json ? new JsonLines(collector) : new TableView(process.stdout.isTTY === true);
  const { host, port } = await collector.start();
  const where = `${collector.listen.protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  process.stderr.write(`podflow collect: listening on ${where}\n`);
  if (values.web !== undefined) {
    try {
      web = await startWebView(values.web, () => collector.stats(), (line) => process.stderr.write(`podflow collect: ${line}\n`));
    } catch (err) {
      await collector.close();
      throw err;
    }
  }

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // A reader that goes away (`podflow collect --json | head`) ends the
    // collector as a signal does, with its summary, instead of an unhandled
    // write error.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') process.stderr.write(`podflow collect: standard output failed: ${err.message}; stopping\n`);
      stop();
    });
    if (seconds !== undefined) setTimeout(stop, seconds * 1000).unref();
    const redraw = setInterval(() => view.redraw(collector.stats()), REDRAW_MS);
    redraw.unref();
  });
  await collector.close();
  await web?.view.close();
  view.end(collector.stats());
  process.stderr.write(summary(collector.stats()));
  return 0;
}

function summary(s: CollectorStats): string {
  const problems = Object.entries(s.problems).filter(([, n]) => n > 0).map(([p, n]) => `${p} ${n}`);
  return (
    `podflow collect: ${s.sessions} sessions, ${s.messages} messages, ${s.flowRecords} flow records, ${s.optionsRecords} options records\n` +
    `  bad messages: ${s.badMessages}${problems.length > 0 ? ` (${problems.join(', ')})` : ''}, garbage stream bytes ${s.garbageBytes}\n` +
    `  sequence mismatches ${s.sequenceMismatches}, TLS handshake failures ${s.tlsHandshakeFailures}, connection errors ${s.connectionErrors}\n` +
    (s.pausedDatagramsDropped > 0 ? `  UDP datagrams dropped while the output was full: ${s.pausedDatagramsDropped}\n` : '')
  );
}

interface View {
  add(record: CollectedRecord): void;
  redraw(stats: CollectorStats): void;
  end(stats: CollectorStats): void;
}

/** Numbers above 2^53 arrive as bigint, which JSON cannot carry: written as decimal strings. */
const jsonValue = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

/**
 * One JSON object per line on stdout. stdout to a pipe is asynchronous on
 * Node 24: a reader slower than the collector grew the process without bound
 * (300k flows: 76 to 900 MiB). When stdout is full the collector pauses:
 * TCP/TLS connections stop being read (the exporters wait), UDP datagrams are
 * counted and dropped; it resumes on 'drain'.
 */
class JsonLines implements View {
  readonly #collector: Collector;
  #paused = false;

  constructor(collector: Collector) {
    this.#collector = collector;
  }

  add(record: CollectedRecord): void {
    if (process.stdout.write(JSON.stringify(record.fields, jsonValue) + '\n') || this.#paused) return;
    this.#paused = true;
    this.#collector.pause();
    process.stdout.once('drain', () => {
      this.#paused = false;
      this.#collector.resume();
    });
  }
  redraw(): void {}
  end(): void {}
}

/** The conversation table, redrawn in place on a terminal, printed once at the end otherwise. */
class TableView implements View {
  readonly #tty: boolean;
  readonly #table = new ConversationTable();

  constructor(tty: boolean) {
    this.#tty = tty;
  }

  add(record: CollectedRecord): void {
    this.#table.add(record);
  }

  redraw(stats: CollectorStats): void {
    if (this.#tty) process.stdout.write(`\x1b[H\x1b[J${this.#render(stats, (process.stdout.rows ?? 24) - 6)}`);
  }

  end(stats: CollectorStats): void {
    // Not a terminal: no live redraws, the final table once.
    if (!this.#tty) process.stdout.write(this.#render(stats, Infinity));
  }

  #render(stats: CollectorStats, rows: number): string {
    return `${pc.bold('podflow collect')}  ${statsLine(stats)}\n${this.#table.render(rows)}\n`;
  }
}
