// Every capture in the corpus, well-formed or not, replays through the reader,
// decoder and meter without an exception; the reader finds as many packets as
// tshark did (INDEX.tsv), and damaged captures show up in the counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { corpusDir, corpusMissing, replayCorpusFile } from '../helpers/corpus.ts';

interface IndexRow {
  path: string;
  linkType: string;
  packets: number;
}

// Without the corpus the first test fails saying so, and the others skip.
const missing = corpusMissing();
const skip = missing ? 'no corpus (the first test says where it should be)' : false;

const rows: IndexRow[] = (missing ? '' : readFileSync(corpusDir + 'INDEX.tsv', 'utf8'))
  .split('\n')
  .slice(1)
  .filter((line) => line !== '')
  .map((line) => {
    const f = line.split('\t');
    return { path: f[0]!, linkType: f[3]!, packets: Number(f[4]) };
  });

/** Captures that are damaged on purpose (corpus README). */
const damaged = /\/(fuzz-[^/]*|badpackets[^/]*|malformed_[^/]*)$/;

/** Damaged captures whose damage lies where podflow does not look, so nothing is counted. */
const damageNotSeen: Record<string, string> = {
  'nDPI/tests/cfgs/default/pcap/badpackets.pcap':
    'IPv4 total lengths beyond the wire length: podflow counts octets from the IP header as ipfixprobe does',
  'nDPI/tests/cfgs/default/pcap/malformed_dns.pcap': 'the DNS payload is malformed; IP and UDP headers are whole',
  'nDPI/tests/cfgs/default/pcap/malformed_icmp.pcap': 'an unknown ICMP type; the packet is whole',
  'nDPI/tests/cfgs/default/pcap/fuzz-2021-06-07-c6c72a0a56.pcap': 'an impossible wire length and sub-second field in the record header, a cut GTP payload; the IP and UDP headers are whole',
};

test('the corpus index lists the captures', () => {
  assert.ok(!missing, missing);
  assert.ok(rows.length > 400, `only ${rows.length} captures in INDEX.tsv`);
});

test('replays every corpus capture without an exception and accounts for every packet', { skip }, () => {
  const problems: string[] = [];
  for (const row of rows) {
    const { file, ingest, decoder, meter } = replayCorpusFile(row.path);
    // tshark also lists a record cut off by the end of the file; podflow counts it as truncated.
    if (file.packets + file.truncated !== row.packets) {
      problems.push(`${row.path}: read ${file.packets} packets (+${file.truncated} cut off), tshark ${row.packets}`);
    }
    const skipped = Object.values(decoder.errors).reduce((a, b) => a + b, 0);
    if (ingest.stats.metered + skipped !== ingest.stats.packets) {
      problems.push(`${row.path}: ${ingest.stats.packets} packets, ${ingest.stats.metered} metered + ${skipped} skipped`);
    }
    const ended = meter.stats.ended.reduce((a, b) => a + b, 0);
    if (meter.stats.active !== 0 || ended !== meter.stats.created) {
      problems.push(`${row.path}: ${meter.stats.created} flows created, ${ended} ended, ${meter.stats.active} open after flush`);
    }
  }
  assert.deepEqual(problems, []);
});

test('counts the damage in captures that are broken on purpose', { skip }, () => {
  const silent: string[] = [];
  for (const row of rows.filter((r) => damaged.test(r.path) && !(r.path in damageNotSeen))) {
    const { file, decoder } = replayCorpusFile(row.path);
    const counted =
      file.truncated + file.corruptBlocks + decoder.errors.truncatedLink + decoder.errors.truncatedIp +
      decoder.errors.badIpHeader + decoder.errors.truncatedTransport + decoder.errors.unknownLinkType;
    if (counted === 0) silent.push(row.path);
  }
  assert.deepEqual(silent, []);
});
