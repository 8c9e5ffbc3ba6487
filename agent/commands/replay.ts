// `podflow replay FILE`: meters a pcap/pcapng file into flows and prints one
// JSON object per finished flow, keys named after IANA IPFIX elements.
//
// Flows still open at the end of the file are ended with flowEndReason 4
// (forced end), as ipfixprobe's flow cache does in finish() (storage/cache.cpp).
import { closeSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { PodflowError } from '../../common/errors.ts';
import { formatIPv4, formatIPv6 } from '../../flow/address.ts';
import { IpProtocol, PacketDecoder } from '../../flow/decode.ts';
import { CaptureFileIngest, PacketIngest } from '../../flow/ingest.ts';
import {
  DEFAULT_ACTIVE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_FLOWS,
  FlowMeter,
} from '../../flow/meter.ts';
import { CAPTURE_HEADER_BYTES, type CaptureReadStats, readCaptureHeader } from '../../flow/pcap-file.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { DEFAULT_FEATURES, enabledFeatures, type FeatureSwitches, FlowFeatures } from '../../flow/features/flow-features.ts';
import { FEATURE_ENCODINGS, type FeatureElementSet, type FieldWriter } from '../../ipfix/feature-elements.ts';
import type { Exporter } from '../../ipfix/exporter.ts';
import { notSentTotal } from '../../ipfix/transport.ts';
import type { EndpointIdentity, ExportRecord } from '../../enrich/export-record.ts';

/** A replayed file is one observation point. */
const OBSERVATION_POINT = 1;
/** Bytes read from the file at a time. */
const READ_CHUNK_BYTES = 4 << 20;
/** No real record or block comes near this (libpcap's largest snaplen is 256 KiB). */
const MAX_RECORD_BYTES = 256 << 20;
/** Output is written in chunks of this many bytes: one write per flow would dominate the run time. */
const OUTPUT_CHUNK_BYTES = 1 << 20;

const USAGE = `usage: podflow replay FILE [--idle-timeout S] [--active-timeout S] [--max-flows N] [--features LIST] [--output URL]... [--feature-elements SET] [--cluster NAME]

Meters a pcap or pcapng capture into bidirectional flows and prints one JSON
object per flow on stdout (keys are IANA IPFIX element names); a summary goes
to stderr. Flows still open at the end of the file end with flowEndReason 4.

  --idle-timeout S     end a flow after S seconds without packets (default ${DEFAULT_IDLE_TIMEOUT_MS / 1000})
  --active-timeout S   end a flow S seconds after its first packet (default ${DEFAULT_ACTIVE_TIMEOUT_MS / 1000})
  --max-flows N        open flows kept at most; more evict the idlest (default ${DEFAULT_MAX_FLOWS})
  --features LIST      per-flow features, comma-separated (${Object.keys(DEFAULT_FEATURES).join(', ')}), or none
                       (default: those the agent runs by default, ${enabledFeatures(DEFAULT_FEATURES).join(', ')})
  --output URL         export the flows as IPFIX instead of printing them (repeatable):
                       udp://HOST:PORT, tcp://HOST:PORT, file:PATH,
                       tls://HOST:PORT?ca=FILE&cert=FILE&key=FILE&servername=NAME
  --feature-elements SET  podflow (default) or ipfixprobe: the elements of the
                       exported DNS, TLS, QUIC and HTTP fields (docs/ipfix-elements.md)
  --cluster NAME       k8sClusterName of the exported flows (default empty)
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        'idle-timeout': { type: 'string' },
        'active-timeout': { type: 'string' },
        'max-flows': { type: 'string' },
        features: { type: 'string' },
        'feature-elements': { type: 'string', default: 'podflow' },
        output: { type: 'string', multiple: true },
        cluster: { type: 'string', default: '' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `${(err as Error).message}\n\n${USAGE}`, { cause: err });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `expected one capture file, got ${positionals.length}\n\n${USAGE}`);
  }
  const path = positionals[0]!;
  const idleTimeoutMs = seconds(values['idle-timeout'], '--idle-timeout', DEFAULT_IDLE_TIMEOUT_MS);
  const activeTimeoutMs = seconds(values['active-timeout'], '--active-timeout', DEFAULT_ACTIVE_TIMEOUT_MS);
  const maxFlows = count(values['max-flows'], '--max-flows', DEFAULT_MAX_FLOWS);
  const switches = featureSwitches(values.features);
  const featureElements = values['feature-elements'];
  if (featureElements !== 'podflow' && featureElements !== 'ipfixprobe') {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--feature-elements wants podflow or ipfixprobe, got '${featureElements}'`);
  }

  const output = new ChunkedOutput();
  const exporter = values.output ? await FileExport.open(values.output, basename(path), values.cluster, switches, featureElements) : undefined;
  const decoder = new PacketDecoder();
  const features = FlowFeatures.hooks(switches, maxFlows);
  const meter = new FlowMeter({
    idleTimeoutMs,
    activeTimeoutMs,
    maxFlows,
    ...(features && { features }),
    onFlow: exporter ? (record) => exporter.add(record) : (record) => output.write(formatFlow(record)),
  });
  const ingest = new PacketIngest(decoder, meter);
  let file: CaptureReadStats;
  try {
    file = meterFile(path, new CaptureFileIngest(ingest, OBSERVATION_POINT));
  } catch (err) {
    // An unreadable file ends the replay at once: an exporter left open would
    // keep the process alive (its UDP socket, its resolve retries) for ever.
    exporter?.destroy();
    throw err;
  }
  meter.flush();
  await output.end();
  const exported = await exporter?.close();

  const errors = Object.entries(decoder.errors)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  const lines = [
    `podflow replay: ${path}: ${file.format}, ${ingest.stats.packets} packets, ${ingest.stats.metered} metered into ${meter.stats.created} flows`,
    `  not metered: ${errors.length > 0 ? errors.join(', ') : 'none'}`,
  ];
  if (decoder.fragments.joined + decoder.fragments.orphaned > 0) {
    lines.push(`  fragments: ${decoder.fragments.joined} joined their first fragment, ${decoder.fragments.orphaned} without one (ports 0)`);
  }
  if (meter.stats.evictions > 0) lines.push(`  flow table full: ${meter.stats.evictions} flows ended early (--max-flows)`);
  if (features && features.stats.dnsFlows > 0) {
    const { dns, dnsFlows } = features.stats;
    const problems = Object.entries(dns).filter(([reason, n]) => n > 0 && reason !== 'queries' && reason !== 'responses');
    lines.push(`  dns: ${dnsFlows} flows, ${dns.queries} queries, ${dns.responses} responses${problems.map(([reason, n]) => `, ${reason} ${n}`).join('')}`);
  }
  for (const feature of ['tls', 'quic', 'http'] as const) {
    const read = features?.switches[feature] ? Object.entries(features.stats[feature]).filter(([, n]) => n > 0) : [];
    if (read.length > 0) lines.push(`  ${feature}: ${read.map(([outcome, n]) => `${outcome} ${n}`).join(', ')}`);
  }
  if (file.truncated > 0) lines.push('  file: the last record is cut off (or impossibly long); it was not read');
  if (file.corruptBlocks > 0) lines.push('  file: a corrupt pcapng block, the rest was not read');
  if (file.unknownInterface > 0) lines.push(`  file: ${file.unknownInterface} packets of undescribed interfaces skipped`);
  if (exported) lines.push(...exported.lines);
  process.stderr.write(lines.join('\n') + '\n');
  return exported?.complete === false ? 1 : 0;
}

/**
 * --output: the replayed file's flows as IPFIX. The exporter is loaded only
 * then (see the start-up note in agent/cli.ts). A file is one observation
 * point with no pod behind it, so both ends are UNKNOWN_ENDPOINT and the
 * interface name is the file's name.
 */
class FileExport {
  /** Flows per export() call: fills messages, and keeps the pending array small. */
  static readonly BATCH = 512;
  readonly #exporter: Exporter;
  readonly #interfaceName: string;
  readonly #clusterName: string;
  readonly #unknown: EndpointIdentity;
  #batch: ExportRecord[] = [];

  static async open(targets: string[], interfaceName: string, clusterName: string, features: FeatureSwitches, featureElements: FeatureElementSet): Promise<FileExport> {
    const [{ Exporter }, { UNKNOWN_ENDPOINT }] = await Promise.all([import('../../ipfix/exporter.ts'), import('../../enrich/export-record.ts')]);
    const exporter = new Exporter({
      targets,
      observationDomainId: OBSERVATION_POINT,
      features: enabledFeatures(features),
      featureElements,
      onError: (err) => process.stderr.write(`podflow replay: ${err.message}\n`),
      // The whole file is metered before the event loop turns, so a TCP connection
      // cannot come up until then: queue every flow (the file bounds them) rather than drop.
      tcp: { maxQueuedRecords: Number.MAX_SAFE_INTEGER },
      closeTimeoutMs: 10_000,
    });
    return new FileExport(exporter, interfaceName, clusterName, UNKNOWN_ENDPOINT);
  }

  private constructor(exporter: Exporter, interfaceName: string, clusterName: string, unknown: EndpointIdentity) {
    this.#exporter = exporter;
    this.#interfaceName = interfaceName;
    this.#clusterName = clusterName;
    this.#unknown = unknown;
  }

  add(flow: FlowRecord): void {
    // No pod is observed in a file: ingress (0) is the neutral value of flowDirection.
    this.#batch.push({ flow, interfaceName: this.#interfaceName, flowDirection: 0, clusterName: this.#clusterName, source: this.#unknown, destination: this.#unknown });
    if (this.#batch.length >= FileExport.BATCH) this.#send();
  }

  /** Sends the rest, closes (bounded), and sums up each target; complete is false when records were dropped. */
  async close(): Promise<{ lines: string[]; complete: boolean }> {
    this.#send();
    await this.#exporter.close();
    const stats = this.#exporter.stats();
    const lines = stats.map(
      (t) =>
        `  export ${t.target}: ${t.records} flows in ${t.messages} messages (${t.bytes} bytes)` +
        (notSentTotal(t) > 0 ? `, ${notSentTotal(t)} not sent (${Object.entries(t.notSent).filter(([, n]) => n > 0).map(([reason, n]) => `${reason} ${n}`).join(', ')})` : '') +
        (t.errors > 0 ? `, ${t.errors} errors (last: ${t.lastError!.message})` : ''),
    );
    return { lines, complete: stats.every((t) => notSentTotal(t) === 0) };
  }

  /** Ends the exporter at once, sending nothing more: the replay failed. */
  destroy(): void {
    this.#exporter.destroy();
  }

  #send(): void {
    if (this.#batch.length === 0) return;
    this.#exporter.export(this.#batch);
    this.#batch = [];
  }
}

/**
 * Reads the file in chunks into one reused buffer, so memory stays flat and
 * files beyond the 2 GiB a single Buffer can hold still replay. A record or
 * block cut by a chunk's end moves to the front and is completed by the next
 * read; a block larger than the buffer grows it, up to MAX_RECORD_BYTES.
 */
function meterFile(path: string, file: CaptureFileIngest): CaptureReadStats {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_FLOW_FILE_READ', `${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let have = 0;
    let started = false;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, have, buf.length - have, null);
      } catch (err) {
        throw new PodflowError('PODFLOW_ERR_FLOW_FILE_READ', `${path}: ${(err as Error).message}`, { cause: err });
      }
      have += got;
      if (got > 0 && have < CAPTURE_HEADER_BYTES) continue;
      if (!started) {
        if (readCaptureHeader(buf.subarray(0, have)) === null) {
          throw new PodflowError('PODFLOW_ERR_FLOW_NOT_A_CAPTURE', `${path}: no pcap or pcapng magic number at the start`);
        }
        started = true;
      }
      const used = file.read(buf, 0, have);
      buf.copyWithin(0, used, have);
      have -= used;
      // A record claiming more than MAX_RECORD_BYTES is damage, not data: stop there.
      if (got === 0 || (have === buf.length && buf.length >= MAX_RECORD_BYTES)) return file.finish(have);
      if (have === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** --features: a comma-separated list of feature names, or "none". */
function featureSwitches(value: string | undefined): FeatureSwitches {
  if (value === undefined) return { ...DEFAULT_FEATURES };
  const switches = Object.fromEntries(Object.keys(DEFAULT_FEATURES).map((name) => [name, false])) as unknown as FeatureSwitches;
  if (value.trim() === 'none') return switches;
  for (const name of value.split(',').map((n) => n.trim())) {
    if (!Object.hasOwn(switches, name)) {
      throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--features: unknown feature '${name}' (known: ${Object.keys(switches).join(', ')}, or none)`);
    }
    switches[name as keyof FeatureSwitches] = true;
  }
  return switches;
}

function seconds(value: string | undefined, option: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `${option} wants a positive number of seconds, got '${value}'`);
  }
  return n * 1000;
}

function count(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `${option} wants a positive integer, got '${value}'`);
  }
  return n;
}

/**
 * Collects output and writes it in large chunks; stdout to a file or pipe is
 * synchronous on Linux. A reader that goes away (`| head`) ends the output
 * quietly, as command-line tools do; the replay itself still completes.
 *
 * Lines are copied into a byte buffer as they come rather than joined into one
 * growing string: the joined string (a rope of thousands of pieces) survived
 * every young-generation GC and was copied each time, measured at ~20 ms of
 * GC for 10k flows; copied out, each line dies young. The output is ASCII
 * (numbers, addresses, element names), so latin1 is one byte per character.
 * Each chunk handed to stdout gets a fresh buffer: a pipe may still hold it.
 */
class ChunkedOutput {
  #buf = Buffer.allocUnsafe(OUTPUT_CHUNK_BYTES);
  #used = 0;
  #closed = false;
  #error: Error | undefined;

  constructor() {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      this.#closed = true;
      if (err.code !== 'EPIPE') this.#error = err;
    });
  }

  write(text: string): void {
    if (this.#closed) return;
    if (this.#used + text.length > this.#buf.length) {
      this.#flush();
      if (text.length > this.#buf.length) {
        process.stdout.write(text);
        return;
      }
    }
    this.#used += this.#buf.write(text, this.#used, 'latin1');
  }

  #flush(): void {
    if (this.#used === 0) return;
    process.stdout.write(this.#buf.subarray(0, this.#used));
    this.#buf = Buffer.allocUnsafe(OUTPUT_CHUNK_BYTES);
    this.#used = 0;
  }

  end(): Promise<void> {
    const rest = this.#closed ? this.#buf.subarray(0, 0) : this.#buf.subarray(0, this.#used);
    this.#used = 0;
    return new Promise((resolve, reject) => {
      const done = () => (this.#error ? reject(this.#error) : resolve());
      if (this.#closed) done();
      else process.stdout.write(rest, () => done());
    });
  }
}

/** One flow as a line of JSON. Built by hand: every value is a number or an address. */
export function formatFlow(r: FlowRecord): string {
  const v = r.ipVersion === 4 ? 'IPv4' : 'IPv6';
  const format = r.ipVersion === 4 ? formatIPv4 : formatIPv6;
  let s =
    `{"source${v}Address":"${format(r.sourceAddress)}","destination${v}Address":"${format(r.destinationAddress)}"` +
    `,"sourceTransportPort":${r.sourceTransportPort},"destinationTransportPort":${r.destinationTransportPort}` +
    `,"protocolIdentifier":${r.protocolIdentifier}`;
  if (r.vlanId !== 0) s += `,"vlanId":${r.vlanId}`;
  s +=
    `,"packetDeltaCount":${r.packetDeltaCount},"octetDeltaCount":${r.octetDeltaCount}` +
    `,"reversePacketDeltaCount":${r.reversePacketDeltaCount},"reverseOctetDeltaCount":${r.reverseOctetDeltaCount}` +
    `,"tcpControlBits":${r.tcpControlBits},"reverseTcpControlBits":${r.reverseTcpControlBits}`;
  if (r.protocolIdentifier === IpProtocol.ICMP || r.protocolIdentifier === IpProtocol.ICMPV6) {
    s += `,"icmpTypeCode${v}":${r.icmpTypeCode},"reverseIcmpTypeCode${v}":${r.reverseIcmpTypeCode}`;
  }
  s +=
    `,"flowStartMilliseconds":${r.flowStartMilliseconds},"flowEndMilliseconds":${r.flowEndMilliseconds}` +
    `,"flowEndReason":${r.flowEndReason}`;
  for (const feature of FEATURE_ENCODINGS) {
    if (!feature.present(r)) continue;
    const w = new JsonFields(feature.fields);
    feature.write(r, w);
    s += w.text;
  }
  return s + '}\n';
}

/** A feature's fields as JSON members, written by the same code as its IPFIX fields (ipfix/feature-elements.ts), named by its elements. */
class JsonFields implements FieldWriter {
  text = '';
  readonly #names: readonly string[];
  #next = 0;

  constructor(names: readonly string[]) {
    this.#names = names;
  }

  unsigned(_length: number, value: number): void {
    this.text += `,"${this.#names[this.#next++]}":${value}`;
  }

  unsigned64(high: number, low: number): void {
    this.text += `,"${this.#names[this.#next++]}":${(BigInt(high) << 32n) | BigInt(low)}`;
  }

  /** As hex digits. */
  octets(bytes: Uint8Array): void {
    this.text += `,"${this.#names[this.#next++]}":"${Buffer.from(bytes).toString('hex')}"`;
  }

  /** The output is ASCII (ChunkedOutput): other characters as JSON escapes. */
  string(text: string): void {
    const json = JSON.stringify(text).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    this.text += `,"${this.#names[this.#next++]}":${json}`;
  }
}
