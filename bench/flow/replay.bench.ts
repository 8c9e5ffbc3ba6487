// Replay of a generated 1M-packet / 10k-flow pcap, whole process, beside:
//   softflowd -r  (a C flow meter: the target is podflow ≥ 2× its packets/s)
//   tcpdump -r F -w /dev/null  (libpcap read + write, no metering)
//   bench/flow/pcap-read.c     (a bare pcap_next_ex loop: the ceiling)
// Every subject runs --runs times (default 3), interleaved round by round so a
// burst of load from elsewhere hits them all alike; the median wall time is
// reported with the CPU time, peak RSS and load of that same run.
import { readFileSync, statSync, createReadStream } from 'node:fs';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generatePcap } from '../gen-pcap.ts';
import {
  type BenchResult,
  type ProcessCost,
  compileC,
  formatRate,
  hasModule,
  load,
  machine,
  measureProcess,
  medianBy,
  node,
  printResult,
  removeDir,
  repoRoot,
  tempDir,
  writeResult,
} from '../lib/harness.ts';

const { values: opts } = parseArgs({
  options: {
    packets: { type: 'string', default: '1000000' },
    flows: { type: 'string', default: '10000' },
    /** Bytes kept of each frame in the generated capture: 128 (the default) or 65535 for whole frames. */
    snaplen: { type: 'string', default: '128' },
    runs: { type: 'string', default: '3' },
    pcap: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const packets = Number(opts.packets);
const flows = Number(opts.flows);
const runs = Number(opts.runs);
const snaplen = Number(opts.snaplen);

interface Subject {
  label: string;
  ours: boolean;
  argv: string[];
  /** Checks one run's output; returns a short description for the notes. */
  check?: (stdoutFile: string, cost: ProcessCost) => string;
  stdoutFile?: string;
  env?: Record<string, string>;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((ok) => s.bind(0, '127.0.0.1', ok));
  const port = s.address().port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

async function warmPageCache(path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 1 << 20 }));
}

/** Lines of podflow's JSON output: flows, and packets summed over both directions. */
function podflowOutput(path: string): { flows: number; packets: number } {
  let nflows = 0;
  let npackets = 0;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const f = JSON.parse(line) as Record<string, unknown>;
    nflows++;
    npackets += Number(f.packetDeltaCount ?? 0) + Number(f.reversePacketDeltaCount ?? 0);
  }
  return { flows: nflows, packets: npackets };
}

async function main(): Promise<void> {
  const loadBefore = load();
  const dir = tempDir('pf-bench-replay');
  try {
    const pcap = opts.pcap ?? join(dir, 'bench.pcap');
    if (!opts.pcap) generatePcap({ path: pcap, packets, flows, snaplen });
    const measure = compileC('lib/measure.c', dir, 'measure');
    const pcapRead = compileC('flow/pcap-read.c', dir, 'pcap-read', ['-lpcap']);
    const port = await freeUdpPort(); // nothing listens there: softflowd's export is dropped by the kernel
    // softflowd's default flow table (-m 8192) is smaller than the capture's
    // 10k flows: it then force-expires ~120k partial flows and meters something
    // else than podflow. Size it so it keeps every flow, as podflow does.
    const maxFlows = String(Math.max(8192, 2 ** Math.ceil(Math.log2(flows * 1.5))));
    const replayScript = 'agent/commands/replay.ts';
    const haveReplay = hasModule(replayScript);

    const subjects: Subject[] = [];
    if (haveReplay) {
      const argv = [node, join(repoRoot, 'agent/cli.ts'), 'replay', pcap];
      subjects.push({ label: 'podflow replay (default features: dns, tcp)', ours: true, argv });
      // Same command with Node's on-disk compile cache (warmed by the check run
      // below): type stripping of the .ts modules is most of the start-up.
      subjects.push({ label: 'podflow replay, NODE_COMPILE_CACHE warm', ours: true, argv, env: { NODE_COMPILE_CACHE: join(dir, 'compile-cache') } });
      // The per-flow features' share: every one off, and every one on (after the two above, which the checks below take by index).
      subjects.push({ label: 'podflow replay --features none', ours: true, argv: [...argv, '--features', 'none'] });
      subjects.push({ label: 'podflow replay --features dns,tcp,tls,quic,http', ours: true, argv: [...argv, '--features', 'dns,tcp,tls,quic,http'] });
    }
    subjects.push(
      {
        label: 'softflowd -r (IPFIX)',
        ours: false,
        argv: ['softflowd', '-r', pcap, '-v', '10', '-n', `127.0.0.1:${port}`, '-m', maxFlows],
        stdoutFile: join(dir, 'softflowd.out'),
        check: (out) => {
          const text = readFileSync(out, 'utf8');
          const processed = Number(/Packets processed: (\d+)/.exec(text)?.[1]);
          const expired = Number(/Flows expired: (\d+)/.exec(text)?.[1]);
          const forced = Number(/Flows expired: \d+ \((\d+) forced\)/.exec(text)?.[1]);
          if (processed !== packets || expired !== flows || forced !== 0) {
            throw new Error(`softflowd metered ${processed} packets into ${expired} flows (${forced} forced); want ${packets} into ${flows}`);
          }
          return `softflowd: ${processed} packets into ${expired} flows, 0 forced expiries`;
        },
      },
      {
        label: 'tcpdump -r -w /dev/null',
        ours: false,
        argv: ['tcpdump', '-r', pcap, '-w', '/dev/null'],
      },
      {
        label: 'C pcap_next_ex loop',
        ours: false,
        argv: [pcapRead, pcap],
        stdoutFile: join(dir, 'pcap-read.out'),
        check: (out) => {
          const n = JSON.parse(readFileSync(out, 'utf8')).packets as number;
          if (n !== packets) throw new Error(`pcap-read counted ${n} packets, want ${packets}`);
          return `C loop: ${n} packets`;
        },
      },
    );

    const size = statSync(pcap).size;
    await warmPageCache(pcap);
    const notes: string[] = [];
    // One checked run of podflow with its output kept: 10k flows, every packet metered.
    let podflowCheck: { flows: number; packets: number } | undefined;
    if (haveReplay) {
      const out = join(dir, 'podflow.out');
      measureProcess(measure, subjects[0]!.argv, out);
      measureProcess(measure, subjects[1]!.argv, '/dev/null', subjects[1]!.env);
      podflowCheck = podflowOutput(out);
      notes.push(`podflow replay output: ${podflowCheck.flows} flows, ${podflowCheck.packets} packets summed over both directions`);
    } else {
      notes.push(`${replayScript} does not exist yet: podflow not measured`);
    }

    const costs = new Map<Subject, ProcessCost[]>(subjects.map((s) => [s, []]));
    for (let round = 0; round < runs; round++) {
      for (const s of subjects) {
        const cost = measureProcess(measure, s.argv, s.stdoutFile ?? '/dev/null', s.env);
        const c = s.check?.(s.stdoutFile!, cost);
        if (c && round === 0) notes.push(c);
        costs.get(s)!.push(cost);
        process.stderr.write(`  ${s.label}: ${cost.wallSeconds.toFixed(3)} s (load ${cost.load1.toFixed(2)})\n`);
      }
    }

    const med = new Map(subjects.map((s) => [s, medianBy(costs.get(s)!, (c) => c.wallSeconds)]));
    const softflowd = subjects.find((s) => s.label.startsWith('softflowd'))!;
    const sfRate = packets / med.get(softflowd)!.wallSeconds;
    const rows = subjects.map((s) => {
      const c = med.get(s)!;
      const rate = packets / c.wallSeconds;
      const all = costs.get(s)!.map((x) => x.wallSeconds.toFixed(3)).join(' / ');
      return {
        label: s.label,
        ours: s.ours,
        cells: [
          c.wallSeconds.toFixed(3),
          all,
          `${formatRate(rate)}`,
          `${(rate / sfRate).toFixed(2)}×`,
          c.userSeconds.toFixed(3),
          c.sysSeconds.toFixed(3),
          (c.maxRssKiB / 1024).toFixed(0),
          c.load1.toFixed(2),
          c.othersCpuSeconds.toFixed(2),
        ],
      };
    });

    const targets: BenchResult['targets'] = [];
    if (haveReplay) {
      const ours = med.get(subjects[0]!)!;
      const rate = packets / ours.wallSeconds;
      targets.push({ what: 'podflow replay ≥ 2× softflowd packets/s', met: rate >= 2 * sfRate, measured: `${(rate / sfRate).toFixed(2)}×` });
      targets.push({
        what: `podflow replay outputs ${flows} flows holding all ${packets} packets`,
        met: podflowCheck!.flows === flows && podflowCheck!.packets === packets,
        measured: `${podflowCheck!.flows} flows, ${podflowCheck!.packets} packets`,
      });
      const cached = packets / med.get(subjects[1]!)!.wallSeconds;
      notes.push(
        `with a warm NODE_COMPILE_CACHE the same command runs at ${(cached / sfRate).toFixed(2)}× softflowd (shown for information; the target is judged on the plain command)`,
      );
    }
    notes.push(
      `capture: ${packets} packets, ${flows} flows, ${(size / 1e6).toFixed(0)} MB${opts.pcap ? ` (${opts.pcap})` : ` (frames cut at ${snaplen} bytes)`}, read from the page cache`,
    );

    const result: BenchResult = {
      name: snaplen === 128 ? 'flow/replay' : `flow/replay-snaplen-${snaplen}`,
      title: `Replay: ${packets / 1e6}M packets / ${flows / 1e3}k flows from a pcap (frames cut at ${snaplen} bytes, ${(size / 1e6).toFixed(0)} MB), whole process, median of ${runs}`,
      columns: ['reader', 'wall s (median)', `wall s (all ${runs})`, 'packets/s', 'vs softflowd', 'user s', 'sys s', 'max RSS MiB', 'load 1m', "others' CPU-s"],
      rows,
      targets,
      commands: [
        `node bench/gen-pcap.ts --out F --packets ${packets} --flows ${flows} --snaplen ${snaplen}`,
        'cc -O2 -Wall -o $TMP/pcap-read bench/flow/pcap-read.c -lpcap',
        ...subjects.map(
          (s) =>
            s.argv
              .map((a) => (a === pcap ? 'F' : a.replace(dir, '$TMP').replace(repoRoot + '/', '').replace(`127.0.0.1:${port}`, '127.0.0.1:PORT')))
              .join(' ') + (s.stdoutFile ? '' : ' > /dev/null') + (s.env ? `  # with ${Object.keys(s.env).join(' ')}=$TMP/...` : ''),
        ),
      ],
      notes,
      machine: machine(),
      loadBefore,
      loadAfter: load(),
      ...(haveReplay ? {} : { skipped: `${replayScript} missing` }),
    };
    printResult(result);
    writeResult(result);
  } finally {
    if (!opts.keep) removeDir(dir);
  }
}

await main();
