// decode + meter alone, on a pcap already in memory (no file reading, no
// process start-up, no output), beside the floors under it:
//   parse records only  – walk the 16-byte record headers, touch one byte each
//   decode only         – PacketDecoder.decode per record
//   decode + meter      – PacketIngest.ingest over the records (the live path)
// Each case runs in its own process (this file re-run with --case), --runs
// times; a run times a first pass (cold: includes JIT warm-up, as a real
// replay does) and then a second pass on a fresh meter (warm).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PCAP_RECORDS_START } from '../../flow/pcap-file.ts';
import { LinkType, RECORD_HEADER_BYTES } from '../../flow/records.ts';
import { generatePcap } from '../gen-pcap.ts';
import {
  type BenchResult,
  formatRate,
  load,
  machine,
  median,
  node,
  printResult,
  removeDir,
  tempDir,
  writeResult,
} from '../lib/harness.ts';

const { values: opts } = parseArgs({
  options: {
    packets: { type: 'string', default: '1000000' },
    flows: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    case: { type: 'string' },
    pcap: { type: 'string' },
  },
});
const packets = Number(opts.packets);
const flows = Number(opts.flows);
const runs = Number(opts.runs);


type CaseName = 'parse' | 'decode' | 'meter';
const CASES: { name: CaseName; label: string }[] = [
  { name: 'parse', label: 'parse records only' },
  { name: 'decode', label: 'parse + PacketDecoder.decode' },
  { name: 'meter', label: 'parse + decode + FlowMeter (PacketIngest.ingest)' },
];

interface CaseResult {
  coldSeconds: number;
  warmSeconds: number;
  packets: number;
  flows: number;
}

async function runCase(name: CaseName, bytes: Buffer): Promise<CaseResult> {
  const { PacketDecoder } = await import('../../flow/decode.ts');
  const { FlowMeter } = await import('../../flow/meter.ts');
  const { PacketIngest } = await import('../../flow/ingest.ts');
  const end = bytes.length;
  let seen = 0;
  let nflows = 0;
  const pass = (): number => {
    const t0 = process.hrtime.bigint();
    if (name === 'parse') {
      let n = 0;
      let sum = 0;
      for (let at = PCAP_RECORDS_START; at + RECORD_HEADER_BYTES <= end; ) {
        const caplen = bytes[at + 8]! | (bytes[at + 9]! << 8) | (bytes[at + 10]! << 16) | (bytes[at + 11]! << 24);
        sum += bytes[at + RECORD_HEADER_BYTES + 23]!; // the IP protocol byte: one touch of the frame
        at += RECORD_HEADER_BYTES + caplen;
        n++;
      }
      seen = n + (sum < 0 ? 1 : 0);
    } else if (name === 'decode') {
      const decoder = new PacketDecoder();
      let n = 0;
      for (let at = PCAP_RECORDS_START; at + RECORD_HEADER_BYTES <= end; ) {
        const caplen = bytes[at + 8]! | (bytes[at + 9]! << 8) | (bytes[at + 10]! << 16) | (bytes[at + 11]! << 24);
        if (decoder.decode(LinkType.ETHERNET, bytes, at + RECORD_HEADER_BYTES, caplen)) n++;
        at += RECORD_HEADER_BYTES + caplen;
      }
      seen = n;
    } else {
      let ended = 0;
      const meter = new FlowMeter({ onFlow: () => void ended++ });
      const ingest = new PacketIngest(new PacketDecoder(), meter);
      ingest.ingest(1, LinkType.ETHERNET, bytes, PCAP_RECORDS_START, end);
      meter.flush();
      seen = ingest.stats.metered;
      nflows = ended;
    }
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const coldSeconds = pass();
  const warmSeconds = pass();
  return { coldSeconds, warmSeconds, packets: seen, flows: nflows };
}

if (opts.case) {
  const bytes = readFileSync(opts.pcap!);
  process.stdout.write(JSON.stringify(await runCase(opts.case as CaseName, bytes)) + '\n');
} else {
  const loadBefore = load();
  const dir = tempDir('pf-bench-meter');
  try {
    const pcap = opts.pcap ?? join(dir, 'bench.pcap');
    if (!opts.pcap) generatePcap({ path: pcap, packets, flows });
    const all = new Map<CaseName, (CaseResult & { load1: number })[]>(CASES.map((c) => [c.name, []]));
    for (let round = 0; round < runs; round++) {
      for (const c of CASES) {
        const load1 = Number(load().split(' ')[0]);
        const out = execFileSync(node, [import.meta.filename, '--case', c.name, '--pcap', pcap], { encoding: 'utf8' });
        const r = JSON.parse(out) as CaseResult;
        if (r.packets !== packets) throw new Error(`${c.label}: saw ${r.packets} packets, want ${packets}`);
        if (c.name === 'meter' && r.flows !== flows) throw new Error(`${c.label}: ${r.flows} flows, want ${flows}`);
        all.get(c.name)!.push({ ...r, load1 });
        process.stderr.write(`  ${c.label}: cold ${r.coldSeconds.toFixed(4)} s, warm ${r.warmSeconds.toFixed(4)} s (load ${load1.toFixed(2)})\n`);
      }
    }
    const rows = CASES.map((c) => {
      const rs = all.get(c.name)!;
      const cold = median(rs.map((r) => r.coldSeconds));
      const warm = median(rs.map((r) => r.warmSeconds));
      return {
        label: c.label,
        ours: c.name === 'meter',
        cells: [
          formatRate(packets / cold),
          formatRate(packets / warm),
          `${(cold * 1e3).toFixed(1)} / ${(warm * 1e3).toFixed(1)}`,
          `${((cold / packets) * 1e9).toFixed(0)} / ${((warm / packets) * 1e9).toFixed(0)}`,
          rs.map((r) => r.load1.toFixed(2)).join(' / '),
        ],
      };
    });
    const meterCold = median(all.get('meter')!.map((r) => r.coldSeconds));
    const result: BenchResult = {
      name: 'flow/meter',
      title: `decode + meter in memory: ${packets / 1e6}M packets / ${flows / 1e3}k flows, median of ${runs}`,
      columns: ['case', 'packets/s cold', 'packets/s warm', 'ms cold / warm', 'ns/packet cold / warm', 'load 1m'],
      rows,
      targets: [],
      commands: [`node bench/flow/meter.bench.ts --packets ${packets} --flows ${flows} --runs ${runs}`],
      notes: [
        `every case checked: ${packets} packets seen; decode + meter ends exactly ${flows} flows`,
        `decode + meter cold pass: ${((meterCold / packets) * 1e9).toFixed(0)} ns per packet; "cold" is one pass in a fresh process (JIT warm-up included), "warm" a second pass on a new meter in the same process`,
      ],
      machine: machine(),
      loadBefore,
      loadAfter: load(),
    };
    printResult(result);
    writeResult(result);
  } finally {
    removeDir(dir);
  }
}
