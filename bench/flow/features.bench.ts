// The cost of each per-flow feature in ns per packet: decode + meter over
// real traffic (every classic pcap of the nDPI corpus, ~200 protocols, held
// in memory) with no feature, each feature alone, and all of them, each case
// in its own process (this file re-run with --case), --runs times,
// interleaved round by round. A run times a cold pass (a fresh process: JIT
// warm-up included) and a warm one (a new meter in the same process); the
// cost of a feature is its warm ns per packet less the no-feature case's.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchResult, load, machine, median, node, printResult, repoRoot, writeResult } from '../lib/harness.ts';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    /** How many times the corpus is metered per pass (more packets per timing). */
    repeat: { type: 'string', default: '20' },
    case: { type: 'string' },
  },
});
const runs = Number(opts.runs);
const repeat = Number(opts.repeat);
const corpus = join(repoRoot, '../shared/corpus/nDPI/tests/cfgs/default/pcap/');

const CASES = ['none', 'dns', 'tcp', 'tls', 'quic', 'http', 'all'] as const;
type CaseName = (typeof CASES)[number];

interface CaseResult {
  coldSeconds: number;
  warmSeconds: number;
  packets: number;
  /** Flows that ended with the feature's fields (all: any of them). */
  withFields: number;
}

/** The corpus' little-endian microsecond pcaps (the record layout replay meters in batches). */
function captures(): Buffer[] {
  return readdirSync(corpus)
    .filter((f) => f.endsWith('.pcap'))
    .map((f) => readFileSync(corpus + f))
    .filter((b) => b.length > 24 && b.readUInt32LE(0) === 0xa1b2c3d4);
}

async function runCase(name: CaseName): Promise<CaseResult> {
  const { PacketDecoder } = await import('../../flow/decode.ts');
  const { FlowMeter, DEFAULT_MAX_FLOWS } = await import('../../flow/meter.ts');
  const { PacketIngest } = await import('../../flow/ingest.ts');
  const { FlowFeatures } = await import('../../flow/features/flow-features.ts');
  const files = captures();
  const switches = { dns: false, tcp: false, tls: false, quic: false, http: false };
  for (const key of Object.keys(switches) as (keyof typeof switches)[]) switches[key] = name === 'all' || name === key;
  let packets = 0;
  let withFields = 0;
  const pass = (): number => {
    withFields = 0;
    // Made before the clock starts: a meter's and the TCP feature's tables are allocated once per agent, not per packet.
    const features = FlowFeatures.hooks(switches, DEFAULT_MAX_FLOWS);
    const meter = new FlowMeter({
      ...(features && { features }),
      onFlow: (f) => void (f.dns ?? f.tcp ?? f.tls ?? f.quic ?? f.http ? withFields++ : 0),
    });
    const ingest = new PacketIngest(new PacketDecoder(), meter);
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < repeat; r++) {
      // One observation point per file and round: each file's flows stay its own.
      files.forEach((bytes, i) => ingest.ingestCapture(r * files.length + i + 1, bytes));
      meter.flush();
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    packets = ingest.stats.metered;
    return seconds;
  };
  const coldSeconds = pass();
  const warmSeconds = pass();
  return { coldSeconds, warmSeconds, packets, withFields };
}

if (opts.case) {
  process.stdout.write(JSON.stringify(await runCase(opts.case as CaseName)) + '\n');
} else {
  const loadBefore = load();
  const all = new Map<CaseName, (CaseResult & { load1: number })[]>(CASES.map((c) => [c, []]));
  for (let round = 0; round < runs; round++) {
    for (const c of CASES) {
      const load1 = Number(load().split(' ')[0]);
      const r = JSON.parse(execFileSync(node, [import.meta.filename, '--case', c, '--repeat', String(repeat)], { encoding: 'utf8' })) as CaseResult;
      all.get(c)!.push({ ...r, load1 });
      process.stderr.write(`  ${c}: cold ${r.coldSeconds.toFixed(3)} s, warm ${r.warmSeconds.toFixed(3)} s, ${r.packets} packets, ${r.withFields} flows with fields (load ${load1.toFixed(2)})\n`);
    }
  }
  const packets = all.get('none')![0]!.packets;
  for (const c of CASES) if (all.get(c)!.some((r) => r.packets !== packets)) throw new Error(`${c}: another packet count than ${packets}`);
  const nsPerPacket = (c: CaseName, key: 'coldSeconds' | 'warmSeconds') => (median(all.get(c)!.map((r) => r[key])) / packets) * 1e9;
  const base = nsPerPacket('none', 'warmSeconds');
  const result: BenchResult = {
    name: 'flow/features',
    title: `per-flow features: decode + meter of the nDPI corpus (${packets / repeat} packets) × ${repeat}, median of ${runs}`,
    columns: ['features', 'ns/packet cold', 'ns/packet warm', 'cost ns/packet (warm − none)', 'flows with its fields', 'load 1m'],
    rows: CASES.map((c) => ({
      label: c === 'none' ? 'none (every feature off)' : c === 'all' ? 'all (dns, tcp, tls, quic, http)' : c,
      ours: true,
      cells: [
        nsPerPacket(c, 'coldSeconds').toFixed(0),
        nsPerPacket(c, 'warmSeconds').toFixed(0),
        c === 'none' ? '–' : (nsPerPacket(c, 'warmSeconds') - base).toFixed(0),
        String(all.get(c)![0]!.withFields / repeat),
        all.get(c)!.map((r) => r.load1.toFixed(2)).join(' / '),
      ],
    })),
    targets: [],
    commands: [`node bench/flow/features.bench.ts --runs ${runs} --repeat ${repeat}`],
    notes: [
      'the corpus is every little-endian microsecond pcap of nDPI/tests/cfgs/default/pcap (pcapng and other layouts left out), one observation point per file',
      '"cold" is one pass in a fresh process (JIT warm-up included), "warm" a second pass on new meters in the same process; the cost column is warm ns/packet less the no-feature case\'s',
    ],
    machine: machine(),
    loadBefore,
    loadAfter: load(),
  };
  printResult(result);
  writeResult(result);
}
