// The shared packet capture corpus (../shared/corpus beside the repository)
// and a one-call replay of a capture through the real decode → meter path.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PacketDecoder } from '../../flow/decode.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { FlowMeter, type FlowMeterOptions } from '../../flow/meter.ts';
import type { CaptureReadStats } from '../../flow/pcap-file.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { isGrease } from '../../flow/features/tls.ts';

/** Absolute path of the corpus folder: <repo>/../shared/corpus. */
export const corpusDir = fileURLToPath(new URL('../../../shared/corpus/', import.meta.url));

/** Why the corpus cannot be used (its index is missing), or undefined. */
export function corpusMissing(): string | undefined {
  if (existsSync(`${corpusDir}INDEX.tsv`)) return undefined;
  return `the packet capture corpus is missing: no ${corpusDir}INDEX.tsv (the corpus is ../shared/corpus beside the repository)`;
}

export interface Replay {
  flows: FlowRecord[];
  decoder: PacketDecoder;
  meter: FlowMeter;
  ingest: PacketIngest;
  file: CaptureReadStats;
}

/** Replays a capture (a path inside the corpus) and flushes what is still open at the end. */
export function replayCorpusFile(relativePath: string, options: Omit<FlowMeterOptions, 'onFlow'> = {}): Replay {
  const flows: FlowRecord[] = [];
  const decoder = new PacketDecoder();
  const meter = new FlowMeter({ ...options, onFlow: (r) => flows.push(r) });
  const ingest = new PacketIngest(decoder, meter);
  const file = ingest.ingestCapture(1, readFileSync(corpusDir + relativePath));
  meter.flush();
  return { flows, decoder, meter, ingest, file };
}

/**
 * The rows of one ipfixprobe reference output (ipfixprobe/tests/functional/outputs/<name>),
 * each as column name → text (quotes removed). The column names are on the
 * line starting "ipaddr DST_IP" (upstream sorted it among the data).
 */
export function readIpfixprobeOutput(name: string): Record<string, string>[] {
  const lines = readFileSync(`${corpusDir}ipfixprobe/tests/functional/outputs/${name}`, 'utf8').split('\n').filter((l) => l !== '');
  const headerLine = lines.find((l) => l.startsWith('ipaddr DST_IP,'));
  if (headerLine === undefined) throw new Error(`${name}: no column header line`);
  const columns = headerLine.split(',').map((c) => c.split(' ')[1]!);
  return lines
    .filter((l) => l !== headerLine)
    .map((line) => {
      const fields = splitCsvLine(line);
      if (fields.length !== columns.length) throw new Error(`${name}: row has ${fields.length} fields, header ${columns.length}: ${line}`);
      return Object.fromEntries(columns.map((c, i) => [c, fields[i]!]));
    });
}

/**
 * ipfixprobe's TLS_JA4 with JA4's extension count: ipfixprobe counts GREASE
 * values there, JA4 leaves them out (FoxIO's technical_details/JA4.md,
 * "Number of Extensions"; FoxIO's own python/ja4.py on tls.pcap agrees with
 * podflow). Counted again from the row's own extension list (TLS_EXT_TYPE).
 */
export function referenceJa4(row: Record<string, string>): string {
  const types = row.TLS_EXT_TYPE!.slice(1, -1).split('|').map(Number);
  const count = String(Math.min(99, types.filter((t) => !isGrease(t)).length)).padStart(2, '0');
  return row.TLS_JA4!.slice(0, 6) + count + row.TLS_JA4!.slice(8);
}

/** Splits one CSV line on commas outside double quotes. */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      fields.push(current);
      current = '';
    } else current += ch;
  }
  fields.push(current);
  return fields;
}
